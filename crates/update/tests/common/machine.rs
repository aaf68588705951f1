//! A machine for the agent to update: a sparse GPT disk image (ESP with grubenv and slot A's
//! boot files, USR-A good, USR-B empty) and a root tree (os-release, machine-id, keys, update.conf,
//! /proc/cmdline naming the booted slot).

use gptprio::grubenv::GrubEnv;
use gptprio::{grubenv_set_slot, Slot, SlotState, USR_TYPE_GUID};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use update::agent::esp::Window;

pub const MIB: u64 = 1 << 20;
const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
pub const USR_SIZE: u64 = 4 * MIB;

pub struct Machine {
    pub root: PathBuf,
    pub disk: PathBuf,
    pub usr_b_uuid: uuid::Uuid,
}

pub const BOOT_CFG_A: &str = "linux /ferrocore/usr-a/vmlinuz console=ttyS0,115200n8 ferrocore.slot=A systemd.gpt_auto=0 dm-mod.create=\"usr,,,ro,0 8 verity 1 PARTUUID=x PARTUUID=x 4096 4096 1 2 sha256 00 -\" dm-mod.waitfor=PARTUUID=x rootwait $linux_append\ninitrd /ferrocore/usr-a/initrd\n";

pub fn machine(dir: &Path, version: &str, keys_dir: &Path) -> Machine {
    let disk = dir.join("disk.img");
    let mut f = File::create(&disk).unwrap();
    f.set_len(30 * MIB).unwrap();
    let mut gpt = gptman::GPT::new_from(&mut f, 512, *uuid::Uuid::new_v4().as_bytes()).unwrap();
    let guid = |s: &str| uuid::Uuid::parse_str(s).unwrap().to_bytes_le();
    let usr_b_uuid = uuid::Uuid::new_v4();
    let a_good = SlotState {
        priority: 1,
        tries: 0,
        successful: true,
    };
    for (n, label, ty, start, size, attrs, id) in [
        (
            1u32,
            "EFI-SYSTEM",
            ESP_TYPE,
            1u64,
            16u64,
            0u64,
            uuid::Uuid::new_v4(),
        ),
        (
            3,
            "USR-A",
            USR_TYPE_GUID,
            17,
            4,
            a_good.apply_to(0),
            uuid::Uuid::new_v4(),
        ),
        (4, "USR-B", USR_TYPE_GUID, 21, 4, 0, usr_b_uuid),
    ] {
        gpt[n] = gptman::GPTPartitionEntry {
            partition_type_guid: guid(ty),
            unique_partition_guid: id.to_bytes_le(),
            starting_lba: start * MIB / 512,
            ending_lba: (start + size) * MIB / 512 - 1,
            attribute_bits: attrs,
            partition_name: label.into(),
        };
    }
    gpt.write_into(&mut f).unwrap();
    gptman::GPT::write_protective_mbr_into(&mut f, 512).unwrap();
    // USR-A holds the running system: some bytes that must never change.
    f.sync_all().unwrap();
    drop(f);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&super::bytes(USR_SIZE as usize, 99), 17 * MIB)
        .unwrap();

    let mut env = GrubEnv::new();
    grubenv_set_slot(&mut env, Slot::A, a_good);
    grubenv_set_slot(&mut env, Slot::B, SlotState::default());
    fatfs::format_volume(
        Window::new(&f, MIB, 16 * MIB),
        fatfs::FormatVolumeOptions::new(),
    )
    .unwrap();
    update::agent::esp::write(
        Window::new(&f, MIB, 16 * MIB),
        "ferrocore",
        &[("grubenv", &env.to_bytes().unwrap())],
    )
    .unwrap();
    update::agent::esp::write(
        Window::new(&f, MIB, 16 * MIB),
        "ferrocore/usr-a",
        &[
            ("vmlinuz", b"old kernel"),
            ("initrd", b"old initrd"),
            ("boot.cfg", BOOT_CFG_A.as_bytes()),
        ],
    )
    .unwrap();
    f.sync_all().unwrap();

    let root = dir.join("root");
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut f = File::create(p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
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
    Machine {
        root,
        disk,
        usr_b_uuid,
    }
}

impl Machine {
    pub fn set_server(&self, url: &str) {
        let p = self.root.join("etc/coreos/update.conf");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("SERVER={url}/v1/update/\n")).unwrap();
    }

    pub fn usr_b(&self) -> Vec<u8> {
        let bytes = std::fs::read(&self.disk).unwrap();
        bytes[(21 * MIB) as usize..(25 * MIB) as usize].to_vec()
    }

    pub fn esp_file(&self, path: &str) -> Vec<u8> {
        let f = File::open(&self.disk).unwrap();
        update::agent::esp::read(Window::new(&f, MIB, 16 * MIB), path).unwrap()
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
            cfg.contains(&format!("dm-mod.waitfor=PARTUUID={}", self.usr_b_uuid)),
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
