//! A slot's `boot.cfg` on the ESP (see xtask's `slot_boot_cfg`):
//!
//! ```text
//! linux /ferrocore/usr-a/vmlinuz console=… ferrocore.slot=A … dm-mod.create="usr,,,ro,<verity table>" dm-mod.waitfor=PARTUUID=<usr-a> rootwait $linux_append
//! initrd /ferrocore/usr-a/initrd
//! ```
//!
//! The new slot's file is derived from the running slot's, so board-specific arguments (consoles)
//! carry over: the slot directory, `ferrocore.slot=`, the verity table (from the signed manifest)
//! and the partition's PARTUUID are replaced.

use crate::payload::Release;
use gptprio::Slot;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the running slot's boot.cfg has no {0}: cannot derive the new slot's command line")]
    Missing(&'static str),
    #[error("manifest {field} {value:?} is not hex of the right length")]
    Manifest { field: &'static str, value: String },
}

pub fn slot_dir(s: Slot) -> &'static str {
    match s {
        Slot::A => "usr-a",
        Slot::B => "usr-b",
    }
}

/// The dm-verity table for the release's `/usr`, with data and tree on `dev`.
pub fn verity_table(release: &Release, dev: &str) -> Result<String, Error> {
    let bad = |field, value: &str| Error::Manifest {
        field,
        value: value.into(),
    };
    let root_hash: [u8; 32] = hex::decode(&release.usr_root_hash)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad("usr_root_hash", &release.usr_root_hash))?;
    let salt = match release.usr_salt.as_str() {
        "-" => Vec::new(),
        s => hex::decode(s).map_err(|_| bad("usr_salt", s))?,
    };
    let tree = verity::Tree {
        root_hash,
        salt,
        uuid: [0; 16],
        data_blocks: release.usr_data_blocks,
        hash_area: Vec::new(),
    };
    Ok(tree.kernel_table(dev))
}

/// Rewrites the running slot's `boot.cfg` for `target`, whose USR partition has `partuuid`.
pub fn derive(
    current_cfg: &str,
    current: Slot,
    target: Slot,
    release: &Release,
    partuuid: &uuid::Uuid,
) -> Result<String, Error> {
    let dev = format!("PARTUUID={partuuid}");
    let table = verity_table(release, &dev)?;
    let mut out = String::new();
    for line in current_cfg.lines() {
        let line = line.replace(
            &format!("/ferrocore/{}/", slot_dir(current)),
            &format!("/ferrocore/{}/", slot_dir(target)),
        );
        let line = if line.trim_start().starts_with("linux ") {
            rewrite_linux(&line, current, target, &table, &dev)?
        } else {
            line
        };
        out.push_str(&line);
        out.push('\n');
    }
    if !out.contains(&format!("/ferrocore/{}/vmlinuz", slot_dir(target))) {
        return Err(Error::Missing("linux line with the slot's vmlinuz"));
    }
    Ok(out)
}

fn rewrite_linux(
    line: &str,
    current: Slot,
    target: Slot,
    table: &str,
    dev: &str,
) -> Result<String, Error> {
    let slot_arg = |s: Slot| format!("ferrocore.slot={s:?}");
    if !line.contains(&slot_arg(current)) {
        return Err(Error::Missing("ferrocore.slot= of the running slot"));
    }
    let line = line.replace(&slot_arg(current), &slot_arg(target));
    // dm-mod.create="…" holds spaces inside its quotes.
    let key = "dm-mod.create=\"";
    let start = line.find(key).ok_or(Error::Missing("dm-mod.create="))?;
    let end = line[start + key.len()..]
        .find('"')
        .map(|i| start + key.len() + i + 1)
        .ok_or(Error::Missing("closing quote of dm-mod.create="))?;
    let line = format!(
        "{}dm-mod.create=\"usr,,,ro,{table}\"{}",
        &line[..start],
        &line[end..]
    );
    let words: Vec<String> = line
        .split(' ')
        .map(|w| {
            if w.starts_with("dm-mod.waitfor=") {
                format!("dm-mod.waitfor={dev}")
            } else {
                w.to_string()
            }
        })
        .collect();
    Ok(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            version: "2.0.0".into(),
            build_id: "b".into(),
            channel: "stable".into(),
            usr_root_hash: "11".repeat(32),
            usr_data_blocks: 100,
            usr_salt: "22".repeat(32),
        }
    }

    #[test]
    fn derives_the_other_slots_cfg() {
        let old = "linux /ferrocore/usr-a/vmlinuz console=tty0 console=ttyS0,115200n8 ferrocore.slot=A systemd.gpt_auto=0 dm-mod.create=\"usr,,,ro,0 8 verity 1 PARTUUID=aaaa PARTUUID=aaaa 4096 4096 1 2 sha256 00 -\" dm-mod.waitfor=PARTUUID=aaaa rootwait $linux_append\ninitrd /ferrocore/usr-a/initrd\n";
        let u = uuid::Uuid::from_u128(0xb);
        let new = derive(old, Slot::A, Slot::B, &release(), &u).unwrap();
        let dev = format!("PARTUUID={u}");
        assert_eq!(
            new,
            format!(
                "linux /ferrocore/usr-b/vmlinuz console=tty0 console=ttyS0,115200n8 ferrocore.slot=B systemd.gpt_auto=0 dm-mod.create=\"usr,,,ro,0 800 verity 1 {dev} {dev} 4096 4096 100 101 sha256 {} {}\" dm-mod.waitfor={dev} rootwait $linux_append\ninitrd /ferrocore/usr-b/initrd\n",
                "11".repeat(32),
                "22".repeat(32)
            )
        );
        // And back again.
        let back = derive(&new, Slot::B, Slot::A, &release(), &u).unwrap();
        assert!(back.contains("/ferrocore/usr-a/vmlinuz") && back.contains("ferrocore.slot=A"));
    }

    #[test]
    fn refuses_what_it_cannot_rewrite() {
        let u = uuid::Uuid::nil();
        let no_table = "linux /ferrocore/usr-a/vmlinuz ferrocore.slot=A rootwait\n";
        assert_eq!(
            derive(no_table, Slot::A, Slot::B, &release(), &u),
            Err(Error::Missing("dm-mod.create="))
        );
        let wrong_slot = "linux /ferrocore/usr-a/vmlinuz ferrocore.slot=B dm-mod.create=\"x\"\n";
        assert!(derive(wrong_slot, Slot::A, Slot::B, &release(), &u).is_err());
        let mut r = release();
        r.usr_root_hash = "xyz".into();
        assert!(matches!(
            verity_table(&r, "d"),
            Err(Error::Manifest {
                field: "usr_root_hash",
                ..
            })
        ));
    }
}
