//! The coordinator's HTTP side, for people and monitoring: a page at `/` (the cluster's
//! figures, workers, shares over time and current job, from the routes below), `/health`, `/api/stats`,
//! `/api/workers`, `/api/workers/{id}`, `/api/jobs`, `/api/shares`, a live stream of updates
//! (`/api/live`, Server-Sent Events) and `/metrics` (Prometheus). With tokens configured
//! (`[cluster.rest]`, the same static and JWT tokens as the main API), every route but
//! `/health` needs one, and a worker's token (`worker = "id"`) sees only `/api/workers/{id}`.

use std::convert::Infallible;
use std::sync::Arc;

use adit_auth::Tokens;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;

use crate::coordinator::Coordinator;

/// The routes, behind `tokens`.
pub(crate) fn router(coordinator: Arc<Coordinator>, tokens: Arc<Tokens>) -> Router {
    if !tokens.enabled() {
        tracing::warn!(
            "no cluster.rest tokens: the coordinator's REST API is open to this machine"
        );
    }
    Router::new()
        .route("/", get(page))
        .route("/cluster.js", get(script))
        .route("/health", get(health))
        .route("/api/stats", get(stats))
        .route("/api/workers", get(workers))
        .route("/api/workers/{id}", get(worker))
        .route("/api/jobs", get(jobs))
        .route("/api/shares", get(shares))
        .route("/api/live", get(live))
        .route("/metrics", get(metrics))
        .with_state(coordinator)
        .layer(axum::middleware::from_fn_with_state(tokens, guard))
}

/// Lets `/health` and the page (which holds no data: it asks the API, with the token it is
/// given) through; every other route needs a token (when tokens are configured), and a
/// worker's token reaches only its own worker's entry.
async fn guard(State(tokens): State<Arc<Tokens>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if ["/health", "/", "/cluster.js"].contains(&path) {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match tokens.identify(authorization) {
        Ok(caller) => caller,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()),
    };
    if let Some(worker) = &caller.worker
        && path != format!("/api/workers/{worker}")
    {
        return refusal(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("a worker's token sees only /api/workers/{worker}"),
        );
    }
    next.run(request).await
}

/// The cluster's page: its figures, workers, shares over time and current job, read from this
/// API every 5 s.
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src data:",
            ),
        ],
        include_str!("page/index.html"),
    )
        .into_response()
}

/// The page's script.
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page/cluster.js"),
    )
        .into_response()
}

/// An error answer in the API's shape.
fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// `{"status","workers","pool_connected"}`: `ok` when mining upstream, `degraded` without an
/// upstream (503), so a load balancer or probe can tell.
async fn health(State(c): State<Arc<Coordinator>>) -> Response {
    let stats = c.stats();
    let connected = stats.upstream.connected;
    let body = json!({
        "status": if connected { "ok" } else { "degraded" },
        "workers": stats.workers_online,
        "pool_connected": connected,
    });
    let code = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// The cluster's figures.
async fn stats(State(c): State<Arc<Coordinator>>) -> Response {
    Json(c.stats()).into_response()
}

/// Every worker.
async fn workers(State(c): State<Arc<Coordinator>>) -> Response {
    Json(c.workers()).into_response()
}

/// One worker, or 404.
async fn worker(State(c): State<Arc<Coordinator>>, Path(id): Path<String>) -> Response {
    match c.worker(&id) {
        Some(w) => Json(w).into_response(),
        None => refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no worker {id}"),
        ),
    }
}

/// The jobs kept.
async fn jobs(State(c): State<Arc<Coordinator>>) -> Response {
    Json(c.jobs()).into_response()
}

/// `?limit=` (1 to 500, default 100).
#[derive(Debug, Deserialize)]
struct Limit {
    /// How many.
    limit: Option<usize>,
}

/// The last shares, newest first.
async fn shares(State(c): State<Arc<Coordinator>>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return refusal(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "limit must be 1 to 500",
        );
    }
    Json(c.recent_shares(limit)).into_response()
}

/// Every update (shares, jobs, workers, upstream) as it happens. A subscriber too slow to keep
/// up is told how many it missed.
async fn live(
    State(c): State<Arc<Coordinator>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ready = futures::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let updates = BroadcastStream::new(c.subscribe_live()).map(|item| {
        Ok(match item {
            Ok(value) => Event::default()
                .event(value["type"].as_str().unwrap_or("update"))
                .data(value.to_string()),
            Err(lagged) => Event::default()
                .event("notice")
                .data(json!({"message": lagged.to_string()}).to_string()),
        })
    });
    Sse::new(ready.chain(updates)).keep_alive(KeepAlive::default())
}

/// Prometheus text, or 503 without a recorder.
async fn metrics(State(c): State<Arc<Coordinator>>) -> Response {
    match &c.metrics {
        Some(render) => ([("content-type", "text/plain; version=0.0.4")], render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are off").into_response(),
    }
}
