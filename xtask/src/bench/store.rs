//! `cargo xtask bench store`: our v3 load generator (`ferro-store-bench`) drives Debian's etcd 3.4
//! and the release-built ferro-store, each started the same way (etcd's flags, fsync on, data
//! dirs on the same disk), first as one member, then as three members on loopback: put
//! throughput and latency with 1 and 100 clients, linearizable and serializable range reads,
//! watch fan-out (100 watch streams, one writer), then each server's resident memory.
//!
//! Both servers run side by side and every phase is run against one, then the other, before the
//! next phase (the order alternates), so that a busy machine slows both alike. On three members
//! the clients' connections are spread over the members' client URLs, as etcd's benchmark tool
//! does; the watch writer talks to the first member.

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
    /// The unit of the throughput row.
    unit: &'static str,
}

const PHASES: &[Phase] = &[
    Phase {
        label: "put, 1 client",
        op: "put",
        clients: 1,
        conns: 1,
        unit: "ops/s",
    },
    Phase {
        label: "put, 100 clients",
        op: "put",
        clients: 100,
        conns: 10,
        unit: "ops/s",
    },
    Phase {
        label: "range linearizable, 100 clients",
        op: "range",
        clients: 100,
        conns: 10,
        unit: "ops/s",
    },
    Phase {
        label: "range serializable, 100 clients",
        op: "range-serializable",
        clients: 100,
        conns: 10,
        unit: "ops/s",
    },
    Phase {
        label: "watch, 100 watchers, 1 writer",
        op: "watch",
        clients: 100,
        conns: 10,
        unit: "events/s",
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
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server's cluster: its members and their client URLs.
struct Cluster {
    name: String,
    members: Vec<Running>,
    urls: Vec<String>,
    logs: Vec<PathBuf>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `size` members of `bin` with etcd's flags for a new cluster on free loopback ports.
fn start(name: &str, bin: &Path, work: &Path, size: usize) -> Result<Cluster> {
    let mut ports = Vec::new();
    for _ in 0..size {
        ports.push((free_port()?, free_port()?));
    }
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect();
    let initial = initial.join(",");
    let mut cluster = Cluster {
        name: name.to_string(),
        members: Vec::new(),
        urls: Vec::new(),
        logs: Vec::new(),
    };
    for (i, (client, peer)) in ports.iter().enumerate() {
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data_dir = work.join(format!("{name}-{size}-m{i}"));
        let log = crate::paths::target().join(format!("bench/store-{name}-{size}-m{i}.log"));
        std::fs::create_dir_all(log.parent().expect("bench/ has a parent"))?;
        let logf =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bin)
            .arg(format!("--name=m{i}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-state=new")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        cluster.members.push(Running { child });
        cluster.urls.push(url);
        cluster.logs.push(log);
    }
    Ok(cluster)
}

impl Cluster {
    fn check_alive(&mut self) -> Result<()> {
        for (m, log) in self.members.iter_mut().zip(&self.logs) {
            if let Some(status) = m.child.try_wait()? {
                bail!(
                    "{} exited during the bench ({status}); see {}",
                    self.name,
                    log.display()
                );
            }
        }
        Ok(())
    }

    /// The members' resident memory, summed.
    fn rss_kib(&self) -> Result<u64> {
        self.members.iter().map(|m| vm_rss_kib(m.child.id())).sum()
    }
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

fn load(cluster: &Cluster, loadgen: &Path, p: &Phase, secs: f64) -> Result<Report> {
    eprintln!(
        "bench store: {} x{}: {} ({secs} s)",
        cluster.name,
        cluster.urls.len(),
        p.label
    );
    let out = crate::cmd::output(
        Command::new(loadgen)
            .arg(format!("--endpoints={}", cluster.urls.join(",")))
            .arg(format!("--op={}", p.op))
            .arg(format!("--clients={}", p.clients))
            .arg(format!("--conns={}", p.conns))
            .arg(format!("--seconds={secs}")),
    )
    .with_context(|| {
        format!(
            "load on {} (server logs: {})",
            cluster.name,
            cluster.logs[0].display()
        )
    })?;
    let r: Report = serde_json::from_str(out.trim())
        .with_context(|| format!("parsing the load generator's report {out:?}"))?;
    if r.errors > 0 {
        eprintln!(
            "bench store: {} x{}: {}: {} failed requests or missed events",
            cluster.name,
            cluster.urls.len(),
            p.label,
            r.errors
        );
    }
    Ok(r)
}

/// Every phase against both clusters of `size` members; the rows.
fn measure(
    size: usize,
    ours_bin: &Path,
    etcd: &Path,
    loadgen: &Path,
    work: &Path,
    secs: f64,
) -> Result<Vec<Row>> {
    let ours = start("ferro-store", ours_bin, work, size)?;
    let peer = start("etcd", etcd, work, size)?;
    let prefix = if size == 1 {
        "store 1 member".to_string()
    } else {
        format!("store {size} members")
    };
    compare(ours, peer, &prefix, loadgen, secs)
}

/// Every phase against `ours` and `peer`, alternating which goes first; the rows.
fn compare(
    mut ours: Cluster,
    mut peer: Cluster,
    prefix: &str,
    loadgen: &Path,
    secs: f64,
) -> Result<Vec<Row>> {
    let size = ours.urls.len();
    let mut rows = Vec::new();
    for (i, p) in PHASES.iter().enumerate() {
        let (o, e) = if i % 2 == 0 {
            let o = load(&ours, loadgen, p, secs)?;
            (o, load(&peer, loadgen, p, secs)?)
        } else {
            let e = load(&peer, loadgen, p, secs)?;
            (load(&ours, loadgen, p, secs)?, e)
        };
        let what = p.label;
        let latency = if p.op == "watch" { "delivery " } else { "" };
        rows.push(Row::new(
            &format!("{prefix} {what} ({})", p.unit),
            format!("{:.0}", o.ops_per_sec),
            format!("{:.0}", e.ops_per_sec),
            Some(o.ops_per_sec / e.ops_per_sec),
        ));
        rows.push(Row::new(
            &format!("{prefix} {what} {latency}p50"),
            format!("{:.2} ms", o.p50_ms),
            format!("{:.2} ms", e.p50_ms),
            Some(o.p50_ms / e.p50_ms),
        ));
        rows.push(Row::new(
            &format!("{prefix} {what} {latency}p99"),
            format!("{:.2} ms", o.p99_ms),
            format!("{:.2} ms", e.p99_ms),
            Some(o.p99_ms / e.p99_ms),
        ));
    }
    ours.check_alive()?;
    peer.check_alive()?;
    let (o, e) = (ours.rss_kib()?, peer.rss_kib()?);
    let what = if size == 1 {
        format!("{prefix} resident memory after the load")
    } else {
        format!("{prefix} resident memory after the load (sum)")
    };
    rows.push(Row::new(
        &what,
        format!("{:.1} MiB", o as f64 / 1024.0),
        format!("{:.1} MiB", e as f64 / 1024.0),
        Some(o as f64 / e as f64),
    ));
    Ok(rows)
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
    std::fs::create_dir_all(crate::paths::target())?;
    let work = tempfile::Builder::new()
        .prefix("bench-store-")
        .tempdir_in(crate::paths::target())?;
    let mut rows = Vec::new();
    for size in [1, 3] {
        rows.extend(measure(size, &ours_bin, etcd, &loadgen, work.path(), secs)?);
        // Another build of ours (an older commit's), measured the same way against etcd in the
        // same run: what a change bought.
        if let Some(before) = std::env::var_os("FERRO_BENCH_STORE_BEFORE") {
            let before = start("ferro-store-before", Path::new(&before), work.path(), size)?;
            let peer = start("etcd-again", etcd, work.path(), size)?;
            let prefix = format!("(before) store x{size}");
            rows.extend(compare(before, peer, &prefix, &loadgen, secs)?);
        }
    }
    Ok(rows)
}
