//! `cargo xtask bench update`: applying a full signed payload to a slot with the release-built
//! agent (`update_engine_client -apply_payload`: verify, decompress, write, fsync, read back, ESP
//! files, slot bits) against `dd` of the same `/usr` bytes into the same kind of target (a disk
//! image file on the same file system), measured in the same run. Also the payload's size against
//! the uncompressed slot image.

use super::{mib, secs, Row};
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use update::payload;

/// Size of the synthetic `/usr` (MiB); `FERRO_BENCH_UPDATE_MIB` overrides.
const DEFAULT_MIB: u64 = 256;

/// Bytes that compress about as a system `/usr` does (~2–3×): runs of text-like data, zeros and
/// noise.
fn usr_like(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len);
    let words: &[&[u8]] = &[
        b"lib",
        b"usr",
        b"share",
        b"/",
        b"\0",
        b"ELF",
        b"GLIBC_2.",
        b"systemd",
    ];
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 8 {
            0..=3 => {
                for i in 0..64 {
                    out.extend_from_slice(words[((x >> (i % 50)) % words.len() as u64) as usize]);
                }
            }
            4 => out.extend(std::iter::repeat_n(0u8, 2048)),
            _ => {
                for _ in 0..128 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    out.truncate(len);
    out
}

/// The machine's side: a root tree for the agent (running 1.0.0 from slot A, trusting the
/// bench key), the release-built `update_engine` on it, and the timed client call.
fn apply_with_agent(d: &Path, disk: &Path, payload: &Path, public_key: &Path) -> Result<Duration> {
    eprintln!("bench update: building update_engine and update_engine_client (release)");
    // Cargo's own output goes where CARGO_TARGET_DIR says, if anywhere, else target/.
    let cargo_target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(crate::paths::target);
    crate::cmd::run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "update"])
            .args(["--bin", "update_engine", "--bin", "update_engine_client"])
            .env("CARGO_TARGET_DIR", &cargo_target)
            .current_dir(crate::paths::root()),
    )?;
    let bin = cargo_target.join("release");
    let root = d.join("root");
    for (rel, text) in [
        ("usr/lib/os-release", "VERSION_ID=1.0.0\n"),
        ("etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("proc/cmdline", "ferrocore.slot=A\n"),
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("nested"))?;
        std::fs::write(p, text)?;
    }
    let keys = root.join(update::agent::engine::KEYS_DIR);
    std::fs::create_dir_all(&keys)?;
    std::fs::copy(public_key, keys.join("bench.pub"))?;
    let socket = d.join("update_engine.sock");
    let log = d.join("update_engine.log");
    let mut daemon = Command::new(bin.join("update_engine"))
        .arg("--root")
        .arg(&root)
        .arg("--disk")
        .arg(disk)
        .arg("--socket")
        .arg(&socket)
        .args(["--initial-delay-secs", "1000000"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting update_engine")?;
    let r = (|| {
        let t = Instant::now();
        while !socket.exists() {
            ensure!(
                t.elapsed() < Duration::from_secs(30),
                "update_engine made no socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench update: update_engine_client -apply_payload");
        let t = Instant::now();
        let out = Command::new(bin.join("update_engine_client"))
            .arg("-apply_payload")
            .arg(payload)
            .env("UPDATE_ENGINE_SOCKET", &socket)
            .output()?;
        let took = t.elapsed();
        ensure!(
            out.status.success(),
            "update_engine_client -apply_payload: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(took)
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    // Where the agent's time went: its own timestamps of each phase.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for line in text.lines().filter(|l| l.contains("elapsed")) {
        eprintln!("bench update: agent: {}", line.trim());
    }
    r.with_context(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        format!(
            "update_engine's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })
}

fn dd(src: &Path, disk: &Path, offset: u64) -> Result<()> {
    let st = Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", disk.display()))
        .args([
            "bs=1M",
            "conv=notrunc,fsync",
            "oflag=seek_bytes",
            "status=none",
        ])
        .arg(format!("seek={offset}"))
        .status()
        .context("running dd (coreutils)")?;
    ensure!(st.success(), "dd failed: {st}");
    Ok(())
}

pub fn run() -> Result<Vec<Row>> {
    let usr_mib: u64 = std::env::var("FERRO_BENCH_UPDATE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MIB);
    // Under target/, not /tmp: the same file system a developer's disk images live on.
    let base = crate::paths::target();
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let d = dir.path();
    eprintln!("bench update: making a {usr_mib} MiB /usr and its signed payload");
    let usr = d.join("usr.img");
    std::fs::write(&usr, usr_like((usr_mib << 20) as usize))?;
    let kernel = d.join("vmlinuz");
    std::fs::write(&kernel, usr_like(12 << 20))?;
    let initrd = d.join("initrd");
    std::fs::write(&initrd, usr_like(4 << 20))?;
    let (sk, pk) = payload::keys::generate(&d.join("keys/bench"))?;
    let pdir = d.join("payload");
    payload::create(
        &pdir,
        payload::Release {
            version: "2.0.0".into(),
            build_id: "bench".into(),
            channel: "stable".into(),
            usr_root_hash: "00".repeat(32),
            usr_data_blocks: (usr_mib << 20) / 4096,
            usr_salt: "-".into(),
        },
        &[("usr", &usr), ("kernel", &kernel), ("initrd", &initrd)],
        &payload::keys::load_signing(&sk)?,
    )?;
    let payload_bytes: u64 = std::fs::read_dir(&pdir)?
        .map(|e| Ok(e?.metadata()?.len()))
        .sum::<std::io::Result<u64>>()?;

    // The slot must hold /usr; the disk image sizes are the same for both.
    let slot_mib = usr_mib + 1;
    let peer_disk = d.join("peer.img");
    let layout = update::testdisk::create(&peer_disk, slot_mib)?;
    eprintln!("bench update: dd into USR-B");
    let t = Instant::now();
    dd(&usr, &peer_disk, layout.usr_b_offset)?;
    let peer_time = t.elapsed();

    let disk = d.join("ours.img");
    update::testdisk::create(&disk, slot_mib)?;
    let ours_time = apply_with_agent(d, &disk, &pdir, &pk)?;

    let rate = |t: std::time::Duration| (usr_mib as f64) / t.as_secs_f64();
    Ok(vec![
        Row::new(
            &format!(
                "update: apply {usr_mib} MiB slot (MiB/s; ours: verify+write+read back; peer: dd)"
            ),
            format!("{:.0} ({})", rate(ours_time), secs(ours_time)),
            format!("{:.0} ({})", rate(peer_time), secs(peer_time)),
            Some(rate(ours_time) / rate(peer_time)),
        ),
        Row::new(
            "update: payload size (peer: uncompressed /usr)",
            mib(payload_bytes),
            mib(usr_mib << 20),
            Some(payload_bytes as f64 / (usr_mib << 20) as f64),
        ),
    ])
}
