//! Manual overrides of the farm controller over HTTP: `POST /api/v1/control/overrides` (operate;
//! admin for `target` and `hold`, which change a site's mode) and `POST
//! /api/v1/control/overrides/{site}/{id}/cancel`; each becomes an [`Override`] on
//! `control.override.<site>` with the caller's token name, which the curtailment pipeline
//! applies and lands in `overrides`. Listing is SQL over that table (`GET
//! /api/v1/control/overrides?site=`).

use std::collections::BTreeMap;

use adit_schemas::control::SiteMode;
use adit_schemas::overrides::{MAX_OVERRIDE_HOURS, Override, OverrideKind};
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
use crate::view_sql::Page;
use crate::routes::violations::{Filter, Filters, read_and_operate};

/// A new override.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    /// The site.
    pub site: String,
    /// fan_level, exclude_machine, grid, temperature (operate); target, hold (admin).
    #[schema(value_type = String)]
    pub kind: OverrideKind,
    /// The machine (exclude_machine).
    #[serde(default)]
    pub machine: Option<String>,
    /// Fan level 1–9, kW (grid, target) or °C (temperature).
    #[serde(default)]
    pub value: Option<f64>,
    /// How long it lasts (`30m`, `2h`; at most 7 days).
    pub duration: String,
    /// Why.
    pub reason: String,
}

/// A cancellation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    /// Why it ends early.
    pub reason: String,
}

pub(crate) fn id_of(site: &str, kind: OverrideKind, ts: DateTime<Utc>) -> String {
    format!("{site}:{}:{}", kind.as_str(), ts.timestamp_micros())
}

/// The kind of the override `id` names, from the id itself (`site:kind:micros`, made only by
/// [`id_of`]), and that it is one of `site`'s; else a 400.
fn cancelled_kind(site: &str, id: &str) -> Result<OverrideKind> {
    let mut parts = id.rsplitn(3, ':');
    let (_micros, kind, of) = (parts.next(), parts.next(), parts.next());
    let kind = kind.and_then(|k| serde_json::from_value(Value::String(k.to_string())).ok());
    match (kind, of) {
        (Some(kind), Some(of)) if of == site => Ok(kind),
        _ => Err(QueryError::BadRequest(format!(
            "{id:?} is not an override of site {site:?}"
        ))),
    }
}

/// Overrides of the controller: listed by readers, set and cancelled by operators.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    read_and_operate(access, routes!(list), [routes!(create), routes!(cancel)])
}

/// An override a route has checked, before it is stamped with its author and time.
pub(crate) struct Checked {
    /// The site.
    pub(crate) site: String,
    /// What it overrides.
    pub(crate) kind: OverrideKind,
    /// The machine it is about, if one.
    pub(crate) machine: Option<String>,
    /// Its level, power, temperature or seconds, as `kind` takes.
    pub(crate) value: Option<f64>,
    /// Why.
    pub(crate) reason: String,
    /// How long it stands.
    pub(crate) lasts: chrono::Duration,
    /// The mode it writes (a mode write only).
    pub(crate) mode: Option<SiteMode>,
}

impl Checked {
    /// Publishes it as made now by `by`, named by `id` from itself and the time; a 202 with
    /// its id and expiry. `what` names the feature in the 503 of a server without NATS.
    pub(crate) async fn publish(
        self,
        state: &AppState,
        by: String,
        id: impl FnOnce(&Self, DateTime<Utc>) -> String,
        what: &str,
    ) -> Result<(StatusCode, Json<Value>)> {
        let ts = Utc::now();
        let o = Override {
            id: id(&self, ts),
            site: self.site,
            kind: self.kind,
            machine: self.machine,
            value: self.value,
            cancels: None,
            mode: self.mode,
            reason: self.reason,
            by,
            ts,
            expires: ts + self.lasts,
        };
        let reply = json!({ "id": o.id, "expires": o.expires });
        publish(state, o, what).await?;
        Ok((StatusCode::ACCEPTED, Json(reply)))
    }
}

/// Makes an override (operate; admin for `target` and `hold`).
#[utoipa::path(post, path = "/api/v1/control/overrides", tag = "farm",
    request_body = NewOverride,
    responses((status = 202, description = "Accepted: {\"id\": …, \"expires\": …}; applied from the controller's next step"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let new: NewOverride = body(&bytes)?;
    if new.kind == OverrideKind::Cancel {
        return Err(QueryError::BadRequest(
            "cancel an override with POST /api/v1/control/overrides/{site}/{id}/cancel".into(),
        ));
    }
    if new.kind == OverrideKind::Mode {
        return Err(QueryError::BadRequest(
            "write a site's mode with POST /api/v1/control/mode".into(),
        ));
    }
    if new.kind.is_command() {
        return Err(QueryError::BadRequest(format!(
            "{} is a command: POST /api/v1/control/commands",
            new.kind.as_str()
        )));
    }
    if new.kind.needs_admin() && caller.role < Role::Admin {
        return Err(QueryError::Forbidden {
            needed: Role::Admin.name(),
            has: caller.role.name(),
        });
    }
    let duration = humantime::parse_duration(&new.duration)
        .map_err(|e| QueryError::BadRequest(format!("duration {:?}: {e}", new.duration)))?;
    let duration = chrono::Duration::from_std(duration)
        .ok()
        .filter(|d| {
            *d <= chrono::Duration::hours(MAX_OVERRIDE_HOURS) && *d > chrono::Duration::zero()
        })
        .ok_or_else(|| {
            QueryError::BadRequest(format!(
                "duration must be more than 0 and at most {MAX_OVERRIDE_HOURS}h"
            ))
        })?;
    let checked = Checked {
        site: new.site,
        kind: new.kind,
        machine: new.machine,
        value: new.value,
        reason: new.reason,
        lasts: duration,
        mode: None,
    };
    let id = |o: &Checked, ts| id_of(&o.site, o.kind, ts);
    checked.publish(&state, caller.name, id, "overrides").await
}

/// Ends an override before it expires (operate; admin for a hold or target).
#[utoipa::path(post, path = "/api/v1/control/overrides/{site}/{id}/cancel", tag = "farm",
    params(("site" = String, Path), ("id" = String, Path)),
    request_body = Cancellation,
    responses((status = 202, description = "Accepted"), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((site, id)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let c: Cancellation = body(&bytes)?;
    // Ending an override is changing it: a hold or target only an admin may set, only an admin
    // may end (issue 56: operate could cancel an admin's hold).
    let kind = cancelled_kind(&site, &id)?;
    if kind.needs_admin() && caller.role < Role::Admin {
        return Err(QueryError::Forbidden {
            needed: Role::Admin.name(),
            has: caller.role.name(),
        });
    }
    let ts = Utc::now();
    let o = Override {
        id: id_of(&site, OverrideKind::Cancel, ts),
        site,
        kind: OverrideKind::Cancel,
        machine: None,
        value: None,
        cancels: Some(id.clone()),
        mode: None,
        reason: c.reason,
        by: caller.name,
        ts,
        expires: ts + chrono::Duration::seconds(1),
    };
    publish(&state, o, "overrides").await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "cancelled": id }))))
}

/// Lists overrides as made (newest first), with `site` and `active=true` filters.
#[utoipa::path(get, path = "/api/v1/control/overrides", tag = "farm",
    params(("site" = Option<String>, Query), ("active" = Option<bool>, Query, description = "only those in force now"), Page),
    responses((status = 200, description = "Overrides: id, site, kind, machine, value, cancels, mode, reason, by, ts, expires"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>> {
    let filters = Filters::parse(&query, |key, value, params| {
        Ok(match key {
            "site" => Filter::equal(key, value, params),
            "active" => match value {
                "true" => Filter::Condition(
                    "expires > now() AND kind <> 'cancel' AND id NOT IN \
                     (SELECT cancels FROM overrides WHERE cancels IS NOT NULL)"
                        .into(),
                ),
                "false" => Filter::Everything,
                other => {
                    return Err(QueryError::BadRequest(format!(
                        "active must be true or false, not {other:?}"
                    )));
                }
            },
            _ => Filter::Page,
        })
    })?;
    let select = |filter: &str, page: &str| {
        format!(
            "SELECT id, site, kind, machine, value, cancels, mode, reason, \"by\", ts, expires \
             FROM overrides {filter} ORDER BY ts DESC, id {page}"
        )
    };
    filters.rows(&state, "overrides", "WHERE", select).await
}
