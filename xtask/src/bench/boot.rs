//! Boot to ssh (BIOS and UEFI) and image sizes, against plain Debian booted the simplest way.

use super::{mib, peer, secs, Row};
use crate::{build_image::BuildImage, paths};
use anyhow::Result;
use image_tests::{Machine, Setup};
use qemu_runner::{DirectKernel, Firmware};
use std::time::Instant;

fn time_to_ssh(m: &mut Machine) -> Result<std::time::Duration> {
    let start = Instant::now();
    m.boot()?;
    Ok(start.elapsed())
}

pub fn run() -> Result<Vec<Row>> {
    let info = BuildImage::default().run()?;
    let work = paths::target().join("bench");
    std::fs::create_dir_all(&work)?;
    let peer = peer::build(&work)?;

    let mut rows = Vec::new();
    let peer_setup = || Setup {
        direct_kernel: Some(DirectKernel {
            kernel: peer.kernel.clone(),
            initrd: peer.initrd.clone(),
            append: "root=/dev/vda rw console=ttyS0,115200n8".into(),
        }),
        ..Setup::default()
    };
    let mut p = Machine::create_from(
        "bench-peer",
        &peer.disk,
        &info.kernel,
        peer_setup(),
        Some(peer.key.clone()),
    )?;
    let peer_boot = time_to_ssh(&mut p)?;
    drop(p);
    for (name, firmware) in [("BIOS", Firmware::Bios), ("UEFI", Firmware::Uefi)] {
        let mut m = Machine::create_from(
            &format!("bench-{name}"),
            &info.raw,
            &info.kernel,
            Setup {
                firmware,
                ..Setup::default()
            },
            None,
        )?;
        let ours = time_to_ssh(&mut m)?;
        rows.push(Row::new(
            &format!("boot to ssh, {name} (TCG)"),
            secs(ours),
            secs(peer_boot),
            Some(ours.as_secs_f64() / peer_boot.as_secs_f64()),
        ));
    }

    let peer_qcow2 = work.join("peer.qcow2");
    crate::build_image::convert_qcow2(&peer.disk, &peer_qcow2)?;
    let peer_raw = crate::build_image::allocated(&peer.disk)?;
    let peer_q = std::fs::metadata(&peer_qcow2)?.len();
    rows.push(Row::new(
        "image, raw (allocated)",
        mib(info.raw_allocated_bytes),
        mib(peer_raw),
        Some(info.raw_allocated_bytes as f64 / peer_raw as f64),
    ));
    rows.push(Row::new(
        "image, qcow2 (zstd)",
        mib(info.qcow2_bytes),
        mib(peer_q),
        Some(info.qcow2_bytes as f64 / peer_q as f64),
    ));
    if let Some(t) = peer.build_time {
        rows.push(Row::new(
            "peer rootfs build (mmdebstrap + Debian kernel)",
            "".into(),
            secs(t),
            None,
        ));
    }
    Ok(rows)
}
