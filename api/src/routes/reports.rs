//! Compliance reports over HTTP: `GET /api/v1/reports/compliance?site=&date=&format=`.
//!
//! A day the nightly job has closed is served from `compliance_daily` (its latest revision, or
//! the one asked for), so what an auditor downloads is what was filed; a day not closed yet
//! (today, or before the job ran) is computed on the spot and marked provisional. A pool's
//! score for a day (`/api/v1/reports/compliance/pools/{pool}?date=`) is weighed from the
//! closed days of the sites its machines drew energy at (`compliance_pools`).

use adit_reports::job::stored;
use adit_reports::render::{Format, render};
use adit_reports::{Error as ReportError, compute};
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller, Role};
use crate::error::{QueryError, Result};
use crate::routes::registry::registry;
use crate::state::AppState;

impl From<ReportError> for QueryError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid(reason) => Self::BadRequest(reason),
            ReportError::Sql(e) => Self::Sql(e),
            ReportError::Registry(reason) => Self::Unavailable(reason),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The query string.
#[derive(Debug, Deserialize)]
pub struct ReportParams {
    /// The site.
    pub site: Option<String>,
    /// The site's local day, `YYYY-MM-DD`.
    pub date: Option<String>,
    /// `html` (default), `csv` or `json`.
    pub format: Option<String>,
    /// A stored revision (default: the latest).
    pub revision: Option<i64>,
}

/// The compliance report, for readers.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(
        Role::Read,
        OpenApiRouter::new()
            .routes(routes!(compliance))
            .routes(routes!(pool_score)),
    )
}

/// One site's compliance report for one local day (read role).
#[utoipa::path(get, path = "/api/v1/reports/compliance", tag = "reports",
    params(("site" = String, Query, description = "site id"),
           ("date" = String, Query, description = "the site's local day, YYYY-MM-DD"),
           ("format" = Option<String>, Query, description = "html (default), csv or json"),
           ("revision" = Option<i64>, Query, description = "a stored revision (default: the latest)")),
    responses((status = 200, description = "the report; header x-adit-revision: its revision or `provisional`"),
              (status = 400, description = "malformed or future date, unknown format"),
              (status = 404, description = "unknown site or revision"), (status = 401)),
    security(("bearer" = [])))]
pub async fn compliance(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(params): Query<ReportParams>,
) -> Result<Response> {
    let site_id = params
        .site
        .ok_or_else(|| QueryError::BadRequest("site is required (?site=…)".into()))?;
    let date_text = params
        .date
        .ok_or_else(|| QueryError::BadRequest("date is required (?date=YYYY-MM-DD)".into()))?;
    let date = NaiveDate::parse_from_str(&date_text, "%Y-%m-%d").map_err(|_| {
        QueryError::BadRequest(format!("date {date_text:?} is not a day like 2026-11-21"))
    })?;
    let format = Format::parse(params.format.as_deref().unwrap_or("html"))?;
    let view = registry(&state)?.view().await?;
    let site = view
        .site(&site_id)
        .ok_or_else(|| QueryError::NotFound(format!("unknown site {site_id:?}")))?
        .clone();
    let today = adit_reports::compute::local_today(&site.timezone, Utc::now())?;
    if date > today {
        return Err(QueryError::BadRequest(format!(
            "{date} is in the future at {site_id} (its local day is {today})"
        )));
    }
    let report = match stored(&state.engine, &site.id, date, params.revision).await? {
        Some(report) => report,
        None if params.revision.is_some() => {
            return Err(QueryError::NotFound(format!(
                "{site_id} has no revision {} for {date}",
                params.revision.unwrap_or_default()
            )));
        }
        None => {
            // Computing a day is several statements: it takes a SQL slot like any query.
            let role = caller.map_or(Role::Admin, |Extension(c)| c.role);
            let _slot = state.admission.admit(role).await?;
            let machines: Vec<_> = view.machines().cloned().collect();
            compute(&state.engine, &site, &machines, date).await?
        }
    };
    let revision = report
        .revision
        .map_or_else(|| "provisional".to_string(), |n| n.to_string());
    let body = render(&report, format)?;
    let filename = format!("compliance-{}-{}.{}", site.id, date, format.extension());
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{filename}\""),
            ),
            (header::HeaderName::from_static("x-adit-revision"), revision),
        ],
        body,
    )
        .into_response())
}

/// One pool's compliance score for one day (read role): the mean of the latest stored score of
/// each site its machines drew energy at that day, each weighed by that energy, with each
/// site's part. Days the nightly job has not closed at a site are not counted there.
#[utoipa::path(get, path = "/api/v1/reports/compliance/pools/{pool}", tag = "reports",
    params(("pool" = String, Path), ("date" = String, Query, description = "the sites' local day, YYYY-MM-DD")),
    responses((status = 200, description = "{pool, date, score, energy_kwh, sites: [{site, revision, energy_kwh, machines, site_score}]}"),
              (status = 400, description = "no or a malformed date"), (status = 401), (status = 403),
              (status = 404, description = "no closed day of any site with this pool's machines")),
    security(("bearer" = [])))]
pub async fn pool_score(
    State(state): State<AppState>,
    axum::extract::Path(pool): axum::extract::Path<String>,
    Query(params): Query<ReportParams>,
) -> Result<axum::Json<serde_json::Value>> {
    let date_text = params
        .date
        .ok_or_else(|| QueryError::BadRequest("date is required (?date=YYYY-MM-DD)".into()))?;
    let date = NaiveDate::parse_from_str(&date_text, "%Y-%m-%d").map_err(|_| {
        QueryError::BadRequest(format!("date {date_text:?} is not a day like 2026-11-21"))
    })?;
    let have = crate::view_sql::tables(&state).await?;
    let parts = if have.contains("compliance_pools") && have.contains("compliance_daily") {
        let mut sql_params = adit_sql::Params::new();
        let pool_param = sql_params.text(&pool);
        let sql = format!(
            "WITH latest AS (SELECT site, max(revision) AS revision FROM compliance_daily \
               WHERE date = DATE '{date}' GROUP BY site) \
             SELECT p.site, p.revision, p.energy_kwh, p.machines, p.site_score \
             FROM compliance_pools p JOIN latest l ON p.site = l.site AND p.revision = l.revision \
             WHERE p.date = DATE '{date}' AND p.pool = {pool_param} ORDER BY p.site"
        );
        crate::view_sql::rows(&state, &sql, &sql_params).await?
    } else {
        Vec::new()
    };
    if parts.is_empty() {
        return Err(QueryError::NotFound(format!(
            "no closed day {date} of any site with machines of pool {pool:?}"
        )));
    }
    let number = |row: &serde_json::Map<String, serde_json::Value>, key: &str| {
        row.get(key).and_then(serde_json::Value::as_f64).unwrap_or(0.0)
    };
    let weighed: Vec<(f64, f64)> = parts
        .iter()
        .map(|r| (number(r, "site_score"), number(r, "energy_kwh")))
        .collect();
    let energy: f64 = weighed.iter().map(|(_, e)| e).sum();
    Ok(axum::Json(serde_json::json!({
        "pool": pool,
        "date": date.to_string(),
        "score": weighed_score(&weighed),
        "energy_kwh": energy,
        "sites": parts,
    })))
}

/// The mean of `(score, weight)` weighed by weight, to 0.01; none when no weight.
fn weighed_score(parts: &[(f64, f64)]) -> Option<f64> {
    let weight: f64 = parts.iter().map(|(_, w)| w).sum();
    (weight > 0.0).then(|| {
        let mean = parts.iter().map(|(s, w)| s * w).sum::<f64>() / weight;
        (mean * 100.0).round() / 100.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pools_score_is_its_sites_scores_weighed_by_its_energy_there() {
        assert_eq!(weighed_score(&[(90.0, 30.0), (60.0, 10.0)]), Some(82.5));
        assert_eq!(weighed_score(&[(90.0, 30.0)]), Some(90.0));
        assert_eq!(weighed_score(&[(90.0, 0.0)]), None, "no energy: no score");
        assert_eq!(weighed_score(&[]), None);
    }
}
