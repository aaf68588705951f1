//! Live systems (PXE, ISO): `/usr` is an EROFS + verity image carried inside the initramfs.
//! The kernel's `dm-mod.create=` runs before the initramfs exists, so the init glue sets the
//! device up itself: a read-only loop device over the image file, then a dm-verity target over
//! that loop device (device-mapper ioctls; no crate offers them without bindgen/libclang).

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The image and its verity table inside the initramfs (written by `xtask build-image --board pxe`).
pub const USR_IMAGE: &str = "/ferrocore/usr.img";
pub const USR_TABLE: &str = "/ferrocore/usr.table";
/// In `usr.table`, where the device goes (the loop device's number is known only at boot).
pub const DEVICE_PLACEHOLDER: &str = "@DEVICE@";

pub fn is_live() -> bool {
    Path::new(USR_IMAGE).exists()
}

// <linux/loop.h>
const LOOP_CTL_GET_FREE: libc_ulong = 0x4C82;
const LOOP_CONFIGURE: libc_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
#[allow(non_camel_case_types)]
type libc_ulong = nix::sys::ioctl::ioctl_num_type;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Attaches `image` read-only to a free loop device; returns its path (e.g. `/dev/loop0`).
pub fn attach_loop(image: &Path) -> Result<String> {
    let control = File::open("/dev/loop-control").context("opening /dev/loop-control")?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
    let n = unsafe { nix::libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
    if n < 0 {
        bail!("no free loop device: {}", std::io::Error::last_os_error());
    }
    let dev = format!("/dev/loop{n}");
    let backing = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let loop_dev = OpenOptions::new()
        .read(true)
        .open(&dev)
        .with_context(|| format!("opening {dev}"))?;
    // SAFETY: an all-zero loop_config is valid (no offset, no size limit, no encryption).
    let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
    cfg.fd = backing.as_raw_fd() as u32;
    cfg.block_size = 4096;
    cfg.info.lo_flags = LO_FLAGS_READ_ONLY;
    // SAFETY: LOOP_CONFIGURE reads a struct loop_config, which `cfg` is (repr(C), kernel layout);
    // the backing fd stays open for the call, after which the kernel holds its own reference.
    let r = unsafe { nix::libc::ioctl(loop_dev.as_raw_fd(), LOOP_CONFIGURE, &cfg) };
    if r < 0 {
        bail!(
            "LOOP_CONFIGURE {dev} over {}: {}",
            image.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(dev)
}

// <linux/dm-ioctl.h>, interface version 4.
const DM_VERSION: [u32; 3] = [4, 0, 0];
const DM_READONLY_FLAG: u32 = 1;
const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;

#[repr(C)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; DM_NAME_LEN],
    uuid: [u8; DM_UUID_LEN],
    data: [u8; 7],
}

#[repr(C)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
}

/// `_IOWR(0xfd, nr, struct dm_ioctl)`.
const fn dm_ioctl_nr(nr: u8) -> libc_ulong {
    ((3 << 30) | ((std::mem::size_of::<DmIoctl>() as u32) << 16) | (0xfd << 8) | nr as u32)
        as libc_ulong
}
const DM_DEV_CREATE: libc_ulong = dm_ioctl_nr(3);
const DM_DEV_SUSPEND: libc_ulong = dm_ioctl_nr(6);
const DM_TABLE_LOAD: libc_ulong = dm_ioctl_nr(9);

/// A dm_ioctl header followed by `payload`, 8-byte aligned as the kernel expects.
fn dm_buffer(name: &str, flags: u32, target_count: u32, payload: &[u8]) -> Vec<u64> {
    let header = std::mem::size_of::<DmIoctl>();
    let total = (header + payload.len()).div_ceil(8) * 8;
    let mut buf = vec![0u64; total / 8];
    // SAFETY: `buf` is at least `header` bytes, 8-byte aligned, and DmIoctl is plain data.
    let io = unsafe { &mut *(buf.as_mut_ptr() as *mut DmIoctl) };
    io.version = DM_VERSION;
    io.data_size = total as u32;
    io.data_start = header as u32;
    io.target_count = target_count;
    io.flags = flags;
    io.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the payload fits after the header by construction of `total`.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, total) };
    bytes[header..header + payload.len()].copy_from_slice(payload);
    buf
}

fn dm_call(control: &File, request: libc_ulong, what: &str, buf: &mut [u64]) -> Result<()> {
    // SAFETY: `buf` starts with a dm_ioctl whose data_size is the buffer's length; the kernel
    // reads and writes within it.
    let r = unsafe { nix::libc::ioctl(control.as_raw_fd(), request, buf.as_mut_ptr()) };
    if r < 0 {
        bail!("device-mapper {what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the read-only device-mapper device `name` from one table line
/// (`start length type params…`, as `dmsetup` and `dm-mod.create=` take it) and activates it.
pub fn create_dm(name: &str, table: &str) -> Result<()> {
    if name.len() >= DM_NAME_LEN {
        bail!("device-mapper name {name:?} is too long");
    }
    let mut words = table.split_whitespace();
    let (Some(start), Some(length), Some(kind)) = (words.next(), words.next(), words.next()) else {
        bail!("device-mapper table {table:?}: expected `start length type params`");
    };
    let params: Vec<&str> = words.collect();
    let params = params.join(" ");
    if kind.len() >= 16 {
        bail!("device-mapper target type {kind:?} is too long");
    }
    let mut spec = DmTargetSpec {
        sector_start: start.parse().context("table start")?,
        length: length.parse().context("table length")?,
        status: 0,
        next: 0,
        target_type: [0; 16],
    };
    spec.target_type[..kind.len()].copy_from_slice(kind.as_bytes());
    let spec_len = std::mem::size_of::<DmTargetSpec>();
    // `next` is the offset from this spec to the next one; with one target, to the end.
    spec.next = (spec_len + params.len() + 1).div_ceil(8) as u32 * 8;
    let mut payload = Vec::with_capacity(spec.next as usize);
    // SAFETY: DmTargetSpec is repr(C) plain data; its bytes are what the kernel reads.
    payload.extend_from_slice(unsafe {
        std::slice::from_raw_parts(&spec as *const DmTargetSpec as *const u8, spec_len)
    });
    payload.extend_from_slice(params.as_bytes());
    payload.resize(spec.next as usize, 0);

    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .context("opening /dev/mapper/control")?;
    dm_call(
        &control,
        DM_DEV_CREATE,
        &format!("create {name}"),
        &mut dm_buffer(name, DM_READONLY_FLAG, 0, &[]),
    )?;
    dm_call(
        &control,
        DM_TABLE_LOAD,
        &format!("load the {kind} table of {name}"),
        &mut dm_buffer(name, DM_READONLY_FLAG, 1, &payload),
    )?;
    // DEV_SUSPEND without the suspend flag resumes: the loaded table becomes live.
    dm_call(
        &control,
        DM_DEV_SUSPEND,
        &format!("activate {name}"),
        &mut dm_buffer(name, 0, 0, &[]),
    )
}

/// Units that manage disk partitions (OEM, ROOT growth, slot marking, slot updates and the reboots
/// after them): a live system has none, so they are masked in its RAM `/etc` rather than left to
/// time out and fail. A PXE machine updates by booting newer files from its PXE server.
const DISK_UNITS: &[&str] = &[
    "usr-share-oem.mount",
    "oem-cloudinit.service",
    "ferrocore-grow-root.service",
    "ferrocore-mark-successful.service",
    "update-engine.service",
    "locksmithd.service",
];

pub fn mask_disk_units(sysroot: &Path) -> Result<()> {
    let dir = sysroot.join("etc/systemd/system");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for unit in DISK_UNITS {
        let link = dir.join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)
            .with_context(|| format!("masking {unit}"))?;
    }
    Ok(())
}

/// Loop device + dm-verity for the live `/usr`; the device appears as a `dm-N` named `dm_name`.
pub fn setup_usr(dm_name: &str) -> Result<()> {
    let table =
        std::fs::read_to_string(USR_TABLE).with_context(|| format!("reading {USR_TABLE}"))?;
    let dev = attach_loop(Path::new(USR_IMAGE))?;
    create_dm(dm_name, &table.trim().replace(DEVICE_PLACEHOLDER, &dev))
        .context("setting up dm-verity over the live /usr image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_have_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<DmIoctl>(), 312);
        assert_eq!(std::mem::size_of::<DmTargetSpec>(), 40);
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
        // The numbers libdevmapper uses.
        assert_eq!(DM_DEV_CREATE, 0xc138fd03);
        assert_eq!(DM_TABLE_LOAD, 0xc138fd09);
    }

    #[test]
    fn buffers_hold_header_and_payload() {
        let buf = dm_buffer("usr", DM_READONLY_FLAG, 1, b"abc");
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(&bytes[312..315], b"abc");
        assert_eq!(u32::from_ne_bytes(bytes[12..16].try_into().unwrap()), 320);
        assert_eq!(&bytes[48..51], b"usr");
    }
}
