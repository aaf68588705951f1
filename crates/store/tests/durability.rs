//! Restart and crash behaviour of ferro-store itself: acknowledged writes survive kill -9.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut s = Server::ours();
    let url = s.url.clone();
    // Eight concurrent writers: batches share an fsync, each answer comes after its own.
    let acked: Vec<(String, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let url = url.clone();
                sc.spawn(move || {
                    let c = client();
                    let mut ok = Vec::new();
                    for i in 0..40 {
                        let (k, v) = (format!("/w{t}/k{i}"), format!("v{t}-{i}"));
                        let r = c
                            .put(format!("{url}/v2/keys{k}"))
                            .form(&[("value", v.as_str())])
                            .send()
                            .unwrap();
                        assert!(r.status().is_success());
                        ok.push((k, v));
                    }
                    ok
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let c = client();
    let before: serde_json::Value = c
        .get(format!("{url}/v2/keys/w3/k39"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    s.crash_and_restart();
    for (k, v) in &acked {
        let r: serde_json::Value = c
            .get(format!("{url}/v2/keys{k}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r["node"]["value"], v.as_str(), "{k} lost after kill -9");
    }
    let after: serde_json::Value = c
        .get(format!("{url}/v2/keys/w3/k39"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(before, after, "indices must be the same after recovery");
    // The event history is rebuilt too: a watch from index 1 is answered from it.
    let r = c
        .get(format!("{url}/v2/keys/w0/k0?wait=true&waitIndex=1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["node"]["value"], "v0-0");
}

#[test]
fn snapshots_compact_the_log_and_restart_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let start = || {
        let child = Command::new(env!("CARGO_BIN_EXE_ferro-store"))
            .args([
                "--enable-v2",
                "--snapshot-count",
                "10",
                "--listen-client-urls",
                &url,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let child = KillOnDrop(child);
        for _ in 0..200 {
            if client().get(format!("{url}/version")).send().is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        child
    };
    let child = start();
    let c = client();
    let etcdctl3 = |args: &[&str]| {
        let out = Command::new(common::require_tool("etcdctl", "etcd-client"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &url])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for i in 0..35 {
        c.put(format!("{url}/v2/keys/s{i}"))
            .form(&[("value", "x")])
            .send()
            .unwrap();
    }
    // v3 keys go into the same log and the same snapshots.
    for i in 0..12 {
        etcdctl3(&["put", &format!("v3/{i}"), &format!("value {i}")]);
    }
    drop(child);
    let child = start();
    let keys = etcdctl3(&["get", "v3/", "--prefix", "--keys-only"]);
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 12, "{keys}");
    assert_eq!(
        etcdctl3(&["get", "v3/11", "--print-value-only"]),
        "value 11\n"
    );
    let r: serde_json::Value = c
        .get(format!("{url}/v2/keys/"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["node"]["nodes"].as_array().unwrap().len(), 35);
    let r = c
        .put(format!("{url}/v2/keys/s0"))
        .form(&[("value", "y")])
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-etcd-index"], "36");
    let put = etcdctl3(&["put", "v3/after", "x", "-w", "json"]);
    assert!(put.contains("\"revision\":14"), "{put}");
    drop(child);
}

/// Kills the server even when an assertion fails, so no orphan keeps the test's pipes open.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unknown_flags_fail_and_env_configures() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferro-store"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-flag"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    // A free peer port: the default (localhost:2380) may be taken on a shared machine.
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferro-store"))
        .env("ETCD_NAME", "from-env")
        .env("ETCD_LISTEN_PEER_URLS", &peer)
        .env("ETCD_INITIAL_ADVERTISE_PEER_URLS", &peer)
        .env("ETCD_ENABLE_V2", "true")
        .env("ETCD_DATA_DIR", dir.path())
        .env("ETCD_LISTEN_CLIENT_URLS", &url)
        .env("ETCD_ADVERTISE_CLIENT_URLS", &url)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut members = None;
    for _ in 0..200 {
        if let Ok(r) = client().get(format!("{url}/v2/members")).send() {
            members = Some(r.json::<serde_json::Value>().unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let m = members.expect("the server never answered");
    assert_eq!(m["members"][0]["name"], "from-env");
    assert_eq!(m["members"][0]["clientURLs"][0], url.as_str());
    assert!(dir.path().join("member/raft.redb").exists());
}
