//! The coordinator's HTTP side, for people and monitoring: `/health`, `/api/stats`,
//! `/api/workers`, `/api/workers/{id}`, `/api/jobs`, `/api/shares`, a live stream of updates
//! (`/api/live`, Server-Sent Events) and `/metrics` (Prometheus).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;

use crate::coordinator::Coordinator;

/// The routes.
pub(crate) fn router(coordinator: Arc<Coordinator>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/stats", get(stats))
        .route("/api/workers", get(workers))
        .route("/api/workers/{id}", get(worker))
        .route("/api/jobs", get(jobs))
        .route("/api/shares", get(shares))
        .route("/api/live", get(live))
        .route("/metrics", get(metrics))
        .with_state(coordinator)
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
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "not_found", "message": format!("no worker {id}")}})),
        )
            .into_response(),
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
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "bad_request", "message": "limit must be 1 to 500"}})),
        )
            .into_response();
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
