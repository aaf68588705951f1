//! After the image is written: the kernel re-reads the new partition table, and the cloud-config
//! (`-c`) and OEM id (`-o`) go where the first boot reads them — as coreos-install did:
//! `/var/lib/coreos-install/user_data` on ROOT (applied by `coreos-install-user-data.service`
//! at every boot) and `oem_id` in the OEM partition's `grub.cfg`.

use crate::device::Disk;
use anyhow::{bail, Context, Result};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const ROOT_PARTITION: u32 = 9;
pub const OEM_PARTITION: u32 = 6;
pub const USER_DATA: &str = "var/lib/coreos-install/user_data";

nix::ioctl_none!(blkrrpart, 0x12, 95);

/// Asks the kernel to read the new partition table, then waits for the partitions' nodes.
pub fn reread_partitions(disk: &Disk, numbers: &[u32]) -> Result<()> {
    let f = std::fs::File::open(&disk.path)
        .with_context(|| format!("opening {}", disk.path.display()))?;
    // SAFETY: BLKRRPART takes no argument; the fd is an open block device.
    unsafe { blkrrpart(f.as_raw_fd()) }
        .with_context(|| format!("{}: re-reading the partition table", disk.path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in numbers {
        loop {
            if let Some(p) = partition_node(disk, *n) {
                if p.exists() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: partition {n} did not appear after writing the image",
                    disk.path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// The node of partition `n` as the kernel names it now (`vdb9`, `nvme0n1p9`).
fn partition_node(disk: &Disk, n: u32) -> Option<PathBuf> {
    let dir = Path::new("/sys/class/block").join(&disk.name);
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let num = std::fs::read_to_string(entry.path().join("partition")).ok();
        if num.as_deref().map(str::trim) == Some(&n.to_string()) {
            return Some(Path::new("/dev").join(entry.file_name()));
        }
    }
    None
}

/// Mounts `partition` (ext4) on a fresh directory under /run for the duration of `f`.
fn with_mounted<T>(partition: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    use nix::mount::{mount, umount, MsFlags};
    let dir = PathBuf::from(format!("/run/coreos-install.{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    mount(
        Some(partition),
        &dir,
        Some("ext4"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting {}", partition.display()))?;
    let result = f(&dir);
    let unmounted = umount(&dir).with_context(|| format!("unmounting {}", dir.display()));
    let _ = std::fs::remove_dir(&dir);
    let value = result?;
    unmounted?;
    Ok(value)
}

/// Writes the (already validated) cloud-config onto the new ROOT.
pub fn install_user_data(disk: &Disk, text: &str) -> Result<()> {
    let part = partition_node(disk, ROOT_PARTITION).context("no ROOT partition (9)")?;
    with_mounted(&part, |root| {
        let path = root.join(USER_DATA);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        std::fs::write(&path, text).with_context(|| format!("writing /{USER_DATA}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    })
}

/// Records the OEM id in the OEM partition's grub.cfg, which the boot loader reads first.
pub fn install_oem_id(disk: &Disk, oem: &str) -> Result<()> {
    if oem.is_empty()
        || !oem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("OEM id {oem:?}: use letters, digits, '-' and '_'");
    }
    let part = partition_node(disk, OEM_PARTITION).context("no OEM partition (6)")?;
    with_mounted(&part, |oem_dir| {
        let cfg = oem_dir.join("grub.cfg");
        let mut text = std::fs::read_to_string(&cfg).unwrap_or_default();
        text.push_str(&oem_grub_lines(oem));
        std::fs::write(&cfg, text).context("writing the OEM grub.cfg")?;
        Ok(())
    })
}

fn oem_grub_lines(oem: &str) -> String {
    format!(
        "# Written by coreos-install -o {oem}\nset oem_id=\"{oem}\"\nset linux_append=\"$linux_append coreos.oem.id={oem}\"\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn oem_lines_extend_the_kernel_command_line() {
        let l = super::oem_grub_lines("vmware");
        assert!(l.contains("set oem_id=\"vmware\""));
        assert!(l.contains("$linux_append coreos.oem.id=vmware"));
    }
}
