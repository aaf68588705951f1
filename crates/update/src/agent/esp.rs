//! Files on the FAT ESP of a disk (image file or block device), through `fatfs` on the
//! partition's byte range: the host cannot mount vfat, and the agent need not.

use std::io::{Read, Write};

/// A partition's byte range of the disk, as a volume for fatfs (shared with `ferro-slot`).
pub use gptprio::disk::Region as Window;

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
