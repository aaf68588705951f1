//! The running member: state machine + durable log + watcher hub.
//!
//! Writes go through one log writer thread that batches whatever is queued, commits the batch to
//! the log (one fsync), then applies it and answers. Nothing is answered before its fsync.
//! This is the seam where Raft replication will sit: the writer becomes "append, replicate, apply".

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::state::error::V2Error;
use crate::state::event::Event;
use crate::state::watch::Hub;
use crate::state::{Command, Output, State};
use crate::wal::{Wal, WalError};

/// Most commands one fsync covers.
const MAX_BATCH: usize = 1024;

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub struct Inner {
    pub state: State,
    pub hub: Hub,
    pub hub3: crate::v3::watch::Hub,
    /// When each v3 lease runs out. Leader-local, never logged: keep-alives are not
    /// replicated in etcd either, and a restart gives every lease its full TTL again.
    pub lease_deadlines: std::collections::BTreeMap<i64, std::time::Instant>,
    /// Index of the last applied log entry (the `X-Raft-Index`).
    pub applied: u64,
}

struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Applied>,
}

/// The result of a committed command and the log index it was committed at.
pub struct Applied {
    pub output: Output,
    pub log_index: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("decoding log entry {0}")]
    Decode(u64, #[source] serde_json::Error),
    #[error("the log writer stopped")]
    Stopped,
}

/// Makes the v3 response header for a revision (cluster and member IDs, term).
pub type HeaderFn = Arc<dyn Fn(i64) -> crate::v3::pb::etcdserverpb::ResponseHeader + Send + Sync>;

pub struct Core {
    inner: Mutex<Inner>,
    tx: mpsc::Sender<Proposal>,
    pub header: HeaderFn,
}

impl Core {
    /// Recovers the state from `data_dir` and starts the log writer.
    pub fn open(
        data_dir: &std::path::Path,
        snapshot_count: u64,
        header: HeaderFn,
    ) -> Result<Arc<Core>, CoreError> {
        let wal = Wal::open(data_dir)?;
        let rec = wal.recover()?;
        let (mut state, mut applied) = match rec.snapshot {
            Some((i, bytes)) => (
                serde_json::from_slice(&bytes).map_err(|e| CoreError::Decode(i, e))?,
                i,
            ),
            None => (State::default(), 0),
        };
        let replayed = rec.entries.len();
        for (i, bytes) in rec.entries {
            let cmd: Command =
                serde_json::from_slice(&bytes).map_err(|e| CoreError::Decode(i, e))?;
            state.apply(&cmd);
            applied = i;
        }
        state.v2.take_notifications();
        state.v3.take_changes();
        let start = std::time::Instant::now();
        let lease_deadlines = state
            .v3
            .leases()
            .iter()
            .map(|(id, l)| (*id, start + std::time::Duration::from_secs(l.ttl as u64)))
            .collect();
        tracing::info!(applied, replayed, "recovered the store from the log");
        let (tx, rx) = mpsc::channel(4096);
        let core = Arc::new(Core {
            inner: Mutex::new(Inner {
                state,
                hub: Hub::default(),
                hub3: Default::default(),
                lease_deadlines,
                applied,
            }),
            tx,
            header,
        });
        let writer = Arc::clone(&core);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run_writer(wal, rx, snapshot_count.max(1)))
            .expect("spawning the log writer thread");
        Ok(core)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits a command durably, applies it, and returns its result.
    pub async fn propose(&self, cmd: Command) -> Result<Applied, CoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal { cmd, reply })
            .await
            .map_err(|_| CoreError::Stopped)?;
        rx.await.map_err(|_| CoreError::Stopped)
    }

    fn run_writer(&self, wal: Wal, mut rx: mpsc::Receiver<Proposal>, snapshot_count: u64) {
        let mut next = self.lock().applied + 1;
        let mut since_snapshot = 0u64;
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let entries: Vec<(u64, Vec<u8>)> = batch
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let bytes = serde_json::to_vec(&p.cmd).expect("commands always serialise");
                    (next + k as u64, bytes)
                })
                .collect();
            if let Err(e) = wal.append(&entries) {
                // Without a durable log we must not acknowledge anything: stop serving writes.
                tracing::error!(error = %e, "appending to the log failed; writes stop");
                return;
            }
            let mut inner = self.lock();
            for p in batch {
                let output = inner.state.apply(&p.cmd);
                inner.applied = next;
                let notes = inner.state.v2.take_notifications();
                for n in &notes {
                    inner.hub.notify(n);
                }
                let header = self.header.clone();
                let inner = &mut *inner;
                for (rev, changes) in inner.state.v3.take_changes() {
                    inner.hub3.notify(rev, &changes, |r| header(r));
                }
                match &output {
                    Output::V3(Ok((crate::state::mvcc::V3Result::LeaseGrant { id, ttl }, _))) => {
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(*ttl as u64);
                        inner.lease_deadlines.insert(*id, deadline);
                    }
                    // Revoked or already gone: either way nothing is left to expire.
                    _ => {
                        if let Command::V3(crate::state::V3Request::LeaseRevoke(id)) = &p.cmd {
                            inner.lease_deadlines.remove(id);
                        }
                    }
                }
                let _ = p.reply.send(Applied {
                    output,
                    log_index: next,
                });
                next += 1;
                since_snapshot += 1;
            }
            if since_snapshot >= snapshot_count {
                let index = inner.applied;
                let bytes = serde_json::to_vec(&inner.state);
                drop(inner);
                let r = bytes
                    .map_err(|e| e.to_string())
                    .and_then(|b| wal.snapshot(index, &b).map_err(|e| e.to_string()));
                match r {
                    Ok(()) => since_snapshot = 0,
                    Err(e) => tracing::warn!(error = %e, "snapshot failed; the log keeps growing"),
                }
            }
        }
    }

    /// Registers a v2 watcher, or answers at once from the history.
    pub fn watch(
        &self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> Result<Watch, V2Error> {
        let mut inner = self.lock();
        let index = inner.state.v2.index();
        let since = if since == 0 { index + 1 } else { since };
        let key = crate::state::tree::clean(key);
        let hit = inner
            .state
            .v2
            .history()
            .scan(&key, recursive, since)
            .map_err(|mut e| {
                e.index = index;
                e
            })?;
        let log_index = inner.applied;
        // etcd answers a history hit at once and does not register the watcher (even a streaming one).
        if let Some(mut event) = hit {
            event.etcd_index = index;
            return Ok(Watch::Ready {
                event,
                index,
                log_index,
            });
        }
        let rx = inner.hub.add(key, recursive, stream, since);
        Ok(Watch::Waiting {
            rx,
            index,
            log_index,
        })
    }

    /// Drives TTL expiry: every 500 ms, as etcd's SYNC, propose an expiry if a key is due.
    pub async fn expire_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            let now = now_nanos();
            let (due, expired_leases) = {
                let inner = self.lock();
                let due = inner.state.v2.next_expiry().is_some_and(|t| t <= now);
                let instant = std::time::Instant::now();
                let leases: Vec<i64> = inner
                    .lease_deadlines
                    .iter()
                    .filter(|(_, d)| **d <= instant)
                    .map(|(id, _)| *id)
                    .collect();
                (due, leases)
            };
            if due && self.propose(Command::V2Expire { now }).await.is_err() {
                return;
            }
            for id in expired_leases {
                let revoke = Command::V3(crate::state::V3Request::LeaseRevoke(id));
                if self.propose(revoke).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[allow(clippy::large_enum_variant)] // one per watch request, never stored in bulk
pub enum Watch {
    Ready {
        event: Event,
        index: u64,
        log_index: u64,
    },
    Waiting {
        rx: mpsc::Receiver<Event>,
        index: u64,
        log_index: u64,
    },
}
