//! `locksmithd`: reboots the machine once update_engine has installed an update, as
//! REBOOT_STRATEGY, the reboot window, the lock (etcd semaphore or FleetLock) and the drain command
//! allow (see `update::locksmith::policy`). At start it gives back the lock this machine took
//! before its last reboot.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use update::agent::config::UpdateConf;
use update::agent::ipc::{self, Request};
use update::agent::status::Operation;
use update::locksmith::policy::{self, Settings, Step};

#[derive(Parser)]
#[command(name = "locksmithd", about = "Reboot after updates, coordinated")]
struct Cli {
    /// Where update.conf and /etc/machine-id are read from; `/` on a machine.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// update_engine's control socket.
    #[arg(long, default_value = ipc::SOCKET)]
    socket: PathBuf,
    /// How often to look at update_engine's status.
    #[arg(long, default_value_t = 60_000)]
    interval_ms: u64,
    /// The reboot.
    #[arg(long, default_value = "systemctl reboot", value_delimiter = ' ')]
    reboot_command: Vec<String>,
}

fn settings(cli: &Cli) -> Result<Settings> {
    let conf = UpdateConf::load(&cli.root).context("reading update.conf")?;
    Settings::from_conf(&conf).context("reading the locksmithd settings in update.conf")
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let id_path = cli.root.join("etc/machine-id");
    let id = std::fs::read_to_string(&id_path)
        .with_context(|| format!("reading {}", id_path.display()))?
        .trim()
        .to_string();
    match settings(&cli).and_then(|s| Ok(policy::release(&s, &id)?)) {
        Ok(()) => tracing::info!("no reboot lock held by {id} any more"),
        Err(e) => tracing::warn!("releasing the reboot lock: {e:#}"),
    }
    let mut last = None;
    loop {
        std::thread::sleep(Duration::from_millis(cli.interval_ms));
        let status = match ipc::call(&cli.socket, &Request::Status) {
            Ok(r) => r.status,
            Err(e) => {
                tracing::debug!("asking update_engine: {e}");
                continue;
            }
        };
        if status.current_op != Operation::UpdatedNeedReboot {
            continue;
        }
        let s = match settings(&cli) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e:#}");
                continue;
            }
        };
        let now = update::server::state::now();
        let step = match policy::decide(&s, &id, now) {
            Ok(step) => step,
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        if last.as_ref() != Some(&step) {
            tracing::info!(strategy = s.strategy.as_str(), "reboot needed: {step:?}");
            last = Some(step.clone());
        }
        if step != Step::Reboot {
            continue;
        }
        if let Err(e) = policy::drain(&s) {
            tracing::error!("{e}; not rebooting now");
            if let Err(e) = policy::release(&s, &id) {
                tracing::warn!("releasing the reboot lock: {e}");
            }
            continue;
        }
        let (cmd, args) = cli
            .reboot_command
            .split_first()
            .context("an empty --reboot-command")?;
        tracing::info!("rebooting: {:?}", cli.reboot_command);
        let st = std::process::Command::new(cmd)
            .args(args)
            .status()
            .with_context(|| format!("running {cmd}"))?;
        if st.success() {
            return Ok(());
        }
        tracing::error!("{:?} failed: {st}", cli.reboot_command);
    }
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
