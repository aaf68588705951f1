//! The replicated state machine: commands in, results out, no I/O and no clock of its own.
//!
//! Everything a write needs (including the proposer's clock) travels in the [`Command`], so that
//! replaying the durable log — or, later, applying Raft entries on every member — gives the same state.

pub mod auth;
pub mod error;
pub mod event;
pub mod history;
pub mod mvcc;
pub mod stats;
pub mod tree;
pub mod v2store;
pub mod watch;

use serde::{Deserialize, Serialize};

use error::V2Error;
use event::Event;
use v2store::V2Store;

/// A v2 keys request as it goes through the log (etcd's `etcdserverpb.Request`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Request {
    pub method: V2Method,
    pub path: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub dir: bool,
    #[serde(default)]
    pub prev_value: String,
    #[serde(default)]
    pub prev_index: u64,
    #[serde(default)]
    pub prev_exist: Option<bool>,
    #[serde(default)]
    pub recursive: bool,
    #[serde(default)]
    pub sorted: bool,
    /// Absolute expiry (unix nanoseconds) from `ttl`.
    #[serde(default)]
    pub expiration: Option<i64>,
    #[serde(default)]
    pub refresh: bool,
    /// The proposer's clock, unix nanoseconds.
    pub now: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum V2Method {
    #[default]
    Put,
    Post,
    Delete,
    /// A `quorum=true` read: goes through the log so it is linearizable.
    QuorumGet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    V2(V2Request),
    /// Remove v2 keys whose TTL ran out at or before `now`.
    V2Expire {
        now: i64,
    },
    V3(V3Request),
    /// A client's v3 request with the user of its auth token (`None`: no token), checked
    /// against the permissions when applied, as etcd's `authApplierV3` does.
    V3As {
        user: Option<String>,
        req: V3Request,
    },
    /// An auth request (users, roles, enable/disable, authenticate) by a token's user.
    Auth {
        user: Option<String>,
        req: auth::AuthRequest,
    },
    /// A member's client URLs, published through the log once it runs (as etcd's publish).
    Publish {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
}

/// A v3 write as it goes through the log: the client's protobuf request, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum V3Request {
    Put(#[serde(with = "b64")] Vec<u8>),
    DeleteRange(#[serde(with = "b64")] Vec<u8>),
    Txn(#[serde(with = "b64")] Vec<u8>),
    Compact(i64),
    LeaseGrant { id: i64, ttl: i64 },
    LeaseRevoke(i64),
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[allow(clippy::large_enum_variant)] // answered once per command, never stored
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    V2(Result<Event, V2Error>),
    Expired(usize),
    /// The result and the store revision right after it.
    V3(Result<(mvcc::V3Result, i64), mvcc::V3Error>),
    Published,
    Auth(Result<auth::AuthResult, auth::AuthError>),
}

/// What a member published about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub name: String,
    pub client_urls: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub v2: V2Store,
    #[serde(default)]
    pub v3: mvcc::Mvcc,
    #[serde(default)]
    pub members: std::collections::BTreeMap<u64, Published>,
    #[serde(default)]
    pub auth: auth::AuthStore,
}

impl State {
    pub fn apply(&mut self, cmd: &Command) -> Output {
        match cmd {
            Command::V2(r) => Output::V2(self.apply_v2(r)),
            Command::V2Expire { now } => Output::Expired(self.v2.delete_expired(*now).len()),
            Command::V3(r) => Output::V3(self.apply_v3(r).map(|x| (x, self.v3.revision()))),
            Command::V3As { user, req } => {
                let checked = self.auth.check_v3(user.as_deref(), req, &self.v3);
                Output::V3(
                    checked
                        .map_err(mvcc::V3Error::from)
                        .and_then(|()| self.apply_v3(req))
                        .map(|x| (x, self.v3.revision())),
                )
            }
            Command::Auth { user, req } => Output::Auth(self.auth.apply(user.as_deref(), req)),
            Command::Publish {
                id,
                name,
                client_urls,
            } => {
                let p = Published {
                    name: name.clone(),
                    client_urls: client_urls.clone(),
                };
                self.members.insert(*id, p);
                Output::Published
            }
        }
    }

    fn apply_v3(&mut self, r: &V3Request) -> Result<mvcc::V3Result, mvcc::V3Error> {
        use prost::Message;

        use crate::v3::pb::etcdserverpb as pb;
        // Requests were encoded by us from decoded messages, so decoding cannot fail short of a
        // corrupt log; a corrupt entry applies as an empty request rather than diverging silently.
        let m = &mut self.v3;
        match r {
            V3Request::Put(b) => m.put(&pb::PutRequest::decode(b.as_slice()).unwrap_or_default()),
            V3Request::DeleteRange(b) => {
                m.delete_range(&pb::DeleteRangeRequest::decode(b.as_slice()).unwrap_or_default())
            }
            V3Request::Txn(b) => m.txn(&pb::TxnRequest::decode(b.as_slice()).unwrap_or_default()),
            V3Request::Compact(rev) => m.compact(*rev),
            V3Request::LeaseGrant { id, ttl } => m.lease_grant(*id, *ttl),
            V3Request::LeaseRevoke(id) => m.lease_revoke(*id),
        }
    }

    /// etcd's `applyV2`: which store operation a method and its conditions mean.
    fn apply_v2(&mut self, r: &V2Request) -> Result<Event, V2Error> {
        let s = &mut self.v2;
        let (exp, now) = (r.expiration, r.now);
        let compare = r.prev_index > 0 || !r.prev_value.is_empty();
        match r.method {
            V2Method::Post => s.create(&r.path, r.dir, &r.value, true, exp, now),
            V2Method::Put => match r.prev_exist {
                Some(true) if !compare => s.update(&r.path, &r.value, exp, r.refresh, now),
                Some(true) => s.compare_and_swap(
                    &r.path,
                    &r.prev_value,
                    r.prev_index,
                    &r.value,
                    exp,
                    r.refresh,
                    now,
                ),
                Some(false) => s.create(&r.path, r.dir, &r.value, false, exp, now),
                None if compare => s.compare_and_swap(
                    &r.path,
                    &r.prev_value,
                    r.prev_index,
                    &r.value,
                    exp,
                    r.refresh,
                    now,
                ),
                None => s.set(&r.path, r.dir, &r.value, exp, r.refresh, now),
            },
            V2Method::Delete if compare => {
                s.compare_and_delete(&r.path, &r.prev_value, r.prev_index, now)
            }
            V2Method::Delete => s.delete(&r.path, r.dir, r.recursive, now),
            V2Method::QuorumGet => s.get(&r.path, r.recursive, now),
        }
    }
}

#[cfg(test)]
mod tests;
