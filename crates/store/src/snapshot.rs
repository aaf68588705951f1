//! Snapshot files: what Maintenance.Snapshot streams (and `etcdctl snapshot save` writes to a
//! file), and `ferro-store snapshot restore`/`status`, which read such a file.
//!
//! Layout, as etcd's: the store's data, then the SHA-256 of that data (32 bytes). etcd's data is
//! its bbolt file, whose size is a multiple of the 512-byte page, and `etcdctl snapshot restore`
//! tells a hashed file by `len % 512 == 32`; ours is the state's JSON padded with newlines to a
//! multiple of 512, so the same rule holds. The v2 keyspace travels too (etcd's snapshot has
//! only v3): restoring a CoreOS cluster should not lose fleet's and flannel's v2 keys.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::member::Member;
use crate::raft::state_machine::{self, Meta};
use crate::raft::{LogId, PeerNode};
use crate::state::State;

pub const HASH_LEN: usize = 32;
const PAGE: usize = 512;
const FORMAT: &str = "ferro-store-snapshot";
const VERSION: u32 = 1;

#[derive(Serialize)]
struct DocumentRef<'a> {
    format: &'a str,
    version: u32,
    state: &'a State,
}

#[derive(Deserialize)]
struct Document {
    format: String,
    version: u32,
    state: State,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading the snapshot {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{path}: {len} bytes is too short for a snapshot (data and a 32-byte sha256)")]
    TooShort { path: PathBuf, len: usize },
    #[error("{path}: the sha256 at its end does not match its contents (stored {stored}, computed {computed}): the file is corrupt or truncated")]
    Hash {
        path: PathBuf,
        stored: String,
        computed: String,
    },
    #[error(
        "{path}: not a ferro-store snapshot (an etcd bbolt snapshot is restored with etcdctl)"
    )]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: snapshot format {format:?} version {version} is not one this ferro-store reads ({FORMAT:?} version {VERSION})")]
    Version {
        path: PathBuf,
        format: String,
        version: u32,
    },
    #[error("encoding the state: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("data dir {0} exists: restore makes a new one")]
    Exists(PathBuf),
    #[error("--initial-cluster does not name this member ({0:?})")]
    NotInCluster(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("creating {0}")]
    Create(PathBuf, #[source] std::io::Error),
    #[error("writing {0}")]
    Write(PathBuf, #[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The data part of a snapshot of `state` (without the trailing hash).
pub fn encode(state: &State) -> Result<Vec<u8>, serde_json::Error> {
    let mut data = serde_json::to_vec(&DocumentRef {
        format: FORMAT,
        version: VERSION,
        state,
    })?;
    data.push(b'\n');
    let padded = data.len().div_ceil(PAGE) * PAGE;
    data.resize(padded, b'\n');
    Ok(data)
}

/// The hash etcd appends after the data.
pub fn digest(data: &[u8]) -> [u8; HASH_LEN] {
    Sha256::digest(data).into()
}

/// Checks a whole snapshot file's hash (unless skipped) and decodes its state.
pub fn decode(path: &Path, file: &[u8], skip_hash_check: bool) -> Result<State, SnapshotError> {
    let path = path.to_path_buf();
    let data = if skip_hash_check && file.len() % PAGE != HASH_LEN {
        file
    } else {
        let Some(split) = file.len().checked_sub(HASH_LEN).filter(|n| *n > 0) else {
            return Err(SnapshotError::TooShort {
                path,
                len: file.len(),
            });
        };
        let (data, stored) = file.split_at(split);
        let computed = digest(data);
        if !skip_hash_check && computed[..] != *stored {
            return Err(SnapshotError::Hash {
                path,
                stored: hex::encode(stored),
                computed: hex::encode(computed),
            });
        }
        data
    };
    let doc: Document = serde_json::from_slice(data).map_err(|source| SnapshotError::Format {
        path: path.clone(),
        source,
    })?;
    if doc.format != FORMAT || doc.version != VERSION {
        return Err(SnapshotError::Version {
            path,
            format: doc.format,
            version: doc.version,
        });
    }
    Ok(doc.state)
}

pub fn read(path: &Path, skip_hash_check: bool) -> Result<State, SnapshotError> {
    let file = std::fs::read(path).map_err(|e| SnapshotError::Read(path.to_path_buf(), e))?;
    decode(path, &file, skip_hash_check)
}

/// `ferro-store snapshot …`: etcdctl's snapshot commands that work on files.
#[derive(Debug, clap::Parser)]
#[command(
    name = "ferro-store snapshot",
    about = "Restore or inspect snapshot files (as `etcdctl snapshot`)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Makes a new data dir from a snapshot file (as `etcdctl snapshot restore`).
    Restore(RestoreArgs),
    /// Prints a snapshot file's hash, revision, total keys and size.
    Status {
        /// The snapshot file.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The snapshot file (as written by `etcdctl snapshot save`).
    pub file: PathBuf,
    /// Path to the data directory to create (default: `<name>.etcd`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Initial cluster configuration for restore bootstrap (`name=peer-url,...`).
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Ignore the snapshot's integrity hash.
    #[arg(long)]
    pub skip_hash_check: bool,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Restore(a) => {
                let dir = restore(&a)?;
                println!("restored {} into {}", a.file.display(), dir.display());
            }
            Command::Status { file } => {
                let bytes =
                    std::fs::read(&file).map_err(|e| SnapshotError::Read(file.clone(), e))?;
                let state = decode(&file, &bytes, false)?;
                println!("{}", status_line(&state, &bytes)?);
            }
        }
        Ok(())
    }
}

/// etcdctl's simple status line: hash, revision, total keys, total size.
fn status_line(state: &State, file: &[u8]) -> anyhow::Result<String> {
    use crate::v3::pb::etcdserverpb::RangeRequest;
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        ..Default::default()
    };
    let count = state
        .v3
        .range(&all)
        .map_err(|e| anyhow::anyhow!("counting the keys: {e:?}"))?
        .count;
    let hash = u32::from_be_bytes(digest(file)[..4].try_into().expect("4 bytes"));
    Ok(format!(
        "{hash:x}, {}, {count}, {}",
        state.v3.revision(),
        human_size(file.len())
    ))
}

fn human_size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / (1 << 10) as f64),
        n => format!("{n} B"),
    }
}

/// Makes a new data dir from a snapshot: the state as a Raft snapshot at the position of a
/// freshly initialised cluster (log id 0, the membership `--initial-cluster` names), so that
/// every member restored from the same file with the same flags starts identical, and
/// `ferro-store --initial-cluster-state new` on it elects a leader and serves the data.
pub fn restore(a: &RestoreArgs) -> Result<PathBuf, SnapshotError> {
    let mut state = read(&a.file, a.skip_hash_check)?;
    // Client URLs published in the old cluster say nothing about the new one.
    state.members.clear();
    let cfg = crate::config::Config {
        name: a.name.clone(),
        initial_cluster: Some(a.initial_cluster.clone()),
        initial_advertise_peer_urls: a.initial_advertise_peer_urls.clone(),
        ..crate::config::Config::from_args(["ferro-store".to_string()]).expect("the defaults parse")
    };
    let members = cfg.initial_members()?;
    if !members.iter().any(|(n, _)| *n == a.name) {
        return Err(SnapshotError::NotInCluster(a.name.clone()));
    }
    let nodes: BTreeMap<u64, PeerNode> = Member::initial_nodes(members, &a.initial_cluster_token)
        .into_iter()
        .collect();
    let voters: BTreeSet<u64> = nodes.keys().copied().collect();
    let dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", a.name)));
    if dir.exists() {
        return Err(SnapshotError::Exists(dir));
    }
    let member_dir = dir.join("member");
    std::fs::create_dir_all(&member_dir)
        .map_err(|e| SnapshotError::Create(member_dir.clone(), e))?;
    let log_id = LogId::default();
    let meta = Meta {
        last_log_id: Some(log_id),
        last_membership: openraft::StoredMembership::new(
            Some(log_id),
            openraft::Membership::new(vec![voters], nodes),
        ),
        snapshot_id: "restored".into(),
    };
    let data = serde_json::to_vec(&state)?;
    let path = member_dir.join("raft.redb");
    let write = |e: Box<dyn std::error::Error + Send + Sync>| SnapshotError::Write(path.clone(), e);
    let db = redb::Database::create(&path).map_err(|e| write(e.into()))?;
    state_machine::save(&db, &meta, &data).map_err(|e| write(e.to_string().into()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(state: &State) -> Vec<u8> {
        let mut f = encode(state).unwrap();
        let h = digest(&f);
        f.extend_from_slice(&h);
        f
    }

    #[test]
    fn a_snapshot_round_trips_and_looks_hashed_to_etcdctl() {
        let mut s = State::default();
        s.apply(&crate::state::Command::V3(
            crate::state::V3Request::LeaseGrant { id: 7, ttl: 60 },
        ));
        let f = file_of(&s);
        assert_eq!(
            f.len() % PAGE,
            HASH_LEN,
            "etcdctl's rule for a hashed snapshot"
        );
        assert_eq!(decode(Path::new("s"), &f, false).unwrap(), s);
    }

    #[test]
    fn corruption_and_truncation_are_refused() {
        let f = file_of(&State::default());
        let mut bad = f.clone();
        bad[10] ^= 1;
        let e = decode(Path::new("s.db"), &bad, false).unwrap_err();
        assert!(matches!(e, SnapshotError::Hash { .. }), "{e}");
        assert!(e.to_string().contains("s.db"), "{e}");
        let e = decode(Path::new("s.db"), &f[..f.len() - 1], false).unwrap_err();
        assert!(matches!(e, SnapshotError::Hash { .. }), "{e}");
        assert!(matches!(
            decode(Path::new("s.db"), &f[..5], false),
            Err(SnapshotError::TooShort { .. })
        ));
        // Skipping the check reads a file without a hash; a bad one still fails to decode.
        let plain = encode(&State::default()).unwrap();
        assert!(decode(Path::new("s"), &plain, true).is_ok());
        assert!(matches!(
            decode(Path::new("s"), &bad, true),
            Err(SnapshotError::Format { .. })
        ));
    }
}
