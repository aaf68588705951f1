//! A sparse disk image laid out like a Ferrocore disk, for tests and `cargo xtask bench update`:
//! a FAT ESP holding grubenv and slot A's boot files (as `cargo xtask build-image` leaves them),
//! USR-A marked good, USR-B empty. Writing it needs no root and no mount.

use crate::agent::esp::{self, Window};
use gptprio::grubenv::GrubEnv;
use gptprio::{grubenv_set_slot, Slot, SlotState, USR_TYPE_GUID};
use std::fs::{File, OpenOptions};
use std::path::Path;

const MIB: u64 = 1 << 20;
const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const ESP_SIZE: u64 = 32 * MIB;

/// Slot A's boot.cfg in the format of xtask's `slot_boot_cfg`.
pub const BOOT_CFG_A: &str = "linux /ferrocore/usr-a/vmlinuz console=ttyS0,115200n8 ferrocore.slot=A systemd.gpt_auto=0 dm-mod.create=\"usr,,,ro,0 8 verity 1 PARTUUID=x PARTUUID=x 4096 4096 1 2 sha256 00 -\" dm-mod.waitfor=PARTUUID=x rootwait $linux_append\ninitrd /ferrocore/usr-a/initrd\n";

#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub esp_offset: u64,
    pub usr_a_offset: u64,
    pub usr_b_offset: u64,
    pub usr_size: u64,
    pub usr_b_uuid: uuid::Uuid,
}

/// Creates `path` with USR partitions of `usr_mib` MiB each.
pub fn create(path: &Path, usr_mib: u64) -> std::io::Result<Layout> {
    let mut f = File::create(path)?;
    let total = 1 + ESP_SIZE / MIB + 2 * usr_mib + 1;
    f.set_len(total * MIB)?;
    let mut gpt = gptman::GPT::new_from(&mut f, 512, *uuid::Uuid::new_v4().as_bytes())
        .map_err(std::io::Error::other)?;
    let guid = |s: &str| uuid::Uuid::parse_str(s).expect("a GUID").to_bytes_le();
    let a_good = SlotState {
        priority: 1,
        tries: 0,
        successful: true,
    };
    let usr_b_uuid = uuid::Uuid::new_v4();
    let a = 1 + ESP_SIZE / MIB;
    let b = a + usr_mib;
    for (n, label, ty, start, size, attrs, id) in [
        (
            1u32,
            "EFI-SYSTEM",
            ESP_TYPE,
            1u64,
            ESP_SIZE / MIB,
            0u64,
            uuid::Uuid::new_v4(),
        ),
        (
            3,
            "USR-A",
            USR_TYPE_GUID,
            a,
            usr_mib,
            a_good.apply_to(0),
            uuid::Uuid::new_v4(),
        ),
        (4, "USR-B", USR_TYPE_GUID, b, usr_mib, 0, usr_b_uuid),
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
    gpt.write_into(&mut f).map_err(std::io::Error::other)?;
    gptman::GPT::write_protective_mbr_into(&mut f, 512).map_err(std::io::Error::other)?;
    drop(f);

    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut env = GrubEnv::new();
    grubenv_set_slot(&mut env, Slot::A, a_good);
    grubenv_set_slot(&mut env, Slot::B, SlotState::default());
    let env = env.to_bytes().map_err(std::io::Error::other)?;
    fatfs::format_volume(
        Window::new(&f, MIB, ESP_SIZE),
        fatfs::FormatVolumeOptions::new(),
    )?;
    esp::write(
        Window::new(&f, MIB, ESP_SIZE),
        "ferrocore",
        &[("grubenv", &env)],
    )?;
    esp::write(
        Window::new(&f, MIB, ESP_SIZE),
        "ferrocore/usr-a",
        &[
            ("vmlinuz", b"old kernel"),
            ("initrd", b"old initrd"),
            ("boot.cfg", BOOT_CFG_A.as_bytes()),
        ],
    )?;
    f.sync_all()?;
    Ok(Layout {
        esp_offset: MIB,
        usr_a_offset: a * MIB,
        usr_b_offset: b * MIB,
        usr_size: usr_mib * MIB,
        usr_b_uuid,
    })
}

/// Reads `path` from the disk's ESP.
pub fn esp_file(disk: &Path, path: &str) -> std::io::Result<Vec<u8>> {
    let f = File::open(disk)?;
    esp::read(Window::new(&f, MIB, ESP_SIZE), path)
}
