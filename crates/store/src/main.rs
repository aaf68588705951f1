use std::process::ExitCode;

use store::config::Config;
use store::server::Server;

fn main() -> ExitCode {
    // `ferro-store snapshot restore|status …` works on files, as `etcdctl snapshot` does.
    if std::env::args().nth(1).as_deref() == Some("snapshot") {
        use clap::Parser;
        let cli = store::snapshot::Cli::parse_from(std::env::args().skip(1));
        return match cli.run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferro-store snapshot: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match Config::from_args(std::env::args()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let level = if cfg.debug {
        "debug"
    } else {
        cfg.log_level.as_str()
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferro-store: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(async { Server::bind(&cfg).await?.run().await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ferro-store: {e:#}");
            ExitCode::FAILURE
        }
    }
}
