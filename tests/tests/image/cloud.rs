//! The ec2 and gce boards boot as their clouds would start them: EC2 on UEFI with the volume on
//! NVMe, GCE from the `disk.raw` inside its import tarball on virtio-scsi. Neither gets a config
//! drive: the ssh key and the user data come only from the cloud's metadata service (a local
//! double at 169.254.169.254 that answers as the real one: IMDSv2 tokens, `Metadata-Flavor`).

use image_tests::metadata::{Cloud, MetadataServer, Seen};
use image_tests::{board_image, run, Machine, Setup};
use qemu_runner::{DiskBus, Firmware};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A key pair made for this machine (the "EC2 key pair" / GCE `ssh-keys` entry).
fn key_pair(dir: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cloud-key", "-f"])
        .arg(&key))
    .unwrap();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

fn user_data(hostname: &str) -> String {
    format!(
        "#cloud-config\nhostname: {hostname}\nwrite_files:\n  - path: /etc/cloud-test\n    \
         content: \"private $private_ipv4 public $public_ipv4\\n\"\n"
    )
}

/// What the guest sees on every board: a healthy boot, /usr read-only from dm-verity, the
/// metadata unit done, the user data applied with the metadata's addresses.
fn check_cloud_boot(m: &Machine, unit: &str, oem_id: &str, hostname: &str) {
    m.assert_running();
    assert_eq!(m.ssh("findmnt -no FSTYPE /usr").unwrap(), "erofs");
    assert_eq!(m.ssh("cat /sys/block/dm-0/dm/name").unwrap(), "usr");
    assert!(m
        .ssh("cat /etc/oem-release")
        .unwrap()
        .contains(&format!("ID={oem_id}")));
    assert_eq!(
        m.ssh(&format!("systemctl is-active {unit}")).unwrap(),
        "active"
    );
    assert_eq!(m.ssh("hostname").unwrap(), hostname);
    assert_eq!(
        m.ssh("cat /etc/cloud-test").unwrap(),
        "private 10.1.2.3 public 203.0.113.7"
    );
    let env = m.ssh("cat /etc/environment").unwrap();
    assert!(env.contains("COREOS_PRIVATE_IPV4=10.1.2.3"), "{env}");
    assert!(env.contains("COREOS_PUBLIC_IPV4=203.0.113.7"), "{env}");
}

/// The guest asked for each path, and every request but the refused probes carried what the
/// cloud demands.
fn check_requests(seen: &[Seen], paths: &[&str]) {
    for p in paths {
        assert!(
            seen.iter().any(|s| s.path == *p && s.status == 200),
            "{p} never served: {seen:?}"
        );
    }
    assert!(seen.iter().all(|s| s.authorized), "{seen:?}");
}

#[test]
fn ec2_image_boots_from_nvme_with_its_key_and_user_data_from_imdsv2() {
    let img = board_image("ec2");
    let dir = image_tests::logs_dir("ec2-keys");
    let (key, public) = key_pair(&dir);
    let imds = MetadataServer::start(
        Cloud::Ec2,
        &[
            ("user-data", &user_data("ip-10-1-2-3")),
            ("meta-data/local-ipv4", "10.1.2.3"),
            ("meta-data/public-ipv4", "203.0.113.7"),
            ("meta-data/public-keys/", "0=ferrocore-test"),
            ("meta-data/public-keys/0/openssh-key", &public),
        ],
    )
    .unwrap();
    let mut m = Machine::create_from(
        "ec2",
        &img.raw,
        &img.kernel,
        Setup {
            // Nitro instances: UEFI-preferred boot, EBS volumes on NVMe.
            firmware: Firmware::Uefi,
            disk_bus: DiskBus::Nvme,
            metadata_port: Some(imds.port),
            ..Setup::default()
        },
        Some(key),
    )
    .unwrap();
    // ssh answers only if the key came from the metadata service: there is no config drive.
    m.boot().unwrap();
    check_cloud_boot(&m, "ec2-cloudinit.service", "ami", "ip-10-1-2-3");
    // /usr is verity over the NVMe namespace's USR-A partition.
    assert_eq!(
        m.ssh("ls /sys/block/dm-0/slaves").unwrap(),
        "nvme0n1p3",
        "dm-0 sits on the NVMe disk"
    );
    // Nitro's NIC: the ENA driver is built in (QEMU has no ENA device to bind it to).
    m.ssh("test -d /sys/bus/pci/drivers/ena").unwrap();
    let seen = imds.requests();
    check_requests(
        &seen,
        &[
            "/latest/api/token",
            "/latest/user-data",
            "/latest/meta-data/public-keys/0/openssh-key",
        ],
    );
    // IMDSv2: a token is asked for (PUT) before anything is read.
    assert_eq!(seen[0].method, "PUT", "{seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gce_tarball_disk_boots_on_virtio_scsi_with_its_key_and_user_data_from_the_metadata_server() {
    let img = board_image("gce");
    let dir = image_tests::logs_dir("gce-import");
    let (key, public) = key_pair(&dir);
    // Boot what GCE imports: the disk.raw inside the tarball, unpacked by GNU tar.
    run(Command::new("tar")
        .arg("-xzf")
        .arg(img.output("gce-tarball"))
        .arg("-C")
        .arg(&dir))
    .unwrap();
    let md = MetadataServer::start(
        Cloud::Gce,
        &[
            ("attributes/user-data", &user_data("gce-test")),
            ("attributes/ssh-keys", &format!("core:{public}")),
            ("network-interfaces/0/ip", "10.1.2.3"),
            (
                "network-interfaces/0/access-configs/0/external-ip",
                "203.0.113.7",
            ),
        ],
    )
    .unwrap();
    let mut m = Machine::create_from(
        "gce",
        &dir.join("disk.raw"),
        &img.kernel,
        Setup {
            disk_bus: DiskBus::VirtioScsi,
            metadata_port: Some(md.port),
            ..Setup::default()
        },
        Some(key),
    )
    .unwrap();
    std::fs::remove_file(dir.join("disk.raw")).unwrap();
    m.boot().unwrap();
    check_cloud_boot(&m, "gce-cloudinit.service", "gce", "gce-test");
    assert_eq!(
        m.ssh("ls /sys/block/dm-0/slaves").unwrap(),
        "sda3",
        "dm-0 sits on the SCSI disk"
    );
    assert_eq!(
        m.ssh("basename $(readlink /sys/block/sda/device/driver)")
            .unwrap(),
        "sd"
    );
    // gVNIC is built in (QEMU has no gVNIC device to bind it to).
    m.ssh("test -d /sys/bus/pci/drivers/gvnic").unwrap();
    check_requests(
        &md.requests(),
        &[
            "/computeMetadata/v1/instance/attributes/user-data",
            "/computeMetadata/v1/instance/attributes/ssh-keys",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
