//! A/B fallback: a USR-B given higher priority and one try, but holding nothing bootable, ends
//! with the machine back on USR-A, and the slot bits say so.

use gptprio::{Disk, Slot, SlotState};
use image_tests::{image, run, Machine, Setup};
use std::process::Command;

fn esp_target(disk: &std::path::Path) -> String {
    let d = Disk::open(disk, false).unwrap();
    let esp = d
        .partitions()
        .into_iter()
        .find(|p| p.label == "EFI-SYSTEM")
        .expect("ESP");
    format!("{}@@{}", disk.display(), esp.first_lba * 512)
}

#[test]
fn untried_broken_usr_b_falls_back_to_a() {
    let img = image();
    let mut m = Machine::create("slot-fallback", Setup::default()).unwrap();
    let esp = esp_target(&m.disk);

    // B gets A's kernel and initrd, and a command line naming its own, empty, partition.
    let a_cfg = m.dir.join("boot-a.cfg");
    run(Command::new("mcopy")
        .args(["-i", &esp, "::/ferrocore/usr-a/boot.cfg"])
        .arg(&a_cfg))
    .unwrap();
    let b_cfg_text = std::fs::read_to_string(&a_cfg)
        .unwrap()
        .replace("/usr-a/", "/usr-b/")
        .replace(
            "ferrocore.slot=A",
            "ferrocore.slot=B ferrocore.fatal_delay=3",
        )
        .replace(&img.partuuids["USR-A"], &img.partuuids["USR-B"]);
    let b_cfg = m.dir.join("boot-b.cfg");
    std::fs::write(&b_cfg, b_cfg_text).unwrap();
    run(Command::new("mmd").args(["-i", &esp, "::/ferrocore/usr-b"])).unwrap();
    for (src, dest) in [
        ("::/ferrocore/usr-a/vmlinuz", "vmlinuz"),
        ("::/ferrocore/usr-a/initrd", "initrd"),
    ] {
        let local = m.dir.join(dest);
        run(Command::new("mcopy").args(["-i", &esp, src]).arg(&local)).unwrap();
        run(Command::new("mcopy")
            .args(["-i", &esp])
            .arg(&local)
            .arg(format!("::/ferrocore/usr-b/{dest}")))
        .unwrap();
    }
    run(Command::new("mcopy")
        .args(["-i", &esp])
        .arg(&b_cfg)
        .arg("::/ferrocore/usr-b/boot.cfg"))
    .unwrap();

    let mut disk = Disk::open(&m.disk, true).unwrap();
    let a = disk.slot(Slot::A).unwrap();
    disk.set_slot(
        Slot::B,
        SlotState {
            priority: a.priority + 1,
            tries: 1,
            successful: false,
        },
    )
    .unwrap();
    disk.write().unwrap();
    drop(disk);

    m.boot().unwrap();
    let console = m.console();
    assert!(console.contains("booting slot USR-B"), "GRUB never tried B");
    assert!(
        console.contains("FATAL"),
        "B's failure was not reported on the console"
    );
    assert!(
        console.contains("booting slot USR-A"),
        "did not fall back to A"
    );
    let cmdline = m.ssh("cat /proc/cmdline").unwrap();
    assert!(cmdline.contains("ferrocore.slot=A"), "{cmdline}");
    // The healthy boot marks A good and folds GRUB's spent try into B's GPT bits.
    m.ssh("systemctl is-system-running --wait; sudo systemctl start ferrocore-mark-successful.service").unwrap();
    m.poweroff().unwrap();

    let disk = Disk::open(&m.disk, false).unwrap();
    let b = disk.slot(Slot::B).unwrap();
    assert_eq!((b.tries, b.successful), (0, false), "B: {b:?}");
    assert!(disk.slot(Slot::A).unwrap().successful);
    assert_eq!(
        gptprio::choose_next(disk.slot(Slot::A).unwrap(), b),
        Some(Slot::A)
    );
}
