use proptest::prelude::*;

use super::error::*;
use super::*;

fn put(path: &str, value: &str) -> Command {
    Command::V2(V2Request {
        method: V2Method::Put,
        path: path.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn ok(o: Output) -> Event {
    match o {
        Output::V2(Ok(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn err(o: Output) -> V2Error {
    match o {
        Output::V2(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn set_then_get_then_cas() {
    let mut s = State::default();
    let e = ok(s.apply(&put("/a/b", "1")));
    assert_eq!(e.action, "set");
    assert!(e.is_created());
    assert_eq!(e.index(), 1);
    let e = ok(s.apply(&put("/a/b", "2")));
    assert_eq!(e.prev_node.unwrap().value.as_deref(), Some("1"));
    let mut cas = V2Request {
        method: V2Method::Put,
        path: "/a/b".into(),
        value: "3".into(),
        prev_value: "nope".into(),
        ..Default::default()
    };
    let er = err(s.apply(&Command::V2(cas.clone())));
    assert_eq!(
        (er.code, er.cause.as_str(), er.index),
        (TEST_FAILED, "[nope != 2]", 2)
    );
    cas.prev_value = "2".into();
    assert_eq!(ok(s.apply(&Command::V2(cas))).action, "compareAndSwap");
    let er = err(s.apply(&put("/a/b/c", "x")));
    assert_eq!((er.code, er.cause.as_str()), (NOT_DIR, "/a/b"));
    let g = s.v2.get("/a", true, 0).unwrap();
    assert_eq!(g.node.unwrap().nodes[0].value.as_deref(), Some("3"));
}

#[test]
fn ttl_keys_expire_in_order() {
    let mut s = State::default();
    let mut r = V2Request {
        method: V2Method::Put,
        path: "/t".into(),
        value: "v".into(),
        expiration: Some(2_000_000_000_000_000_000),
        now: 1_999_999_999_000_000_000,
        ..Default::default()
    };
    let e = ok(s.apply(&Command::V2(r.clone())));
    assert_eq!(e.node.unwrap().ttl, 1);
    r.path = "/u".into();
    r.expiration = Some(2_000_000_001_000_000_000);
    ok(s.apply(&Command::V2(r)));
    assert_eq!(
        s.apply(&Command::V2Expire {
            now: 2_000_000_000_000_000_000
        }),
        Output::Expired(1)
    );
    assert!(s.v2.get("/t", false, 0).is_err());
    assert!(s.v2.get("/u", false, 0).is_ok());
    let (e, _) = (s.v2.history().scan("/t", false, 3).unwrap().unwrap(), ());
    assert_eq!(e.action, "expire");
}

#[test]
fn history_window_is_1000_events() {
    let mut s = State::default();
    for i in 0..1100 {
        ok(s.apply(&put("/k", &i.to_string())));
    }
    let e = s.v2.history().scan("/k", false, 50).unwrap_err();
    assert_eq!(e.code, EVENT_INDEX_CLEARED);
    assert_eq!(e.cause, "the requested history has been cleared [101/50]");
    assert_eq!(
        s.v2.history()
            .scan("/k", false, 101)
            .unwrap()
            .unwrap()
            .index(),
        101
    );
    assert!(s.v2.history().scan("/k", false, 1101).unwrap().is_none());
}

#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8, bool),
    Create(u8, u8),
    Post(u8),
    Delete(u8, bool),
    Cas(u8, u8, u8),
}

fn key(k: u8) -> String {
    // A small keyspace with nesting, so that operations collide.
    match k % 6 {
        0 => "/a".into(),
        1 => "/a/b".into(),
        2 => "/a/c".into(),
        3 => "/d".into(),
        4 => "/d/e/f".into(),
        _ => "/_h".into(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(k, v, d)| Op::Set(k, v, d)),
        (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Create(k, v)),
        any::<u8>().prop_map(Op::Post),
        (any::<u8>(), any::<bool>()).prop_map(|(k, r)| Op::Delete(k, r)),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(k, a, b)| Op::Cas(k, a, b)),
    ]
}

fn command(op: &Op) -> Command {
    let mut r = V2Request::default();
    match op {
        Op::Set(k, v, d) => {
            r.path = key(*k);
            r.value = if *d { String::new() } else { v.to_string() };
            r.dir = *d;
        }
        Op::Create(k, v) => {
            r.path = key(*k);
            r.value = v.to_string();
            r.prev_exist = Some(false);
        }
        Op::Post(k) => {
            r.method = V2Method::Post;
            r.path = key(*k);
            r.value = "q".into();
        }
        Op::Delete(k, rec) => {
            r.method = V2Method::Delete;
            r.path = key(*k);
            r.recursive = *rec;
        }
        Op::Cas(k, a, b) => {
            r.path = key(*k);
            r.prev_value = (a % 4).to_string();
            r.value = b.to_string();
        }
    }
    Command::V2(r)
}

proptest! {
    /// The index grows by exactly one per successful write, events carry it, replay is deterministic,
    /// a snapshot (serde round trip) continues identically, and every event is in the history.
    #[test]
    fn index_and_replay_invariants(ops in prop::collection::vec(op(), 1..80)) {
        let mut s = State::default();
        let mut events = Vec::new();
        for op in &ops {
            let before = s.v2.index();
            match s.apply(&command(op)) {
                Output::V2(Ok(e)) => {
                    prop_assert_eq!(s.v2.index(), before + 1);
                    prop_assert_eq!(e.index(), before + 1);
                    prop_assert_eq!(e.etcd_index, before + 1);
                    events.push(e);
                }
                Output::V2(Err(e)) => {
                    prop_assert_eq!(s.v2.index(), before);
                    prop_assert_eq!(e.index, before);
                }
                other => unreachable!("{other:?}"),
            }
        }
        let mut replay = State::default();
        for op in &ops {
            replay.apply(&command(op));
        }
        prop_assert_eq!(replay.v2.take_notifications(), s.v2.take_notifications());
        prop_assert_eq!(&replay, &s);
        let mut restored: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        prop_assert_eq!(&restored, &s);
        let mut last_state = s.clone();
        let tail = command(&Op::Set(1, 9, false));
        prop_assert_eq!(restored.apply(&tail), last_state.apply(&tail));
        for e in &events {
            let found = s.v2.history().scan(e.key(), false, e.index()).unwrap();
            prop_assert_eq!(found.map(|f| f.index()), Some(e.index()));
        }
    }
}
