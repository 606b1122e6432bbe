//! Inspections over HTTP (issue 61): an operator records an inspection of a site or a pool —
//! who inspected, when, how it ended and what they found — with the token that recorded it
//! (operate); anyone with the read role lists them, newest first, by scope, target or outcome.
//! The site or pool must be in the registry. Recorded inspections land in `inspections` and
//! appear in the compliance report of the site's day (or of the sites a pool's machines are in).

use std::collections::BTreeMap;

use adit_schemas::inspection::{Inspection, Outcome, Scope};
use adit_schemas::registry::RecordKind;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use strum::VariantNames;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller};
use crate::error::{QueryError, Result};
use crate::publish::{body, publish};
use crate::routes::registry::registry;
use crate::routes::violations::{Filter, Filters, read_and_operate};
use crate::state::AppState;

pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    read_and_operate(access, routes!(list), [routes!(record)])
}

/// An inspection to record.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInspection {
    /// `site` or `pool`.
    pub scope: String,
    /// The site's or the pool's id, as the registry has it.
    pub target: String,
    /// Who inspected: a name, a badge number or an authority (at most 200 bytes).
    pub inspector: String,
    /// When the inspection took place (RFC 3339); not in the future.
    #[schema(value_type = String, format = DateTime)]
    pub inspected_at: DateTime<Utc>,
    /// `pass`, `remarks` or `fail`.
    pub outcome: String,
    /// What was found (at most 8 000 bytes; line breaks allowed).
    pub findings: String,
}

/// The field a refusal names, from the schema's reason.
fn refused(reason: String) -> QueryError {
    let field = ["scope", "target", "inspector", "inspected_at", "outcome", "findings"]
        .into_iter()
        .find(|f| reason.contains(f))
        .unwrap_or("body");
    QueryError::InvalidField {
        field: field.into(),
        reason,
    }
}

/// Records an inspection (operate): refused naming the field when one is wrong, 404 when the
/// site or pool is not in the registry.
#[utoipa::path(post, path = "/api/v1/inspections", tag = "reports",
    request_body = NewInspection,
    responses((status = 201, description = "{\"id\"}: the inspection as recorded"),
              (status = 400, description = "A field refused: error.field names it"),
              (status = 401), (status = 403), (status = 404, description = "No such site or pool")),
    security(("bearer" = [])))]
pub async fn record(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let new: NewInspection = body(&bytes)?;
    let ts = Utc::now();
    let inspection = Inspection {
        id: format!("{}-{:016x}", ts.timestamp_micros(), rand::random::<u64>()),
        scope: new.scope,
        target: new.target,
        inspector: new.inspector,
        inspected_at: new.inspected_at,
        outcome: new.outcome,
        findings: new.findings,
        recorded_by: caller.name,
        ts,
    };
    adit_schemas::record::Event::check_values(
        &inspection,
        &adit_schemas::validate::ValidationPolicy::default(),
        ts,
    )
    .map_err(|e| refused(e.reason))?;
    let kind = match inspection.scope.parse::<Scope>() {
        Ok(Scope::Site) => RecordKind::Site,
        Ok(Scope::Pool) => RecordKind::Pool,
        Err(_) => return Err(refused(format!("scope must be one of {:?}", Scope::VARIANTS))),
    };
    registry(&state)?
        .get(&kind.key(None, &inspection.target))
        .await
        .map_err(|e| match e {
            adit_bus::registry::RegistryError::NotFound(_) => QueryError::NotFound(format!(
                "no {} {:?} in the registry",
                inspection.scope, inspection.target
            )),
            e => e.into(),
        })?;
    let id = inspection.id.clone();
    publish(&state, inspection, "recording an inspection").await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// Inspections, newest first (read); `scope`, `target` and `outcome` filter, `limit` and
/// `offset` page.
#[utoipa::path(get, path = "/api/v1/inspections", tag = "reports",
    params(("scope" = Option<String>, Query, description = "site or pool"),
           ("target" = Option<String>, Query, description = "The site's or pool's id"),
           ("outcome" = Option<String>, Query, description = "pass, remarks or fail"),
           crate::view_sql::Page),
    responses((status = 200, description = "Inspections: id, scope, target, inspector, inspected_at, outcome, findings, recorded_by, ts"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>> {
    let filters = Filters::parse(&query, |key, value, params| {
        Ok(match key {
            "scope" if value.parse::<Scope>().is_err() => {
                return Err(refused(format!("scope must be one of {:?}", Scope::VARIANTS)));
            }
            "outcome" if value.parse::<Outcome>().is_err() => {
                return Err(refused(format!(
                    "outcome must be one of {:?}",
                    Outcome::VARIANTS
                )));
            }
            "scope" | "target" | "outcome" => Filter::equal(key, value, params),
            _ => Filter::Page,
        })
    })?;
    let select = |filter: &str, page: &str| {
        format!(
            "SELECT id, scope, target, inspector, inspected_at, outcome, findings, recorded_by, ts \
             FROM inspections {filter} ORDER BY inspected_at DESC, id {page}"
        )
    };
    filters.rows(&state, "inspections", "WHERE", select).await
}
