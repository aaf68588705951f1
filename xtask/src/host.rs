//! Host packages: each verb names the Debian packages it needs; missing ones are installed once
//! (as root) or reported with the exact `apt-get install` line to run (as a normal user).

use anyhow::{bail, Result};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

/// Tools we shell out to, and the Debian package that ships each.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("grub-mkimage", "grub-common"),
    ("mkfs.erofs", "erofs-utils"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mmdebstrap", "mmdebstrap"),
    ("veritysetup", "cryptsetup-bin"),
    ("sgdisk", "gdisk"),
    ("xorriso", "xorriso"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("make", "make"),
    ("bc", "bc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("zstd", "zstd"),
    ("cpio", "cpio"),
    ("tar", "tar"),
    ("mformat", "mtools"),
    ("mcopy", "mtools"),
    ("fsck.fat", "dosfstools"),
];

pub fn package_for_tool(tool: &str) -> Option<&'static str> {
    TOOLS.iter().find(|(t, _)| *t == tool).map(|(_, p)| *p)
}

/// Packages for building the kernel.
pub const KERNEL: &[&str] = &[
    "linux-source-6.1",
    "build-essential",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "xz-utils",
    "cpio",
    "python3",
];
/// Packages for building the root filesystem.
pub const ROOTFS: &[&str] = &["mmdebstrap", "tar", "zstd"];
/// Packages for assembling the disk image.
pub const IMAGE: &[&str] = &[
    "grub-efi-amd64-bin",
    "grub-pc-bin",
    "grub-common",
    "erofs-utils",
    "e2fsprogs",
    "qemu-utils",
    "cpio",
    "zstd",
    "mtools",
    // sgdisk writes and checks the partition table; grub-mkrescue needs xorriso for the live ISO.
    "gdisk",
    "xorriso",
];
/// Packages the workspace's unit tests use as oracles (veritysetup, sgdisk, cpio, real etcd).
pub const UNIT_TESTS: &[&str] = &[
    "cryptsetup-bin",
    "gdisk",
    "cpio",
    "etcd-server",
    "etcd-client",
    // store's TLS tests: certificates made with openssl, v2 checked with curl.
    "openssl",
    "curl",
    "xorriso",
    "python3-venv",
    // gptprio's ESP tests: mtools writes the ESP as the image build does, fsck.fat checks it.
    "mtools",
    "dosfstools",
    "qemu-utils",
];

/// Emulators the cloud upload tests run (crates/cloud/tests), from PyPI into a venv under the
/// cache: (the script the test starts, the pinned requirement that provides it).
pub const PYTHON_TOOLS: &[(&str, &str)] = &[
    ("moto_server", "moto[server]==5.2.5"),
    ("gcp-storage-emulator", "gcp-storage-emulator==2026.7.19"),
];

/// `~/.cache/ferrocore/venv`, where crates/cloud's tests look for the emulators.
pub fn venv() -> PathBuf {
    crate::paths::cache().join("venv")
}

/// Makes the venv and pip-installs whichever of [`PYTHON_TOOLS`] is missing.
pub fn ensure_python_tools() -> Result<()> {
    let venv = venv();
    let bin = venv.join("bin");
    let missing: Vec<&str> = PYTHON_TOOLS
        .iter()
        .filter(|(script, _)| !bin.join(script).exists())
        .map(|(_, req)| *req)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !bin.join("pip").exists() {
        eprintln!("making a Python venv at {}", venv.display());
        crate::cmd::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    eprintln!(
        "installing into {}: {} (pip)",
        venv.display(),
        missing.join(" ")
    );
    crate::cmd::run(
        Command::new(bin.join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(&missing),
    )
}
/// Packages for booting and checking images.
pub const TEST: &[&str] = &[
    "qemu-system-x86",
    "ovmf",
    "openssh-client",
    "cryptsetup-bin",
    "gdisk",
    "xorriso",
    "busybox-static",
    // The virtualbox board's tests: Vagrant must accept its boxes (and has the insecure key).
    "vagrant",
    // The ec2/gce boot tests: QEMU runs one `socat` per guest connection to the metadata service.
    "socat",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Makes sure every package in `groups` is installed.
pub fn ensure(groups: &[&[&str]]) -> Result<()> {
    let mut missing: Vec<&str> = groups
        .iter()
        .flat_map(|g| g.iter().copied())
        .filter(|p| !installed(p))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let line = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        bail!("missing host packages; run as root:\n  apt-get update && {line}");
    }
    eprintln!("installing host packages: {} (apt-get)", missing.join(" "));
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    crate::cmd::run(Command::new("apt-get").args(["update", "-q"]).envs(env))?;
    crate::cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .envs(env),
    )?;
    Ok(())
}
