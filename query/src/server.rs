//! The HTTP server: routes, shared state, and serving until shutdown.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use futures::{StreamExt, stream};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::auth::{Guard, Role, TokenConfig, Tokens, require};
use crate::error::{QueryError, Result};
use crate::format::{Encoder, Format};
use crate::sql::{SqlEngine, SqlLimits, TABLES};

/// Query server settings; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Address to listen on.
    pub listen: String,
    /// Per-query limits.
    pub limits: SqlLimits,
    /// Bearer tokens; none configured means auth is off.
    pub tokens: Vec<TokenConfig>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            limits: SqlLimits::default(),
            tokens: Vec::new(),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Runs SQL.
    pub engine: Arc<SqlEngine>,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// The NATS connection, for readiness.
    pub nats: Option<async_nats::Client>,
}

/// The full router: public health and metrics, SQL behind `read`, `extra_operate` (e.g. HTTP
/// ingest) behind `operate`.
pub fn router(state: AppState, tokens: Vec<TokenConfig>, extra_operate: Router) -> Router {
    let tokens = Arc::new(Tokens::new(tokens));
    if !tokens.enabled() {
        tracing::warn!("no API tokens configured: the API is open to anyone who can reach it");
    }
    let guard = |needed| Guard {
        tokens: tokens.clone(),
        needed,
    };
    let read = Router::new()
        .route("/api/v1/sql", get(sql_get).post(sql_post))
        .route("/api/v1/tables", get(list_tables))
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(guard(Role::Read), require));
    let operate = extra_operate.layer(middleware::from_fn_with_state(
        guard(Role::Operate),
        require,
    ));
    Router::new()
        .route("/health", get(health))
        .route("/live", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(read)
        .merge(operate)
}

/// Serves `router` on `listener` until `shutdown` completes, then drains open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn ready(State(state): State<AppState>) -> Response {
    let nats_ok = state
        .nats
        .as_ref()
        .is_none_or(|c| c.connection_state() == async_nats::connection::State::Connected);
    let status = if nats_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"ready": nats_ok, "nats": nats_ok})),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

async fn list_tables(State(state): State<AppState>) -> Result<Json<serde_json::Value>> {
    let result = state
        .engine
        .query("SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
        .await?;
    let mut out = serde_json::Map::new();
    for name in TABLES {
        out.insert((*name).into(), serde_json::json!([]));
    }
    let (mut encoder, opening) = Encoder::new(Format::Json, &result.schema)?;
    let mut body = opening.to_vec();
    for b in &result.batches {
        body.extend_from_slice(&encoder.batch(b)?);
    }
    body.extend_from_slice(&encoder.finish()?);
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&body).map_err(|e| QueryError::Internal(e.to_string()))?;
    for row in rows {
        if let (Some(t), Some(c), Some(d)) = (
            row["table_name"].as_str(),
            row["column_name"].as_str(),
            row["data_type"].as_str(),
        ) && let Some(cols) = out.entry(t).or_insert(serde_json::json!([])).as_array_mut()
        {
            cols.push(serde_json::json!({"name": c, "type": d}));
        }
    }
    Ok(Json(serde_json::Value::Object(out)))
}

/// Query-string parameters of `GET /api/v1/sql`.
#[derive(Debug, Deserialize)]
struct SqlParams {
    /// The SQL.
    q: Option<String>,
    /// Result format.
    format: Option<String>,
}

/// JSON body of `POST /api/v1/sql`.
#[derive(Debug, Deserialize)]
struct SqlBody {
    /// The SQL.
    sql: String,
    /// Result format.
    format: Option<String>,
}

fn choose_format(explicit: Option<&str>, headers: &HeaderMap) -> Result<Format> {
    if let Some(name) = explicit {
        return Format::from_name(name);
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::from_accept)
        .unwrap_or(Format::Json))
}

async fn sql_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<SqlParams>,
) -> Response {
    let Some(sql) = p.q else {
        return QueryError::BadRequest("missing query parameter q".into()).into_response();
    };
    respond(&state, &sql, choose_format(p.format.as_deref(), &headers)).await
}

async fn sql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<SqlParams>,
    body: bytes::Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (sql, format) = if is_json {
        match serde_json::from_slice::<SqlBody>(&body) {
            Ok(b) => (b.sql, b.format.or(p.format)),
            Err(e) => {
                return QueryError::BadRequest(format!(
                    "body must be {{\"sql\": \"...\", \"format\"?: \"...\"}}: {e}"
                ))
                .into_response();
            }
        }
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(sql) => (sql, p.format),
            Err(_) => return QueryError::BadRequest("body is not UTF-8".into()).into_response(),
        }
    };
    respond(&state, &sql, choose_format(format.as_deref(), &headers)).await
}

async fn respond(state: &AppState, sql: &str, format: Result<Format>) -> Response {
    let started = Instant::now();
    let outcome = match format {
        Ok(format) => run(state, sql, format).await,
        Err(e) => Err(e),
    };
    let status = match &outcome {
        Ok(_) => "ok",
        Err(e) => e.status_code().1,
    };
    metrics::counter!("adit_query_requests_total", "status" => status).increment(1);
    metrics::histogram!("adit_query_seconds").record(started.elapsed().as_secs_f64());
    if let Err(e) = &outcome {
        tracing::info!(error = %e, "query refused");
    }
    outcome.unwrap_or_else(IntoResponse::into_response)
}

async fn run(state: &AppState, sql: &str, format: Format) -> Result<Response> {
    let result = state.engine.query(sql).await?;
    let rows: usize = result.batches.iter().map(|b| b.num_rows()).sum();
    let (encoder, opening) = Encoder::new(format, &result.schema)?;
    // Encode lazily, one batch per chunk, as the client reads.
    let rest = stream::unfold(
        (Some(encoder), result.batches.into_iter()),
        |(encoder, mut batches)| async move {
            let mut encoder = encoder?;
            match batches.next() {
                Some(batch) => {
                    let chunk = encoder.batch(&batch);
                    Some((chunk, (Some(encoder), batches)))
                }
                None => Some((encoder.finish(), (None, batches))),
            }
        },
    );
    let chunks = stream::once(async move { Ok(opening) })
        .chain(rest)
        .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header("x-adit-rows", rows)
        .body(Body::from_stream(chunks))
        .map_err(|e| QueryError::Internal(e.to_string()))
}
