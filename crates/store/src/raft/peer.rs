//! The peer port: openraft's RPCs from other members, and the leader's side of forwarded writes
//! and read-index requests. Malformed bodies get axum's 4xx; the member keeps serving.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use super::{Batch, TypeConfig};
use crate::core::Core;

pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/propose", post(propose))
        .route("/raft/read-index", post(read_index))
        .route("/raft/member-change", post(member_change))
        .route("/raft/cluster-id", post(cluster_id))
        .route("/raft/removed", post(removed))
        .with_state(core)
}

async fn append(
    State(core): State<Arc<Core>>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    Json(core.raft().append_entries(req).await).into_response()
}

async fn vote(State(core): State<Arc<Core>>, Json(req): Json<VoteRequest<u64>>) -> Response {
    Json(core.raft().vote(req).await).into_response()
}

async fn snapshot(
    State(core): State<Arc<Core>>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    Json(core.raft().install_snapshot(req).await).into_response()
}

/// A follower's batch: committed here (this member must be the leader), results applied there.
async fn propose(State(core): State<Arc<Core>>, Json(batch): Json<Batch>) -> Response {
    match core.raft().client_write(batch).await {
        Ok(_) => Json(()).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// A follower's membership change (MemberAdd and friends): made here, as the leader.
async fn member_change(
    State(core): State<Arc<Core>>,
    Json(change): Json<super::membership::Change>,
) -> Response {
    Json(super::membership::change_here(&core, change).await).into_response()
}

/// The leader removed `id` from the cluster: if that is us, stop.
async fn removed(State(core): State<Arc<Core>>, Json(id): Json<u64>) -> Response {
    if id != core.id {
        return (
            StatusCode::BAD_REQUEST,
            format!("this is member {:x}, not {id:x}", core.id),
        )
            .into_response();
    }
    core.removed.notify_one();
    Json(()).into_response()
}

async fn cluster_id(State(core): State<Arc<Core>>) -> Response {
    Json((core.header)(0).cluster_id).into_response()
}

async fn read_index(State(core): State<Arc<Core>>) -> Response {
    match core.raft().ensure_linearizable().await {
        Ok(log_id) => Json(log_id.map_or(0, |l| l.index)).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
