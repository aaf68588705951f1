//! locksmithctl and the reboot semaphore against a real etcd v2 API: Debian's etcd
//! (`/usr/bin/etcd`, package etcd-server) by default, or any etcd-compatible binary named by
//! `LOCKSMITH_TEST_ETCD` (e.g. ferro-store, which takes the same flags).

mod common;
use common::Proc;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use update::locksmith::{Lock, Semaphore};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Etcd {
    _proc: Proc,
    _dir: tempfile::TempDir,
    url: String,
}

fn etcd() -> Etcd {
    let bin = std::env::var("LOCKSMITH_TEST_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into());
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} is missing: install Debian's etcd-server or set LOCKSMITH_TEST_ETCD"
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let child = Command::new(&bin)
        .args(["--name", "node1", "--enable-v2", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .arg("--initial-cluster")
        .arg(format!("node1={peer}"))
        .args(["--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let proc = Proc { child };
    let t = Instant::now();
    while reqwest::blocking::get(format!("{url}/v2/keys/"))
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{bin} did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Etcd {
        _proc: proc,
        _dir: dir,
        url,
    }
}

fn ctl(e: &Etcd, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmithctl"))
        .args(["--endpoint", &e.url])
        .args(args)
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

#[test]
fn locksmithctl_status_lock_unlock_set_max() {
    let e = etcd();
    assert_eq!(
        ctl(&e, &["status"]),
        (true, "Available: 1\nMax: 1\n".into())
    );
    assert!(ctl(&e, &["lock", "m1"]).0);
    let (ok, out) = ctl(&e, &["lock", "m2"]);
    assert!(!ok && out.contains("semaphore is at 0"), "{out}");
    let (ok, out) = ctl(&e, &["lock", "m1"]);
    assert!(!ok && out.contains("already held"), "{out}");
    assert_eq!(
        ctl(&e, &["status"]),
        (true, "Available: 0\nMax: 1\n\nMACHINE ID\nm1\n".into())
    );
    assert_eq!(
        ctl(&e, &["set-max", "2"]),
        (true, "Old: 1\nNew: 2\n".into())
    );
    assert!(ctl(&e, &["lock", "m2"]).0);
    assert!(ctl(&e, &["unlock", "m1"]).0);
    let (ok, out) = ctl(&e, &["unlock", "m1"]);
    assert!(!ok && out.contains("not held"), "{out}");
    // The value is locksmith's JSON, at locksmith's key.
    let raw: serde_json::Value = reqwest::blocking::get(format!(
        "{}/v2/keys/coreos.com/updateengine/rebootlock/semaphore",
        e.url
    ))
    .unwrap()
    .json_value();
    let s: Semaphore = serde_json::from_str(raw["node"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        s,
        Semaphore {
            semaphore: 1,
            max: 2,
            holders: vec!["m2".into()]
        }
    );
    // A group has a semaphore of its own.
    let (ok, out) = ctl(&e, &["--group", "web", "status"]);
    assert!(ok && out.starts_with("Available: 1\nMax: 1"), "{out}");
}

trait JsonValue {
    fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::blocking::Response {
    fn json_value(self) -> serde_json::Value {
        serde_json::from_str(&self.text().unwrap()).unwrap()
    }
}

/// Four machines wanting to reboot with max 1: never two at once, and all get their turn.
#[test]
fn with_max_1_machines_never_reboot_together() {
    let e = etcd();
    let rebooting = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (url, rebooting, most) = (e.url.clone(), rebooting.clone(), most.clone());
            std::thread::spawn(move || {
                let lock = Lock::new(&url, None);
                let id = format!("machine-{i}");
                for _ in 0..3 {
                    let t = Instant::now();
                    while lock.lock(&id).is_err() {
                        assert!(t.elapsed() < Duration::from_secs(60), "{id} starved");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let now = rebooting.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    rebooting.fetch_sub(1, Ordering::SeqCst);
                    lock.unlock(&id).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 1);
    assert_eq!(Lock::new(&e.url, None).get().unwrap(), Semaphore::default());
}
