//! `ferro-update-server`: serve Omaha updates (`serve`), or administer a running server
//! (`publish`, `promote`, `rollout`, `pause`, `group`, `status`) through its JSON API.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use update::server::{http, policy::Policy};

#[derive(Parser)]
#[command(
    name = "ferro-update-server",
    about = "Omaha update server for Ferrocore"
)]
struct Cli {
    /// The running server, for the admin subcommands.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8095",
        env = "FERRO_UPDATE_SERVER"
    )]
    server: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        /// Address to listen on (port 0 picks one; the address is printed on stdout).
        #[arg(long, default_value = "127.0.0.1:8095")]
        listen: String,
        /// Where state.json and published payloads live.
        #[arg(long)]
        data_dir: PathBuf,
        /// Refuse to publish payloads not signed by a key (*.pub) in this directory.
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
        /// Base URL clients reach this server at (default: the Host header of each request).
        #[arg(long)]
        public_url: Option<String>,
        /// Pause a version's groups when this share (0–1) of the machines offered it fail.
        #[arg(long, default_value_t = 0.5)]
        max_failure_rate: f64,
        /// Only once at least this many machines were offered the version.
        #[arg(long, default_value_t = 5)]
        min_instances: usize,
        /// FleetLock: how many machines of a group may reboot at once.
        #[arg(long, default_value_t = 1)]
        fleetlock_max: usize,
        /// The Omaha application id served (default: CoreOS's).
        #[arg(long, default_value = update::server::policy::COREOS_APP_ID)]
        app_id: String,
    },
    /// Publish a payload directory (read by the server: same machine), optionally to a channel.
    Publish {
        dir: PathBuf,
        #[arg(long)]
        channel: Option<String>,
    },
    /// Point a channel at a published version.
    Promote {
        version: String,
        #[arg(long)]
        channel: String,
    },
    /// Set the share of a group's machines offered its channel's version.
    Rollout {
        #[arg(long, default_value = "stable")]
        group: String,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
    /// Pause (or with --resume, resume) a group's updates.
    Pause {
        #[arg(long, default_value = "stable")]
        group: String,
        #[arg(long)]
        resume: bool,
    },
    /// Create a group, or change which channel it follows.
    Group {
        name: String,
        #[arg(long)]
        channel: String,
    },
    /// Channels, groups, releases and instances, as JSON.
    Status,
}

fn admin(server: &str, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let client = reqwest::blocking::Client::new();
    let req = match body {
        Some(b) => client
            .post(&url)
            .header("content-type", "application/json")
            .body(b.to_string()),
        None => client.get(&url),
    };
    let resp = req.send().with_context(|| format!("asking {url}"))?;
    let status = resp.status();
    let text = resp.text().with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("{url}: {status}: {}", text.trim());
    }
    serde_json::from_str(&text).with_context(|| format!("{url}: not JSON: {text}"))
}

fn serve(listen: &str, config: http::Config) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    rt.block_on(async {
        let app = http::router(config.clone())
            .with_context(|| format!("loading state from {}", config.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        println!("ferro-update-server listening on http://{addr}");
        tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving HTTP")
    })
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let s = &cli.server;
    let out = match cli.cmd {
        Cmd::Serve {
            listen,
            data_dir,
            trusted_keys,
            public_url,
            max_failure_rate,
            min_instances,
            fleetlock_max,
            app_id,
        } => {
            if !(0.0..=1.0).contains(&max_failure_rate) {
                bail!("--max-failure-rate {max_failure_rate} is not within 0–1");
            }
            let config = http::Config {
                data_dir,
                policy: Policy {
                    app_id,
                    max_failure_rate,
                    min_instances,
                },
                public_url,
                trusted_keys_dir: trusted_keys,
                fleetlock_max,
            };
            return serve(&listen, config);
        }
        Cmd::Publish { dir, channel } => {
            let dir = std::fs::canonicalize(&dir)
                .with_context(|| format!("finding {}", dir.display()))?;
            admin(
                s,
                "/api/publish",
                Some(serde_json::json!({ "dir": dir, "channel": channel })),
            )?
        }
        Cmd::Promote { version, channel } => admin(
            s,
            "/api/promote",
            Some(serde_json::json!({ "version": version, "channel": channel })),
        )?,
        Cmd::Rollout { group, percent } => admin(
            s,
            &format!("/api/groups/{group}"),
            Some(serde_json::json!({ "rollout_percent": percent })),
        )?,
        Cmd::Pause { group, resume } => admin(
            s,
            &format!("/api/groups/{group}"),
            Some(serde_json::json!({ "paused": !resume })),
        )?,
        Cmd::Group { name, channel } => admin(
            s,
            &format!("/api/groups/{name}"),
            Some(serde_json::json!({ "channel": channel })),
        )?,
        Cmd::Status => admin(s, "/api/state", None)?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
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
