//! The v2 keyspace as a deterministic state machine (etcd's `v2store`): every write takes the
//! proposer's clock (`now`, unix nanoseconds) so that replaying the log gives the same state.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::error::*;
use super::event::*;
use super::history::History;
use super::stats::{Op, StoreStats};
use super::tree::{clean, components, join, split, Node};

/// Expiry times before 2000-01-01 are taken as "no TTL", as etcd does (zero times from JSON).
const MIN_EXPIRE: i64 = 946_684_800_000_000_000;

/// A change for watchers: the event and, for removals, every removed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event: Event,
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Store {
    root: Node,
    index: u64,
    history: History,
    /// (expiry, path) of every node with a TTL, soonest first.
    ttl: BTreeSet<(i64, String)>,
    pub stats: StoreStats,
    #[serde(skip)]
    pending: Vec<Notification>,
}

impl Default for V2Store {
    fn default() -> Self {
        V2Store {
            root: Node::dir(0, None),
            index: 0,
            history: History::default(),
            ttl: BTreeSet::new(),
            stats: StoreStats::default(),
            pending: Vec::new(),
        }
    }
}

fn expire_opt(e: Option<i64>) -> Option<i64> {
    e.filter(|&t| t >= MIN_EXPIRE)
}

impl V2Store {
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Changes made since the last call, for the watcher hub.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.pending)
    }

    pub fn has_ttl_keys(&self) -> bool {
        !self.ttl.is_empty()
    }

    /// The soonest expiry, if any key has a TTL.
    pub fn next_expiry(&self) -> Option<i64> {
        self.ttl.first().map(|(t, _)| *t)
    }

    fn lookup(&self, path: &str) -> Result<&Node, V2Error> {
        let mut cur = &self.root;
        let mut cur_path = "/".to_string();
        for c in components(path) {
            let Some(children) = cur.children() else {
                return Err(V2Error::new(NOT_DIR, cur_path, self.index));
            };
            cur_path = join(&cur_path, c);
            cur = children
                .get(c)
                .ok_or_else(|| V2Error::new(KEY_NOT_FOUND, cur_path.clone(), self.index))?;
        }
        Ok(cur)
    }

    fn lookup_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut cur = &mut self.root;
        for c in components(path) {
            cur = cur.children_mut()?.get_mut(c)?;
        }
        Some(cur)
    }

    /// etcd's `walk(dirName, checkDir)`: the directory at `dir`, making missing ones (index + 1).
    fn make_dirs(&mut self, dir: &str) -> Result<&mut Node, V2Error> {
        let index = self.index;
        let mut cur = &mut self.root;
        let mut cur_path = "/".to_string();
        for c in components(dir) {
            cur_path = join(&cur_path, c);
            let children = cur
                .children_mut()
                .expect("walk only descends into directories");
            let child = children
                .entry(c.to_string())
                .or_insert_with(|| Node::dir(index + 1, None));
            if !child.is_dir() {
                return Err(V2Error::new(NOT_DIR, cur_path, index));
            }
            cur = child;
        }
        Ok(cur)
    }

    fn record(&mut self, op: Op, r: Result<Event, V2Error>) -> Result<Event, V2Error> {
        self.stats.count(op, r.is_ok());
        r
    }

    pub fn get(&mut self, path: &str, recursive: bool, now: i64) -> Result<Event, V2Error> {
        let path = clean(path);
        let r = self.lookup(&path).map(|n| {
            let mut e = Event::new(GET, &path, n.modified, n.created);
            e.etcd_index = self.index;
            let mut node = n.load(&path, recursive, now);
            if path == "/" {
                node.key.clear();
            }
            e.node = Some(node);
            e
        });
        self.record(Op::Get, r)
    }

    fn untrack(&mut self, removed: &[(String, Option<i64>)]) {
        for (p, exp) in removed {
            if let Some(t) = exp {
                self.ttl.remove(&(*t, p.clone()));
            }
        }
    }

    fn publish(&mut self, e: &Event, removed: Vec<String>) {
        self.history.add(e.clone());
        if !e.refresh {
            self.pending.push(Notification {
                event: e.clone(),
                removed,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn internal_create(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        unique: bool,
        replace: bool,
        expire: Option<i64>,
        action: &str,
        now: i64,
    ) -> Result<Event, V2Error> {
        let cur = self.index;
        let next = cur + 1;
        let path = if unique {
            clean(&format!("{path}/{next:020}"))
        } else {
            clean(path)
        };
        if path == "/" {
            return Err(V2Error::new(ROOT_READ_ONLY, "/", cur));
        }
        let expire = expire_opt(expire);
        let (dir_name, name) = split(&path);
        let mut e = Event::new(action, &path, next, next);
        let parent = self.make_dirs(&dir_name)?;
        let children = parent
            .children_mut()
            .expect("make_dirs returns a directory");
        let mut removed = Vec::new();
        if let Some(existing) = children.get(&name) {
            if !replace {
                return Err(V2Error::new(NODE_EXIST, path, cur));
            }
            if existing.is_dir() {
                return Err(V2Error::new(NOT_FILE, path, cur));
            }
            e.prev_node = Some(existing.repr(&path, false, now));
            removed.push((path.clone(), existing.expire));
        }
        let node = if dir {
            Node::dir(next, expire)
        } else {
            Node::file(value.to_string(), next, expire)
        };
        let (expiration, ttl) = node.expiration_and_ttl(now);
        children.insert(name, node);
        self.untrack(&removed);
        let n = e.node.as_mut().expect("new events have a node");
        if dir {
            n.dir = true;
        } else {
            n.value = Some(value.to_string());
        }
        if let Some(t) = expire {
            self.ttl.insert((t, path.clone()));
            n.expiration = expiration;
            n.ttl = ttl;
        }
        self.index = next;
        e.etcd_index = next;
        Ok(e)
    }

    pub fn create(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        unique: bool,
        expire: Option<i64>,
        now: i64,
    ) -> Result<Event, V2Error> {
        let r = self.internal_create(path, dir, value, unique, false, expire, CREATE, now);
        if let Ok(e) = &r {
            self.publish(e, Vec::new());
        }
        self.record(Op::Create, r)
    }

    pub fn set(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let r = self.set_inner(path, dir, value, expire, refresh, now);
        self.record(Op::Set, r)
    }

    fn set_inner(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        let prev = match self.lookup(&path) {
            Ok(n) => Some(n.clone()),
            Err(e) if e.code == KEY_NOT_FOUND => None,
            Err(e) => return Err(e),
        };
        let value = match (&prev, refresh) {
            (None, true) => return Err(self.lookup(&path).unwrap_err()),
            (Some(n), true) => n.value().to_string(),
            _ => value.to_string(),
        };
        let mut e = self.internal_create(&path, dir, &value, false, true, expire, SET, now)?;
        if let Some(n) = prev {
            e.prev_node = Some(n.repr(&path, false, now));
        }
        e.refresh = refresh;
        self.publish(&e, Vec::new());
        Ok(e)
    }

    pub fn update(
        &mut self,
        path: &str,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let r = self.update_inner(path, value, expire, refresh, now);
        self.record(Op::Update, r)
    }

    fn update_inner(
        &mut self,
        path: &str,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        if path == "/" {
            return Err(V2Error::new(ROOT_READ_ONLY, "/", self.index));
        }
        let cur = self.index;
        let next = cur + 1;
        let n = self.lookup(&path)?;
        if n.is_dir() && !value.is_empty() {
            return Err(V2Error::new(NOT_FILE, path, cur));
        }
        let value = if refresh {
            n.value().to_string()
        } else {
            value.to_string()
        };
        let mut e = Event::new(UPDATE, &path, next, n.created);
        e.prev_node = Some(n.repr(&path, false, now));
        let old_expire = n.expire;
        let expire = expire_opt(expire);
        let node = self.lookup_mut(&path).expect("looked up above");
        // A directory's modified index stays put: etcd 3.4 only rewrites files here.
        if let super::tree::Kind::File(v) = &mut node.kind {
            *v = value.clone();
            node.modified = next;
        }
        node.expire = expire;
        let is_dir = node.is_dir();
        let (expiration, ttl) = node.expiration_and_ttl(now);
        self.retrack(&path, old_expire, expire);
        let en = e.node.as_mut().expect("new events have a node");
        if is_dir {
            en.dir = true;
        } else {
            en.value = Some(value);
        }
        en.expiration = expiration;
        en.ttl = ttl;
        e.etcd_index = next;
        e.refresh = refresh;
        self.index = next;
        self.publish(&e, Vec::new());
        Ok(e)
    }

    fn retrack(&mut self, path: &str, old: Option<i64>, new: Option<i64>) {
        if let Some(t) = old {
            self.ttl.remove(&(t, path.to_string()));
        }
        if let Some(t) = new {
            self.ttl.insert((t, path.to_string()));
        }
    }

    fn compare(&self, path: &str, prev_value: &str, prev_index: u64) -> Result<Node, V2Error> {
        let n = self.lookup(path)?;
        if n.is_dir() {
            return Err(V2Error::new(NOT_FILE, path, self.index));
        }
        let index_ok = prev_index == 0 || n.modified == prev_index;
        let value_ok = prev_value.is_empty() || n.value() == prev_value;
        let cause = match (value_ok, index_ok) {
            (true, true) => return Ok(n.clone()),
            (false, true) => format!("[{} != {}]", prev_value, n.value()),
            (true, false) => format!("[{} != {}]", prev_index, n.modified),
            (false, false) => format!(
                "[{} != {}] [{} != {}]",
                prev_value,
                n.value(),
                prev_index,
                n.modified
            ),
        };
        Err(V2Error::new(TEST_FAILED, cause, self.index))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn compare_and_swap(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let r = self.cas_inner(path, prev_value, prev_index, value, expire, refresh, now);
        self.record(Op::CompareAndSwap, r)
    }

    #[allow(clippy::too_many_arguments)]
    fn cas_inner(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        value: &str,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        if path == "/" {
            return Err(V2Error::new(ROOT_READ_ONLY, "/", self.index));
        }
        let n = self.compare(&path, prev_value, prev_index)?;
        let value = if refresh {
            n.value().to_string()
        } else {
            value.to_string()
        };
        self.index += 1;
        let next = self.index;
        let mut e = Event::new(COMPARE_AND_SWAP, &path, next, n.created);
        e.etcd_index = next;
        e.prev_node = Some(n.repr(&path, false, now));
        let expire = expire_opt(expire);
        let node = self.lookup_mut(&path).expect("compared above");
        node.kind = super::tree::Kind::File(value.clone());
        node.modified = next;
        node.expire = expire;
        let (expiration, ttl) = node.expiration_and_ttl(now);
        self.retrack(&path, n.expire, expire);
        let en = e.node.as_mut().expect("new events have a node");
        en.value = Some(value);
        en.expiration = expiration;
        en.ttl = ttl;
        e.refresh = refresh;
        self.publish(&e, Vec::new());
        Ok(e)
    }

    /// Removes the node at a clean path, returning every removed path (children first).
    fn remove(&mut self, path: &str) -> Vec<String> {
        let (dir, name) = split(path);
        let parent = self.lookup_mut(&dir).and_then(Node::children_mut);
        let Some(node) = parent.and_then(|c| c.remove(&name)) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        node.subtree_paths(path, &mut removed);
        self.untrack(&removed);
        removed.into_iter().map(|(p, _)| p).collect()
    }

    pub fn delete(
        &mut self,
        path: &str,
        dir: bool,
        recursive: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let r = self.delete_inner(path, dir || recursive, recursive, now);
        self.record(Op::Delete, r)
    }

    fn delete_inner(
        &mut self,
        path: &str,
        dir: bool,
        recursive: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        if path == "/" {
            return Err(V2Error::new(ROOT_READ_ONLY, "/", self.index));
        }
        let n = self.lookup(&path)?;
        if let Some(children) = n.children() {
            if !dir {
                return Err(V2Error::new(NOT_FILE, path, self.index));
            }
            if !children.is_empty() && !recursive {
                return Err(V2Error::new(DIR_NOT_EMPTY, path, self.index));
            }
        }
        let next = self.index + 1;
        let mut e = Event::new(DELETE, &path, next, n.created);
        e.etcd_index = next;
        e.prev_node = Some(n.repr(&path, false, now));
        if n.is_dir() {
            e.node.as_mut().expect("new events have a node").dir = true;
        }
        let removed = self.remove(&path);
        self.index = next;
        self.publish(&e, removed);
        Ok(e)
    }

    pub fn compare_and_delete(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        let r = self.compare(&path, prev_value, prev_index).map(|n| {
            self.index += 1;
            let mut e = Event::new(COMPARE_AND_DELETE, &path, self.index, n.created);
            e.etcd_index = self.index;
            e.prev_node = Some(n.repr(&path, false, now));
            let removed = self.remove(&path);
            self.publish(&e, removed);
            e
        });
        self.record(Op::CompareAndDelete, r)
    }

    /// etcd's `DeleteExpiredKeys`: one `expire` event per node whose expiry is at or before `cutoff`.
    pub fn delete_expired(&mut self, cutoff: i64) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some((t, path)) = self.ttl.first().cloned() {
            if t > cutoff {
                break;
            }
            let Some(n) = self.lookup_mut(&path).map(|n| n.clone()) else {
                self.ttl.remove(&(t, path));
                continue;
            };
            self.index += 1;
            let mut e = Event::new(EXPIRE, &path, self.index, n.created);
            e.etcd_index = self.index;
            e.prev_node = Some(n.repr(&path, false, cutoff));
            if n.is_dir() {
                e.node.as_mut().expect("new events have a node").dir = true;
            }
            let removed = self.remove(&path);
            self.stats.expire_count += 1;
            self.publish(&e, removed);
            out.push(e);
        }
        out
    }
}
