//! `ferro-slot` on a sparse image, as an admin or the updater would run it.

mod common;

use common::{st, tool, Fat};
use gptprio::{Disk, Slot};
use std::path::Path;
use std::process::{Command, Output};

fn ferro_slot(disk: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferro-slot"))
        .args(args)
        .arg("--disk")
        .arg(disk)
        .output()
        .unwrap()
}

fn ok(disk: &Path, args: &[&str]) -> String {
    let out = ferro_slot(disk, args);
    assert!(
        out.status.success(),
        "ferro-slot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(disk: &Path, args: &[&str]) -> String {
    let out = ferro_slot(disk, args);
    assert!(!out.status.success(), "ferro-slot {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn show_is_like_cgpt_show() {
    let dir = tempfile::tempdir().unwrap();
    let disk = common::disk(dir.path(), Fat::Mtools);
    let text = ok(&disk, &["show"]);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .take(4)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let heads: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[4], r[5])).collect();
    assert_eq!(
        heads,
        [
            ("1", "EFI-SYSTEM", "efi"),
            ("3", "USR-A", "coreos-usr"),
            ("4", "USR-B", "coreos-usr"),
            ("9", "ROOT", "coreos-resize")
        ],
        "{text}"
    );
    assert_eq!(rows[0][1..4], ["2048", "131072", "64M"], "{text}");
    assert!(
        rows[1]
            .join(" ")
            .contains("priority=1 tries=0 successful=1"),
        "{text}"
    );
    assert!(
        text.contains("grubenv USR-A: priority=1 tries=0 successful=1\n"),
        "{text}"
    );
    assert!(
        text.contains("grubenv USR-B: priority=0 tries=0 successful=0\n"),
        "{text}"
    );
    assert!(text.ends_with("next boot: USR-A\n"), "{text}");
}

#[test]
fn update_cycle_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let disk = common::disk(dir.path(), Fat::Fatfs);
    ok(&disk, &["prepare-update", "--slot", "B"]);
    assert_eq!(ok(&disk, &["next"]), "USR-A\n");
    let shown = ok(&disk, &["activate", "--slot", "usr-b"]);
    assert!(shown.contains("next boot: USR-B"), "{shown}");
    assert_eq!(ok(&disk, &["next"]), "USR-B\n");
    let d = Disk::open(&disk, false).unwrap();
    assert_eq!(d.slot(Slot::B).unwrap(), st(2, 1, false));
    drop(d);
    ok(&disk, &["mark-successful", "--slot", "b"]);
    let d = Disk::open(&disk, false).unwrap();
    assert_eq!(d.slot(Slot::B).unwrap(), st(2, 0, true));
    assert_eq!(d.slot(Slot::A).unwrap(), st(1, 0, true));
}

#[test]
fn set_and_mark_failed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = common::disk(dir.path(), Fat::Fatfs);
    ok(
        &disk,
        &[
            "set",
            "--slot",
            "B",
            "--priority",
            "7",
            "--tries",
            "15",
            "--successful",
            "0",
        ],
    );
    ok(&disk, &["set", "--slot", "A", "--successful", "0"]);
    let d = Disk::open(&disk, false).unwrap();
    assert_eq!(d.slot(Slot::B).unwrap(), st(7, 15, false));
    assert_eq!(
        d.slot(Slot::A).unwrap(),
        st(1, 0, false),
        "only named fields"
    );
    drop(d);
    // The GPT bits as sgdisk sees them: bit 60 (the fixture's) | 15 << 52 | 7 << 48.
    let info = tool("gdisk", Command::new("sgdisk").args(["-i", "4"]).arg(&disk));
    assert!(info.contains("Attribute flags: 10F7000000000000"), "{info}");

    ok(&disk, &["mark-failed", "--slot", "B"]);
    let err = fails(&disk, &["next"]);
    assert!(err.contains("no bootable USR slot"), "{err}");
    assert!(
        ok(&disk, &["show"]).contains("next boot: none (no bootable USR slot)"),
        "show still works"
    );
}

#[test]
fn bad_arguments_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let disk = common::disk(dir.path(), Fat::Fatfs);
    let before = std::fs::read(&disk).unwrap();
    let err = fails(&disk, &["set", "--slot", "C", "--priority", "1"]);
    assert!(err.contains("no slot \"C\""), "{err}");
    let err = fails(&disk, &["set", "--slot", "A", "--priority", "16"]);
    assert!(err.contains("16"), "{err}");
    let err = fails(&disk, &["set", "--slot", "A", "--successful", "2"]);
    assert!(err.contains("2"), "{err}");
    let err = fails(&dir.path().join("missing.img"), &["show"]);
    assert!(
        err.contains("missing.img") && err.contains("No such file"),
        "{err}"
    );
    assert!(std::fs::read(&disk).unwrap() == before, "disk changed");
}

#[test]
fn mark_successful_defaults_to_the_booted_slot() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap();
    if cmdline.contains("ferrocore.slot=") {
        return; // running on Ferrocore itself: the default is real here
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = common::disk(dir.path(), Fat::Fatfs);
    let err = fails(&disk, &["mark-successful"]);
    assert!(err.contains("no ferrocore.slot="), "{err}");
}
