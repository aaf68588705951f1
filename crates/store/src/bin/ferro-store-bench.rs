//! `ferro-store-bench`: the v3 load generator behind `cargo xtask bench store`. Prints one JSON
//! report (ops, errors, ops_per_sec, p50_ms, p99_ms) on stdout; for `--op watch` the ops are
//! events received and the latencies those of delivery (put acknowledged to event received).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use store::loadgen::{self, Op, Spec};

#[derive(Parser)]
#[command(about = "Drive an etcd v3 endpoint with puts or range reads and report latency")]
struct Cli {
    /// Client URLs, comma-separated, e.g. http://127.0.0.1:2379: connection `i` goes to the
    /// `i % n`-th (the watch writer to the first).
    #[arg(
        long = "endpoints",
        alias = "endpoint",
        value_delimiter = ',',
        required = true
    )]
    endpoints: Vec<String>,
    /// put, range (linearizable), range-serializable, or watch (`clients` watch streams on one
    /// prefix, one writer putting under it).
    #[arg(long, default_value = "put")]
    op: String,
    #[arg(long, default_value_t = 1)]
    clients: usize,
    #[arg(long, default_value_t = 1)]
    conns: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1000)]
    key_space: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Write every key once before the timed run.
    #[arg(long)]
    fill: bool,
    /// How long to wait for the server to answer before starting.
    #[arg(long, default_value_t = 20.0)]
    wait_seconds: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let op = match cli.op.as_str() {
        "put" => Op::Put,
        "range" => Op::Range {
            serializable: false,
        },
        "range-serializable" => Op::Range { serializable: true },
        "watch" => Op::Watch,
        other => anyhow::bail!("unknown --op {other:?} (put, range, range-serializable, watch)"),
    };
    let spec = Spec {
        endpoints: cli.endpoints,
        op,
        clients: cli.clients,
        conns: cli.conns,
        duration: Duration::from_secs_f64(cli.seconds),
        key_space: cli.key_space,
        value_size: cli.value_size,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let report = rt.block_on(async {
        for e in &spec.endpoints {
            loadgen::wait_ready(e, Duration::from_secs_f64(cli.wait_seconds)).await?;
        }
        if cli.fill {
            loadgen::fill(&spec).await?;
        }
        loadgen::run(&spec).await
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
