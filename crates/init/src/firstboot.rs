//! First boot: ROOT starts empty. We lay out `/`, copy `/etc` from the factory copy in `/usr` and
//! give the machine its own id. The machine-id is written last, so an interrupted first boot is
//! simply redone; a machine with one is never "first boot" again.

use anyhow::{Context, Result};
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

/// Where the image keeps the pristine `/etc`.
pub const FACTORY_ETC: &str = "usr/share/factory/etc";

pub fn is_first_boot(root: &Path) -> bool {
    std::fs::read_to_string(root.join("etc/machine-id"))
        .map(|s| s.trim().is_empty())
        .unwrap_or(true)
}

/// Creates the base layout below `root` (with `/usr` already mounted there) and `/etc`.
pub fn prepare(root: &Path, machine_id: &str) -> Result<()> {
    for (dir, mode) in [
        ("etc", 0o755),
        ("var", 0o755),
        ("var/lib", 0o755),
        ("var/log", 0o755),
        ("var/cache", 0o755),
        ("var/tmp", 0o1777),
        ("home", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("boot", 0o755),
        ("media", 0o755),
        ("mnt", 0o755),
        ("opt", 0o755),
        ("srv", 0o755),
    ] {
        let p = root.join(dir);
        std::fs::create_dir_all(&p).with_context(|| format!("creating /{dir}"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    // usr-merged: the classic top-level directories point into /usr.
    for name in ["bin", "sbin", "lib", "lib64"] {
        let link = root.join(name);
        if root.join("usr").join(name).exists() && std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("usr/{name}"), &link)
                .with_context(|| format!("linking /{name}"))?;
        }
    }
    let factory = root.join(FACTORY_ETC);
    copy_tree(&factory, &root.join("etc"))
        .with_context(|| format!("copying /{FACTORY_ETC} to /etc"))?;
    std::fs::write(root.join("etc/machine-id"), format!("{machine_id}\n"))
        .context("writing /etc/machine-id")?;
    Ok(())
}

/// A new random machine id: 32 lowercase hex digits, as systemd writes it.
pub fn new_machine_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("reading random bytes: {e}"))?;
    // Mark it as a v4 UUID, as systemd-machine-id-setup does.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Copies a tree preserving modes, ownership and symlinks; existing files are replaced.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
    std::fs::create_dir_all(dst)?;
    std::fs::set_permissions(dst, meta.permissions())?;
    lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        let ty = meta.file_type();
        if ty.is_dir() {
            copy_tree(&from, &to)?;
            continue;
        }
        if std::fs::symlink_metadata(&to).is_ok() {
            std::fs::remove_file(&to).with_context(|| format!("replacing {}", to.display()))?;
        }
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ty.is_file() {
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
            std::fs::set_permissions(&to, meta.permissions())?;
        } else {
            continue; // no device nodes or sockets belong in /etc
        }
        lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_boot_lays_out_root_and_is_not_repeated() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let factory = r.join(FACTORY_ETC);
        std::fs::create_dir_all(factory.join("ssh")).unwrap();
        std::fs::write(factory.join("hostname"), "ferrocore\n").unwrap();
        std::fs::write(factory.join("ssh/sshd_config"), "x").unwrap();
        std::fs::set_permissions(
            factory.join("ssh/sshd_config"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            factory.join("resolv.conf"),
        )
        .unwrap();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();

        assert!(is_first_boot(r));
        let id = new_machine_id().unwrap();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_machine_id().unwrap());
        prepare(r, &id).unwrap();

        assert!(!is_first_boot(r));
        assert_eq!(
            std::fs::read_to_string(r.join("etc/machine-id")).unwrap(),
            format!("{id}\n")
        );
        assert_eq!(
            std::fs::read_to_string(r.join("etc/hostname")).unwrap(),
            "ferrocore\n"
        );
        let mode = std::fs::metadata(r.join("etc/ssh/sshd_config"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_link(r.join("etc/resolv.conf")).unwrap(),
            Path::new("/run/systemd/resolve/stub-resolv.conf")
        );
        assert_eq!(
            std::fs::read_link(r.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert!(
            std::fs::symlink_metadata(r.join("lib64")).is_err(),
            "no link to a missing dir"
        );
        let tmp = std::fs::metadata(r.join("tmp"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(tmp & 0o7777, 0o1777);
    }
}
