//! `ferro-update-server`: serve Omaha updates (`serve`), or administer a running server
//! (`publish`, `promote`, `rollout`, `pause`, `group`, `status`) through its JSON API.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
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
    /// PEM file of the CA that signed an https:// --server's certificate (besides the system's).
    #[arg(long, global = true, env = "FERRO_UPDATE_CACERT")]
    cacert: Option<PathBuf>,
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
        /// Serve HTTPS with this PEM certificate chain (with --key-file).
        #[arg(long, requires = "key_file")]
        cert_file: Option<PathBuf>,
        /// The PEM private key of --cert-file.
        #[arg(long, requires = "cert_file")]
        key_file: Option<PathBuf>,
        /// Require client certificates signed by a CA in this PEM file (HTTPS only).
        #[arg(long, requires = "cert_file")]
        trusted_ca_file: Option<PathBuf>,
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

/// The serve subcommand's TLS flags, named as etcd's (and ferro-store's) client side.
const TLS_FLAGS: tls::Names = tls::Names {
    side: "HTTPS",
    cert: "--cert-file",
    key: "--key-file",
    ca: "--trusted-ca-file",
    auth: "--trusted-ca-file",
};

/// The admin client: the system's CAs, and `--cacert` for a server with a private CA.
fn admin_client(cacert: Option<&Path>) -> Result<reqwest::blocking::Client> {
    let mut b = reqwest::blocking::Client::builder();
    if let Some(path) = cacert {
        let pem = std::fs::read(path).with_context(|| format!("--cacert {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--cacert {}: not PEM certificates", path.display()))?;
        if certs.is_empty() {
            bail!("--cacert {}: no certificate in it", path.display());
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().context("setting up the HTTP client")
}

fn admin(
    server: &str,
    cacert: Option<&Path>,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let client = admin_client(cacert)?;
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

fn serve(listen: &str, config: http::Config, tls: tls::Flags) -> Result<()> {
    // Certificate files are checked before anything listens, naming the flag and the path.
    let tls = tls.server_config()?;
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    rt.block_on(async {
        let app = http::router(config.clone())
            .with_context(|| format!("loading state from {}", config.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("ferro-update-server listening on {scheme}://{addr}");
        tracing::info!(%addr, scheme, data_dir = %config.data_dir.display(), "serving");
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match tls {
            Some(cfg) => axum::serve(tls::TlsListener::new(listener, cfg)?, app)
                .with_graceful_shutdown(stop)
                .await
                .context("serving HTTPS"),
            None => axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .context("serving HTTP"),
        }
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
    let ca = cli.cacert.as_deref();
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
            cert_file,
            key_file,
            trusted_ca_file,
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
                https: cert_file.is_some(),
            };
            let tls = tls::Flags {
                names: &TLS_FLAGS,
                client_cert_auth: trusted_ca_file.is_some(),
                cert_file,
                key_file,
                trusted_ca_file,
            };
            return serve(&listen, config, tls);
        }
        Cmd::Publish { dir, channel } => {
            let dir = std::fs::canonicalize(&dir)
                .with_context(|| format!("finding {}", dir.display()))?;
            admin(
                s,
                ca,
                "/api/publish",
                Some(serde_json::json!({ "dir": dir, "channel": channel })),
            )?
        }
        Cmd::Promote { version, channel } => admin(
            s,
            ca,
            "/api/promote",
            Some(serde_json::json!({ "version": version, "channel": channel })),
        )?,
        Cmd::Rollout { group, percent } => admin(
            s,
            ca,
            &format!("/api/groups/{group}"),
            Some(serde_json::json!({ "rollout_percent": percent })),
        )?,
        Cmd::Pause { group, resume } => admin(
            s,
            ca,
            &format!("/api/groups/{group}"),
            Some(serde_json::json!({ "paused": !resume })),
        )?,
        Cmd::Group { name, channel } => admin(
            s,
            ca,
            &format!("/api/groups/{name}"),
            Some(serde_json::json!({ "channel": channel })),
        )?,
        Cmd::Status => admin(s, ca, "/api/state", None)?,
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
