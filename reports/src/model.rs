//! What a compliance report says: plain serde types, rendered by [`crate::render`] and stored
//! as JSON in `compliance_daily`. Every figure is rounded where it is made, so a rerun over the
//! same tables gives the same bytes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// One site's compliance report for one local day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceReport {
    /// The site.
    pub site: String,
    /// Its display name.
    pub site_name: String,
    /// The site's local day.
    pub date: NaiveDate,
    /// The site's time zone.
    pub timezone: String,
    /// Local midnight, in UTC.
    pub window_start: DateTime<Utc>,
    /// The next local midnight, in UTC (23 or 25 hours later on a clock change).
    pub window_end: DateTime<Utc>,
    /// The stored revision; none while the day is provisional (not closed by the job).
    #[serde(default)]
    pub revision: Option<i64>,
    /// The site's limits the figures are measured against.
    pub limits: Limits,
    /// Energy and power; none when no energy table exists yet.
    pub energy: Option<EnergySection>,
    /// Energy by pool (machines without a pool under `unassigned`).
    pub pools: Vec<PoolEnergy>,
    /// Violations open during the day; none when the violations table does not exist yet.
    pub violations: Option<ViolationsSection>,
    /// Curtailment events signalled during the day; none when no grid signal was ever stored.
    pub curtailments: Option<Vec<Curtailment>>,
    /// Inspections of the site, or of a pool its machines mine at, that took place during the
    /// day, in time order (none in reports written before they were kept).
    #[serde(default)]
    pub inspections: Vec<adit_schemas::Inspection>,
    /// How much of the day was measured.
    pub quality: Quality,
    /// The score and how it was reached.
    pub score: Score,
    /// The charts' data.
    pub series: Series,
}

/// The site's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Allocation, kW.
    pub allocation_kw: f64,
    /// Warning threshold, % of the allocation.
    pub warning_pct: f64,
    /// Critical threshold, % of the allocation.
    pub critical_pct: f64,
    /// Highest allowed temperature, °C.
    pub max_temp_c: f64,
}

/// Energy against allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergySection {
    /// Energy used, kWh.
    pub energy_kwh: f64,
    /// Energy the allocation allows over the day, kWh.
    pub allocation_kwh: f64,
    /// Used over allowed, %.
    pub used_pct: f64,
    /// Highest minute's mean power, kW (none without figures).
    pub peak_kw: Option<f64>,
    /// The minute it happened.
    pub peak_at: Option<DateTime<Utc>>,
    /// Minutes above the warning threshold.
    pub minutes_over_warning: i64,
    /// Minutes above the critical threshold.
    pub minutes_over_critical: i64,
    /// Minutes above the allocation.
    pub minutes_over_allocation: i64,
}

/// Energy of one pool's machines at the site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolEnergy {
    /// The pool.
    pub pool: String,
    /// Machines with figures.
    pub machines: i64,
    /// Energy, kWh.
    pub energy_kwh: f64,
}

/// Violations during the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationsSection {
    /// Count and time by kind and severity.
    pub by_kind: Vec<ViolationGroup>,
    /// Each violation.
    pub list: Vec<ViolationItem>,
}

/// Violations of one kind and (worst) severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationGroup {
    /// Kind (`power_allocation`, `temperature`…).
    pub kind: String,
    /// Worst severity reached.
    pub severity: String,
    /// How many.
    pub count: i64,
    /// Their time within the day, seconds.
    pub duration_s: i64,
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationItem {
    /// Its id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Worst severity reached.
    pub severity: String,
    /// What was in violation (`machine m1`, `site s1`…).
    pub subject: String,
    /// When it began.
    pub started: DateTime<Utc>,
    /// When it ended; none if still open at the end of the day.
    pub ended: Option<DateTime<Utc>>,
    /// Its time within the day, seconds.
    pub duration_s: i64,
    /// The worst measure.
    pub peak: Option<f64>,
    /// The limit crossed.
    pub limit: Option<f64>,
}

/// One demand-response event and how the site answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curtailment {
    /// The utility's event id.
    pub event_id: String,
    /// When the signal came.
    pub signal_at: DateTime<Utc>,
    /// Target load, kW.
    pub target_kw: f64,
    /// When the target had to be met.
    pub deadline: DateTime<Utc>,
    /// When the event ended (a `normal` signal, or the end of the day).
    pub ended_at: DateTime<Utc>,
    /// Mean power in the minute before the signal, kW.
    pub load_before_kw: Option<f64>,
    /// Lowest minute's mean power during the event, kW.
    pub lowest_kw: Option<f64>,
    /// `load_before_kw − lowest_kw`.
    pub reduction_kw: Option<f64>,
    /// Commands the controller sent during the event.
    pub commands_sent: i64,
    /// The end of the first minute whose mean power was at or under the target.
    pub target_reached_at: Option<DateTime<Utc>>,
    /// From the signal to that moment, seconds.
    pub time_to_target_s: Option<i64>,
    /// The target was reached by the deadline.
    pub met: bool,
    /// The load the reduction is measured from, kW (see `baseline_method`); none without
    /// readings before the signal.
    #[serde(default)]
    pub baseline_kw: Option<f64>,
    /// How the baseline was taken, in words.
    #[serde(default)]
    pub baseline_method: String,
    /// The load achieved in each minute from the signal to the event's end.
    #[serde(default)]
    pub intervals: Vec<EventInterval>,
}

/// One minute of a curtailment event: the load achieved and what it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInterval {
    /// The minute's start.
    pub start: DateTime<Utc>,
    /// Its mean power, kW (none: not measured).
    pub load_kw: Option<f64>,
    /// The baseline less that, kW.
    pub reduction_kw: Option<f64>,
    /// Whether the load was at or under the target.
    pub at_target: Option<bool>,
}

/// How much of the day has figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Minutes in the local day (1380, 1440 or 1500).
    pub minutes: i64,
    /// Minutes whose every machine was measured (meter, PDU or firmware, ≥ 90 % covered).
    pub measured: i64,
    /// Minutes with a figure of which some part is estimated or thinly covered.
    pub estimated: i64,
    /// Minutes with no figure.
    pub missing: i64,
    /// `measured / minutes`.
    pub measured_share: f64,
    /// `estimated / minutes`.
    pub estimated_share: f64,
    /// `missing / minutes`.
    pub missing_share: f64,
    /// The runs of missing minutes: `[start, end)`.
    pub gaps: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The compliance score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// 0–100.
    pub value: f64,
    /// Points for staying under the allocation (of 50).
    pub allocation: f64,
    /// Points for meeting curtailment deadlines (of 30).
    pub curtailment: f64,
    /// Points for measured data (of 20).
    pub data: f64,
    /// Points taken off for critical or worse violations (at most 20).
    pub penalty: f64,
    /// The formula, in words.
    pub formula: String,
}

/// The charts' data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Mean power per minute from local midnight, kW (none where missing).
    pub power_kw: Vec<Option<f64>>,
    /// Highest temperature over the site's sensors per 5 minutes, °C.
    pub temperature_c: Vec<Option<f64>>,
}

/// `x` rounded to `places` decimals (so reruns give the same bytes).
pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    let r = (x * f).round() / f;
    if r == 0.0 { 0.0 } else { r }
}
