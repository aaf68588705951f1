//! `--board pxe`: next to the live kernel and initramfs, the boot configurations of
//! `board/pxe/` with this build's file names filled in, ready to copy to a TFTP/HTTP server.

use super::Context;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// File names the examples in `board/pxe/` use for the kernel and initramfs.
const KERNEL_NAME: &str = "ferrocore-pxe.vmlinuz";
const INITRAMFS_NAME: &str = "ferrocore-pxe.cpio.zst";

pub fn write(ctx: &Context) -> Result<BTreeMap<String, PathBuf>> {
    let dir = crate::paths::root().join("board/pxe");
    let name = |p: &std::path::Path| p.file_name().expect("named").to_string_lossy().into_owned();
    let (kernel, initramfs) = (name(ctx.pxe_kernel), name(ctx.pxe_initramfs));
    let mut out = BTreeMap::new();
    for (key, file, ext) in [
        ("ipxe", "boot.ipxe", "ipxe"),
        ("pxelinux", "pxelinux.cfg", "pxelinux.cfg"),
    ] {
        let src = dir.join(file);
        let text = std::fs::read_to_string(&src)
            .with_context(|| format!("reading {}", src.display()))?
            .replace(KERNEL_NAME, &kernel)
            .replace(INITRAMFS_NAME, &initramfs);
        let dest = ctx.stage.join(format!("{}.{ext}", ctx.base));
        std::fs::write(&dest, text)?;
        out.insert(key.to_string(), dest);
    }
    Ok(out)
}
