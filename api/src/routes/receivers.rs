//! Where alerts go, over HTTP (admin): the receivers and the route in force (the config
//! file's `[notify]` with what was managed over the API laid over it, secrets shown as `…`);
//! receivers added, replaced and removed, and the route set or given back to the file's, each
//! checked against the whole before it is stored (a receiver that cannot work is a 400, one
//! that would break what is configured a 409); and a test message through every channel of a
//! receiver, recorded in `notifications` like every other attempt.

use adit_alerts::AlertsError;
use adit_alerts::notify::config::{Receiver, Route};
use adit_alerts::notify::{ManagedStore, Notifier};
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Role};
use crate::error::{QueryError, Result};
use crate::state::AppState;

fn notifier(state: &AppState) -> Result<(&Notifier, &ManagedStore)> {
    let unavailable = || {
        QueryError::Unavailable(
            "receivers are managed through NATS, and this server has none".into(),
        )
    };
    let notifier = state.notifier.as_deref().ok_or_else(unavailable)?;
    let store = notifier.managed.as_ref().ok_or_else(unavailable)?;
    Ok((notifier, store))
}

fn refused(e: AlertsError) -> QueryError {
    match e {
        AlertsError::Refused(reason) => QueryError::BadRequest(reason),
        AlertsError::Conflict(reason) => QueryError::Conflict(reason),
        other => QueryError::Unavailable(other.to_string()),
    }
}

/// Where alerts go: the receivers and the route, and test messages; admins only, reading
/// included (they hold addresses and phone numbers).
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(
        Role::Admin,
        OpenApiRouter::new()
            .routes(routes!(list))
            .routes(routes!(put, delete))
            .routes(routes!(test))
            .routes(routes!(put_route, delete_route)),
    )
}

/// The receivers and the route in force, each receiver with where it comes from.
#[utoipa::path(get, path = "/api/v1/alerts/receivers", tag = "alerts",
    responses((status = 200, description = "{receivers: [{name, kind, …, channels, fallback, source: file or api}], route, route_source}; tokens and passwords shown as …"),
              (status = 401), (status = 403), (status = 503)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>> {
    let (notifier, store) = notifier(&state)?;
    let managed = store.read().await.map_err(refused)?;
    let config = notifier.config.with(&managed);
    let receivers: Vec<Value> = config
        .receivers
        .iter()
        .map(|r| {
            let source = if notifier.config.receiver(&r.name).is_some() {
                "file"
            } else {
                "api"
            };
            let mut shown = serde_json::to_value(r.redacted()).unwrap_or_default();
            shown["source"] = json!(source);
            shown
        })
        .collect();
    Ok(Json(json!({
        "receivers": receivers,
        "route": serde_json::to_value(&config.route).unwrap_or_default(),
        "route_source": if managed.route.is_some() { "api" } else { "file" },
    })))
}

/// Adds or replaces a receiver managed over the API (not one of the config file's).
#[utoipa::path(put, path = "/api/v1/alerts/receivers/{name}", tag = "alerts",
    params(("name" = String, Path, description = "The receiver")),
    request_body(content = Value, description = "A receiver as in [notify] receivers, without its name: {kind, …, channels?, fallback?}"),
    responses((status = 200, description = "The receiver as stored, secrets shown as …"),
              (status = 400, description = "It cannot work: the field and why"),
              (status = 401), (status = 403),
              (status = 409, description = "The config file defines a receiver of that name"),
              (status = 503)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(mut body): Json<Value>,
) -> Result<Json<Value>> {
    let (notifier, store) = notifier(&state)?;
    match body.as_object_mut() {
        Some(fields) => match fields.get("name") {
            Some(given) if given != &json!(name) => {
                return Err(QueryError::BadRequest(format!(
                    "name {given} differs from the path's {name:?}"
                )));
            }
            _ => {
                fields.insert("name".into(), json!(name));
            }
        },
        None => return Err(QueryError::BadRequest("a receiver is a JSON object".into())),
    }
    let receiver: Receiver = serde_json::from_value(body)
        .map_err(|e| QueryError::BadRequest(format!("not a receiver: {e}")))?;
    store
        .put_receiver(&notifier.config, &receiver)
        .await
        .map_err(refused)?;
    Ok(Json(
        serde_json::to_value(receiver.redacted()).unwrap_or_default(),
    ))
}

/// Removes a receiver managed over the API.
#[utoipa::path(delete, path = "/api/v1/alerts/receivers/{name}", tag = "alerts",
    params(("name" = String, Path, description = "The receiver")),
    responses((status = 200, description = "{deleted: name}"), (status = 401), (status = 403),
              (status = 404, description = "No receiver of that name was added over the API"),
              (status = 409, description = "The route in force still names it"),
              (status = 503)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let (notifier, store) = notifier(&state)?;
    if store
        .delete_receiver(&notifier.config, &name)
        .await
        .map_err(refused)?
    {
        Ok(Json(json!({ "deleted": name })))
    } else {
        Err(QueryError::NotFound(format!(
            "no receiver {name:?} was added over the API"
        )))
    }
}

/// Sets the route (Alertmanager's shape, as `[notify.route]`).
#[utoipa::path(put, path = "/api/v1/alerts/route", tag = "alerts",
    request_body(content = Value, description = "{receiver, group_by, group_wait, group_interval, repeat_interval, routes: [{matchers, receiver, continue}]}"),
    responses((status = 200, description = "The route in force"),
              (status = 400, description = "It cannot work: the field and why"),
              (status = 401), (status = 403), (status = 503)),
    security(("bearer" = [])))]
pub async fn put_route(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Json<Value>> {
    let (notifier, store) = notifier(&state)?;
    let route: Route = serde_json::from_value(body)
        .map_err(|e| QueryError::BadRequest(format!("not a route: {e}")))?;
    store
        .put_route(&notifier.config, &route)
        .await
        .map_err(refused)?;
    Ok(Json(serde_json::to_value(&route).unwrap_or_default()))
}

/// Gives the route back to the config file's.
#[utoipa::path(delete, path = "/api/v1/alerts/route", tag = "alerts",
    responses((status = 200, description = "{route: file}"), (status = 401), (status = 403),
              (status = 404, description = "No route was set over the API"),
              (status = 409, description = "The file's route names a receiver that is gone"),
              (status = 503)),
    security(("bearer" = [])))]
pub async fn delete_route(State(state): State<AppState>) -> Result<Json<Value>> {
    let (notifier, store) = notifier(&state)?;
    if store
        .delete_route(&notifier.config)
        .await
        .map_err(refused)?
    {
        Ok(Json(json!({ "route": "file" })))
    } else {
        Err(QueryError::NotFound("no route was set over the API".into()))
    }
}

/// Sends a test message through every channel of one receiver (admin), once each, and says
/// what happened; each attempt is in `notifications` (group `test`) like every other.
#[utoipa::path(post, path = "/api/v1/alerts/receivers/{name}/test", tag = "alerts",
    params(("name" = String, Path, description = "A receiver, of the file or the API")),
    responses((status = 200, description = "{receiver, channel, status: sent (every channel took it) or failed, error, channels: [{channel, status, error}]}"),
              (status = 401), (status = 403), (status = 404, description = "No such receiver"),
              (status = 503)),
    security(("bearer" = [])))]
pub async fn test(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let notifier = state.notifier.as_ref().ok_or_else(|| {
        QueryError::Unavailable("no [notify] receivers are configured here".into())
    })?;
    let publisher = state
        .publisher
        .as_ref()
        .ok_or_else(|| QueryError::Unavailable("test messages need NATS".into()))?;
    let attempts = notifier
        .send_test(publisher, &name, &caller.name)
        .await
        .map_err(refused)?
        .ok_or_else(|| QueryError::NotFound(format!("no receiver {name:?}")))?;
    let sent = attempts.iter().all(|a| a.status == "sent");
    let kinds: Vec<&str> = attempts.iter().map(|a| a.channel.as_str()).collect();
    let errors: Vec<&str> = attempts.iter().filter_map(|a| a.error.as_deref()).collect();
    Ok(Json(json!({
        "receiver": name,
        "channel": kinds.join("+"),
        "status": if sent { "sent" } else { "failed" },
        "error": (!errors.is_empty()).then(|| errors.join("; ")),
        "channels": attempts
            .iter()
            .map(|a| json!({ "channel": a.channel, "status": a.status, "error": a.error }))
            .collect::<Vec<_>>(),
    })))
}
