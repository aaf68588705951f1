//! Live membership changes (etcd's MemberAdd/Remove/Update/Promote) through openraft.
//!
//! A member is added as a Raft learner: it receives the log (or a snapshot) without counting
//! towards the quorum, so adding a member that is not started yet cannot stall the cluster. A
//! member added as a voter (etcd's default) is promoted by the leader once it has caught up
//! ([`promote_loop`]); one added with `--learner` stays a learner until MemberPromote. Changes run
//! on the leader; a follower forwards them over the peer port and answers once it has applied
//! the change itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::PeerNode;
use crate::core::Core;

/// A requested change, as it travels from a follower to the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Add {
        id: u64,
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    Promote {
        id: u64,
    },
}

/// Why a change was refused; the texts are etcd's gRPC errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ChangeError {
    #[error("etcdserver: member not found")]
    NotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: member ID already exist")]
    IdExists,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: {0}")]
    Raft(String),
}

/// etcd promotes a learner whose log is within 10% of the leader's.
fn caught_up(matched: u64, leader_last: u64) -> bool {
    matched as f64 >= leader_last as f64 * 0.9
}

/// Applies a change here (this member must lead); returns the log index it committed at.
pub async fn change_here(core: &Core, change: Change) -> Result<u64, ChangeError> {
    let raft = core.raft();
    let metrics = raft.metrics().borrow().clone();
    if metrics.current_leader != Some(core.id) {
        return Err(ChangeError::NoLeader);
    }
    let membership = metrics.membership_config.membership().clone();
    let node = |id: &u64| membership.get_node(id).cloned();
    let is_learner = |id: &u64| membership.learner_ids().any(|l| l == *id);
    let url_taken = |urls: &[String], except: Option<u64>| {
        membership
            .nodes()
            .filter(|(id, _)| Some(**id) != except)
            .any(|(_, n)| n.peer_urls.iter().any(|u| urls.contains(u)))
    };
    let fail =
        |e: openraft::error::RaftError<u64, openraft::error::ClientWriteError<u64, PeerNode>>| {
            if e.forward_to_leader::<PeerNode>().is_some() {
                ChangeError::NoLeader
            } else {
                ChangeError::Raft(e.to_string())
            }
        };
    let r = match change {
        Change::Add {
            id,
            peer_urls,
            learner,
        } => {
            if url_taken(&peer_urls, None) {
                return Err(ChangeError::PeerUrlExists);
            }
            if node(&id).is_some() {
                return Err(ChangeError::IdExists);
            }
            let node = PeerNode {
                name: String::new(),
                peer_urls,
                learner,
            };
            raft.add_learner(id, node, false).await.map_err(fail)?
        }
        Change::Remove { id } => {
            if node(&id).is_none() {
                return Err(ChangeError::NotFound);
            }
            let ids = BTreeSet::from([id]);
            let change = if is_learner(&id) {
                ChangeMembers::RemoveNodes(ids)
            } else {
                ChangeMembers::RemoveVoters(ids)
            };
            let r = raft.change_membership(change, false).await.map_err(fail)?;
            // The leader stops replicating to a removed member, so it would never apply its
            // removal: tell it, so that it stops (as etcd's removed members do).
            if let Some(gone) = node(&id) {
                if id != core.id {
                    if let Err(e) = core.net.tell_removed(&gone, id).await {
                        tracing::info!(error = %e, "telling a removed member; it may keep running");
                    }
                }
            }
            r
        }
        Change::Update { id, peer_urls } => {
            let Some(mut n) = node(&id) else {
                return Err(ChangeError::NotFound);
            };
            if url_taken(&peer_urls, Some(id)) {
                return Err(ChangeError::PeerUrlExists);
            }
            n.peer_urls = peer_urls;
            let change = ChangeMembers::SetNodes(BTreeMap::from([(id, n)]));
            raft.change_membership(change, false).await.map_err(fail)?
        }
        Change::Promote { id } => {
            if node(&id).is_none() {
                return Err(ChangeError::NotFound);
            }
            if !is_learner(&id) {
                return Err(ChangeError::NotLearner);
            }
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index);
            let last = metrics.last_log_index.unwrap_or(0);
            if !matched.is_some_and(|m| caught_up(m, last)) {
                return Err(ChangeError::LearnerNotReady);
            }
            let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
            raft.change_membership(change, false).await.map_err(fail)?
        }
    };
    Ok(r.log_id.index)
}

/// Applies a change through whoever leads, and returns once this member has applied it.
pub async fn change(core: &Core, change: Change) -> Result<(), ChangeError> {
    let index = core.change_membership(change).await?;
    core.raft()
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(index), "the membership change")
        .await
        .map_err(|e| ChangeError::Raft(e.to_string()))?;
    Ok(())
}

/// On the leader: promotes learners that were added as voters once they have caught up.
pub async fn promote_loop(core: Arc<Core>) {
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tick.tick().await;
        let m = core.raft().metrics().borrow().clone();
        if m.current_leader != Some(core.id) {
            continue;
        }
        let membership = m.membership_config.membership();
        let last = m.last_log_index.unwrap_or(0);
        let ready: Vec<u64> = membership
            .learner_ids()
            .filter(|id| membership.get_node(id).is_some_and(|n| !n.learner))
            .filter(|id| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .is_some_and(|l| caught_up(l.index, last))
            })
            .collect();
        for id in ready {
            match change_here(&core, Change::Promote { id }).await {
                Ok(_) => {
                    tracing::info!(member = %format!("{id:x}"), "promoted a caught-up learner to voter")
                }
                Err(e) => tracing::debug!(error = %e, "promoting a learner"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_waits_for_ninety_percent_of_the_log() {
        assert!(caught_up(90, 100));
        assert!(!caught_up(89, 100));
        assert!(caught_up(0, 0));
    }
}
