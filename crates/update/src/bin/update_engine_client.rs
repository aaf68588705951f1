//! `update_engine_client`: CoreOS's client flags (`-status`, `-check_for_update`, `-update`)
//! plus `-apply_payload DIR` for air-gapped machines; talks to `update_engine` over its socket.

use anyhow::{bail, Result};
use clap::Parser;
use std::path::PathBuf;
use update::agent::ipc::{self, Request};

#[derive(Parser)]
#[command(
    name = "update_engine_client",
    about = "Ask update_engine for its status, an update check, or an offline install",
    long_about = "Flags take one dash as on CoreOS (-status) or two (--status)."
)]
struct Cli {
    /// Print LAST_CHECKED_TIME, PROGRESS, CURRENT_OP, NEW_VERSION, NEW_SIZE.
    #[arg(long)]
    status: bool,
    /// Start an update check (and install, if there is an update) and return.
    #[arg(long = "check_for_update")]
    check_for_update: bool,
    /// Check for an update and wait until it is installed or fails.
    #[arg(long)]
    update: bool,
    /// Verify and install an update payload directory (manifest.json, manifest.json.sig, *.zst).
    #[arg(long = "apply_payload", value_name = "DIR")]
    apply_payload: Option<PathBuf>,
    /// With -apply_payload: accept a version older than (or equal to) the running one.
    #[arg(long = "allow_downgrade", requires = "apply_payload")]
    allow_downgrade: bool,
    /// update_engine's control socket.
    #[arg(long, default_value = ipc::SOCKET, env = "UPDATE_ENGINE_SOCKET")]
    socket: PathBuf,
}

/// CoreOS's flags have one dash (gflags style); clap wants two for long names.
fn args() -> Vec<String> {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && a.len() > 2 && a.starts_with('-') && !a.starts_with("--") {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

fn main() -> Result<()> {
    let cli = Cli::parse_from(args());
    let req = if let Some(dir) = cli.apply_payload {
        Request::Apply {
            dir: std::fs::canonicalize(&dir).unwrap_or(dir),
            allow_downgrade: cli.allow_downgrade,
        }
    } else if cli.update {
        Request::Check { wait: true }
    } else if cli.check_for_update {
        Request::Check { wait: false }
    } else if cli.status {
        Request::Status
    } else {
        bail!("say what to do: -status, -check_for_update, -update or -apply_payload DIR");
    };
    let reply = ipc::call(&cli.socket, &req)?;
    match req {
        Request::Status => print!("{}", reply.status.to_text()),
        Request::Check { wait: false } => println!("Initiating update check and install."),
        _ => {
            if let Some(r) = &reply.result {
                println!("{r}");
            }
            print!("{}", reply.status.to_text());
        }
    }
    if let Some(e) = reply.error {
        bail!("{e}");
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
