//! The Cluster and Maintenance services (the member list is Raft's membership).

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;

use tonic::{Request, Response, Status};

use super::pb::etcdserverpb as pb;
use crate::core::Core;
use crate::member::Member;
use crate::raft::membership::{self, Change, ChangeError};
use crate::v2::misc::SERVER_VERSION;

pub struct Cluster {
    pub core: Arc<Core>,
    pub member: Arc<Member>,
    pub data_dir: PathBuf,
}

impl Cluster {
    fn header(&self) -> pb::ResponseHeader {
        let rev = self.core.lock().state.v3.revision();
        (self.core.header)(rev)
    }

    fn members_pb(&self) -> Vec<pb::Member> {
        self.core
            .members_with(&self.member)
            .into_iter()
            .map(|m| pb::Member {
                id: m.id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect()
    }

    fn db_size(&self) -> i64 {
        std::fs::metadata(self.data_dir.join("member/raft.redb")).map_or(0, |m| m.len() as i64)
    }

    fn kv_hash(&self) -> u32 {
        let inner = self.core.lock();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_vec(&inner.state.v3)
            .unwrap_or_default()
            .hash(&mut h);
        h.finish() as u32
    }
}

/// etcd's gRPC codes for refused membership changes.
fn change_status(e: ChangeError) -> Status {
    let msg = e.to_string();
    match e {
        ChangeError::NotFound => Status::not_found(msg),
        ChangeError::PeerUrlExists
        | ChangeError::IdExists
        | ChangeError::NotLearner
        | ChangeError::LearnerNotReady => Status::failed_precondition(msg),
        ChangeError::NoLeader | ChangeError::Raft(_) => Status::unavailable(msg),
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for Arc<Cluster> {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = req.into_inner();
        if r.peer_ur_ls.is_empty() {
            return Err(Status::invalid_argument("etcdserver: no peer URLs given"));
        }
        if let Some(bad) = r
            .peer_ur_ls
            .iter()
            .find(|u| crate::config::host_port(u).is_none())
        {
            return Err(Status::invalid_argument(format!(
                "etcdserver: invalid peer URL {bad:?} (expected http://host:port)"
            )));
        }
        let id = self.member.id_for(&r.peer_ur_ls);
        let change = Change::Add {
            id,
            peer_urls: r.peer_ur_ls.clone(),
            learner: r.is_learner,
        };
        membership::change(&self.core, change)
            .await
            .map_err(change_status)?;
        let members = self.members_pb();
        let member = members.iter().find(|m| m.id == id).cloned();
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.header()),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        membership::change(&self.core, Change::Remove { id })
            .await
            .map_err(change_status)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.header()),
            members: self.members_pb(),
        }))
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        let change = Change::Update {
            id: r.id,
            peer_urls: r.peer_ur_ls,
        };
        membership::change(&self.core, change)
            .await
            .map_err(change_status)?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(self.header()),
            members: self.members_pb(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        membership::change(&self.core, Change::Promote { id })
            .await
            .map_err(change_status)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.header()),
            members: self.members_pb(),
        }))
    }

    async fn member_list(
        &self,
        _: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.header()),
            members: self.members_pb(),
        }))
    }
}

/// etcd streams its snapshot in 32 KiB pieces.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for Arc<Cluster> {
    type SnapshotStream = SnapshotStream;

    /// The applied state as a snapshot file's bytes (see [`crate::snapshot`]): the data in
    /// pieces counting down `remaining_bytes`, then its sha256 with `remaining_bytes` 0.
    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        // Only root, once auth is enabled (etcd's authMaintenanceServer).
        super::auth::require_admin(&self.core, &req)?;
        let state = self.core.lock().state.clone();
        let data = tokio::task::spawn_blocking(move || crate::snapshot::encode(&state))
            .await
            .map_err(|e| Status::internal(format!("encoding the snapshot: {e}")))?
            .map_err(|e| Status::internal(format!("encoding the snapshot: {e}")))?;
        let hash = crate::snapshot::digest(&data);
        let mut left = data.len();
        let mut msgs: Vec<Result<pb::SnapshotResponse, Status>> = data
            .chunks(SNAPSHOT_CHUNK)
            .map(|blob| {
                left -= blob.len();
                Ok(pb::SnapshotResponse {
                    header: None,
                    remaining_bytes: left as u64,
                    blob: blob.to_vec(),
                })
            })
            .collect();
        msgs.push(Ok(pb::SnapshotResponse {
            header: None,
            remaining_bytes: 0,
            blob: hash.to_vec(),
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }

    async fn alarm(
        &self,
        _: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        Ok(Response::new(pb::AlarmResponse {
            header: Some(self.header()),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let applied = self.core.lock().applied;
        let size = self.db_size();
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.header()),
            version: SERVER_VERSION.into(),
            db_size: size,
            leader: self.core.leader_id().unwrap_or(0),
            raft_index: applied,
            raft_term: self.core.term(),
            raft_applied_index: applied,
            errors: Vec::new(),
            db_size_in_use: size,
            is_learner: self
                .core
                .members()
                .iter()
                .any(|m| m.id == self.member.id && m.is_learner),
        }))
    }

    async fn defragment(
        &self,
        req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        // Only root, once auth is enabled (etcd's authMaintenanceServer).
        super::auth::require_admin(&self.core, &req)?;
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(self.header()),
        }))
    }

    async fn hash(
        &self,
        req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        // Only root, once auth is enabled (etcd's authMaintenanceServer).
        super::auth::require_admin(&self.core, &req)?;
        Ok(Response::new(pb::HashResponse {
            header: Some(self.header()),
            hash: self.kv_hash(),
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        // Only root, once auth is enabled (etcd's authMaintenanceServer).
        super::auth::require_admin(&self.core, &req)?;
        let compact = self.core.lock().state.v3.compact_revision();
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.header()),
            hash: self.kv_hash(),
            // etcd's store starts at -1 (never compacted); ours at 0.
            compact_revision: if compact == 0 { -1 } else { compact },
        }))
    }
}
