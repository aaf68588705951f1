//! Reboot coordination end to end: two updated machines with REBOOT_STRATEGY=etcd-lock and max 1,
//! each with update_engine and locksmithd as real processes, against a real etcd v2 API (Debian's
//! etcd, or `LOCKSMITH_TEST_ETCD`): one reboots, the other waits until the first is back.

mod common;
use common::daemon::*;
use common::machine::{machine, Machine};
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcd(dir: &Path) -> (Proc, String) {
    let bin = std::env::var("LOCKSMITH_TEST_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into());
    assert!(
        Path::new(&bin).exists(),
        "{bin} is missing: install Debian's etcd-server or set LOCKSMITH_TEST_ETCD"
    );
    let url = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let child = Command::new(&bin)
        .args(["--name", "node1", "--enable-v2", "--data-dir"])
        .arg(dir.join("etcd"))
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
        .unwrap();
    let p = Proc { child };
    wait_for("etcd", || {
        reqwest::blocking::get(format!("{url}/v2/keys/")).is_ok_and(|r| r.status().is_success())
    });
    (p, url)
}

struct Node {
    m: Machine,
    dir: PathBuf,
    id: String,
    marker: PathBuf,
}

fn node(base: &Path, name: &str, k: &Keys, etcd: &str) -> Node {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let m = machine(&dir, "1.0.0", &k.trusted_dir);
    std::fs::create_dir_all(m.root.join("etc/coreos")).unwrap();
    std::fs::write(
        m.root.join("etc/coreos/update.conf"),
        format!("REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT={etcd}\n"),
    )
    .unwrap();
    let marker = dir.join("rebooted");
    let script = dir.join("reboot.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = machine_id(&m);
    Node { m, dir, id, marker }
}

fn locksmithd(n: &Node, socket: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_locksmithd"))
        .arg("--root")
        .arg(&n.m.root)
        .arg("--socket")
        .arg(socket)
        .args(["--interval-ms", "100", "--reboot-command"])
        .arg(n.dir.join("reboot.sh"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc { child }
}

#[test]
fn etcd_lock_max_1_reboots_one_machine_at_a_time() {
    let base = tempfile::tempdir().unwrap();
    let (_etcd, url) = etcd(base.path());
    let k = keys(base.path());
    let p = payload(base.path(), "2.0.0", &k.signing, 300_000);
    let nodes = [
        node(base.path(), "n1", &k, &url),
        node(base.path(), "n2", &k, &url),
    ];
    let mut engines = Vec::new();
    for n in &nodes {
        let d = daemon(&n.m, &n.dir, "ue");
        let (ok, out) = client(&d, &["-apply_payload", p.dir.to_str().unwrap()]);
        assert!(ok, "{out}");
        engines.push(d);
    }
    let mut smiths: Vec<Proc> = nodes
        .iter()
        .zip(&engines)
        .map(|(n, d)| locksmithd(n, &d.socket))
        .collect();

    wait_for("one machine to reboot", || {
        nodes.iter().any(|n| n.marker.exists())
    });
    let first = nodes.iter().position(|n| n.marker.exists()).unwrap();
    let other = 1 - first;
    // The other keeps waiting for the lock while the first is "rebooting".
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!nodes[other].marker.exists(), "both machines rebooted");
    let lock = update::locksmith::Lock::new(&url, None);
    assert_eq!(lock.get().unwrap().holders, [nodes[first].id.clone()]);

    // The first machine comes back on 2.0.0: its locksmithd gives the lock back at start.
    let n = &nodes[first];
    // (update_engine stops for the reboot and starts again on the new version.)
    drop(engines.remove(first));
    reboot_into(&n.m, "2.0.0", "B");
    let after = daemon(&n.m, &n.dir, "ue-after");
    smiths[first] = locksmithd(n, &after.socket);
    wait_for("the second machine to reboot", || {
        nodes[other].marker.exists()
    });
    assert_eq!(lock.get().unwrap().holders, [nodes[other].id.clone()]);
}
