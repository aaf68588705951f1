//! The v2 event history: the last 1000 events, scanned by `?wait=true&waitIndex=N`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::error::{V2Error, EVENT_INDEX_CLEARED};
use super::event::{Event, DELETE, EXPIRE};

pub const CAPACITY: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    events: VecDeque<Event>,
}

impl History {
    pub fn add(&mut self, mut e: Event) {
        // The store index is stamped when a watcher is answered; keep stored events canonical.
        e.etcd_index = 0;
        if self.events.len() == CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    pub fn start_index(&self) -> u64 {
        self.events.front().map_or(0, Event::index)
    }

    /// The first event at or after `index` that a watcher of `key` would see; `Ok(None)` means wait for the future.
    pub fn scan(&self, key: &str, recursive: bool, index: u64) -> Result<Option<Event>, V2Error> {
        let start = self.start_index();
        if index < start {
            return Err(V2Error::new(
                EVENT_INDEX_CLEARED,
                format!("the requested history has been cleared [{start}/{index}]"),
                0,
            ));
        }
        let prefix = if key.ends_with('/') {
            key.to_string()
        } else {
            format!("{key}/")
        };
        Ok(self
            .events
            .iter()
            .filter(|e| e.index() >= index && !e.refresh)
            .find(|e| {
                let k = e.key();
                let mut ok = k == key || (recursive && k.starts_with(&prefix));
                if e.action == DELETE || e.action == EXPIRE {
                    if let Some(prev) = &e.prev_node {
                        ok = ok || (prev.dir && key.starts_with(&prev.key));
                    }
                }
                ok
            })
            .cloned())
    }
}
