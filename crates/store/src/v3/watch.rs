//! Live v3 watchers: every applied revision is offered to each watcher whose range it touches.

use tokio::sync::mpsc;

use super::pb::etcdserverpb::WatchResponse;
use crate::state::mvcc::{in_range, Change};

pub struct Watcher {
    pub stream: u64,
    pub id: i64,
    pub key: Vec<u8>,
    pub end: Vec<u8>,
    pub prev_kv: bool,
    /// Revisions before this one were already sent (or not asked for).
    pub min_rev: i64,
    pub no_put: bool,
    pub no_delete: bool,
}

impl Watcher {
    /// The events of one revision this watcher wants, if any.
    pub fn events(&self, changes: &[Change]) -> Vec<super::pb::mvccpb::Event> {
        changes
            .iter()
            .filter(|c| in_range(&c.kv.key, &self.key, &self.end))
            .filter(|c| {
                if c.delete {
                    !self.no_delete
                } else {
                    !self.no_put
                }
            })
            .map(|c| c.to_pb(self.prev_kv))
            .collect()
    }
}

/// Responses to a watch stream, with the header stamped in by the sender.
pub type Outbox = mpsc::UnboundedSender<WatchResponse>;

#[derive(Default)]
pub struct Hub {
    watchers: Vec<(Watcher, Outbox)>,
}

impl Hub {
    pub fn add(&mut self, w: Watcher, out: Outbox) {
        self.watchers.push((w, out));
    }

    pub fn cancel(&mut self, stream: u64, id: i64) -> bool {
        let before = self.watchers.len();
        self.watchers
            .retain(|(w, _)| !(w.stream == stream && w.id == id));
        before != self.watchers.len()
    }

    pub fn drop_stream(&mut self, stream: u64) {
        self.watchers.retain(|(w, _)| w.stream != stream);
    }

    pub fn notify(
        &mut self,
        rev: i64,
        changes: &[Change],
        header: impl Fn(i64) -> super::pb::etcdserverpb::ResponseHeader,
    ) {
        self.watchers.retain(|(w, out)| {
            let events = if rev >= w.min_rev {
                w.events(changes)
            } else {
                Vec::new()
            };
            if events.is_empty() {
                return !out.is_closed();
            }
            out.send(WatchResponse {
                header: Some(header(rev)),
                watch_id: w.id,
                events,
                ..Default::default()
            })
            .is_ok()
        });
    }
}
