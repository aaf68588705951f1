//! update_engine daemons on test machines, and update_engine_client.

use super::machine::Machine;
use super::Proc;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub proc: Proc,
    pub socket: PathBuf,
}

pub fn daemon(m: &Machine, dir: &Path, name: &str) -> Daemon {
    daemon_with_env(m, dir, name, &[])
}

/// A daemon with these environment variables set (e.g. `SSL_CERT_FILE`).
pub fn daemon_with_env(m: &Machine, dir: &Path, name: &str, env: &[(&str, &Path)]) -> Daemon {
    let socket = dir.join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&socket);
    let child = Command::new(env!("CARGO_BIN_EXE_update_engine"))
        .arg("--root")
        .arg(&m.root)
        .arg("--disk")
        .arg(&m.disk)
        .arg("--socket")
        .arg(&socket)
        .args(["--initial-delay-secs", "3600"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting update_engine");
    let proc = Proc { child };
    let t = Instant::now();
    // The file appears at bind, a moment before listen: wait until it takes connections.
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "update_engine made no socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon { proc, socket }
}

/// Runs update_engine_client with CoreOS-style flags; returns (success, stdout+stderr).
pub fn client(d: &Daemon, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_update_engine_client"))
        .args(args)
        .env("UPDATE_ENGINE_SOCKET", &d.socket)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn status_line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {text}"))
}

pub fn machine_id(m: &Machine) -> String {
    std::fs::read_to_string(m.root.join("etc/machine-id"))
        .unwrap()
        .trim()
        .into()
}

/// Boots the machine "into" the new slot: what the next boot of a real machine would show.
pub fn reboot_into(m: &Machine, version: &str, slot: &str) {
    std::fs::write(
        m.root.join("usr/lib/os-release"),
        format!("VERSION_ID={version}\n"),
    )
    .unwrap();
    std::fs::write(m.root.join("proc/sys/kernel/random/boot_id"), "boot-2\n").unwrap();
    std::fs::write(
        m.root.join("proc/cmdline"),
        format!("ferrocore.slot={slot}\n"),
    )
    .unwrap();
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `ferro-health run` on the machine (without systemd's part); returns (success, output).
pub fn health(m: &Machine, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferro-health"))
        .arg("--root")
        .arg(&m.root)
        .arg("--disk")
        .arg(&m.disk)
        .args(["--no-systemd", "--timeout", "10s", "run"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What GRUB does when it boots an untried slot: one try less, in grubenv only.
pub fn spend_grub_try(m: &Machine, slot: gptprio::Slot) {
    let d = gptprio::Disk::open(&m.disk, true).unwrap();
    let mut env = d.read_grubenv().unwrap();
    let key = format!("{}_tries", slot.env_prefix());
    let tries: u8 = env.get(&key).unwrap().parse().unwrap();
    env.set(&key, &(tries - 1).to_string());
    d.write_grubenv(&env).unwrap();
}
