//! `ferro-health`: the health of this boot. `check` runs the health checks and prints them;
//! `run` (ferrocore-mark-successful.service, after multi-user.target) then marks the booted slot
//! successful, or, when a slot on trial fails, rolls back to the previous slot, reports it and
//! reboots (see `update::agent::verdict`).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use update::agent::config::UpdateConf;
use update::agent::engine::Agent;
use update::agent::health;
use update::agent::verdict::{self, Verdict};

#[derive(Parser)]
#[command(
    name = "ferro-health",
    about = "Run the boot health checks; mark the slot good or roll back"
)]
struct Cli {
    /// The root of the system (health.d directories, update.conf, /var/lib/update_engine,
    /// /proc/cmdline); `/` on a machine.
    #[arg(long, global = true, default_value = "/")]
    root: PathBuf,
    /// The disk with USR-A/USR-B (default: the disk holding USR-A).
    #[arg(long, global = true)]
    disk: Option<PathBuf>,
    /// Leave out systemd's part (no failed units): for trees that are not a running system.
    #[arg(long, global = true)]
    no_systemd: bool,
    /// Per-check timeout; default HEALTH_CHECK_TIMEOUT from update.conf, else 2m.
    #[arg(long, global = true, value_parser = parse_timeout)]
    timeout: Option<Duration>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the checks and print each result; change nothing.
    Check,
    /// Run the checks, then mark the booted slot successful or roll back and reboot.
    Run {
        /// The reboot after a rollback.
        #[arg(long, default_value = "systemctl reboot", value_delimiter = ' ')]
        reboot_command: Vec<String>,
    },
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    update::locksmith::window::parse_duration(s)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is not a duration such as 90s or 2m"))
}

fn timeout(cli: &Cli) -> Result<Duration> {
    if let Some(t) = cli.timeout {
        return Ok(t);
    }
    let conf = UpdateConf::load(&cli.root).context("reading update.conf")?;
    match conf
        .raw
        .get("HEALTH_CHECK_TIMEOUT")
        .filter(|v| !v.is_empty())
    {
        Some(v) => parse_timeout(v)
            .map_err(|e| anyhow::anyhow!("HEALTH_CHECK_TIMEOUT in update.conf: {e}")),
        None => Ok(health::DEFAULT_TIMEOUT),
    }
}

fn print(results: &[health::CheckResult]) {
    for r in results {
        let mark = if r.passed { "ok  " } else { "FAIL" };
        println!("{mark} {} ({})", r.name, r.ended);
        for line in r.output.lines() {
            println!("     {line}");
        }
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let timeout = timeout(&cli)?;
    let systemd: Vec<health::CheckResult> = if cli.no_systemd {
        Vec::new()
    } else {
        vec![health::failed_units_check(timeout)]
    };
    let reboot_command = match cli.cmd {
        Cmd::Check => {
            let mut results = systemd;
            results.extend(health::run_all(&health::discover(&cli.root), timeout));
            print(&results);
            if results.iter().any(|r| !r.passed) {
                bail!(
                    "{} health check(s) failed",
                    results.iter().filter(|r| !r.passed).count()
                );
            }
            return Ok(());
        }
        Cmd::Run { reboot_command } => reboot_command,
    };
    let disk = match cli.disk {
        Some(d) => d,
        None => update::agent::disk::default_disk(&cli.root)?,
    };
    let agent = Agent::new(&cli.root, &disk);
    let outcome = verdict::run(&agent, systemd, timeout)?;
    print(&outcome.checks);
    match outcome.verdict {
        Verdict::MarkSuccessful => println!("{}: marked successful", outcome.slot),
        Verdict::AlreadyGood => println!("{}: known good", outcome.slot),
        Verdict::KeepUnhealthy => bail!(
            "{} is unhealthy and there is no known-good slot to go back to",
            outcome.slot
        ),
        Verdict::RollBack { to } => {
            println!("{}: rolled back to {to}; rebooting", outcome.slot);
            let (cmd, args) = reboot_command
                .split_first()
                .context("an empty --reboot-command")?;
            let st = std::process::Command::new(cmd)
                .args(args)
                .status()
                .with_context(|| format!("running {cmd}"))?;
            if !st.success() {
                bail!(
                    "{reboot_command:?} failed ({st}); the rollback takes effect at the next boot"
                );
            }
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
