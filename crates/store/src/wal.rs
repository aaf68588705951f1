//! The durable log: commands are committed (fsynced, redb's `Durability::Immediate`) before they
//! are applied or acknowledged; a snapshot of the state replaces the log prefix it covers.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const SNAPSHOT_INDEX: TableDefinition<&str, u64> = TableDefinition::new("snapshot_index");

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("creating {0}")]
    CreateDir(PathBuf, #[source] std::io::Error),
    #[error("opening the log database {0}")]
    Open(PathBuf, #[source] redb::DatabaseError),
    #[error("log database: {0}")]
    Db(#[from] redb::Error),
}

macro_rules! db {
    ($e:expr) => {
        $e.map_err(|e| WalError::Db(e.into()))
    };
}

pub struct Wal {
    db: Database,
}

/// What a restart finds: the last snapshot (index, bytes) and the log entries after it.
pub struct Recovered {
    pub snapshot: Option<(u64, Vec<u8>)>,
    pub entries: Vec<(u64, Vec<u8>)>,
}

impl Wal {
    /// Opens (or creates) `<data-dir>/member/store.redb`.
    pub fn open(data_dir: &Path) -> Result<Self, WalError> {
        let dir = data_dir.join("member");
        std::fs::create_dir_all(&dir).map_err(|e| WalError::CreateDir(dir.clone(), e))?;
        let path = dir.join("store.redb");
        let db = Database::create(&path).map_err(|e| WalError::Open(path, e))?;
        let txn = db!(db.begin_write())?;
        db!(txn.open_table(LOG))?;
        db!(txn.open_table(SNAPSHOT))?;
        db!(txn.open_table(SNAPSHOT_INDEX))?;
        db!(txn.commit())?;
        Ok(Wal { db })
    }

    pub fn recover(&self) -> Result<Recovered, WalError> {
        let txn = db!(self.db.begin_read())?;
        let snap = db!(txn.open_table(SNAPSHOT))?;
        let snap_index = db!(txn.open_table(SNAPSHOT_INDEX))?;
        let snapshot = match (db!(snap.get("state"))?, db!(snap_index.get("state"))?) {
            (Some(b), Some(i)) => Some((i.value(), b.value().to_vec())),
            _ => None,
        };
        let log = db!(txn.open_table(LOG))?;
        let mut entries = Vec::new();
        for item in db!(log.iter())? {
            let (k, v) = db!(item)?;
            entries.push((k.value(), v.value().to_vec()));
        }
        Ok(Recovered { snapshot, entries })
    }

    /// Appends entries in one transaction; returns once they are on disk.
    pub fn append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), WalError> {
        let txn = db!(self.db.begin_write())?;
        {
            let mut log = db!(txn.open_table(LOG))?;
            for (i, data) in entries {
                db!(log.insert(*i, data.as_slice()))?;
            }
        }
        db!(txn.commit())
    }

    /// Stores a snapshot taken at `index` and drops the log entries it covers.
    pub fn snapshot(&self, index: u64, state: &[u8]) -> Result<(), WalError> {
        let txn = db!(self.db.begin_write())?;
        {
            db!(db!(txn.open_table(SNAPSHOT))?.insert("state", state))?;
            db!(db!(txn.open_table(SNAPSHOT_INDEX))?.insert("state", index))?;
            let mut log = db!(txn.open_table(LOG))?;
            db!(log.retain_in(..=index, |_, _| false))?;
        }
        db!(txn.commit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_snapshots_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let w = Wal::open(dir.path()).unwrap();
            w.append(&[(1, b"a".to_vec()), (2, b"b".to_vec())]).unwrap();
            w.append(&[(3, b"c".to_vec())]).unwrap();
            w.snapshot(2, b"S").unwrap();
        }
        let r = Wal::open(dir.path()).unwrap().recover().unwrap();
        assert_eq!(r.snapshot, Some((2, b"S".to_vec())));
        assert_eq!(r.entries, vec![(3, b"c".to_vec())]);
    }
}
