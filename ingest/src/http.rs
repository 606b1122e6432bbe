//! HTTP push ingest: `POST /api/v1/ingest/{kind}` with one JSON object, a JSON array, or NDJSON.
//!
//! Every record is validated before anything is published; valid records are published even
//! when others in the same body are refused, and the reply lists each refusal by index with its
//! reason (HTTP 422). A retried body is harmless: every publish carries its dedupe id.
//!
//! Custom metrics (`metric`) are bounded further: a point of a series (name, source, labels)
//! this process has not seen is refused once it holds `query.custom_metric_series` of them
//! ([`SeriesBudget`]), and every refused point is also dead-lettered to `dlq.ingest` with its
//! reason, so what a script posts wrong is seen by the operator too, not only by the script.

use adit_schemas::api::ErrorBody;
use adit_schemas::{AnyEvent, EventKind, ValidationPolicy};
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use adit_bus::publish::{Outgoing, Publisher};

/// Largest body accepted, bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What the ingest endpoint needs.
#[derive(Clone)]
pub struct IngestState {
    /// Where accepted records go.
    pub publisher: Publisher,
    /// The limits records are validated against.
    pub policy: ValidationPolicy,
    /// The custom-metric series admitted so far.
    pub series: std::sync::Arc<SeriesBudget>,
}

/// The distinct custom-metric series one process admits: a point of a series already seen
/// always passes; a new one passes while fewer than `cap` are held.
#[derive(Debug)]
pub struct SeriesBudget {
    cap: usize,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl SeriesBudget {
    /// At most `cap` series.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: std::sync::Mutex::default(),
        }
    }

    /// Whether `metric`'s series is admitted (recording it when new and there is room).
    pub fn admit(&self, metric: &adit_schemas::CustomMetric) -> bool {
        let series = format!(
            "{}\u{0}{}\u{0}{}",
            metric.name,
            metric.source,
            metric.labels.as_str()
        );
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&series) {
            return true;
        }
        if seen.len() >= self.cap {
            return false;
        }
        seen.insert(series);
        true
    }

    /// The most series it admits.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// Bytes of a refused record kept in its dead letter.
const DLQ_RECORD_BYTES: usize = 4096;

/// The dead letter of a custom-metric record refused for `reason`: keyed by the record's own
/// bytes, so the same body posted again is stored once.
fn refused_metric(record: &[u8], reason: &str) -> Outgoing {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in record {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let kept = &record[..record.len().min(DLQ_RECORD_BYTES)];
    Outgoing::dead_letter(
        "ingest",
        &format!("metric:{h:016x}"),
        reason,
        vec![(adit_schemas::names::HEADER_DLQ_KIND, "metric".to_string())],
        Bytes::copy_from_slice(kept),
    )
}

/// The reply to an ingest request.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestReply {
    /// Records published.
    pub accepted: usize,
    /// Records refused, by their index in the body.
    pub rejected: Vec<RejectedRecord>,
}

/// One refused record.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedRecord {
    /// Position in the body (0-based).
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// The ingest route with its state, for the API to mount behind the `operate` role.
pub fn router(state: IngestState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(ingest))
        .layer(middleware::from_fn(refuse_declared_oversize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("body larger than {MAX_BODY_BYTES} bytes; split it"),
    )
}

/// Answers 413 from a `Content-Length` alone, before a byte of the body is read: a client
/// still writing a body the server will never read would otherwise see its connection cut
/// instead of the answer.
async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => too_large(),
        _ => next.run(request).await,
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

/// Splits a body into its records: a JSON array's elements, or NDJSON lines (one object is a
/// one-line NDJSON body).
fn split_records(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let is_ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson"));
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if !is_ndjson && first == Some(&b'[') {
        let items: Vec<serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| format!("body is not a JSON array: {e}"))?;
        return Ok(items
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap_or_default())
            .collect());
    }
    Ok(body
        .split(|b| *b == b'\n')
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .map(<[u8]>::to_vec)
        .collect())
}

/// Publishes events of one kind: a JSON object, a JSON array or NDJSON. Each is validated; the
/// refused ones are answered with their reasons. Shares and blocks come only from the pool.
#[utoipa::path(post, path = "/api/v1/ingest/{kind}", tag = "ingest",
    params(("kind" = String, Path,
        description = "energy, sensor, miner, hashrate, grid, cluster_share, cluster_upstream, coin_price or metric")),
    request_body(content = String, description = "A JSON object, a JSON array, or NDJSON",
        content_type = "application/json"),
    responses(
        (status = 200, body = IngestReply, description = "all published"),
        (status = 400, description = "the body is not JSON or NDJSON"),
        (status = 401, description = "no or unknown token"),
        (status = 403, description = "the token's role is too low, or the kind comes only from the pool"),
        (status = 404, description = "no such kind"),
        (status = 413, description = "the body is larger than 8 MiB"),
        (status = 422, body = IngestReply, description = "some records refused, with their reasons"),
        (status = 503, description = "the bus could not store them; retry the body")),
    security(("bearer" = [])))]
async fn ingest(
    State(state): State<IngestState>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(e) => return error(e.status(), "unreadable_body", e.body_text()),
    };
    let named = EventKind::from_name(&kind);
    if let Some(money) = named.filter(|k| k.pushable() && !k.http_pushable()) {
        return error(
            StatusCode::FORBIDDEN,
            "pool_only_kind",
            format!(
                "{} events come only from the pool: a posted one would be paid",
                money.name()
            ),
        );
    }
    let Some(kind) = named.filter(|k| k.http_pushable()) else {
        let known: Vec<_> = EventKind::ALL
            .iter()
            .filter(|k| k.http_pushable())
            .map(|k| k.name())
            .collect();
        return error(
            StatusCode::NOT_FOUND,
            "unknown_kind",
            format!("unknown event kind {kind:?}; known: {}", known.join(", ")),
        );
    };
    let records = match split_records(&headers, &body) {
        Ok(r) if r.is_empty() => {
            return error(StatusCode::BAD_REQUEST, "empty_body", "no records in body");
        }
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, "malformed_body", message),
    };
    let now = Utc::now();
    let mut valid: Vec<AnyEvent> = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    let mut dead = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let reason = match kind.decode(record, &state.policy, now) {
            Ok(AnyEvent::Metric(m)) if !state.series.admit(&m) => format!(
                "a new series of {}: this process already holds {} custom-metric series \
                 (query.custom_metric_series); reuse a series' labels or raise the limit",
                m.name,
                state.series.cap()
            ),
            Ok(event) => {
                valid.push(event);
                continue;
            }
            Err(invalid) => invalid.reason,
        };
        if kind == EventKind::Metric {
            dead.push(refused_metric(record, &reason));
        }
        rejected.push(RejectedRecord { index, reason });
    }
    let msgs = valid.iter().map(Outgoing::event).chain(dead).collect();
    if let Err(e) = state.publisher.publish_all(msgs).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "bus_unavailable",
            e.to_string(),
        );
    }
    let status = if rejected.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let reply = IngestReply {
        accepted: valid.len(),
        rejected,
    };
    (status, Json(reply)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_into_records() {
        let h = HeaderMap::new();
        assert_eq!(
            split_records(&h, b"[{\"a\":1},{\"b\":2}]").unwrap().len(),
            2
        );
        assert_eq!(
            split_records(&h, b"{\"a\":1}\n\n{\"b\":2}\n")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(split_records(&h, b"{\"a\":1}").unwrap().len(), 1);
        assert!(split_records(&h, b"[{\"a\":1}").is_err());
    }
}
