//! The compliance job's rows: `compliance_daily` (one site's local day, as the job closed it),
//! `curtailment_evidence` (each minute of each curtailment event of that day, with the
//! baseline it is measured from) and `compliance_pools` (each pool's part of that day: the
//! energy its machines drew at the site, and the site's score, from which a pool's score is
//! weighed).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::ts_field;

/// One revision of one site's compliance report for one local day. A day is written once; a
/// late reading that changes it adds a revision (the old ones stay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceDay {
    /// The site.
    pub site: String,
    /// 1 for the first report of the day, then one more per change.
    pub revision: i64,
    /// When this revision was written.
    pub computed_at: DateTime<Utc>,
    /// Energy used, kWh.
    pub energy_kwh: f64,
    /// Energy the allocation allows over the day, kWh.
    pub allocation_kwh: f64,
    /// Highest minute's mean power, kW.
    pub peak_kw: Option<f64>,
    /// The minute it happened.
    pub peak_at: Option<DateTime<Utc>>,
    /// Hours above the warning share of the allocation.
    pub hours_over_warning: f64,
    /// Hours above the critical share.
    pub hours_over_critical: f64,
    /// Hours above the allocation.
    pub hours_over_allocation: f64,
    /// Violations open during the day.
    pub violations: i64,
    /// Curtailment events signalled during the day.
    pub curtailments: i64,
    /// Of those, how many reached their target by the deadline.
    pub curtailments_met: i64,
    /// Share of the day's minutes fully measured.
    pub measured_share: f64,
    /// Share of the minutes with a figure that is partly estimated.
    pub estimated_share: f64,
    /// Share of the minutes with no figure.
    pub missing_share: f64,
    /// The compliance score, 0–100 (its formula is in the report).
    pub score: f64,
    /// The whole report, JSON: what the HTML and CSV are rendered from.
    pub report: String,
    /// The site's local day (partition).
    pub date: NaiveDate,
}

impl ComplianceDay {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        let f64_field = |name| Field::new(name, DataType::Float64, false);
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            Field::new("revision", DataType::Int64, false),
            ts_field("computed_at"),
            f64_field("energy_kwh"),
            f64_field("allocation_kwh"),
            Field::new("peak_kw", DataType::Float64, true),
            ts_field("peak_at").with_nullable(true),
            f64_field("hours_over_warning"),
            f64_field("hours_over_critical"),
            f64_field("hours_over_allocation"),
            Field::new("violations", DataType::Int64, false),
            Field::new("curtailments", DataType::Int64, false),
            Field::new("curtailments_met", DataType::Int64, false),
            f64_field("measured_share"),
            f64_field("estimated_share"),
            f64_field("missing_share"),
            f64_field("score"),
            Field::new("report", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// One minute of one curtailment event, as a revision of its day's report states it: what the
/// utility asked, the baseline and how it was taken, the load achieved, and whether the
/// target was reached by the deadline. Written before the day's `compliance_daily` revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurtailmentEvidence {
    /// The site.
    pub site: String,
    /// The `compliance_daily` revision it belongs to.
    pub revision: i64,
    /// The utility's event id.
    pub event_id: String,
    /// When the signal came.
    pub signal_at: DateTime<Utc>,
    /// Target load, kW.
    pub target_kw: f64,
    /// When the target had to be met.
    pub deadline: DateTime<Utc>,
    /// The load the reduction is measured from, kW.
    pub baseline_kw: Option<f64>,
    /// How the baseline was taken, in words.
    pub baseline_method: String,
    /// The minute's start.
    pub interval_start: DateTime<Utc>,
    /// Its mean power, kW (none: not measured).
    pub load_kw: Option<f64>,
    /// The baseline less that, kW.
    pub reduction_kw: Option<f64>,
    /// Whether the minute's load was at or under the target.
    pub at_target: Option<bool>,
    /// The end of the first minute at or under the target.
    pub target_reached_at: Option<DateTime<Utc>>,
    /// From the signal to that moment, seconds.
    pub time_to_target_s: Option<i64>,
    /// The target was reached by the deadline.
    pub met: bool,
    /// The site's local day of the signal (partition).
    pub date: NaiveDate,
}

impl CurtailmentEvidence {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        let kw = |name| Field::new(name, DataType::Float64, true);
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            Field::new("revision", DataType::Int64, false),
            Field::new("event_id", DataType::Utf8, false),
            ts_field("signal_at"),
            Field::new("target_kw", DataType::Float64, false),
            ts_field("deadline"),
            kw("baseline_kw"),
            Field::new("baseline_method", DataType::Utf8, false),
            ts_field("interval_start"),
            kw("load_kw"),
            kw("reduction_kw"),
            Field::new("at_target", DataType::Boolean, true),
            ts_field("target_reached_at").with_nullable(true),
            Field::new("time_to_target_s", DataType::Int64, true),
            Field::new("met", DataType::Boolean, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_encode_to_the_schema() {
        let row = ComplianceDay {
            site: "s1".into(),
            revision: 1,
            computed_at: Utc::now(),
            energy_kwh: 1.0,
            allocation_kwh: 2.0,
            peak_kw: None,
            peak_at: None,
            hours_over_warning: 0.0,
            hours_over_critical: 0.0,
            hours_over_allocation: 0.0,
            violations: 0,
            curtailments: 0,
            curtailments_met: 0,
            measured_share: 1.0,
            estimated_share: 0.0,
            missing_share: 0.0,
            score: 100.0,
            report: "{}".into(),
            date: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
        };
        let batch = crate::to_batch("compliance", ComplianceDay::schema(), &[row]).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), ComplianceDay::schema());
    }

    #[test]
    fn evidence_rows_encode_to_the_schema() {
        let at = Utc::now();
        let row = CurtailmentEvidence {
            site: "s1".into(),
            revision: 1,
            event_id: "dr-1".into(),
            signal_at: at,
            target_kw: 5.0,
            deadline: at,
            baseline_kw: Some(9.5),
            baseline_method: "mean".into(),
            interval_start: at,
            load_kw: None,
            reduction_kw: None,
            at_target: None,
            target_reached_at: None,
            time_to_target_s: None,
            met: false,
            date: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
        };
        let batch = crate::to_batch("evidence", CurtailmentEvidence::schema(), &[row]).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), CurtailmentEvidence::schema());
    }
}

/// One pool's part of one revision of a site's day: the energy its machines drew at the site
/// and the site's score. A pool's compliance score for a day is the mean of the scores of the
/// sites its machines drew energy at, each weighed by that energy, over their latest revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompliancePool {
    /// The site.
    pub site: String,
    /// The `compliance_daily` revision it belongs to.
    pub revision: i64,
    /// The pool (`unassigned`: machines that name none).
    pub pool: String,
    /// Its machines that drew energy at the site that day.
    pub machines: i64,
    /// The energy they drew, kWh.
    pub energy_kwh: f64,
    /// The site's score that day (0–100).
    pub site_score: f64,
    /// The site's local day (partition).
    pub date: NaiveDate,
}

impl CompliancePool {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            Field::new("revision", DataType::Int64, false),
            Field::new("pool", DataType::Utf8, false),
            Field::new("machines", DataType::Int64, false),
            Field::new("energy_kwh", DataType::Float64, false),
            Field::new("site_score", DataType::Float64, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}
