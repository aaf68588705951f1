//! `cargo xtask bench store`: our v3 load generator (`ferro-store-bench`) drives Debian's etcd 3.4
//! and the release-built ferro-store, each started the same way (single member, fsync on, data dir
//! on the same disk), one after the other in the same run: put throughput and latency with 1 and
//! 100 clients, linearizable and serializable range reads, then each server's resident memory.

use super::Row;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Seconds per load phase; `FERRO_BENCH_STORE_SECS` overrides.
const DEFAULT_SECS: f64 = 4.0;

/// One timed phase: what the load generator is told, and how the row is labelled.
struct Phase {
    label: &'static str,
    op: &'static str,
    clients: usize,
    conns: usize,
}

const PHASES: &[Phase] = &[
    Phase {
        label: "put, 1 client",
        op: "put",
        clients: 1,
        conns: 1,
    },
    Phase {
        label: "put, 100 clients",
        op: "put",
        clients: 100,
        conns: 10,
    },
    Phase {
        label: "range linearizable, 100 clients",
        op: "range",
        clients: 100,
        conns: 10,
    },
    Phase {
        label: "range serializable, 100 clients",
        op: "range-serializable",
        clients: 100,
        conns: 10,
    },
];

#[derive(serde::Deserialize)]
struct Report {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// A server process that is killed when dropped, so a failed bench leaves nothing running.
struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `bin` with etcd's flags for a one-member cluster on free loopback ports.
fn start(bin: &Path, data_dir: &Path, log: &Path) -> Result<Running> {
    let (client, peer) = (free_port()?, free_port()?);
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(bin)
        .arg("--name=bench")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=bench={peer_url}"))
        .arg("--log-level=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Running { child, url })
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// Everything measured on one server.
struct Figures {
    phases: Vec<Report>,
    rss_kib: u64,
}

fn measure(name: &str, server: &Path, loadgen: &Path, work: &Path, secs: f64) -> Result<Figures> {
    let data = work.join(format!("{name}-data"));
    let log = crate::paths::target().join(format!("bench/store-{name}.log"));
    std::fs::create_dir_all(log.parent().expect("bench/ has a parent"))?;
    let mut running = start(server, &data, &log)?;
    let mut phases = Vec::new();
    for p in PHASES {
        eprintln!("bench store: {name}: {} ({secs} s)", p.label);
        let out = crate::cmd::output(
            Command::new(loadgen)
                .arg(format!("--endpoint={}", running.url))
                .arg(format!("--op={}", p.op))
                .arg(format!("--clients={}", p.clients))
                .arg(format!("--conns={}", p.conns))
                .arg(format!("--seconds={secs}")),
        )
        .with_context(|| format!("load on {name} (server log: {})", log.display()))?;
        let r: Report = serde_json::from_str(out.trim())
            .with_context(|| format!("parsing the load generator's report {out:?}"))?;
        if r.errors > 0 {
            eprintln!("bench store: {name}: {} failed requests", r.errors);
        }
        phases.push(r);
    }
    if let Some(status) = running.child.try_wait()? {
        bail!(
            "{name} exited during the bench ({status}); see {}",
            log.display()
        );
    }
    let rss_kib = vm_rss_kib(running.child.id())?;
    Ok(Figures { phases, rss_kib })
}

/// Builds the release ferro-store and the load generator; returns their paths.
fn build() -> Result<(PathBuf, PathBuf)> {
    eprintln!("bench store: building ferro-store and ferro-store-bench (release)");
    // Cargo's own output goes where CARGO_TARGET_DIR says, if anywhere, else target/.
    let cargo_target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(crate::paths::target);
    crate::cmd::run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "store"])
            .args(["--bin", "ferro-store", "--bin", "ferro-store-bench"])
            .env("CARGO_TARGET_DIR", &cargo_target)
            .current_dir(crate::paths::root()),
    )?;
    let bin = cargo_target.join("release");
    Ok((bin.join("ferro-store"), bin.join("ferro-store-bench")))
}

pub fn run() -> Result<Vec<Row>> {
    let etcd = Path::new("/usr/bin/etcd");
    if !etcd.exists() {
        bail!("/usr/bin/etcd is missing: install the Debian package `etcd-server`");
    }
    let secs = match std::env::var("FERRO_BENCH_STORE_SECS") {
        Ok(s) => s.parse().context("FERRO_BENCH_STORE_SECS")?,
        Err(_) => DEFAULT_SECS,
    };
    let (ours_bin, loadgen) = build()?;
    // On the disk (not a tmpfs): fsync must cost what it costs.
    let work = tempfile::Builder::new()
        .prefix("bench-store-")
        .tempdir_in(crate::paths::target())?;
    let ours = measure("ferro-store", &ours_bin, &loadgen, work.path(), secs)?;
    let peer = measure("etcd", etcd, &loadgen, work.path(), secs)?;

    let mut rows = Vec::new();
    for (i, p) in PHASES.iter().enumerate() {
        let (o, e) = (&ours.phases[i], &peer.phases[i]);
        rows.push(Row::new(
            &format!("store {} (ops/s)", p.label),
            format!("{:.0}", o.ops_per_sec),
            format!("{:.0}", e.ops_per_sec),
            Some(o.ops_per_sec / e.ops_per_sec),
        ));
        rows.push(Row::new(
            &format!("store {} p50", p.label),
            format!("{:.2} ms", o.p50_ms),
            format!("{:.2} ms", e.p50_ms),
            Some(o.p50_ms / e.p50_ms),
        ));
        rows.push(Row::new(
            &format!("store {} p99", p.label),
            format!("{:.2} ms", o.p99_ms),
            format!("{:.2} ms", e.p99_ms),
            Some(o.p99_ms / e.p99_ms),
        ));
    }
    rows.push(Row::new(
        "store resident memory after the load",
        format!("{:.1} MiB", ours.rss_kib as f64 / 1024.0),
        format!("{:.1} MiB", peer.rss_kib as f64 / 1024.0),
        Some(ours.rss_kib as f64 / peer.rss_kib as f64),
    ));
    Ok(rows)
}
