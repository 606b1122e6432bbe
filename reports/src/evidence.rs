//! `curtailment_evidence`: each minute of each curtailment event of a closed day, per revision
//! of the day's report (and `compliance_pools`, each pool's part of the day, written alike) — what a utility's performance settlement asks an operator to show (the
//! baseline and how it was taken, the load achieved per interval, when the target was reached,
//! the deadline, met or not), queryable in SQL beside the report that states it.
//!
//! **Exactly once with the report**: a revision's rows are written before its
//! `compliance_daily` row, and skipped when the table already holds that site, day and
//! revision; so a crash between the two commits neither loses the evidence (the day is closed
//! again, as the same revision) nor doubles it.

use adit_schemas::compliance::{CompliancePool, CurtailmentEvidence};
use adit_sql::{Params, SqlEngine};
use arrow::array::AsArray;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::model::ComplianceReport;

/// The rows `report` states, as revision `revision`.
pub fn rows(report: &ComplianceReport, revision: i64) -> Vec<CurtailmentEvidence> {
    let events = report.curtailments.as_deref().unwrap_or_default();
    events
        .iter()
        .flat_map(|e| {
            e.intervals.iter().map(move |i| CurtailmentEvidence {
                site: report.site.clone(),
                revision,
                event_id: e.event_id.clone(),
                signal_at: e.signal_at,
                target_kw: e.target_kw,
                deadline: e.deadline,
                baseline_kw: e.baseline_kw,
                baseline_method: e.baseline_method.clone(),
                interval_start: i.start,
                load_kw: i.load_kw,
                reduction_kw: i.reduction_kw,
                at_target: i.at_target,
                target_reached_at: e.target_reached_at,
                time_to_target_s: e.time_to_target_s,
                met: e.met,
                date: report.date,
            })
        })
        .collect()
}

/// The pools' parts of `report`, as revision `revision` (`compliance_pools`).
pub fn pool_rows(report: &ComplianceReport, revision: i64) -> Vec<CompliancePool> {
    report
        .pools
        .iter()
        .map(|p| CompliancePool {
            site: report.site.clone(),
            revision,
            pool: p.pool.clone(),
            machines: p.machines,
            energy_kwh: p.energy_kwh,
            site_score: report.score.value,
            date: report.date,
        })
        .collect()
}

/// Whether `table` (one of the tables written beside `compliance_daily`, each with `site`,
/// `date` and `revision` columns) already holds `site`'s day `date` as revision `revision`.
pub async fn written(
    engine: &SqlEngine,
    table: &str,
    site: &str,
    date: NaiveDate,
    revision: i64,
) -> Result<bool> {
    let exists = engine
        .catalog()
        .snapshot()
        .await?
        .iter()
        .any(|(name, _)| name == table);
    if !exists {
        return Ok(false);
    }
    let mut params = Params::new();
    let (site, revision) = (params.text(site), params.int(revision));
    let sql = format!(
        "SELECT count(*) AS n FROM {table} \
         WHERE site = {site} AND date = DATE '{date}' AND revision = {revision}"
    );
    let result = engine.query_with(&sql, params.into_options()).await?;
    let Some(batch) = result.batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(false);
    };
    let n = batch
        .column_by_name("n")
        .ok_or_else(|| Error::Encode("no count column".into()))?;
    let n = cast(n, &DataType::Int64).map_err(|e| Error::Encode(e.to_string()))?;
    Ok(n.as_primitive::<Int64Type>().value(0) > 0)
}
