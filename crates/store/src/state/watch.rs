//! Live v2 watchers (`?wait=true`): which applied changes each one sees, by etcd's rules.

use tokio::sync::mpsc;

use super::error::V2Error;
use super::event::Event;
use super::tree::{clean, is_hidden};
use super::v2store::{Notification, V2Store};

/// etcd gives each watcher a 100-event buffer; a watcher that falls behind is dropped.
pub const BUFFER: usize = 100;

struct Watcher {
    key: String,
    recursive: bool,
    stream: bool,
    since: u64,
    tx: mpsc::Sender<Event>,
}

#[derive(Default)]
pub struct Hub {
    watchers: Vec<Watcher>,
}

/// Is `ancestor` the path itself or a directory above `key`?
fn on_path(ancestor: &str, key: &str) -> bool {
    ancestor == "/"
        || key == ancestor
        || (key.starts_with(ancestor) && key.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

impl Hub {
    pub fn add(
        &mut self,
        key: String,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(BUFFER);
        self.watchers.push(Watcher {
            key,
            recursive,
            stream,
            since,
            tx,
        });
        rx
    }

    pub fn count(&self) -> usize {
        self.watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }

    pub fn notify(&mut self, n: &Notification) {
        let e = &n.event;
        let key = e.key();
        self.watchers.retain(|w| {
            if w.tx.is_closed() {
                return false;
            }
            if e.index() < w.since {
                return true;
            }
            let original = w.key == key;
            let interested = if on_path(&w.key, key) {
                original || (w.recursive && !is_hidden(&w.key, key))
            } else {
                n.removed.contains(&w.key)
            };
            if !interested {
                return true;
            }
            // A full buffer means the client cannot keep up: drop it, as etcd does.
            w.tx.try_send(e.clone()).is_ok() && w.stream
        });
    }
}

/// How a `?wait=true` request starts.
#[allow(clippy::large_enum_variant)] // one per watch request, never stored in bulk
pub enum Start {
    /// The history already has an event for it (etcd answers at once and registers nothing,
    /// even for a streaming watch); its `etcd_index` is the store's.
    Ready(Event),
    /// Registered: the events to come.
    Waiting(mpsc::Receiver<Event>),
}

/// Starts a watch of `key` from index `since` (0: the next change): answered from the history,
/// or registered with `hub`. Also the store's index at that moment (the `X-Etcd-Index`).
pub fn start(
    v2: &V2Store,
    hub: &mut Hub,
    key: &str,
    recursive: bool,
    stream: bool,
    since: u64,
) -> Result<(Start, u64), V2Error> {
    let index = v2.index();
    let since = if since == 0 { index + 1 } else { since };
    let key = clean(key);
    let hit = v2.history().scan(&key, recursive, since).map_err(|mut e| {
        e.index = index;
        e
    })?;
    if let Some(mut event) = hit {
        event.etcd_index = index;
        return Ok((Start::Ready(event), index));
    }
    Ok((
        Start::Waiting(hub.add(key, recursive, stream, since)),
        index,
    ))
}
