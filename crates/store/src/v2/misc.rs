//! The small endpoints: `/version`, `/health`, `/v2/members`, `/v2/machines`, `/v2/stats/*`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Ctx;
use crate::core::now_nanos;
use crate::state::event::rfc3339_nanos;

/// The etcd versions we answer as: clients gate features on these.
pub const SERVER_VERSION: &str = "3.4.23";
pub const CLUSTER_VERSION: &str = "3.4.0";

pub(crate) fn json_response<T: Serialize>(v: &T) -> Response {
    let mut body = serde_json::to_string(v).expect("responses serialise");
    body.push('\n');
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

pub async fn version() -> Response {
    // Written by hand: etcd's field order, which a JSON map would sort away.
    let body = format!(r#"{{"etcdserver":"{SERVER_VERSION}","etcdcluster":"{CLUSTER_VERSION}"}}"#);
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// etcd 3.4's `/health`: healthy only with a leader and a linearizable read completing within
/// a second; otherwise `{"health":"false"}` with 503, so a load balancer or a script polling it
/// does not send clients to a member that cannot serve them yet.
pub async fn health(State(ctx): State<Ctx>) -> Response {
    let healthy = ctx.core.leader_id().is_some()
        && matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), ctx.core.read_barrier()).await,
            Ok(Ok(()))
        );
    if healthy {
        r#"{"health":"true"}"#.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#).into_response()
    }
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// etcd's `httptypes.Member` (structs, not `json!`, to keep Go's field order).
#[derive(Serialize)]
pub(crate) struct MemberJson {
    id: String,
    name: String,
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    client_urls: Vec<String>,
}

pub(crate) fn member_json(m: crate::core::MemberInfo) -> MemberJson {
    MemberJson {
        id: format!("{:x}", m.id),
        name: m.name,
        peer_urls: m.peer_urls,
        client_urls: m.client_urls,
    }
}

/// The leader's entry, or this member's while there is none.
fn leader_info(ctx: &Ctx) -> crate::core::MemberInfo {
    let leader = ctx.core.leader_id().unwrap_or(ctx.member.id);
    let mut ms = ctx.core.members_with(&ctx.member);
    let i = ms.iter().position(|m| m.id == leader).unwrap_or(0);
    ms.swap_remove(i)
}

pub async fn members(State(ctx): State<Ctx>) -> Response {
    #[derive(Serialize)]
    struct Members {
        members: Vec<MemberJson>,
    }
    json_response(&Members {
        members: ctx
            .core
            .members_with(&ctx.member)
            .into_iter()
            .map(member_json)
            .collect(),
    })
}

pub async fn leader(State(ctx): State<Ctx>) -> Response {
    json_response(&member_json(leader_info(&ctx)))
}

pub async fn machines(State(ctx): State<Ctx>) -> Response {
    let urls: Vec<String> = ctx
        .core
        .members_with(&ctx.member)
        .into_iter()
        .flat_map(|m| m.client_urls)
        .collect();
    urls.join(", ").into_response()
}

/// Go's `time.Duration.String()` for non-negative durations.
fn go_duration(nanos: i64) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        out.push('.');
        out.push_str(format!("{frac:09}").trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LeaderInfo {
    leader: String,
    uptime: String,
    start_time: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SelfStats {
    name: String,
    id: String,
    state: &'static str,
    start_time: String,
    leader_info: LeaderInfo,
    recv_append_request_cnt: u64,
    send_append_request_cnt: u64,
}

pub async fn stats_self(State(ctx): State<Ctx>) -> Response {
    let m = &ctx.member;
    json_response(&SelfStats {
        name: m.name.clone(),
        id: m.id_hex(),
        state: if ctx.core.is_leader() {
            "StateLeader"
        } else {
            "StateFollower"
        },
        start_time: rfc3339_nanos(m.start_time),
        leader_info: LeaderInfo {
            leader: format!("{:x}", ctx.core.leader_id().unwrap_or(m.id)),
            uptime: go_duration(now_nanos() - m.start_time),
            start_time: rfc3339_nanos(m.start_time),
        },
        recv_append_request_cnt: 0,
        send_append_request_cnt: 0,
    })
}

pub async fn stats_store(State(ctx): State<Ctx>) -> Response {
    let stats = {
        let inner = ctx.core.lock();
        let mut s = inner.state.v2.stats.clone();
        s.watchers = inner.hub.count() as u64;
        s
    };
    json_response(&stats)
}

pub async fn stats_leader(State(ctx): State<Ctx>) -> Response {
    #[derive(Serialize)]
    struct LeaderStats {
        leader: String,
        followers: std::collections::BTreeMap<String, ()>,
    }
    json_response(&LeaderStats {
        leader: format!("{:x}", ctx.core.leader_id().unwrap_or(ctx.member.id)),
        followers: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_print_like_go() {
        assert_eq!(super::go_duration(1_660_027_966), "1.660027966s");
        assert_eq!(super::go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(super::go_duration(0), "0s");
    }
}
