//! The routes every deployment has: liveness, readiness, metrics, the list of tables, and SQL
//! (GET and POST, rows as JSON, NDJSON, CSV or Arrow, streamed when asked).

use std::time::Instant;

use arrow::array::AsArray;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{StreamExt, stream};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller, Role};
use crate::error::{QueryError, Result};
use crate::format::{Encoder, Format};
use crate::state::AppState;

/// Health, readiness and metrics for anyone (probes and scrapers carry no token; `/live` is
/// `/health` under the name orchestrators probe) — readiness and metrics, which say what is
/// inside, only from `query.ops_networks` when it lists any — and SQL and the table list for
/// readers.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .route("/live", axum::routing::get(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .merge(
            access.at(
                Role::Read,
                OpenApiRouter::new()
                    .routes(routes!(sql_get, sql_post))
                    .routes(routes!(list_tables)),
            ),
        )
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "{\"status\":\"ok\"}")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: NATS is connected and every supervised part of the process runs (a part being
/// restarted after a failure is named in `down`).
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, description = "ready"), (status = 403, description = "a caller outside query.ops_networks"), (status = 503, description = "NATS is not connected, or a part is down (named in `down`)")))]
pub async fn ready(
    State(state): State<AppState>,
    from: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Response {
    if let Some(refused) = ops_caller(&state, from) {
        return refused;
    }
    let nats_ok = state
        .nats
        .as_ref()
        .is_none_or(|c| c.connection_state() == async_nats::connection::State::Connected);
    let down = state.vitals.down();
    let ready = nats_ok && down.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "ready": ready,
            "nats": nats_ok,
            "down": down,
            "parts": state.vitals.parts(),
        })),
    )
        .into_response()
}

/// Refuses a caller outside `query.ops_networks` (when it lists any; a caller whose address is
/// unknown is outside).
fn ops_caller(
    state: &AppState,
    from: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Option<Response> {
    if state.ops_networks.is_empty() {
        return None;
    }
    let ip = from.map(|Extension(c)| c.0.ip());
    if ip.is_some_and(|ip| state.ops_networks.iter().any(|net| net.contains(&ip))) {
        return None;
    }
    Some(
        (
            StatusCode::FORBIDDEN,
            Json(adit_schemas::api::ErrorBody::new(
                "outside_ops_networks",
                "readiness and metrics answer only to the networks query.ops_networks lists",
            )),
        )
            .into_response(),
    )
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format"), (status = 403, description = "a caller outside query.ops_networks")))]
pub async fn metrics(
    State(state): State<AppState>,
    from: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Response {
    if let Some(refused) = ops_caller(&state, from) {
        return refused;
    }
    match state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

/// Every table with its columns and their types.
#[utoipa::path(get, path = "/api/v1/tables", tag = "sql",
    responses((status = 200, description = "{table: [{name, type}]}"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list_tables(State(state): State<AppState>) -> Result<Json<serde_json::Value>> {
    let result = state
        .engine
        .query("SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
        .await?;
    let mut out = serde_json::Map::new();
    for batch in &result.batches {
        let column = |i: usize| {
            arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| QueryError::Internal(e.to_string()))
        };
        let (tables, columns, types) = (column(0)?, column(1)?, column(2)?);
        let (tables, columns, types) = (
            tables.as_string::<i32>(),
            columns.as_string::<i32>(),
            types.as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            let entry = out
                .entry(tables.value(row))
                .or_insert(serde_json::json!([]));
            if let Some(cols) = entry.as_array_mut() {
                cols.push(
                    serde_json::json!({"name": columns.value(row), "type": types.value(row)}),
                );
            }
        }
    }
    Ok(Json(serde_json::Value::Object(out)))
}

/// Query-string parameters of `GET /api/v1/sql`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SqlParams {
    /// The SQL (GET only).
    q: Option<String>,
    /// Result format: json (default), ndjson, csv, arrow or parquet; or use `Accept`.
    format: Option<String>,
    /// Stream the rows as they are made, without the row limit (not for json).
    stream: Option<bool>,
}

/// JSON body of `POST /api/v1/sql` (a `text/plain` body is the SQL itself).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SqlBody {
    /// The SQL.
    sql: String,
    /// Result format.
    format: Option<String>,
    /// Stream without the row limit.
    stream: Option<bool>,
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

/// Runs one read-only SQL statement given as `q`.
#[utoipa::path(get, path = "/api/v1/sql", tag = "sql", params(SqlParams),
    responses((status = 200, description = "The rows, in the format asked for; header x-adit-rows"),
              (status = 400, description = "{error: {code, message}}: the statement is invalid or not read-only"),
              (status = 401), (status = 403),
              (status = 422, description = "over the time, memory or row limit")),
    security(("bearer" = [])))]
pub async fn sql_get(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Query(p): Query<SqlParams>,
) -> Response {
    let Some(sql) = p.q else {
        return QueryError::BadRequest("missing query parameter q".into()).into_response();
    };
    let ask = Ask {
        role: role_of(caller),
        format: choose_format(p.format.as_deref(), &headers),
        stream: p.stream.unwrap_or(false),
    };
    respond(&state, &sql, ask).await
}

/// What the caller asked for besides the SQL.
struct Ask {
    role: Role,
    format: Result<Format>,
    stream: bool,
}

fn role_of(caller: Option<Extension<Caller>>) -> Role {
    caller.map_or(Role::Admin, |Extension(c)| c.role)
}

/// Runs one read-only SQL statement given as the body.
#[utoipa::path(post, path = "/api/v1/sql", tag = "sql", params(SqlParams),
    request_body(content = SqlBody, description = "JSON, or the SQL as text/plain"),
    responses((status = 200, description = "The rows, in the format asked for; header x-adit-rows"),
              (status = 400, description = "{error: {code, message}}"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn sql_post(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Query(p): Query<SqlParams>,
    body: bytes::Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (sql, format, stream) = if is_json {
        match serde_json::from_slice::<SqlBody>(&body) {
            Ok(b) => (b.sql, b.format.or(p.format), b.stream.or(p.stream)),
            Err(e) => {
                return QueryError::BadRequest(format!(
                    "body must be {{\"sql\": \"...\", \"format\"?: \"...\"}}: {e}"
                ))
                .into_response();
            }
        }
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(sql) => (sql, p.format, p.stream),
            Err(_) => return QueryError::BadRequest("body is not UTF-8".into()).into_response(),
        }
    };
    let ask = Ask {
        role: role_of(caller),
        format: choose_format(format.as_deref(), &headers),
        stream: stream.unwrap_or(false),
    };
    respond(&state, &sql, ask).await
}

async fn respond(state: &AppState, sql: &str, ask: Ask) -> Response {
    let started = Instant::now();
    let outcome = match ask.format {
        Ok(format) => match state.admission.admit(ask.role).await {
            Ok(slot) if ask.stream => run_streamed(state, sql, format, slot).await,
            Ok(slot) => run(state, sql, format, slot).await,
            Err(busy) => Err(busy.into()),
        },
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

/// Runs `sql` and sends its collected rows; the slot is held until the client has read the
/// last byte (the rows stay in memory until then).
async fn run(
    state: &AppState,
    sql: &str,
    format: Format,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response> {
    let result = state.engine.query(sql).await?;
    let rows: usize = result.batches.iter().map(|b| b.num_rows()).sum();
    let (mut encoder, opening) = Encoder::new(format, &result.schema)?;
    let mut batches = result.batches.into_iter();
    // The first batch is encoded before the answer starts, so a result the format cannot
    // carry (most results are one batch) is a clear error, not a cut connection.
    let first = batches.next().map(|b| encoder.batch(&b)).transpose()?;
    // Encode the rest lazily, one batch per chunk, as the client reads.
    let rest = stream::unfold(
        (Some(encoder), batches, Some(slot)),
        |(encoder, mut batches, slot)| async move {
            let mut encoder = encoder?;
            match batches.next() {
                Some(batch) => {
                    let chunk = encoder.batch(&batch);
                    Some((chunk, (Some(encoder), batches, slot)))
                }
                None => Some((encoder.finish(), (None, batches, None))),
            }
        },
    );
    let chunks = stream::iter([Ok(opening)].into_iter().chain(first.map(Ok)))
        .chain(rest)
        .map(cut_on_error);
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header("x-adit-rows", rows)
        .body(Body::from_stream(chunks))
        .map_err(|e| QueryError::Internal(e.to_string()))
}

/// A chunk of an answer under way; an error can no longer change the status, so it cuts the
/// connection (the client sees an incomplete body) and is logged, never silent.
fn cut_on_error(chunk: Result<bytes::Bytes>) -> std::io::Result<bytes::Bytes> {
    chunk.map_err(|e| {
        tracing::warn!(error = %e, "answer cut: a later part of the result could not be sent");
        std::io::Error::other(e.to_string())
    })
}

/// Streams the rows of `sql` as they are made (no row limit); the slot is held until the
/// client has read the last byte or gone away, and the statement stops with it.
async fn run_streamed(
    state: &AppState,
    sql: &str,
    format: Format,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response> {
    if format == Format::Json {
        return Err(QueryError::BadRequest(
            "stream=true is for ndjson, csv, arrow or parquet; a JSON result keeps the row limit"
                .into(),
        ));
    }
    let rows = state.engine.query_stream(sql).await?;
    let (encoder, opening) = Encoder::new(format, &rows.schema)?;
    let rest = stream::unfold(Some((encoder, rows, slot)), |state| async move {
        let (mut encoder, mut rows, slot) = state?;
        match rows.next().await {
            Some(Ok(batch)) => {
                let chunk = encoder.batch(&batch);
                Some((chunk, Some((encoder, rows, slot))))
            }
            // Logged by `cut_on_error`.
            Some(Err(e)) => Some((Err(QueryError::from(e)), None)),
            None => Some((encoder.finish(), None)),
        }
    });
    let chunks = stream::once(async move { Ok(opening) })
        .chain(rest)
        .map(cut_on_error);
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Body::from_stream(chunks))
        .map_err(|e| QueryError::Internal(e.to_string()))
}
