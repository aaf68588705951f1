//! Docker runs a container from an image built locally from a tarball (no registry).

use image_tests::{run, Machine, Setup};
use std::process::Command;

#[test]
fn docker_runs_a_locally_imported_image() {
    let mut m = Machine::create("docker", Setup::default()).unwrap();
    // A one-binary root filesystem from Debian's busybox-static.
    let rootfs = m.dir.join("busybox-rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static on the host");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let tarball = m.dir.join("busybox.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg("."))
    .unwrap();

    m.boot().unwrap();
    m.scp_to(&tarball, "/home/core/busybox.tar").unwrap();
    m.ssh("docker import /home/core/busybox.tar local/busybox:1")
        .unwrap();
    let out = m
        .ssh("docker run --rm local/busybox:1 /bin/busybox echo hello from a ferrocore container")
        .unwrap();
    assert_eq!(out, "hello from a ferrocore container");
}
