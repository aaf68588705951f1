//! Installs a payload into the inactive USR slot of a disk (block device or image file).
//!
//! Order (STYLE.md, coreos-installer's pattern): check the signature, version and every part's
//! compressed size and sha256, and plan every write (partition found, sizes fit, kernel/initrd
//! decompressed and hashed, the new boot.cfg derived) while writing nothing; then clear the target
//! slot's GPT bits (it must not boot half written), stream `usr` into the partition checking its
//! decompressed size and sha256 as it goes, fsync, read it back and compare its sha256, put
//! kernel/initrd/boot.cfg on the ESP under `/ferrocore/usr-x/`, fsync, and only then raise the
//! slot to try once (gptprio, GPT bits + grubenv). A failure after the first write leaves the
//! target slot unbootable and the running slot as it was.

use super::hasher::Hasher;
use super::{boot_cfg, esp};
use crate::payload::{self, Manifest, Part};
use ed25519_dalek::VerifyingKey;
use gptprio::Slot;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

const ESP_LABEL: &str = "EFI-SYSTEM";
const CHUNK: usize = 1 << 20;
/// How much is written before its writeback is started.
const WRITEBACK_WINDOW: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("refusing the payload: {0}")]
    Payload(#[from] payload::Error),
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: String,
        source: std::io::Error,
    },
    #[error("{path}: no GPT: {source}")]
    Gpt {
        path: PathBuf,
        source: gptman::Error,
    },
    #[error("{path}: no partition labelled {label}")]
    NoPartition { path: PathBuf, label: String },
    #[error("the payload has no {0:?} part")]
    NoPart(&'static str),
    #[error("{path}: usr is {size} bytes, {label} holds only {room}")]
    TooBig {
        path: PathBuf,
        label: String,
        size: u64,
        room: u64,
    },
    #[error("{part}: the decompressed data does not match the manifest's size and sha256")]
    Decompressed { part: String },
    #[error("{path}: {label} reads back with a different sha256 than was written")]
    ReadBack { path: PathBuf, label: String },
    #[error("{path}: ESP /ferrocore/{dir}/boot.cfg: {source}")]
    BootCfg {
        path: PathBuf,
        dir: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Derive(#[from] boot_cfg::Error),
    #[error(transparent)]
    Slot(#[from] gptprio::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Verifying,
    Writing,
    Finalizing,
}

struct Region {
    start: u64,
    len: u64,
    partuuid: uuid::Uuid,
}

fn region(path: &Path, gpt: &gptman::GPT, label: &str) -> Result<Region, Error> {
    let (_, p) = gpt
        .iter()
        .find(|(_, p)| p.is_used() && p.partition_name.as_str() == label)
        .ok_or_else(|| Error::NoPartition {
            path: path.into(),
            label: label.into(),
        })?;
    Ok(Region {
        start: p.starting_lba * gpt.sector_size,
        len: (p.ending_lba - p.starting_lba + 1) * gpt.sector_size,
        partuuid: uuid::Uuid::from_bytes_le(p.unique_partition_guid),
    })
}

fn part<'m>(m: &'m Manifest, name: &'static str) -> Result<&'m Part, Error> {
    m.parts
        .iter()
        .find(|p| p.name == name)
        .ok_or(Error::NoPart(name))
}

/// Everything the write needs, computed before the first byte is written.
struct Plan {
    manifest: Manifest,
    usr: Region,
    esp: Region,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
    boot_cfg: String,
}

fn plan(
    disk: &Path,
    dir: &Path,
    trusted: &[VerifyingKey],
    running: &str,
    allow_downgrade: bool,
    current: Slot,
) -> Result<Plan, Error> {
    let t = std::time::Instant::now();
    let manifest = payload::verify_signed(dir, trusted, running, allow_downgrade)?;
    tracing::debug!(elapsed = ?t.elapsed(), "signature and compressed hashes checked");
    let target = current.other();
    let io = |what: &str| {
        let what = what.to_string();
        move |source| Error::Io {
            path: disk.into(),
            what,
            source,
        }
    };
    let mut file = File::open(disk).map_err(io("opening"))?;
    let gpt = gptman::GPT::find_from(&mut file).map_err(|source| Error::Gpt {
        path: disk.into(),
        source,
    })?;
    let usr = region(disk, &gpt, target.label())?;
    let esp = region(disk, &gpt, ESP_LABEL)?;
    let usr_part = part(&manifest, "usr")?;
    if usr_part.size > usr.len {
        return Err(Error::TooBig {
            path: disk.into(),
            label: target.label().into(),
            size: usr_part.size,
            room: usr.len,
        });
    }
    // Small parts are held in memory, their decompressed hash checked before any write.
    let mut small = Vec::new();
    for name in ["kernel", "initrd"] {
        let p = part(&manifest, name)?;
        let bytes = payload::read_part(dir, p)?;
        if bytes.len() as u64 != p.size || hex::encode(Sha256::digest(&bytes)) != p.sha256 {
            return Err(Error::Decompressed { part: name.into() });
        }
        small.push(bytes);
    }
    tracing::debug!(elapsed = ?t.elapsed(), "kernel and initrd decompressed and checked");
    let cur_dir = boot_cfg::slot_dir(current);
    let current_cfg = esp::read(
        esp::Window::new(&file, esp.start, esp.len),
        &format!("ferrocore/{cur_dir}/boot.cfg"),
    )
    .map_err(|source| Error::BootCfg {
        path: disk.into(),
        dir: cur_dir,
        source,
    })?;
    let boot_cfg = boot_cfg::derive(
        &String::from_utf8_lossy(&current_cfg),
        current,
        target,
        &manifest.release,
        &usr.partuuid,
    )?;
    let initrd = small.pop().expect("two parts");
    let kernel = small.pop().expect("two parts");
    Ok(Plan {
        manifest,
        usr,
        esp,
        kernel,
        initrd,
        boot_cfg,
    })
}

/// Verifies the payload in `dir` and installs it into the slot that is not `current`.
pub fn install(
    disk: &Path,
    dir: &Path,
    trusted: &[VerifyingKey],
    running: &str,
    allow_downgrade: bool,
    current: Slot,
    progress: &mut dyn FnMut(Phase, f64),
) -> Result<Manifest, Error> {
    progress(Phase::Verifying, 0.0);
    let started = std::time::Instant::now();
    let plan = plan(disk, dir, trusted, running, allow_downgrade, current)?;
    tracing::info!(elapsed = ?started.elapsed(), "payload verified, writes planned");
    let target = current.other();
    let label = target.label();
    let io = |what: String| {
        move |source| Error::Io {
            path: disk.into(),
            what,
            source,
        }
    };

    let mut slots = gptprio::Disk::open(disk, true)?;
    slots.prepare_update(target)?;
    slots.write()?;
    drop(slots);

    progress(Phase::Writing, 0.0);
    let usr = part(&plan.manifest, "usr")?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(io("opening for writing".into()))?;
    let src = dir.join(&usr.file);
    let (free, chunks) = decompress(src.clone());
    let hasher = Hasher::new(CHUNK);
    let mut written = 0u64;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    for chunk in chunks {
        let buf = chunk.map_err(|source| Error::Io {
            path: src.clone(),
            what: "decompressing".into(),
            source,
        })?;
        let n = buf.len();
        if written + n as u64 > usr.size {
            return Err(Error::Decompressed { part: "usr".into() });
        }
        let at = plan.usr.start + written;
        file.write_all_at(&buf, at)
            .map_err(io(format!("writing {label}")))?;
        hasher.send(buf);
        written += n as u64;
        // Start writing each window out now rather than all at the final fsync, so the disk
        // works while we decompress (DONTNEED on dirty pages starts their writeback, no wait).
        if written % WRITEBACK_WINDOW < n as u64 {
            let from =
                written.saturating_sub(WRITEBACK_WINDOW) / WRITEBACK_WINDOW * WRITEBACK_WINDOW;
            let _ = nix::fcntl::posix_fadvise(
                fd,
                (plan.usr.start + from) as i64,
                (written - from) as i64,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
        }
        while let Some(b) = hasher.recycled() {
            let _ = free.send(b);
        }
        progress(Phase::Writing, written as f64 / usr.size.max(1) as f64);
    }
    if hasher.finish() != (usr.size, usr.sha256.clone()) {
        return Err(Error::Decompressed { part: "usr".into() });
    }
    file.sync_all().map_err(io(format!("syncing {label}")))?;
    tracing::info!(elapsed = ?started.elapsed(), "{label} written and synced");

    // Read back what the device holds now: drop the cached pages first (best effort), so the
    // check reads the device rather than the memory the bytes were written from.
    let _ = nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        plan.usr.start as i64,
        usr.size as i64,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    progress(Phase::Finalizing, 0.0);
    let hasher = Hasher::new(CHUNK);
    let mut at = 0u64;
    while at < usr.size {
        let n = (usr.size - at).min(CHUNK as u64) as usize;
        let mut buf = hasher.buffer();
        buf.truncate(n);
        file.read_exact_at(&mut buf, plan.usr.start + at)
            .map_err(io(format!("reading back {label}")))?;
        hasher.send(buf);
        at += n as u64;
    }
    if hasher.finish().1 != usr.sha256 {
        return Err(Error::ReadBack {
            path: disk.into(),
            label: label.into(),
        });
    }
    tracing::info!(elapsed = ?started.elapsed(), "{label} read back");
    let dir_name = format!("ferrocore/{}", boot_cfg::slot_dir(target));
    esp::write(
        esp::Window::new(&file, plan.esp.start, plan.esp.len),
        &dir_name,
        &[
            ("vmlinuz", &plan.kernel),
            ("initrd", &plan.initrd),
            ("boot.cfg", plan.boot_cfg.as_bytes()),
        ],
    )
    .map_err(io(format!("writing /{dir_name} on the ESP")))?;
    file.sync_all().map_err(io("syncing the ESP".into()))?;
    drop(file);

    tracing::info!(elapsed = ?started.elapsed(), "boot files on the ESP");
    let mut slots = gptprio::Disk::open(disk, true)?;
    slots.activate(target)?;
    slots.write()?;
    tracing::info!(elapsed = ?started.elapsed(), "{label} activated: try once on the next boot");
    progress(Phase::Finalizing, 1.0);
    Ok(plan.manifest)
}

/// Decompresses the zstd file `src` on a thread of its own, a few chunks ahead of the writes:
/// full chunks of `CHUNK` bytes (the last may be shorter), or the error that stopped it. Buffers
/// sent back on the first channel are reused.
fn decompress(
    src: PathBuf,
) -> (
    mpsc::Sender<Vec<u8>>,
    impl Iterator<Item = std::io::Result<Vec<u8>>>,
) {
    let (free_tx, free) = mpsc::channel::<Vec<u8>>();
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::spawn(move || {
        let mut dec = match File::open(&src).and_then(zstd::stream::read::Decoder::new) {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = free.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            match read_full(&mut dec, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    // The receiver stops early on an error of its own; then so do we.
                    if tx.send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    (free_tx, rx.into_iter())
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
