//! `/v2/keys`: reads, writes through the log, and long-polling or streaming watches.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use tokio_stream::wrappers::ReceiverStream;

use super::request::{self, Form, KeyRequest};
use super::Ctx;
use crate::core::{now_nanos, Watch};
use crate::state::error::{V2Error, RAFT_INTERNAL};
use crate::state::event::{Event, COMPARE_AND_SWAP, CREATE, SET, UPDATE};
use crate::state::{Command, Output};

fn json_line<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).expect("responses always serialise");
    b.push(b'\n');
    b
}

/// etcd's `Error.WriteTo`: the error JSON with only `X-Etcd-Index`.
pub fn error_response(e: &V2Error) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut res = (status, json_line(e)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-etcd-index", e.index.into());
    res
}

fn index_headers(h: &mut HeaderMap, ctx: &Ctx, etcd_index: u64, log_index: u64) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-etcd-index", etcd_index.into());
    h.insert("x-raft-index", log_index.into());
    h.insert("x-raft-term", ctx.core.term().into());
    if let Ok(v) = HeaderValue::from_str(&ctx.member.cluster_id_hex()) {
        h.insert("x-etcd-cluster-id", v);
    }
}

fn event_response(ctx: &Ctx, mut e: Event, log_index: u64, no_value: bool) -> Response {
    let status = if e.is_created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let etcd_index = e.etcd_index;
    if no_value && [SET, COMPARE_AND_SWAP, CREATE, UPDATE].contains(&e.action.as_str()) {
        e.node = None;
        e.prev_node = None;
    }
    let mut res = (status, json_line(&e)).into_response();
    index_headers(res.headers_mut(), ctx, etcd_index, log_index);
    res
}

pub async fn keys(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if ![
        Method::HEAD,
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
    ]
    .contains(&method)
    {
        let mut res = (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n").into_response();
        res.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, PUT, POST, DELETE"),
        );
        return res;
    }
    let form = Form::parse(&method, &headers, uri.query(), &body);
    let (req, no_value) =
        match request::parse(&method, &request::decoded_key(&uri), &form, now_nanos()) {
            Ok(r) => r,
            Err(e) => return error_response(&e),
        };
    match req {
        KeyRequest::Get {
            path, recursive, ..
        } => {
            // Children are kept sorted, so `sorted` needs no extra work.
            let (r, log_index) = {
                let mut inner = ctx.core.lock();
                (
                    inner.state.v2.get(&path, recursive, now_nanos()),
                    inner.applied,
                )
            };
            match r {
                Ok(e) => event_response(&ctx, e, log_index, false),
                Err(e) => error_response(&e),
            }
        }
        KeyRequest::Write(r) => match ctx.core.propose(Command::V2(r)).await {
            Ok(applied) => match applied.output {
                Output::V2(Ok(e)) => event_response(&ctx, e, applied.log_index, no_value),
                Output::V2(Err(e)) => error_response(&e),
                other => unreachable!("a v2 request applied as {other:?}"),
            },
            Err(e) => error_response(&V2Error::new(RAFT_INTERNAL, e.to_string(), 0)),
        },
        KeyRequest::Wait {
            path,
            recursive,
            stream,
            since,
        } => watch(&ctx, &path, recursive, stream, since),
    }
}

fn watch(ctx: &Ctx, path: &str, recursive: bool, stream: bool, since: u64) -> Response {
    let w = match ctx.core.watch(path, recursive, stream, since) {
        Ok(w) => w,
        Err(e) => return error_response(&e),
    };
    let to_chunk = |e: Event| Ok::<_, Infallible>(Bytes::from(json_line(&e)));
    let (body, index, log_index) = match w {
        Watch::Ready {
            event,
            index,
            log_index,
        } => {
            let first = stream::once(async move { event }).map(to_chunk);
            // A streaming watch answered from history stays open without further events, as in etcd.
            let body = if stream {
                Body::from_stream(first.chain(stream::pending()))
            } else {
                Body::from_stream(first)
            };
            (body, index, log_index)
        }
        Watch::Waiting {
            rx,
            index,
            log_index,
        } => {
            let events = ReceiverStream::new(rx).map(to_chunk);
            let body = if stream {
                Body::from_stream(events)
            } else {
                Body::from_stream(events.take(1))
            };
            (body, index, log_index)
        }
    };
    let mut res = Response::new(body);
    index_headers(res.headers_mut(), ctx, index, log_index);
    res
}
