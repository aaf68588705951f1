//! The Watch service: one bidirectional stream carries many watchers (create, cancel, progress).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::pb::etcdserverpb as pb;
use super::watch::{Outbox, Watcher};
use crate::core::Core;
use crate::state::auth::AuthError;

pub struct Watch {
    pub core: Arc<Core>,
    pub next_stream: AtomicU64,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

/// etcd's watch ID for progress responses that belong to no watcher.
const NO_WATCH: i64 = -1;

fn create(core: &Core, stream: u64, c: pb::WatchCreateRequest, id: i64, out: &Outbox) {
    use pb::watch_create_request::FilterType;
    let mut inner = core.lock();
    let rev = inner.state.v3.revision();
    let compact = inner.state.v3.compact_revision();
    let header = (core.header)(rev);
    let _ = out.send(pb::WatchResponse {
        header: Some(header),
        watch_id: id,
        created: true,
        ..Default::default()
    });
    if c.start_revision != 0 && c.start_revision < compact {
        let _ = out.send(pb::WatchResponse {
            header: Some(header),
            watch_id: id,
            canceled: true,
            compact_revision: compact,
            ..Default::default()
        });
        return;
    }
    let w = Watcher {
        stream,
        id,
        key: c.key,
        end: c.range_end,
        prev_kv: c.prev_kv,
        min_rev: c.start_revision.max(rev + 1),
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
    };
    // Replay the past under the same lock that registers the watcher: no revision is missed.
    if c.start_revision != 0 && c.start_revision <= rev {
        // etcd sends a catch-up as batches of up to 1000 revisions per response.
        let revisions: Vec<_> = inner.state.v3.history_since(c.start_revision).collect();
        for chunk in revisions.chunks(1000) {
            let events: Vec<_> = chunk
                .iter()
                .flat_map(|(_, changes)| w.events(changes))
                .collect();
            if !events.is_empty() {
                let _ = out.send(pb::WatchResponse {
                    header: Some((core.header)(rev)),
                    watch_id: id,
                    events,
                    ..Default::default()
                });
            }
        }
    }
    inner.hub3.add(w, out.clone());
}

/// etcd's `isWatchPermitted`: a watch needs read permission on its key or range. The reason
/// is the Go gRPC error's text, as etcd 3.4 puts it in `cancel_reason`.
fn watch_permitted(
    core: &Core,
    md: &tonic::metadata::MetadataMap,
    c: &pb::WatchCreateRequest,
) -> Result<(), String> {
    let user = super::auth::caller(core, md).map_err(|_| AuthError::InvalidAuthToken);
    // An empty key is the smallest key, as in etcd.
    let key: &[u8] = if c.key.is_empty() { &[0] } else { &c.key };
    let checked = user.and_then(|u| {
        core.lock()
            .state
            .auth
            .check_range(u.as_deref(), key, &c.range_end)
    });
    checked.map_err(|e| {
        let (code, e) = match e {
            AuthError::InvalidAuthToken => ("Unauthenticated", e),
            AuthError::UserEmpty => ("InvalidArgument", e),
            _ => ("PermissionDenied", AuthError::PermissionDenied),
        };
        format!("rpc error: code = {code} desc = {e}")
    })
}

#[tonic::async_trait]
impl pb::watch_server::Watch for Watch {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let core = Arc::clone(&self.core);
        // etcd reads the token from the stream's metadata at each create.
        let md = req.metadata().clone();
        let mut input = req.into_inner();
        tokio::spawn(async move {
            let mut next_id = 0i64;
            let mut used: Vec<i64> = Vec::new();
            while let Some(Ok(msg)) = input.next().await {
                use pb::watch_request::RequestUnion as U;
                match msg.request_union {
                    Some(U::CreateRequest(c)) => {
                        let id = if c.watch_id != 0 {
                            c.watch_id
                        } else {
                            while used.contains(&next_id) {
                                next_id += 1;
                            }
                            next_id
                        };
                        if let Err(reason) = watch_permitted(&core, &md, &c) {
                            let rev = core.lock().state.v3.revision();
                            let _ = tx.send(pb::WatchResponse {
                                header: Some((core.header)(rev)),
                                watch_id: c.watch_id,
                                created: true,
                                canceled: true,
                                cancel_reason: reason,
                                ..Default::default()
                            });
                            continue;
                        }
                        used.push(id);
                        create(&core, stream, c, id, &tx);
                    }
                    Some(U::CancelRequest(c)) => {
                        let found = core.lock().hub3.cancel(stream, c.watch_id);
                        if found {
                            let rev = core.lock().state.v3.revision();
                            let _ = tx.send(pb::WatchResponse {
                                header: Some((core.header)(rev)),
                                watch_id: c.watch_id,
                                canceled: true,
                                ..Default::default()
                            });
                        }
                    }
                    Some(U::ProgressRequest(_)) => {
                        let rev = core.lock().state.v3.revision();
                        let _ = tx.send(pb::WatchResponse {
                            header: Some((core.header)(rev)),
                            watch_id: NO_WATCH,
                            ..Default::default()
                        });
                    }
                    None => {}
                }
            }
            core.lock().hub3.drop_stream(stream);
        });
        Ok(Response::new(Box::pin(
            UnboundedReceiverStream::new(rx).map(Ok),
        )))
    }
}
