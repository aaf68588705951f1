//! The live ISO: the PXE kernel and initramfs (which carries the verity-checked /usr) on a hybrid
//! BIOS + UEFI image for CD or USB stick, made rootless by `grub-mkrescue` (Debian's GRUB and
//! `xorriso`; `mformat` for its EFI image). As the CoreOS ISO did, the console logs in
//! automatically (`ferrocore.autologin`) so `coreos-install` is one command away.

use crate::cmd;
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// Kernel arguments of the live ISO's boot entry.
pub const CMDLINE: &str = "console=tty0 console=ttyS0,115200n8 ferrocore.autologin";

fn grub_cfg() -> String {
    format!(
        r#"# Ferrocore live ISO
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=3
set default=0
menuentry "Ferrocore live (runs from RAM)" {{
    linux /ferrocore/vmlinuz {CMDLINE}
    initrd /ferrocore/initramfs.cpio.zst
}}
"#
    )
}

/// Writes `iso` from the live kernel and initramfs; `work` is scratch space.
pub fn write(kernel: &Path, initramfs: &Path, work: &Path, iso: &Path) -> Result<()> {
    let tree = work.join("iso-root");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::create_dir_all(tree.join("ferrocore"))?;
    std::fs::create_dir_all(tree.join("boot/grub"))?;
    // Hard links: the initramfs is ~200 MiB and the stage is on the same file system.
    for (src, name) in [(kernel, "vmlinuz"), (initramfs, "initramfs.cpio.zst")] {
        let dest = tree.join("ferrocore").join(name);
        if std::fs::hard_link(src, &dest).is_err() {
            std::fs::copy(src, &dest)?;
        }
    }
    std::fs::write(tree.join("boot/grub/grub.cfg"), grub_cfg())?;
    cmd::run(
        Command::new("grub-mkrescue")
            .arg("-o")
            .arg(iso)
            .arg(&tree)
            .args(["--", "-volid", "FERROCORE_LIVE"]),
    )
}
