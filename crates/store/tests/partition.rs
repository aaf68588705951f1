//! Network partitions between the members of a 3-member cluster on loopback: every peer link
//! goes through a fault-injecting proxy (`common::proxy`), so a test can cut a member off from
//! the others and heal it, while clients still reach every member. An isolated leader loses
//! its quorum and the majority elects another in a higher term; a concurrent client history
//! across repeated partitions of the leader and of a follower is linearizable, no acknowledged
//! write is lost, the majority keeps committing, and the isolated member acknowledges nothing.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::free_port;
use common::linearizability::{Kind, Op};
use common::proxy::PeerNet;
use common::recorder::{assert_linearizable, mix, record};

struct Member {
    url: String,
    args: Vec<String>,
    child: Option<Child>,
    log: std::path::PathBuf,
}

/// Three members whose peer URLs are proxies in front of their peer listeners.
struct Cluster {
    members: Vec<Member>,
    net: PeerNet,
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

fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
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
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let listen: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let net = PeerNet::start(&listen.iter().map(|&(_, p)| p).collect::<Vec<_>>());
        let advertised = |i: usize| format!("http://127.0.0.1:{}", net.port(i));
        let initial: Vec<String> = (0..3).map(|i| format!("m{i}={}", advertised(i))).collect();
        let members = listen
            .iter()
            .enumerate()
            .map(|(i, (c, p))| {
                let url = format!("http://127.0.0.1:{c}");
                let args = vec![
                    format!("--name=m{i}"),
                    "--enable-v2".into(),
                    format!("--data-dir={}", dir.path().join(format!("m{i}")).display()),
                    format!("--listen-client-urls={url}"),
                    format!("--advertise-client-urls={url}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{p}"),
                    format!("--initial-advertise-peer-urls={}", advertised(i)),
                    format!("--initial-cluster={}", initial.join(",")),
                    "--initial-cluster-state=new".into(),
                    "--heartbeat-interval=50".into(),
                    "--election-timeout=400".into(),
                    "--log-level=info".into(),
                ];
                Member {
                    url,
                    args,
                    child: None,
                    log: dir.path().join(format!("m{i}.log")),
                }
            })
            .collect();
        let mut c = Cluster {
            members,
            net,
            _dir: dir,
        };
        for i in 0..3 {
            c.spawn(i);
        }
        for m in &c.members {
            eventually(30, "the cluster to answer", || {
                client(Duration::from_secs(5))
                    .get(format!("{}/v2/keys/?quorum=true", m.url))
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
            });
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferro-store"))
            .args(&m.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.net.set_pid(i, Some(child.id()));
        m.child = Some(child);
    }

    fn url(&self, i: usize) -> &str {
        &self.members[i].url
    }

    /// What member `i` says of itself: (leads, its Raft term from `X-Raft-Term`).
    fn status(&self, i: usize) -> Option<(bool, u64)> {
        let c = client(Duration::from_secs(1));
        let leads = c
            .get(format!("{}/v2/stats/self", self.url(i)))
            .send()
            .ok()?
            .json::<serde_json::Value>()
            .ok()?["state"]
            == "StateLeader";
        let term = c
            .get(format!("{}/v2/keys/", self.url(i)))
            .send()
            .ok()?
            .headers()
            .get("x-raft-term")?
            .to_str()
            .ok()?
            .parse()
            .ok()?;
        Some((leads, term))
    }

    /// The member that leads in the highest term (at least `min_term`) among `among`, and that
    /// term (an old leader cut off may still believe it leads, in an older term).
    fn leader(&self, among: &[usize], min_term: u64) -> (usize, u64) {
        eventually(20, "a leader", || {
            among
                .iter()
                .filter_map(|&i| match self.status(i) {
                    Some((true, term)) if term >= min_term => Some((i, term)),
                    _ => None,
                })
                .max_by_key(|&(_, term)| term)
        })
    }
}

/// A v2 write; its X-Raft-Term if acknowledged.
fn put(url: &str, key: &str, value: &str) -> Result<u64, String> {
    let r = client(Duration::from_secs(3))
        .put(format!("{url}/v2/keys/{key}"))
        .form(&[("value", value)])
        .send()
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("{}", r.status()));
    }
    Ok(r.headers()["x-raft-term"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap())
}

/// A quorum read: Ok(None) for a missing key, Err when the member could not answer.
fn quorum_get(url: &str, key: &str) -> Result<Option<String>, String> {
    match record(url, key, &Kind::Read(None)) {
        Ok(Kind::Read(v)) => Ok(v),
        Ok(other) => unreachable!("{other:?}"),
        Err(()) => Err("no answer".into()),
    }
}

/// The harness really partitions: the leader, cut off, can no longer commit or serve a quorum
/// read; the other two elect a leader in a higher term and commit, without the write sent to the
/// old leader; once healed, the old leader follows the new term and has the majority's writes.
/// (Once healed, the old leader's uncommitted entry is truncated; openraft answers its waiter
/// ForwardToLeader and `Core::submit` forwards the batch to the new leader, so the write the
/// client gave up on takes effect after the heal: allowed, its outcome was unknown; and applied
/// once, as a truncated entry was never committed.)
#[test]
fn an_isolated_leader_loses_its_quorum_and_the_majority_elects_another() {
    let c = Cluster::start();
    let (old, term) = c.leader(&[0, 1, 2], 0);
    put(c.url(old), "p/before", "1").expect("a write before the partition");
    let before = c.net.stats();
    c.net.isolate(old);
    let cut_at = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();

    let (new, new_term) = c.leader(&others, term + 1);
    eprintln!(
        "m{old} isolated in term {term}; m{new} leads in term {new_term} after {:?}",
        cut_at.elapsed()
    );
    for &i in &others {
        let t = put(c.url(i), &format!("p/majority{i}"), "yes").expect("a majority write");
        assert!(t >= new_term, "a majority write in term {t} < {new_term}");
    }
    assert!(
        put(c.url(old), "p/minority", "no").is_err(),
        "the isolated member acknowledged a write"
    );
    for &i in &others {
        assert_eq!(
            quorum_get(c.url(i), "p/minority"),
            Ok(None),
            "the minority's write is visible on m{i} during the partition"
        );
    }
    let stale = quorum_get(c.url(old), &format!("p/majority{new}"));
    assert!(
        stale.is_err(),
        "the isolated member answered a quorum read: {stale:?}"
    );
    let (leads, old_term) = c.status(old).expect("the isolated member answers locally");
    eprintln!("isolated m{old} after the majority's writes: leads={leads}, term {old_term}");
    assert!(
        old_term < new_term || !leads,
        "two leaders in term {old_term}"
    );
    let during = c.net.stats();
    eprintln!("proxy before: {before:?}, during: {during:?}");
    assert!(
        during.refused + during.stalled > before.refused + before.stalled,
        "the proxy cut nothing"
    );

    c.net.heal();
    eventually(20, "the old leader to follow the new term", || {
        c.status(old)
            .filter(|&(leads, t)| !leads && t >= new_term)
            .map(|_| ())
    });
    // A write through the old leader once healed: its batcher is past the pending one then.
    eventually(20, "a write through the healed member", || {
        put(c.url(old), "p/after", "1").ok()
    });
    let minority = eventually(10, "a quorum read after healing", || {
        quorum_get(c.url(new), "p/minority").ok()
    });
    eprintln!("the minority's unacknowledged write after healing: {minority:?}");
    for i in 0..3 {
        let v = eventually(10, "a quorum read after healing", || {
            quorum_get(c.url(i), "p/minority").ok()
        });
        assert_eq!(v, minority, "p/minority differs on m{i}");
        for &j in &others {
            let k = format!("p/majority{j}");
            let v = eventually(10, "a quorum read after healing", || {
                quorum_get(c.url(i), &k).ok()
            });
            assert_eq!(v.as_deref(), Some("yes"), "{k} on m{i}");
        }
    }
}

/// One partition of the test below: who was cut off, from when to when.
struct Window {
    victim: usize,
    from: Instant,
    to: Instant,
}

/// Six clients write unique values to and quorum-read four keys through all members, and two
/// more write keys of their own, while the leader, then a follower, then the leader again is
/// cut off and healed. The history (with final reads on every member) must be linearizable,
/// every acknowledged write must be on every member, the majority must commit during each
/// partition, and no write sent to the isolated member while it was cut off may be acknowledged.
/// `LIN_TRACE=1` prints every operation.
#[test]
fn histories_under_partitions_are_linearizable() {
    let c = Cluster::start();
    let urls: Vec<String> = (0..3).map(|i| c.url(i).to_string()).collect();
    let keys = ["lin/a", "lin/b", "lin/c", "lin/d"];
    let stop = AtomicBool::new(false);
    let acked = AtomicUsize::new(0);
    // (member, operation) for the registers; (key, value) of acknowledged unique writes.
    let ops: Mutex<Vec<(usize, Op)>> = Mutex::new(Vec::new());
    let unique: Mutex<Vec<(usize, String, Instant, Instant)>> = Mutex::new(Vec::new());
    let mut windows = Vec::new();
    std::thread::scope(|s| {
        for t in 0..6 {
            let (urls, stop, keys, acked, ops) = (&urls, &stop, &keys, &acked, &ops);
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let h = mix(n << 8 | t as u64);
                    let key = keys[(h % keys.len() as u64) as usize];
                    let m = ((h >> 8) % 3) as usize;
                    let kind = if (h >> 16) % 2 == 0 {
                        Kind::Write(format!("{t}-{n}"))
                    } else {
                        Kind::Read(None)
                    };
                    let call = Instant::now();
                    let result = record(&urls[m], key, &kind);
                    let ret = Instant::now();
                    if std::env::var_os("LIN_TRACE").is_some() {
                        eprintln!("c{t} m{m} {key} {kind:?} -> {result:?} {:?}", ret - call);
                    }
                    let op = |kind, ret| Op {
                        key: key.into(),
                        kind,
                        call,
                        ret,
                        client: t,
                    };
                    let op = match (result, kind) {
                        (Ok(k), _) => {
                            if matches!(k, Kind::Write(_)) {
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            op(k, Some(ret))
                        }
                        (Err(()), w @ Kind::Write(_)) => op(w, None),
                        // A failed read tells nothing.
                        (Err(()), Kind::Read(_)) => continue,
                    };
                    ops.lock().unwrap().push((m, op));
                }
            });
        }
        for t in 0..2 {
            let (urls, stop, unique) = (&urls, &stop, &unique);
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let m = (mix(n << 8 | (t + 100)) % 3) as usize;
                    let key = format!("uniq/{t}/{n}");
                    let call = Instant::now();
                    if record(&urls[m], &key, &Kind::Write(key.clone())).is_ok() {
                        unique.lock().unwrap().push((m, key, call, Instant::now()));
                    }
                }
            });
        }
        // Phases by acknowledged writes, not only by time: a loaded machine is slow.
        let acked_at_least = |n: usize, min_ms: u64| {
            let start = Instant::now();
            while acked.load(Ordering::Relaxed) < n
                || start.elapsed() < Duration::from_millis(min_ms)
            {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "the clients made no progress"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        acked_at_least(15, 1000);
        let mut term = 0;
        for round in 0..3 {
            let (leader, t) = c.leader(&[0, 1, 2], term);
            term = t;
            let victim = if round == 1 { (leader + 1) % 3 } else { leader };
            c.net.isolate(victim);
            let from = Instant::now();
            // The majority must commit while the victim is away.
            let at_cut = acked.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2500));
            acked_at_least(at_cut + 10, 0);
            c.net.heal();
            windows.push(Window {
                victim,
                from,
                to: Instant::now(),
            });
            eprintln!(
                "round {round}: m{victim} ({}) cut off for {:?}",
                if victim == leader {
                    "leader"
                } else {
                    "follower"
                },
                from.elapsed()
            );
            let healed = acked.load(Ordering::Relaxed);
            acked_at_least(healed + 10, 1500);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let stats = c.net.stats();
    eprintln!("proxy: {stats:?}");
    assert!(stats.refused + stats.stalled > 0, "the proxy cut nothing");

    let ops = ops.into_inner().unwrap();
    let unique = unique.into_inner().unwrap();
    for w in &windows {
        let inside = |m: usize, call: Instant, ret: Option<Instant>| {
            m == w.victim && call >= w.from && ret.is_some_and(|r| r <= w.to)
        };
        let minority_acks = ops
            .iter()
            .filter(|(m, o)| matches!(o.kind, Kind::Write(_)) && inside(*m, o.call, o.ret))
            .count()
            + unique
                .iter()
                .filter(|(m, _, call, ret)| inside(*m, *call, Some(*ret)))
                .count();
        assert_eq!(
            minority_acks, 0,
            "m{} acknowledged writes while cut off",
            w.victim
        );
        let majority_acks = ops
            .iter()
            .filter(|(m, o)| {
                *m != w.victim
                    && matches!(o.kind, Kind::Write(_))
                    && o.call >= w.from
                    && o.ret.is_some_and(|r| r <= w.to)
            })
            .count();
        eprintln!(
            "m{} cut off: {majority_acks} register writes acknowledged by the majority",
            w.victim
        );
        assert!(
            majority_acks > 0,
            "the majority committed nothing while m{} was cut off",
            w.victim
        );
    }

    let mut history: Vec<Op> = ops.into_iter().map(|(_, o)| o).collect();
    // Final reads on every member after everything returned and the network healed.
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
        "linearizability: {} operations ({acked_writes} acknowledged writes, {unknown} unknown), {} unique keys",
        history.len(),
        unique.len()
    );
    assert!(acked_writes >= 50, "too little load to test anything");
    let checking = Instant::now();
    assert_linearizable(&history);
    eprintln!("checked in {:?}", checking.elapsed());

    // Every acknowledged unique write is on every member (a local read, once caught up).
    assert!(!unique.is_empty(), "no unique write acknowledged");
    for url in &urls {
        for (_, k, _, _) in &unique {
            let what = format!("acknowledged write {k} on {url} (lost?)");
            eventually(10, &what, || {
                (get_local(url, k).as_deref() == Some(k.as_str())).then_some(())
            });
        }
    }
}

fn get_local(url: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = client(Duration::from_secs(5))
        .get(format!("{url}/v2/keys/{key}"))
        .send()
        .ok()?
        .json()
        .ok()?;
    v["node"]["value"].as_str().map(String::from)
}
