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
        #[arg(long)]
        slot: String,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=15))]
        priority: Option<u8>,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=15))]
        tries: Option<u8>,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
        successful: Option<u8>,
    },
    /// After a healthy boot: mark the slot good (default: the booted one), folding GRUB's spent tries into the GPT.
    MarkSuccessful {
        #[arg(long)]
        slot: Option<String>,
    },
    /// Never boot this slot.
    MarkFailed {
        #[arg(long)]
        slot: String,
    },
    /// Before writing an update into the slot: make it unbootable.
    PrepareUpdate {
        #[arg(long)]
        slot: String,
    },
    /// After writing an update: try the slot once, ahead of the other.
    Activate {
        #[arg(long)]
        slot: String,
    },
}

fn slot_arg(name: &str) -> Result<Slot> {
    Slot::from_name(name).with_context(|| format!("no slot {name:?}: use A or B"))
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

fn show(disk: &Disk) -> Result<()> {
    println!(
        "{:>5} {:>10} {:>10}  {:<11} attributes",
        "part", "start", "size", "label"
    );
    for p in disk.partitions() {
        let mut attrs = String::new();
        if Slot::from_name(&p.label).is_some() {
            let st = SlotState::from_attributes(p.attributes);
            attrs = format!(
                "priority={} tries={} successful={}",
                st.priority,
                st.tries,
                u8::from(st.successful)
            );
        }
        println!(
            "{:>5} {:>10} {:>10}  {:<11} {attrs}",
            p.number,
            p.first_lba,
            p.last_lba - p.first_lba + 1,
            p.label
        );
    }
    let (a, b) = (disk.slot(Slot::A)?, disk.slot(Slot::B)?);
    match choose_next(a, b) {
        Some(s) => println!("next boot: {s}"),
        None => println!("next boot: none (no bootable USR slot)"),
    }
    match disk.read_grubenv() {
        Ok(env) => {
            for s in Slot::ALL {
                match gptprio::grubenv_slot(&env, s) {
                    Some(st) => println!(
                        "grubenv {s}: priority={} tries={} successful={}",
                        st.priority,
                        st.tries,
                        u8::from(st.successful)
                    ),
                    None => println!("grubenv {s}: not set"),
                }
            }
        }
        Err(e) => println!("grubenv: {e}"),
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
            let s = slot_arg(&slot)?;
            let mut st = disk.slot(s)?;
            st.priority = priority.unwrap_or(st.priority);
            st.tries = tries.unwrap_or(st.tries);
            st.successful = successful.map(|v| v == 1).unwrap_or(st.successful);
            disk.set_slot(s, st)?;
        }
        Cmd::MarkSuccessful { slot } => {
            let s = match slot {
                Some(n) => slot_arg(&n)?,
                None => booted_slot()?,
            };
            disk.fold_grub_tries()?;
            let st = disk.slot(s)?;
            disk.set_slot(s, gptprio::mark_successful(st))?;
        }
        Cmd::MarkFailed { slot } | Cmd::PrepareUpdate { slot } => {
            let s = slot_arg(&slot)?;
            let st = disk.slot(s)?;
            disk.set_slot(s, gptprio::mark_failed(st))?;
        }
        Cmd::Activate { slot } => {
            let s = slot_arg(&slot)?;
            let (target, other) = gptprio::activate(disk.slot(s.other())?);
            disk.set_slot(s, target)?;
            disk.set_slot(s.other(), other)?;
        }
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
