//! PXE live boot as on bare metal: QEMU's iPXE ROM gets `boot.ipxe` from the user network's TFTP
//! server, fetches the kernel and the initramfs (which carries the verity-checked /usr) over
//! HTTP from the host, and the system runs from RAM in 1 GiB with a blank disk untouched; the
//! cloud-config comes from `cloud-config-url=`.

use image_tests::http::{Body, FileServer};
use image_tests::{image, Machine, Setup};

#[test]
fn pxe_live_boot_runs_from_ram_with_cloud_config_from_url() {
    let img = image();
    let server = FileServer::routes(vec![
        ("/vmlinuz".into(), Body::File(img.pxe_kernel.clone())),
        ("/initramfs".into(), Body::File(img.pxe_initramfs.clone())),
        (
            "/cloud-config.yml".into(),
            Body::Text("#cloud-config\nhostname: pxe-live\n".into()),
        ),
    ])
    .unwrap();
    let tftp = image_tests::logs_dir("pxe-tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    let url = |p: &str| server.guest_url(p);
    // The same script as board/pxe/boot.ipxe, pointed at the test's server.
    std::fs::write(
        tftp.join("boot.ipxe"),
        format!(
            "#!ipxe\nkernel {} initrd=initramfs console=ttyS0,115200n8 cloud-config-url={}\ninitrd --name initramfs {}\nboot\n",
            url("/vmlinuz"),
            url("/cloud-config.yml"),
            url("/initramfs")
        ),
    )
    .unwrap();
    let mut m = Machine::create_blank(
        "pxe",
        Setup {
            netboot: Some(qemu_runner::Netboot {
                tftp_dir: tftp.clone(),
                bootfile: "boot.ipxe".into(),
            }),
            memory_mib: 1024,
            ..Setup::default()
        },
    )
    .unwrap();
    m.boot().unwrap();
    let state = m.ssh("systemctl is-system-running --wait || true").unwrap();
    assert_eq!(
        m.ssh("systemctl --failed --no-legend --plain").unwrap(),
        "",
        "failed units"
    );
    assert_eq!(state, "running");
    assert_eq!(m.ssh("findmnt -no FSTYPE /").unwrap(), "tmpfs");
    assert_eq!(
        m.ssh("findmnt -no SOURCE,FSTYPE /usr").unwrap(),
        "/dev/dm-0 erofs"
    );
    assert_eq!(m.ssh("cat /sys/block/dm-0/dm/name").unwrap(), "usr");
    // The verity device sits on a loop device over the image in the initramfs.
    assert!(m
        .ssh("ls /sys/block/dm-0/slaves")
        .unwrap()
        .starts_with("loop"));
    assert_eq!(m.ssh("hostname").unwrap(), "pxe-live");
    assert!(server
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /initramfs ")));
    // The blank disk is left alone.
    assert_eq!(
        m.ssh("sudo blkid -p /dev/vda || echo blank").unwrap(),
        "blank"
    );
}
