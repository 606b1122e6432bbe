//! Dashboards people build and share, over HTTP: a dashboard is data ([`adit_web::model`])
//! kept in KV with its revisions ([`adit_web::store`]); whoever holds `operate` creates them
//! and edits their own (admins any); a caller sees its own, those shared with its role and the
//! public ones; a public dashboard also opens through an unguessable link without a token,
//! which reads that dashboard and its panels only.
//!
//! A panel runs on the server: the page asks for panel `p` of dashboard `d` with the viewer's
//! variable values and time range, and the panel's stored SQL runs with them bound as values
//! (`$site`, `$from`, `$to`), under the caller's role and limits; through a public link, in
//! the slots of public dashboards (`query.concurrency.public`, apart from every role's) and at
//! most [`PUBLIC_MAX_ROWS`] rows. No SQL travels from a viewer. One owner keeps at most
//! [`MAX_OWNED`] dashboards, and the bucket has a size.

use std::collections::{BTreeMap, HashMap};

use adit_auth::{Caller, Role};
use adit_sql::StatementOptions;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::common::metadata::ScalarAndMetadata;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use adit_sql::admission::Slot;
use crate::auth::Access;
use crate::error::{QueryError, Result};
use crate::format::{Encoder, Format};
use crate::state::AppState;
use adit_web::model::{Dashboard, Visibility};
use adit_web::store::{DashboardStore, Stored};

/// Most rows a panel answers through a public link.
pub const PUBLIC_MAX_ROWS: usize = 10_000;
/// Most dashboards one owner keeps.
pub const MAX_OWNED: usize = 100;
/// Longest value a viewer may give a variable, bytes.
const MAX_VALUE_BYTES: usize = 1024;

fn store(state: &AppState) -> Result<&DashboardStore> {
    state.dashboards.as_ref().ok_or_else(|| {
        QueryError::Unavailable("dashboards are kept in NATS, and this server has none".into())
    })
}

fn caller(caller: Option<Extension<Caller>>) -> Caller {
    caller.map_or_else(Caller::anonymous, |Extension(c)| c)
}

/// Whether `caller` may see `stored`.
fn visible(caller: &Caller, stored: &Stored) -> bool {
    caller.role == Role::Admin
        || stored.owner == caller.name
        || match stored.dashboard.visibility {
            Visibility::Private => false,
            Visibility::Shared { role } => caller.role >= role,
            Visibility::Public => true,
        }
}

/// Whether `caller` may change `stored`.
fn editable(caller: &Caller, stored: &Stored) -> bool {
    caller.role == Role::Admin || stored.owner == caller.name
}

/// Dashboard `id` as `caller` may see it (a 404 for one it may not: its existence is not told).
async fn seen(state: &AppState, caller: &Caller, id: &str) -> Result<(Stored, u64)> {
    let not_found = || QueryError::NotFound(format!("no dashboard {id}"));
    if !adit_web::model::plain_id(id) {
        return Err(not_found());
    }
    match store(state)?.get(id).await? {
        Some((stored, revision)) if visible(caller, &stored) => Ok((stored, revision)),
        _ => Err(not_found()),
    }
}

/// A stored dashboard as the API shows it to `caller`: the link only to who may change it.
fn shown(caller: Option<&Caller>, stored: &Stored, revision: u64) -> Value {
    let mut value = serde_json::to_value(stored).unwrap_or_default();
    value["revision"] = json!(revision);
    value["editable"] = json!(caller.is_some_and(|c| editable(c, stored)));
    if caller.is_none_or(|c| !editable(c, stored))
        && let Some(object) = value.as_object_mut()
    {
        object.remove("link");
    }
    value
}

fn with_etag(value: Value, revision: u64) -> Response {
    let mut response = Json(value).into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// The dashboards: listed, opened and their panels run by readers; created, replaced and
/// deleted by operators (the owner's or, for admins, any); a public dashboard's link needs no
/// token.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    let read = OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
        .routes(routes!(revisions))
        .routes(routes!(query_panel))
        .routes(routes!(variable_values));
    let operate = OpenApiRouter::new()
        .routes(routes!(put))
        .routes(routes!(delete));
    let public = OpenApiRouter::new()
        .routes(routes!(public_get))
        .routes(routes!(public_query_panel))
        .routes(routes!(public_variable_values));
    access
        .at(Role::Read, read)
        .merge(access.at(Role::Operate, operate))
        .merge(public)
}

/// The dashboards the caller may see, newest change first.
#[utoipa::path(get, path = "/api/v1/dashboards", tag = "dashboards",
    responses((status = 200, description = "[{id, title, owner, visibility, revision, updated}]"),
              (status = 401), (status = 503)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    who: Option<Extension<Caller>>,
) -> Result<Json<Value>> {
    let who = caller(who);
    let mut all: Vec<(Stored, u64)> = store(&state)?
        .list()
        .await?
        .into_iter()
        .filter(|(s, _)| visible(&who, s))
        .collect();
    all.sort_by_key(|(s, _)| std::cmp::Reverse(s.updated));
    Ok(Json(Value::Array(
        all.iter()
            .map(|(s, revision)| {
                json!({
                    "id": s.id, "title": s.dashboard.title, "owner": s.owner,
                    "visibility": s.dashboard.visibility, "revision": revision,
                    "updated": s.updated, "panels": s.dashboard.panels.len(),
                })
            })
            .collect(),
    )))
}

/// One dashboard (also its export: `dashboard` is what `PUT` takes).
#[utoipa::path(get, path = "/api/v1/dashboards/{id}", tag = "dashboards",
    params(("id" = String, Path, description = "The dashboard")),
    responses((status = 200, description = "{id, owner, author, updated, revision, link?, dashboard}; ETag: the revision"),
              (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Response> {
    let who = caller(who);
    let (stored, revision) = seen(&state, &who, &id).await?;
    Ok(with_etag(shown(Some(&who), &stored, revision), revision))
}

/// Creates a dashboard, or replaces one the caller owns (admins: any), with its public link
/// made or ended as its visibility says.
#[utoipa::path(put, path = "/api/v1/dashboards/{id}", tag = "dashboards",
    params(("id" = String, Path, description = "The dashboard: 1-64 lower-case letters, digits, - and _")),
    request_body(content = Value, description = "{title, description?, visibility?: {kind: private|shared|public, role?}, time?: {from, to}, variables?: [{name, label?, query?, default?}], panels: [{id, title, kind: timeseries|bar|stat|table|gauge, sql, unit?, thresholds?: [{value, color}], min?, max?, layout: {x, y, w, h}, live?}]}; If-Match: the revision replaced"),
    responses((status = 200, description = "The dashboard as stored"), (status = 201, description = "Created"),
              (status = 400, description = "A field and why"), (status = 401), (status = 403),
              (status = 404), (status = 409, description = "It exists (no If-Match) or changed since"), (status = 503)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response> {
    let who = caller(who);
    if !adit_web::model::plain_id(&id) {
        return Err(QueryError::InvalidField {
            field: "id".into(),
            reason: "1-64 lower-case letters, digits, - and _".into(),
        });
    }
    let dashboard: Dashboard =
        serde_json::from_value(body).map_err(|e| QueryError::InvalidField {
            field: "dashboard".into(),
            reason: e.to_string(),
        })?;
    dashboard
        .validate(state.engine.limits().text())
        .map_err(|r| QueryError::InvalidField {
            field: r.field,
            reason: r.reason,
        })?;
    let store = store(&state)?;
    let expected = crate::routes::registry::expected(&headers)?;
    let existing = store.get(&id).await?;
    let (owner, old_link) = match (&existing, expected) {
        (Some((s, _)), _) if !visible(&who, s) => {
            return Err(QueryError::NotFound(format!("no dashboard {id}")));
        }
        (Some((s, _)), _) if !editable(&who, s) => {
            return Err(QueryError::Forbidden {
                needed: "the dashboard's owner or admin",
                has: who.role.name(),
            });
        }
        (Some((s, _)), _) => (s.owner.clone(), s.link.clone()),
        (None, Some(r)) if r > 0 => {
            return Err(QueryError::NotFound(format!(
                "no dashboard {id} to replace"
            )));
        }
        (None, _) => {
            let owned = store
                .list()
                .await?
                .iter()
                .filter(|(s, _)| s.owner == who.name)
                .count();
            if owned >= MAX_OWNED {
                return Err(QueryError::Conflict(format!(
                    "{} owns {owned} dashboards, the most one owner keeps; delete one first",
                    who.name
                )));
            }
            (who.name.clone(), None)
        }
    };
    let revision = match (&existing, expected) {
        (Some(_), Some(0)) => {
            return Err(QueryError::Conflict(format!("dashboard {id} exists")));
        }
        (Some(_), None) => {
            return Err(QueryError::Conflict(format!(
                "dashboard {id} exists; send If-Match with its revision to replace it"
            )));
        }
        (Some(_), Some(r)) => Some(r),
        (None, _) => None,
    };
    let link = match (dashboard.visibility, old_link.clone()) {
        (Visibility::Public, Some(link)) => Some(link),
        (Visibility::Public, None) => Some(new_link()),
        _ => None,
    };
    let stored = Stored {
        id: id.clone(),
        owner,
        author: who.name.clone(),
        updated: chrono::Utc::now(),
        link: link.clone(),
        dashboard,
    };
    let written = store.put(&stored, revision).await?;
    if let Some(link) = &link {
        store.set_link(link, &id).await?;
    }
    if let Some(old) = old_link.filter(|old| Some(old) != link.as_ref()) {
        store.end_link(&old).await?;
    }
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = with_etag(shown(Some(&who), &stored, written), written);
    *response.status_mut() = status;
    Ok(response)
}

/// An unguessable link key: 32 random bytes, hex.
fn new_link() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deletes a dashboard the caller owns (admins: any), and its public link.
#[utoipa::path(delete, path = "/api/v1/dashboards/{id}", tag = "dashboards",
    params(("id" = String, Path, description = "The dashboard")),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let who = caller(who);
    let (stored, _) = seen(&state, &who, &id).await?;
    if !editable(&who, &stored) {
        return Err(QueryError::Forbidden {
            needed: "the dashboard's owner or admin",
            has: who.role.name(),
        });
    }
    let store = store(&state)?;
    store.delete(&id).await?;
    if let Some(link) = &stored.link {
        store.end_link(link).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The revisions kept of a dashboard, oldest first.
#[utoipa::path(get, path = "/api/v1/dashboards/{id}/revisions", tag = "dashboards",
    params(("id" = String, Path, description = "The dashboard")),
    responses((status = 200, description = "[{revision, author, updated, dashboard}]"),
              (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn revisions(
    State(state): State<AppState>,
    who: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let who = caller(who);
    seen(&state, &who, &id).await?;
    let history = store(&state)?.history(&id).await?;
    Ok(Json(Value::Array(
        history
            .iter()
            .map(|(s, r)| json!({"revision": r, "author": s.author, "updated": s.updated, "dashboard": s.dashboard}))
            .collect(),
    )))
}

/// What a viewer asks a panel for: variable values and a time range (the dashboard's own by
/// default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelAsk {
    /// Values of the dashboard's variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The range's start (`now-6h`, RFC 3339).
    pub from: Option<String>,
    /// The range's end.
    pub to: Option<String>,
}

/// What a viewer asked a panel for; an empty body asks for the defaults. Anything else (SQL
/// above all) is refused: a panel runs only its stored SQL.
fn panel_ask(body: &[u8]) -> Result<PanelAsk> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PanelAsk::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        QueryError::BadRequest(format!(
            "a panel takes {{variables?: {{name: value}}, from?, to?}}, nothing else: {e}"
        ))
    })
}

/// Runs a panel of a dashboard the caller may see, with the viewer's values bound.
#[utoipa::path(post, path = "/api/v1/dashboards/{id}/panels/{panel}/query", tag = "dashboards",
    params(("id" = String, Path, description = "The dashboard"), ("panel" = String, Path, description = "The panel")),
    request_body(content = Value, description = "{variables?: {name: value}, from?, to?}"),
    responses((status = 200, description = "The panel's rows, JSON"), (status = 400), (status = 401),
              (status = 404), (status = 422, description = "over a limit"), (status = 503)),
    security(("bearer" = [])))]
pub async fn query_panel(
    State(state): State<AppState>,
    who: Option<Extension<Caller>>,
    Path((id, panel)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Result<Response> {
    let opened = Opened::by_caller(&state, who, &id).await?;
    opened.panel(&state, &panel, &body).await
}

/// The values of a dashboard's variable, as its query lists them.
#[utoipa::path(post, path = "/api/v1/dashboards/{id}/variables/{name}/values", tag = "dashboards",
    params(("id" = String, Path, description = "The dashboard"), ("name" = String, Path, description = "The variable")),
    responses((status = 200, description = "The rows of the variable's query, JSON"), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn variable_values(
    State(state): State<AppState>,
    who: Option<Extension<Caller>>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response> {
    let opened = Opened::by_caller(&state, who, &id).await?;
    opened.variable(&state, &name).await
}

/// A public dashboard through its link, without a token.
#[utoipa::path(get, path = "/api/v1/public/dashboards/{link}", tag = "dashboards",
    params(("link" = String, Path, description = "The dashboard's public link key")),
    responses((status = 200, description = "{id, updated, dashboard}"), (status = 404)))]
pub async fn public_get(
    State(state): State<AppState>,
    Path(link): Path<String>,
) -> Result<Json<Value>> {
    let (stored, _) = by_link(&state, &link).await?;
    Ok(Json(
        json!({"id": stored.id, "updated": stored.updated, "dashboard": stored.dashboard}),
    ))
}

/// A panel of a public dashboard through its link: the slots of public dashboards, at most
/// [`PUBLIC_MAX_ROWS`] rows.
#[utoipa::path(post, path = "/api/v1/public/dashboards/{link}/panels/{panel}/query", tag = "dashboards",
    params(("link" = String, Path, description = "The link key"), ("panel" = String, Path, description = "The panel")),
    request_body(content = Value, description = "{variables?: {name: value}, from?, to?}"),
    responses((status = 200, description = "The panel's rows, JSON"), (status = 400), (status = 404), (status = 422)))]
pub async fn public_query_panel(
    State(state): State<AppState>,
    Path((link, panel)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Result<Response> {
    let opened = Opened::by_link(&state, &link).await?;
    opened.panel(&state, &panel, &body).await
}

/// A variable's values of a public dashboard through its link.
#[utoipa::path(post, path = "/api/v1/public/dashboards/{link}/variables/{name}/values", tag = "dashboards",
    params(("link" = String, Path, description = "The link key"), ("name" = String, Path, description = "The variable")),
    responses((status = 200, description = "The rows of the variable's query, JSON"), (status = 404)))]
pub async fn public_variable_values(
    State(state): State<AppState>,
    Path((link, name)): Path<(String, String)>,
) -> Result<Response> {
    let opened = Opened::by_link(&state, &link).await?;
    opened.variable(&state, &name).await
}

/// A dashboard opened to run its panels and variables: in the slots and within the rows of
/// the caller's role, or, through a public link, of public dashboards.
struct Opened {
    /// The dashboard whose stored SQL runs.
    dashboard: Dashboard,
    /// Where its statements wait for a turn.
    slot: Slot,
    /// Most rows one of its statements answers.
    max_rows: usize,
}

impl Opened {
    /// Dashboard `id`, when `who` may see it.
    async fn by_caller(state: &AppState, who: Option<Extension<Caller>>, id: &str) -> Result<Self> {
        let who = caller(who);
        let (stored, _) = seen(state, &who, id).await?;
        Ok(Self {
            dashboard: stored.dashboard,
            slot: Slot::Role(who.role),
            max_rows: state.engine.limits().max_rows,
        })
    }

    /// The public dashboard `link` opens.
    async fn by_link(state: &AppState, link: &str) -> Result<Self> {
        let (stored, _) = by_link(state, link).await?;
        Ok(Self {
            dashboard: stored.dashboard,
            slot: Slot::Public,
            max_rows: PUBLIC_MAX_ROWS.min(state.engine.limits().max_rows),
        })
    }

    /// Runs `panel` with what the viewer asked in `body`.
    async fn panel(self, state: &AppState, panel: &str, body: &[u8]) -> Result<Response> {
        let ask = panel_ask(body)?;
        let sql = panel_sql(&self.dashboard, panel)?;
        run(state, &self.dashboard, sql, &ask, self.slot, self.max_rows).await
    }

    /// Lists variable `name`'s values, its query run with the defaults.
    async fn variable(self, state: &AppState, name: &str) -> Result<Response> {
        let sql = variable_sql(&self.dashboard, name)?;
        let ask = PanelAsk::default();
        run(state, &self.dashboard, sql, &ask, self.slot, self.max_rows).await
    }
}

/// The public dashboard `link` opens (a 404 for anything else, said the same way).
async fn by_link(state: &AppState, link: &str) -> Result<(Stored, u64)> {
    let not_found = || QueryError::NotFound("no public dashboard at this link".into());
    if link.len() != 64 || !link.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let store = store(state)?;
    let Some(id) = store.linked(link).await? else {
        return Err(not_found());
    };
    match store.get(&id).await? {
        Some((stored, revision))
            if stored.dashboard.visibility == Visibility::Public
                && stored.link.as_deref() == Some(link) =>
        {
            Ok((stored, revision))
        }
        _ => Err(not_found()),
    }
}

fn panel_sql<'a>(dashboard: &'a Dashboard, panel: &str) -> Result<&'a str> {
    dashboard
        .panel(panel)
        .map(|p| p.sql.as_str())
        .ok_or_else(|| QueryError::NotFound(format!("no panel {panel}")))
}

fn variable_sql<'a>(dashboard: &'a Dashboard, name: &str) -> Result<&'a str> {
    dashboard
        .variables
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| v.query.as_deref())
        .ok_or_else(|| QueryError::NotFound(format!("no variable {name} with a query")))
}

/// The values bound in a panel's SQL: each variable (the viewer's or its default) and the
/// time range.
fn bound(dashboard: &Dashboard, ask: &PanelAsk) -> Result<ParamValues> {
    let mut values: HashMap<String, ScalarAndMetadata> = HashMap::new();
    for (name, value) in &ask.variables {
        if !dashboard.variables.iter().any(|v| &v.name == name) {
            return Err(QueryError::InvalidField {
                field: format!("variables.{name}"),
                reason: "the dashboard has no such variable".into(),
            });
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(QueryError::InvalidField {
                field: format!("variables.{name}"),
                reason: format!("at most {MAX_VALUE_BYTES} bytes"),
            });
        }
    }
    for v in &dashboard.variables {
        let value = ask.variables.get(&v.name).unwrap_or(&v.default);
        values.insert(
            v.name.clone(),
            ScalarValue::Utf8(Some(value.clone())).into(),
        );
    }
    let now = chrono::Utc::now();
    for (name, asked, default) in [
        ("from", &ask.from, &dashboard.time.from),
        ("to", &ask.to, &dashboard.time.to),
    ] {
        let text = asked.as_ref().unwrap_or(default);
        let at = adit_web::model::resolve(text, now).ok_or_else(|| QueryError::InvalidField {
            field: name.into(),
            reason: "now, now-<n><s|m|h|d|w> or an RFC 3339 time".into(),
        })?;
        let us = ScalarValue::TimestampMicrosecond(Some(at.timestamp_micros()), Some("UTC".into()));
        values.insert(name.into(), us.into());
    }
    Ok(ParamValues::Map(values))
}

/// Runs `sql` with the viewer's values in a `slot`, within `max_rows`; JSON rows.
async fn run(
    state: &AppState,
    dashboard: &Dashboard,
    sql: &str,
    ask: &PanelAsk,
    slot: Slot,
    max_rows: usize,
) -> Result<Response> {
    let options = StatementOptions {
        params: Some(bound(dashboard, ask)?),
        ..StatementOptions::default()
    };
    let _slot = state.admission.admit(slot).await?;
    let result = state.engine.query_with(sql, options).await?;
    let rows: usize = result.batches.iter().map(|b| b.num_rows()).sum();
    if rows > max_rows {
        return Err(adit_sql::SqlError::RowLimit { limit: max_rows }.into());
    }
    let (mut encoder, mut body) =
        Encoder::new(Format::Json, &result.schema).map(|(e, opening)| (e, opening.to_vec()))?;
    for batch in &result.batches {
        body.extend_from_slice(&encoder.batch(batch)?);
    }
    body.extend_from_slice(&encoder.finish()?);
    Ok(([(header::CONTENT_TYPE, Format::Json.content_type())], body).into_response())
}
