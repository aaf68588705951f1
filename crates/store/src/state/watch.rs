//! Live v2 watchers (`?wait=true`): which applied changes each one sees, by etcd's rules.

use tokio::sync::mpsc;

use super::event::Event;
use super::tree::is_hidden;
use super::v2store::Notification;

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
