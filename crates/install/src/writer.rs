//! Streams the compressed disk image: once to check it against the signed manifest without
//! writing, then again into the disk.
//!
//! The second pass first clears the old partition tables (the first and last MiB of the disk),
//! writes everything after the first MiB, checks the stream once more, and only then writes the
//! first MiB (protective MBR and primary GPT). A failure part-way leaves a disk without a partition
//! table, never a half-written disk that looks bootable. Zero runs become `BLKZEROOUT` requests,
//! which QEMU, SSDs and thin volumes serve without moving the bytes.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::fd::AsRawFd;
use update::payload::Part;

/// Writes happen in chunks of this size; the first chunk is held back until the end.
pub const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {actual} bytes, the signed manifest says {expected}")]
    Size {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what}: sha256 does not match the signed manifest (corrupted or tampered)")]
    Hash { what: String },
    #[error("writing the disk at byte {offset}: {source}")]
    Write { offset: u64, source: std::io::Error },
}

/// A disk to write to.
pub trait Target {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()>;
    /// Makes `len` bytes at `offset` read as zeros.
    fn zero(&mut self, offset: u64, len: u64) -> std::io::Result<()>;
    fn size(&self) -> u64;
    fn sync(&mut self) -> std::io::Result<()>;
}

nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

/// A block device (or, in tests, a file: zeros are then written out).
pub struct Device {
    file: std::fs::File,
    size: u64,
    zeroout: bool,
}

impl Device {
    pub fn open(path: &std::path::Path) -> std::io::Result<Device> {
        use std::io::Seek;
        use std::os::unix::fs::FileTypeExt;
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        let size = file.seek(std::io::SeekFrom::End(0))?;
        let zeroout = file.metadata()?.file_type().is_block_device();
        Ok(Device {
            file,
            size,
            zeroout,
        })
    }
}

impl Target for Device {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }

    fn zero(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        if self.zeroout {
            let range = [offset, len];
            // SAFETY: BLKZEROOUT reads two u64 (start, length) from the pointer, valid for the call.
            match unsafe { blkzeroout(self.file.as_raw_fd(), &range) } {
                Ok(_) => return Ok(()),
                // Not offered by this device: write the zeros.
                Err(_) => self.zeroout = false,
            }
        }
        let zeros = vec![0u8; CHUNK];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            self.write_at(offset + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}

/// Counts and hashes the compressed bytes as they are read.
struct Hashing<R, F> {
    inner: R,
    hash: Sha256,
    len: u64,
    progress: F,
}

impl<R: Read, F: FnMut(u64)> Read for Hashing<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        (self.progress)(self.len);
        Ok(n)
    }
}

fn check_compressed(what: &str, part: &Part, len: u64, hash: Sha256) -> Result<(), Error> {
    if len != part.compressed_size {
        return Err(Error::Size {
            what: what.into(),
            expected: part.compressed_size,
            actual: len,
        });
    }
    if hex::encode(hash.finalize()) != part.compressed_sha256 {
        return Err(Error::Hash { what: what.into() });
    }
    Ok(())
}

/// Pass one: reads the whole compressed image and checks its size and sha256. Writes nothing.
pub fn check(
    reader: impl Read,
    what: &str,
    part: &Part,
    progress: impl FnMut(u64),
) -> Result<(), Error> {
    let mut h = Hashing {
        inner: reader,
        hash: Sha256::new(),
        len: 0,
        progress,
    };
    // Stop reading at one byte past the promised size: a padded stream is wrong either way.
    let mut limited = (&mut h).take(part.compressed_size + 1);
    std::io::copy(&mut limited, &mut std::io::sink()).map_err(|source| Error::Read {
        what: what.into(),
        source,
    })?;
    check_compressed(what, part, h.len, h.hash)
}

/// Pass two: decompresses into `target` (see the module comment for the order of writes).
pub fn write(
    reader: impl Read,
    what: &str,
    part: &Part,
    target: &mut dyn Target,
    progress: impl FnMut(u64),
) -> Result<(), Error> {
    let werr = |offset| move |source| Error::Write { offset, source };
    let rerr = |source| Error::Read {
        what: what.into(),
        source,
    };
    let size = target.size();
    let edge = (CHUNK as u64).min(size);
    target.zero(0, edge).map_err(werr(0))?;
    target.zero(size - edge, edge).map_err(werr(size - edge))?;

    let mut h = Hashing {
        inner: reader.take(part.compressed_size + 1),
        hash: Sha256::new(),
        len: 0,
        progress,
    };
    let mut decoder = zstd::stream::read::Decoder::new(&mut h).map_err(rerr)?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    let mut zero_run: Option<u64> = None;
    loop {
        let n = fill(&mut decoder, &mut buf).map_err(rerr)?;
        if n == 0 {
            break;
        }
        if offset + n as u64 > part.size {
            return Err(Error::Size {
                what: format!("{what} (decompressed)"),
                expected: part.size,
                actual: offset + n as u64,
            });
        }
        let chunk = &buf[..n];
        if offset == 0 {
            head = chunk.to_vec();
        } else if chunk.iter().all(|b| *b == 0) {
            zero_run.get_or_insert(offset);
        } else {
            if let Some(start) = zero_run.take() {
                target.zero(start, offset - start).map_err(werr(start))?;
            }
            target.write_at(offset, chunk).map_err(werr(offset))?;
        }
        offset += n as u64;
    }
    if let Some(start) = zero_run.take() {
        target.zero(start, offset - start).map_err(werr(start))?;
    }
    drop(decoder);
    check_compressed(what, part, h.len, h.hash)?;
    if offset != part.size {
        return Err(Error::Size {
            what: format!("{what} (decompressed)"),
            expected: part.size,
            actual: offset,
        });
    }
    target.sync().map_err(werr(0))?;
    target.write_at(0, &head).map_err(werr(0))?;
    target.sync().map_err(werr(0))?;
    Ok(())
}

/// Reads until `buf` is full or the stream ends.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image with data at the start, a zero gap, and data in the middle.
    fn image() -> Vec<u8> {
        let mut img = vec![0u8; 5 * CHUNK + 1234];
        img[..512].fill(0xee);
        img[2 * CHUNK + 7..2 * CHUNK + 4000].fill(0x42);
        img[5 * CHUNK..].fill(0x17);
        img
    }

    fn part_of(img: &[u8]) -> (Part, Vec<u8>) {
        let z = zstd::encode_all(img, 3).unwrap();
        let part = Part {
            name: "disk".into(),
            file: "disk.zst".into(),
            size: img.len() as u64,
            sha256: hex::encode(Sha256::digest(img)),
            compressed_size: z.len() as u64,
            compressed_sha256: hex::encode(Sha256::digest(&z)),
        };
        (part, z)
    }

    fn target(len: usize, fill: u8) -> (tempfile::NamedTempFile, Device) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), vec![fill; len]).unwrap();
        let d = Device::open(f.path()).unwrap();
        (f, d)
    }

    #[test]
    fn writes_the_image_over_old_data() {
        let img = image();
        let (part, z) = part_of(&img);
        check(&z[..], "disk.zst", &part, |_| {}).unwrap();
        let (f, mut dev) = target(8 * CHUNK, 0xaa);
        write(&z[..], "disk.zst", &part, &mut dev, |_| {}).unwrap();
        let out = std::fs::read(f.path()).unwrap();
        assert_eq!(&out[..img.len()], &img[..], "old bytes survived a zero run");
        // The old backup GPT area at the end of the disk is cleared.
        assert!(out[8 * CHUNK - CHUNK..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_flipped_byte_fails_the_check_before_any_write() {
        let (part, mut z) = part_of(&image());
        let n = z.len();
        z[n / 2] ^= 1;
        let e = check(&z[..], "disk.zst", &part, |_| {}).unwrap_err();
        assert!(matches!(e, Error::Hash { .. }), "{e}");
        let e = check(&z[..n - 1], "disk.zst", &part, |_| {}).unwrap_err();
        assert!(matches!(e, Error::Size { .. }), "{e}");
        let mut padded = z.clone();
        padded.extend_from_slice(&[0; 100]);
        let e = check(&padded[..], "disk.zst", &part, |_| {}).unwrap_err();
        assert!(matches!(e, Error::Size { .. }), "{e}");
    }

    #[test]
    fn a_stream_that_changes_between_passes_leaves_no_partition_table() {
        let img = image();
        let (part, _) = part_of(&img);
        let mut other = img.clone();
        other[3 * CHUNK] = 9;
        let (_, z2) = part_of(&other);
        let (f, mut dev) = target(8 * CHUNK, 0xaa);
        let e = write(&z2[..], "disk.zst", &part, &mut dev, |_| {}).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Hash { .. } | Error::Size { .. } | Error::Read { .. }
            ),
            "{e}"
        );
        let out = std::fs::read(f.path()).unwrap();
        assert!(
            out[..CHUNK].iter().all(|b| *b == 0),
            "head must stay cleared"
        );
    }
}
