//! Alerts over HTTP: the alerts in their latest state (read), and the rule groups — list and
//! read (read), create or replace with a JSON or YAML body, delete (admin). A rule whose SQL
//! does not parse or is not one read-only query is refused with the place and the reason. A
//! rule, stored or given, can be evaluated once to see the series it would fire (read). An
//! operator can raise an alert by hand (operate): it fires at once in the group `manual`, is
//! notified like any other, records who raised it and why, and is resolved by hand.
//! Receivers and the route are in [`crate::receivers`].

use std::collections::BTreeMap;

use adit_alerts::{RuleFile, RuleGroup, RuleStore};
use adit_sql::Params;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Role};
use crate::error::{QueryError, Result};
use crate::publish::{body, publish};
use crate::state::AppState;
use crate::view_sql::{Page, rows, tables};
use crate::routes::violations::{Filter, Filters};

fn store(state: &AppState) -> Result<&RuleStore> {
    state.rules.as_ref().ok_or_else(|| {
        QueryError::Unavailable("alert rules need NATS, and this server has none".into())
    })
}

fn unavailable(e: impl std::fmt::Display) -> QueryError {
    QueryError::Unavailable(e.to_string())
}

/// A rule refused, as the field it names and why.
fn refused(e: adit_alerts::rules::InvalidRule) -> QueryError {
    QueryError::InvalidField {
        field: e.place,
        reason: e.reason,
    }
}

/// Refuses an operator's act whose `field` (a comment, a note) does not say why.
fn said_why(field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(QueryError::InvalidField {
            field: field.into(),
            reason: "say why".into(),
        });
    }
    Ok(())
}

/// A rule to evaluate once: a stored one (`group` and `alert`) or one given whole (`rule`).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    /// The stored group holding `alert`.
    pub group: Option<String>,
    /// The stored rule's alert name.
    pub alert: Option<String>,
    /// A rule as a group holds it (`alert`, `expr`, `for`, `labels`, `annotations`).
    #[schema(value_type = Option<Object>)]
    pub rule: Option<adit_alerts::Rule>,
}

/// Alerts and their rules: read and evaluated by readers; silenced, acknowledged and
/// resolved by operators; rules written and deleted by admins.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    let read = OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(list_silences))
        .routes(routes!(groups))
        .routes(routes!(group))
        .routes(routes!(evaluate));
    let operate = OpenApiRouter::new()
        .routes(routes!(silence))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
        .routes(routes!(raise));
    let admin = OpenApiRouter::new()
        .routes(routes!(put))
        .routes(routes!(delete));
    access
        .at(Role::Read, read)
        .merge(access.at(Role::Operate, operate))
        .merge(access.at(Role::Admin, admin))
}

/// Runs one rule's SQL now and returns the series it would fire, with their labels and values
/// (read), changing nothing: no alert starts, no notification is sent. A new series would be
/// `pending` for the rule's `for`, then `firing`.
#[utoipa::path(post, path = "/api/v1/alerts/evaluate", tag = "alerts",
    request_body = Evaluate,
    responses((status = 200, description = "{alert, severity, for, state_when_new, series: [{labels, value}]}"),
              (status = 400, description = "No rule, or a rule refused: error.field names it"),
              (status = 401), (status = 403), (status = 404, description = "No such stored rule")),
    security(("bearer" = [])))]
pub async fn evaluate(
    State(state): State<AppState>,
    who: Option<axum::Extension<adit_auth::Caller>>,
    Json(ask): Json<Evaluate>,
) -> Result<Json<Value>> {
    let role = who.map_or(Role::Admin, |w| w.0.role);
    let rule = match ask {
        Evaluate {
            rule: Some(rule),
            group: None,
            alert: None,
        } => {
            let group = RuleGroup {
                name: "evaluate".into(),
                interval: None,
                rules: vec![rule],
            };
            group
                .validate(state.engine.limits().text())
                .map_err(refused)?;
            group
                .rules
                .into_iter()
                .next()
                .unwrap_or_else(|| unreachable!())
        }
        Evaluate {
            rule: None,
            group: Some(group),
            alert: Some(alert),
        } => {
            let stored = store(&state)?.get(&group).await.map_err(unavailable)?;
            stored
                .and_then(|g| g.rules.into_iter().find(|r| r.alert == alert))
                .ok_or_else(|| {
                    QueryError::NotFound(format!("no rule {alert:?} in group {group:?}"))
                })?
        }
        _ => {
            return Err(QueryError::BadRequest(
                "give either `group` and `alert` (a stored rule) or `rule`".into(),
            ));
        }
    };
    // A statement like any other: in a slot of the caller's role.
    let slot = state.admission.admit(role).await?;
    let result = state.engine.query(&rule.expr).await?;
    drop(slot);
    let series = adit_alerts::evaluate::series_of(&rule, &result.batches).map_err(|reason| {
        QueryError::InvalidField {
            field: "rule.expr".into(),
            reason,
        }
    })?;
    let hold = rule.hold();
    Ok(Json(json!({
        "alert": rule.alert,
        "severity": rule.severity(),
        "for": humantime::format_duration(hold).to_string(),
        "state_when_new": if hold.is_zero() { "firing" } else { "pending" },
        "series": series
            .into_iter()
            .map(|(labels, value)| json!({ "labels": labels, "value": value }))
            .collect::<Vec<_>>(),
    })))
}

/// Lists alerts in their latest state, newest change first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(("state" = Option<String>, Query, description = "pending, firing or resolved"),
           ("severity" = Option<String>, Query), ("rule" = Option<String>, Query), Page),
    responses((status = 200, description = "Alerts: id, group, rule, state, severity, labels, annotations, value, active_at, last_change"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>> {
    let filters = Filters::parse(&query, |key, value, params| {
        Ok(match key {
            "state" | "severity" | "rule" => Filter::equal(key, value, params),
            _ => Filter::Page,
        })
    })?;
    let select = |filter: &str, page: &str| {
        format!(
            "SELECT id, \"group\", rule, state, severity, labels, annotations, value, active_at, \
               ts AS last_change FROM ( \
               SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts DESC, \
                 CASE state WHEN 'resolved' THEN 2 WHEN 'firing' THEN 1 ELSE 0 END DESC) AS rn \
               FROM alerts) WHERE rn = 1 {filter} ORDER BY ts DESC, id {page}"
        )
    };
    filters.rows(&state, "alerts", "AND", select).await
}

/// Every rule group.
#[utoipa::path(get, path = "/api/v1/alerts/rules", tag = "alerts",
    responses((status = 200, description = "{\"groups\": [...]}: the rules in Prometheus's shape"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn groups(State(state): State<AppState>) -> Result<Json<Value>> {
    let groups = store(&state)?.groups().await.map_err(unavailable)?;
    Ok(Json(json!({ "groups": groups })))
}

/// One rule group.
#[utoipa::path(get, path = "/api/v1/alerts/rules/{group}", tag = "alerts",
    params(("group" = String, Path)),
    responses((status = 200, description = "The group"), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn group(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RuleGroup>> {
    store(&state)?
        .get(&name)
        .await
        .map_err(unavailable)?
        .map(Json)
        .ok_or_else(|| QueryError::NotFound(format!("no rule group {name:?}")))
}

/// Creates or replaces a rule group (admin): JSON, or YAML with a YAML content type.
#[utoipa::path(put, path = "/api/v1/alerts/rules/{group}", tag = "alerts",
    params(("group" = String, Path)),
    request_body(content = String, description = "The group (name, interval, rules): JSON, or YAML with Content-Type application/yaml"),
    responses((status = 200, description = "{\"group\", \"revision\"}"),
              (status = 400, description = "A rule is refused: error.field names it (group/alert.field)"),
              (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| QueryError::BadRequest("the body is not UTF-8".into()))?;
    let yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"));
    let group: RuleGroup = if yaml {
        // One group as a rules file would hold it.
        let file = RuleFile::from_yaml(
            &format!("groups:\n- {}", text.replace('\n', "\n  ")),
            state.engine.limits().text(),
        )
        .map_err(refused)?;
        file.groups
            .into_iter()
            .next()
            .ok_or_else(|| QueryError::BadRequest("the body holds no group".into()))?
    } else {
        serde_json::from_str(text).map_err(|e| QueryError::BadRequest(format!("body: {e}")))?
    };
    if group.name != name {
        return Err(QueryError::InvalidField {
            field: "name".into(),
            reason: format!("{:?} does not match the path's {name:?}", group.name),
        });
    }
    group
        .validate(state.engine.limits().text())
        .map_err(refused)?;
    let revision = store(&state)?.put(&group).await.map_err(unavailable)?;
    Ok((
        StatusCode::OK,
        Json(json!({ "group": name, "revision": revision })),
    ))
}

/// Deletes a rule group (admin); its alerts resolve as their series are no longer evaluated.
#[utoipa::path(delete, path = "/api/v1/alerts/rules/{group}", tag = "alerts",
    params(("group" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode> {
    if store(&state)?.delete(&name).await.map_err(unavailable)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(QueryError::NotFound(format!("no rule group {name:?}")))
    }
}

/// A new silence.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// label → value: alerts carrying all of them are not notified.
    pub matchers: BTreeMap<String, String>,
    /// How long (`2h`; at most 30 days).
    pub duration: String,
    /// Why.
    pub comment: String,
}

fn silences(state: &AppState) -> Result<&adit_alerts::notify::Silences> {
    state.silences.as_ref().ok_or_else(|| {
        QueryError::Unavailable("silences need NATS, and this server has none".into())
    })
}

/// Silences matching alerts until the duration ends (operate).
#[utoipa::path(post, path = "/api/v1/alerts/silences", tag = "alerts",
    request_body = NewSilence,
    responses((status = 201, description = "{\"id\", \"ends\"}"), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn silence(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let new: NewSilence = body(&bytes)?;
    if new.matchers.is_empty() {
        return Err(QueryError::InvalidField {
            field: "matchers".into(),
            reason: "a silence needs at least one matcher".into(),
        });
    }
    said_why("comment", &new.comment)?;
    let duration = humantime::parse_duration(&new.duration)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .filter(|d| *d > chrono::Duration::zero() && *d <= chrono::Duration::days(30))
        .ok_or_else(|| QueryError::InvalidField {
            field: "duration".into(),
            reason: "more than 0 and at most 30 days (`2h`, `30m`)".into(),
        })?;
    let now = chrono::Utc::now();
    let s = adit_alerts::notify::Silence {
        id: format!("{}", now.timestamp_micros()),
        matchers: new.matchers,
        starts: now,
        ends: now + duration,
        by: caller.name,
        comment: new.comment,
    };
    silences(&state)?.put(&s).await.map_err(unavailable)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": s.id, "ends": s.ends })),
    ))
}

/// The silences in force.
#[utoipa::path(get, path = "/api/v1/alerts/silences", tag = "alerts",
    responses((status = 200, description = "Silences: id, matchers, starts, ends, by, comment"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list_silences(State(state): State<AppState>) -> Result<Json<Value>> {
    let active = silences(&state)?
        .active(chrono::Utc::now())
        .await
        .map_err(unavailable)?;
    Ok(Json(json!(active)))
}

/// An operator's act on one alert.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertAct {
    /// The alert's id (`group/rule/fingerprint`, as listed).
    pub id: String,
    /// Why.
    pub note: String,
}

/// Publishes `state` (acknowledged or resolved) for the alert `act.id` as it last stood.
async fn act(
    state: &AppState,
    caller: crate::auth::Caller,
    bytes: &[u8],
    new_state: &str,
) -> Result<(StatusCode, Json<Value>)> {
    let act: AlertAct = body(bytes)?;
    said_why("note", &act.note)?;
    if !tables(state).await?.contains("alerts") {
        return Err(QueryError::NotFound(format!("no alert {:?}", act.id)));
    }
    let mut params = Params::new();
    let sql = format!(
        "SELECT \"group\", rule, state, severity, labels, annotations, value, \
           CAST(active_at AS BIGINT) AS active_us FROM alerts WHERE id = {} \
         ORDER BY ts DESC, CASE state WHEN 'resolved' THEN 2 WHEN 'firing' THEN 1 ELSE 0 END DESC \
         LIMIT 1",
        params.text(&act.id)
    );
    let latest = rows(state, &sql, &params).await?;
    let Some(row) = latest.first() else {
        return Err(QueryError::NotFound(format!("no alert {:?}", act.id)));
    };
    let text = |k: &str| {
        row.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if text("state") == "resolved" {
        return Err(QueryError::Conflict(format!(
            "alert {:?} is already resolved",
            act.id
        )));
    }
    let event = adit_schemas::alerts::AlertEvent {
        id: act.id.clone(),
        group: text("group"),
        rule: text("rule"),
        state: new_state.into(),
        severity: text("severity"),
        labels: text("labels"),
        annotations: text("annotations"),
        value: row.get("value").and_then(Value::as_f64),
        active_at: row
            .get("active_us")
            .and_then(Value::as_i64)
            .and_then(chrono::DateTime::from_timestamp_micros)
            .unwrap_or_default(),
        ts: chrono::Utc::now(),
        by: Some(caller.name),
        note: Some(act.note),
    };
    publish(state, event, "acting on alerts").await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": act.id, "state": new_state })),
    ))
}

/// Acknowledges a firing alert (operate): its notifications are not repeated.
#[utoipa::path(post, path = "/api/v1/alerts/acknowledge", tag = "alerts",
    request_body = AlertAct,
    responses((status = 202), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn acknowledge(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    act(&state, caller, &bytes, "acknowledged").await
}

/// Resolves an alert by hand (operate); if its condition still holds it starts again as
/// pending.
#[utoipa::path(post, path = "/api/v1/alerts/resolve", tag = "alerts",
    request_body = AlertAct,
    responses((status = 202), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn resolve(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    act(&state, caller, &bytes, "resolved").await
}

/// Most labels an alert raised by hand may carry, and the longest value.
const RAISED_LABELS: usize = 16;
const RAISED_VALUE_BYTES: usize = 256;

/// An alert raised by hand.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Raise {
    /// Its name, as a rule's `alert` (a letter or _ then letters, digits or _).
    pub alert: String,
    /// `info`, `warning`, `error` or `critical`.
    pub severity: String,
    /// What is wrong, in a sentence (its `summary` annotation).
    pub summary: String,
    /// Labels that route and group it (e.g. `site`), at most 16.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Raise {
    /// The alert's labels (its own and `alertname`, `severity`), once every field is checked.
    fn checked_labels(&self) -> Result<BTreeMap<String, String>> {
        let field = |field: &str, reason: String| QueryError::InvalidField {
            field: field.into(),
            reason,
        };
        if !adit_alerts::rules::is_name(&self.alert) {
            return Err(field(
                "alert",
                "a letter or _ then letters, digits or _, at most 128".into(),
            ));
        }
        if !adit_schemas::alerts::SEVERITIES.contains(&self.severity.as_str()) {
            return Err(field(
                "severity",
                format!("must be one of {:?}", adit_schemas::alerts::SEVERITIES),
            ));
        }
        said_why("summary", &self.summary)?;
        adit_schemas::validate::check_text("summary", &self.summary, 1_000)
            .map_err(|e| field("summary", e.to_string()))?;
        if self.labels.len() > RAISED_LABELS {
            return Err(field("labels", format!("at most {RAISED_LABELS}")));
        }
        let mut labels = BTreeMap::new();
        for (name, value) in &self.labels {
            if !adit_alerts::rules::is_name(name) || ["alertname", "severity"].contains(&name.as_str()) {
                return Err(field(
                    "labels",
                    format!("{name:?} is not a label name this alert may set"),
                ));
            }
            adit_schemas::validate::check_text(name, value, RAISED_VALUE_BYTES)
                .map_err(|e| field("labels", e.to_string()))?;
            labels.insert(name.clone(), value.clone());
        }
        labels.insert("alertname".into(), self.alert.clone());
        labels.insert("severity".into(), self.severity.clone());
        Ok(labels)
    }
}

/// Raises an alert by hand (operate): it fires at once, in the group `manual`, with who raised
/// it (`by`) and its summary (`note`), is routed and notified like a rule's, and stays firing
/// until resolved by hand (`POST /api/v1/alerts/resolve`). The same alert and labels raised
/// again while it fires is the same alert (a 409).
#[utoipa::path(post, path = "/api/v1/alerts/raise", tag = "alerts",
    request_body = Raise,
    responses((status = 201, description = "{\"id\", \"state\": \"firing\"}"), (status = 400, description = "A field refused: error.field names it"),
              (status = 401), (status = 403), (status = 409, description = "Already firing")),
    security(("bearer" = [])))]
pub async fn raise(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let raised: Raise = body(&bytes)?;
    let labels = raised.checked_labels()?;
    let group = adit_alerts::rules::MANUAL_GROUP;
    let id = format!(
        "{group}/{}/{}",
        raised.alert,
        adit_alerts::evaluate::fingerprint(&labels)
    );
    if still_open(&state, &id).await? {
        return Err(QueryError::Conflict(format!(
            "alert {id:?} is already firing; resolve it first"
        )));
    }
    let now = chrono::Utc::now();
    let event = adit_schemas::alerts::AlertEvent {
        id: id.clone(),
        group: group.into(),
        rule: raised.alert,
        state: "firing".into(),
        severity: raised.severity,
        labels: serde_json::to_string(&labels).unwrap_or_default(),
        annotations: json!({ "summary": raised.summary }).to_string(),
        value: None,
        active_at: now,
        ts: now,
        by: Some(caller.name),
        note: Some(raised.summary),
    };
    publish(&state, event, "raising an alert").await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "state": "firing" }))))
}

/// Whether the alert `id`'s latest state is anything but resolved.
async fn still_open(state: &AppState, id: &str) -> Result<bool> {
    if !tables(state).await?.contains("alerts") {
        return Ok(false);
    }
    let mut params = Params::new();
    let sql = format!(
        "SELECT state FROM alerts WHERE id = {} ORDER BY ts DESC, \
           CASE state WHEN 'resolved' THEN 2 WHEN 'firing' THEN 1 ELSE 0 END DESC LIMIT 1",
        params.text(id)
    );
    let latest = rows(state, &sql, &params).await?;
    Ok(latest
        .first()
        .and_then(|r| r.get("state"))
        .and_then(Value::as_str)
        .is_some_and(|s| s != "resolved"))
}
