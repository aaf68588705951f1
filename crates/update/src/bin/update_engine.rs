//! `update_engine`: the Ferrocore update agent daemon (CoreOS's update_engine, without D-Bus:
//! `update_engine_client` talks to it over a unix socket, see `update::agent::ipc`).

use anyhow::{Context, Result};
use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;
use update::agent::{daemon, engine::Agent, ipc};

#[derive(Parser)]
#[command(name = "update_engine", about = "Ferrocore update agent")]
struct Cli {
    /// The root of the system whose files are read (`update.conf`, os-release, machine-id, keys,
    /// /proc/cmdline) and under which /var/lib/update_engine lives; `/` on a machine.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The disk with USR-A/USR-B and the ESP (default: the disk holding USR-A).
    #[arg(long)]
    disk: Option<PathBuf>,
    /// The control socket.
    #[arg(long, default_value = ipc::SOCKET)]
    socket: PathBuf,
    /// First check this long after start.
    #[arg(long, default_value_t = 300)]
    initial_delay_secs: u64,
    /// Then about this often (±10%).
    #[arg(long, default_value_t = 3600)]
    interval_secs: u64,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let disk = match cli.disk {
        Some(d) => d,
        None => update::agent::disk::default_disk(&cli.root)?,
    };
    if let Some(dir) = cli.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket left by an earlier run would make bind fail.
    let _ = std::fs::remove_file(&cli.socket);
    let listener = std::os::unix::net::UnixListener::bind(&cli.socket)
        .with_context(|| format!("binding {}", cli.socket.display()))?;
    std::fs::set_permissions(&cli.socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", cli.socket.display()))?;
    let agent = Agent::new(&cli.root, &disk);
    tracing::info!(
        disk = %disk.display(),
        socket = %cli.socket.display(),
        version = %agent.running_version().unwrap_or_else(|e| e.to_string()),
        "update_engine started"
    );
    daemon::run(
        agent,
        daemon::Schedule {
            initial_delay: Duration::from_secs(cli.initial_delay_secs),
            interval: Duration::from_secs(cli.interval_secs.max(1)),
        },
        listener,
    );
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
