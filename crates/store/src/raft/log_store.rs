//! openraft's log storage on redb: entries, the vote and the committed index, each written in a
//! transaction that is fsynced (redb's `Durability::Immediate`) before openraft is told.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{storage_error, Entry, LogId, StorageError, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// The committed index openraft last told us, not yet written: it goes in the next
    /// append's transaction (see [`LogStore::save_committed`]).
    committed: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    storage_error(StorageIOError::read_logs, &e)
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    storage_error(StorageIOError::write_logs, &e)
}

impl LogStore {
    pub fn open(db: Arc<Database>) -> Result<Self, redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(LogStore {
            db,
            committed: Default::default(),
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(META).map_err(read_err)?;
        match t.get(key).map_err(read_err)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(read_err),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, v: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(v).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        txn.open_table(META)
            .map_err(write_err)?
            .insert(key, bytes.as_slice())
            .map_err(write_err)?;
        txn.commit().map_err(write_err)
    }

    fn last_entry(&self) -> Result<Option<LogId>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(LOG).map_err(read_err)?;
        let last = t.last().map_err(read_err)?;
        let r = match last {
            Some((_, v)) => {
                let e: Entry = serde_json::from_slice(v.value()).map_err(read_err)?;
                Ok(Some(e.log_id))
            }
            None => Ok(None),
        };
        r
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(LOG).map_err(read_err)?;
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
        for item in t.range::<u64>(bounds).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(PURGED)?;
        let last_log_id = self.last_entry()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote)
            .map_err(|e| storage_error(StorageIOError::write_vote, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_meta(VOTE)
    }

    /// A hint for replay at restart, not a promise: kept here and written in the next log
    /// append's transaction (no transaction, no fsync of its own). If it is behind after a
    /// crash or a stop, the leader's next commit re-applies the rest (a new leader commits a
    /// blank entry at once); a lone member waits for that before serving.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&committed).map_err(write_err)?;
        *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let pending = self
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(bytes) = pending {
            let c: Option<LogId> = serde_json::from_slice(&bytes).map_err(read_err)?;
            return Ok(c);
        }
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, serde_json::to_vec(&e).map_err(write_err)?)))
            .collect::<Result<_, StorageError>>()?;
        let db = Arc::clone(&self.db);
        let committed = Arc::clone(&self.committed);
        // The commit's fsync must not stall the runtime's worker thread.
        let r = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(LOG)?;
                for (i, bytes) in &encoded {
                    t.insert(*i, bytes.as_slice())?;
                }
            }
            let hint = committed.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(hint) = hint {
                txn.open_table(META)?.insert(COMMITTED, hint.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(write_err)?;
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(write_err)?;
        txn.open_table(LOG)
            .map_err(write_err)?
            .retain_in(log_id.index.., |_, _| false)
            .map_err(write_err)?;
        txn.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        txn.open_table(META)
            .map_err(write_err)?
            .insert(PURGED, bytes.as_slice())
            .map_err(write_err)?;
        txn.open_table(LOG)
            .map_err(write_err)?
            .retain_in(..=log_id.index, |_, _| false)
            .map_err(write_err)?;
        txn.commit().map_err(write_err)
    }
}
