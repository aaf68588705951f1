//! A disk (image file or block device) holding USR-A/USR-B: the GPT through `gptman` (which keeps
//! CoreOS's partition numbers with their gaps) and grubenv on the FAT ESP through `fatfs`, so no
//! mount is needed. State changes happen in memory; [`Disk::write`] writes them once: the GPT
//! first (the source of truth), then the grubenv mirror, then reads both back.

use crate::grubenv::{self, GrubEnv};
use crate::{grubenv_set_slot, grubenv_slot, Slot, SlotState};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where GRUB's environment lives on the ESP.
pub const GRUBENV_PATH: &str = "ferrocore/grubenv";
const ESP_LABEL: &str = "EFI-SYSTEM";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: no GPT: {source}")]
    Gpt {
        path: PathBuf,
        source: gptman::Error,
    },
    #[error("{path}: no partition labelled {label}")]
    NoPartition { path: PathBuf, label: String },
    #[error("{path}: the ESP has no /{GRUBENV_PATH}: {source}")]
    NoGrubenv {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: /{GRUBENV_PATH}: {source}")]
    BadGrubenv {
        path: PathBuf,
        source: grubenv::Error,
    },
    #[error("{path}: opened read-only")]
    ReadOnly { path: PathBuf },
    #[error("{path}: after writing, {slot} reads back as {read:?}, not {wrote:?}")]
    Verify {
        path: PathBuf,
        slot: Slot,
        wrote: SlotState,
        read: SlotState,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub number: u32,
    pub label: String,
    pub type_guid: uuid::Uuid,
    pub partuuid: uuid::Uuid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
}

pub struct Disk {
    path: PathBuf,
    file: File,
    gpt: gptman::GPT,
    writable: bool,
    /// Slots whose GRUB-spent tries were folded in at open, with their GPT state before that.
    unwritten_grub_tries: Vec<(Slot, SlotState)>,
}

impl Disk {
    pub fn open(path: &Path, writable: bool) -> Result<Disk, Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|source| Error::Io {
                path: path.into(),
                what: "opening",
                source,
            })?;
        let gpt = gptman::GPT::find_from(&mut file).map_err(|source| Error::Gpt {
            path: path.into(),
            source,
        })?;
        let mut disk = Disk {
            path: path.into(),
            file,
            gpt,
            writable,
            unwritten_grub_tries: Vec::new(),
        };
        // A missing or broken grubenv leaves nothing to fold; `write` reports it.
        if let Ok(env) = disk.read_grubenv() {
            disk.fold_grub_tries(&env)?;
        }
        Ok(disk)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn partitions(&self) -> Vec<PartitionInfo> {
        self.gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .map(|(number, p)| PartitionInfo {
                number,
                label: p.partition_name.as_str().to_string(),
                type_guid: uuid::Uuid::from_bytes_le(p.partition_type_guid),
                partuuid: uuid::Uuid::from_bytes_le(p.unique_partition_guid),
                first_lba: p.starting_lba,
                last_lba: p.ending_lba,
                attributes: p.attribute_bits,
            })
            .collect()
    }

    fn number(&self, label: &str) -> Result<u32, Error> {
        self.gpt
            .iter()
            .find(|(_, p)| p.is_used() && p.partition_name.as_str() == label)
            .map(|(n, _)| n)
            .ok_or_else(|| Error::NoPartition {
                path: self.path.clone(),
                label: label.into(),
            })
    }

    /// The slot's state from its GPT attribute bits (the source of truth), less the tries GRUB
    /// has spent since the last write (recorded only in grubenv), plus changes made in memory.
    pub fn slot(&self, s: Slot) -> Result<SlotState, Error> {
        Ok(SlotState::from_attributes(
            self.gpt[self.number(s.label())?].attribute_bits,
        ))
    }

    /// Changes the slot's state in memory; [`Disk::write`] puts it on disk.
    pub fn set_slot(&mut self, s: Slot, st: SlotState) -> Result<(), Error> {
        let n = self.number(s.label())?;
        self.gpt[n].attribute_bits = st.apply_to(self.gpt[n].attribute_bits);
        Ok(())
    }

    /// GRUB decrements tries in grubenv only (it cannot write the GPT), so since the last
    /// [`Disk::write`] the grubenv mirror can hold fewer tries than the GPT bits of a slot that is
    /// not successful. Those tries are spent: take them into the in-memory GPT state, so that
    /// [`Disk::slot`] is what GRUB will act on and no write gives a spent try back.
    fn fold_grub_tries(&mut self, env: &GrubEnv) -> Result<(), Error> {
        for s in Slot::ALL {
            // A disk without this slot has nothing to fold; asking for the slot reports it.
            let Ok(gpt) = self.slot(s) else { continue };
            if let Some(seen) = grubenv_slot(env, s) {
                if !gpt.successful && seen.tries < gpt.tries {
                    self.unwritten_grub_tries.push((s, gpt));
                    self.set_slot(
                        s,
                        SlotState {
                            tries: seen.tries,
                            ..gpt
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Slots for which GRUB has spent tries that the GPT does not show yet, each with its state in
    /// the GPT; [`Disk::slot`] already counts them, the next [`Disk::write`] stores them.
    pub fn unwritten_grub_tries(&self) -> &[(Slot, SlotState)] {
        &self.unwritten_grub_tries
    }

    /// In memory: after a healthy boot of `s`, successful, no tries needed (priority kept).
    pub fn mark_successful(&mut self, s: Slot) -> Result<(), Error> {
        self.set_slot(s, crate::mark_successful(self.slot(s)?))
    }

    /// In memory: `s` must never boot again.
    pub fn mark_failed(&mut self, s: Slot) -> Result<(), Error> {
        self.set_slot(s, crate::mark_failed(self.slot(s)?))
    }

    /// In memory: `failed` never boots again and the other slot boots next, if the other slot is
    /// known good ([`crate::roll_back`]); returns whether it changed anything.
    pub fn roll_back(&mut self, failed: Slot) -> Result<bool, Error> {
        let previous = failed.other();
        match crate::roll_back(self.slot(failed)?, self.slot(previous)?) {
            Some((f, p)) => {
                self.set_slot(failed, f)?;
                self.set_slot(previous, p)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// In memory: clear `target` before an update writes into it.
    pub fn prepare_update(&mut self, target: Slot) -> Result<(), Error> {
        self.set_slot(target, crate::prepare_update(self.slot(target)?))
    }

    /// In memory: try `target` once on the next boot, ahead of the other slot.
    pub fn activate(&mut self, target: Slot) -> Result<(), Error> {
        let (t, o) = crate::activate(self.slot(target.other())?);
        self.set_slot(target, t)?;
        self.set_slot(target.other(), o)
    }

    /// Writes the GPT (primary and backup), mirrors both slots into grubenv, syncs, and reads
    /// everything back to check it.
    pub fn write(&mut self) -> Result<(), Error> {
        if !self.writable {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
        let wrote: Vec<(Slot, SlotState)> = Slot::ALL
            .iter()
            .map(|&s| self.slot(s).map(|st| (s, st)))
            .collect::<Result<_, _>>()?;
        self.gpt
            .write_into(&mut self.file)
            .map_err(|source| Error::Gpt {
                path: self.path.clone(),
                source,
            })?;
        let mut env = self.read_grubenv()?;
        for &(s, st) in &wrote {
            grubenv_set_slot(&mut env, s, st);
        }
        self.write_grubenv(&env)?;
        self.file
            .sync_all()
            .map_err(|source| self.io("syncing", source))?;

        self.unwritten_grub_tries.clear();
        let again = Disk::open(&self.path, false)?;
        let env = again.read_grubenv()?;
        for (s, st) in wrote {
            let read = again.slot(s)?;
            let mirrored = grubenv_slot(&env, s).unwrap_or_default();
            for read in [read, mirrored] {
                if read != st {
                    return Err(Error::Verify {
                        path: self.path.clone(),
                        slot: s,
                        wrote: st,
                        read,
                    });
                }
            }
        }
        Ok(())
    }

    fn io(&self, what: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn esp(&self) -> Result<Region<'_>, Error> {
        let n = self.number(ESP_LABEL)?;
        let p = &self.gpt[n];
        let sector = self.gpt.sector_size;
        Ok(Region::new(
            &self.file,
            p.starting_lba * sector,
            (p.ending_lba - p.starting_lba + 1) * sector,
        ))
    }

    pub fn read_grubenv(&self) -> Result<GrubEnv, Error> {
        let fs = fatfs::FileSystem::new(self.esp()?, fatfs::FsOptions::new())
            .map_err(|source| self.io("reading the ESP's FAT", source))?;
        let mut bytes = Vec::new();
        fs.root_dir()
            .open_file(GRUBENV_PATH)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|source| Error::NoGrubenv {
                path: self.path.clone(),
                source,
            })?;
        GrubEnv::parse(&bytes).map_err(|source| Error::BadGrubenv {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes grubenv alone, in place, as GRUB's `save_env` does (tests play GRUB with it).
    pub fn write_grubenv(&self, env: &GrubEnv) -> Result<(), Error> {
        let bytes = env.to_bytes().map_err(|source| Error::BadGrubenv {
            path: self.path.clone(),
            source,
        })?;
        let fs = fatfs::FileSystem::new(self.esp()?, fatfs::FsOptions::new())
            .map_err(|source| self.io("reading the ESP's FAT", source))?;
        // Same size, written in place: GRUB's save_env relies on the file keeping its sectors.
        let mut f = fs
            .root_dir()
            .open_file(GRUBENV_PATH)
            .map_err(|source| Error::NoGrubenv {
                path: self.path.clone(),
                source,
            })?;
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.write_all(&bytes))
            .and_then(|_| f.flush())
            .map_err(|source| self.io("writing grubenv", source))?;
        drop(f);
        fs.unmount()
            .map_err(|source| self.io("closing the ESP's FAT", source))
    }
}

/// A window on the disk (a partition's byte range), as a volume for fatfs; the updater uses it
/// for the ESP too.
pub struct Region<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Region<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Region<'a> {
        Region {
            file,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        let mut f = self.file;
        f.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = f.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Region<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "past the end of the partition",
            ));
        }
        let mut f = self.file;
        f.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = f.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let mut f = self.file;
        f.flush()
    }
}

impl Seek for Region<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the partition",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}
