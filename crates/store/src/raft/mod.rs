//! Consensus through openraft: our log on redb ([`log_store`]), the existing state machine
//! ([`state_machine`]), peer RPC as JSON over HTTP on the peer port ([`network`], [`peer`]).
//!
//! A log entry is a [`Batch`] of commands (one fsync and one replication round for everything
//! queued while the previous batch was in flight). Results are not sent back through openraft:
//! every member applies every entry, and the member that proposed a batch (`origin`, `seq`) hands
//! the results of its own application to the waiting callers. A follower therefore forwards a
//! batch to the leader and answers from its own state machine once the entry is applied there.

// openraft's traits fix the (large) StorageError as the error type of every storage call.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod membership;
pub mod network;
pub mod peer;
pub mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::state::Command;

/// A member as the Raft membership knows it: its name and peer URLs (client URLs are published
/// through the log, as etcd does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Added as a learner on purpose (`member add --learner`): not promoted automatically.
    #[serde(default)]
    pub learner: bool,
}

/// One log entry's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The member that proposed it and its sequence number there: who waits for the results.
    pub origin: u64,
    pub seq: u64,
    pub cmds: Vec<Command>,
}

/// Results travel outside openraft (see the module docs): the response is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Batch,
        R = Ack,
        NodeId = u64,
        Node = PeerNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type StorageError = openraft::StorageError<u64>;
pub type Entry = openraft::Entry<TypeConfig>;

/// Wraps any error as openraft's storage I/O error.
pub fn storage_error(
    make: fn(openraft::AnyError) -> openraft::StorageIOError<u64>,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    make(openraft::AnyError::new(e)).into()
}
