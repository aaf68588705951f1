//! Assembling the raw disk: GRUB's boot code and a protective MBR, the GPT (CoreOS numbers,
//! labels, types and slot attribute bits), then each partition's content spliced in sparsely.
//!
//! `gptman` keeps partition numbers as entry indices, so CoreOS's gaps (no 5 or 8) survive;
//! the `gpt` crate compacts entries on write, which renumbers partitions.

use super::layout::{Placed, SECTOR};
use anyhow::{ensure, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub struct PartitionSpec<'a> {
    pub placed: &'a Placed,
    pub partuuid: uuid::Uuid,
    pub attributes: u64,
}

/// Creates `path` (sparse, `size` bytes) with `boot_code`, a protective MBR and the GPT.
pub fn create(path: &Path, size: u64, boot_code: [u8; 440], parts: &[PartitionSpec]) -> Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.set_len(size)?;
    file.write_all(&boot_code)?;
    let mut gpt = gptman::GPT::new_from(&mut file, SECTOR, *uuid::Uuid::new_v4().as_bytes())
        .context("creating the GPT")?;
    for p in parts {
        let ty = uuid::Uuid::parse_str(&p.placed.part.type_guid)
            .with_context(|| format!("type of {}", p.placed.part.label))?;
        let first = p.placed.first_lba();
        gpt[p.placed.part.number] = gptman::GPTPartitionEntry {
            partition_type_guid: ty.to_bytes_le(),
            unique_partition_guid: p.partuuid.to_bytes_le(),
            starting_lba: first,
            ending_lba: first + p.placed.size / SECTOR - 1,
            attribute_bits: p.attributes,
            partition_name: p.placed.part.label.as_str().into(),
        };
    }
    gpt.write_into(&mut file).context("writing the GPT")?;
    gptman::GPT::write_protective_mbr_into(&mut file, SECTOR)
        .context("writing the protective MBR")?;
    file.sync_all()?;
    Ok(())
}

/// Copies `src` into the disk at `offset`, skipping all-zero chunks (the disk is sparse).
pub fn splice(disk: &Path, offset: u64, max: u64, src: &Path) -> Result<()> {
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let len = input.metadata()?.len();
    ensure!(
        len <= max,
        "{} is {len} bytes; its partition holds {max}",
        src.display()
    );
    let mut out = OpenOptions::new().write(true).open(disk)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            out.seek(SeekFrom::Start(offset + pos))?;
            out.write_all(&buf[..n])?;
        }
        pos += n as u64;
    }
    out.sync_all()?;
    Ok(())
}

/// Writes `bytes` at `offset`.
pub fn write_at(disk: &Path, offset: u64, bytes: &[u8]) -> Result<()> {
    let mut out = OpenOptions::new().write(true).open(disk)?;
    out.seek(SeekFrom::Start(offset))?;
    out.write_all(bytes)?;
    Ok(())
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Grows the disk image to `size` bytes and moves the backup GPT to its new end (what
/// `sgdisk -e` does), for clouds that want whole GiB.
pub fn grow(path: &Path, size: u64) -> Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let old = file.metadata()?.len();
    ensure!(
        size >= old,
        "cannot shrink {} to {size} bytes",
        path.display()
    );
    file.set_len(size)?;
    let mut gpt = gptman::GPT::read_from(&mut file, SECTOR)
        .with_context(|| format!("reading the GPT of {}", path.display()))?;
    gpt.header
        .update_from(&mut file, SECTOR)
        .context("moving the backup GPT")?;
    // The old backup header is now in the middle of the disk: clear it.
    write_at(path, old - SECTOR, &[0u8; SECTOR as usize])?;
    gpt.write_into(&mut file).context("writing the GPT")?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build_image::layout::Layout;

    /// sgdisk (Debian's gdisk) must read our table with CoreOS's numbers, labels, types and bits.
    #[test]
    fn sgdisk_sees_coreos_numbers_labels_and_attributes() {
        let layout = Layout::load().unwrap();
        let placed = layout.place();
        let specs: Vec<PartitionSpec> = placed
            .iter()
            .map(|p| PartitionSpec {
                placed: p,
                partuuid: uuid::Uuid::new_v4(),
                attributes: if p.part.label == "USR-A" {
                    0x0102_0000_0000_0000
                } else {
                    0
                },
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        create(&img, layout.disk_size(), [0x90; 440], &specs).unwrap();

        let out = std::process::Command::new("sgdisk")
            .arg("-p")
            .arg(&img)
            .output()
            .expect("sgdisk (gdisk)");
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{table}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for p in &placed {
            let row = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(&p.part.number.to_string()))
                .unwrap_or_else(|| panic!("no partition {} in\n{table}", p.part.number));
            assert!(row.trim_end().ends_with(&p.part.label), "{row}");
        }
        let info = std::process::Command::new("sgdisk")
            .args(["-i", "3"])
            .arg(&img)
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(
            info.contains("5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"),
            "{info}"
        );
        assert!(info.contains("Attribute flags: 0102000000000000"), "{info}");
        assert_eq!(
            &std::fs::read(&img).unwrap()[..440],
            &[0x90; 440][..],
            "boot code kept"
        );
    }

    /// After growing to whole GiB (GCE wants that), sgdisk finds the backup table at the new end
    /// and the partitions unchanged.
    #[test]
    fn grow_moves_the_backup_table_to_the_new_end() {
        let layout = Layout::load().unwrap();
        let placed = layout.place();
        let specs: Vec<PartitionSpec> = placed
            .iter()
            .map(|p| PartitionSpec {
                placed: p,
                partuuid: uuid::Uuid::new_v4(),
                attributes: 0,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        create(&img, layout.disk_size(), [0x90; 440], &specs).unwrap();
        let print = |img: &Path| {
            let out = std::process::Command::new("sgdisk")
                .arg("-p")
                .arg(img)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // Partition lines only: the disk size line changes.
            text.lines()
                .skip_while(|l| !l.starts_with("Number"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let before = print(&img);
        let size = layout.disk_size().div_ceil(1 << 30) << 30;
        grow(&img, size).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), size);
        let verify = std::process::Command::new("sgdisk")
            .arg("-v")
            .arg(&img)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&verify.stdout);
        assert!(text.contains("No problems found"), "{text}");
        assert_eq!(print(&img), before);
    }
}
