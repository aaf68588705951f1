//! The KV service: reads from the applied state, writes through the log.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use super::pb::etcdserverpb as pb;
use super::{auth, check, errors};
use crate::core::Core;
use crate::state::mvcc::V3Result;
use crate::state::{Command, Output, V3Request};

pub struct Kv {
    pub core: Arc<Core>,
    pub max_txn_ops: usize,
}

/// Proposes a client's v3 write (made as `user`, checked when applied) and returns its result
/// with the header at the revision after it.
pub async fn propose(
    core: &Core,
    user: Option<String>,
    req: V3Request,
) -> Result<(V3Result, pb::ResponseHeader), Status> {
    let applied = core
        .propose(Command::V3As { user, req })
        .await
        .map_err(|_| errors::stopped())?;
    match applied.output {
        Output::V3(Ok((r, rev))) => Ok((r, (core.header)(rev))),
        Output::V3(Err(e)) => Err(errors::status(e)),
        other => Err(Status::internal(format!("unexpected result {other:?}"))),
    }
}

/// Stamps the header into a txn response; nested responses carry only the revision, as in etcd.
fn stamp_txn(t: &mut pb::TxnResponse, h: &pb::ResponseHeader) {
    t.header = Some(*h);
    let h = &pb::ResponseHeader {
        revision: h.revision,
        ..Default::default()
    };
    stamp_inner(t, h);
}

fn stamp_inner(t: &mut pb::TxnResponse, h: &pb::ResponseHeader) {
    for r in &mut t.responses {
        use pb::response_op::Response as A;
        match &mut r.response {
            Some(A::ResponseRange(x)) => x.header = Some(*h),
            Some(A::ResponsePut(x)) => x.header = Some(*h),
            Some(A::ResponseDeleteRange(x)) => x.header = Some(*h),
            Some(A::ResponseTxn(x)) => {
                x.header = Some(*h);
                stamp_inner(x, h);
            }
            None => {}
        }
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for Kv {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let user = auth::caller(&self.core, req.metadata())?;
        let r = req.into_inner();
        check::range(&r)?;
        // Linearizable: first apply everything the leader had committed (ReadIndex).
        // Serializable: whatever this member has applied.
        if !r.serializable {
            self.core
                .read_barrier()
                .await
                .map_err(|_| errors::no_leader())?;
        }
        let (res, rev) = {
            let inner = self.core.lock();
            inner
                .state
                .auth
                .check_range(user.as_deref(), &r.key, &r.range_end)
                .map_err(errors::auth)?;
            (inner.state.v3.range(&r), inner.state.v3.revision())
        };
        let mut res = res.map_err(errors::status)?;
        res.header = Some((self.core.header)(rev));
        Ok(Response::new(res))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let user = auth::caller(&self.core, req.metadata())?;
        let r = req.into_inner();
        check::put(&r)?;
        match propose(&self.core, user, V3Request::Put(r.encode_to_vec())).await? {
            (V3Result::Put(mut p), h) => {
                p.header = Some(h);
                Ok(Response::new(p))
            }
            (other, _) => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let user = auth::caller(&self.core, req.metadata())?;
        let r = req.into_inner();
        check::delete(&r)?;
        match propose(&self.core, user, V3Request::DeleteRange(r.encode_to_vec())).await? {
            (V3Result::DeleteRange(mut d), h) => {
                d.header = Some(h);
                Ok(Response::new(d))
            }
            (other, _) => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let user = auth::caller(&self.core, req.metadata())?;
        let r = req.into_inner();
        check::txn(&r, self.max_txn_ops)?;
        match propose(&self.core, user, V3Request::Txn(r.encode_to_vec())).await? {
            (V3Result::Txn(mut t), h) => {
                stamp_txn(&mut t, &h);
                Ok(Response::new(t))
            }
            (other, _) => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let user = auth::caller(&self.core, req.metadata())?;
        let r = req.into_inner();
        let (_, h) = propose(&self.core, user, V3Request::Compact(r.revision)).await?;
        Ok(Response::new(pb::CompactionResponse { header: Some(h) }))
    }
}
