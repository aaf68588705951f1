//! Finding block devices through sysfs (no udev in the initrd): partitions by GPT label
//! (`PARTNAME=` in uevent), device-mapper devices by name, and a live system's `root=` disk by
//! name, GPT label or ext4 label/UUID (read from the superblock, as blkid would).

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Key/value lines of a sysfs `uevent` file.
pub fn uevent_value(uevent: &str, key: &str) -> Option<String> {
    uevent
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

/// The device names under `sys_block` (normally /sys/class/block), sorted.
fn block_names(sys_block: &Path) -> Option<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Some(names)
}

/// Scans `sys_block` for a partition whose GPT label is `label`.
pub fn find_by_partlabel(sys_block: &Path, label: &str) -> Option<String> {
    block_names(sys_block)?.into_iter().find(|name| {
        std::fs::read_to_string(sys_block.join(name).join("uevent"))
            .ok()
            .and_then(|u| uevent_value(&u, "PARTNAME"))
            .is_some_and(|p| p == label)
    })
}

/// Scans for a device-mapper device by its dm name (e.g. `usr` from `dm-mod.create=`).
pub fn find_dm(sys_block: &Path, dm_name: &str) -> Option<String> {
    std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = std::fs::read_to_string(e.path().join("dm/name")).ok()?;
            (n.trim() == dm_name).then_some(name)
        })
}

/// The disk a live system's `root=` names, as the kernel and udev spell it: `/dev/vdb`,
/// `PARTLABEL=ROOT`, `LABEL=ROOT` or `UUID=…` (the last two of an ext4 filesystem).
#[derive(Debug, PartialEq)]
pub enum RootSpec<'a> {
    Dev(&'a str),
    PartLabel(&'a str),
    Label(&'a str),
    Uuid(&'a str),
}

impl<'a> RootSpec<'a> {
    /// None for what we cannot match on (e.g. `PARTUUID=`).
    pub fn parse(spec: &'a str) -> Option<RootSpec<'a>> {
        if let Some(name) = spec.strip_prefix("/dev/") {
            return Some(RootSpec::Dev(name));
        }
        match spec.split_once('=')? {
            ("PARTLABEL", l) => Some(RootSpec::PartLabel(l)),
            ("LABEL", l) => Some(RootSpec::Label(l)),
            ("UUID", u) => Some(RootSpec::Uuid(u)),
            _ => None,
        }
    }
}

/// The device `spec` names; `dev` is where the device nodes are (normally /dev).
pub fn find_root(sys_block: &Path, dev: &Path, spec: &RootSpec) -> Option<String> {
    let wanted = |id: &Ext4Id| match spec {
        RootSpec::Label(l) => id.label == *l,
        RootSpec::Uuid(u) => id.uuid.eq_ignore_ascii_case(u),
        RootSpec::Dev(_) | RootSpec::PartLabel(_) => false,
    };
    match spec {
        RootSpec::Dev(name) => sys_block.join(name).exists().then(|| name.to_string()),
        RootSpec::PartLabel(label) => find_by_partlabel(sys_block, label),
        RootSpec::Label(_) | RootSpec::Uuid(_) => block_names(sys_block)?
            .into_iter()
            .find(|name| ext4_id(&dev.join(name)).is_some_and(|id| wanted(&id))),
    }
}

/// An ext4 filesystem's volume label and UUID.
#[derive(Debug, PartialEq)]
pub struct Ext4Id {
    pub label: String,
    pub uuid: String,
}

/// Reads the ext2/3/4 superblock (1024 bytes in; magic 0xEF53 at 56, UUID at 104, label at 120).
pub fn ext4_id(device: &Path) -> Option<Ext4Id> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(device).ok()?;
    f.seek(SeekFrom::Start(1024)).ok()?;
    let mut sb = [0u8; 136];
    f.read_exact(&mut sb).ok()?;
    if sb[56..58] != [0x53, 0xEF] {
        return None;
    }
    let u = &sb[104..120];
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex(&u[0..4]),
        hex(&u[4..6]),
        hex(&u[6..8]),
        hex(&u[8..10]),
        hex(&u[10..16])
    );
    let label = &sb[120..136];
    let end = label.iter().position(|&b| b == 0).unwrap_or(label.len());
    Some(Ext4Id {
        label: String::from_utf8_lossy(&label[..end]).into_owned(),
        uuid,
    })
}

/// Waits (disks probe asynchronously) for `find` to name a device; returns its /dev path.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    find: impl Fn() -> Option<String>,
) -> Result<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(name) = find() {
            let dev = PathBuf::from("/dev").join(name);
            if dev.exists() {
                return Ok(dev);
            }
        }
        if start.elapsed() > timeout {
            bail!("{what} did not appear within {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_partitions_by_label_and_dm_by_name() {
        let sys = tempfile::tempdir().unwrap();
        for (dev, uevent) in [
            ("vda", "MAJOR=254\nDEVNAME=vda\nDEVTYPE=disk\n"),
            (
                "vda3",
                "MAJOR=254\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=USR-A\n",
            ),
            ("vda9", "DEVNAME=vda9\nPARTN=9\nPARTNAME=ROOT\n"),
        ] {
            std::fs::create_dir(sys.path().join(dev)).unwrap();
            std::fs::write(sys.path().join(dev).join("uevent"), uevent).unwrap();
        }
        std::fs::create_dir_all(sys.path().join("dm-0/dm")).unwrap();
        std::fs::write(sys.path().join("dm-0/dm/name"), "usr\n").unwrap();
        assert_eq!(
            find_by_partlabel(sys.path(), "ROOT").as_deref(),
            Some("vda9")
        );
        assert_eq!(
            find_by_partlabel(sys.path(), "USR-A").as_deref(),
            Some("vda3")
        );
        assert_eq!(find_by_partlabel(sys.path(), "USR-B"), None);
        assert_eq!(find_dm(sys.path(), "usr").as_deref(), Some("dm-0"));
        assert_eq!(find_dm(sys.path(), "other"), None);
    }

    /// Our superblock reading against what mkfs.ext4 wrote and blkid reads.
    #[test]
    fn finds_a_root_disk_by_name_label_and_uuid_as_blkid_does() {
        let dir = tempfile::tempdir().unwrap();
        let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        for name in ["vda", "vdb", "vdc"] {
            std::fs::create_dir_all(sys.join(name)).unwrap();
            std::fs::write(sys.join(name).join("uevent"), format!("DEVNAME={name}\n")).unwrap();
            std::fs::File::create(dev.join(name))
                .unwrap()
                .set_len(8 << 20)
                .unwrap();
        }
        let mkfs = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "PXE-ROOT"])
            .arg(dev.join("vdb"))
            .status()
            .expect("mkfs.ext4 (Debian package e2fsprogs)");
        assert!(mkfs.success());
        let blkid = |tag: &str| {
            let out = std::process::Command::new("blkid")
                .args(["-o", "value", "-s", tag])
                .arg(dev.join("vdb"))
                .output()
                .expect("blkid (Debian package util-linux)");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let id = ext4_id(&dev.join("vdb")).unwrap();
        assert_eq!(id.label, blkid("LABEL"));
        assert_eq!(id.uuid, blkid("UUID"));
        assert_eq!(ext4_id(&dev.join("vda")), None, "a blank disk is no ext4");

        let find = |spec: &str| find_root(&sys, &dev, &RootSpec::parse(spec).unwrap());
        assert_eq!(find("LABEL=PXE-ROOT").as_deref(), Some("vdb"));
        assert_eq!(
            find(&format!("UUID={}", id.uuid.to_uppercase())).as_deref(),
            Some("vdb")
        );
        assert_eq!(find("/dev/vdc").as_deref(), Some("vdc"));
        assert_eq!(find("/dev/vdz"), None);
        assert_eq!(find("LABEL=OTHER"), None);
        assert!(RootSpec::parse("UUID=x").is_some() && RootSpec::parse("PARTUUID=x").is_none());
    }
}
