//! The figures of one site's local day, read by SQL from the tables the pipelines write.
//!
//! SQL fetches the day's rows in a fixed order and the sums are made here, minute by minute,
//! so the same tables always give the same figures to the bit. A section whose table does not
//! exist yet is `None` ("no data" in the report), never an error.

use std::collections::{BTreeMap, BTreeSet};

use adit_schemas::Inspection;
use adit_schemas::names;
use adit_schemas::registry::{Machine, Site};
use adit_sql::{Params, SqlEngine};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use crate::error::{Error, Result};
use crate::model::{
    ComplianceReport, Curtailment, EnergySection, EventInterval, Limits, PoolEnergy, Quality,
    Score, Series, ViolationGroup, ViolationItem, ViolationsSection, round,
};

/// The placeholder every statement of the day names its site by ([`Day::query`] binds it).
const SITE: &str = "$1";
/// A machine minute below this coverage counts as estimated.
const MEASURED_COVERAGE: f64 = 0.9;
/// Temperature chart bucket, minutes.
const TEMP_BUCKET_MIN: i64 = 5;
/// How far back violation rows are read for a day (an open violation with no row for longer
/// is not seen).
const VIOLATION_LOOKBACK_DAYS: i64 = 92;
/// How far past the day's end a curtailment signalled during the day is followed (to its
/// deadline and its end).
const LOOKAHEAD: Duration = Duration::days(1);

/// The site's local day `date` as `[local midnight, next local midnight)` in UTC.
pub fn local_window(timezone: &str, date: NaiveDate) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let tz: chrono_tz::Tz = timezone
        .parse()
        .map_err(|_| Error::Invalid(format!("time zone {timezone:?} is not an IANA zone")))?;
    let midnight = |d: NaiveDate| -> Result<DateTime<Utc>> {
        let naive = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        // A zone that skips midnight starts the day at the first instant after the gap.
        tz.from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(naive + Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| Error::Invalid(format!("{d} has no local midnight in {timezone}")))
    };
    let next = date
        .succ_opt()
        .ok_or_else(|| Error::Invalid(format!("{date} is out of range")))?;
    Ok((midnight(date)?, midnight(next)?))
}

/// The site's local date now.
pub fn local_today(timezone: &str, now: DateTime<Utc>) -> Result<NaiveDate> {
    let tz: chrono_tz::Tz = timezone
        .parse()
        .map_err(|_| Error::Invalid(format!("time zone {timezone:?} is not an IANA zone")))?;
    Ok(now.with_timezone(&tz).date_naive())
}

/// Computes the report of `site`'s local day `date` (`machines`: the registry's, to group
/// energy by pool). The result has no revision: the job gives it one when it stores it.
pub async fn compute(
    engine: &SqlEngine,
    site: &Site,
    machines: &[Machine],
    date: NaiveDate,
) -> Result<ComplianceReport> {
    let (start, end) = local_window(&site.timezone, date)?;
    let minutes = (end - start).num_minutes();
    let tables: BTreeSet<String> = engine
        .catalog()
        .snapshot()
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let day = Day {
        engine,
        site: &site.id,
        start,
        end,
        tables: &tables,
    };
    let limits = Limits {
        allocation_kw: site.allocation_kw,
        warning_pct: site.warning_pct,
        critical_pct: site.critical_pct,
        max_temp_c: site.max_temp_c,
    };
    let signals = day.grid_signals().await?;
    // A curtailment signalled today is judged until its deadline or its end, past midnight.
    let horizon = signals
        .as_deref()
        .map_or(end, |signals| judged_until(signals, start, end));
    let power_to_horizon = day.power_minutes(horizon).await?;
    let power = power_to_horizon
        .as_ref()
        .map(|p| p[..p.len().min(minutes as usize)].to_vec());
    let weak = day.weak_minutes(minutes).await?;
    let energy = power
        .as_ref()
        .map(|p| energy_section(&limits, start, minutes, p));
    let quality = quality(start, power.as_deref(), weak.as_deref(), minutes);
    let violations = day.violations().await?;
    let commands = day.command_times(horizon).await?;
    let curtailments = signals
        .map(|signals| curtailments(&signals, start, end, power_to_horizon.as_deref(), &commands));
    let score = score(
        energy.as_ref(),
        curtailments.as_deref(),
        &quality,
        violations.as_ref(),
    );
    Ok(ComplianceReport {
        site: site.id.clone(),
        site_name: site.name.clone(),
        date,
        timezone: site.timezone.clone(),
        window_start: start,
        window_end: end,
        revision: None,
        limits,
        energy,
        pools: day.pools(machines).await?,
        violations,
        curtailments,
        inspections: day.inspections(machines).await?,
        quality,
        score,
        series: Series {
            power_kw: power
                .unwrap_or_else(|| vec![None; minutes as usize])
                .into_iter()
                .map(|m| m.map(|w| round(w / 1000.0, 3)))
                .collect(),
            temperature_c: day.temperatures(minutes).await?,
        },
    })
}

/// One site's day and where to read it.
struct Day<'a> {
    engine: &'a SqlEngine,
    site: &'a str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    tables: &'a BTreeSet<String>,
}

impl Day<'_> {
    /// `ts_col` within the day, as SQL.
    fn within(&self, ts_col: &str) -> String {
        self.since_start_until(ts_col, self.end)
    }

    /// `ts_col` from the day's start until `until`, as SQL.
    fn since_start_until(&self, ts_col: &str, until: DateTime<Utc>) -> String {
        format!(
            "{ts_col} >= to_timestamp_micros({}) AND {ts_col} < to_timestamp_micros({})",
            self.start.timestamp_micros(),
            until.timestamp_micros()
        )
    }

    fn has(&self, table: &str) -> bool {
        self.tables.contains(table)
    }

    /// Runs one of the day's statements, each about the site: its name is bound to [`SITE`].
    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut params = Params::new();
        params.text(self.site);
        let options = params.into_options();
        Ok(self.engine.query_with(sql, options).await?.batches)
    }

    /// The entry of `out` (one per `bucket_min` minutes from local midnight) that the UTC
    /// timestamp `us` (µs) falls in; none outside the day.
    fn slot<'o, T>(&self, out: &'o mut [T], us: i64, bucket_min: i64) -> Option<&'o mut T> {
        let minute = (us - self.start.timestamp_micros()).div_euclid(60_000_000);
        usize::try_from(minute / bucket_min)
            .ok()
            .and_then(|i| out.get_mut(i))
    }

    /// Each minute's mean site power, W, from the day's start until `until` (past the day's
    /// end for a curtailment still running); none when no energy table exists.
    async fn power_minutes(&self, until: DateTime<Utc>) -> Result<Option<Vec<Option<f64>>>> {
        if !self.has(names::TABLE_SITE_ENERGY_1M) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT CAST(minute AS BIGINT) AS m, avg_power_w FROM {} WHERE site = {} AND {} ORDER BY minute",
            names::TABLE_SITE_ENERGY_1M,
            SITE,
            self.since_start_until("minute", until)
        );
        let minutes = usize::try_from((until - self.start).num_minutes()).unwrap_or_default();
        let mut out = vec![None; minutes];
        for batch in self.query(&sql).await? {
            for (m, w) in i64s(&batch, "m")?
                .into_iter()
                .zip(f64s(&batch, "avg_power_w")?)
            {
                let (Some(m), Some(w)) = (m, w) else { continue };
                if let Some(slot) = self.slot(&mut out, m, 1) {
                    *slot = Some(w);
                }
            }
        }
        Ok(Some(out))
    }

    /// Each minute: whether some machine figure in it is estimated or thinly covered.
    async fn weak_minutes(&self, minutes: i64) -> Result<Option<Vec<bool>>> {
        if !self.has(names::TABLE_MACHINE_ENERGY_1M) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT CAST(minute AS BIGINT) AS m, \
             sum(CASE WHEN source = 'estimate' OR quality < {MEASURED_COVERAGE} THEN 1 ELSE 0 END) AS weak \
             FROM {} WHERE site = {} AND {} GROUP BY minute",
            names::TABLE_MACHINE_ENERGY_1M,
            SITE,
            self.within("minute")
        );
        let mut out = vec![false; minutes as usize];
        for batch in self.query(&sql).await? {
            for (m, weak) in i64s(&batch, "m")?.into_iter().zip(i64s(&batch, "weak")?) {
                let (Some(m), Some(weak)) = (m, weak) else {
                    continue;
                };
                if let Some(slot) = self.slot(&mut out, m, 1) {
                    *slot = weak > 0;
                }
            }
        }
        Ok(Some(out))
    }

    /// Energy by pool, from each machine's minutes.
    async fn pools(&self, machines: &[Machine]) -> Result<Vec<PoolEnergy>> {
        if !self.has(names::TABLE_MACHINE_ENERGY_1M) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT machine, energy_wh FROM {} WHERE site = {} AND {} ORDER BY machine, minute",
            names::TABLE_MACHINE_ENERGY_1M,
            SITE,
            self.within("minute")
        );
        let pool_of: BTreeMap<&str, &str> = machines
            .iter()
            .filter(|m| m.site == self.site)
            .map(|m| (m.id.as_str(), m.pool.as_deref().unwrap_or("unassigned")))
            .collect();
        let mut by_pool: BTreeMap<String, (BTreeSet<String>, f64)> = BTreeMap::new();
        for batch in self.query(&sql).await? {
            for (machine, wh) in strings(&batch, "machine")?
                .into_iter()
                .zip(f64s(&batch, "energy_wh")?)
            {
                let (Some(machine), Some(wh)) = (machine, wh) else {
                    continue;
                };
                let pool = pool_of
                    .get(machine.as_str())
                    .copied()
                    .unwrap_or("unassigned");
                let entry = by_pool.entry(pool.to_string()).or_default();
                entry.0.insert(machine);
                entry.1 += wh;
            }
        }
        Ok(by_pool
            .into_iter()
            .map(|(pool, (machines, wh))| PoolEnergy {
                pool,
                machines: machines.len() as i64,
                energy_kwh: round(wh / 1000.0, 3),
            })
            .collect())
    }

    /// Inspections during the day of the site, or of a pool its machines mine at.
    async fn inspections(&self, machines: &[Machine]) -> Result<Vec<Inspection>> {
        if !self.has(names::TABLE_INSPECTIONS) {
            return Ok(Vec::new());
        }
        let pools: BTreeSet<&str> = machines
            .iter()
            .filter(|m| m.site == self.site)
            .filter_map(|m| m.pool.as_deref())
            .collect();
        // Pool ids are registry tokens (letters, digits, _ and -): safe as SQL literals.
        let pool_list = pools
            .iter()
            .filter(|p| adit_schemas::names::is_token(p))
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>();
        let of_pools = if pool_list.is_empty() {
            String::new()
        } else {
            format!(
                " OR (scope = 'pool' AND target IN ({}))",
                pool_list.join(", ")
            )
        };
        let sql = format!(
            "SELECT id, scope, target, inspector, CAST(inspected_at AS BIGINT) AS at_us, outcome, \
               findings, recorded_by, CAST(ts AS BIGINT) AS ts_us FROM {} \
             WHERE ((scope = 'site' AND target = {SITE}){of_pools}) AND {} \
             ORDER BY inspected_at, id",
            names::TABLE_INSPECTIONS,
            self.within("inspected_at")
        );
        let mut out = Vec::new();
        for batch in self.query(&sql).await? {
            let text = |name| strings(&batch, name);
            let (ids, scopes, targets) = (text("id")?, text("scope")?, text("target")?);
            let (inspectors, outcomes) = (text("inspector")?, text("outcome")?);
            let (findings, by) = (text("findings")?, text("recorded_by")?);
            let (at, recorded) = (i64s(&batch, "at_us")?, i64s(&batch, "ts_us")?);
            for i in 0..batch.num_rows() {
                let (Some(inspected_at), Some(ts)) =
                    (at[i].and_then(from_us), recorded[i].and_then(from_us))
                else {
                    continue;
                };
                let get = |v: &[Option<String>]| v[i].clone().unwrap_or_default();
                out.push(Inspection {
                    id: get(&ids),
                    scope: get(&scopes),
                    target: get(&targets),
                    inspector: get(&inspectors),
                    inspected_at,
                    outcome: get(&outcomes),
                    findings: get(&findings),
                    recorded_by: get(&by),
                    ts,
                });
            }
        }
        Ok(out)
    }

    /// Highest temperature per bucket.
    async fn temperatures(&self, minutes: i64) -> Result<Vec<Option<f64>>> {
        let buckets = (minutes + TEMP_BUCKET_MIN - 1) / TEMP_BUCKET_MIN;
        let mut out = vec![None; buckets as usize];
        if !self.has(names::TABLE_SENSOR_READINGS) {
            return Ok(out);
        }
        let sql = format!(
            "SELECT CAST(ts AS BIGINT) AS t, value FROM {} WHERE site = {} AND kind = 'temperature' AND {}",
            names::TABLE_SENSOR_READINGS,
            SITE,
            self.within("ts")
        );
        for batch in self.query(&sql).await? {
            for (t, v) in i64s(&batch, "t")?.into_iter().zip(f64s(&batch, "value")?) {
                let (Some(t), Some(v)) = (t, v) else { continue };
                if let Some(slot) = self.slot(&mut out, t, TEMP_BUCKET_MIN) {
                    *slot = Some(slot.map_or(round(v, 2), |old: f64| old.max(round(v, 2))));
                }
            }
        }
        Ok(out)
    }

    /// Violations open at any time during the day.
    async fn violations(&self) -> Result<Option<ViolationsSection>> {
        if !self.has(names::TABLE_VIOLATIONS) {
            return Ok(None);
        }
        // Rows from the last VIOLATION_LOOKBACK_DAYS only (partition pruning): a violation
        // open longer than that without a row is not seen.
        let sql = format!(
            "SELECT id, event, scope, subject, kind, severity, peak, \"limit\" AS lim, \
             CAST(started AS BIGINT) AS started_us, CAST(ts AS BIGINT) AS ts_us, duration_s FROM {} \
             WHERE site = {} AND started < to_timestamp_micros({}) AND date >= DATE '{}' ORDER BY id, ts",
            names::TABLE_VIOLATIONS,
            SITE,
            self.end.timestamp_micros(),
            (self.start - Duration::days(VIOLATION_LOOKBACK_DAYS)).date_naive()
        );
        let mut rows = Vec::new();
        for batch in self.query(&sql).await? {
            let cols = (
                strings(&batch, "id")?,
                strings(&batch, "event")?,
                strings(&batch, "scope")?,
                strings(&batch, "subject")?,
                strings(&batch, "kind")?,
                strings(&batch, "severity")?,
                f64s(&batch, "peak")?,
                f64s(&batch, "lim")?,
                i64s(&batch, "started_us")?,
                f64s(&batch, "duration_s")?,
                i64s(&batch, "ts_us")?,
            );
            for i in 0..batch.num_rows() {
                rows.push(ViolationRowIn {
                    id: cols.0[i].clone().unwrap_or_default(),
                    event: cols.1[i].clone().unwrap_or_default(),
                    subject: format!(
                        "{} {}",
                        cols.2[i].clone().unwrap_or_default(),
                        cols.3[i].clone().unwrap_or_default()
                    ),
                    kind: cols.4[i].clone().unwrap_or_default(),
                    severity: cols.5[i].clone().unwrap_or_default(),
                    peak: cols.6[i],
                    limit: cols.7[i],
                    started_us: cols.8[i].unwrap_or_default(),
                    duration_s: cols.9[i].unwrap_or_default(),
                    ts_us: cols.10[i].unwrap_or_default(),
                });
            }
        }
        Ok(Some(violations(&rows, self.start, self.end)))
    }

    /// When each command was sent during the day.
    async fn command_times(&self, until: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>> {
        if !self.has(names::TABLE_COMMANDS) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT CAST(ts AS BIGINT) AS t FROM {} WHERE site = {} AND status IN ('sent', 'dry_run') AND {} ORDER BY ts",
            names::TABLE_COMMANDS,
            SITE,
            self.since_start_until("ts", until)
        );
        let mut out = Vec::new();
        for batch in self.query(&sql).await? {
            out.extend(i64s(&batch, "t")?.into_iter().flatten().filter_map(from_us));
        }
        Ok(out)
    }

    /// The day's grid signals, the day before's (for an event still running at midnight) and
    /// the day after's (for the end of one of the day's events).
    async fn grid_signals(&self) -> Result<Option<Vec<Signal>>> {
        if !self.has(names::TABLE_GRID_SIGNALS) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT event_id, kind, target_kw, CAST(deadline AS BIGINT) AS deadline_us, \
             CAST(ts AS BIGINT) AS ts_us FROM {} WHERE site = {} AND kind IN ('curtail', 'normal') \
             AND ts >= to_timestamp_micros({}) AND ts < to_timestamp_micros({}) ORDER BY ts, event_id",
            names::TABLE_GRID_SIGNALS,
            SITE,
            (self.start - Duration::days(1)).timestamp_micros(),
            (self.end + LOOKAHEAD).timestamp_micros()
        );
        let mut out = Vec::new();
        for batch in self.query(&sql).await? {
            let (ids, kinds, targets, deadlines, ts) = (
                strings(&batch, "event_id")?,
                strings(&batch, "kind")?,
                f64s(&batch, "target_kw")?,
                i64s(&batch, "deadline_us")?,
                i64s(&batch, "ts_us")?,
            );
            for i in 0..batch.num_rows() {
                let Some(at) = ts[i].and_then(from_us) else {
                    continue;
                };
                out.push(Signal {
                    event_id: ids[i].clone().unwrap_or_default(),
                    curtail: kinds[i].as_deref() == Some("curtail"),
                    target_kw: targets[i],
                    deadline: deadlines[i].and_then(from_us),
                    at,
                });
            }
        }
        Ok(Some(out))
    }
}

/// A violations row as read.
#[derive(Debug, Clone)]
struct ViolationRowIn {
    id: String,
    event: String,
    subject: String,
    kind: String,
    severity: String,
    peak: Option<f64>,
    limit: Option<f64>,
    started_us: i64,
    duration_s: f64,
    ts_us: i64,
}

/// A grid signal as read.
#[derive(Debug, Clone)]
struct Signal {
    event_id: String,
    curtail: bool,
    target_kw: Option<f64>,
    deadline: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
}

fn from_us(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

/// Severities from least to worst.
const SEVERITIES: [&str; 4] = ["warning", "critical", "violation", "emergency"];

fn rank(severity: &str) -> usize {
    SEVERITIES.iter().position(|s| *s == severity).unwrap_or(0)
}

/// Folds a violation's rows (in time order) into one item per violation, clipped to the day.
fn violations(
    rows: &[ViolationRowIn],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> ViolationsSection {
    let mut by_id: BTreeMap<&str, Vec<&ViolationRowIn>> = BTreeMap::new();
    for r in rows {
        by_id.entry(r.id.as_str()).or_default().push(r);
    }
    let mut list = Vec::new();
    for (id, rows) in by_id {
        let first = rows[0];
        let Some(started) = from_us(first.started_us) else {
            continue;
        };
        // What the day saw: rows after its end do not raise its severity or peak.
        let in_day: Vec<&ViolationRowIn> = rows
            .iter()
            .copied()
            .filter(|r| r.ts_us < end.timestamp_micros())
            .collect();
        let worst = in_day
            .iter()
            .map(|r| r.severity.as_str())
            .max_by_key(|s| rank(s))
            .unwrap_or("warning");
        let ended = rows
            .iter()
            .find(|r| r.event == "resolved")
            .map(|r| started + Duration::milliseconds((r.duration_s * 1000.0) as i64));
        let (from, to) = (started.max(start), ended.unwrap_or(end).min(end));
        if to <= from {
            continue;
        }
        let peak = in_day.iter().filter_map(|r| r.peak).reduce(f64::max);
        list.push(ViolationItem {
            id: id.to_string(),
            kind: first.kind.clone(),
            severity: worst.to_string(),
            subject: first.subject.clone(),
            started,
            ended: ended.filter(|e| *e <= end),
            duration_s: (to - from).num_seconds().max(0),
            peak: peak.map(|p| round(p, 3)),
            limit: in_day
                .iter()
                .rev()
                .find_map(|r| r.limit)
                .map(|l| round(l, 3)),
        });
    }
    let mut groups: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for v in &list {
        let g = groups
            .entry((v.kind.clone(), v.severity.clone()))
            .or_default();
        g.0 += 1;
        g.1 += v.duration_s;
    }
    ViolationsSection {
        by_kind: groups
            .into_iter()
            .map(|((kind, severity), (count, duration_s))| ViolationGroup {
                kind,
                severity,
                count,
                duration_s,
            })
            .collect(),
        list,
    }
}

/// Energy, peak and minutes over each threshold, from the per-minute mean power (W).
fn energy_section(
    limits: &Limits,
    start: DateTime<Utc>,
    minutes: i64,
    power_w: &[Option<f64>],
) -> EnergySection {
    let alloc_w = limits.allocation_kw * 1000.0;
    let over = |pct: f64| {
        power_w
            .iter()
            .flatten()
            .filter(|w| **w > alloc_w * pct / 100.0)
            .count() as i64
    };
    let energy_wh: f64 = power_w.iter().flatten().map(|w| w / 60.0).sum();
    let peak = power_w
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.map(|w| (i, w)))
        .fold(None, |best: Option<(usize, f64)>, (i, w)| match best {
            Some((_, b)) if b >= w => best,
            _ => Some((i, w)),
        });
    let allocation_kwh = limits.allocation_kw * minutes as f64 / 60.0;
    let energy_kwh = energy_wh / 1000.0;
    EnergySection {
        energy_kwh: round(energy_kwh, 3),
        allocation_kwh: round(allocation_kwh, 3),
        used_pct: if allocation_kwh > 0.0 {
            round(100.0 * energy_kwh / allocation_kwh, 2)
        } else {
            0.0
        },
        peak_kw: peak.map(|(_, w)| round(w / 1000.0, 3)),
        peak_at: peak.map(|(i, _)| start + Duration::minutes(i as i64)),
        minutes_over_warning: over(limits.warning_pct),
        minutes_over_critical: over(limits.critical_pct),
        minutes_over_allocation: over(100.0),
    }
}

/// Measured, estimated and missing minutes, and the runs of missing ones.
fn quality(
    start: DateTime<Utc>,
    power_w: Option<&[Option<f64>]>,
    weak: Option<&[bool]>,
    minutes: i64,
) -> Quality {
    let present = |i: usize| power_w.and_then(|p| p.get(i).copied().flatten()).is_some();
    let (mut measured, mut estimated) = (0, 0);
    let mut gaps = Vec::new();
    let mut gap_from: Option<usize> = None;
    for i in 0..minutes as usize {
        if present(i) {
            if weak.and_then(|w| w.get(i).copied()).unwrap_or(false) {
                estimated += 1;
            } else {
                measured += 1;
            }
            if let Some(from) = gap_from.take() {
                gaps.push((from, i));
            }
        } else if gap_from.is_none() {
            gap_from = Some(i);
        }
    }
    if let Some(from) = gap_from {
        gaps.push((from, minutes as usize));
    }
    let missing = minutes - measured - estimated;
    let share = |n: i64| round(n as f64 / minutes.max(1) as f64, 4);
    Quality {
        minutes,
        measured,
        estimated,
        missing,
        measured_share: share(measured),
        estimated_share: share(estimated),
        missing_share: share(missing),
        gaps: gaps
            .into_iter()
            .map(|(a, b)| {
                (
                    start + Duration::minutes(a as i64),
                    start + Duration::minutes(b as i64),
                )
            })
            .collect(),
    }
}

/// How many minutes before the signal the baseline is the mean of.
const BASELINE_MINUTES: i64 = 10;
/// The baseline, as the report states it.
pub const BASELINE_METHOD: &str = "mean of the measured minutes among the 10 whole minutes \
before the signal (the site's load as it was asked to curtail)";
/// Most minutes of one event listed as evidence.
const MAX_EVENT_MINUTES: i64 = 24 * 60;

/// Each curtail signal of the day and how the site answered it, followed past the day's end
/// to its deadline and its end (`power_w`: each minute from `start`, as far as it goes).
fn curtailments(
    signals: &[Signal],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    power_w: Option<&[Option<f64>]>,
    commands: &[DateTime<Utc>],
) -> Vec<Curtailment> {
    let minute_at = |t: DateTime<Utc>| (t - start).num_minutes();
    let power = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| power_w.and_then(|p| p.get(i).copied().flatten()))
    };
    let mut out = Vec::new();
    for (k, s) in days_events(signals, start, end) {
        let (Some(target_kw), Some(deadline)) = (s.target_kw, s.deadline) else {
            continue;
        };
        let ended_at = event_end(signals, k, end);
        let (first, last) = (minute_at(s.at), minute_at(ended_at));
        let lowest = (first..last.max(first + 1))
            .filter_map(power)
            .reduce(f64::min);
        let load_before = power(first - 1);
        let reached = (first..last.max(first + 1))
            .find(|i| power(*i).is_some_and(|w| w <= target_kw * 1000.0))
            .map(|i| start + Duration::minutes(i + 1));
        let before: Vec<f64> = (first - BASELINE_MINUTES..first)
            .filter_map(power)
            .collect();
        let baseline_w =
            (!before.is_empty()).then(|| before.iter().sum::<f64>() / before.len() as f64);
        let intervals = (first..last.max(first + 1).min(first + MAX_EVENT_MINUTES))
            .map(|i| {
                let load = power(i);
                EventInterval {
                    start: start + Duration::minutes(i),
                    load_kw: load.map(|w| round(w / 1000.0, 3)),
                    reduction_kw: baseline_w
                        .zip(load)
                        .map(|(b, l)| round((b - l) / 1000.0, 3)),
                    at_target: load.map(|w| w <= target_kw * 1000.0),
                }
            })
            .collect();
        out.push(Curtailment {
            event_id: s.event_id.clone(),
            signal_at: s.at,
            target_kw: round(target_kw, 3),
            deadline,
            ended_at,
            load_before_kw: load_before.map(|w| round(w / 1000.0, 3)),
            lowest_kw: lowest.map(|w| round(w / 1000.0, 3)),
            reduction_kw: load_before
                .zip(lowest)
                .map(|(b, l)| round((b - l) / 1000.0, 3)),
            commands_sent: commands
                .iter()
                .filter(|t| **t >= s.at && **t < ended_at)
                .count() as i64,
            target_reached_at: reached,
            time_to_target_s: reached.map(|r| (r - s.at).num_seconds()),
            met: reached.is_some_and(|r| r <= deadline),
            baseline_kw: baseline_w.map(|w| round(w / 1000.0, 3)),
            baseline_method: BASELINE_METHOD.into(),
            intervals,
        });
    }
    out
}

/// The curtailment events signalled within `[start, end)`: each event's first signal and its
/// index in `signals` (sorted by time).
fn days_events(
    signals: &[Signal],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> impl Iterator<Item = (usize, &Signal)> {
    let mut seen = BTreeSet::new();
    signals.iter().enumerate().filter(move |(_, s)| {
        s.curtail && s.at >= start && s.at < end && seen.insert(s.event_id.as_str())
    })
}

/// When the event whose first signal is `signals[k]` ended: at the next signal that is not
/// its own, when one came within the look-ahead; otherwise, as far as the report follows it,
/// the day's end or its deadline, whichever is later.
fn event_end(signals: &[Signal], k: usize, end: DateTime<Utc>) -> DateTime<Utc> {
    let s = &signals[k];
    let followed = s.deadline.map_or(end, |d| d.max(end)).min(end + LOOKAHEAD);
    signals[k + 1..]
        .iter()
        .find(|n| !n.curtail || n.event_id != s.event_id)
        .map_or(followed, |n| n.at.min(end + LOOKAHEAD))
}

/// Until when the day's curtailments are followed: the latest end of the events signalled
/// during the day (at least the day's end).
fn judged_until(signals: &[Signal], start: DateTime<Utc>, end: DateTime<Utc>) -> DateTime<Utc> {
    days_events(signals, start, end)
        .map(|(k, _)| event_end(signals, k, end))
        .fold(end, DateTime::max)
}

/// The score formula, as the report states it.
pub const SCORE_FORMULA: &str = "score = allocation + curtailment + data − penalty, from 0 to 100, where \
allocation = 50 × (1 − minutes over the allocation ÷ minutes with a figure) (0 with no figures); \
curtailment = 30 × events whose target was reached by the deadline ÷ events (30 with no events); \
data = 20 × (measured minutes + ½ × estimated minutes) ÷ minutes in the day; \
penalty = 2 per violation of critical severity or worse open during the day, at most 20.";

fn score(
    energy: Option<&EnergySection>,
    curtailments: Option<&[Curtailment]>,
    quality: &Quality,
    violations: Option<&ViolationsSection>,
) -> Score {
    let with_figure = quality.measured + quality.estimated;
    let allocation = match energy {
        Some(e) if with_figure > 0 => {
            50.0 * (1.0 - e.minutes_over_allocation as f64 / with_figure as f64)
        }
        _ => 0.0,
    };
    let curtailment = match curtailments {
        Some(c) if !c.is_empty() => {
            30.0 * c.iter().filter(|c| c.met).count() as f64 / c.len() as f64
        }
        _ => 30.0,
    };
    let data = 20.0 * (quality.measured as f64 + 0.5 * quality.estimated as f64)
        / quality.minutes.max(1) as f64;
    let serious = violations.map_or(0, |v| {
        v.list
            .iter()
            .filter(|v| rank(&v.severity) >= rank("critical"))
            .count()
    });
    let penalty = (2.0 * serious as f64).min(20.0);
    Score {
        value: round(
            (allocation + curtailment + data - penalty).clamp(0.0, 100.0),
            1,
        ),
        allocation: round(allocation, 2),
        curtailment: round(curtailment, 2),
        data: round(data, 2),
        penalty: round(penalty, 2),
        formula: SCORE_FORMULA.to_string(),
    }
}

/// Column `name` cast to `to`.
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<arrow::array::ArrayRef> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Encode(format!("no column {name}")))?;
    cast(col, to).map_err(|e| Error::Encode(format!("column {name}: {e}")))
}

fn i64s(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let a = column(batch, name, &DataType::Int64)?;
    Ok(a.as_primitive::<Int64Type>().iter().collect())
}

fn f64s(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let a = column(batch, name, &DataType::Float64)?;
    Ok(a.as_primitive::<Float64Type>().iter().collect())
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = column(batch, name, &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect())
}

#[cfg(test)]
mod tests;
