//! Compliance reports over HTTP: `GET /api/v1/reports/compliance?site=&date=&format=`.
//!
//! A day the nightly job has closed is served from `compliance_daily` (its latest revision, or
//! the one asked for), so what an auditor downloads is what was filed; a day not closed yet
//! (today, or before the job ran) is computed on the spot and marked provisional.

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
    access.at(Role::Read, OpenApiRouter::new().routes(routes!(compliance)))
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
