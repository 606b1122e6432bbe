//! Registry management over HTTP: list and read records (read role), create or replace them
//! (operate), delete them (admin). Sites and pools live at `/api/v1/registry/{kind}/{id}`,
//! machines, sensors and meters at `/api/v1/registry/{kind}/{site}/{id}`.
//!
//! A write answers with the record and its revision (also the `ETag`); `If-Match: <revision>`
//! makes it conditional (`If-Match: 0`: only if new). A refused field is a 400 that names it;
//! a stale revision or a record others still name is a 409. Every change is made through
//! [`adit_bus::registry::Registry`], which records who made it (the token's name).

use std::collections::BTreeMap;
use strum::IntoEnumIterator;

use adit_bus::registry::{Registry, RegistryError, Versioned};
use adit_schemas::registry::{Record, RecordKind, Site};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller, Role};
use crate::error::{QueryError, Result};
use crate::state::AppState;

impl From<RegistryError> for QueryError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(f) => Self::InvalidField {
                field: f.field,
                reason: f.reason,
            },
            RegistryError::NotFound(key) => Self::NotFound(format!("no {key} in the registry")),
            RegistryError::Conflict(reason) => Self::Conflict(reason),
            e @ RegistryError::Kv(_) => Self::Unavailable(e.to_string()),
        }
    }
}

pub(crate) fn registry(state: &AppState) -> Result<&Registry> {
    state.registry.as_ref().ok_or_else(|| {
        QueryError::Unavailable("the registry needs NATS, and this server has none".into())
    })
}

fn kind_of(plural: &str) -> Result<RecordKind> {
    RecordKind::from_plural(plural).ok_or_else(|| {
        let known: Vec<_> = RecordKind::iter().map(|k| k.plural()).collect();
        QueryError::NotFound(format!(
            "no registry kind {plural:?}; kinds: {}",
            known.join(", ")
        ))
    })
}

/// The key a path names, checking the kind's scoping.
fn key_of(kind: RecordKind, site: Option<&str>, id: &str) -> Result<String> {
    match (kind.site_scoped(), site) {
        (true, None) => Err(QueryError::NotFound(format!(
            "{} are per site: /api/v1/registry/{}/{{site}}/{{id}}",
            kind.plural(),
            kind.plural()
        ))),
        (false, Some(_)) => Err(QueryError::NotFound(format!(
            "{} are not per site: /api/v1/registry/{}/{{id}}",
            kind.plural(),
            kind.plural()
        ))),
        _ => Ok(kind.key(site, id)),
    }
}

/// A record as the API shows it: its fields, `type` and `revision`.
fn shown(v: &Versioned) -> Value {
    let mut value = serde_json::to_value(&v.record).unwrap_or(Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("revision".into(), Value::from(v.revision));
    }
    value
}

fn with_etag(status: StatusCode, v: &Versioned) -> Response {
    let mut response = (status, Json(shown(v))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", v.revision)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `If-Match` as a revision.
pub(crate) fn expected(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            QueryError::BadRequest("If-Match must be a revision number (from the ETag)".into())
        })
}

/// Parses `body` as a record of `kind` whose id (and site) the path gives: a body may leave
/// them out, and may not contradict them.
fn record_from(kind: RecordKind, site: Option<&str>, id: &str, body: &Bytes) -> Result<Record> {
    let invalid = |field: &str, reason: String| QueryError::InvalidField {
        field: field.into(),
        reason,
    };
    let mut obj: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| invalid("body", format!("must be a JSON object: {e}")))?;
    if let Some(k) = obj.remove("type")
        && k.as_str() != Some(kind.name())
    {
        return Err(invalid(
            "type",
            format!("{k} does not match the path's {}", kind.name()),
        ));
    }
    obj.remove("revision");
    let mut from_path = vec![("id", id)];
    if let Some(site) = site {
        from_path.push(("site", site));
    }
    for (field, value) in from_path {
        match obj.get(field) {
            None => {
                obj.insert(field.into(), Value::from(value));
            }
            Some(v) if v.as_str() == Some(value) => {}
            Some(v) => {
                return Err(invalid(
                    field,
                    format!("{v} does not match the path's {value:?}"),
                ));
            }
        }
    }
    let bytes = serde_json::to_vec(&obj).map_err(|e| QueryError::Internal(e.to_string()))?;
    Record::parse(kind, &bytes).map_err(|e| invalid(&e.field, e.reason))
}

/// The registry: listed and read by readers, written by operators, deleted by admins.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    let read = OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_top))
        .routes(routes!(get_scoped));
    let operate = OpenApiRouter::new()
        .routes(routes!(put_top))
        .routes(routes!(put_scoped));
    let admin = OpenApiRouter::new()
        .routes(routes!(delete_top))
        .routes(routes!(delete_scoped));
    access
        .at(Role::Read, read)
        .merge(access.at(Role::Operate, operate))
        .merge(access.at(Role::Admin, admin))
}

/// Lists records of one kind.
#[utoipa::path(get, path = "/api/v1/registry/{kind}", tag = "registry",
    params(("kind" = String, Path, description = "sites, pools, machines, sensors or meters"),
           ("site" = Option<String>, Query, description = "Only this site's (machines, sensors, meters)")),
    responses((status = 200, description = "The records, each with its `type` and `revision`"),
              (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Path(plural): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Value>>> {
    let kind = kind_of(&plural)?;
    let records = registry(&state)?
        .list(kind, query.get("site").map(String::as_str))
        .await?;
    Ok(Json(records.iter().map(shown).collect()))
}

/// Reads one site or pool.
#[utoipa::path(get, path = "/api/v1/registry/{kind}/{id}", tag = "registry",
    params(("kind" = String, Path, description = "sites or pools"), ("id" = String, Path)),
    responses((status = 200, description = "The record with its revision (also the ETag)"),
              (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn get_top(
    State(state): State<AppState>,
    Path((plural, id)): Path<(String, String)>,
) -> Result<Response> {
    let key = key_of(kind_of(&plural)?, None, &id)?;
    Ok(with_etag(
        StatusCode::OK,
        &registry(&state)?.get(&key).await?,
    ))
}

/// Reads one machine, sensor or meter.
#[utoipa::path(get, path = "/api/v1/registry/{kind}/{site}/{id}", tag = "registry",
    params(("kind" = String, Path, description = "machines, sensors or meters"),
           ("site" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "The record with its revision (also the ETag)"),
              (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn get_scoped(
    State(state): State<AppState>,
    Path((plural, site, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let key = key_of(kind_of(&plural)?, Some(&site), &id)?;
    Ok(with_etag(
        StatusCode::OK,
        &registry(&state)?.get(&key).await?,
    ))
}

async fn put(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    plural: &str,
    site: Option<&str>,
    id: &str,
    body: &Bytes,
) -> Result<Response> {
    let kind = kind_of(plural)?;
    key_of(kind, site, id)?;
    let record = record_from(kind, site, id, body)?;
    let expected = match &record {
        Record::Site(new) if caller.role < Role::Admin => {
            site_without_safety_change(state, caller, new, expected(headers)?).await?
        }
        _ => expected(headers)?,
    };
    let changed = registry(state)?
        .put(record.clone(), &caller.name, expected)
        .await?;
    let status = if changed.before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    tracing::info!(key = %record.key(), by = %caller.name, revision = changed.revision, "registry change");
    Ok(with_etag(
        status,
        &Versioned {
            record,
            revision: changed.revision,
        },
    ))
}

/// Checks that a caller below admin leaves `new`'s safety settings as they are (a new site
/// sets them all); answers the revision the write must be made at, so a change made between
/// this read and the write is not overwritten by what was checked against the older one.
async fn site_without_safety_change(
    state: &AppState,
    caller: &Caller,
    new: &Site,
    expected: Option<u64>,
) -> Result<Option<u64>> {
    let key = Record::Site(new.clone()).key();
    let (before, revision) = match registry(state)?.get(&key).await {
        Ok(v) => match v.record {
            Record::Site(site) => (Some(site), v.revision),
            _ => (None, v.revision),
        },
        Err(RegistryError::NotFound(_)) => (None, 0),
        Err(e) => return Err(e.into()),
    };
    if let Some(field) = new.safety_change(before.as_ref()) {
        return Err(QueryError::FieldForbidden {
            field: field.into(),
            why: "a site's allocation and safety limits are set by an admin",
            needed: Role::Admin.name(),
            has: caller.role.name(),
        });
    }
    match expected {
        Some(e) if e != revision => Err(QueryError::Conflict(format!(
            "{key} is at revision {revision}, not {e}"
        ))),
        _ => Ok(Some(revision)),
    }
}

/// Creates or replaces a site or pool (operate role; a site's allocation and safety limits:
/// admin).
#[utoipa::path(put, path = "/api/v1/registry/{kind}/{id}", tag = "registry",
    params(("kind" = String, Path, description = "sites or pools"), ("id" = String, Path),
           ("If-Match" = Option<String>, Header, description = "Only if at this revision (0: only if new)")),
    request_body(content = String, content_type = "application/json",
        description = "The record's fields, e.g. {\"allocation_kw\": 500, \"timezone\": \"Europe/Oslo\"}"),
    responses((status = 201, description = "Created"), (status = 200, description = "Replaced"),
              (status = 400, description = "A field is refused; `error.field` names it"),
              (status = 401), (status = 403), (status = 409, description = "Stale revision")),
    security(("bearer" = [])))]
pub async fn put_top(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((plural, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    put(&state, &caller, &headers, &plural, None, &id, &body).await
}

/// Creates or replaces a machine, sensor or meter (operate role).
#[utoipa::path(put, path = "/api/v1/registry/{kind}/{site}/{id}", tag = "registry",
    params(("kind" = String, Path, description = "machines, sensors or meters"),
           ("site" = String, Path), ("id" = String, Path),
           ("If-Match" = Option<String>, Header, description = "Only if at this revision (0: only if new)")),
    request_body(content = String, content_type = "application/json",
        description = "The record's fields, e.g. {\"model\": \"S19\", \"nominal_power_w\": 3250, …}"),
    responses((status = 201, description = "Created"), (status = 200, description = "Replaced"),
              (status = 400, description = "A field is refused (or names a missing site/pool)"),
              (status = 401), (status = 403), (status = 409, description = "Stale revision")),
    security(("bearer" = [])))]
pub async fn put_scoped(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((plural, site, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    put(&state, &caller, &headers, &plural, Some(&site), &id, &body).await
}

async fn delete(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    key: String,
) -> Result<Response> {
    let changed = registry(state)?
        .delete(&key, &caller.name, expected(headers)?)
        .await?;
    tracing::info!(%key, by = %caller.name, revision = changed.revision, "registry delete");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes a site or pool that nothing names any more (admin role).
#[utoipa::path(delete, path = "/api/v1/registry/{kind}/{id}", tag = "registry",
    params(("kind" = String, Path, description = "sites or pools"), ("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401), (status = 403),
              (status = 404), (status = 409, description = "Still named by other records")),
    security(("bearer" = [])))]
pub async fn delete_top(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((plural, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let key = key_of(kind_of(&plural)?, None, &id)?;
    delete(&state, &caller, &headers, key).await
}

/// Deletes a machine, sensor or meter that nothing names any more (admin role).
#[utoipa::path(delete, path = "/api/v1/registry/{kind}/{site}/{id}", tag = "registry",
    params(("kind" = String, Path, description = "machines, sensors or meters"),
           ("site" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401), (status = 403),
              (status = 404), (status = 409, description = "Still named by other records")),
    security(("bearer" = [])))]
pub async fn delete_scoped(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((plural, site, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let key = key_of(kind_of(&plural)?, Some(&site), &id)?;
    delete(&state, &caller, &headers, key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_fills_and_guards_id_and_site() {
        let body = Bytes::from_static(
            br#"{"model":"S19","nominal_hashrate_hs":1e14,"nominal_power_w":3250}"#,
        );
        let r = record_from(RecordKind::Machine, Some("s1"), "m1", &body).unwrap();
        assert_eq!(r.key(), "machine.s1.m1");
        let contradicting = Bytes::from_static(
            br#"{"id":"m2","model":"S19","nominal_hashrate_hs":1e14,"nominal_power_w":3250}"#,
        );
        match record_from(RecordKind::Machine, Some("s1"), "m1", &contradicting) {
            Err(QueryError::InvalidField { field, .. }) => assert_eq!(field, "id"),
            other => panic!("{other:?}"),
        }
        match record_from(RecordKind::Site, None, "s1", &Bytes::from_static(b"{}")) {
            Err(QueryError::InvalidField { reason, .. }) => {
                assert!(reason.contains("allocation_kw"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(key_of(RecordKind::Machine, None, "m1").is_err());
        assert!(key_of(RecordKind::Site, Some("s"), "m1").is_err());
    }
}
