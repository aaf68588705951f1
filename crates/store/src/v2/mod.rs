//! etcd's v2 HTTP API: `/v2/keys`, `/v2/members`, `/v2/stats`, `/v2/machines`, `/version`, `/health`.

pub mod fuzzing;
mod handlers;
mod members;
pub mod misc;
pub mod request;

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;

use crate::core::Core;
use crate::member::Member;

#[derive(Clone)]
pub struct Ctx {
    pub core: Arc<Core>,
    pub member: Arc<Member>,
    pub enable_v2: bool,
}

/// The v2 API; everything else goes to `grpc` when it is gRPC, or gets Go's 404.
pub fn router(ctx: Ctx, grpc: Router) -> Router {
    let mut r = Router::new()
        .route("/version", get(misc::version))
        .route("/health", get(misc::health));
    if ctx.enable_v2 {
        r = r
            .route("/v2/keys", any(handlers::keys))
            .route("/v2/keys/", any(handlers::keys))
            .route("/v2/keys/{*key}", any(handlers::keys))
            .route("/v2/members", get(misc::members).post(members::add))
            .route(
                "/v2/members/{id}",
                axum::routing::delete(members::remove).put(members::update),
            )
            .route("/v2/members/leader", get(misc::leader))
            .route("/v2/machines", get(misc::machines))
            .route("/v2/stats/self", get(misc::stats_self))
            .route("/v2/stats/store", get(misc::stats_store))
            .route("/v2/stats/leader", get(misc::stats_leader));
    }
    let fallback = tower::service_fn(move |req: axum::extract::Request| {
        let grpc = grpc.clone();
        async move {
            let is_grpc = req
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            if is_grpc {
                tower::ServiceExt::oneshot(grpc, req).await
            } else {
                Ok(misc::not_found().await)
            }
        }
    });
    r.layer(axum::middleware::map_response(cors))
        .fallback_service(fallback)
        .with_state(ctx)
}

/// etcd answers every client request with permissive CORS headers.
async fn cors(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (k, v) in [
        (
            "access-control-allow-headers",
            "accept, content-type, authorization",
        ),
        (
            "access-control-allow-methods",
            "POST, GET, OPTIONS, PUT, DELETE",
        ),
        ("access-control-allow-origin", "*"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    res
}
