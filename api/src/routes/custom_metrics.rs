//! Custom metrics over HTTP (issue 61): the points of one `custom_` metric, newest first, by
//! time range and source (read). Points are posted through HTTP ingest
//! (`POST /api/v1/ingest/metric`, operate) and land in `custom_metrics`, where SQL, alert rules
//! and dashboards read them like any table.

use std::collections::BTreeMap;

use adit_schemas::CustomMetric;
use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Role};
use crate::error::{QueryError, Result};
use crate::routes::violations::{Filter, Filters};
use crate::state::AppState;

pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(Role::Read, OpenApiRouter::new().routes(routes!(list)))
}

/// An RFC 3339 time of the query string, as SQL.
fn time(key: &str, value: &str) -> Result<i64> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .map_err(|e| QueryError::BadRequest(format!("{key} must be an RFC 3339 time: {e}")))
}

/// The points of one custom metric, newest first: `name` (required), `source`, `from` and
/// `to` (RFC 3339, to exclusive) filter; `limit` (at most 500) and `offset` page. Each point's
/// `labels` is an object.
#[utoipa::path(get, path = "/api/v1/metrics/custom", tag = "ingest",
    params(("name" = String, Query, description = "custom_…"),
           ("source" = Option<String>, Query), ("from" = Option<String>, Query, description = "RFC 3339"),
           ("to" = Option<String>, Query, description = "RFC 3339, exclusive"), crate::view_sql::Page),
    responses((status = 200, description = "Points: name, source, labels, value, ts"),
              (status = 400, description = "No name, or a filter that does not parse"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>> {
    match query.get("name") {
        Some(name) if CustomMetric::is_name(name) => {}
        Some(name) => {
            return Err(QueryError::InvalidField {
                field: "name".into(),
                reason: format!("{name:?} is not a custom metric's name (custom_…)"),
            });
        }
        None => {
            return Err(QueryError::InvalidField {
                field: "name".into(),
                reason: "name the metric: ?name=custom_…".into(),
            });
        }
    }
    let filters = Filters::parse(&query, |key, value, params| {
        Ok(match key {
            "name" | "source" => Filter::equal(key, value, params),
            "from" => Filter::Condition(format!("ts >= to_timestamp_micros({})", time(key, value)?)),
            "to" => Filter::Condition(format!("ts < to_timestamp_micros({})", time(key, value)?)),
            _ => Filter::Page,
        })
    })?;
    let select = |filter: &str, page: &str| {
        format!(
            "SELECT name, source, labels, value, ts FROM custom_metrics {filter} \
             ORDER BY ts DESC, source, labels {page}"
        )
    };
    let Json(mut rows) = filters.rows(&state, "custom_metrics", "WHERE", select).await?;
    for row in &mut rows {
        if let Some(Value::String(text)) = row.get("labels") {
            let labels = serde_json::from_str(text).unwrap_or(Value::Object(Map::new()));
            row.insert("labels".into(), labels);
        }
    }
    Ok(Json(rows))
}
