//! The peer for build and boot figures. mkosi cannot build disk images here (its disk step needs
//! loop devices and vfat mounts, which this host does not allow), so the peer is plain Debian:
//! the same package list plus Debian's cloud kernel and initramfs-tools, made by the same
//! mmdebstrap, on one ext4 partition, booted by QEMU directly with Debian's kernel and initrd —
//! no GRUB, no verity, no A/B, no first-boot /etc copy.

use crate::{build_rootfs, cache, cmd, paths};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RECIPE: &str = "peer-v1";

pub struct Peer {
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Time mmdebstrap took for the peer's rootfs, if it was built in this run.
    pub build_time: Option<Duration>,
    pub key: PathBuf,
}

pub fn build(work: &Path) -> Result<Peer> {
    let mut pkgs = build_rootfs::packages()?;
    pkgs.extend([
        "linux-image-cloud-amd64".to_string(),
        "initramfs-tools".to_string(),
    ]);
    let hook = paths::root().join("rootfs/customize.sh");
    let network =
        paths::root().join("rootfs/overlay/usr/lib/systemd/network/80-ferrocore-dhcp.network");
    let mut key = cache::Key::new(RECIPE);
    key.add_bytes("packages", pkgs.join(",").as_bytes());
    key.add_file(&hook)?;
    key.add_file(&network)?;
    let mut build_time = None;
    let dir = cache::get_or_build("peer-rootfs", &key.finish(), |out| {
        let start = Instant::now();
        cmd::run_logged(
            Command::new("mmdebstrap")
                .args(["--variant=minbase", "--components=main"])
                .arg(format!("--include={}", pkgs.join(",")))
                .arg(format!("--customize-hook={} \"$1\"", hook.display()))
                // Plain Debian keeps the host keys made at install and gets the same DHCP setup.
                .arg("--customize-hook=chroot \"$1\" ssh-keygen -A")
                .arg(format!(
                    "--customize-hook=cp {} \"$1/etc/systemd/network/\"",
                    network.display()
                ))
                .arg("bookworm")
                .arg(out.join("rootfs.tar.zst")),
            &paths::target().join("bench/peer-mmdebstrap.log"),
            "peer: mmdebstrap",
        )?;
        build_time = Some(start.elapsed());
        Ok(())
    })?;

    let tree = work.join("peer-tree");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::create_dir_all(&tree)?;
    cmd::run(
        Command::new("tar")
            .args(["--zstd", "-xpf"])
            .arg(dir.join("rootfs.tar.zst"))
            .arg("-C")
            .arg(&tree)
            .arg("--numeric-owner"),
    )?;
    let ssh_key = work.join("peer-key");
    let _ = std::fs::remove_file(&ssh_key);
    let _ = std::fs::remove_file(ssh_key.with_extension("pub"));
    cmd::run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&ssh_key),
    )?;
    let ssh_dir = tree.join("home/core/.ssh");
    std::fs::create_dir_all(&ssh_dir)?;
    std::fs::copy(
        ssh_key.with_extension("pub"),
        ssh_dir.join("authorized_keys"),
    )?;
    cmd::run(
        Command::new("chown")
            .args(["-R", "500:500"])
            .arg(tree.join("home/core")),
    )?;
    let boot = tree.join("boot");
    let find = |prefix: &str| -> Result<PathBuf> {
        std::fs::read_dir(&boot)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .with_context(|| format!("no {prefix}* in the peer's /boot"))
    };
    let kernel = work.join("peer-vmlinuz");
    let initrd = work.join("peer-initrd");
    std::fs::copy(find("vmlinuz-")?, &kernel)?;
    std::fs::copy(find("initrd.img-")?, &initrd)?;
    let disk = work.join("peer.img");
    std::fs::File::create(&disk)?.set_len(3 << 30)?;
    cmd::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "root", "-d"])
            .arg(&tree)
            .arg(&disk),
    )?;
    std::fs::remove_dir_all(&tree)?;
    Ok(Peer {
        disk,
        kernel,
        initrd,
        build_time,
        key: ssh_key,
    })
}
