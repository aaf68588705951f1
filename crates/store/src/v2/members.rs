//! `/v2/members` changes: POST adds a member, DELETE removes one, PUT changes its peer URLs
//! (etcd's v2 members API, answered with its status codes and `{"message": …}` errors).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::misc::{json_response, member_json};
use super::Ctx;
use crate::raft::membership::{self, Change, ChangeError};

#[derive(Deserialize)]
struct PeerUrls {
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
}

/// etcd's `httptypes.HTTPError`.
fn http_error(code: StatusCode, message: &str) -> Response {
    let mut res = json_response(&serde_json::json!({ "message": message }));
    *res.status_mut() = code;
    res
}

/// A refused request: etcd's status code and message.
type Refusal = (StatusCode, String);

/// The body as a list of peer URLs, or etcd's 415/400 answer.
fn peer_urls(headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, Refusal> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Bad Content-Type".into(),
        ));
    }
    let req: PeerUrls =
        serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    if let Some(bad) = req
        .peer_urls
        .iter()
        .find(|u| crate::config::host_port(u).is_none())
    {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("invalid peer URL {bad:?} (expected http://host:port)"),
        ));
    }
    if req.peer_urls.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "no peer URLs given".into()));
    }
    Ok(req.peer_urls)
}

fn member_id(id: &str) -> Result<u64, Refusal> {
    u64::from_str_radix(id, 16)
        .map_err(|_| (StatusCode::NOT_FOUND, format!("No such member: {id}")))
}

fn change_error(e: ChangeError, id: &str) -> Response {
    match e {
        ChangeError::NotFound => {
            http_error(StatusCode::NOT_FOUND, &format!("No such member: {id}"))
        }
        ChangeError::PeerUrlExists => {
            http_error(StatusCode::CONFLICT, "membership: peerURL exists")
        }
        ChangeError::IdExists => http_error(StatusCode::CONFLICT, "membership: ID exists"),
        e => http_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub async fn add(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let urls = match peer_urls(&headers, &body) {
        Ok(u) => u,
        Err((code, msg)) => return http_error(code, &msg),
    };
    let id = ctx.member.id_for(&urls);
    let change = Change::Add {
        id,
        peer_urls: urls,
        learner: false,
    };
    if let Err(e) = membership::change(&ctx.core, change).await {
        return change_error(e, &format!("{id:x}"));
    }
    let Some(m) = ctx.core.members().into_iter().find(|m| m.id == id) else {
        return http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the added member is not listed",
        );
    };
    let mut res = json_response(&member_json(m));
    *res.status_mut() = StatusCode::CREATED;
    res
}

pub async fn remove(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    let n = match member_id(&id) {
        Ok(n) => n,
        Err((code, msg)) => return http_error(code, &msg),
    };
    match membership::change(&ctx.core, Change::Remove { id: n }).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => change_error(e, &id),
    }
}

pub async fn update(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = match member_id(&id) {
        Ok(n) => n,
        Err((code, msg)) => return http_error(code, &msg),
    };
    let urls = match peer_urls(&headers, &body) {
        Ok(u) => u,
        Err((code, msg)) => return http_error(code, &msg),
    };
    match membership::change(
        &ctx.core,
        Change::Update {
            id: n,
            peer_urls: urls,
        },
    )
    .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => change_error(e, &id),
    }
}
