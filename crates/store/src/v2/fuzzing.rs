//! The entry point of the fuzz target `v2_request` (`crates/store/fuzz`), and of the test that
//! replays its committed corpus on the stable toolchain: arbitrary bytes as a few `/v2/keys`
//! requests, through what a member does with one — the request target parsed as hyper does, the
//! method check, [`Form::parse`], [`request::parse`], then the in-memory v2 store (writes applied
//! as the log applies them, with TTL expiry between requests, reads, watches from the history
//! and live watchers), and the answers serialised. Nothing may panic.
//!
//! Input: requests separated by `0xFE`, each `METHOD 0xFF TARGET 0xFF CONTENT-TYPE 0xFF BODY`
//! (missing fields are empty). TARGET is what follows `/v2/keys` (path and query, as sent on
//! the wire). Neither byte occurs in UTF-8, so corpus files stay readable text.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use super::request::{self, Form, KeyRequest};
use crate::state::error::V2Error;
use crate::state::watch::{self, Hub, Start};
use crate::state::{Command, Output, State, V2Method, V2Request};

/// At most this many requests per input: enough to build state, short enough to stay fast.
pub const MAX_REQUESTS: usize = 16;

/// The clock of the first request (unix nanoseconds); each next one is a second later.
const START: i64 = 1_700_000_000_000_000_000;
const SECOND: i64 = 1_000_000_000;

/// Runs `data` as described in the module docs.
pub fn run(data: &[u8]) {
    let mut state = seeded();
    let mut hub = Hub::default();
    let mut watchers = Vec::new();
    for (i, req) in data.split(|&b| b == 0xFE).take(MAX_REQUESTS).enumerate() {
        let now = START + (i as i64 + 1) * SECOND;
        apply(&mut state, &mut hub, &Command::V2Expire { now });
        if let Some(Start::Waiting(rx)) = one(&mut state, &mut hub, req, now) {
            watchers.push(rx);
        }
        for rx in &mut watchers {
            while let Ok(e) = rx.try_recv() {
                serde_json::to_vec(&e).expect("events serialise");
            }
        }
    }
}

/// A store with a file, a directory, a hidden key and a key that expires after 2 requests.
fn seeded() -> State {
    let mut s = State::default();
    let put = |path: &str, value: &str, dir: bool, expiration: Option<i64>| {
        Command::V2(V2Request {
            method: V2Method::Put,
            path: path.into(),
            value: value.into(),
            dir,
            expiration,
            now: START,
            ..Default::default()
        })
    };
    for cmd in [
        put("/a", "1", false, None),
        put("/d/x", "2", false, None),
        put("/d/e", "", true, None),
        put("/_hidden", "3", false, None),
        put("/t", "4", false, Some(START + 2 * SECOND + 1)),
    ] {
        s.apply(&cmd);
    }
    s.v2.take_notifications();
    s
}

fn apply(state: &mut State, hub: &mut Hub, cmd: &Command) -> Output {
    let out = state.apply(cmd);
    for n in state.v2.take_notifications() {
        hub.notify(&n);
    }
    out
}

/// One request, as `handlers::keys` serves it; a live watcher if it registered one.
fn one(state: &mut State, hub: &mut Hub, req: &[u8], now: i64) -> Option<Start> {
    let mut fields = req.splitn(4, |&b| b == 0xFF);
    let method = Method::from_bytes(fields.next().unwrap_or_default()).ok()?;
    let target = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let content_type = fields.next().unwrap_or_default();
    let body = fields.next().unwrap_or_default();
    let target = match target.chars().next() {
        None | Some('/' | '?') => format!("/v2/keys{target}"),
        Some(_) => format!("/v2/keys/{target}"),
    };
    // What hyper would refuse (400) never reaches the handler.
    let uri: Uri = target.parse().ok()?;
    if uri.path() != "/v2/keys" && !uri.path().starts_with("/v2/keys/") {
        return None; // routed elsewhere
    }
    if ![
        Method::HEAD,
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
    ]
    .contains(&method)
    {
        return None; // 405
    }
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(content_type) {
        if !content_type.is_empty() {
            headers.insert(axum::http::header::CONTENT_TYPE, v);
        }
    }
    let form = Form::parse(&method, &headers, uri.query(), body);
    let (parsed, _no_value) = match request::parse(&method, &request::decoded_key(&uri), &form, now)
    {
        Ok(r) => r,
        Err(e) => {
            answer_error(&e);
            return None;
        }
    };
    match parsed {
        KeyRequest::Get {
            path, recursive, ..
        } => answer(state.v2.get(&path, recursive, now)),
        KeyRequest::Write(r) => match apply(state, hub, &Command::V2(r)) {
            Output::V2(r) => answer(r),
            other => panic!("a v2 request applied as {other:?}"),
        },
        KeyRequest::Wait {
            path,
            recursive,
            stream,
            since,
        } => match watch::start(&state.v2, hub, &path, recursive, stream, since) {
            Ok((Start::Ready(e), _)) => answer(Ok(e)),
            Ok((w @ Start::Waiting(_), _)) => return Some(w),
            Err(e) => answer_error(&e),
        },
    }
    None
}

fn answer(r: Result<crate::state::event::Event, V2Error>) {
    match r {
        Ok(e) => {
            serde_json::to_vec(&e).expect("events serialise");
        }
        Err(e) => answer_error(&e),
    }
}

/// What `handlers::error_response` needs of an error: its status and its JSON.
fn answer_error(e: &V2Error) {
    let _ = StatusCode::from_u16(e.status());
    serde_json::to_vec(e).expect("errors serialise");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_every_kind_run() {
        let reqs: &[&[u8]] = &[
            b"PUT\xff/k?ttl=5\xffapplication/x-www-form-urlencoded\xffvalue=v",
            b"GET\xff/k?wait=true&waitIndex=1",
            b"GET\xff/?recursive=true&sorted=true",
            b"GET\xff/d?wait=true&recursive=true&stream=true",
            b"DELETE\xff/d?recursive=true",
            b"POST\xff/q\xffapplication/x-www-form-urlencoded\xffvalue=%ff",
            b"PUT\xff/a?prevValue=1&value=2",
            b"GET\xff/%2e%2e/a?quorum=true",
            b"PATCH\xff/a",
        ];
        run(&reqs.join(&0xFE));
        for r in reqs {
            run(r);
        }
    }
}
