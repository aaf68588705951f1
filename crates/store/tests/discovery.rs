//! `--discovery` (etcd 3.4's v2 discovery protocol) on loopback: our members through our store
//! and through real etcd as the registry, real etcd members through our store as the registry,
//! and the failures (full cluster, missing or bad size key, unreachable service, duplicate
//! name, duplicate ID, conflicting flags) with etcd's words.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, require_tool, Server};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ours,
    Etcd,
}

/// One member started with `--discovery` (or `ETCD_DISCOVERY`) and no `--initial-cluster`.
struct Member {
    name: String,
    url: String,
    peer: String,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Member {
    fn new(kind: Kind, name: &str, durl: &str) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let bin = match kind {
            Kind::Ours => PathBuf::from(env!("CARGO_BIN_EXE_ferro-store")),
            Kind::Etcd => require_tool("etcd", "etcd-server"),
        };
        let args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--discovery={durl}"),
        ];
        Member {
            name: name.to_string(),
            url,
            peer,
            bin,
            args,
            env: Vec::new(),
            child: None,
            log: dir.path().join("log"),
            _dir: dir,
        }
    }

    /// The discovery URL in `ETCD_DISCOVERY` instead of the flag.
    fn via_env(mut self) -> Member {
        let i = self
            .args
            .iter()
            .position(|a| a.starts_with("--discovery="))
            .unwrap();
        let durl = self.args.remove(i)["--discovery=".len()..].to_string();
        self.env.push(("ETCD_DISCOVERY".into(), durl));
        self
    }

    fn arg(mut self, a: &str) -> Member {
        self.args.push(a.to_string());
        self
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("ETCD_INITIAL_CLUSTER")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the member to exit on its own: its status and log.
    fn wait_exit(&mut self, secs: u64) -> (ExitStatus, String) {
        let child = self.child.as_mut().expect("started");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs after {secs} s: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the member reports itself healthy (it has a leader).
    fn wait_healthy(&mut self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let healthy = client()
                .get(format!("{}/health", self.url))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.text().ok())
                .is_some_and(|t| t.contains("true"));
            if healthy {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {status}: {}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} not healthy after {secs} s: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap()
}

fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    let out = Command::new(require_tool("etcdctl", "etcd-client"))
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(["--endpoints", endpoints, "--command-timeout", "10s"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh registry directory on `registry` with `_config/size`; its URL.
fn token(registry: &Server, name: &str, size: &str) -> String {
    let durl = format!("{}/v2/keys/_etcd/registry/{name}", registry.url);
    let r = client()
        .put(format!("{durl}/_config/size"))
        .form(&[("value", size)])
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    durl
}

/// The registrations in the directory: (member ID in hex, value).
fn registry(durl: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = client().get(durl).send().unwrap().json().unwrap();
    // `_config` is hidden (a `_` key) and "nodes" absent when empty, as in etcd.
    let none = Vec::new();
    let mut out: Vec<(String, String)> = v["node"]["nodes"]
        .as_array()
        .unwrap_or(&none)
        .iter()
        .filter(|n| !n["key"].as_str().unwrap().ends_with("/_config"))
        .map(|n| {
            let key = n["key"].as_str().unwrap();
            let id = key.rsplit('/').next().unwrap().to_string();
            (id, n["value"].as_str().unwrap().to_string())
        })
        .collect();
    out.sort();
    out
}

/// Three `kind` members discover each other through `registry` and form one cluster: one
/// leader, a write through one read on the others, `member list` = the registry.
fn forms_a_cluster(registry_server: &Server, kind: Kind) -> (String, Vec<Member>) {
    let durl = token(registry_server, "three", "3");
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member::new(kind, &format!("m{i}"), &durl))
        .collect();
    // One of them configured through the environment, as cloud-config's drop-in does.
    members[2] = Member::new(kind, "m2", &durl).via_env();
    for m in &mut members {
        m.spawn();
    }
    for m in &mut members {
        m.wait_healthy(40);
    }
    let all = members
        .iter()
        .map(|m| m.url.as_str())
        .collect::<Vec<_>>()
        .join(",");

    // One leader, the same for all. Each member was healthy (it had a leader), but an election
    // right after could still be settling: poll briefly rather than read a single status.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&etcdctl(&all, &["endpoint", "status", "-w", "json"])).unwrap();
        let statuses = status.as_array().unwrap();
        assert_eq!(statuses.len(), 3, "{status}");
        // A leader of 0 (none known) is left out of the JSON, as protobuf's default.
        let leaders: Vec<u64> = statuses
            .iter()
            .map(|s| s["Status"]["leader"].as_u64().unwrap_or(0))
            .collect();
        let ids: Vec<u64> = statuses
            .iter()
            .map(|s| s["Status"]["header"]["member_id"].as_u64().unwrap())
            .collect();
        if leaders.iter().all(|l| *l == leaders[0]) && ids.contains(&leaders[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader: leaders {leaders:?}, members {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A write through one is read on the others (serializable: from their own state).
    etcdctl(&members[0].url, &["put", "/discovered", "yes"]);
    for m in &members[1..] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = etcdctl(
                &m.url,
                &[
                    "get",
                    "/discovered",
                    "--print-value-only",
                    "--consistency=s",
                ],
            );
            if v.trim() == "yes" {
                break;
            }
            assert!(Instant::now() < deadline, "{} never read the write", m.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // member list: the three names and peer URLs, under the IDs they registered with.
    let list = etcdctl(&members[0].url, &["member", "list"]);
    let mut listed: Vec<(String, String)> = list
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            (f[0].to_string(), format!("{}={}", f[2], f[3]))
        })
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String)> = registry(&durl);
    expected.sort();
    assert_eq!(listed, expected, "member list:\n{list}");
    assert_eq!(expected.len(), 3);
    for m in &members {
        assert!(
            expected
                .iter()
                .any(|(_, v)| *v == format!("{}={}", m.name, m.peer)),
            "{} is not registered: {expected:?}",
            m.name
        );
    }
    (durl, members)
}

#[test]
fn our_members_discover_each_other_through_our_store() {
    let reg = Server::ours();
    let (durl, mut members) = forms_a_cluster(&reg, Kind::Ours);
    // A restart (kill -9) does not discover again: it keeps its place and its data.
    let m = &mut members[0];
    m.kill();
    m.spawn();
    m.wait_healthy(30);
    let v = etcdctl(
        &m.url,
        &[
            "get",
            "/discovered",
            "--print-value-only",
            "--consistency=s",
        ],
    );
    assert_eq!(v.trim(), "yes");
    assert!(
        m.log().contains("using the cluster discovered before"),
        "{}",
        m.log()
    );
    assert_eq!(registry(&durl).len(), 3);
}

#[test]
fn our_members_discover_each_other_through_real_etcd() {
    let reg = Server::etcd();
    forms_a_cluster(&reg, Kind::Ours);
}

#[test]
fn real_etcd_members_discover_each_other_through_our_store() {
    let reg = Server::ours();
    forms_a_cluster(&reg, Kind::Etcd);
}

#[test]
fn a_member_beyond_the_size_finds_the_cluster_full_as_etcd_does() {
    let reg = Server::ours();
    let durl = token(&reg, "one", "1");
    let mut first = Member::new(Kind::Ours, "first", &durl);
    first.spawn();
    first.wait_healthy(30);
    let mut ours = Member::new(Kind::Ours, "late", &durl);
    ours.spawn();
    let (status, log) = ours.wait_exit(20);
    assert!(!status.success());
    assert!(
        log.contains(&format!(
            "failed to join discovery cluster {durl}: discovery: cluster is full"
        )),
        "{log}"
    );
    assert!(log.contains("does not run as a proxy"), "{log}");
    // Real etcd says the same in the same situation.
    let mut etcd = Member::new(Kind::Etcd, "late-etcd", &durl).arg("--discovery-fallback=exit");
    etcd.spawn();
    let (status, log) = etcd.wait_exit(20);
    assert!(!status.success());
    assert!(
        log.contains("failed to join discovery cluster (discovery: cluster is full)"),
        "{log}"
    );
    // Neither registered.
    assert_eq!(registry(&durl).len(), 1);
}

#[test]
fn a_missing_or_bad_size_key_is_an_error() {
    let reg = Server::ours();
    let nosize = format!("{}/v2/keys/_etcd/registry/nosize", reg.url);
    let mut m = Member::new(Kind::Ours, "m", &nosize);
    m.spawn();
    let (status, log) = m.wait_exit(20);
    assert!(!status.success());
    assert!(
        log.contains(&format!(
            "discovery: size key not found ({nosize}/_config/size)"
        )),
        "{log}"
    );
    let bad = token(&reg, "bad", "three");
    for kind in [Kind::Ours, Kind::Etcd] {
        let mut m = Member::new(kind, "m", &bad);
        m.spawn();
        let (status, log) = m.wait_exit(20);
        assert!(!status.success());
        assert!(log.contains("discovery: size key is bad"), "{log}");
    }
}

#[test]
fn an_unreachable_discovery_service_is_an_error_after_retries_naming_it() {
    let durl = format!(
        "http://127.0.0.1:{}/v2/keys/_etcd/registry/nobody",
        free_port()
    );
    let mut m = Member::new(Kind::Ours, "m", &durl);
    let start = Instant::now();
    m.spawn();
    let (status, log) = m.wait_exit(30);
    let took = start.elapsed();
    assert!(!status.success());
    assert!(
        log.contains(&format!(
            "failed to join discovery cluster {durl}: discovery: too many retries: the discovery service at {durl} did not answer"
        )),
        "{log}"
    );
    assert_eq!(log.matches("retrying").count(), 3, "{log}");
    // 1 + 2 + 4 s of backoff.
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

#[test]
fn a_name_registered_twice_is_refused_by_both_members() {
    let reg = Server::ours();
    let durl = token(&reg, "dupname", "2");
    let mut a = Member::new(Kind::Ours, "same", &durl);
    a.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while registry(&durl).is_empty() {
        assert!(Instant::now() < deadline, "never registered: {}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = Member::new(Kind::Ours, "same", &durl);
    b.spawn();
    for m in [&mut a, &mut b] {
        let (status, log) = m.wait_exit(20);
        assert!(!status.success());
        assert!(log.contains("discovery: found duplicate name"), "{log}");
        assert!(
            log.contains("member with duplicated name has registered"),
            "{log}"
        );
    }
}

#[test]
fn a_member_registered_before_without_data_is_a_duplicate_id() {
    let reg = Server::ours();
    let durl = token(&reg, "dupid", "2");
    let mut a = Member::new(Kind::Ours, "a", &durl);
    a.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while registry(&durl).is_empty() {
        assert!(Instant::now() < deadline, "never registered: {}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Killed while waiting for the second member; started again as etcd would be, it finds
    // its own registration and no cluster in its data dir.
    a.kill();
    a.spawn();
    let (status, log) = a.wait_exit(20);
    assert!(!status.success());
    assert!(log.contains("discovery: found duplicate id"), "{log}");
    assert!(
        log.contains("member \"a\" has previously registered"),
        "{log}"
    );
    assert_eq!(registry(&durl).len(), 1);
}

#[test]
fn discovery_with_initial_cluster_is_refused_and_existing_data_skips_it() {
    let durl = format!(
        "http://127.0.0.1:{}/v2/keys/_etcd/registry/unused",
        free_port()
    );
    let mut m = Member::new(Kind::Ours, "m", &durl).via_env();
    let initial = format!("--initial-cluster=m={}", m.peer);
    m.args.push(initial.clone());
    m.spawn();
    let (status, log) = m.wait_exit(10);
    assert!(!status.success());
    assert!(
        log.contains("multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\""),
        "{log}"
    );
    // A member started once without discovery restarts with --discovery (unreachable) at once:
    // a data dir with a member is a restart, as for etcd.
    m.env.clear();
    m.spawn();
    m.wait_healthy(20);
    let members = |m: &Member| etcdctl(&m.url, &["member", "list"]);
    let before = members(&m);
    m.kill();
    m.args.retain(|a| *a != initial);
    m.args.push(format!("--discovery={durl}"));
    m.spawn();
    m.wait_healthy(5);
    assert!(m.log().contains("ignoring --discovery"), "{}", m.log());
    // Still the same member (its ID from the data dir, not from the discovery URL).
    assert_eq!(members(&m), before);
}

/// A forwarding HTTP proxy on loopback: relays every connection to `target` byte for byte and
/// records each request's first line (absolute-form when sent through a proxy).
fn proxy(target: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(client) = conn else { return };
            let Ok(mut upstream) = std::net::TcpStream::connect(&target) else {
                continue;
            };
            let log = std::sync::Arc::clone(&log);
            let mut back = upstream.try_clone().unwrap();
            let mut client_w = client.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut back, &mut client_w);
            });
            std::thread::spawn(move || {
                let mut r = BufReader::new(client);
                loop {
                    // One request: its line, its headers, its Content-Length of body.
                    let mut head = String::new();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).map_or(true, |n| n == 0) {
                            return;
                        }
                        if head.is_empty() {
                            log.lock().unwrap().push(line.trim().to_string());
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if std::io::Read::read_exact(&mut r, &mut body).is_err()
                        || upstream.write_all(head.as_bytes()).is_err()
                        || upstream.write_all(&body).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn discovery_proxy_carries_the_discovery_traffic() {
    let reg = Server::ours();
    let durl = token(&reg, "proxied", "1");
    let (addr, seen) = proxy(reg.url.trim_start_matches("http://").to_string());
    // "host:port" without a scheme, which etcd takes as http://.
    let mut m = Member::new(Kind::Ours, "p", &durl).arg(&format!("--discovery-proxy={addr}"));
    m.spawn();
    m.wait_healthy(30);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&format!("GET {durl}/_config/size HTTP/1.1")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with(&format!("PUT {durl}/"))),
        "{seen:?}"
    );
    assert_eq!(registry(&durl).len(), 1);
}
