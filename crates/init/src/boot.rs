//! The boot sequence: early mounts, `/usr` from the verity device, ROOT, first boot, switch_root.

use crate::{cmdline::Cmdline, firstboot, live, log, partitions};
use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

const SYS_BLOCK: &str = "/sys/class/block";
const SYSROOT: &str = "/sysroot";
/// The device-mapper name `dm-mod.create=` gives the verity device.
const USR_DM_NAME: &str = "usr";
const DEVICE_TIMEOUT: Duration = Duration::from_secs(30);

fn mount_fs(src: &str, target: &str, fstype: &str, flags: MsFlags) -> Result<()> {
    std::fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
    mount(Some(src), target, Some(fstype), flags, None::<&str>)
        .with_context(|| format!("mounting {src} ({fstype}) on {target}"))
}

/// /proc, /sys and /dev, which everything else needs.
pub fn mount_early() -> Result<()> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mount_fs("proc", "/proc", "proc", nosuid)?;
    mount_fs("sysfs", "/sys", "sysfs", nosuid)?;
    mount_fs("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID)?;
    Ok(())
}

pub fn run(cmdline: &Cmdline) -> Result<()> {
    let sys = Path::new(SYS_BLOCK);
    let live = live::is_live();
    if live {
        // PXE/ISO: /usr comes from the initramfs; ROOT lives in RAM unless `root=` names a disk.
        log::info("live system: /usr from the initramfs");
        live::setup_usr(USR_DM_NAME)?;
    } else {
        let slot = cmdline.slot().unwrap_or("?");
        log::info(&format!("booting slot USR-{slot}"));
    }

    let usr = partitions::wait_for("the verity device for /usr", DEVICE_TIMEOUT, || {
        partitions::find_dm(sys, USR_DM_NAME)
    })
    .context("dm-verity did not set up /usr: is dm-mod.create= on the command line, and is the slot written?")?;
    let root = if live {
        live_root(sys, cmdline.get("root").filter(|s| !s.is_empty()))?
    } else {
        let root = partitions::wait_for("the partition labelled ROOT", DEVICE_TIMEOUT, || {
            partitions::find_by_partlabel(sys, "ROOT")
        })?;
        mount_fs(&root.to_string_lossy(), SYSROOT, "ext4", MsFlags::empty())?;
        root
    };
    mount_fs(
        &usr.to_string_lossy(),
        &format!("{SYSROOT}/usr"),
        "erofs",
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
    )
    .context("/usr failed verification or is not an EROFS image")?;
    log::info(&format!(
        "/usr: {} (dm-verity), read-only; /: {}",
        usr.display(),
        root.display()
    ));

    let sysroot = Path::new(SYSROOT);
    if firstboot::is_first_boot(sysroot) {
        let id = firstboot::new_machine_id()?;
        log::info(&format!("first boot: preparing ROOT, machine-id {id}"));
        firstboot::prepare(sysroot, &id).context("preparing ROOT on first boot")?;
    }
    if live {
        live::mask_disk_units(sysroot)?;
    }
    switch_root(cmdline.next_init())
}

/// A live system's ROOT: a tmpfs, or the ext4 disk `root=` names (persistent across PXE boots,
/// as CoreOS's `root=` on its PXE command line). The disk is never formatted here: a missing or
/// unformatted disk stops the boot with the reason rather than running from RAM unnoticed.
fn live_root(sys: &Path, spec: Option<&str>) -> Result<std::path::PathBuf> {
    let Some(spec) = spec else {
        log::info("ROOT in RAM (tmpfs): name a disk with root= to keep it");
        mount_fs("tmpfs", SYSROOT, "tmpfs", MsFlags::empty())?;
        return Ok("tmpfs".into());
    };
    let parsed = partitions::RootSpec::parse(spec).with_context(|| {
        format!("root={spec}: name the disk as /dev/NAME, PARTLABEL=, LABEL= or UUID= (of an ext4 filesystem)")
    })?;
    let dev = partitions::wait_for(&format!("root={spec}"), DEVICE_TIMEOUT, || {
        partitions::find_root(sys, Path::new("/dev"), &parsed)
    })
    .with_context(|| {
        format!("no disk matches root={spec} (an ext4 filesystem, e.g. mkfs.ext4 -L ROOT /dev/sdb; remove root= to run from RAM)")
    })?;
    mount_fs(&dev.to_string_lossy(), SYSROOT, "ext4", MsFlags::empty()).with_context(|| {
        format!(
            "root={spec}: {} holds no ext4 filesystem (nothing was written to it)",
            dev.display()
        )
    })?;
    log::info(&format!("ROOT on {} (root={spec})", dev.display()));
    Ok(dev)
}

/// Moves the API filesystems and ROOT to `/` and execs the real init.
fn switch_root(init: &str) -> Result<()> {
    for dir in ["/dev", "/proc", "/sys"] {
        let target = format!("{SYSROOT}{dir}");
        std::fs::create_dir_all(&target)?;
        mount(
            Some(dir),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .with_context(|| format!("moving {dir} into {SYSROOT}"))?;
    }
    std::env::set_current_dir(SYSROOT)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("moving ROOT to /")?;
    nix::unistd::chroot(".").context("chroot into ROOT")?;
    std::env::set_current_dir("/")?;
    log::info(&format!("switching to {init}"));
    let path = CString::new(init)?;
    nix::unistd::execv(&path, std::slice::from_ref(&path))
        .with_context(|| format!("executing {init}"))?;
    unreachable!("execv returned without an error")
}

pub fn reboot() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // reboot(2) only returns on error; PID 1 must not exit.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
