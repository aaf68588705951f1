//! The Lease service: grant and revoke through the log; keep-alives renew the leader-local
//! deadline only (as in etcd, renewals are not replicated).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::kv::propose;
use super::pb::etcdserverpb as pb;
use crate::core::{now_nanos, Core};
use crate::state::mvcc::V3Result;
use crate::state::V3Request;

pub struct Lease {
    pub core: Arc<Core>,
}

impl Lease {
    fn header(&self) -> pb::ResponseHeader {
        let rev = self.core.lock().state.v3.revision();
        (self.core.header)(rev)
    }

    /// Renews a lease: its TTL, or 0 if it does not exist (etcd's answer for a dead lease).
    fn renew(&self, id: i64) -> i64 {
        let mut inner = self.core.lock();
        let Some(ttl) = inner.state.v3.leases().get(&id).map(|l| l.ttl) else {
            return 0;
        };
        inner
            .lease_deadlines
            .insert(id, Instant::now() + Duration::from_secs(ttl as u64));
        ttl
    }
}

/// A fresh lease ID: positive, unused, unpredictable enough (etcd mixes member ID and time).
fn new_lease_id(core: &Core) -> i64 {
    let inner = core.lock();
    let mut x = now_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = (x >> 1) as i64;
        if id != 0 && !inner.state.v3.leases().contains_key(&id) {
            return id;
        }
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lease_server::Lease for Lease {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let user = super::auth::caller(&self.core, req.metadata())?;
        let r = req.into_inner();
        let id = if r.id == 0 {
            new_lease_id(&self.core)
        } else {
            r.id
        };
        match propose(&self.core, user, V3Request::LeaseGrant { id, ttl: r.ttl }).await? {
            (V3Result::LeaseGrant { id, ttl }, h) => Ok(Response::new(pb::LeaseGrantResponse {
                header: Some(h),
                id,
                ttl,
                error: String::new(),
            })),
            (other, _) => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let user = super::auth::caller(&self.core, req.metadata())?;
        let revoke = V3Request::LeaseRevoke(req.into_inner().id);
        let (_, h) = propose(&self.core, user, revoke).await?;
        Ok(Response::new(pb::LeaseRevokeResponse { header: Some(h) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let this = Lease {
            core: Arc::clone(&self.core),
        };
        let out = req.into_inner().map(move |r| {
            let r = r?;
            let ttl = this.renew(r.id);
            Ok(pb::LeaseKeepAliveResponse {
                header: Some(this.header()),
                id: r.id,
                ttl,
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        let inner = self.core.lock();
        let rev = inner.state.v3.revision();
        let mut resp = pb::LeaseTimeToLiveResponse {
            header: Some((self.core.header)(rev)),
            id: r.id,
            ttl: -1,
            granted_ttl: 0,
            keys: Vec::new(),
        };
        if let Some(l) = inner.state.v3.leases().get(&r.id) {
            let left = inner.lease_deadlines.get(&r.id).map_or(0, |d| {
                d.saturating_duration_since(Instant::now()).as_secs() as i64
            });
            resp.ttl = left;
            resp.granted_ttl = l.ttl;
            if r.keys {
                resp.keys = l.keys.iter().cloned().collect();
            }
        }
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let inner = self.core.lock();
        let rev = inner.state.v3.revision();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some((self.core.header)(rev)),
            leases: inner
                .state
                .v3
                .leases()
                .keys()
                .map(|id| pb::LeaseStatus { id: *id })
                .collect(),
        }))
    }
}
