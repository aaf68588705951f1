//! GRUB from Debian's binaries: UEFI `BOOTX64.EFI` and BIOS `core.img` made with grub-mkimage,
//! both embedding `image/early.cfg`; `grub.cfg` rendered from `image/grub.cfg`; and the BIOS boot
//! code embedded by hand, because grub-bios-setup probes the host's devices and cannot work on an
//! image file.

use crate::cmd;
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::process::Command;

/// Modules both images carry: enough to find the ESP, read grubenv and boot Linux.
const COMMON_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "ext2",
    "search",
    "search_label",
    "search_fs_uuid",
    "normal",
    "configfile",
    "linux",
    "echo",
    "test",
    "loadenv",
    "sleep",
    "reboot",
    "halt",
    "serial",
    "terminal",
    "gzio",
    "minicmd",
    "cat",
];
const EFI_MODULES: &[&str] = &["efi_gop", "efi_uga", "all_video"];
const BIOS_MODULES: &[&str] = &["biosdisk", "vga"];

fn mkimage(format: &str, out: &Path, extra: &[&str]) -> Result<()> {
    let early = crate::paths::root().join("image/early.cfg");
    cmd::run(
        Command::new("grub-mkimage")
            .args(["-O", format, "-p", "/ferrocore", "-c"])
            .arg(&early)
            .arg("-o")
            .arg(out)
            .args(COMMON_MODULES)
            .args(extra),
    )
}

pub fn make_efi(out: &Path) -> Result<()> {
    mkimage("x86_64-efi", out, EFI_MODULES)
}

pub fn make_bios_core(out: &Path) -> Result<()> {
    mkimage("i386-pc", out, BIOS_MODULES)
}

/// `boot.img`'s first 440 bytes with the start sector of core.img patched in (offset 0x5c).
pub fn bios_mbr_code(bios_boot_lba: u64) -> Result<[u8; 440]> {
    let boot = std::fs::read("/usr/lib/grub/i386-pc/boot.img")
        .context("reading GRUB's boot.img (Debian package grub-pc-bin)")?;
    ensure!(
        boot.len() == 512,
        "boot.img is {} bytes, expected 512",
        boot.len()
    );
    let mut code = [0u8; 440];
    code.copy_from_slice(&boot[..440]);
    code[0x5c..0x64].copy_from_slice(&bios_boot_lba.to_le_bytes());
    Ok(code)
}

/// core.img with its first sector's blocklist (at 0x1f4) pointing at the rest of itself:
/// start LBA + 1 and sector count − 1, as grub-bios-setup would write it.
pub fn patch_core(core: &mut Vec<u8>, bios_boot_lba: u64, max_size: u64) -> Result<()> {
    while !core.len().is_multiple_of(512) {
        core.push(0);
    }
    ensure!(
        core.len() as u64 <= max_size,
        "GRUB core.img is {} bytes, BIOS-BOOT holds {max_size}",
        core.len()
    );
    let sectors = (core.len() / 512) as u16;
    core[0x1f4..0x1fc].copy_from_slice(&(bios_boot_lba + 1).to_le_bytes());
    core[0x1fc..0x1fe].copy_from_slice(&(sectors - 1).to_le_bytes());
    Ok(())
}

/// A GRUB script chain that decrements `var` (0–15) by one.
fn decrement_chain(var: &str) -> String {
    let mut s = String::new();
    for n in 1..=15u8 {
        let kw = if n == 1 { "if" } else { "elif" };
        s.push_str(&format!(
            "{kw} [ \"${var}\" = \"{n}\" ]; then set {var}={}\n        ",
            n - 1
        ));
    }
    s.push_str("fi");
    s
}

pub fn render_grub_cfg() -> Result<String> {
    let path = crate::paths::root().join("image/grub.cfg");
    let template = std::fs::read_to_string(&path)?;
    Ok(template
        .replace("@GENERATED_DECREMENT_A@", &decrement_chain("usr_a_tries"))
        .replace("@GENERATED_DECREMENT_B@", &decrement_chain("usr_b_tries"))
        .replace(
            "# @GENERATED@ lines are filled in by `cargo xtask build-image`.\n",
            "",
        ))
}

/// A slot's `boot.cfg`: its kernel, initrd and command line (with the verity table), then
/// `$linux_append` from the OEM partition's grub.cfg (GRUB splits it into words; empty adds none).
pub fn slot_boot_cfg(slot_dir: &str, cmdline: &str) -> String {
    format!(
        "linux /ferrocore/{slot_dir}/vmlinuz {cmdline} $linux_append\ninitrd /ferrocore/{slot_dir}/initrd\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_has_no_placeholders_and_decrements_every_value() {
        let cfg = render_grub_cfg().unwrap();
        assert!(!cfg.contains('@'), "{cfg}");
        for n in 1..=15 {
            assert!(cfg.contains(&format!("= \"{n}\" ]; then set usr_b_tries={}", n - 1)));
        }
    }

    #[test]
    fn core_blocklist_points_past_its_first_sector() {
        let mut core = vec![0u8; 512 * 3 + 10];
        patch_core(&mut core, 4096, 1 << 20).unwrap();
        assert_eq!(core.len(), 512 * 4);
        assert_eq!(
            u64::from_le_bytes(core[0x1f4..0x1fc].try_into().unwrap()),
            4097
        );
        assert_eq!(
            u16::from_le_bytes(core[0x1fc..0x1fe].try_into().unwrap()),
            3
        );
        assert!(patch_core(&mut vec![0u8; 4096], 1, 1024).is_err());
    }
}
