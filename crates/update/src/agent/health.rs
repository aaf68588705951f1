//! Health checks after a boot: executables the image or the admin drops into
//! `/usr/lib/ferrocore/health.d/` and `/etc/ferrocore/health.d/`, run in the order of their names,
//! each with a timeout (`HEALTH_CHECK_TIMEOUT` in update.conf, default 2m). A file in `/etc`
//! replaces the one of the same name in `/usr`; an `/etc` entry that is a symlink to `/dev/null`
//! (or not executable) disables it. A check passes when it exits 0 in time; its output (stdout and
//! stderr, the last [`OUTPUT_LIMIT`] bytes) is kept for the report.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Image-provided checks (on the read-only `/usr`, so they change with the slot).
pub const USR_DIR: &str = "usr/lib/ferrocore/health.d";
/// The admin's checks; same names override the image's.
pub const ETC_DIR: &str = "etc/ferrocore/health.d";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The tail of a check's output that is kept and reported.
pub const OUTPUT_LIMIT: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// How it ended: "exit status: 0", "timed out after 2s", "could not start: …".
    pub ended: String,
    pub output: String,
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The checks under `root` (`/` on a machine), by name; disabled ones left out.
pub fn discover(root: &Path) -> Vec<Check> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in [USR_DIR, ETC_DIR] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            by_name.insert(name, e.path());
        }
    }
    by_name
        .into_iter()
        .filter(|(name, path)| {
            let masked = std::fs::read_link(path).is_ok_and(|t| t == Path::new("/dev/null"));
            let usable = !masked && is_executable(path);
            if !usable && !masked {
                tracing::warn!(
                    "health check {name} ({}) is not an executable file: skipped",
                    path.display()
                );
            }
            usable
        })
        .map(|(name, path)| Check { name, path })
        .collect()
}

/// The last `OUTPUT_LIMIT` bytes of `text`, on a character boundary.
fn tail(text: &str) -> String {
    if text.len() <= OUTPUT_LIMIT {
        return text.to_string();
    }
    let mut start = text.len() - OUTPUT_LIMIT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Runs one command (its own process group, killed whole on timeout), output captured.
pub fn run_command(name: &str, cmd: &mut Command, timeout: Duration) -> CheckResult {
    let result = |passed, ended: String, output: String| CheckResult {
        name: name.into(),
        passed,
        ended,
        output: tail(&output),
    };
    // A file, not a pipe: a check that fills a pipe while we only poll its exit would hang.
    let mut out = match tempfile_in_tmp() {
        Ok(f) => f,
        Err(e) => {
            return result(
                false,
                format!("could not capture output: {e}"),
                String::new(),
            )
        }
    };
    let spawned = out.try_clone().and_then(|stdout| {
        let stderr = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
    });
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return result(false, format!("could not start: {e}"), String::new()),
    };
    let start = Instant::now();
    let ended = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                break Err(format!("timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(format!("waiting for it: {e}")),
        }
    };
    let mut text = Vec::new();
    let _ = out.rewind().and_then(|_| out.read_to_end(&mut text));
    let text = String::from_utf8_lossy(&text).into_owned();
    match ended {
        Ok(st) => result(st.success(), st.to_string(), text),
        Err(why) => result(false, why, text),
    }
}

fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    let path = std::env::temp_dir().join(format!("ferro-health-{}", hex::encode(b)));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Unlinked at once: only our handles keep it.
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

/// Runs every check in order (all of them, so the report names every failure).
pub fn run_all(checks: &[Check], timeout: Duration) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|c| {
            let r = run_command(&c.name, &mut Command::new(&c.path), timeout);
            if r.passed {
                tracing::info!(check = %c.name, "health check passed");
            } else {
                tracing::error!(check = %c.name, ended = %r.ended, output = %r.output.trim_end(), "health check failed");
            }
            r
        })
        .collect()
}

/// systemd's part of "healthy": no failed units (`systemctl list-units --failed`).
pub fn failed_units_check(timeout: Duration) -> CheckResult {
    let mut r = run_command(
        "systemd-failed-units",
        Command::new("systemctl").args(["list-units", "--failed", "--no-legend", "--plain"]),
        timeout,
    );
    if r.passed && !r.output.trim().is_empty() {
        r.passed = false;
        r.output = format!("failed units:\n{}", r.output);
    }
    r
}

/// One text naming each failed check with its output, for the report.
pub fn summary(results: &[CheckResult]) -> String {
    results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{} ({}): {}", r.name, r.ended, r.output.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn discovery_orders_overrides_and_masks() {
        let root = tempfile::tempdir().unwrap();
        let (usr, etc) = (root.path().join(USR_DIR), root.path().join(ETC_DIR));
        script(&usr, "20-docker", "exit 0");
        script(&usr, "10-net", "exit 0");
        script(&usr, "30-masked", "exit 1");
        script(&etc, "20-docker", "exit 3");
        script(&etc, "05-app", "exit 0");
        std::os::unix::fs::symlink("/dev/null", etc.join("30-masked")).unwrap();
        std::fs::write(usr.join("40-not-executable"), "exit 1").unwrap();
        let got = discover(root.path());
        let names: Vec<_> = got.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["05-app", "10-net", "20-docker"]);
        assert_eq!(got[2].path, etc.join("20-docker"), "/etc overrides /usr");
        assert!(discover(&root.path().join("nothing")).is_empty());
    }

    #[test]
    fn results_carry_status_and_output() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join(USR_DIR);
        script(&d, "a-pass", "echo fine");
        script(
            &d,
            "b-fail",
            "echo 'app endpoint: connection refused' >&2; exit 1",
        );
        let r = run_all(&discover(root.path()), Duration::from_secs(10));
        assert!(r[0].passed && r[0].output == "fine\n", "{r:?}");
        assert!(!r[1].passed);
        assert!(r[1].output.contains("connection refused"));
        let s = summary(&r);
        assert!(
            s.starts_with("b-fail (exit status: 1): app endpoint"),
            "{s}"
        );
        assert!(!s.contains("a-pass"));
    }

    #[test]
    fn a_hanging_check_is_killed_with_its_children() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join(USR_DIR);
        // The background sleep keeps the group alive: all of it must go.
        script(&d, "hang", "echo started; sleep 30 & sleep 30");
        let t = Instant::now();
        let r = run_all(&discover(root.path()), Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!r[0].passed);
        assert!(r[0].ended.starts_with("timed out"), "{:?}", r[0]);
        assert_eq!(r[0].output, "started\n");
    }

    #[test]
    fn output_is_cut_to_its_tail() {
        let long = "x".repeat(OUTPUT_LIMIT * 2) + "END";
        let t = tail(&long);
        assert!(t.ends_with("END") && t.len() <= OUTPUT_LIMIT + 3);
        let r = run_command(
            "missing",
            &mut Command::new("/nonexistent/check"),
            DEFAULT_TIMEOUT,
        );
        assert!(!r.passed && r.ended.starts_with("could not start"), "{r:?}");
    }
}
