//! The existing deterministic state machine as openraft's: entries are applied to the shared
//! [`Core`] state (readers, watchers and waiting proposers see them at once); snapshots are the
//! state's JSON (the format single-member snapshots always had), kept in redb with their meta.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, Snapshot, SnapshotMeta, StorageIOError, StoredMembership};
use redb::{Database, ReadableDatabase, TableDefinition};

use super::{storage_error, Ack, Entry, LogId, PeerNode, StorageError, TypeConfig};
use crate::core::Core;
use crate::state::State;

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

pub type Meta = SnapshotMeta<u64, PeerNode>;

/// The stored snapshot: its meta and the state's JSON.
pub struct Stored {
    pub meta: Meta,
    pub data: Vec<u8>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    storage_error(StorageIOError::write_state_machine, &e)
}

/// Reads the last snapshot, if any (at startup, before the state machine exists).
pub fn load(db: &Database) -> Result<Option<Stored>, StorageError> {
    let read = |e: redb::Error| storage_error(StorageIOError::read_state_machine, &e);
    let init = db.begin_write().map_err(|e| read(e.into()))?;
    init.open_table(SNAPSHOT).map_err(|e| read(e.into()))?;
    init.commit().map_err(|e| read(e.into()))?;
    let txn = db.begin_read().map_err(|e| read(e.into()))?;
    let t = txn.open_table(SNAPSHOT).map_err(|e| read(e.into()))?;
    let (meta, data) = match (
        t.get("meta").map_err(|e| read(e.into()))?,
        t.get("data").map_err(|e| read(e.into()))?,
    ) {
        (Some(m), Some(d)) => (m.value().to_vec(), d.value().to_vec()),
        _ => return Ok(None),
    };
    let meta = serde_json::from_slice(&meta).map_err(sm_err)?;
    Ok(Some(Stored { meta, data }))
}

/// Stores a snapshot (also how a restored data dir starts).
pub fn save(db: &Database, meta: &Meta, data: &[u8]) -> Result<(), StorageError> {
    let w = |e: redb::Error| storage_error(StorageIOError::write_state_machine, &e);
    let meta = serde_json::to_vec(meta).map_err(sm_err)?;
    let txn = db.begin_write().map_err(|e| w(e.into()))?;
    {
        let mut t = txn.open_table(SNAPSHOT).map_err(|e| w(e.into()))?;
        t.insert("meta", meta.as_slice()).map_err(|e| w(e.into()))?;
        t.insert("data", data).map_err(|e| w(e.into()))?;
    }
    txn.commit().map_err(|e| w(e.into()))
}

#[derive(Clone)]
pub struct StateMachine {
    pub core: Arc<Core>,
    pub db: Arc<Database>,
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_log_id, membership) = {
            let inner = self.core.lock();
            (
                serde_json::to_vec(&inner.state).map_err(sm_err)?,
                inner.last_applied,
                inner.membership.clone(),
            )
        };
        let meta = Meta {
            last_log_id,
            last_membership: membership,
            snapshot_id: format!(
                "{}-{}",
                last_log_id.map_or(0, |l| l.leader_id.term),
                last_log_id.map_or(0, |l| l.index)
            ),
        };
        let db = Arc::clone(&self.db);
        let (m, d) = (meta.clone(), data.clone());
        tokio::task::spawn_blocking(move || save(&db, &m, &d))
            .await
            .map_err(sm_err)??;
        tracing::info!(index = last_log_id.map_or(0, |l| l.index), "snapshot taken");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, PeerNode>), StorageError> {
        let inner = self.core.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Ack>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut acks = Vec::new();
        for e in entries {
            match e.payload {
                EntryPayload::Blank => self.core.apply_batch(e.log_id, None),
                EntryPayload::Normal(batch) => self.core.apply_batch(e.log_id, Some(batch)),
                EntryPayload::Membership(m) => {
                    let mut inner = self.core.lock();
                    inner.membership = StoredMembership::new(Some(e.log_id), m);
                    inner.last_applied = Some(e.log_id);
                    inner.applied = e.log_id.index;
                }
            }
            acks.push(Ack);
        }
        Ok(acks)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state: State = serde_json::from_slice(&data).map_err(sm_err)?;
        let db = Arc::clone(&self.db);
        let (m, d) = (meta.clone(), data);
        tokio::task::spawn_blocking(move || save(&db, &m, &d))
            .await
            .map_err(sm_err)??;
        self.core
            .install(state, meta.last_log_id, meta.last_membership.clone());
        tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let db = Arc::clone(&self.db);
        let stored = tokio::task::spawn_blocking(move || load(&db))
            .await
            .map_err(sm_err)??;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
