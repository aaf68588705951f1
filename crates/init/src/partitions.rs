//! Finding block devices through sysfs (no udev in the initrd): partitions by GPT label
//! (`PARTNAME=` in uevent) and device-mapper devices by name.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Key/value lines of a sysfs `uevent` file.
pub fn uevent_value(uevent: &str, key: &str) -> Option<String> {
    uevent
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

/// Scans `sys_block` (normally /sys/class/block) for a partition whose GPT label is `label`.
pub fn find_by_partlabel(sys_block: &Path, label: &str) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.into_iter().find(|name| {
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
}
