//! 3-member clusters on loopback: writes through any member, reads on all, kill -9 of the
//! leader under load (no acknowledged write lost, writes continue), a restarted member catching
//! up (through a snapshot once the log it missed is purged), restore from an etcdctl snapshot,
//! members added and removed live with etcdctl, a linearizability check of a concurrent
//! history recorded across a leader kill and restart, and v3 auth enforced on every member
//! before and after a whole-cluster restart.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::free_port;

struct Member {
    name: String,
    url: String,
    peer: String,
    data_dir: std::path::PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: std::path::PathBuf,
}

/// Three members on free loopback ports; every process is killed on drop.
struct Cluster {
    members: Vec<Member>,
    /// `--initial-cluster` as given to every member.
    initial: String,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `f` until it returns Some, for at most `secs`.
fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    fn start(snapshot_count: u64) -> Cluster {
        let mut c = Cluster::configure(snapshot_count);
        c.launch();
        c
    }

    /// Three members' flags and directories, nothing started.
    fn configure(snapshot_count: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (c, p))| {
                let url = format!("http://127.0.0.1:{c}");
                let peer = format!("http://127.0.0.1:{p}");
                let data_dir = dir.path().join(format!("m{i}"));
                let args = vec![
                    format!("--name=m{i}"),
                    "--enable-v2".into(),
                    format!("--data-dir={}", data_dir.display()),
                    format!("--listen-client-urls={url}"),
                    format!("--advertise-client-urls={url}"),
                    format!("--listen-peer-urls={peer}"),
                    format!("--initial-advertise-peer-urls={peer}"),
                    format!("--initial-cluster={}", initial.join(",")),
                    "--initial-cluster-state=new".into(),
                    "--heartbeat-interval=50".into(),
                    "--election-timeout=400".into(),
                    format!("--snapshot-count={snapshot_count}"),
                    "--log-level=info".into(),
                ];
                Member {
                    name: format!("m{i}"),
                    url,
                    peer,
                    data_dir,
                    args,
                    child: None,
                    log: dir.path().join(format!("m{i}.log")),
                }
            })
            .collect();
        Cluster {
            members,
            initial: initial.join(","),
            _dir: dir,
        }
    }

    /// Starts every member and waits until a quorum read answers on each.
    fn launch(&mut self) {
        for i in 0..self.members.len() {
            self.spawn(i);
        }
        for m in &self.members {
            eventually(30, "the cluster to answer", || {
                client()
                    .get(format!("{}/v2/keys/?quorum=true", m.url))
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
            });
        }
    }

    fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        m.child = Some(
            Command::new(env!("CARGO_BIN_EXE_ferro-store"))
                .args(&m.args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Which member leads, as the members themselves report it.
    fn leader(&self, among: &[usize]) -> usize {
        eventually(30, "a leader", || {
            among.iter().copied().find(|&i| {
                client()
                    .get(format!("{}/v2/stats/self", self.members[i].url))
                    .send()
                    .ok()
                    .and_then(|r| r.json::<serde_json::Value>().ok())
                    .is_some_and(|v| v["state"] == "StateLeader")
            })
        })
    }
}

fn put(url: &str, key: &str, value: &str) -> Result<reqwest::blocking::Response, String> {
    client()
        .put(format!("{url}/v2/keys/{key}"))
        .form(&[("value", value)])
        .send()
        .map_err(|e| e.to_string())
        .and_then(|r| {
            if r.status().is_success() {
                Ok(r)
            } else {
                Err(format!("{}", r.status()))
            }
        })
}

/// The value of `key` on one member; `quorum` asks for a linearizable read.
fn get(url: &str, key: &str, quorum: bool) -> Option<String> {
    let r = client()
        .get(format!("{url}/v2/keys/{key}?quorum={quorum}"))
        .send()
        .ok()?;
    let v: serde_json::Value = r.json().ok()?;
    v["node"]["value"].as_str().map(String::from)
}

#[test]
fn writes_through_any_member_are_read_on_all() {
    let c = Cluster::start(10_000);
    for (i, m) in c.members.iter().enumerate() {
        let r = put(&m.url, &format!("k{i}"), &format!("from-{}", m.name)).unwrap();
        let term: u64 = r.headers()["x-raft-term"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(term >= 1, "a cluster has had an election: term {term}");
    }
    for m in &c.members {
        for (i, w) in c.members.iter().enumerate() {
            let v = get(&m.url, &format!("k{i}"), true);
            assert_eq!(v.as_deref(), Some(format!("from-{}", w.name).as_str()));
        }
    }
    // Every member lists all three, each with the client URL it published.
    for m in &c.members {
        let list = eventually(10, "three published members", || {
            let v: serde_json::Value = client()
                .get(format!("{}/v2/members", m.url))
                .send()
                .ok()?
                .json()
                .ok()?;
            let ms = v["members"].as_array()?.clone();
            (ms.len() == 3 && ms.iter().all(|x| x["clientURLs"][0].is_string())).then_some(ms)
        });
        let mut urls: Vec<&str> = list
            .iter()
            .map(|x| x["clientURLs"][0].as_str().unwrap())
            .collect();
        urls.sort();
        let mut want: Vec<&str> = c.members.iter().map(|m| m.url.as_str()).collect();
        want.sort();
        assert_eq!(urls, want);
    }
    // v3 through a follower: linearizable range after a put on another member.
    let leader = c.leader(&[0, 1, 2]);
    let follower = (leader + 1) % 3;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use store::v3::pb::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
        let mut a = KvClient::new(grpc_channel(c.members[leader].url.clone()).await);
        let mut b = KvClient::new(grpc_channel(c.members[follower].url.clone()).await);
        for n in 0..20 {
            let v = format!("v{n}").into_bytes();
            a.put(PutRequest {
                key: b"v3key".to_vec(),
                value: v.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
            let r = b
                .range(RangeRequest {
                    key: b"v3key".to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                r.kvs[0].value, v,
                "a linearizable read on a follower is stale"
            );
        }
    });
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut c = Cluster::start(10_000);
    let leader = c.leader(&[0, 1, 2]);
    let urls: Vec<String> = c.members.iter().map(|m| m.url.clone()).collect();
    let stop = AtomicBool::new(false);
    let killed = AtomicBool::new(false);
    let (acked, acked_after_kill) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..6)
            .map(|t| {
                let (urls, stop, killed) = (&urls, &stop, &killed);
                s.spawn(move || {
                    let (mut ok, mut after) = (Vec::new(), 0);
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // Each writer talks to one member; those on the killed one fail over.
                        let mut target = t % 3;
                        if killed.load(Ordering::Relaxed) && target == leader {
                            target = (leader + 1 + t % 2) % 3;
                        }
                        let (k, v) = (format!("w{t}/{n}"), format!("{t}-{n}"));
                        let was_killed = killed.load(Ordering::Relaxed);
                        if put(&urls[target], &k, &v).is_ok() {
                            ok.push((k, v));
                            after += usize::from(was_killed);
                        }
                        n += 1;
                    }
                    (ok, after)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        c.kill(leader);
        killed.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(4000));
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut after = 0;
        for w in writers {
            let (ok, a) = w.join().unwrap();
            all.extend(ok);
            after += a;
        }
        (all, after)
    });
    assert!(!acked.is_empty());
    assert!(
        acked_after_kill > 0,
        "no write succeeded after the leader was killed"
    );
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = c.leader(&survivors);
    assert_ne!(new_leader, leader);
    for &i in &survivors {
        for (k, v) in &acked {
            assert_eq!(
                get(&urls[i], k, true).as_deref(),
                Some(v.as_str()),
                "acknowledged write {k} lost on m{i}"
            );
        }
    }
    // The killed member comes back and catches up (a local, non-quorum read).
    c.spawn(leader);
    let (k, v) = acked.last().unwrap();
    eventually(30, "the restarted member to catch up", || {
        (get(&urls[leader], k, false).as_deref() == Some(v.as_str())).then_some(())
    });
    for (k, v) in &acked {
        assert_eq!(get(&urls[leader], k, false).as_deref(), Some(v.as_str()));
    }
}

#[test]
fn a_member_that_missed_purged_log_catches_up_from_a_snapshot() {
    // A snapshot every 20 entries, and the log before it purged: the stopped member can only
    // catch up by installing the leader's snapshot.
    let mut c = Cluster::start(20);
    let leader = c.leader(&[0, 1, 2]);
    let down = (leader + 1) % 3;
    c.kill(down);
    let url = c.members[leader].url.clone();
    for n in 0..120 {
        put(&url, &format!("s/{n}"), &format!("v{n}")).unwrap();
    }
    c.spawn(down);
    let down_url = c.members[down].url.clone();
    eventually(30, "the restarted member to catch up", || {
        (get(&down_url, "s/119", false).as_deref() == Some("v119")).then_some(())
    });
    for n in 0..120 {
        assert_eq!(
            get(&down_url, &format!("s/{n}"), false).as_deref(),
            Some(format!("v{n}").as_str())
        );
    }
    let log = std::fs::read_to_string(&c.members[down].log).unwrap();
    assert!(
        log.contains("installed a snapshot"),
        "the member caught up without a snapshot: the test did not test that"
    );
}

/// Debian's `etcdctl` (v3 API) against one endpoint: success and stdout + stderr.
fn etcdctl3(url: &str, args: &[&str]) -> (bool, String) {
    let bin = common::require_tool("etcdctl", "etcd-client");
    let out = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .arg("--endpoints")
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ferro_store(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferro-store"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn an_etcdctl_snapshot_restores_into_a_new_cluster() {
    // The source: one member with v3 keys (one attached to a lease), a v2 key, a compaction.
    let src = common::Server::ours();
    for n in 0..50 {
        let (ok, out) = etcdctl3(
            &src.url,
            &["put", &format!("snap/{n:02}"), &format!("v{n}")],
        );
        assert!(ok, "{out}");
    }
    let (ok, out) = etcdctl3(&src.url, &["compact", "10"]);
    assert!(ok, "{out}");
    put(&src.url, "fleet/unit", "kept").unwrap();
    let (_, rev_json) = etcdctl3(&src.url, &["get", "snap/00", "-w", "json"]);
    let rev: serde_json::Value = serde_json::from_str(rev_json.trim()).unwrap();
    let src_rev = rev["header"]["revision"].as_i64().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    let file_s = file.to_str().unwrap();
    let (ok, out) = etcdctl3(&src.url, &["snapshot", "save", file_s]);
    assert!(
        ok && out.contains("Snapshot saved at"),
        "etcdctl snapshot save: {out}"
    );
    drop(src);

    // `snapshot status` reads it: revision and key count.
    let (ok, out) = ferro_store(&["snapshot", "status", file_s]);
    assert!(ok, "{out}");
    let fields: Vec<&str> = out.trim().split(", ").collect();
    assert_eq!(fields[1], src_rev.to_string(), "revision in {out}");
    assert_eq!(fields[2], "50", "key count in {out}");

    // A corrupted copy is refused, naming the file and the hash, and leaves no data dir.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0x55;
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, &bytes).unwrap();
    let target = dir.path().join("never");
    let (ok, out) = ferro_store(&[
        "snapshot",
        "restore",
        bad.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(!ok, "a corrupted snapshot was restored: {out}");
    assert!(out.contains("bad.db") && out.contains("sha256"), "{out}");
    assert!(!target.exists());

    // Restore into three new members (as `etcdctl snapshot restore` per member), start them.
    let mut c = Cluster::configure(10_000);
    for m in &c.members {
        let (ok, out) = ferro_store(&[
            "snapshot",
            "restore",
            file_s,
            "--name",
            &m.name,
            "--data-dir",
            m.data_dir.to_str().unwrap(),
            "--initial-cluster",
            &c.initial,
            "--initial-advertise-peer-urls",
            &m.peer,
        ]);
        assert!(ok, "restore for {}: {out}", m.name);
    }
    // Restoring over an existing data dir is refused.
    let (ok, out) = ferro_store(&[
        "snapshot",
        "restore",
        file_s,
        "--data-dir",
        c.members[0].data_dir.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("exists"), "{out}");
    c.launch();
    for m in &c.members {
        let (ok, out) = etcdctl3(&m.url, &["get", "snap/", "--prefix", "--keys-only"]);
        assert!(ok, "{out}");
        assert_eq!(
            out.split_whitespace().count(),
            50,
            "keys on {}: {out}",
            m.name
        );
        let (_, json) = etcdctl3(&m.url, &["get", "snap/49", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(
            v["header"]["revision"].as_i64(),
            Some(src_rev),
            "revision kept"
        );
        assert_eq!(get(&m.url, "fleet/unit", true).as_deref(), Some("kept"));
        // The compaction travelled too.
        let (ok, out) = etcdctl3(&m.url, &["get", "snap/00", "--rev", "5"]);
        assert!(!ok && out.contains("compacted"), "{out}");
    }
    // The restored cluster takes writes and lists its new members.
    let (ok, out) = etcdctl3(&c.members[1].url, &["put", "after", "restore"]);
    assert!(ok, "{out}");
    let (ok, out) = etcdctl3(&c.members[2].url, &["member", "list"]);
    assert!(ok, "{out}");
    for m in &c.members {
        assert!(out.contains(&m.peer), "{} missing from {out}", m.name);
    }
}

impl Cluster {
    /// Configures (does not start) one more member joining with `--initial-cluster-state
    /// existing` and the `--initial-cluster` that `etcdctl member add` printed.
    fn join(&mut self, name: &str, peer: &str, initial: &str) -> usize {
        let url = format!("http://127.0.0.1:{}", free_port());
        let data_dir = self._dir.path().join(name);
        let args = vec![
            format!("--name={name}"),
            "--enable-v2".into(),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial}"),
            "--initial-cluster-state=existing".into(),
            "--heartbeat-interval=50".into(),
            "--election-timeout=400".into(),
            "--log-level=info".into(),
        ];
        self.members.push(Member {
            name: name.into(),
            url,
            peer: peer.into(),
            data_dir,
            args,
            child: None,
            log: self._dir.path().join(format!("{name}.log")),
        });
        self.members.len() - 1
    }
}

/// `etcdctl member list -w json` on one member: (id, name, peer URLs, is learner) each.
fn member_list(url: &str) -> Vec<(u64, String, Vec<String>, bool)> {
    let (ok, out) = etcdctl3(url, &["member", "list", "-w", "json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["ID"].as_u64().unwrap(),
                m["name"].as_str().unwrap_or("").to_string(),
                m["peerURLs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_string())
                    .collect(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn members_added_and_removed_live_with_etcdctl() {
    let mut c = Cluster::start(10_000);
    put(&c.members[0].url, "before", "join").unwrap();
    let leader = c.leader(&[0, 1, 2]);
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    // etcdctl member add through a follower (forwarded to the leader), as a user would.
    let peer = format!("http://127.0.0.1:{}", free_port());
    let (ok, out) = etcdctl3(
        &c.members[followers[0]].url,
        &["member", "add", "m3", &format!("--peer-urls={peer}")],
    );
    assert!(ok, "member add: {out}");
    assert!(
        out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{out}"
    );
    let initial = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in {out}"))
        .to_string();
    assert!(initial.contains(&format!("m3={peer}")), "{initial}");
    // Listed at once, unstarted (no name yet) and as a voter, as etcd lists it.
    let list = member_list(&c.members[leader].url);
    let added = list.iter().find(|m| m.2 == vec![peer.clone()]).unwrap();
    assert_eq!((added.1.as_str(), added.3), ("", false), "{list:?}");
    let (ok, out) = etcdctl3(&c.members[leader].url, &["member", "list"]);
    assert!(ok && out.contains("unstarted"), "{out}");

    // The new member starts with the printed flags, catches up, and publishes its name.
    let m3 = c.join("m3", &peer, &initial);
    c.spawn(m3);
    let m3_url = c.members[m3].url.clone();
    eventually(30, "m3 to catch up", || {
        (get(&m3_url, "before", false).as_deref() == Some("join")).then_some(())
    });
    eventually(30, "m3 listed by name on every member", || {
        c.members
            .iter()
            .all(|m| {
                member_list(&m.url)
                    .iter()
                    .any(|x| x.1 == "m3" && x.2 == vec![peer.clone()])
            })
            .then_some(())
    });
    // Added as a learner, it becomes a voter once caught up (the leader logs it).
    eventually(30, "m3 promoted to a voter", || {
        let log = std::fs::read_to_string(&c.members[leader].log).unwrap_or_default();
        log.contains("promoted a caught-up learner").then_some(())
    });
    put(&m3_url, "through", "m3").unwrap();
    assert_eq!(
        get(&c.members[leader].url, "through", true).as_deref(),
        Some("m3")
    );

    // Remove one original follower with etcdctl: it stops, as etcd's removed members do.
    let gone = followers[0];
    let gone_id = member_list(&c.members[leader].url)
        .into_iter()
        .find(|m| m.1 == c.members[gone].name)
        .unwrap()
        .0;
    let (ok, out) = etcdctl3(
        &c.members[leader].url,
        &["member", "remove", &format!("{gone_id:x}")],
    );
    assert!(
        ok && out.contains("removed from cluster"),
        "member remove: {out}"
    );
    eventually(20, "the removed member to stop", || {
        c.members[gone]
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .map(|_| ())
    });
    let log = std::fs::read_to_string(&c.members[gone].log).unwrap();
    assert!(log.contains("permanently removed"), "{log}");
    // The leader answered once it applied the removal; m3 follows shortly.
    eventually(10, "m3 to list three members", || {
        (member_list(&c.members[m3].url).len() == 3).then_some(())
    });
    // Voters are now {leader, the other follower, m3}: with that follower killed, writes still
    // commit only if m3 was promoted to a voter.
    c.kill(followers[1]);
    eventually(30, "a write with m3 in the quorum", || {
        put(&c.members[leader].url, "quorum", "with-m3").ok()
    });
    assert_eq!(get(&m3_url, "quorum", true).as_deref(), Some("with-m3"));

    // Removing it again: etcd's error text.
    let (ok, out) = etcdctl3(
        &c.members[leader].url,
        &["member", "remove", &format!("{gone_id:x}")],
    );
    assert!(!ok && out.contains("member not found"), "{out}");

    // The v2 members API: add (201), a duplicate peer URL (409), update, remove (204), again (404).
    let v2 = format!("{}/v2/members", c.members[leader].url);
    let spare = format!("http://127.0.0.1:{}", free_port());
    let body = serde_json::json!({ "peerURLs": [spare] });
    let r = client().post(&v2).json(&body).send().unwrap();
    assert_eq!(r.status(), 201);
    let m: serde_json::Value = r.json().unwrap();
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["peerURLs"][0], spare.as_str());
    let r = client().post(&v2).json(&body).send().unwrap();
    assert_eq!(r.status(), 409);
    // etcdctl member update changes its peer URLs.
    let moved = format!("http://127.0.0.1:{}", free_port());
    let (ok, out) = etcdctl3(
        &c.members[m3].url,
        &["member", "update", &id, &format!("--peer-urls={moved}")],
    );
    assert!(
        ok && out.contains("updated in cluster"),
        "member update: {out}"
    );
    let listed = member_list(&c.members[leader].url);
    assert!(
        listed
            .iter()
            .any(|m| format!("{:x}", m.0) == id && m.2 == vec![moved.clone()]),
        "{listed:?}"
    );
    let r = client().delete(format!("{v2}/{id}")).send().unwrap();
    assert_eq!(r.status(), 204);
    let r = client().delete(format!("{v2}/{id}")).send().unwrap();
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["message"], format!("No such member: {id}"));
}

mod checker {
    //! The linearizability checker must reject what is not linearizable, or the cluster test
    //! below proves nothing.
    use std::time::{Duration, Instant};

    use super::common::linearizability::{check, Kind, Op};

    fn op(t0: Instant, kind: Kind, call: u64, ret: Option<u64>) -> Op {
        Op {
            key: "k".into(),
            kind,
            call: t0 + Duration::from_millis(call),
            ret: ret.map(|r| t0 + Duration::from_millis(r)),
            client: 0,
        }
    }

    fn w(v: &str) -> Kind {
        Kind::Write(v.into())
    }

    fn r(v: Option<&str>) -> Kind {
        Kind::Read(v.map(String::from))
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let t = Instant::now();
        let h = [
            op(t, w("a"), 0, Some(10)),
            op(t, w("b"), 20, Some(30)),
            op(t, r(Some("a")), 40, Some(50)),
        ];
        assert!(check(&h).is_err());
        // A lost acknowledged write: the key reads as never written.
        assert!(check(&[op(t, w("a"), 0, Some(10)), op(t, r(None), 20, Some(30))]).is_err());
    }

    #[test]
    fn concurrent_and_unknown_operations_may_order_either_way() {
        let t = Instant::now();
        // Overlapping writes; reads see them in an order both allow.
        let h = [
            op(t, w("a"), 0, Some(100)),
            op(t, w("b"), 10, Some(90)),
            op(t, r(Some("a")), 20, Some(30)),
            op(t, r(Some("b")), 95, Some(99)),
        ];
        assert!(check(&h).is_ok());
        // But not back again once both have returned.
        let mut bad = h.to_vec();
        bad.push(op(t, r(Some("a")), 120, Some(130)));
        bad.push(op(t, r(Some("b")), 140, Some(150)));
        assert!(check(&bad).is_err());
        // A write with an unknown outcome may take effect late, or never.
        let h = [
            op(t, w("a"), 0, Some(10)),
            op(t, w("x"), 20, None),
            op(t, r(Some("a")), 30, Some(40)),
            op(t, r(Some("x")), 50, Some(60)),
        ];
        assert!(check(&h).is_ok());
        assert!(check(&h[..3]).is_ok());
        // Never read back before it was written.
        let h = [op(t, r(Some("x")), 0, Some(10)), op(t, w("x"), 20, None)];
        assert!(check(&h).is_err());
    }
}

/// Six clients write unique values to and quorum-read three keys through all members while the
/// leader is killed (-9) and restarted; the whole history, with final reads on every member,
/// must be linearizable (so no acknowledged write is lost). `LIN_TRACE=1` prints every operation.
#[test]
fn histories_under_leader_kill_and_restart_are_linearizable() {
    use common::linearizability::{Kind, Op};
    use common::recorder::{assert_linearizable, mix, record};
    let mut c = Cluster::start(10_000);
    let urls: Vec<String> = c.members.iter().map(|m| m.url.clone()).collect();
    let keys = ["lin/a", "lin/b", "lin/c"];
    let stop = AtomicBool::new(false);
    let acked = std::sync::atomic::AtomicUsize::new(0);
    let leader = c.leader(&[0, 1, 2]);
    let mut history: Vec<Op> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..6)
            .map(|t| {
                let (urls, stop, keys, acked) = (&urls, &stop, &keys, &acked);
                s.spawn(move || {
                    let mut ops = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        // A deterministic, per-client mix of keys, members, reads and writes.
                        let h = mix(n << 8 | t as u64);
                        let key = keys[(h % 3) as usize];
                        let url = &urls[((h >> 8) % 3) as usize];
                        let kind = if (h >> 16) % 2 == 0 {
                            Kind::Write(format!("{t}-{n}"))
                        } else {
                            Kind::Read(None)
                        };
                        let call = Instant::now();
                        let result = record(url, key, &kind);
                        let ret = Instant::now();
                        if std::env::var_os("LIN_TRACE").is_some() {
                            eprintln!(
                                "c{t} m{} {key} {kind:?} -> {result:?} {:?}",
                                (h >> 8) % 3,
                                ret - call
                            );
                        }
                        match (result, kind) {
                            (Ok(k), _) => {
                                if matches!(k, Kind::Write(_)) {
                                    acked.fetch_add(1, Ordering::Relaxed);
                                }
                                ops.push(Op {
                                    key: key.into(),
                                    kind: k,
                                    call,
                                    ret: Some(ret),
                                    client: t,
                                })
                            }
                            (Err(()), w @ Kind::Write(_)) => ops.push(Op {
                                key: key.into(),
                                kind: w,
                                call,
                                ret: None,
                                client: t,
                            }),
                            // A failed read tells nothing.
                            (Err(()), Kind::Read(_)) => {}
                        }
                    }
                    ops
                })
            })
            .collect();
        // Phases by acknowledged writes, not only by time: a loaded machine is slow.
        let acked_at_least = |n: usize, min_ms: u64| {
            let start = Instant::now();
            while acked.load(Ordering::Relaxed) < n
                || start.elapsed() < Duration::from_millis(min_ms)
            {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the clients made no progress"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        acked_at_least(15, 1500);
        c.kill(leader);
        std::thread::sleep(Duration::from_millis(2500));
        c.spawn(leader);
        acked_at_least(50, 3000);
        stop.store(true, Ordering::Relaxed);
        clients
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    // Final reads on every member (the restarted one included) after everything returned.
    for url in &urls {
        for key in keys {
            let call = Instant::now();
            let kind = eventually(30, "a final read", || {
                record(url, key, &Kind::Read(None)).ok()
            });
            history.push(Op {
                key: key.into(),
                kind,
                call,
                ret: Some(Instant::now()),
                client: 99,
            });
        }
    }
    let acked_writes = history
        .iter()
        .filter(|o| matches!(o.kind, Kind::Write(_)) && o.ret.is_some())
        .count();
    let unknown = history.iter().filter(|o| o.ret.is_none()).count();
    eprintln!(
        "linearizability: {} operations ({acked_writes} acknowledged writes, {unknown} unknown)",
        history.len()
    );
    assert!(acked_writes >= 50, "too little load to test anything");
    assert_linearizable(&history);
}

#[test]
fn a_whole_cluster_restarting_with_state_existing_comes_back() {
    let mut c = Cluster::start(10_000);
    put(&c.members[0].url, "survives", "restart").unwrap();
    let cluster_id = |url: &str| {
        let (ok, out) = etcdctl3(url, &["member", "list", "-w", "json"]);
        assert!(ok, "{out}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["header"]["cluster_id"].as_u64().unwrap()
    };
    let before = cluster_id(&c.members[0].url);
    // All down, then all up at once with `existing` (as a unit file keeps it after the first
    // boot): none may wait for the others before serving its peer port.
    for i in 0..3 {
        c.kill(i);
        for a in c.members[i].args.iter_mut() {
            if a == "--initial-cluster-state=new" {
                *a = "--initial-cluster-state=existing".into();
            }
        }
    }
    c.launch();
    for m in &c.members {
        assert_eq!(get(&m.url, "survives", true).as_deref(), Some("restart"));
        assert_eq!(
            cluster_id(&m.url),
            before,
            "cluster ID changed on {}",
            m.name
        );
    }
}

#[test]
fn auth_is_replicated_and_survives_a_whole_cluster_restart() {
    // A small snapshot count: after the restart the auth state comes from a snapshot too.
    let mut c = Cluster::start(5);
    let leader = c.leader(&[0, 1, 2]);
    let url = |c: &Cluster, i: usize| c.members[i].url.clone();
    let l = url(&c, leader);
    for args in [
        &["user", "add", "root:pw"][..],
        &["user", "add", "alice:apw"],
        &["role", "add", "r"],
        &[
            "role",
            "grant-permission",
            "r",
            "readwrite",
            "/app/",
            "--prefix",
        ],
        &["user", "grant-role", "alice", "r"],
        &["auth", "enable"],
    ] {
        let (ok, out) = etcdctl3(&l, args);
        assert!(ok, "{args:?}: {out}");
    }
    // What a restricted user may and may not do, asked of every member (the followers
    // authenticate and check permissions from their own replica of the auth state).
    let check = |c: &Cluster, round: &str| {
        for i in 0..3 {
            let u = url(c, i);
            let key = format!("/app/{round}{i}");
            let (ok, out) = eventually(10, "alice's put on every member", || {
                let r = etcdctl3(&u, &["--user", "alice:apw", "put", &key, "v"]);
                r.0.then_some(r)
            });
            assert!(ok && out.contains("OK"), "member {i}: {out}");
            let (ok, out) = etcdctl3(&u, &["--user", "alice:apw", "get", &key]);
            assert!(ok && out.contains(&key), "member {i}: {out}");
            let (ok, out) = etcdctl3(&u, &["--user", "alice:apw", "put", "/other", "v"]);
            assert!(
                !ok && out.contains("etcdserver: permission denied"),
                "member {i}: {out}"
            );
            let (ok, out) = etcdctl3(&u, &["get", &key]);
            assert!(
                !ok && out.contains("etcdserver: user name is empty"),
                "member {i}: {out}"
            );
            let (ok, out) = etcdctl3(&u, &["--user", "alice:wrong", "get", &key]);
            assert!(
                !ok && out.contains("authentication failed, invalid user ID or password"),
                "member {i}: {out}"
            );
            let (ok, out) = etcdctl3(&u, &["--user", "alice:apw", "user", "list"]);
            assert!(
                !ok && out.contains("permission denied"),
                "member {i}: {out}"
            );
            let (ok, out) = etcdctl3(&u, &["--user", "root:pw", "user", "list"]);
            assert!(ok && out == "alice\nroot\n", "member {i}: {out}");
        }
    };
    check(&c, "before");
    // A token handed out by the leader works on a follower (Authenticate is applied on every
    // member); a made-up one does not.
    let follower = (leader + 1) % 3;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use store::v3::pb::etcdserverpb::{
            auth_client::AuthClient, kv_client::KvClient, AuthenticateRequest, PutRequest,
        };
        let mut auth = AuthClient::new(grpc_channel(url(&c, leader)).await);
        let token = auth
            .authenticate(AuthenticateRequest {
                name: "alice".into(),
                password: "apw".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        let mut kv = KvClient::new(grpc_channel(url(&c, follower)).await);
        let put = |token: &str| {
            let mut r = tonic::Request::new(PutRequest {
                key: b"/app/token".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            });
            r.metadata_mut().insert("token", token.parse().unwrap());
            r
        };
        // The follower may apply the Authenticate entry a moment after the leader answered.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = kv.put(put(&token)).await {
            assert!(
                Instant::now() < deadline,
                "the leader's token on a follower: {e:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let e = kv.put(put("madeup.1")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert_eq!(e.message(), "etcdserver: invalid auth token");
    });
    for i in 0..3 {
        c.kill(i);
        for a in c.members[i].args.iter_mut() {
            if a == "--initial-cluster-state=new" {
                *a = "--initial-cluster-state=existing".into();
            }
        }
    }
    c.launch();
    check(&c, "after");
    let snapshots = (0..3)
        .filter(|&i| {
            std::fs::read_to_string(&c.members[i].log).is_ok_and(|l| l.contains("snapshot taken"))
        })
        .count();
    assert!(
        snapshots > 0,
        "no member took a snapshot: the test did not cover one"
    );
}

/// A gRPC channel to a member's client URL.
async fn grpc_channel(url: String) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap()
}
