//! `ferro-slot`: show and change the A/B USR slot state, like ChromeOS's `cgpt`.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use gptprio::{choose_next, Disk, Slot, SlotState};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "ferro-slot",
    about = "Show and change the A/B USR slot state (GPT bits + grubenv)"
)]
struct Cli {
    /// The disk (image file or block device); default: the disk holding USR-A.
    #[arg(long, global = true)]
    disk: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Partition table with slot priority/tries/successful, the next slot, and grubenv's mirror.
    Show,
    /// Which slot boots next.
    Next,
    /// Set slot bits.
    Set {
        #[arg(long, value_parser = parse_slot)]
        slot: Slot,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=15))]
        priority: Option<u8>,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=15))]
        tries: Option<u8>,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
        successful: Option<u8>,
    },
    /// After a healthy boot: mark the slot good (default: the booted one, from ferrocore.slot=).
    MarkSuccessful {
        #[arg(long, value_parser = parse_slot)]
        slot: Option<Slot>,
    },
    /// Never boot this slot.
    MarkFailed {
        #[arg(long, value_parser = parse_slot)]
        slot: Slot,
    },
    /// Before writing an update into the slot: make it unbootable.
    PrepareUpdate {
        #[arg(long, value_parser = parse_slot)]
        slot: Slot,
    },
    /// After writing an update: try the slot once, ahead of the other.
    Activate {
        #[arg(long, value_parser = parse_slot)]
        slot: Slot,
    },
}

fn parse_slot(name: &str) -> Result<Slot, String> {
    Slot::from_name(name).ok_or_else(|| format!("no slot {name:?}: use A or B (or USR-A, USR-B)"))
}

/// The slot the running system booted, from `ferrocore.slot=` on the kernel command line.
fn booted_slot() -> Result<Slot> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ferrocore.slot="))
        .and_then(Slot::from_name)
        .context("no ferrocore.slot= on the kernel command line: name the slot with --slot")
}

/// The whole disk that holds the partition labelled USR-A (sysfs `PARTNAME`).
fn default_disk() -> Result<PathBuf> {
    for entry in std::fs::read_dir("/sys/class/block").context("reading /sys/class/block")? {
        let entry = entry?;
        let uevent = std::fs::read_to_string(entry.path().join("uevent")).unwrap_or_default();
        if uevent.lines().any(|l| l == "PARTNAME=USR-A") {
            let parent = std::fs::canonicalize(entry.path().join(".."))?;
            let name = parent
                .file_name()
                .context("partition without a parent disk")?;
            return Ok(Path::new("/dev").join(name));
        }
    }
    bail!("no partition labelled USR-A on this machine: name the disk with --disk")
}

/// A short name for the partition types of the CoreOS layout.
fn type_name(guid: &uuid::Uuid) -> String {
    match guid.to_string().as_str() {
        "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" => "efi".into(),
        "21686148-6449-6e6f-744e-656564454649" => "bios-boot".into(),
        gptprio::USR_TYPE_GUID => "coreos-usr".into(),
        "3884dd41-8582-4404-b9a8-e9b84f2df50e" => "coreos-resize".into(),
        "c95dc21a-df0e-4340-8d7b-26cbfa9a03e0" => "coreos-reserved".into(),
        "0fc63daf-8483-4772-8e79-3d69d8477de4" => "linux-data".into(),
        other => other.into(),
    }
}

fn state_text(st: SlotState) -> String {
    format!(
        "priority={} tries={} successful={}",
        st.priority,
        st.tries,
        u8::from(st.successful)
    )
}

/// Like `cgpt show`: every partition, the slot bits as they are in the GPT, what GRUB's mirror
/// says, and which slot boots next.
fn show(disk: &Disk) -> Result<()> {
    println!(
        "{:>4} {:>10} {:>10} {:>9}  {:<11} {:<15} attributes",
        "part", "start", "sectors", "size", "label", "type"
    );
    for p in disk.partitions() {
        let sectors = p.last_lba - p.first_lba + 1;
        let mut attrs = format!("{:#018x}", p.attributes);
        if Slot::from_name(&p.label).is_some() {
            attrs = format!(
                "{} ({attrs})",
                state_text(SlotState::from_attributes(p.attributes))
            );
        }
        println!(
            "{:>4} {:>10} {:>10} {:>8}M  {:<11} {:<15} {attrs}",
            p.number,
            p.first_lba,
            sectors,
            sectors * 512 / (1 << 20),
            p.label,
            type_name(&p.type_guid)
        );
    }
    match disk.read_grubenv() {
        Ok(env) => {
            for s in Slot::ALL {
                match gptprio::grubenv_slot(&env, s) {
                    Some(st) => println!("grubenv {s}: {}", state_text(st)),
                    None => println!("grubenv {s}: not set"),
                }
            }
        }
        Err(e) => println!("grubenv: {e}"),
    }
    let (a, b) = (disk.slot(Slot::A)?, disk.slot(Slot::B)?);
    for &(s, gpt) in disk.unwritten_grub_tries() {
        println!(
            "{s}: GRUB has spent tries since the last write: the GPT says tries={}, grubenv tries={} (the next write stores that)",
            gpt.tries,
            disk.slot(s)?.tries
        );
    }
    match choose_next(a, b) {
        Some(s) => println!("next boot: {s}"),
        None => println!("next boot: none (no bootable USR slot)"),
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let path = match cli.disk {
        Some(p) => p,
        None => default_disk()?,
    };
    let writable = !matches!(cli.cmd, Cmd::Show | Cmd::Next);
    let mut disk = Disk::open(&path, writable)?;
    match cli.cmd {
        Cmd::Show => return show(&disk),
        Cmd::Next => {
            match choose_next(disk.slot(Slot::A)?, disk.slot(Slot::B)?) {
                Some(s) => println!("{s}"),
                None => bail!("no bootable USR slot on {}", path.display()),
            }
            return Ok(());
        }
        Cmd::Set {
            slot,
            priority,
            tries,
            successful,
        } => {
            let mut st = disk.slot(slot)?;
            st.priority = priority.unwrap_or(st.priority);
            st.tries = tries.unwrap_or(st.tries);
            st.successful = successful.map(|v| v == 1).unwrap_or(st.successful);
            disk.set_slot(slot, st)?;
        }
        Cmd::MarkSuccessful { slot } => {
            let slot = match slot {
                Some(s) => s,
                None => booted_slot()?,
            };
            disk.mark_successful(slot)?;
        }
        Cmd::MarkFailed { slot } => disk.mark_failed(slot)?,
        Cmd::PrepareUpdate { slot } => disk.prepare_update(slot)?,
        Cmd::Activate { slot } => disk.activate(slot)?,
    }
    disk.write()
        .with_context(|| format!("writing slot state to {}", path.display()))?;
    show(&disk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
