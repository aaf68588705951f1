//! The image's file tree: the cached Debian rootfs, plus our overlay, our binaries, os-release,
//! and `/etc` moved to `/usr/share/factory/etc` (the init copies it to ROOT on first boot).

use crate::{cache, cmd};
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A binary to install into `/usr/bin`.
pub struct Binary {
    pub name: String,
    pub path: PathBuf,
    pub links: Vec<String>,
}

pub struct Release<'a> {
    pub version: &'a str,
    pub build_id: &'a str,
    pub channel: &'a str,
}

/// Size of the file the verity test flips a byte in (see tests/).
pub const CANARY_SIZE: usize = 1 << 20;
pub const CANARY_PATH: &str = "usr/share/ferrocore/verity-canary";

/// Deterministic, incompressible bytes (xorshift), so the test can find them in the EROFS image.
pub fn canary_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(CANARY_SIZE);
    while out.len() < CANARY_SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

pub fn prepare(
    work: &Path,
    rootfs_tarball: &Path,
    overlay: &Path,
    extra_overlay: Option<&Path>,
    binaries: &[Binary],
    release: &Release,
) -> Result<PathBuf> {
    let tree = work.join("tree");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::create_dir_all(&tree)?;
    eprintln!("image: unpacking the rootfs");
    cmd::run(
        Command::new("tar")
            .args(["--zstd", "-xpf"])
            .arg(rootfs_tarball)
            .arg("-C")
            .arg(&tree)
            .arg("--numeric-owner"),
    )?;
    for dir in std::iter::once(overlay).chain(extra_overlay) {
        for (rel, _) in cache::walk(dir)? {
            copy_preserving(&dir.join(&rel), &tree.join(&rel))?;
        }
    }
    let bin = tree.join("usr/bin");
    for b in binaries {
        let dest = bin.join(&b.name);
        std::fs::copy(&b.path, &dest).with_context(|| format!("installing {}", b.name))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
        for link in &b.links {
            let l = bin.join(link);
            let _ = std::fs::remove_file(&l);
            std::os::unix::fs::symlink(&b.name, &l)?;
        }
    }
    std::fs::write(tree.join("usr/lib/os-release"), os_release(release))?;
    let update_conf = tree.join(UPDATE_CONF);
    let text = std::fs::read_to_string(&update_conf)
        .with_context(|| format!("reading {}", update_conf.display()))?;
    std::fs::write(&update_conf, with_group(&text, release.channel)?)?;
    let canary = tree.join(CANARY_PATH);
    std::fs::create_dir_all(canary.parent().expect("has parent"))?;
    std::fs::write(&canary, canary_bytes())?;
    std::fs::create_dir_all(tree.join("usr/share/oem"))?;
    // /etc lives on ROOT; the image carries the pristine copy.
    let factory = tree.join("usr/share/factory/etc");
    std::fs::create_dir_all(&factory)?;
    cmd::run(
        Command::new("cp")
            .arg("-a")
            .arg(tree.join("etc").join("."))
            .arg(&factory),
    )?;
    Ok(tree)
}

/// The update defaults in /usr; the overlay's copy names the channel the build chose.
const UPDATE_CONF: &str = "usr/share/coreos/update.conf";

/// `text` with its `GROUP=` line set to `channel` (the overlay's file must have one).
fn with_group(text: &str, channel: &str) -> Result<String> {
    let mut found = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("GROUP=") {
            found = true;
            out.push_str(&format!("GROUP={channel}"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    anyhow::ensure!(
        found,
        "rootfs/overlay/{UPDATE_CONF} has no GROUP= line to set the channel in"
    );
    Ok(out)
}

fn os_release(r: &Release) -> String {
    format!(
        "NAME=\"Ferrocore\"\nID=ferrocore\nID_LIKE=coreos\nVERSION={v}\nVERSION_ID={v}\nBUILD_ID={b}\n\
         PRETTY_NAME=\"Ferrocore {v} (build {b})\"\nANSI_COLOR=\"38;5;208\"\n",
        v = r.version,
        b = r.build_id
    )
}

fn copy_preserving(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::symlink_metadata(to).is_ok() {
        std::fs::remove_file(to).with_context(|| format!("replacing {}", to.display()))?;
    }
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    } else {
        std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_group;

    #[test]
    fn the_group_line_names_the_chosen_channel_and_nothing_else_changes() {
        let text = "# GROUP: the channel\nGROUP=stable\nSERVER=https://u.example/v1/update/\n";
        assert_eq!(
            with_group(text, "beta").unwrap(),
            "# GROUP: the channel\nGROUP=beta\nSERVER=https://u.example/v1/update/\n"
        );
        assert!(with_group("SERVER=x\n", "beta")
            .unwrap_err()
            .to_string()
            .contains("no GROUP= line"));
    }
}
