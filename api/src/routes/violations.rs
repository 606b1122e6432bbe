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
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::auth::{Access, Caller, Role};
use crate::error::{QueryError, Result};
use crate::publish::{body, publish};
use crate::state::AppState;
use crate::view_sql::{Page, rows, tables};

/// What a listing's query string becomes: SQL conditions on its rows, the values their
/// placeholders bind, and the keys left for its [`Page`]. The list routes of violations,
/// overrides and alerts read their filters this way.
pub(crate) struct Filters {
    /// Conditions every row listed meets.
    pub(crate) conditions: Vec<String>,
    /// What the conditions' `$n` placeholders bind.
    pub(crate) params: Params,
    /// The keys that are not filters (`limit`, `offset` or refused).
    pub(crate) rest: BTreeMap<String, String>,
}

/// What a listing makes of one key of its query string.
pub(crate) enum Filter {
    /// A condition on the rows.
    Condition(String),
    /// A filter that keeps every row (`active=false`).
    Everything,
    /// Not a filter: left for the page.
    Page,
}

impl Filter {
    /// `key = $n`, `$n` binding `value`.
    pub(crate) fn equal(key: &str, value: &str, params: &mut Params) -> Self {
        Self::Condition(format!("{key} = {}", params.text(value)))
    }
}

impl Filters {
    /// `query` read key by key (in its order, the first refusal answering) by `filter`.
    pub(crate) fn parse(
        query: &BTreeMap<String, String>,
        mut filter: impl FnMut(&str, &str, &mut Params) -> Result<Filter>,
    ) -> Result<Self> {
        let mut filters = Self {
            conditions: Vec::new(),
            params: Params::new(),
            rest: BTreeMap::new(),
        };
        for (key, value) in query {
            match filter(key, value, &mut filters.params)? {
                Filter::Condition(condition) => filters.conditions.push(condition),
                Filter::Everything => {}
                Filter::Page => {
                    filters.rest.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(filters)
    }

    /// The rows of `table` that `select` picks, given the filter (`{joiner} <conditions>`,
    /// empty without conditions) and the page (`LIMIT … OFFSET …`); none while the table does
    /// not exist.
    pub(crate) async fn rows(
        self,
        state: &AppState,
        table: &str,
        joiner: &str,
        select: impl FnOnce(&str, &str) -> String,
    ) -> Result<Json<Vec<Map<String, Value>>>> {
        let page = Page::parse(&self.rest)?;
        if !tables(state).await?.contains(table) {
            return Ok(Json(Vec::new()));
        }
        let filter = if self.conditions.is_empty() {
            String::new()
        } else {
            format!("{joiner} {}", self.conditions.join(" AND "))
        };
        let sql = select(&filter, &page.sql());
        Ok(Json(rows(state, &sql, &self.params).await?))
    }
}

/// Routes of a table's `list` (read role) and its `writes` (operate role).
pub(crate) fn read_and_operate(
    access: &Access,
    list: UtoipaMethodRouter<AppState>,
    writes: impl IntoIterator<Item = UtoipaMethodRouter<AppState>>,
) -> OpenApiRouter<AppState> {
    let operate = writes
        .into_iter()
        .fold(OpenApiRouter::new(), OpenApiRouter::routes);
    access
        .at(Role::Read, OpenApiRouter::new().routes(list))
        .merge(access.at(Role::Operate, operate))
}

/// The filters `GET /api/v1/violations` takes, as SQL conditions on the latest rows.
fn filters(query: &BTreeMap<String, String>) -> Result<Filters> {
    let time = |key: &str, v: &str| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| QueryError::BadRequest(format!("{key} must be an RFC 3339 time: {e}")))
    };
    Filters::parse(query, |key, value, params| {
        Ok(match key {
            "site" | "kind" | "severity" | "scope" | "subject" | "source" => {
                Filter::equal(key, value, params)
            }
            "status" => match value {
                "open" => Filter::Condition("event <> 'resolved'".into()),
                "resolved" => Filter::Condition("event = 'resolved'".into()),
                other => {
                    return Err(QueryError::BadRequest(format!(
                        "status must be open or resolved, not {other:?}"
                    )));
                }
            },
            "from" => Filter::Condition(format!(
                "ts >= to_timestamp_micros({})",
                time(key, value)?.timestamp_micros()
            )),
            "to" => Filter::Condition(format!(
                "started < to_timestamp_micros({})",
                time(key, value)?.timestamp_micros()
            )),
            _ => Filter::Page,
        })
    })
}

/// Violations: listed by readers, noted and resolved by operators.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    read_and_operate(access, routes!(list), [routes!(create), routes!(resolve)])
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
    let select = |filter: &str, page: &str| {
        format!(
            "WITH latest AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts DESC, \
               CASE event WHEN 'resolved' THEN 2 WHEN 'updated' THEN 1 ELSE 0 END DESC) AS rn \
               FROM violations) \
             SELECT id, site, scope, subject, kind, severity, \
               CASE WHEN event = 'resolved' THEN 'resolved' ELSE 'open' END AS status, \
               started, ts AS last_change, CASE WHEN event = 'resolved' THEN ts END AS resolved, \
               peak, \"limit\", duration_s, source, note \
             FROM latest WHERE rn = 1 {filter} ORDER BY started DESC, id {page}"
        )
    };
    filters(&query)?
        .rows(&state, "violations", "AND", select)
        .await
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
        let f = filters(&q(&[("site", "s'1"), ("status", "open"), ("limit", "5")])).unwrap();
        assert_eq!(f.conditions, vec!["site = $1", "event <> 'resolved'"]);
        assert_eq!(f.params.len(), 1);
        assert_eq!(f.rest.len(), 1);
        assert!(filters(&q(&[("status", "maybe")])).is_err());
        assert!(filters(&q(&[("from", "yesterday")])).is_err());
    }
}
