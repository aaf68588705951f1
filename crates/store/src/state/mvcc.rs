//! The v3 keyspace as a deterministic state machine: revisions, key versions, a history of
//! events since the last compaction (for reads at old revisions and for watches), and leases.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::v3::pb::etcdserverpb as pb;
use crate::v3::pb::mvccpb;

/// Error kinds of etcd's v3 API; the gRPC layer maps them to etcd's codes and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum V3Error {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error(transparent)]
    Auth(#[from] super::auth::AuthError),
}

/// etcd's minimum lease TTL with the default election timeout (1.5 × 1 s, rounded up).
pub const MIN_LEASE_TTL: i64 = 2;
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub key: Vec<u8>,
    pub create: i64,
    pub modified: i64,
    pub version: i64,
    /// Shared by the current key, its history entry and the next change's `prev`: one copy of
    /// each value written, however many places hold it (serialized as a `Vec<u8>` is).
    pub value: Arc<[u8]>,
    pub lease: i64,
}

impl Kv {
    pub fn to_pb(&self) -> mvccpb::KeyValue {
        mvccpb::KeyValue {
            key: self.key.clone(),
            create_revision: self.create,
            mod_revision: self.modified,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

/// One change; a delete's `kv` holds only the key and the deleting revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub delete: bool,
    pub kv: Kv,
    pub prev: Option<Kv>,
}

impl Change {
    pub fn to_pb(&self, with_prev: bool) -> mvccpb::Event {
        mvccpb::Event {
            r#type: if self.delete {
                mvccpb::event::EventType::Delete as i32
            } else {
                mvccpb::event::EventType::Put as i32
            },
            kv: Some(self.kv.to_pb()),
            prev_kv: if with_prev {
                self.prev.as_ref().map(Kv::to_pb)
            } else {
                None
            },
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// JSON maps need string keys; keys are bytes, and each `Kv` carries its key anyway.
mod kvs_as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Kv;

    pub fn serialize<S: Serializer>(m: &BTreeMap<Vec<u8>, Kv>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Vec<u8>, Kv>, D::Error> {
        let v = Vec::<Kv>::deserialize(d)?;
        Ok(v.into_iter().map(|kv| (kv.key.clone(), kv)).collect())
    }
}

/// `[key, end)` with etcd's conventions: empty end = just `key`, `\0` end = everything from `key`.
pub fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        k >= key
    } else {
        k >= key && k < end
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mvcc {
    rev: i64,
    compact_rev: i64,
    #[serde(with = "kvs_as_list")]
    kvs: BTreeMap<Vec<u8>, Kv>,
    history: VecDeque<(i64, Vec<Change>)>,
    leases: BTreeMap<i64, Lease>,
    #[serde(skip)]
    pending: Vec<(i64, Vec<Change>)>,
}

impl Default for Mvcc {
    fn default() -> Self {
        Mvcc {
            rev: 1,
            compact_rev: 0,
            kvs: BTreeMap::new(),
            history: VecDeque::new(),
            leases: BTreeMap::new(),
            pending: Vec::new(),
        }
    }
}

/// The result of applying one v3 write.
#[derive(Debug, Clone, PartialEq)]
pub enum V3Result {
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compact,
    LeaseGrant { id: i64, ttl: i64 },
    LeaseRevoke,
}

/// A write in progress: every change it makes gets the same revision.
struct Write<'a> {
    m: &'a mut Mvcc,
    rev: i64,
    changes: Vec<Change>,
}

impl Write<'_> {
    fn put(&mut self, r: &pb::PutRequest) -> pb::PutResponse {
        let prev = self.m.kvs.get(&r.key).cloned();
        let value = match (&prev, r.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => Arc::from(r.value.as_slice()),
        };
        let lease = match (&prev, r.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => r.lease,
        };
        let kv = Kv {
            key: r.key.clone(),
            create: prev.as_ref().map_or(self.rev, |p| p.create),
            modified: self.rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        if let Some(p) = &prev {
            if p.lease != 0 && p.lease != lease {
                if let Some(l) = self.m.leases.get_mut(&p.lease) {
                    l.keys.remove(&r.key);
                }
            }
        }
        if lease != 0 {
            if let Some(l) = self.m.leases.get_mut(&lease) {
                l.keys.insert(r.key.clone());
            }
        }
        self.m.kvs.insert(r.key.clone(), kv.clone());
        self.changes.push(Change {
            delete: false,
            kv,
            prev: prev.clone(),
        });
        pb::PutResponse {
            header: None,
            prev_kv: if r.prev_kv {
                prev.map(|p| p.to_pb())
            } else {
                None
            },
        }
    }

    fn delete(&mut self, key: &[u8], end: &[u8], with_prev: bool) -> pb::DeleteRangeResponse {
        let keys: Vec<Vec<u8>> = self.m.keys_in(key, end).cloned().collect();
        let mut prev_kvs = Vec::new();
        for k in &keys {
            let prev = self.m.kvs.remove(k).expect("listed above");
            if prev.lease != 0 {
                if let Some(l) = self.m.leases.get_mut(&prev.lease) {
                    l.keys.remove(k);
                }
            }
            if with_prev {
                prev_kvs.push(prev.to_pb());
            }
            self.changes.push(Change {
                delete: true,
                kv: Kv {
                    key: k.clone(),
                    create: 0,
                    modified: self.rev,
                    version: 0,
                    value: Arc::from(&[][..]),
                    lease: 0,
                },
                prev: Some(prev),
            });
        }
        pb::DeleteRangeResponse {
            header: None,
            deleted: keys.len() as i64,
            prev_kvs,
        }
    }

    fn txn(&mut self, t: &pb::TxnRequest) -> Result<pb::TxnResponse, V3Error> {
        let succeeded = t.compare.iter().all(|c| self.m.compare(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        self.m.check_ops(ops)?;
        let mut responses = Vec::new();
        for op in ops {
            use pb::request_op::Request as Q;
            use pb::response_op::Response as A;
            let resp = match &op.request {
                Some(Q::RequestRange(r)) => A::ResponseRange(self.m.range(r)?),
                Some(Q::RequestPut(r)) => A::ResponsePut(self.put(r)),
                Some(Q::RequestDeleteRange(r)) => {
                    A::ResponseDeleteRange(self.delete(&r.key, &r.range_end, r.prev_kv))
                }
                Some(Q::RequestTxn(r)) => A::ResponseTxn(self.txn(r)?),
                None => continue,
            };
            responses.push(pb::ResponseOp {
                response: Some(resp),
            });
        }
        Ok(pb::TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn finish(self) {
        if !self.changes.is_empty() {
            self.m.rev = self.rev;
            self.m.history.push_back((self.rev, self.changes.clone()));
            self.m.pending.push((self.rev, self.changes));
        }
    }
}

impl Mvcc {
    pub fn revision(&self) -> i64 {
        self.rev
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }

    pub fn leases(&self) -> &BTreeMap<i64, Lease> {
        &self.leases
    }

    /// Changes made since the last call (revision, changes), for watchers.
    pub fn take_changes(&mut self) -> Vec<(i64, Vec<Change>)> {
        std::mem::take(&mut self.pending)
    }

    /// Changes at or after `from`, oldest first (for a watch that starts in the past).
    pub fn history_since(&self, from: i64) -> impl Iterator<Item = &(i64, Vec<Change>)> {
        self.history.iter().filter(move |(r, _)| *r >= from)
    }

    fn keys_in<'a>(
        &'a self,
        key: &'a [u8],
        end: &'a [u8],
    ) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        use std::ops::Bound;
        let upper = if end.is_empty() {
            Bound::Included(key.to_vec())
        } else if end == [0] {
            Bound::Unbounded
        } else if end <= key {
            Bound::Excluded(key.to_vec())
        } else {
            Bound::Excluded(end.to_vec())
        };
        self.kvs
            .range::<Vec<u8>, _>((Bound::Included(key.to_vec()), upper))
            .map(|(k, _)| k)
    }

    /// The key-value pairs in a range as of revision `rev` (rolled back through the history).
    fn kvs_at(&self, key: &[u8], end: &[u8], rev: i64) -> Vec<Kv> {
        if rev >= self.rev {
            return self
                .keys_in(key, end)
                .map(|k| self.kvs[k].clone())
                .collect();
        }
        let mut view: BTreeMap<Vec<u8>, Kv> = self
            .keys_in(key, end)
            .map(|k| (k.clone(), self.kvs[k].clone()))
            .collect();
        for (r, changes) in self.history.iter().rev() {
            if *r <= rev {
                break;
            }
            for c in changes.iter().rev() {
                if !in_range(&c.kv.key, key, end) {
                    continue;
                }
                match &c.prev {
                    Some(p) => view.insert(p.key.clone(), p.clone()),
                    None => view.remove(&c.kv.key),
                };
            }
        }
        view.into_values().collect()
    }

    /// etcd's `applyRange`.
    pub fn range(&self, r: &pb::RangeRequest) -> Result<pb::RangeResponse, V3Error> {
        use pb::range_request::{SortOrder, SortTarget};
        let rev = if r.revision <= 0 {
            self.rev
        } else {
            r.revision
        };
        if rev > self.rev {
            return Err(V3Error::FutureRev);
        }
        if rev < self.compact_rev {
            return Err(V3Error::Compacted);
        }
        let mut kvs = self.kvs_at(&r.key, &r.range_end, rev);
        let count = kvs.len() as i64;
        if r.count_only {
            return Ok(pb::RangeResponse {
                header: None,
                kvs: Vec::new(),
                more: false,
                count,
            });
        }
        kvs.retain(|kv| {
            (r.max_mod_revision == 0 || kv.modified <= r.max_mod_revision)
                && (r.min_mod_revision == 0 || kv.modified >= r.min_mod_revision)
                && (r.max_create_revision == 0 || kv.create <= r.max_create_revision)
                && (r.min_create_revision == 0 || kv.create >= r.min_create_revision)
        });
        let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
        let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
        if target != SortTarget::Key && order == SortOrder::None {
            order = SortOrder::Ascend;
        }
        if order != SortOrder::None {
            // Stable sorts over key order; descending keeps equal elements in key order, as
            // Go's (insertion) sort of etcd's key-ordered slice does for small results.
            let desc = order == SortOrder::Descend;
            kvs.sort_by(|a, b| {
                let o = match target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create.cmp(&b.create),
                    SortTarget::Mod => a.modified.cmp(&b.modified),
                    SortTarget::Value => a.value.cmp(&b.value),
                };
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() > r.limit as usize {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        Ok(pb::RangeResponse {
            header: None,
            kvs: kvs
                .into_iter()
                .map(|kv| {
                    let mut p = kv.to_pb();
                    if r.keys_only {
                        p.value.clear();
                    }
                    p
                })
                .collect(),
            more,
            count,
        })
    }

    /// etcd's `applyCompare`: every key in the range must satisfy it; a missing key compares as zeros.
    fn compare(&self, c: &pb::Compare) -> bool {
        use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let kvs = self.kvs_at(&c.key, &c.range_end, self.rev);
        let target = T::try_from(c.target).unwrap_or(T::Version);
        let result = R::try_from(c.result).unwrap_or(R::Equal);
        let one = |kv: &Kv| -> bool {
            let ord = match (target, &c.target_union) {
                (T::Version, Some(U::Version(v))) => kv.version.cmp(v),
                (T::Create, Some(U::CreateRevision(v))) => kv.create.cmp(v),
                (T::Mod, Some(U::ModRevision(v))) => kv.modified.cmp(v),
                (T::Value, Some(U::Value(v))) => kv.value[..].cmp(v.as_slice()),
                (T::Lease, Some(U::Lease(v))) => kv.lease.cmp(v),
                (T::Version | T::Create | T::Mod | T::Lease, None) => kv_field(kv, target).cmp(&0),
                _ => return false,
            };
            match result {
                R::Equal => ord.is_eq(),
                R::Greater => ord.is_gt(),
                R::Less => ord.is_lt(),
                R::NotEqual => ord.is_ne(),
            }
        };
        if kvs.is_empty() {
            if target == T::Value {
                return false;
            }
            return one(&Kv {
                key: c.key.clone(),
                create: 0,
                modified: 0,
                version: 0,
                value: Arc::from(&[][..]),
                lease: 0,
            });
        }
        kvs.iter().all(one)
    }

    /// Apply-time checks of a txn branch: leases exist, `ignore_*` keys exist, ranges are not compacted.
    fn check_ops(&self, ops: &[pb::RequestOp]) -> Result<(), V3Error> {
        use pb::request_op::Request as Q;
        for op in ops {
            match &op.request {
                Some(Q::RequestPut(p)) => self.check_put(p)?,
                Some(Q::RequestRange(r)) => {
                    if r.revision > self.rev {
                        return Err(V3Error::FutureRev);
                    }
                    if r.revision > 0 && r.revision < self.compact_rev {
                        return Err(V3Error::Compacted);
                    }
                }
                Some(Q::RequestTxn(t)) => {
                    self.check_ops(&t.success)?;
                    self.check_ops(&t.failure)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_put(&self, p: &pb::PutRequest) -> Result<(), V3Error> {
        if (p.ignore_value || p.ignore_lease) && !self.kvs.contains_key(&p.key) {
            return Err(V3Error::KeyNotFound);
        }
        if p.lease != 0 && !p.ignore_lease && !self.leases.contains_key(&p.lease) {
            return Err(V3Error::LeaseNotFound);
        }
        Ok(())
    }

    fn write(&mut self) -> Write<'_> {
        let rev = self.rev + 1;
        Write {
            m: self,
            rev,
            changes: Vec::new(),
        }
    }

    pub fn put(&mut self, r: &pb::PutRequest) -> Result<V3Result, V3Error> {
        self.check_put(r)?;
        let mut w = self.write();
        let resp = w.put(r);
        w.finish();
        Ok(V3Result::Put(resp))
    }

    pub fn delete_range(&mut self, r: &pb::DeleteRangeRequest) -> Result<V3Result, V3Error> {
        let mut w = self.write();
        let resp = w.delete(&r.key, &r.range_end, r.prev_kv);
        w.finish();
        Ok(V3Result::DeleteRange(resp))
    }

    pub fn txn(&mut self, t: &pb::TxnRequest) -> Result<V3Result, V3Error> {
        let mut w = self.write();
        let resp = w.txn(t)?;
        w.finish();
        Ok(V3Result::Txn(resp))
    }

    pub fn compact(&mut self, rev: i64) -> Result<V3Result, V3Error> {
        if rev <= self.compact_rev {
            return Err(V3Error::Compacted);
        }
        if rev > self.rev {
            return Err(V3Error::FutureRev);
        }
        self.compact_rev = rev;
        // The compacted revision itself stays readable (and watchable), as in etcd.
        while self.history.front().is_some_and(|(r, _)| *r < rev) {
            self.history.pop_front();
        }
        Ok(V3Result::Compact)
    }

    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<V3Result, V3Error> {
        if ttl > MAX_LEASE_TTL {
            return Err(V3Error::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(V3Error::LeaseExist);
        }
        let ttl = ttl.max(MIN_LEASE_TTL);
        self.leases.insert(
            id,
            Lease {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(V3Result::LeaseGrant { id, ttl })
    }

    /// Revokes a lease, deleting its keys in one revision.
    pub fn lease_revoke(&mut self, id: i64) -> Result<V3Result, V3Error> {
        let lease = self.leases.remove(&id).ok_or(V3Error::LeaseNotFound)?;
        let mut w = self.write();
        for k in &lease.keys {
            w.delete(k, &[], false);
        }
        w.finish();
        Ok(V3Result::LeaseRevoke)
    }
}

fn kv_field(kv: &Kv, t: pb::compare::CompareTarget) -> i64 {
    use pb::compare::CompareTarget as T;
    match t {
        T::Version => kv.version,
        T::Create => kv.create,
        T::Mod => kv.modified,
        T::Lease => kv.lease,
        T::Value => 0,
    }
}

#[cfg(test)]
mod tests;
