//! GCE: the disk as `disk.raw` in a gzip-compressed GNU tar with sparse members, grown to whole
//! GiB, which is what Compute `images.insert` imports from Cloud Storage
//! (`cargo xtask upload gce`). Output name: `gce-tarball`.

use super::Context;
use crate::build_image::disk;
use crate::cmd;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const GIB: u64 = 1 << 30;

pub fn write_outputs(ctx: &Context) -> Result<BTreeMap<String, PathBuf>> {
    let tarball = ctx.stage.join(format!("{}.tar.gz", ctx.base));
    eprintln!("image: writing the GCE tarball (disk.raw, GNU tar, sparse)");
    write_tarball(ctx.raw, ctx.work, &tarball)?;
    Ok(BTreeMap::from([("gce-tarball".to_string(), tarball)]))
}

/// `disk.raw` (a sparse copy of `raw`, grown to whole GiB as GCE requires) in `tarball`.
pub fn write_tarball(raw: &Path, work: &Path, tarball: &Path) -> Result<()> {
    let dir = work.join("gce");
    std::fs::create_dir_all(&dir)?;
    let disk_raw = dir.join("disk.raw");
    cmd::run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(raw)
            .arg(&disk_raw),
    )?;
    let size = std::fs::metadata(&disk_raw)?.len();
    disk::grow(&disk_raw, size.div_ceil(GIB) * GIB)
        .with_context(|| format!("growing {} to whole GiB", disk_raw.display()))?;
    cmd::run(
        Command::new("tar")
            .args(["--format=gnu", "-Sczf"])
            .arg(tarball)
            .arg("-C")
            .arg(&dir)
            .arg("disk.raw"),
    )?;
    std::fs::remove_file(&disk_raw)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    /// GNU tar unpacks the tarball to the image's bytes (grown to whole GiB), still sparse.
    #[test]
    fn gnu_tar_unpacks_exactly_the_disk() {
        let layout = crate::build_image::layout::Layout::load().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("image.img");
        let placed = layout.place();
        let specs: Vec<disk::PartitionSpec> = placed
            .iter()
            .map(|p| disk::PartitionSpec {
                placed: p,
                partuuid: uuid::Uuid::new_v4(),
                attributes: 0,
            })
            .collect();
        disk::create(&raw, layout.disk_size(), [0x90; 440], &specs).unwrap();
        // Data scattered through the disk, holes between.
        let mut f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
        for (i, off) in [3u64 << 20, 700 << 20, 2000 << 20, 3300 << 20]
            .iter()
            .enumerate()
        {
            f.seek(SeekFrom::Start(*off)).unwrap();
            f.write_all(&vec![i as u8 + 1; 100_000]).unwrap();
        }
        drop(f);
        let work = dir.path().join("work");
        let tarball = dir.path().join("out.tar.gz");
        write_tarball(&raw, &work, &tarball).unwrap();

        let listing = cmd::output(Command::new("tar").arg("-tvzf").arg(&tarball)).unwrap();
        assert_eq!(listing.lines().count(), 1, "{listing}");
        assert!(listing.trim_end().ends_with(" disk.raw"), "{listing}");
        let out = dir.path().join("unpacked");
        std::fs::create_dir_all(&out).unwrap();
        cmd::run(
            Command::new("tar")
                .arg("-xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(&out),
        )
        .unwrap();
        let unpacked = out.join("disk.raw");
        let size = std::fs::metadata(&unpacked).unwrap().len();
        assert_eq!(size % GIB, 0);
        assert_eq!(size, layout.disk_size().div_ceil(GIB) * GIB);
        // The expected bytes: the original disk grown the same way.
        let expected = dir.path().join("expected.img");
        cmd::run(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(&raw)
                .arg(&expected),
        )
        .unwrap();
        disk::grow(&expected, size).unwrap();
        cmd::run(Command::new("cmp").arg(&expected).arg(&unpacked)).unwrap();
        // Sparse members: the unpacked file takes far less than its size.
        let allocated = crate::build_image::allocated(&unpacked).unwrap();
        assert!(allocated < 64 << 20, "{allocated} bytes allocated");
        // The tarball header is GNU's (magic "ustar  \0"), with a sparse member (type 'S').
        let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&tarball).unwrap());
        let mut header = [0u8; 512];
        std::io::Read::read_exact(&mut gz, &mut header).unwrap();
        assert_eq!(&header[257..265], b"ustar  \0");
        assert_eq!(header[156], b'S');
    }
}
