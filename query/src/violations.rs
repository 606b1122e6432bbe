//! Violations over HTTP: the list with filters (read role), each violation in its latest
//! state; and an operator's manual violation or manual resolution with a note (operate role),
//! sent to the violations pipeline as a [`ViolationNote`] so the table keeps one writer.

use std::collections::BTreeMap;

use adit_schemas::{NoteAction, ViolationNote};
use adit_sql::Params;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller, Role};
use crate::error::{QueryError, Result};
use crate::publish::{body, publish};
use crate::state::AppState;
use crate::views::{Page, rows, tables};

/// What `GET /api/v1/violations`'s filters become: SQL conditions on the latest rows, the
/// values their placeholders bind, and the query's other keys.
type Filters = (Vec<String>, Params, BTreeMap<String, String>);

/// The filters `GET /api/v1/violations` takes, as SQL conditions on the latest rows.
fn filters(query: &BTreeMap<String, String>) -> Result<Filters> {
    let mut conditions = Vec::new();
    let mut params = Params::new();
    let mut rest = BTreeMap::new();
    let time = |key: &str, v: &str| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| QueryError::BadRequest(format!("{key} must be an RFC 3339 time: {e}")))
    };
    for (key, value) in query {
        match key.as_str() {
            "site" | "kind" | "severity" | "scope" | "subject" | "source" => {
                conditions.push(format!("{key} = {}", params.text(value)));
            }
            "status" => match value.as_str() {
                "open" => conditions.push("event <> 'resolved'".into()),
                "resolved" => conditions.push("event = 'resolved'".into()),
                other => {
                    return Err(QueryError::BadRequest(format!(
                        "status must be open or resolved, not {other:?}"
                    )));
                }
            },
            "from" => conditions.push(format!(
                "ts >= to_timestamp_micros({})",
                time(key, value)?.timestamp_micros()
            )),
            "to" => conditions.push(format!(
                "started < to_timestamp_micros({})",
                time(key, value)?.timestamp_micros()
            )),
            _ => {
                rest.insert(key.clone(), value.clone());
            }
        }
    }
    Ok((conditions, params, rest))
}

/// Violations: listed by readers, noted and resolved by operators.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access
        .at(Role::Read, OpenApiRouter::new().routes(routes!(list)))
        .merge(
            access.at(
                Role::Operate,
                OpenApiRouter::new()
                    .routes(routes!(create))
                    .routes(routes!(resolve)),
            ),
        )
}

/// Lists violations, each in its latest state, newest first.
#[utoipa::path(get, path = "/api/v1/violations", tag = "farm",
    params(("site" = Option<String>, Query), ("kind" = Option<String>, Query),
           ("severity" = Option<String>, Query), ("status" = Option<String>, Query, description = "open or resolved"),
           ("from" = Option<String>, Query, description = "RFC 3339: still open or changed since"),
           ("to" = Option<String>, Query, description = "RFC 3339: started before"), Page),
    responses((status = 200, description = "Violations: id, site, scope, subject, kind, severity, status, started, last_change, resolved, peak, limit, duration_s, source, note"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>> {
    let (conditions, params, rest) = filters(&query)?;
    let page = Page::parse(&rest)?;
    if !tables(&state).await?.contains("violations") {
        return Ok(Json(Vec::new()));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("AND {}", conditions.join(" AND "))
    };
    let sql = format!(
        "WITH latest AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts DESC, \
           CASE event WHEN 'resolved' THEN 2 WHEN 'updated' THEN 1 ELSE 0 END DESC) AS rn \
           FROM violations) \
         SELECT id, site, scope, subject, kind, severity, \
           CASE WHEN event = 'resolved' THEN 'resolved' ELSE 'open' END AS status, \
           started, ts AS last_change, CASE WHEN event = 'resolved' THEN ts END AS resolved, \
           peak, \"limit\", duration_s, source, note \
         FROM latest WHERE rn = 1 {filter} ORDER BY started DESC, id {}",
        page.sql()
    );
    Ok(Json(rows(&state, &sql, &params).await?))
}

/// A manual violation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewViolation {
    /// The site.
    pub site: String,
    /// What it is about (a token: `noise`, `power_allocation`…).
    pub kind: String,
    /// warning, critical, violation or emergency.
    pub severity: String,
    /// The machine, sensor or meter (none: the site).
    #[serde(default)]
    pub subject: Option<String>,
    /// Why.
    pub note: String,
}

/// A resolution.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// Why it is resolved.
    pub note: String,
}

/// Records a violation by hand (operate role); the violations pipeline writes it.
#[utoipa::path(post, path = "/api/v1/violations", tag = "farm",
    request_body = NewViolation,
    responses((status = 202, description = "Accepted: {\"id\": …}, in the table within a batch"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let new: NewViolation = body(&bytes)?;
    let ts = Utc::now();
    let subject = new.subject.clone().unwrap_or_else(|| new.site.clone());
    let id = format!(
        "manual:{}:{subject}:{}:{}",
        new.site,
        new.kind,
        ts.timestamp_micros()
    );
    publish(
        &state,
        ViolationNote {
            site: new.site,
            action: NoteAction::Open,
            id: None,
            kind: Some(new.kind),
            severity: Some(new.severity),
            subject: new.subject,
            note: new.note,
            by: caller.name,
            ts,
        },
        "recording violations",
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

/// Resolves an open violation by hand, with a note (operate role).
#[utoipa::path(post, path = "/api/v1/violations/{id}/resolve", tag = "farm",
    params(("id" = String, Path, description = "The violation's id")),
    request_body = Resolution,
    responses((status = 202, description = "Accepted"), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn resolve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let resolution: Resolution = body(&bytes)?;
    // Ids are `<scope>:<site>:<subject>:<kind>:<µs>` (a pool's has no site: its pool id).
    let parts: Vec<&str> = id.split(':').collect();
    let site = match parts.as_slice() {
        [_, "", pool, ..] => *pool,
        [_, site, ..] => *site,
        _ => {
            return Err(QueryError::BadRequest(format!(
                "{id:?} is not a violation id"
            )));
        }
    };
    publish(
        &state,
        ViolationNote {
            site: site.to_string(),
            action: NoteAction::Resolve,
            id: Some(id.clone()),
            kind: None,
            severity: None,
            subject: None,
            note: resolution.note,
            by: caller.name,
            ts: Utc::now(),
        },
        "recording violations",
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_conditions_and_bad_ones_are_refused() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let (c, params, rest) =
            filters(&q(&[("site", "s'1"), ("status", "open"), ("limit", "5")])).unwrap();
        assert_eq!(c, vec!["site = $1", "event <> 'resolved'"]);
        assert_eq!(params.len(), 1);
        assert_eq!(rest.len(), 1);
        assert!(filters(&q(&[("status", "maybe")])).is_err());
        assert!(filters(&q(&[("from", "yesterday")])).is_err());
    }
}
