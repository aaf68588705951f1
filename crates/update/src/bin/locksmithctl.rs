//! `locksmithctl`: show and change the reboot semaphore in etcd, as CoreOS's locksmithctl.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use update::locksmith::{Lock, Semaphore};

#[derive(Parser)]
#[command(name = "locksmithctl", about = "Manage the cluster's reboot lock")]
struct Cli {
    /// etcd (or ferro-store) client URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:2379",
        env = "LOCKSMITHCTL_ENDPOINT"
    )]
    endpoint: String,
    /// The machines' reboot group (its own semaphore); default: the cluster-wide one.
    #[arg(long, global = true, env = "LOCKSMITHCTL_GROUP")]
    group: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Free slots, max, and the machines holding the lock.
    Status,
    /// Take a slot for a machine (default: this one, from /etc/machine-id).
    Lock { machine_id: Option<String> },
    /// Give a machine's slot back (default: this one).
    Unlock { machine_id: Option<String> },
    /// How many machines may reboot at once.
    SetMax { max: i64 },
}

fn this_machine(id: Option<String>) -> Result<String> {
    match id {
        Some(id) => Ok(id),
        None => Ok(std::fs::read_to_string("/etc/machine-id")
            .context("reading /etc/machine-id (or name the machine)")?
            .trim()
            .to_string()),
    }
}

fn print(s: &Semaphore) {
    println!("Available: {}", s.semaphore);
    println!("Max: {}", s.max);
    if !s.holders.is_empty() {
        println!("\nMACHINE ID");
        for h in &s.holders {
            println!("{h}");
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let lock = Lock::new(&cli.endpoint, cli.group.as_deref());
    match cli.cmd {
        Cmd::Status => print(&lock.get().context("reading the semaphore")?),
        Cmd::Lock { machine_id } => {
            let id = this_machine(machine_id)?;
            lock.lock(&id).context("locking")?;
        }
        Cmd::Unlock { machine_id } => {
            let id = this_machine(machine_id)?;
            lock.unlock(&id).context("unlocking")?;
        }
        Cmd::SetMax { max } => {
            let before = lock.get()?.max;
            let s = lock.set_max(max).context("setting max")?;
            println!("Old: {before}\nNew: {}", s.max);
        }
    }
    Ok(())
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
