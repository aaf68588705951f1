//! The running member: the state machine, its watchers, and the way in for writes.
//!
//! Writes are queued and sent to Raft in batches ([`crate::raft::Batch`]): one batch is in flight
//! at a time, and whatever queues meanwhile goes in the next (one fsync and one replication round
//! each). A batch is committed by the leader (a follower forwards it) and applied on every member;
//! the proposer answers its callers from its own application. Nothing is answered before the
//! entry is committed, i.e. fsynced on a quorum.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::StoredMembership;
use tokio::sync::{mpsc, oneshot};

use crate::raft::network::{Network, PeerError};
use crate::raft::state_machine::{self, StateMachine};
use crate::raft::{log_store::LogStore, Batch, LogId, PeerNode, Raft};
use crate::state::error::V2Error;
use crate::state::event::Event;
use crate::state::watch::Hub;
use crate::state::{Command, Output, State};

/// Most commands one log entry carries.
const MAX_BATCH: usize = 1024;
/// How long a write or a linearizable read waits for a leader before failing.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// redb's page cache (its default is 1 GiB, filled by every log page written): the log is read
/// back just after it is written (applying, replicating), so recent pages are all it needs.
const DB_CACHE: usize = 4 << 20;
/// How long a proposer waits for its committed entry to be applied locally.
const APPLY_WAIT: Duration = Duration::from_secs(30);

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub struct Inner {
    pub state: State,
    pub hub: Hub,
    pub hub3: crate::v3::watch::Hub,
    /// When each v3 lease runs out. Member-local, never logged: keep-alives are not
    /// replicated in etcd either, and a restart gives every lease its full TTL again.
    pub lease_deadlines: std::collections::BTreeMap<i64, std::time::Instant>,
    /// Index of the last applied log entry (the `X-Raft-Index`).
    pub applied: u64,
    pub last_applied: Option<LogId>,
    /// The membership as of the last applied entry.
    pub membership: StoredMembership<u64, PeerNode>,
    /// v3 auth tokens handed out here (member-local, as etcd's simple tokens).
    pub tokens: crate::v3::auth::Tokens,
}

struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Result<Applied, CoreError>>,
}

/// The result of a committed command and the log index it was committed at.
pub struct Applied {
    pub output: Output,
    pub log_index: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("opening the log database {0}")]
    Open(std::path::PathBuf, #[source] redb::DatabaseError),
    #[error("creating {0}")]
    CreateDir(std::path::PathBuf, #[source] std::io::Error),
    #[error("log database: {0}")]
    Db(#[from] redb::Error),
    #[error("storage: {0}")]
    Storage(#[from] crate::raft::StorageError),
    #[error("decoding the snapshot at {0}")]
    Decode(u64, #[source] serde_json::Error),
    #[error("raft: {0}")]
    Raft(String),
    #[error("no leader")]
    NoLeader,
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("the write was committed but not applied here in time")]
    ApplyTimeout,
    #[error("the member is stopping")]
    Stopped,
}

/// Makes the v3 response header for a revision (cluster and member IDs, term).
pub type HeaderFn = Arc<dyn Fn(i64) -> crate::v3::pb::etcdserverpb::ResponseHeader + Send + Sync>;

/// How this member runs Raft.
pub struct Options {
    pub id: u64,
    pub snapshot_count: u64,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// How to reach the other members (peer TLS).
    pub net: Network,
}

/// A member as `/v2/members` and MemberList show it.
pub struct MemberInfo {
    pub id: u64,
    /// Empty until the member has started and published it (etcd's "unstarted").
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

type Waiter = oneshot::Sender<(u64, Vec<Output>)>;

pub struct Core {
    inner: Mutex<Inner>,
    tx: mpsc::Sender<Proposal>,
    pub header: HeaderFn,
    /// The current Raft term (the `X-Raft-Term`, and the header's `raft_term`).
    pub term: Arc<AtomicU64>,
    pub id: u64,
    raft: OnceLock<Raft>,
    pub(crate) net: Network,
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// Told by the leader that this member was removed from the cluster.
    pub removed: tokio::sync::Notify,
}

impl Core {
    /// Recovers the state from `data_dir` (snapshot, then the committed log through Raft) and
    /// starts Raft and the batcher.
    pub async fn open(
        data_dir: &std::path::Path,
        o: Options,
        header: HeaderFn,
        term: Arc<AtomicU64>,
    ) -> Result<Arc<Core>, CoreError> {
        let dir = data_dir.join("member");
        std::fs::create_dir_all(&dir).map_err(|e| CoreError::CreateDir(dir.clone(), e))?;
        let path = dir.join("raft.redb");
        let db = redb::Database::builder()
            .set_cache_size(DB_CACHE)
            .create(&path)
            .map_err(|e| CoreError::Open(path.clone(), e))?;
        let db = Arc::new(db);
        let mut log = LogStore::open(Arc::clone(&db))?;
        let (mut state, mut last_applied, mut membership) =
            (State::default(), None, StoredMembership::default());
        if let Some(s) = state_machine::load(&db)? {
            let index = s.meta.last_log_id.map_or(0, |l| l.index);
            state = serde_json::from_slice(&s.data).map_err(|e| CoreError::Decode(index, e))?;
            last_applied = s.meta.last_log_id;
            membership = s.meta.last_membership;
        }
        let committed = openraft::storage::RaftLogStorage::read_committed(&mut log).await?;
        let lease_deadlines = lease_deadlines(&state);
        let (tx, rx) = mpsc::channel(4096);
        let core = Arc::new(Core {
            inner: Mutex::new(Inner {
                state,
                hub: Hub::default(),
                hub3: Default::default(),
                lease_deadlines,
                applied: last_applied.map_or(0, |l| l.index),
                last_applied,
                membership,
                tokens: Default::default(),
            }),
            tx,
            header,
            term,
            id: o.id,
            raft: OnceLock::new(),
            net: o.net.clone(),
            waiters: Mutex::new(HashMap::new()),
            removed: tokio::sync::Notify::new(),
        });
        let config = openraft::Config {
            cluster_name: "ferro-store".into(),
            heartbeat_interval: o.heartbeat_ms,
            election_timeout_min: o.election_ms,
            election_timeout_max: o.election_ms * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(o.snapshot_count.max(1)),
            max_in_snapshot_log_to_keep: 1000.min(o.snapshot_count),
            ..Default::default()
        }
        .validate()
        .map_err(|e| CoreError::Raft(e.to_string()))?;
        let sm = StateMachine {
            core: Arc::clone(&core),
            db,
        };
        let raft = Raft::new(o.id, Arc::new(config), core.net.clone(), log, sm)
            .await
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        let _ = core.raft.set(raft.clone());
        // Serve nothing stale after a restart: the committed log is applied before we go on.
        if let Some(c) = committed {
            raft.wait(Some(APPLY_WAIT))
                .applied_index_at_least(Some(c.index), "replaying the committed log")
                .await
                .map_err(|e| CoreError::Raft(e.to_string()))?;
        }
        tracing::info!(
            applied = core.lock().applied,
            "recovered the store from the log"
        );
        tokio::spawn(Arc::clone(&core).track_term());
        tokio::spawn(Arc::clone(&core).run_batcher(rx));
        Ok(core)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn raft(&self) -> &Raft {
        self.raft.get().expect("raft is set in Core::open")
    }

    pub fn is_leader(&self) -> bool {
        self.raft().metrics().borrow().current_leader == Some(self.id)
    }

    pub fn leader_id(&self) -> Option<u64> {
        self.raft().metrics().borrow().current_leader
    }

    /// The members of the applied membership, with the client URLs they published.
    pub fn members(&self) -> Vec<MemberInfo> {
        let inner = self.lock();
        let learners: Vec<u64> = inner.membership.membership().learner_ids().collect();
        inner
            .membership
            .nodes()
            .map(|(id, n)| {
                let published = inner.state.members.get(id);
                MemberInfo {
                    id: *id,
                    name: match published {
                        Some(p) if n.name.is_empty() => p.name.clone(),
                        _ => n.name.clone(),
                    },
                    peer_urls: n.peer_urls.clone(),
                    client_urls: published.map(|p| p.client_urls.clone()).unwrap_or_default(),
                    // A member added as a voter is a Raft learner only until it has caught
                    // up: etcd lists it as a voter from the start, and so do we.
                    is_learner: learners.contains(id) && n.learner,
                }
            })
            .collect()
    }

    /// [`Core::members`], with this member's own URLs before its publish is applied (and itself
    /// alone before the membership is).
    pub fn members_with(&self, own: &crate::member::Member) -> Vec<MemberInfo> {
        let mut ms = self.members();
        if !ms.iter().any(|m| m.id == own.id) {
            ms.push(MemberInfo {
                id: own.id,
                name: own.name.clone(),
                peer_urls: own.peer_urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            });
        }
        for m in ms.iter_mut().filter(|m| m.id == own.id) {
            m.client_urls = own.client_urls.clone();
        }
        ms
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }

    async fn track_term(self: Arc<Self>) {
        let mut m = self.raft().metrics();
        loop {
            self.term.store(m.borrow().current_term, Ordering::Relaxed);
            if m.changed().await.is_err() {
                return;
            }
        }
    }

    /// Commits a command through Raft, applies it, and returns its result.
    pub async fn propose(&self, cmd: Command) -> Result<Applied, CoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal { cmd, reply })
            .await
            .map_err(|_| CoreError::Stopped)?;
        rx.await.map_err(|_| CoreError::Stopped)?
    }

    async fn run_batcher(self: Arc<Self>, mut rx: mpsc::Receiver<Proposal>) {
        // Sequence numbers start at this process's start time, so that entries a previous run
        // of this member proposed (replayed from the log) never match a new waiter.
        let mut seq = now_nanos() as u64;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            seq += 1;
            let (cmds, replies): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
            let result = self.commit(seq, cmds).await;
            match result {
                Ok((log_index, outputs)) => {
                    for (reply, output) in replies.into_iter().zip(outputs) {
                        let _ = reply.send(Ok(Applied { output, log_index }));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a write batch failed");
                    let msg = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(CoreError::Raft(msg.clone())));
                    }
                }
            }
        }
    }

    /// Commits one batch (here if we lead, else through the leader) and waits for its results.
    async fn commit(&self, seq: u64, cmds: Vec<Command>) -> Result<(u64, Vec<Output>), CoreError> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, tx);
        let batch = Batch {
            origin: self.id,
            seq,
            cmds,
        };
        let r = self.submit(batch).await;
        let r = match r {
            Ok(()) => match tokio::time::timeout(APPLY_WAIT, rx).await {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(_)) => Err(CoreError::Stopped),
                Err(_) => Err(CoreError::ApplyTimeout),
            },
            Err(e) => Err(e),
        };
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
        r
    }

    async fn submit(&self, batch: Batch) -> Result<(), CoreError> {
        for _ in 0..3 {
            let leader = self.wait_leader().await?;
            if leader.0 == self.id {
                match self.raft().client_write(batch.clone()).await {
                    Ok(_) => return Ok(()),
                    // Lost the leadership meanwhile: ask again who leads.
                    Err(e) if e.forward_to_leader::<PeerNode>().is_some() => continue,
                    Err(e) => return Err(CoreError::Raft(e.to_string())),
                }
            }
            return Ok(self.net.forward(&leader.1, &batch).await?);
        }
        Err(CoreError::NoLeader)
    }

    /// Makes a membership change through the leader (here, or forwarded); returns the log
    /// index it committed at. A leader change on the way is retried a few times.
    pub async fn change_membership(
        &self,
        change: crate::raft::membership::Change,
    ) -> Result<u64, crate::raft::membership::ChangeError> {
        use crate::raft::membership::{change_here, ChangeError};
        let mut last = ChangeError::NoLeader;
        for _ in 0..5 {
            let Ok((id, node)) = self.wait_leader().await else {
                return Err(ChangeError::NoLeader);
            };
            let r = if id == self.id {
                change_here(self, change.clone()).await
            } else {
                match self.net.member_change(&node, &change).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "forwarding a membership change");
                        Err(ChangeError::NoLeader)
                    }
                }
            };
            match r {
                Err(ChangeError::NoLeader) => {
                    last = ChangeError::NoLeader;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                r => return r,
            }
        }
        Err(last)
    }

    /// The current leader (id and node), waiting for an election if there is none.
    async fn wait_leader(&self) -> Result<(u64, PeerNode), CoreError> {
        let m = self
            .raft()
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|_| CoreError::NoLeader)?;
        let id = m.current_leader.ok_or(CoreError::NoLeader)?;
        let node = m
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
            .ok_or(CoreError::NoLeader)?;
        Ok((id, node))
    }

    /// Returns once this member has applied everything committed before the call (etcd's
    /// ReadIndex): a read after it is linearizable.
    ///
    /// A leader change during the barrier (the leader asked stepped down, or it lost contact
    /// with a quorum) is retried with whoever leads next, for up to [`LEADER_WAIT`], as a
    /// write is: an election is not an error the client should see if it ends in time.
    pub async fn read_barrier(&self) -> Result<(), CoreError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            match self.read_barrier_once().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "read barrier failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn read_barrier_once(&self) -> Result<(), CoreError> {
        let (id, node) = self.wait_leader().await?;
        if id == self.id {
            self.raft()
                .ensure_linearizable()
                .await
                .map_err(|e| CoreError::Raft(e.to_string()))?;
            return Ok(());
        }
        let index = self.net.read_index(&node).await?;
        self.raft()
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        Ok(())
    }

    /// Applies one committed entry (a blank one has no batch) on this member.
    pub fn apply_batch(&self, log_id: LogId, batch: Option<Batch>) {
        let mut outputs = Vec::new();
        {
            let mut inner = self.lock();
            for cmd in batch.iter().flat_map(|b| &b.cmds) {
                outputs.push(self.apply_one(&mut inner, cmd));
            }
            inner.applied = log_id.index;
            inner.last_applied = Some(log_id);
        }
        if let Some(b) = batch.filter(|b| b.origin == self.id) {
            let w = self
                .waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&b.seq);
            if let Some(w) = w {
                let _ = w.send((log_id.index, outputs));
            }
        }
    }

    fn apply_one(&self, inner: &mut Inner, cmd: &Command) -> Output {
        let output = inner.state.apply(cmd);
        let notes = inner.state.v2.take_notifications();
        for n in &notes {
            inner.hub.notify(n);
        }
        let header = self.header.clone();
        for (rev, changes) in inner.state.v3.take_changes() {
            inner.hub3.notify(rev, &changes, |r| header(r));
        }
        if let (Command::Auth { req, .. }, Output::Auth(Ok(result))) = (cmd, &output) {
            inner.tokens.applied(req, result);
        }
        match &output {
            Output::V3(Ok((crate::state::mvcc::V3Result::LeaseGrant { id, ttl }, _))) => {
                let deadline = std::time::Instant::now() + Duration::from_secs(*ttl as u64);
                inner.lease_deadlines.insert(*id, deadline);
            }
            // Revoked or already gone: either way nothing is left to expire. A revoke the
            // caller had no permission for left the lease as it was.
            Output::V3(Err(crate::state::mvcc::V3Error::Auth(_))) => {}
            _ => {
                use crate::state::V3Request::LeaseRevoke;
                if let Command::V3(LeaseRevoke(id))
                | Command::V3As {
                    req: LeaseRevoke(id),
                    ..
                } = cmd
                {
                    inner.lease_deadlines.remove(id);
                }
            }
        }
        output
    }

    /// Replaces the state with a snapshot from the leader.
    pub fn install(
        &self,
        mut state: State,
        last: Option<LogId>,
        membership: StoredMembership<u64, PeerNode>,
    ) {
        state.v2.take_notifications();
        state.v3.take_changes();
        let mut inner = self.lock();
        inner.lease_deadlines = lease_deadlines(&state);
        inner.state = state;
        inner.applied = last.map_or(0, |l| l.index);
        inner.last_applied = last;
        inner.membership = membership;
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
        let inner = &mut *inner;
        let (start, index) = crate::state::watch::start(
            &inner.state.v2,
            &mut inner.hub,
            key,
            recursive,
            stream,
            since,
        )?;
        let log_index = inner.applied;
        Ok(match start {
            crate::state::watch::Start::Ready(event) => Watch::Ready {
                event,
                index,
                log_index,
            },
            crate::state::watch::Start::Waiting(rx) => Watch::Waiting {
                rx,
                index,
                log_index,
            },
        })
    }

    /// Drives TTL expiry: every 500 ms, as etcd's SYNC, propose an expiry if a key is due.
    pub async fn expire_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            if !self.is_leader() {
                continue;
            }
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
            // A failure (no leader for a moment) is retried on the next tick.
            if due {
                if let Err(e) = self.propose(Command::V2Expire { now }).await {
                    tracing::debug!(error = %e, "proposing TTL expiry");
                }
            }
            for id in expired_leases {
                let revoke = Command::V3(crate::state::V3Request::LeaseRevoke(id));
                if let Err(e) = self.propose(revoke).await {
                    tracing::debug!(error = %e, "proposing a lease expiry");
                }
            }
        }
    }
}

/// Every lease gets its full TTL from now (after a restart or a snapshot).
fn lease_deadlines(state: &State) -> std::collections::BTreeMap<i64, std::time::Instant> {
    let start = std::time::Instant::now();
    state
        .v3
        .leases()
        .iter()
        .map(|(id, l)| (*id, start + Duration::from_secs(l.ttl as u64)))
        .collect()
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
