//! Bare metal as the book does it: PXE-boot the live system, then `coreos-install` to the disk.
//!
//! QEMU's iPXE ROM gets `boot.ipxe` from the user network's TFTP server and fetches the kernel
//! and the initramfs (which carries the verity-checked /usr) over HTTP from the host; the system
//! runs from RAM in 1 GiB, the cloud-config comes from `cloud-config-url=`. In that live system
//! `coreos-install` refuses what it must (with the disk untouched), then installs the signed image
//! from the host's HTTP server with a cloud-config; the machine then boots from its disk alone.

use image_tests::http::{Body, FileServer};
use image_tests::{image, ImageInfo, Machine, Setup};
use std::path::PathBuf;

/// The install tree as routes: `<prefix>/current/version.txt`, `<prefix>/<version>/…`.
fn install_routes(img: &ImageInfo, prefix: &str) -> Vec<(String, Body)> {
    let mut routes = vec![(
        format!("{prefix}/current/version.txt"),
        Body::File(img.install.join("current/version.txt")),
    )];
    for f in ["manifest.json", "manifest.json.sig", "disk.zst"] {
        routes.push((
            format!("{prefix}/{}/{f}", img.version),
            Body::File(img.install.join(&img.version).join(f)),
        ));
    }
    routes
}

/// Runs `command`, which must fail with `expected` in its error output.
fn refused(m: &Machine, command: &str, expected: &str) {
    let out = m.ssh_output(command).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "`{command}` succeeded");
    assert!(
        stderr.contains(expected),
        "`{command}`: expected {expected:?} in:\n{stderr}"
    );
}

#[test]
fn pxe_live_boot_then_coreos_install_to_disk() {
    let img = image();
    // The file names board/pxe/boot.ipxe asks for under its ${base}.
    let mut routes = vec![
        (
            "/ferrocore/ferrocore-pxe.vmlinuz".into(),
            Body::File(img.pxe_kernel.clone()),
        ),
        (
            "/ferrocore/ferrocore-pxe.cpio.zst".into(),
            Body::File(img.pxe_initramfs.clone()),
        ),
        (
            "/ferrocore/cloud-config.yml".into(),
            Body::Text("#cloud-config\nhostname: pxe-live\n".into()),
        ),
    ];
    routes.extend(install_routes(&img, "/stable"));
    // A release whose manifest was edited after signing.
    routes.extend(install_routes(&img, "/tampered"));
    let signed =
        std::fs::read_to_string(img.install.join(&img.version).join("manifest.json")).unwrap();
    let field = format!("\"channel\": \"{}\"", img.channel);
    let manifest = signed.replace(&field, "\"channel\": \"tampered\"");
    assert_ne!(
        manifest, signed,
        "the manifest has no {field} to tamper with"
    );
    let tampered = format!("/tampered/{}/manifest.json", img.version);
    routes.retain(|(p, _)| *p != tampered);
    routes.push((tampered, Body::Text(manifest)));
    let server = FileServer::routes(routes).unwrap();

    let tftp = image_tests::logs_dir("pxe-tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    let url = |p: &str| server.guest_url(p);
    // The example script users copy, board/pxe/boot.ipxe, with its ${base} set to the server.
    let example = image_tests::workspace().join("board/pxe/boot.ipxe");
    let script = std::fs::read_to_string(&example).unwrap();
    let base_line = "set base http://192.168.0.1/ferrocore";
    assert!(script.contains(base_line), "{}", example.display());
    std::fs::write(
        tftp.join("boot.ipxe"),
        script.replace(base_line, &format!("set base {}", url("/ferrocore"))),
    )
    .unwrap();
    // A third disk too small for the image.
    let small = image_tests::logs_dir("pxe-small-disk").join("small.img");
    std::fs::create_dir_all(small.parent().unwrap()).unwrap();
    std::fs::File::create(&small)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    // The install tree on a medium of its own (an ext4 "USB stick"), for the offline install.
    let offline = image_tests::logs_dir("pxe-offline").join("install.ext4");
    std::fs::create_dir_all(offline.parent().unwrap()).unwrap();
    let tree_bytes = std::fs::metadata(img.install.join(&img.version).join("disk.zst"))
        .unwrap()
        .len();
    std::fs::File::create(&offline)
        .unwrap()
        .set_len(tree_bytes + (64 << 20))
        .unwrap();
    image_tests::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "ferro-install", "-d"])
            .arg(&img.install)
            .arg(&offline),
    )
    .unwrap();
    let mut m = Machine::create_blank(
        "pxe",
        Setup {
            netboot: Some(qemu_runner::Netboot {
                tftp_dir: tftp.clone(),
                bootfile: "boot.ipxe".into(),
            }),
            extra_drives: vec![small.clone(), offline.clone()],
            disk_size: Some(6 << 30),
            memory_mib: 1024,
            ..Setup::default()
        },
    )
    .unwrap();
    m.boot().unwrap();

    // The live system.
    m.assert_running();
    assert_eq!(m.ssh("findmnt -no FSTYPE /").unwrap(), "tmpfs");
    assert_eq!(
        m.ssh("findmnt -no SOURCE,FSTYPE /usr").unwrap(),
        "/dev/dm-0 erofs"
    );
    assert_eq!(m.ssh("cat /sys/block/dm-0/dm/name").unwrap(), "usr");
    // The verity device sits on a loop device over the image in the initramfs.
    let lower = m.ssh("ls /sys/block/dm-0/slaves").unwrap();
    assert!(lower.starts_with("loop"), "{lower}");
    assert_eq!(m.ssh("hostname").unwrap(), "pxe-live");
    assert!(server
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /ferrocore/ferrocore-pxe.cpio.zst ")));
    assert_eq!(
        m.ssh("sudo blkid -p /dev/vda || echo blank").unwrap(),
        "blank",
        "the live system must leave the disk alone"
    );

    // Refusals leave the disk untouched: marks at its start and in the middle stay.
    let mark = "sudo sh -c 'printf ferrocore-mark | dd of=/dev/vda conv=notrunc status=none; printf ferrocore-mark | dd of=/dev/vda bs=1M seek=700 conv=notrunc status=none; sync'";
    m.ssh(mark).unwrap();
    let marks = "sudo sh -c 'head -c 14 /dev/vda; echo; dd if=/dev/vda bs=1M skip=700 count=1 status=none | head -c 14'";
    let marked = m.ssh(marks).unwrap();
    assert_eq!(marked, "ferrocore-mark\nferrocore-mark");
    let base = url("/stable");
    let install = |dev: &str, extra: &str| {
        format!(
            "sudo coreos-install -d {dev} -C {} -b {base} {extra}",
            img.channel
        )
    };
    m.ssh("touch /tmp/not-a-disk").unwrap();
    refused(&m, &install("/tmp/not-a-disk", ""), "not a block device");
    refused(&m, &install("/dev/vda1", ""), "no such device");
    refused(
        &m,
        &install(&format!("/dev/{lower}"), ""),
        "is in use by dm-0 (usr)",
    );
    refused(&m, &install("/dev/vdc", ""), "the image needs");
    m.ssh("printf '#cloud-config\\nhostname: [oops\\n' > /tmp/bad.yml")
        .unwrap();
    refused(
        &m,
        &install("/dev/vda", "-c /tmp/bad.yml"),
        "is not a valid cloud-config; nothing was written",
    );
    refused(
        &m,
        &format!("sudo coreos-install -d /dev/vda -b {}", url("/tampered")),
        "signature does not verify",
    );
    assert_eq!(m.ssh(marks).unwrap(), marked, "a refusal touched the disk");

    // Offline (-f): the release directory on the mounted medium; nothing is downloaded, and the
    // disk then holds exactly the bytes the signed manifest describes.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(img.install.join(&img.version).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let disk_part = manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "disk")
        .expect("the install manifest has a disk part");
    let downloads = |server: &FileServer| {
        server
            .requests()
            .iter()
            .filter(|r| r.contains("/disk.zst "))
            .count()
    };
    m.ssh("sudo mount -o ro LABEL=ferro-install /mnt").unwrap();
    let before = downloads(&server);
    let out = m
        .ssh(&format!(
            "sudo coreos-install -d /dev/vda -f /mnt/{} 2>&1",
            img.version
        ))
        .unwrap();
    assert!(out.contains("coreos-install: success"), "{out}");
    // Progress, a line per tenth on a non-terminal: checking, then writing.
    for line in [
        "checking 50%",
        "checking 100%",
        "writing 50%",
        "writing 100%",
    ] {
        assert!(out.contains(&format!("coreos-install: {line}")), "{out}");
    }
    assert_eq!(downloads(&server), before, "-f downloaded:\n{out}");
    // The guest's disk is a raw file here: read it at host speed once the guest has synced.
    m.ssh("sync").unwrap();
    let written = image_tests::run(std::process::Command::new("sh").arg("-c").arg(format!(
        "head -c {} '{}' | sha256sum",
        disk_part["size"],
        m.disk.display()
    )))
    .unwrap();
    assert_eq!(
        written.split_whitespace().next(),
        disk_part["sha256"].as_str(),
        "the disk after coreos-install -f"
    );
    m.ssh("sudo umount /mnt").unwrap();

    // The install, with a cloud-config that carries the harness's key (no config drive later).
    let cc = image_tests::logs_dir("pxe").join("install.yml");
    std::fs::write(
        &cc,
        format!(
            "#cloud-config\nhostname: installed\nssh_authorized_keys:\n  - {}\n",
            m.public_key().unwrap()
        ),
    )
    .unwrap();
    m.scp_to(&cc, "/tmp/install.yml").unwrap();
    // From the server, this time naming the version (-V) instead of the channel's current one.
    let out = m
        .ssh(&format!(
            "{} 2>&1",
            install(
                "/dev/vda",
                &format!("-V {} -c /tmp/install.yml -o metal", img.version)
            )
        ))
        .unwrap();
    assert!(out.contains("coreos-install: success"), "{out}");
    assert!(out.contains(&format!("Ferrocore {}", img.version)), "{out}");
    let disk_gets = server
        .requests()
        .iter()
        .filter(|r| r.starts_with(&format!("GET /stable/{}/disk.zst", img.version)))
        .count();
    assert_eq!(disk_gets, 2, "checked once, then written");
    assert!(out.contains("coreos-install: writing 100%"), "{out}");
    // A mounted disk is refused.
    m.ssh("sudo mount -o ro /dev/vda9 /mnt").unwrap();
    refused(&m, &install("/dev/vda", ""), "vda9 is mounted at /mnt");
    m.ssh("sudo umount /mnt").unwrap();
    m.poweroff().unwrap();

    // The disk alone: the installed system with the install's cloud-config.
    m.disk_only();
    m.boot().unwrap();
    m.assert_running();
    assert_eq!(m.ssh("hostname").unwrap(), "installed");
    assert_eq!(
        m.ssh("findmnt -no SOURCE,FSTYPE /").unwrap(),
        "/dev/vda9 ext4"
    );
    assert_eq!(m.ssh("ls /sys/block/dm-0/slaves").unwrap(), "vda3");
    let table = m.ssh("sudo sgdisk -p /dev/vda").unwrap();
    for label in ["EFI-SYSTEM", "USR-A", "USR-B", "OEM", "ROOT"] {
        assert!(table.contains(label), "{label} missing:\n{table}");
    }
    assert!(m
        .ssh("cat /proc/cmdline")
        .unwrap()
        .contains("coreos.oem.id=metal"));
    // A/B in place: USR-A booted and good, USR-B empty, as a fresh image.
    let slots = m.ssh("sudo ferro-slot show").unwrap();
    assert!(slots.contains("next boot: USR-A"), "{slots}");
    drop(m);
    let _ = std::fs::remove_file(PathBuf::from(&small));
    let _ = std::fs::remove_file(&offline);
}

/// `root=` on a live system's command line keeps ROOT on that disk instead of in RAM: what the
/// machine writes survives its next PXE boot, which is not a first boot again. The PXE kernel and
/// initramfs are booted directly (the same files iPXE fetches above).
#[test]
fn pxe_live_root_on_the_disk_root_names_persists_across_boots() {
    let img = image();
    let mut m = Machine::create_blank(
        "pxe-root-disk",
        Setup {
            direct_kernel: Some(qemu_runner::DirectKernel {
                kernel: img.pxe_kernel.clone(),
                initrd: img.pxe_initramfs.clone(),
                append: "console=ttyS0,115200n8 root=LABEL=PXE-ROOT".into(),
            }),
            disk_size: Some(2 << 30),
            memory_mib: 1024,
            ..Setup::default()
        },
    )
    .unwrap();
    // As the admin prepares the disk (or a cloud-config's mkfs unit did on an earlier boot).
    image_tests::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "PXE-ROOT"])
            .arg(&m.disk),
    )
    .unwrap();
    m.boot().unwrap();
    m.assert_running();
    assert_eq!(
        m.ssh("findmnt -no SOURCE,FSTYPE /").unwrap(),
        "/dev/vda ext4"
    );
    assert!(m
        .console()
        .contains("ROOT on /dev/vda (root=LABEL=PXE-ROOT)"));
    assert!(m.console().contains("first boot: preparing ROOT"));
    // /usr still comes from the initramfs, verity-checked.
    assert_eq!(m.ssh("cat /sys/block/dm-0/dm/name").unwrap(), "usr");
    let id = m.ssh("cat /etc/machine-id").unwrap();
    m.ssh("sudo sh -c 'echo kept > /var/lib/pxe-kept && sync'")
        .unwrap();
    m.poweroff().unwrap();

    m.boot().unwrap();
    m.assert_running();
    assert_eq!(m.ssh("cat /etc/machine-id").unwrap(), id);
    assert_eq!(m.ssh("cat /var/lib/pxe-kept").unwrap(), "kept");
    assert!(
        !m.console().contains("first boot: preparing ROOT"),
        "the second PXE boot redid first-boot setup"
    );
}
