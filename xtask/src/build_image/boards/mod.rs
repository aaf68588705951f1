//! What each board adds to the common disk image.
//!
//! Every board gets the same A/B disk image (its OEM partition filled from `board/<board>/oem/`),
//! the qcow2, the update payload and the PXE kernel + initramfs. A board's module then writes its
//! own formats into the stage directory, named `<base>.<ext>`, and returns them by name; they are
//! published with the rest and listed in `image.json` under `board_outputs`.

mod ec2;
mod gce;
mod pxe;
mod virtualbox;

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Boards `build-image --board` knows.
pub const BOARDS: &[&str] = &["qemu", "pxe", "metal", "ec2", "gce", "virtualbox"];

/// Inputs a board's outputs are made from; everything is already written.
// Until every board has landed some fields are read by none of them.
#[allow(dead_code)]
pub struct Context<'a> {
    pub board: &'a str,
    /// Where outputs go before they are published.
    pub stage: &'a Path,
    /// File name stem: `ferrocore-<version>-<build id>-<board>`.
    pub base: &'a str,
    /// The raw disk image.
    pub raw: &'a Path,
    /// The same disk as a compressed qcow2.
    pub qcow2: &'a Path,
    pub kernel: &'a Path,
    pub pxe_kernel: &'a Path,
    pub pxe_initramfs: &'a Path,
    /// Scratch space, removed after the build.
    pub work: &'a Path,
}

pub fn check(board: &str) -> Result<()> {
    if !BOARDS.contains(&board) {
        bail!("unknown board `{board}`; available: {}", BOARDS.join(", "));
    }
    Ok(())
}

/// The board's own outputs, written into `ctx.stage`.
pub fn write_outputs(ctx: &Context) -> Result<BTreeMap<String, PathBuf>> {
    match ctx.board {
        // The disk image, qcow2 and PXE files are all these boards need.
        "qemu" | "metal" => Ok(BTreeMap::new()),
        "pxe" => pxe::write(ctx),
        "ec2" => ec2::write_outputs(ctx),
        "gce" => gce::write_outputs(ctx),
        "virtualbox" => virtualbox::write_outputs(ctx),
        other => bail!("board `{other}` has no outputs defined"),
    }
}
