//! Sparse test disks with CoreOS's layout (numbers with gaps) and a real FAT ESP holding grubenv.

#![allow(dead_code)] // each test binary uses its own part of this

use gptprio::grubenv::GrubEnv;
use gptprio::{grubenv_set_slot, Slot, SlotState, USR_TYPE_GUID};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const MIB: u64 = 1 << 20;
pub const ESP_START: u64 = MIB;
pub const ESP_SIZE: u64 = 64 * MIB;
const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const ROOT_TYPE: &str = "3884dd41-8582-4404-b9a8-e9b84f2df50e";
/// Set on every partition, to show that slot writes keep the bits they do not own.
pub const UNRELATED_BIT: u64 = 1 << 60;

pub fn st(priority: u8, tries: u8, successful: bool) -> SlotState {
    SlotState {
        priority,
        tries,
        successful,
    }
}

/// How the ESP is formatted: fatfs, or mformat as `cargo xtask build-image` does.
#[derive(Clone, Copy)]
pub enum Fat {
    Fatfs,
    Mtools,
}

/// A disk as the image build leaves it: A good (priority 1), B empty, grubenv mirroring that.
pub fn disk(dir: &Path, fat: Fat) -> PathBuf {
    let path = dir.join("disk.img");
    let mut f = File::create(&path).unwrap();
    f.set_len(130 * MIB).unwrap();
    let mut gpt = gptman::GPT::new_from(&mut f, 512, *uuid::Uuid::new_v4().as_bytes()).unwrap();
    let guid = |s: &str| uuid::Uuid::parse_str(s).unwrap().to_bytes_le();
    for (n, label, ty, start_mib, size_mib, attrs) in [
        (1u32, "EFI-SYSTEM", ESP_TYPE, 1u64, 64u64, 0u64),
        (
            3,
            "USR-A",
            USR_TYPE_GUID,
            65,
            20,
            st(1, 0, true).apply_to(0),
        ),
        (4, "USR-B", USR_TYPE_GUID, 85, 20, 0),
        (9, "ROOT", ROOT_TYPE, 105, 20, 0),
    ] {
        gpt[n] = gptman::GPTPartitionEntry {
            partition_type_guid: guid(ty),
            unique_partition_guid: uuid::Uuid::new_v4().to_bytes_le(),
            starting_lba: start_mib * MIB / 512,
            ending_lba: (start_mib + size_mib) * MIB / 512 - 1,
            attribute_bits: attrs | UNRELATED_BIT,
            partition_name: label.into(),
        };
    }
    gpt.write_into(&mut f).unwrap();
    gptman::GPT::write_protective_mbr_into(&mut f, 512).unwrap();
    drop(f);

    let mut env = GrubEnv::new();
    grubenv_set_slot(&mut env, Slot::A, st(1, 0, true));
    grubenv_set_slot(&mut env, Slot::B, SlotState::default());
    let env = env.to_bytes().unwrap();
    match fat {
        Fat::Fatfs => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let mut label = *b"           ";
            label[..10].copy_from_slice(b"EFI-SYSTEM");
            fatfs::format_volume(
                Window::esp(file.try_clone().unwrap()),
                fatfs::FormatVolumeOptions::new()
                    .fat_type(fatfs::FatType::Fat32)
                    .volume_label(label),
            )
            .unwrap();
            let fs = fatfs::FileSystem::new(Window::esp(file), fatfs::FsOptions::new()).unwrap();
            let mut f = fs
                .root_dir()
                .create_dir("ferrocore")
                .unwrap()
                .create_file("grubenv")
                .unwrap();
            f.write_all(&env).unwrap();
            drop(f);
            fs.unmount().unwrap();
        }
        Fat::Mtools => {
            let esp = esp_target(&path);
            tool(
                "mtools",
                Command::new("mformat")
                    .args(["-i", &esp, "-F", "-v", "EFI-SYSTEM", "-T"])
                    .arg((ESP_SIZE / 512).to_string())
                    .arg("::"),
            );
            tool(
                "mtools",
                Command::new("mmd").args(["-i", &esp, "::/ferrocore"]),
            );
            let local = dir.join("grubenv");
            std::fs::write(&local, env).unwrap();
            tool(
                "mtools",
                Command::new("mcopy")
                    .args(["-i", &esp])
                    .arg(&local)
                    .arg("::/ferrocore/grubenv"),
            );
        }
    }
    path
}

/// mtools' name for the ESP inside the disk image.
pub fn esp_target(disk: &Path) -> String {
    format!("{}@@{ESP_START}", disk.display())
}

/// Runs a peer tool, naming its Debian package if it is missing; returns stdout.
pub fn tool(package: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (Debian package {package})"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What GRUB's `save_env` does: rewrite the 1024 bytes of grubenv in place, through the file's
/// sectors (found here by the header, which appears once on the disk).
pub fn grub_save_env(disk: &Path, env: &GrubEnv) {
    let bytes = std::fs::read(disk).unwrap();
    let header = b"# GRUB Environment Block\n";
    let at = bytes
        .windows(header.len())
        .position(|w| w == header)
        .expect("grubenv on the disk");
    let mut f = OpenOptions::new().write(true).open(disk).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&env.to_bytes().unwrap()).unwrap();
}

/// The ESP's byte range of the disk file, as a volume for fatfs.
pub struct Window {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Window {
    fn esp(file: File) -> Window {
        Window {
            file,
            start: ESP_START,
            len: ESP_SIZE,
            pos: 0,
        }
    }
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.file.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.file.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::End(d) => self.len.checked_add_signed(d).unwrap(),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
        };
        Ok(self.pos)
    }
}
