//! etcdctl's Maintenance commands that dial one endpoint directly (`defrag`, `endpoint hashkv`,
//! `endpoint status`) against real etcd 3.4 and ferro-store: both must succeed and answer in the
//! same shape. etcd 3.4's client sends such requests with the `:authority` `http://host:port`,
//! which our HTTP/2 stack once refused with RST_STREAM PROTOCOL_ERROR.
//! Needs the Debian packages `etcd-server` and `etcd-client`.

mod common;

use std::process::Command;

use common::Server;
use serde_json::Value;

/// Runs etcdctl (v3 API) against `s`; returns (success, stdout, stderr).
fn etcdctl(s: &Server, args: &[&str]) -> (bool, String, String) {
    let bin = common::require_tool("etcdctl", "etcd-client");
    let out = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(["--endpoints", &s.url, "--command-timeout", "10s"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// etcdctl that must succeed; its stdout with the server's URL masked.
fn ok(s: &Server, args: &[&str]) -> String {
    let (success, stdout, stderr) = etcdctl(s, args);
    assert!(
        success,
        "{}: etcdctl {args:?} failed: {stderr}{stdout}",
        s.name
    );
    stdout.replace(&s.url, "URL")
}

/// A JSON value's structure: object keys and value kinds, not the values.
fn shape(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let fields: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{}", shape(v))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(shape).collect::<Vec<_>>().join(",")),
        Value::Number(_) => "n".into(),
        Value::String(_) => "s".into(),
        Value::Bool(_) => "b".into(),
        Value::Null => "null".into(),
    }
}

fn json(s: &Server, args: &[&str]) -> Value {
    let out = ok(s, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{}: {args:?}: {e}: {out}", s.name))
}

fn hash(s: &Server) -> u64 {
    let v = json(s, &["endpoint", "hashkv", "-w", "json"]);
    v[0]["HashKV"]["hash"].as_u64().expect("a hash")
}

/// What one server answers, for comparing with the other.
struct Answers {
    defrag: String,
    status_shape: String,
    hashkv_shape: String,
    auth_defrag: String,
    auth_hashkv_shape: String,
}

fn answers(s: &Server) -> Answers {
    let defrag = ok(s, &["defrag"]);
    let status_shape = shape(&json(s, &["endpoint", "status", "-w", "json"]));
    let hashkv_shape = shape(&json(s, &["endpoint", "hashkv", "-w", "json"]));
    // The hash covers the keys: the same without writes, another after a put.
    let before = hash(s);
    assert_eq!(before, hash(s), "{}: hashkv changed without writes", s.name);
    ok(s, &["put", "/k", "v"]);
    let after = hash(s);
    assert_ne!(
        before, after,
        "{}: hashkv did not change after a put",
        s.name
    );
    assert_eq!(after, hash(s), "{}: hashkv changed without writes", s.name);
    // With auth on, maintenance is root's.
    ok(s, &["user", "add", "root:pw"]);
    ok(s, &["auth", "enable"]);
    let (anonymous, _, _) = etcdctl(s, &["defrag"]);
    assert!(!anonymous, "{}: defrag without a user succeeded", s.name);
    let auth_defrag = ok(s, &["defrag", "--user", "root:pw"]);
    let auth_hashkv_shape = shape(&json(
        s,
        &["endpoint", "hashkv", "-w", "json", "--user", "root:pw"],
    ));
    ok(s, &["endpoint", "status", "--user", "root:pw"]);
    Answers {
        defrag,
        status_shape,
        hashkv_shape,
        auth_defrag,
        auth_hashkv_shape,
    }
}

#[test]
fn defrag_hashkv_and_status_work_as_on_etcd() {
    let (etcd, ours) = std::thread::scope(|s| {
        let e = s.spawn(Server::etcd);
        let o = s.spawn(Server::ours);
        (e.join().unwrap(), o.join().unwrap())
    });
    let (e, o) = std::thread::scope(|s| {
        let e = s.spawn(|| answers(&etcd));
        let o = s.spawn(|| answers(&ours));
        (e.join().unwrap(), o.join().unwrap())
    });
    assert_eq!(e.defrag, "Finished defragmenting etcd member[URL]\n");
    assert_eq!(o.defrag, e.defrag);
    assert_eq!(o.status_shape, e.status_shape);
    assert_eq!(o.hashkv_shape, e.hashkv_shape);
    assert_eq!(o.auth_defrag, e.auth_defrag);
    assert_eq!(o.auth_hashkv_shape, e.auth_hashkv_shape);
}
