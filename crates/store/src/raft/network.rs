//! Raft RPC to other members: JSON over HTTP POSTs to their peer URL (see [`super::peer`]).
//! Also the two calls a follower makes to the leader for its clients: forwarding a batch of
//! writes, and asking for a read index (etcd's ReadIndex) for a linearizable read.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Batch, PeerNode, TypeConfig};

/// Errors of the client-facing peer calls (forward, read index).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("member {0} has no peer URL")]
    NoUrl(String),
    #[error("reaching the leader at {0}")]
    Http(String, #[source] reqwest::Error),
    #[error("the leader refused: {0}")]
    Refused(String),
}

fn url_of(node: &PeerNode) -> Option<&str> {
    node.peer_urls.first().map(|u| u.trim_end_matches('/'))
}

#[derive(Clone)]
pub struct Network {
    pub http: reqwest::Client,
}

impl Network {
    /// The peer client; `https://` peer URLs use the peer TLS flags (CA as root, certificate as
    /// client identity), as etcd's peer transport.
    pub fn new(tls: &crate::tls::Flags) -> Result<Self, crate::tls::TlsError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        Ok(Network {
            http: tls
                .client(builder)?
                .build()
                .expect("building the peer HTTP client"),
        })
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: &PeerNode,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let base = url_of(node).ok_or_else(|| PeerError::NoUrl(node.name.clone()))?;
        let url = format!("{base}{path}");
        let res = self
            .http
            .post(&url)
            .json(req)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| PeerError::Http(url.clone(), e))?;
        if !res.status().is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(PeerError::Refused(text));
        }
        res.json().await.map_err(|e| PeerError::Http(url, e))
    }

    /// Has the leader commit `batch`; returns once it is committed there.
    pub async fn forward(&self, leader: &PeerNode, batch: &Batch) -> Result<(), PeerError> {
        self.post(leader, "/raft/propose", batch, Duration::from_secs(10))
            .await
    }

    /// Has the leader make a membership change; its answer, or how reaching it failed.
    pub async fn member_change(
        &self,
        leader: &PeerNode,
        change: &super::membership::Change,
    ) -> Result<Result<u64, super::membership::ChangeError>, PeerError> {
        self.post(
            leader,
            "/raft/member-change",
            change,
            Duration::from_secs(30),
        )
        .await
    }

    /// Tells member `id` that it was removed from the cluster.
    pub async fn tell_removed(&self, node: &PeerNode, id: u64) -> Result<(), PeerError> {
        self.post(node, "/raft/removed", &id, Duration::from_secs(2))
            .await
    }

    /// The cluster ID a member reports (how a member joining an existing cluster learns it).
    pub async fn cluster_id(&self, url: &str) -> Result<u64, PeerError> {
        let node = PeerNode {
            peer_urls: vec![url.to_string()],
            ..Default::default()
        };
        self.post(&node, "/raft/cluster-id", &(), Duration::from_secs(2))
            .await
    }

    /// The leader's commit index, confirmed by a quorum: applying up to it makes a read linearizable.
    pub async fn read_index(&self, leader: &PeerNode) -> Result<u64, PeerError> {
        self.post(leader, "/raft/read-index", &(), Duration::from_secs(5))
            .await
    }
}

pub struct Connection {
    net: Network,
    target: u64,
    node: PeerNode,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> Connection {
        Connection {
            net: self.clone(),
            target,
            node: node.clone(),
        }
    }
}

impl Connection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, PeerNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let r: Result<Result<Resp, RaftError<u64, E>>, PeerError> = self
            .net
            .post(&self.node, path, req, option.hard_ttl())
            .await;
        match r {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            // Unreachable makes openraft back off instead of retrying at once.
            Err(e @ PeerError::Http(..)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, PeerNode, RaftError<u64>>> {
        self.call("/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, PeerNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, PeerNode, RaftError<u64>>> {
        self.call("/raft/vote", &rpc, &option).await
    }
}
