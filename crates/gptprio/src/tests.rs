use super::*;
use proptest::prelude::*;
use std::process::Command;

fn st(priority: u8, tries: u8, successful: bool) -> SlotState {
    SlotState {
        priority,
        tries,
        successful,
    }
}

#[test]
fn bits_are_chromeos_positions() {
    let s = st(2, 1, true);
    assert_eq!(s.apply_to(0), (2 << 48) | (1 << 52) | (1 << 56));
    assert_eq!(
        SlotState::from_attributes(0x0102_0000_0000_0000),
        st(2, 0, true)
    );
}

#[test]
fn successful_slot_boots_without_tries() {
    assert!(st(1, 0, true).bootable());
    assert_eq!(choose_next(st(1, 0, true), st(0, 0, false)), Some(Slot::A));
}

#[test]
fn untried_slot_needs_priority_and_tries() {
    assert!(st(2, 1, false).bootable());
    assert!(!st(2, 0, false).bootable(), "tries used up");
    assert!(!st(0, 3, false).bootable(), "priority 0 never boots");
}

#[test]
fn higher_priority_wins_and_a_wins_ties() {
    assert_eq!(choose_next(st(1, 0, true), st(2, 1, false)), Some(Slot::B));
    assert_eq!(choose_next(st(3, 0, true), st(2, 1, false)), Some(Slot::A));
    assert_eq!(choose_next(st(2, 0, true), st(2, 0, true)), Some(Slot::A));
}

#[test]
fn spent_update_falls_back() {
    // B was activated (one try), GRUB spent it, B never became good: A again.
    assert_eq!(choose_next(st(1, 0, true), st(2, 0, false)), Some(Slot::A));
}

#[test]
fn no_bootable_slot() {
    assert_eq!(choose_next(st(0, 0, false), st(0, 0, false)), None);
    assert_eq!(choose_next(st(1, 0, false), st(5, 0, false)), None);
}

#[test]
fn update_transitions() {
    let a = st(1, 0, true);
    let b = mark_failed(st(1, 0, true));
    assert_eq!(b, SlotState::default());
    let (b, a) = activate(a);
    assert_eq!((b, a), (st(2, 1, false), st(1, 0, true)));
    assert_eq!(choose_next(a, b), Some(Slot::B));
    let b = mark_successful(b);
    assert_eq!(b, st(2, 0, true));
    // At the top of the range the other slot makes room.
    let (t, o) = activate(st(15, 0, true));
    assert_eq!((t.priority, o.priority), (15, 14));
}

#[test]
fn grubenv_round_trip_and_limits() {
    let mut env = grubenv::GrubEnv::new();
    grubenv_set_slot(&mut env, Slot::A, st(1, 0, true));
    grubenv_set_slot(&mut env, Slot::B, st(2, 1, false));
    let bytes = env.to_bytes().unwrap();
    assert_eq!(bytes.len(), 1024);
    assert!(bytes.starts_with(b"# GRUB Environment Block\nusr_a_priority=1\n"));
    let back = grubenv::GrubEnv::parse(&bytes).unwrap();
    assert_eq!(grubenv_slot(&back, Slot::B), Some(st(2, 1, false)));
    assert_eq!(
        grubenv::GrubEnv::parse(&bytes[..1000]),
        Err(grubenv::Error::Size(1000))
    );
    let mut big = grubenv::GrubEnv::new();
    big.set("x", &"y".repeat(1100));
    assert!(matches!(big.to_bytes(), Err(grubenv::Error::Full(_))));
}

proptest! {
    #[test]
    fn attributes_round_trip_and_keep_other_bits(p in 0u8..16, t in 0u8..16, s: bool, other: u64) {
        let state = st(p, t, s);
        let attrs = state.apply_to(other);
        prop_assert_eq!(SlotState::from_attributes(attrs), state);
        prop_assert_eq!(attrs & !(0x1ffu64 << 48), other & !(0x1ffu64 << 48));
    }

    #[test]
    fn chosen_slot_is_always_bootable(a in (0u8..16, 0u8..16, any::<bool>()), b in (0u8..16, 0u8..16, any::<bool>())) {
        let (a, b) = (st(a.0, a.1, a.2), st(b.0, b.1, b.2));
        match choose_next(a, b) {
            Some(Slot::A) => prop_assert!(a.bootable()),
            Some(Slot::B) => prop_assert!(b.bootable() && (!a.bootable() || b.priority > a.priority)),
            None => prop_assert!(!a.bootable() && !b.bootable()),
        }
    }
}

/// A sparse disk with the CoreOS layout's relevant partitions and a real FAT ESP (mtools, as the
/// image build makes it) carrying grubenv.
fn test_disk(dir: &std::path::Path) -> std::path::PathBuf {
    const MIB: u64 = 1 << 20;
    let path = dir.join("disk.img");
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(200 * MIB).unwrap();
    let mut gpt = gptman::GPT::new_from(&mut f, 512, [7; 16]).unwrap();
    let esp_type = uuid::Uuid::parse_str("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap();
    let usr_type = uuid::Uuid::parse_str(USR_TYPE_GUID).unwrap();
    for (n, label, ty, start_mib, size_mib, attrs) in [
        (1u32, "EFI-SYSTEM", esp_type, 1u64, 64u64, 0u64),
        (3, "USR-A", usr_type, 65, 40, st(1, 0, true).apply_to(0)),
        (4, "USR-B", usr_type, 105, 40, 0),
        (9, "ROOT", esp_type, 145, 40, 0),
    ] {
        gpt[n] = gptman::GPTPartitionEntry {
            partition_type_guid: ty.to_bytes_le(),
            unique_partition_guid: uuid::Uuid::new_v4().to_bytes_le(),
            starting_lba: start_mib * MIB / 512,
            ending_lba: (start_mib + size_mib) * MIB / 512 - 1,
            attribute_bits: attrs | (1 << 60),
            partition_name: label.into(),
        };
    }
    gpt.write_into(&mut f).unwrap();
    drop(f);
    let esp = dir.join("esp.img");
    std::fs::File::create(&esp)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let mtools = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("mtools (Debian package mtools)");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let e = esp.to_str().unwrap();
    mtools(&[
        "mformat",
        "-i",
        e,
        "-F",
        "-v",
        "EFI-SYSTEM",
        "-T",
        &(64 * MIB / 512).to_string(),
        "::",
    ]);
    mtools(&["mmd", "-i", e, "::/ferrocore"]);
    let mut env = grubenv::GrubEnv::new();
    grubenv_set_slot(&mut env, Slot::A, st(1, 0, true));
    grubenv_set_slot(&mut env, Slot::B, SlotState::default());
    let envf = dir.join("grubenv");
    std::fs::write(&envf, env.to_bytes().unwrap()).unwrap();
    mtools(&[
        "mcopy",
        "-i",
        e,
        envf.to_str().unwrap(),
        "::/ferrocore/grubenv",
    ]);
    let bytes = std::fs::read(&esp).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    let mut d = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    d.seek(SeekFrom::Start(MIB)).unwrap();
    d.write_all(&bytes).unwrap();
    path
}

#[test]
fn disk_write_updates_gpt_and_grubenv_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_disk(dir.path());
    let mut disk = Disk::open(&path, true).unwrap();
    assert_eq!(disk.slot(Slot::A).unwrap(), st(1, 0, true));
    let (b, a) = activate(disk.slot(Slot::A).unwrap());
    disk.set_slot(Slot::B, b).unwrap();
    disk.set_slot(Slot::A, a).unwrap();
    disk.write().unwrap();

    let disk = Disk::open(&path, false).unwrap();
    assert_eq!(disk.slot(Slot::B).unwrap(), st(2, 1, false));
    assert_eq!(
        grubenv_slot(&disk.read_grubenv().unwrap(), Slot::B),
        Some(st(2, 1, false))
    );
    // Numbers kept (gaps included) and unrelated attribute bits untouched.
    let numbers: Vec<u32> = disk.partitions().iter().map(|p| p.number).collect();
    assert_eq!(numbers, vec![1, 3, 4, 9]);
    assert!(disk
        .partitions()
        .iter()
        .all(|p| p.attributes & (1 << 60) != 0));

    // sgdisk, the peer, reads the same bits.
    let out = Command::new("sgdisk")
        .args(["-i", "4"])
        .arg(&path)
        .output()
        .expect("sgdisk (gdisk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Attribute flags: 1012000000000000"), "{text}");
    assert!(text.contains("Partition name: 'USR-B'"), "{text}");
}

#[test]
fn grub_spent_tries_fold_into_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_disk(dir.path());
    let mut disk = Disk::open(&path, true).unwrap();
    disk.set_slot(Slot::B, st(2, 1, false)).unwrap();
    disk.write().unwrap();
    // GRUB boots B once: only grubenv says so.
    let mut env = disk.read_grubenv().unwrap();
    env.set("usr_b_tries", "0");
    let bytes = env.to_bytes().unwrap();
    let e = dir.path().join("env2");
    std::fs::write(&e, bytes).unwrap();
    let target = format!("{}@@{}", path.display(), 1u64 << 20);
    let out = Command::new("mcopy")
        .args(["-o", "-i", &target])
        .arg(&e)
        .arg("::/ferrocore/grubenv")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut disk = Disk::open(&path, true).unwrap();
    disk.fold_grub_tries().unwrap();
    disk.set_slot(Slot::A, mark_successful(disk.slot(Slot::A).unwrap()))
        .unwrap();
    disk.write().unwrap();
    let disk = Disk::open(&path, false).unwrap();
    assert_eq!(disk.slot(Slot::B).unwrap(), st(2, 0, false));
    assert_eq!(
        choose_next(disk.slot(Slot::A).unwrap(), disk.slot(Slot::B).unwrap()),
        Some(Slot::A)
    );
}

#[test]
fn missing_partition_and_read_only_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_disk(dir.path());
    let mut disk = Disk::open(&path, false).unwrap();
    disk.set_slot(Slot::B, st(1, 1, false)).unwrap();
    let err = disk.write().unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let err = Disk::open(&blank, false).err().expect("no GPT").to_string();
    assert!(err.contains("no GPT"), "{err}");
}
