//! `/api/v1/bans` (admin): the Stratum bans every pool process applies, kept in the KV bucket
//! `adit_bans`. List them, ban an address or network (with a reason, for a duration or until
//! lifted), lift one. The network is in the path (`203.0.113.7`, `203.0.113.0_24` or
//! `203.0.113.0%2F24`), so the audit trail records who banned or lifted what. The pools apply
//! a change within moments, closing the open connections it covers.

use adit_schemas::bans::{self, Ban};
use async_nats::jetstream::kv::Store;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller, Role};
use crate::error::{QueryError, Result};
use crate::state::AppState;

/// The longest ban that is not "until lifted".
const MAX_DURATION_DAYS: i64 = 3650;

fn store(state: &AppState) -> Result<&Store> {
    state
        .bans
        .as_ref()
        .ok_or_else(|| QueryError::Unavailable("bans need NATS".into()))
}

fn unavailable(e: impl std::fmt::Display) -> QueryError {
    QueryError::Unavailable(e.to_string())
}

fn invalid(field: &str, reason: impl Into<String>) -> QueryError {
    QueryError::InvalidField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A new ban.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBan {
    /// Why (at most 200 characters).
    pub reason: String,
    /// How long (`2h`, `30d`); absent: until lifted.
    #[serde(default)]
    pub duration: Option<String>,
}

/// The network a path names: an address, or an address and prefix length joined by `_` or
/// `/` (`203.0.113.0_24`).
fn network(text: &str) -> Result<ipnet::IpNet> {
    bans::parse_network(&text.replacen('_', "/", 1)).map_err(|e| invalid("network", e))
}

/// The Stratum bans: admins only, reading included (they name attackers' addresses).
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(
        Role::Admin,
        OpenApiRouter::new()
            .routes(routes!(list))
            .routes(routes!(add, lift)),
    )
}

/// The bans in force, newest first (expired ones are left out).
#[utoipa::path(get, path = "/api/v1/bans", tag = "pool",
    responses((status = 200, description = "{\"bans\": [{network, reason, expires, by, at}]}"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>> {
    let kv = store(&state)?;
    let mut keys = kv.keys().await.map_err(unavailable)?;
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(unavailable)?;
        let Some(value) = kv.get(&key).await.map_err(unavailable)? else {
            continue;
        };
        match serde_json::from_slice::<Ban>(&value) {
            Ok(ban) if ban.is_active(now) => out.push(ban),
            Ok(_) => {}
            Err(e) => tracing::warn!(%key, error = %e, "a ban in the bucket cannot be read"),
        }
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.at));
    Ok(Json(json!({ "bans": out })))
}

/// Bans an address or network from every pool (admin); replaces a ban of the same network.
#[utoipa::path(put, path = "/api/v1/bans/{network}", tag = "pool",
    params(("network" = String, Path, description = "203.0.113.7, or 203.0.113.0_24 for a network")),
    request_body = NewBan,
    responses((status = 201, description = "The ban as stored"), (status = 400, description = "error.field names what is refused"),
              (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(text): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Ban>)> {
    let net = network(&text)?;
    let new: NewBan = crate::publish::body(&bytes)?;
    if new.reason.trim().is_empty() {
        return Err(invalid("reason", "say why"));
    }
    let expires = match &new.duration {
        None => None,
        Some(text) => Some(
            humantime::parse_duration(text)
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .filter(|d| {
                    *d > chrono::Duration::zero() && *d <= chrono::Duration::days(MAX_DURATION_DAYS)
                })
                .map(|d| chrono::Utc::now() + d)
                .ok_or_else(|| {
                    invalid("duration", "more than 0 and at most 10 years (`2h`, `30d`)")
                })?,
        ),
    };
    let ban = Ban::new(&net, new.reason.trim(), expires, &caller.name);
    ban.validate().map_err(|e| invalid("reason", e))?;
    let value = serde_json::to_vec(&ban).map_err(unavailable)?;
    store(&state)?
        .put(bans::key(&net), value.into())
        .await
        .map_err(unavailable)?;
    tracing::info!(network = %ban.network, by = %ban.by, "banned from the pool");
    Ok((StatusCode::CREATED, Json(ban)))
}

/// Lifts a ban (admin), the pool's own automatic ones included.
#[utoipa::path(delete, path = "/api/v1/bans/{network}", tag = "pool",
    params(("network" = String, Path, description = "As banned: 203.0.113.7, or 203.0.113.0_24")),
    responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn lift(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(text): Path<String>,
) -> Result<StatusCode> {
    let net = network(&text)?;
    let kv = store(&state)?;
    let key = bans::key(&net);
    if kv.get(&key).await.map_err(unavailable)?.is_none() {
        return Err(QueryError::NotFound(format!("no ban of {net}")));
    }
    kv.delete(&key).await.map_err(unavailable)?;
    tracing::info!(network = %net, by = %caller.name, "ban lifted");
    Ok(StatusCode::NO_CONTENT)
}
