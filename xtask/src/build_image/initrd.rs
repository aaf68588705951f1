//! The initrd: a newc cpio holding our static init and the few nodes it needs before devtmpfs.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// One newc entry (the format the kernel unpacks: "070701", 13 hex fields, name, data, 4-byte padding).
fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let name_len = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{maj:08x}{min:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
        uid = 0,
        gid = 0,
        nlink = 1,
        mtime = 0,
        size = data.len(),
        maj = 0,
        min = 0,
        rmaj = rdev.0,
        rmin = rdev.1,
        namesize = name_len,
        check = 0,
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Writes `initrd` with `/init` = `init_binary`.
pub fn write(init_binary: &Path, initrd: &Path) -> Result<()> {
    let out = archive(init_binary, &[])?;
    let mut f = std::fs::File::create(initrd)?;
    f.write_all(&out)?;
    Ok(())
}

/// The live initramfs (PXE, ISO): the init plus `/usr` as an EROFS + verity image and its table
/// (`/ferrocore/usr.img`, `/ferrocore/usr.table`), zstd-compressed for the kernel to unpack.
pub fn write_live(init_binary: &Path, usr_img: &Path, table: &str, out: &Path) -> Result<()> {
    let usr = std::fs::read(usr_img).with_context(|| format!("reading {}", usr_img.display()))?;
    let cpio = archive(
        init_binary,
        &[
            ("ferrocore/usr.img", &usr),
            ("ferrocore/usr.table", table.as_bytes()),
        ],
    )?;
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut z = zstd::Encoder::new(f, 3)?;
    // The kernel's unzstd needs the content size or a small window; checksums help spot a bad download.
    z.include_checksum(true)?;
    z.write_all(&cpio)?;
    z.finish()?.sync_all()?;
    Ok(())
}

fn archive(init_binary: &Path, files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let init =
        std::fs::read(init_binary).with_context(|| format!("reading {}", init_binary.display()))?;
    let mut out = Vec::with_capacity(init.len() + 4096);
    const DIR: u32 = 0o040755;
    let mut ino = 1;
    for dir in ["dev", "proc", "sys", "sysroot", "run", "ferrocore"] {
        entry(&mut out, ino, dir, DIR, (0, 0), &[]);
        ino += 1;
    }
    // The kernel opens /dev/console for PID 1's stdio before we can mount devtmpfs.
    entry(&mut out, ino, "dev/console", 0o020600, (5, 1), &[]);
    entry(&mut out, ino + 1, "init", 0o100755, (0, 0), &init);
    ino += 2;
    for (name, data) in files {
        entry(&mut out, ino, name, 0o100644, (0, 0), data);
        ino += 1;
    }
    entry(&mut out, 0, "TRAILER!!!", 0, (0, 0), &[]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_cpio_lists_our_archive() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init-bin");
        std::fs::write(&init, b"#!/bin/true\n").unwrap();
        let img = dir.path().join("initrd");
        write(&init, &img).unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-itv", "--quiet"])
            .stdin(std::fs::File::open(&img).unwrap())
            .output()
            .expect("cpio (Debian package cpio)");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("crw") && l.ends_with("dev/console")),
            "{listing}"
        );
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" init")),
            "{listing}"
        );
    }
}
