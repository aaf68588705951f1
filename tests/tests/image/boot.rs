//! A fresh image boots under BIOS and UEFI to a healthy, verified system (kola-style checks).

use image_tests::{Machine, Setup};
use qemu_runner::Firmware;

const GIB: u64 = 1 << 30;

/// What a user checks first on a new machine; returns its machine-id.
fn check_healthy_first_boot(m: &mut Machine) -> String {
    assert_eq!(
        m.ssh("systemctl is-system-running --wait").unwrap(),
        "running",
        "{}",
        m.ssh("systemctl --failed --no-legend").unwrap_or_default()
    );
    assert_eq!(
        m.ssh("systemctl --failed --no-legend --plain").unwrap(),
        "",
        "failed units"
    );
    assert!(m.ssh("systemctl is-active multi-user.target").unwrap() == "active");

    // /usr: read-only, from the dm-verity device.
    let usr = m.ssh("findmnt -no SOURCE,FSTYPE,OPTIONS /usr").unwrap();
    let fields: Vec<&str> = usr.split_whitespace().collect();
    assert!(
        matches!(fields[..], ["/dev/mapper/usr" | "/dev/dm-0", "erofs", opts] if opts.split(',').any(|o| o == "ro")),
        "{usr}"
    );
    // ...whose device-mapper target is dm-verity over USR-A.
    assert_eq!(m.ssh("cat /sys/block/dm-0/dm/name").unwrap(), "usr");
    assert_eq!(m.ssh("ls /sys/block/dm-0/slaves").unwrap(), "vda3");
    let cmdline = m.ssh("cat /proc/cmdline").unwrap();
    assert!(cmdline.contains(" verity 1 PARTUUID="), "{cmdline}");
    let write = m
        .ssh_output("sudo touch /usr/ferrocore-write-test")
        .unwrap();
    assert!(!write.status.success(), "writing under /usr must fail");
    assert!(String::from_utf8_lossy(&write.stderr).contains("Read-only file system"));

    let os = m.ssh("cat /etc/os-release").unwrap();
    assert!(
        os.contains("ID=ferrocore") && os.contains("ID_LIKE=coreos"),
        "{os}"
    );

    // The channel chosen at build time is the one the machine asks for and its payload names.
    let img = image_tests::image();
    assert_eq!(
        m.ssh("grep ^GROUP= /usr/share/coreos/update.conf").unwrap(),
        format!("GROUP={}", img.channel)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.payload.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["channel"], img.channel.as_str());

    let id = m.ssh("cat /etc/machine-id").unwrap();
    assert_eq!(id.len(), 32, "machine-id {id:?}");
    id
}

/// ROOT grew to fill the disk copy (it is 1 GiB in the image).
fn check_root_fills_disk(m: &Machine, disk_bytes: u64) {
    let sectors = |f: &str| -> u64 {
        m.ssh(&format!("cat /sys/class/block/{f}"))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (disk, start, size) = (
        sectors("vda/size"),
        sectors("vda9/start"),
        sectors("vda9/size"),
    );
    assert_eq!(disk * 512, disk_bytes);
    // The backup GPT takes the last 33 sectors; alignment may leave a little more.
    assert!(
        disk - (start + size) < 4096,
        "ROOT ends at sector {} of {disk}",
        start + size
    );
    let fs_bytes: u64 = m
        .ssh("df --output=size -B1 / | tail -1")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        fs_bytes > size * 512 / 100 * 90,
        "ROOT's ext4 is {fs_bytes} bytes in a {} byte partition",
        size * 512
    );
}

/// The image ships the update server's unit, off by default; started, it serves on loopback only.
fn check_update_server_unit(m: &Machine) {
    assert_eq!(
        m.ssh("systemctl is-enabled ferro-update-server || true")
            .unwrap(),
        "disabled"
    );
    m.ssh("sudo systemctl start ferro-update-server").unwrap();
    let metrics = m
        .ssh("for i in $(seq 50); do curl -sf http://127.0.0.1:8095/metrics && exit 0; sleep 0.2; done; exit 1")
        .unwrap_or_else(|e| {
            panic!(
                "ferro-update-server did not answer: {e}\n{}",
                m.ssh("journalctl -u ferro-update-server --no-pager | tail -20")
                    .unwrap_or_default()
            )
        });
    assert!(
        metrics.contains("# TYPE ferro_update_instances gauge"),
        "{metrics}"
    );
    // Local addresses only (ss's peer column reads 0.0.0.0:* for every listener).
    let listening = m
        .ssh("ss -Hltn 'sport = :8095' | awk '{print $4}'")
        .unwrap();
    assert_eq!(listening, "127.0.0.1:8095");
}

#[test]
fn bios_and_uefi_fresh_copies_boot_healthy_with_their_own_machine_ids() {
    let disk_bytes = 8 * GIB;
    let mut bios = Machine::create(
        "bios",
        Setup {
            disk_size: Some(disk_bytes),
            ..Setup::default()
        },
    )
    .unwrap();
    let mut uefi = Machine::create(
        "uefi",
        Setup {
            firmware: Firmware::Uefi,
            ..Setup::default()
        },
    )
    .unwrap();
    // The two machines boot side by side.
    let (bios_id, uefi_id) = std::thread::scope(|scope| {
        let uefi_thread = scope.spawn(|| {
            uefi.boot().unwrap();
            let id = check_healthy_first_boot(&mut uefi);
            assert_eq!(
                uefi.ssh("test -d /sys/firmware/efi && echo efi").unwrap(),
                "efi"
            );
            check_update_server_unit(&uefi);
            id
        });

        bios.boot().unwrap();
        let bios_id = check_healthy_first_boot(&mut bios);
        assert!(bios.console().contains("first boot: preparing ROOT"));
        check_root_fills_disk(&bios, disk_bytes);

        // A second boot is not a first boot again: same machine-id, no first-boot setup.
        bios.poweroff().unwrap();
        bios.boot().unwrap();
        assert_eq!(bios.ssh("cat /etc/machine-id").unwrap(), bios_id);
        assert!(
            !bios.console().contains("first boot: preparing ROOT"),
            "second boot redid first-boot setup"
        );
        (
            bios_id,
            uefi_thread
                .join()
                .expect("the UEFI machine's checks failed"),
        )
    });
    assert_ne!(
        bios_id, uefi_id,
        "two fresh copies must not share a machine-id"
    );
}
