//! The EFI system partition, made rootless with mtools: a FAT32 volume labelled EFI-SYSTEM (the
//! label is written to the root directory too, where GRUB's `search --label` and blkid read it).
//!
//! ```text
//! /EFI/BOOT/BOOTX64.EFI          GRUB for UEFI
//! /ferrocore/grub.cfg            slot choice (image/grub.cfg)
//! /ferrocore/grubenv             slot state mirrored from the GPT bits
//! /ferrocore/usr-a/{vmlinuz,initrd,boot.cfg}   per-slot kernel, initrd and command line
//! ```

use crate::cmd;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct EspFile {
    /// Path inside the ESP, e.g. `/ferrocore/grub.cfg`.
    pub dest: String,
    pub source: PathBuf,
}

/// Formats `image` (already sized) as FAT32 and copies `files` in, creating directories.
pub fn write(image: &Path, files: &[EspFile]) -> Result<()> {
    let sectors = std::fs::metadata(image)?.len() / 512;
    cmd::run(Command::new("mformat").arg("-i").arg(image).args([
        "-F",
        "-v",
        "EFI-SYSTEM",
        "-T",
        &sectors.to_string(),
        "::",
    ]))?;
    let mut dirs: Vec<String> = Vec::new();
    for f in files {
        let mut at = String::new();
        let parent = f.dest.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            if !dirs.contains(&at) {
                cmd::run(
                    Command::new("mmd")
                        .arg("-i")
                        .arg(image)
                        .arg(format!("::{at}")),
                )?;
                dirs.push(at.clone());
            }
        }
        cmd::run(
            Command::new("mcopy")
                .arg("-i")
                .arg(image)
                .arg(&f.source)
                .arg(format!("::{}", f.dest)),
        )?;
    }
    Ok(())
}
