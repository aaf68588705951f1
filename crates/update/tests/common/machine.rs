//! A machine for the agent to update: a disk image from `update::testdisk` (USR-A holding the
//! running system's bytes) and a root tree (os-release, machine-id, keys, update.conf, and
//! /proc/cmdline naming the booted slot).

use gptprio::grubenv::GrubEnv;
use gptprio::{Slot, SlotState};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const MIB: u64 = 1 << 20;
pub const USR_SIZE: u64 = 4 * MIB;

pub struct Machine {
    pub root: PathBuf,
    pub disk: PathBuf,
    pub layout: update::testdisk::Layout,
}

pub fn machine(dir: &Path, version: &str, keys_dir: &Path) -> Machine {
    let disk = dir.join("disk.img");
    let layout = update::testdisk::create(&disk, USR_SIZE / MIB).unwrap();
    // USR-A holds the running system: bytes that must never change.
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&super::bytes(USR_SIZE as usize, 99), layout.usr_a_offset)
        .unwrap();
    f.sync_all().unwrap();

    let root = dir.join("root");
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "usr/lib/os-release",
        &format!("NAME=\"Ferrocore\"\nVERSION_ID={version}\n"),
    );
    write(
        "etc/machine-id",
        &format!("{}\n", uuid::Uuid::new_v4().simple()),
    );
    write("proc/cmdline", "console=ttyS0 ferrocore.slot=A rootwait\n");
    write("proc/sys/kernel/random/boot_id", "boot-1\n");
    write(
        "usr/share/coreos/update.conf",
        "GROUP=stable\nREBOOT_STRATEGY=off\n",
    );
    let keys = root.join("usr/share/ferrocore/update-keys");
    std::fs::create_dir_all(&keys).unwrap();
    for e in std::fs::read_dir(keys_dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, keys.join(p.file_name().unwrap())).unwrap();
    }
    Machine { root, disk, layout }
}

impl Machine {
    pub fn set_server(&self, url: &str) {
        let p = self.root.join("etc/coreos/update.conf");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("SERVER={url}/v1/update/\n")).unwrap();
    }

    fn range(&self, offset: u64) -> Vec<u8> {
        let bytes = std::fs::read(&self.disk).unwrap();
        bytes[offset as usize..(offset + self.layout.usr_size) as usize].to_vec()
    }

    pub fn usr_a(&self) -> Vec<u8> {
        self.range(self.layout.usr_a_offset)
    }

    pub fn usr_b(&self) -> Vec<u8> {
        self.range(self.layout.usr_b_offset)
    }

    pub fn esp_file(&self, path: &str) -> Vec<u8> {
        update::testdisk::esp_file(&self.disk, path).unwrap()
    }

    pub fn slots(&self) -> (SlotState, SlotState, GrubEnv) {
        let d = gptprio::Disk::open(&self.disk, false).unwrap();
        (
            d.slot(Slot::A).unwrap(),
            d.slot(Slot::B).unwrap(),
            d.read_grubenv().unwrap(),
        )
    }

    /// Asserts the good end state: USR-B holds `usr`, its kernel/initrd/boot.cfg are on the
    /// ESP, and B is to be tried once ahead of A, in the GPT and in grubenv alike.
    pub fn assert_updated(&self, p: &super::Payload) {
        let b = self.usr_b();
        assert!(
            b[..p.usr.len()] == p.usr[..],
            "USR-B does not hold the payload's usr"
        );
        assert_eq!(self.esp_file("ferrocore/usr-b/vmlinuz"), p.kernel);
        assert_eq!(self.esp_file("ferrocore/usr-b/initrd"), p.initrd);
        let cfg = String::from_utf8(self.esp_file("ferrocore/usr-b/boot.cfg")).unwrap();
        assert!(
            cfg.starts_with(
                "linux /ferrocore/usr-b/vmlinuz console=ttyS0,115200n8 ferrocore.slot=B "
            ),
            "{cfg}"
        );
        assert!(
            cfg.contains(&format!(
                "dm-mod.waitfor=PARTUUID={}",
                self.layout.usr_b_uuid
            )),
            "{cfg}"
        );
        assert!(cfg.contains(&"ab".repeat(32)), "verity root hash: {cfg}");
        let (a, bst, env) = self.slots();
        assert_eq!(
            bst,
            SlotState {
                priority: a.priority + 1,
                tries: 1,
                successful: false
            }
        );
        assert!(a.successful);
        assert_eq!(gptprio::choose_next(a, bst), Some(Slot::B));
        assert_eq!(gptprio::grubenv_slot(&env, Slot::B), Some(bst));
        assert_eq!(gptprio::grubenv_slot(&env, Slot::A), Some(a));
    }
}
