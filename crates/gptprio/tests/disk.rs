//! `Disk` on sparse images with CoreOS's layout: the GPT bits and the grubenv mirror change
//! together, and the peers (sgdisk, mtools, fsck.fat) see what we wrote.

mod common;

use common::{st, tool, Fat, UNRELATED_BIT};
use gptprio::{choose_next, grubenv_slot, Disk, Slot, SlotState};
use std::process::Command;

fn write_updates_gpt_and_grubenv_together(fat: Fat) {
    let dir = tempfile::tempdir().unwrap();
    let path = common::disk(dir.path(), fat);
    let mut disk = Disk::open(&path, true).unwrap();
    assert_eq!(disk.slot(Slot::A).unwrap(), st(1, 0, true));
    assert_eq!(disk.slot(Slot::B).unwrap(), SlotState::default());
    disk.prepare_update(Slot::B).unwrap();
    disk.activate(Slot::B).unwrap();
    disk.write().unwrap();

    let disk = Disk::open(&path, false).unwrap();
    let env = disk.read_grubenv().unwrap();
    for (slot, want) in [(Slot::A, st(1, 0, true)), (Slot::B, st(2, 1, false))] {
        assert_eq!(disk.slot(slot).unwrap(), want, "{slot} in the GPT");
        assert_eq!(grubenv_slot(&env, slot), Some(want), "{slot} in grubenv");
    }
    assert_eq!(
        choose_next(disk.slot(Slot::A).unwrap(), disk.slot(Slot::B).unwrap()),
        Some(Slot::B)
    );
    // Numbers kept (gaps included) and the bits we do not own untouched.
    let parts = disk.partitions();
    let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
    assert_eq!(numbers, vec![1, 3, 4, 9]);
    assert!(parts.iter().all(|p| p.attributes & UNRELATED_BIT != 0));
    assert_eq!(parts[2].label, "USR-B");
    assert_eq!(parts[2].type_guid.to_string(), gptprio::USR_TYPE_GUID);

    // The FAT is still clean after our in-place write. (Only checked on mformat's FAT: fatfs
    // 0.3.6's create_dir, used by the other fixture, writes LFN entries for `.`/`..` that fsck
    // rejects — rafalh/rust-fatfs#100, fixed after 0.3.6. The library never creates directories.)
    if let Fat::Mtools = fat {
        let esp = dir.path().join("esp.img");
        let bytes = std::fs::read(&path).unwrap();
        let at = common::ESP_START as usize;
        std::fs::write(&esp, &bytes[at..at + common::ESP_SIZE as usize]).unwrap();
        tool("dosfstools", Command::new("fsck.fat").arg("-n").arg(&esp));
    }
    // mtools reads the new grubenv.
    let text = tool(
        "mtools",
        Command::new("mtype").args(["-i", &common::esp_target(&path), "::/ferrocore/grubenv"]),
    );
    assert!(
        text.contains("usr_b_priority=2\nusr_b_tries=1\nusr_b_successful=0\n"),
        "{text}"
    );
}

#[test]
fn write_updates_gpt_and_grubenv_on_a_fatfs_esp() {
    write_updates_gpt_and_grubenv_together(Fat::Fatfs);
}

#[test]
fn write_updates_gpt_and_grubenv_on_an_mtools_esp() {
    // The image build formats the ESP with mformat: that is the FAT we must handle.
    write_updates_gpt_and_grubenv_together(Fat::Mtools);
}

#[test]
fn sgdisk_sees_our_numbers_labels_and_bits() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::disk(dir.path(), Fat::Fatfs);
    let mut disk = Disk::open(&path, true).unwrap();
    disk.set_slot(Slot::A, st(5, 3, false)).unwrap();
    disk.write().unwrap();

    let info = tool("gdisk", Command::new("sgdisk").args(["-i", "3"]).arg(&path));
    assert!(info.contains("Partition name: 'USR-A'"), "{info}");
    // bit 60 (ours for the test) | tries 3 << 52 | priority 5 << 48
    assert!(info.contains("Attribute flags: 1035000000000000"), "{info}");
    assert!(
        info.contains("Partition GUID code: 5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"),
        "{info}"
    );

    let table = tool("gdisk", Command::new("sgdisk").arg("-p").arg(&path));
    let rows: Vec<(String, String)> = table
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[f.len() - 1].to_string())
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("1", "EFI-SYSTEM"),
        ("3", "USR-A"),
        ("4", "USR-B"),
        ("9", "ROOT"),
    ]
    .iter()
    .map(|(n, l)| (n.to_string(), l.to_string()))
    .collect();
    assert_eq!(rows, want, "{table}");

    // Primary and backup headers and tables agree, CRCs are right.
    let verify = tool("gdisk", Command::new("sgdisk").arg("-v").arg(&path));
    assert!(verify.contains("No problems found"), "{verify}");
}

#[test]
fn we_read_bits_that_sgdisk_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::disk(dir.path(), Fat::Fatfs);
    // B: priority 2 (bit 49), tries 1 (bit 52), successful (bit 56).
    tool(
        "gdisk",
        Command::new("sgdisk")
            .args(["-A", "4:set:49", "-A", "4:set:52", "-A", "4:set:56"])
            .arg(&path),
    );
    let disk = Disk::open(&path, false).unwrap();
    assert_eq!(disk.slot(Slot::B).unwrap(), st(2, 1, true));
    assert_eq!(disk.slot(Slot::A).unwrap(), st(1, 0, true));
}

#[test]
fn tries_spent_by_grub_are_never_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::disk(dir.path(), Fat::Fatfs);
    let mut disk = Disk::open(&path, true).unwrap();
    disk.activate(Slot::B).unwrap();
    disk.write().unwrap();
    // GRUB boots B once: only grubenv says so.
    let mut env = disk.read_grubenv().unwrap();
    drop(disk);
    env.set("usr_b_tries", "0");
    common::grub_save_env(&path, &env);

    // B failed to come up healthy; A booted and changes something unrelated to B.
    let mut disk = Disk::open(&path, true).unwrap();
    assert_eq!(disk.slot(Slot::B).unwrap(), st(2, 0, false));
    assert_eq!(disk.unwritten_grub_tries(), &[(Slot::B, st(2, 1, false))]);
    disk.mark_successful(Slot::A).unwrap();
    disk.write().unwrap();
    assert!(disk.unwritten_grub_tries().is_empty());

    let disk = Disk::open(&path, false).unwrap();
    let raw_b = disk
        .partitions()
        .into_iter()
        .find(|p| p.label == "USR-B")
        .unwrap()
        .attributes;
    assert_eq!(SlotState::from_attributes(raw_b), st(2, 0, false), "GPT");
    assert_eq!(
        grubenv_slot(&disk.read_grubenv().unwrap(), Slot::B),
        Some(st(2, 0, false)),
        "grubenv"
    );
    assert_eq!(
        choose_next(disk.slot(Slot::A).unwrap(), disk.slot(Slot::B).unwrap()),
        Some(Slot::A)
    );
}

#[test]
fn a_successful_slot_is_not_charged_for_tries() {
    // GRUB never decrements a successful slot; a lower number in grubenv is not GRUB's doing.
    let dir = tempfile::tempdir().unwrap();
    let path = common::disk(dir.path(), Fat::Fatfs);
    let mut disk = Disk::open(&path, true).unwrap();
    disk.set_slot(Slot::A, st(1, 2, true)).unwrap();
    disk.write().unwrap();
    let mut env = disk.read_grubenv().unwrap();
    drop(disk);
    env.set("usr_a_tries", "0");
    common::grub_save_env(&path, &env);
    let disk = Disk::open(&path, false).unwrap();
    assert_eq!(disk.slot(Slot::A).unwrap(), st(1, 2, true));
    assert!(disk.unwritten_grub_tries().is_empty());
}

fn err_text(e: gptprio::Error) -> String {
    e.to_string()
}

#[test]
fn errors_say_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::disk(dir.path(), Fat::Mtools);
    let shown = path.display().to_string();

    let mut disk = Disk::open(&path, false).unwrap();
    disk.set_slot(Slot::B, st(1, 1, false)).unwrap();
    let e = err_text(disk.write().unwrap_err());
    assert!(e.contains(&shown) && e.contains("read-only"), "{e}");

    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let e = err_text(Disk::open(&blank, false).err().unwrap());
    assert!(e.contains("blank.img") && e.contains("no GPT"), "{e}");

    let e = err_text(
        Disk::open(&dir.path().join("nope.img"), false)
            .err()
            .unwrap(),
    );
    assert!(e.contains("nope.img") && e.contains("opening"), "{e}");

    // grubenv of the wrong size.
    let esp = common::esp_target(&path);
    let short = dir.path().join("short");
    std::fs::write(&short, [b'#'; 1000]).unwrap();
    tool(
        "mtools",
        Command::new("mcopy")
            .args(["-o", "-i", &esp])
            .arg(&short)
            .arg("::/ferrocore/grubenv"),
    );
    let mut disk = Disk::open(&path, true).unwrap();
    let e = err_text(disk.read_grubenv().unwrap_err());
    assert!(e.contains("grubenv is 1000 bytes, not 1024"), "{e}");
    disk.activate(Slot::B).unwrap();
    let e = err_text(disk.write().unwrap_err());
    assert!(e.contains("not 1024"), "{e}");

    // No grubenv at all.
    tool(
        "mtools",
        Command::new("mdel").args(["-i", &esp, "::/ferrocore/grubenv"]),
    );
    let e = err_text(
        Disk::open(&path, false)
            .unwrap()
            .read_grubenv()
            .unwrap_err(),
    );
    assert!(
        e.contains(&shown) && e.contains("ESP has no /ferrocore/grubenv"),
        "{e}"
    );

    // No USR-B.
    tool("gdisk", Command::new("sgdisk").args(["-d", "4"]).arg(&path));
    let e = err_text(Disk::open(&path, false).unwrap().slot(Slot::B).unwrap_err());
    assert!(
        e.contains(&shown) && e.contains("no partition labelled USR-B"),
        "{e}"
    );
}
