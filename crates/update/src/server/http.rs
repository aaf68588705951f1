//! The server's HTTP side (axum), with FleetLock (`/v1/pre-reboot`, `/v1/steady-state`) for
//! machines that coordinate reboots through it. State lives behind one mutex and is saved to the data dir after
//! every change; payload files are streamed from disk.

use super::policy::{self, Policy};
use super::state::{self, State};
use crate::omaha;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub policy: Policy,
    /// Base URL clients reach the server at (for payload URLs); default: from the Host header.
    pub public_url: Option<String>,
    /// Keys a published payload must be signed with; `None` publishes without checking.
    pub trusted_keys_dir: Option<PathBuf>,
    /// FleetLock: how many nodes of a group may reboot at once.
    pub fleetlock_max: usize,
    /// Served over TLS: payload URLs made from the Host header are `https://`.
    pub https: bool,
}

pub struct Shared {
    pub config: Config,
    pub state: Mutex<State>,
}

pub fn router(config: Config) -> Result<Router, state::Error> {
    let st = State::load(&config.data_dir)?;
    let shared = Arc::new(Shared {
        config,
        state: Mutex::new(st),
    });
    Ok(Router::new()
        .route("/v1/update/", post(omaha_post))
        .route("/v1/update", post(omaha_post))
        .route("/v1/payload/{version}/{file}", get(payload))
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .route("/api/state", get(api_state))
        .route("/api/publish", post(api_publish))
        .route("/api/promote", post(api_promote))
        .route("/api/groups/{name}", post(api_group))
        .route("/v1/pre-reboot", post(fleetlock_pre_reboot))
        .route("/v1/steady-state", post(fleetlock_steady_state))
        .with_state(shared))
}

type Ax = AxState<Arc<Shared>>;

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, format!("{msg}\n")).into_response()
}

impl Shared {
    /// Runs `f` on the state and saves it; the lock is not held across awaits.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, state::Error>,
    ) -> Result<T, state::Error> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut st)?;
        st.save(&self.config.data_dir)?;
        Ok(out)
    }
}

async fn omaha_post(
    AxState(sh): Ax,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let req = match omaha::Request::parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let base = match &sh.config.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            // HTTP/1.1 names the host in Host, HTTP/2 in the URI's authority.
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or(uri.authority().map(|a| a.as_str()))
                .unwrap_or("127.0.0.1");
            let scheme = if sh.config.https { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
    };
    let codebase = format!("{base}/v1/payload");
    let resp = sh.change(|st| Ok(policy::handle(st, &sh.config.policy, &req, &codebase)));
    match resp.map(|r| r.to_xml()) {
        Ok(Ok(xml)) => ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn payload(
    AxState(sh): Ax,
    UrlPath((version, file)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // Only files the release lists: no paths from the URL reach the file system otherwise.
    let known = {
        let st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        st.releases
            .get(&version)
            .is_some_and(|r| r.files.iter().any(|f| f.name == file))
    };
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            format!("no file {file} in release {version}"),
        );
    }
    let path = State::payload_dir(&sh.config.data_dir, &version).join(&file);
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return error(StatusCode::NOT_FOUND, format!("{}: {e}", path.display())),
    };
    let len = match f.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|h| h.to_str().ok())
        .map(|h| super::range::parse(h, len))
        .unwrap_or(Ok(None));
    let (status, start, end) = match range {
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Err(super::range::Unsatisfiable) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response()
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    if let Err(e) = f.seek(std::io::SeekFrom::Start(start)).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    let stream = futures_util::stream::unfold((f, count), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(256 * 1024) as usize];
        match f.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                (f, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, count.into());
    h.insert(header::ACCEPT_RANGES, "bytes".parse().expect("valid"));
    h.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().expect("valid"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{len}").parse().expect("valid"),
        );
    }
    resp
}

async fn metrics(AxState(sh): Ax) -> Response {
    let st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        super::metrics::render(&st),
    )
        .into_response()
}

async fn page(AxState(sh): Ax) -> Html<String> {
    let st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
    Html(super::metrics::page(&st))
}

async fn api_state(AxState(sh): Ax) -> Response {
    let st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
    Json(st.clone()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishReq {
    dir: PathBuf,
    #[serde(default)]
    channel: Option<String>,
}

fn result<T: serde::Serialize>(r: Result<T, state::Error>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e @ (state::Error::Io { .. } | state::Error::Json { .. })) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn api_publish(AxState(sh): Ax, Json(req): Json<PublishReq>) -> Response {
    let keys = match &sh.config.trusted_keys_dir {
        Some(d) => match crate::payload::keys::load_trusted(d) {
            Ok(k) => Some(k),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        None => None,
    };
    let sh2 = sh.clone();
    // Copying and hashing a payload is slow, blocking work.
    let r = tokio::task::spawn_blocking(move || {
        sh2.change(|st| {
            st.publish(
                &sh2.config.data_dir,
                &req.dir,
                keys.as_deref(),
                req.channel.as_deref(),
            )
        })
    })
    .await;
    match r {
        Ok(r) => result(r),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteReq {
    version: String,
    channel: String,
}

async fn api_promote(AxState(sh): Ax, Json(req): Json<PromoteReq>) -> Response {
    result(sh.change(|st| {
        st.promote(&req.version, &req.channel)?;
        Ok(st.channels.clone())
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupReq {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    rollout_percent: Option<u8>,
    #[serde(default)]
    paused: Option<bool>,
}

async fn api_group(
    AxState(sh): Ax,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<GroupReq>,
) -> Response {
    result(sh.change(|st| {
        st.set_group(
            &name,
            req.channel.as_deref(),
            req.rollout_percent,
            req.paused,
        )
    }))
}

#[derive(Deserialize)]
struct FleetLockReq {
    client_params: FleetLockParams,
}

#[derive(Deserialize)]
struct FleetLockParams {
    node_uuid: String,
    #[serde(default = "default_group")]
    group: String,
}

fn default_group() -> String {
    "default".into()
}

fn fleetlock_error(code: StatusCode, kind: &str, value: String) -> Response {
    (
        code,
        Json(serde_json::json!({ "kind": kind, "value": value })),
    )
        .into_response()
}

/// The FleetLock request, if the header and body are what the protocol says; else the error
/// kind and why.
fn fleetlock_req(
    headers: &HeaderMap,
    body: &str,
) -> Result<FleetLockParams, (&'static str, String)> {
    if headers
        .get("fleet-lock-protocol")
        .and_then(|v| v.to_str().ok())
        != Some("true")
    {
        return Err((
            "missing_header",
            "fleet-lock-protocol: true is required".into(),
        ));
    }
    serde_json::from_str::<FleetLockReq>(body)
        .map(|r| r.client_params)
        .map_err(|e| ("bad_body", e.to_string()))
}

async fn fleetlock_pre_reboot(AxState(sh): Ax, headers: HeaderMap, body: String) -> Response {
    let p = match fleetlock_req(&headers, &body) {
        Ok(p) => p,
        Err((kind, why)) => return fleetlock_error(StatusCode::BAD_REQUEST, kind, why),
    };
    let max = sh.config.fleetlock_max;
    let r = sh.change(|st| Ok(st.fleetlock_take(&p.group, &p.node_uuid, max)));
    match r {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(busy)) => fleetlock_error(
            StatusCode::CONFLICT,
            "failed_lock",
            format!(
                "group {} has {} of {max} reboot slots taken by {:?}",
                p.group,
                busy.holders.len(),
                busy.holders
            ),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn fleetlock_steady_state(AxState(sh): Ax, headers: HeaderMap, body: String) -> Response {
    let p = match fleetlock_req(&headers, &body) {
        Ok(p) => p,
        Err((kind, why)) => return fleetlock_error(StatusCode::BAD_REQUEST, kind, why),
    };
    match sh.change(|st| {
        st.fleetlock_release(&p.group, &p.node_uuid);
        Ok(())
    }) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
