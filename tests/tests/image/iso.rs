//! The live ISO boots from a CD-ROM drive and, as the same file written to a USB stick (the
//! hybrid image's MBR and GPT), from USB mass storage, under SeaBIOS and OVMF, to a console that
//! logged `core` in by itself (`ferrocore.autologin`), running from RAM, with the installer present.

use image_tests::{image, Machine, Setup};
use qemu_runner::Firmware;

enum Medium {
    Cd,
    UsbStick,
}

fn boots_live(name: &str, firmware: Firmware, medium: Medium) {
    let iso = image().iso;
    let (cdrom, usb_stick) = match medium {
        Medium::Cd => (Some(iso), None),
        Medium::UsbStick => (None, Some(iso)),
    };
    let mut m = Machine::create_blank(
        name,
        Setup {
            firmware,
            cdrom,
            usb_stick,
            memory_mib: 1024,
            ..Setup::default()
        },
    )
    .unwrap();
    m.boot().unwrap();
    m.assert_running();
    assert_eq!(m.ssh("findmnt -no FSTYPE /").unwrap(), "tmpfs");
    assert_eq!(m.ssh("cat /sys/block/dm-0/dm/name").unwrap(), "usr");
    assert!(m
        .ssh("coreos-install --help")
        .unwrap()
        .contains("-d <DEVICE>"));
    // The serial console logged core in without a password.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !m.console().contains("(automatic login)") {
        assert!(
            std::time::Instant::now() < deadline,
            "no automatic login on the serial console"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    assert_eq!(
        m.ssh("loginctl list-sessions --no-legend | grep -c ttyS0")
            .unwrap(),
        "1"
    );
}

#[test]
fn live_iso_boots_under_bios() {
    boots_live("iso-bios", Firmware::Bios, Medium::Cd);
}

#[test]
fn live_iso_boots_under_uefi() {
    boots_live("iso-uefi", Firmware::Uefi, Medium::Cd);
}

#[test]
fn live_iso_on_a_usb_stick_boots_under_bios() {
    boots_live("usb-bios", Firmware::Bios, Medium::UsbStick);
}

#[test]
fn live_iso_on_a_usb_stick_boots_under_uefi() {
    boots_live("usb-uefi", Firmware::Uefi, Medium::UsbStick);
}
