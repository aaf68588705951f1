//! The target disk, checked before anything is written: it must be a whole block device, large
//! enough, with nothing on it mounted, used as swap, or held by another device (device-mapper,
//! loop, RAID) — the live system's own `/usr` is such a holder.
//!
//! Everything is read from sysfs and `/proc`, whose roots are parameters so that the rules can be
//! tested against prepared trees.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}: no such device")]
    Missing(PathBuf),
    #[error("{0}: not a block device (give a disk such as /dev/sda or /dev/vdb)")]
    NotBlockDevice(PathBuf),
    #[error("{path}: is a partition of {disk}; give the whole disk")]
    Partition { path: PathBuf, disk: String },
    #[error("{path}: {device} is mounted at {mountpoint}; unmount it first")]
    Mounted {
        path: PathBuf,
        device: String,
        mountpoint: String,
    },
    #[error("{path}: {device} is in use as swap")]
    Swap { path: PathBuf, device: String },
    #[error("{path}: {device} is in use by {holder} (the running system or another device)")]
    Held {
        path: PathBuf,
        device: String,
        holder: String,
    },
    #[error("{path}: the disk has {size} bytes ({}), the image needs {needed} ({})", gib(*size), gib(*needed))]
    TooSmall {
        path: PathBuf,
        size: u64,
        needed: u64,
    },
    #[error("{path}: reading {what}: {source}")]
    Io {
        path: PathBuf,
        what: String,
        source: std::io::Error,
    },
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Where the kernel's views of devices and mounts are.
#[derive(Clone, Debug)]
pub struct System {
    pub sys: PathBuf,
    pub proc_: PathBuf,
}

impl Default for System {
    fn default() -> Self {
        System {
            sys: "/sys".into(),
            proc_: "/proc".into(),
        }
    }
}

/// A whole disk and its partitions, by kernel name (`vdb`, `vdb1`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    /// Kernel names and partition numbers.
    pub partitions: Vec<(String, u32)>,
}

impl Disk {
    /// The device node of partition `number` (`/dev/vdb9`, `/dev/nvme0n1p9`).
    pub fn partition_path(&self, number: u32) -> Option<PathBuf> {
        self.partitions
            .iter()
            .find(|(_, n)| *n == number)
            .map(|(name, _)| Path::new("/dev").join(name))
    }
}

impl System {
    /// Resolves `path` to a whole disk and applies every rule except the size.
    pub fn disk(&self, path: &Path) -> Result<Disk, Refusal> {
        let meta = std::fs::metadata(path).map_err(|_| Refusal::Missing(path.into()))?;
        if !meta.file_type().is_block_device() {
            return Err(Refusal::NotBlockDevice(path.into()));
        }
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        self.disk_by_number(path, major, minor)
    }

    /// As [`System::disk`], for a device known by its major:minor numbers.
    pub fn disk_by_number(&self, path: &Path, major: u64, minor: u64) -> Result<Disk, Refusal> {
        let node = self.sys.join(format!("dev/block/{major}:{minor}"));
        let io = |what: &str| {
            let path = path.to_path_buf();
            let what = what.to_string();
            move |source| Refusal::Io { path, what, source }
        };
        let real = std::fs::canonicalize(&node).map_err(io("its sysfs entry"))?;
        let name = file_name(&real);
        if real.join("partition").exists() {
            let disk = real.parent().map(file_name).unwrap_or_default();
            return Err(Refusal::Partition {
                path: path.into(),
                disk,
            });
        }
        let sectors = read_trim(&real.join("size")).map_err(io("its size"))?;
        let size = sectors.parse::<u64>().unwrap_or(0) * 512;
        let mut partitions = Vec::new();
        for entry in std::fs::read_dir(&real).map_err(io("its partitions"))? {
            let entry = entry.map_err(io("its partitions"))?;
            if let Ok(n) = read_trim(&entry.path().join("partition")) {
                partitions.push((file_name(&entry.path()), n.parse().unwrap_or(0)));
            }
        }
        partitions.sort_by_key(|(_, n)| *n);
        let disk = Disk {
            path: path.into(),
            name,
            size,
            partitions,
        };
        self.check_unused(&disk, &real)?;
        Ok(disk)
    }

    fn check_unused(&self, disk: &Disk, real: &Path) -> Result<(), Refusal> {
        let mut devices = vec![(disk.name.clone(), real.to_path_buf())];
        for (name, _) in &disk.partitions {
            devices.push((name.clone(), real.join(name)));
        }
        let mountinfo =
            std::fs::read_to_string(self.proc_.join("self/mountinfo")).unwrap_or_default();
        let swaps = std::fs::read_to_string(self.proc_.join("swaps")).unwrap_or_default();
        for (name, dir) in &devices {
            let number = read_trim(&dir.join("dev")).unwrap_or_default();
            // mountinfo: id parent major:minor root mountpoint …
            for line in mountinfo.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                if fields.len() > 4 && fields[2] == number {
                    return Err(Refusal::Mounted {
                        path: disk.path.clone(),
                        device: name.clone(),
                        mountpoint: fields[4].replace("\\040", " "),
                    });
                }
            }
            for line in swaps.lines().skip(1) {
                let dev = line.split_whitespace().next().unwrap_or("");
                if dev == format!("/dev/{name}") {
                    return Err(Refusal::Swap {
                        path: disk.path.clone(),
                        device: name.clone(),
                    });
                }
            }
            if let Ok(holders) = std::fs::read_dir(dir.join("holders")) {
                if let Some(h) = holders.flatten().next() {
                    let holder = file_name(&h.path());
                    // Name device-mapper holders by their table name (`usr`), as dmsetup would.
                    let dm_name = read_trim(&self.sys.join("block").join(&holder).join("dm/name"));
                    let holder = match dm_name {
                        Ok(n) => format!("{holder} ({n})"),
                        Err(_) => holder,
                    };
                    return Err(Refusal::Held {
                        path: disk.path.clone(),
                        device: name.clone(),
                        holder,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Refuses a disk smaller than `needed` bytes.
pub fn check_size(disk: &Disk, needed: u64) -> Result<(), Refusal> {
    if disk.size < needed {
        return Err(Refusal::TooSmall {
            path: disk.path.clone(),
            size: disk.size,
            needed,
        });
    }
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_trim(p: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(p)?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs with disk vdb (8 GiB, partitions vdb1 and vdb9) and a loop0 held by dm-0 "usr".
    fn fake() -> (tempfile::TempDir, System) {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        let dev = sys.join("devices/pci/virtio1/block/vdb");
        let w = |p: PathBuf, s: &str| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w(dev.join("size"), "16777216\n");
        w(dev.join("dev"), "254:16\n");
        std::fs::create_dir_all(dev.join("holders")).unwrap();
        for (n, minor) in [(1, 17), (9, 25)] {
            let p = dev.join(format!("vdb{n}"));
            w(p.join("partition"), &format!("{n}\n"));
            w(p.join("dev"), &format!("254:{minor}\n"));
            std::fs::create_dir_all(p.join("holders")).unwrap();
        }
        let lo = sys.join("devices/virtual/block/loop0");
        w(lo.join("size"), "400000\n");
        w(lo.join("dev"), "7:0\n");
        std::fs::create_dir_all(lo.join("holders/dm-0")).unwrap();
        w(sys.join("block/dm-0/dm/name"), "usr\n");
        std::fs::create_dir_all(sys.join("dev/block")).unwrap();
        let link = |target: &Path, n: &str| {
            std::os::unix::fs::symlink(target, sys.join("dev/block").join(n)).unwrap()
        };
        link(&dev, "254:16");
        link(&dev.join("vdb9"), "254:25");
        link(&lo, "7:0");
        let proc_ = t.path().join("proc");
        w(
            proc_.join("self/mountinfo"),
            "22 1 0:21 / / rw - tmpfs tmpfs rw\n",
        );
        w(proc_.join("swaps"), "Filename Type Size Used Priority\n");
        let s = System { sys, proc_ };
        (t, s)
    }

    #[test]
    fn a_free_disk_is_accepted_with_its_partitions() {
        let (_t, s) = fake();
        let d = s.disk_by_number(Path::new("/dev/vdb"), 254, 16).unwrap();
        assert_eq!(d.name, "vdb");
        assert_eq!(d.size, 8 << 30);
        assert_eq!(d.partition_path(9), Some(PathBuf::from("/dev/vdb9")));
        assert!(check_size(&d, 3 << 30).is_ok());
        let e = check_size(&d, 9 << 30).unwrap_err().to_string();
        assert!(e.contains("8.0 GiB") && e.contains("9.0 GiB"), "{e}");
    }

    #[test]
    fn a_partition_is_refused() {
        let (_t, s) = fake();
        let e = s
            .disk_by_number(Path::new("/dev/vdb9"), 254, 25)
            .unwrap_err();
        assert!(
            matches!(e, Refusal::Partition { ref disk, .. } if disk == "vdb"),
            "{e}"
        );
    }

    #[test]
    fn a_mounted_partition_is_refused() {
        let (t, s) = fake();
        std::fs::write(
            t.path().join("proc/self/mountinfo"),
            "22 1 0:21 / / rw - tmpfs tmpfs rw\n40 22 254:25 / /mnt/my\\040root rw - ext4 /dev/vdb9 rw\n",
        )
        .unwrap();
        let e = s
            .disk_by_number(Path::new("/dev/vdb"), 254, 16)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/vdb: vdb9 is mounted at /mnt/my root; unmount it first"
        );
    }

    #[test]
    fn swap_is_refused() {
        let (t, s) = fake();
        std::fs::write(
            t.path().join("proc/swaps"),
            "Filename Type Size Used Priority\n/dev/vdb1 partition 1000 0 -2\n",
        )
        .unwrap();
        let e = s
            .disk_by_number(Path::new("/dev/vdb"), 254, 16)
            .unwrap_err();
        assert!(
            matches!(e, Refusal::Swap { ref device, .. } if device == "vdb1"),
            "{e}"
        );
    }

    #[test]
    fn a_device_under_the_running_usr_is_refused() {
        let (_t, s) = fake();
        let e = s.disk_by_number(Path::new("/dev/loop0"), 7, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/loop0: loop0 is in use by dm-0 (usr) (the running system or another device)"
        );
    }

    #[test]
    fn files_and_missing_paths_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("disk.img");
        std::fs::write(&f, b"x").unwrap();
        let s = System::default();
        assert!(matches!(s.disk(&f), Err(Refusal::NotBlockDevice(_))));
        assert!(matches!(
            s.disk(&t.path().join("nope")),
            Err(Refusal::Missing(_))
        ));
    }
}
