use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn put(k: &str, v: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

/// key, value, create_revision, mod_revision, version: what a reader sees of one key.
type Seen = (Vec<u8>, Vec<u8>, i64, i64, i64);

fn get_all(m: &Mvcc, rev: i64) -> Result<Vec<Seen>, V3Error> {
    let r = m.range(&pb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: rev,
        ..Default::default()
    })?;
    Ok(r.kvs
        .into_iter()
        .map(|kv| {
            (
                kv.key,
                kv.value,
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        })
        .collect())
}

#[test]
fn revisions_versions_and_old_reads() {
    let mut m = Mvcc::default();
    m.put(&put("a", "1")).unwrap();
    m.put(&put("a", "2")).unwrap();
    m.put(&put("b", "1")).unwrap();
    m.delete_range(&pb::DeleteRangeRequest {
        key: "a".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.revision(), 5);
    assert_eq!(
        get_all(&m, 3).unwrap(),
        vec![(b"a".to_vec(), b"2".to_vec(), 2, 3, 2)]
    );
    assert_eq!(
        get_all(&m, 5).unwrap(),
        vec![(b"b".to_vec(), b"1".to_vec(), 4, 4, 1)]
    );
    m.put(&put("a", "3")).unwrap();
    // A new generation after a delete starts at version 1 with a new create revision.
    assert_eq!(
        get_all(&m, 6).unwrap()[0],
        (b"a".to_vec(), b"3".to_vec(), 6, 6, 1)
    );
    m.compact(4).unwrap();
    assert_eq!(get_all(&m, 3), Err(V3Error::Compacted));
    assert_eq!(get_all(&m, 4).unwrap().len(), 2);
    assert_eq!(get_all(&m, 7), Err(V3Error::FutureRev));
    assert_eq!(m.compact(4), Err(V3Error::Compacted));
}

#[test]
fn leases_own_their_keys() {
    let mut m = Mvcc::default();
    m.lease_grant(7, 1).unwrap();
    assert_eq!(m.leases()[&7].ttl, MIN_LEASE_TTL);
    assert_eq!(m.lease_grant(7, 10), Err(V3Error::LeaseExist));
    let mut p = put("k", "v");
    p.lease = 7;
    m.put(&p).unwrap();
    p.lease = 8;
    assert_eq!(m.put(&p), Err(V3Error::LeaseNotFound));
    m.put(&put("other", "v")).unwrap();
    m.lease_revoke(7).unwrap();
    assert_eq!(get_all(&m, 0).unwrap().len(), 1);
    assert_eq!(m.lease_revoke(7), Err(V3Error::LeaseNotFound));
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Del(u8, bool),
    Txn(u8, u8, u8),
    Compact(u8),
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k % 5]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(k, r)| Op::Del(k, r)),
        2 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(k, v, w)| Op::Txn(k, v, w)),
        1 => any::<u8>().prop_map(Op::Compact),
    ]
}

fn apply(m: &mut Mvcc, op: &Op) -> Result<V3Result, V3Error> {
    match op {
        Op::Put(k, v) => m.put(&pb::PutRequest {
            key: key(*k),
            value: vec![*v],
            ..Default::default()
        }),
        Op::Del(k, range) => m.delete_range(&pb::DeleteRangeRequest {
            key: key(*k),
            range_end: if *range { vec![b'a' + 5] } else { Vec::new() },
            ..Default::default()
        }),
        Op::Txn(k, v, w) => m.txn(&pb::TxnRequest {
            compare: vec![pb::Compare {
                key: key(*k),
                target: pb::compare::CompareTarget::Value as i32,
                target_union: Some(pb::compare::TargetUnion::Value(vec![*v % 3])),
                ..Default::default()
            }],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: key(*k),
                    value: vec![*w],
                    ..Default::default()
                })),
            }],
            failure: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: key(w.wrapping_add(1)),
                        ..Default::default()
                    },
                )),
            }],
        }),
        Op::Compact(r) => {
            let rev = m.revision();
            m.compact(1 + (*r as i64) % rev)
        }
    }
}

proptest! {
    /// Every revision can be read back exactly as it was until it is compacted; revisions grow
    /// by one per effective write; replay and a snapshot round trip give the same state.
    #[test]
    fn mvcc_history_is_exact(ops in prop::collection::vec(op(), 1..60)) {
        let mut m = Mvcc::default();
        let mut seen: BTreeMap<i64, Vec<Seen>> = BTreeMap::new();
        seen.insert(1, Vec::new());
        for op in &ops {
            let before = m.revision();
            let r = apply(&mut m, op);
            let changed = !m.take_changes().is_empty();
            prop_assert_eq!(m.revision(), before + changed as i64);
            if r.is_ok() && changed {
                seen.insert(m.revision(), get_all(&m, 0).unwrap());
            }
            for (rev, snapshot) in &seen {
                match get_all(&m, *rev) {
                    Ok(now) => prop_assert_eq!(&now, snapshot, "revision {}", rev),
                    Err(e) => {
                        prop_assert_eq!(e, V3Error::Compacted);
                        prop_assert!(*rev < m.compact_revision());
                    }
                }
            }
        }
        let mut replay = Mvcc::default();
        for op in &ops {
            let _ = apply(&mut replay, op);
        }
        replay.take_changes();
        prop_assert_eq!(&replay, &m);
        let restored: Mvcc = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        prop_assert_eq!(&restored, &m);
    }
}
