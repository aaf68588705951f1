//! Files on the FAT ESP of a disk (image file or block device), through `fatfs` on the
//! partition's byte range: the host cannot mount vfat, and the agent need not.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// A partition's byte range of the disk, as a volume for fatfs.
pub struct Window<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Window<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Window<'a> {
        Window {
            file,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        let mut f = self.file;
        f.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = f.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window<'_> {
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

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::End(d) => i128::from(self.len) + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
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

/// Reads `path` (e.g. `ferrocore/usr-a/boot.cfg`) from the FAT volume.
pub fn read(vol: Window<'_>, path: &str) -> std::io::Result<Vec<u8>> {
    let fs = fatfs::FileSystem::new(vol, fatfs::FsOptions::new())?;
    let mut out = Vec::new();
    fs.root_dir().open_file(path)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Writes whole files into `dir` (created if missing), replacing what was there.
pub fn write(vol: Window<'_>, dir: &str, files: &[(&str, &[u8])]) -> std::io::Result<()> {
    let fs = fatfs::FileSystem::new(vol, fatfs::FsOptions::new())?;
    let mut d = fs.root_dir();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        d = d.create_dir(part)?;
    }
    for (name, bytes) in files {
        let mut f = d.create_file(name)?;
        f.truncate()?;
        f.write_all(bytes)?;
        f.flush()?;
    }
    drop(d);
    fs.unmount()
}
