//! Energy per machine and per site per minute, integrated from the landed power readings.
//!
//! **Gap rule**: between two consecutive readings of one machine, energy is the integral of
//! power interpolated linearly between them, or the difference of the kWh counters when both
//! readings carry one and it did not go backwards. An interval longer than `max_gap` is a gap:
//! it contributes no energy, nothing is interpolated across it, and the minutes it spans show
//! it as lower `quality` (`covered_s / 60`).
//!
//! The pipeline is driven by the `energy_readings` table, not by a consumer: a minute is
//! computed once the newest reading is `max_gap + grace` past its end, and its position is the
//! last computed minute (epoch minutes), committed with the rows as the Delta application
//! transaction. Readings arriving later than that are not counted (they stay in
//! `energy_readings`).

use std::collections::BTreeMap;
use std::time::Duration;

use adit_schemas::names::energy_result_subject;
use adit_schemas::names::{TABLE_ENERGY_READINGS, TABLE_MACHINE_ENERGY_1M, TABLE_SITE_ENERGY_1M};
use adit_schemas::results::{MachineEnergyMinute, SiteEnergyMinute};
use adit_schemas::to_batch;
use adit_sinks::{ExactlyOnceTable, ResultPublisher};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, TimeZone, Utc};
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::runtime::PipelineContext;

const MINUTE_US: i64 = 60_000_000;
const APP_ID: &str = "energy";

/// Energy pipeline settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyConfig {
    /// Longest interval between two readings that still counts (the gap rule).
    #[serde(with = "humantime_serde")]
    pub max_gap: Duration,
    /// Extra wait for late readings before a minute is computed.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How often to look for newly complete minutes.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Most minutes computed in one commit.
    pub max_minutes_per_commit: i64,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        Self {
            max_gap: Duration::from_secs(120),
            grace: Duration::from_secs(5),
            tick: Duration::from_secs(5),
            max_minutes_per_commit: 60,
        }
    }
}

/// One power reading of one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Time, µs since the epoch.
    pub ts_us: i64,
    /// Power, W.
    pub power_w: f64,
    /// Cumulative counter, Wh, if the device has one.
    pub energy_wh: Option<f64>,
    /// Device kind.
    pub source: String,
}

/// Per-minute accumulator.
#[derive(Debug, Default, Clone)]
struct Acc {
    energy_wh: f64,
    covered_us: i64,
    samples: i64,
    max_power_w: f64,
    counter_us: i64,
    power_us: i64,
    source: String,
}

fn power_at(a: &Reading, b: &Reading, t: i64) -> f64 {
    let dt = (b.ts_us - a.ts_us) as f64;
    a.power_w + (b.power_w - a.power_w) * (t - a.ts_us) as f64 / dt
}

/// Integrates one machine's `readings` (sorted by time) into minutes in `[from_us, to_us)`
/// under the gap rule. `from_us` and `to_us` are whole minutes.
pub fn integrate(
    site: &str,
    machine: &str,
    readings: &[Reading],
    from_us: i64,
    to_us: i64,
    max_gap_us: i64,
) -> Vec<MachineEnergyMinute> {
    let mut minutes: BTreeMap<i64, Acc> = BTreeMap::new();
    for r in readings {
        if r.ts_us >= from_us && r.ts_us < to_us {
            let acc = minutes
                .entry(r.ts_us.div_euclid(MINUTE_US) * MINUTE_US)
                .or_default();
            acc.samples += 1;
            acc.max_power_w = acc.max_power_w.max(r.power_w);
            acc.source.clone_from(&r.source);
        }
    }
    for pair in readings.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let dt = b.ts_us - a.ts_us;
        if dt <= 0 || dt > max_gap_us {
            continue;
        }
        let counter = match (a.energy_wh, b.energy_wh) {
            (Some(ea), Some(eb)) if eb >= ea => Some(eb - ea),
            _ => None,
        };
        let mut t0 = a.ts_us.max(from_us);
        let end = b.ts_us.min(to_us);
        while t0 < end {
            let minute = t0.div_euclid(MINUTE_US) * MINUTE_US;
            let t1 = end.min(minute + MINUTE_US);
            let span = t1 - t0;
            let wh = match counter {
                Some(total) => total * span as f64 / dt as f64,
                None => (power_at(a, b, t0) + power_at(a, b, t1)) / 2.0 * span as f64 / 3.6e9,
            };
            let acc = minutes.entry(minute).or_default();
            acc.energy_wh += wh;
            acc.covered_us += span;
            if counter.is_some() {
                acc.counter_us += span;
            } else {
                acc.power_us += span;
            }
            if acc.source.is_empty() {
                acc.source.clone_from(&a.source);
            }
            t0 = t1;
        }
    }
    minutes
        .into_iter()
        .map(|(minute, acc)| {
            let covered_s = acc.covered_us as f64 / 1e6;
            let method = match (acc.counter_us > 0, acc.power_us > 0) {
                (true, false) => "counter",
                (false, true) => "power",
                (true, true) => "mixed",
                (false, false) => "none",
            };
            let ts = Utc.timestamp_micros(minute).single().unwrap_or_default();
            MachineEnergyMinute {
                site: site.to_string(),
                machine: machine.to_string(),
                minute: ts,
                energy_wh: acc.energy_wh,
                avg_power_w: if covered_s > 0.0 {
                    acc.energy_wh * 3600.0 / covered_s
                } else {
                    0.0
                },
                max_power_w: acc.max_power_w,
                samples: acc.samples,
                covered_s,
                quality: (covered_s / 60.0).min(1.0),
                method: method.to_string(),
                source: acc.source,
                date: ts.date_naive(),
            }
        })
        .collect()
}

/// Sums machine minutes into site minutes.
pub fn site_minutes(machines: &[MachineEnergyMinute]) -> Vec<SiteEnergyMinute> {
    let mut by: BTreeMap<(String, DateTime<Utc>), (f64, i64, f64)> = BTreeMap::new();
    for m in machines {
        let e = by.entry((m.site.clone(), m.minute)).or_default();
        e.0 += m.energy_wh;
        e.1 += 1;
        e.2 += m.quality;
    }
    by.into_iter()
        .map(|((site, minute), (wh, n, q))| SiteEnergyMinute {
            site,
            minute,
            energy_wh: wh,
            avg_power_w: wh * 60.0,
            machines: n,
            quality: q / n as f64,
            date: minute.date_naive(),
        })
        .collect()
}

fn query_err(source: datafusion::error::DataFusionError) -> Error {
    Error::Query {
        pipeline: APP_ID.into(),
        source: Box::new(source),
    }
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    let col = batch
        .column_by_name(name)
        .cloned()
        .unwrap_or_else(|| arrow::array::new_null_array(&DataType::Utf8, batch.num_rows()));
    let col = cast(&col, &DataType::Utf8).map_err(|e| query_err(e.into()))?;
    let col = col.as_string::<i32>();
    Ok((0..col.len()).map(|i| col.value(i).to_string()).collect())
}

/// Runs `sql` and collects its batches.
async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql)
        .await
        .map_err(query_err)?
        .collect()
        .await
        .map_err(query_err)
}

/// Reads readings in `[from_us, to_us)` grouped by (site, machine), sorted by time.
async fn load_readings(
    ctx: &SessionContext,
    from_us: i64,
    to_us: i64,
) -> Result<BTreeMap<(String, String), Vec<Reading>>> {
    let day = |us: i64| {
        Utc.timestamp_micros(us)
            .single()
            .unwrap_or_default()
            .date_naive()
    };
    let (from_day, to_day) = (day(from_us), day(to_us));
    let sql = format!(
        "SELECT site, machine, ts, power_w, energy_wh, source FROM {TABLE_ENERGY_READINGS} \
         WHERE date BETWEEN DATE '{from_day}' AND DATE '{to_day}' \
         AND ts >= to_timestamp_micros({from_us}) AND ts < to_timestamp_micros({to_us}) \
         ORDER BY site, machine, ts"
    );
    let batches = collect(ctx, &sql).await?;
    let mut out: BTreeMap<(String, String), Vec<Reading>> = BTreeMap::new();
    for batch in &batches {
        let (sites, machines, sources) = (
            strings(batch, "site")?,
            strings(batch, "machine")?,
            strings(batch, "source")?,
        );
        let ts = cast(
            batch.column(2),
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        )
        .map_err(|e| query_err(e.into()))?;
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        let power = batch.column(3).as_primitive::<Float64Type>();
        let counter = batch.column(4).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            out.entry((sites[i].clone(), machines[i].clone()))
                .or_default()
                .push(Reading {
                    ts_us: ts.value(i),
                    power_w: power.value(i),
                    energy_wh: counter.is_valid(i).then(|| counter.value(i)),
                    source: sources[i].clone(),
                });
        }
    }
    Ok(out)
}

/// (earliest, latest) reading time in µs, if there are readings.
/// Only readings on or after `since_us` (µs) are looked at; the date partition prunes the rest,
/// so the cost does not grow with the table's history.
async fn reading_span(ctx: &SessionContext, since_us: i64) -> Result<Option<(i64, i64)>> {
    let since_day = Utc
        .timestamp_micros(since_us)
        .single()
        .unwrap_or_default()
        .date_naive();
    let sql = format!(
        "SELECT CAST(min(ts) AS BIGINT) AS lo, CAST(max(ts) AS BIGINT) AS hi \
         FROM {TABLE_ENERGY_READINGS} \
         WHERE date >= DATE '{since_day}' AND ts >= to_timestamp_micros({since_us})"
    );
    let batches = collect(ctx, &sql).await?;
    let Some(batch) = batches.first().filter(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let lo = batch.column(0).as_primitive::<Int64Type>();
    let hi = batch.column(1).as_primitive::<Int64Type>();
    Ok((lo.is_valid(0) && hi.is_valid(0)).then(|| (lo.value(0), hi.value(0))))
}

/// Publishes committed site minutes to `results.energy.<site>` for live subscribers, retrying
/// until stored (ids `energy:<site>:<minute>` make retries safe). The table stays the record: a
/// crash between the commit and this publish leaves those minutes in the table only.
async fn publish_sites(
    results: &ResultPublisher,
    sites: &[SiteEnergyMinute],
    shutdown: &CancellationToken,
) {
    let rows: Vec<(String, String, &SiteEnergyMinute)> = sites
        .iter()
        .map(|s| {
            let id = format!("energy:{}:{}", s.site, s.minute.timestamp_micros());
            (energy_result_subject(&s.site), id, s)
        })
        .collect();
    while let Err(e) = results.publish(&rows).await {
        tracing::warn!(error = %e, "cannot publish energy results; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Runs the energy pipeline until `shutdown`.
pub async fn run_energy(ctx: &PipelineContext, shutdown: CancellationToken) -> Result<()> {
    let results = ResultPublisher::new(ctx.js.clone());
    let cfg = &ctx.config.energy;
    let maintenance = ctx.config.maintenance.clone();
    let mut machine_table = ExactlyOnceTable::open(
        &ctx.store,
        TABLE_MACHINE_ENERGY_1M,
        &MachineEnergyMinute::schema(),
        &["date"],
        APP_ID,
        maintenance.clone(),
    )
    .await?;
    let mut site_table = ExactlyOnceTable::open(
        &ctx.store,
        TABLE_SITE_ENERGY_1M,
        &SiteEnergyMinute::schema(),
        &["date"],
        APP_ID,
        maintenance,
    )
    .await?;
    let max_gap_us = cfg.max_gap.as_micros() as i64;
    let wait_us = max_gap_us + cfg.grace.as_micros() as i64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(cfg.tick) => {}
        }
        let df = SessionContext::new();
        if !ctx.store.register(&df, TABLE_ENERGY_READINGS).await? {
            continue;
        }
        let done = machine_table.committed().min(site_table.committed()) as i64;
        let since = if done > 0 {
            done * MINUTE_US - max_gap_us
        } else {
            0
        };
        let Some((lo, hi)) = reading_span(&df, since).await? else {
            continue;
        };
        let mut from = if done > 0 {
            done * MINUTE_US
        } else {
            lo.div_euclid(MINUTE_US) * MINUTE_US
        };
        let closed = (hi - wait_us).div_euclid(MINUTE_US) * MINUTE_US;
        while from < closed && !shutdown.is_cancelled() {
            let to = closed.min(from + cfg.max_minutes_per_commit * MINUTE_US);
            let readings = load_readings(&df, from - max_gap_us, to + max_gap_us).await?;
            let mut rows = Vec::new();
            for ((site, machine), rs) in &readings {
                rows.extend(integrate(site, machine, rs, from, to, max_gap_us));
            }
            let sites = site_minutes(&rows);
            let version = (to / MINUTE_US) as u64;
            let machine_batch =
                to_batch("machine_energy_1m", MachineEnergyMinute::schema(), &rows)?;
            let site_batch = to_batch("site_energy_1m", SiteEnergyMinute::schema(), &sites)?;
            machine_table.commit(vec![machine_batch], version).await?;
            site_table.commit(vec![site_batch], version).await?;
            publish_sites(&results, &sites, &shutdown).await;
            tracing::info!(machines = rows.len(), sites = sites.len(), up_to = %Utc.timestamp_micros(to).single().unwrap_or_default(), "energy minutes committed");
            from = to;
        }
        machine_table.maintain_if_due().await?;
        site_table.maintain_if_due().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: i64, p: f64, e: Option<f64>) -> Reading {
        Reading {
            ts_us: s * 1_000_000,
            power_w: p,
            energy_wh: e,
            source: "meter".into(),
        }
    }

    #[test]
    fn constant_power_for_a_minute_is_power_over_sixty() {
        let rs: Vec<_> = (0..=6).map(|i| r(i * 10, 3600.0, None)).collect();
        let m = integrate("s", "m", &rs, 0, MINUTE_US, 120_000_000);
        assert_eq!(m.len(), 1);
        assert!((m[0].energy_wh - 60.0).abs() < 1e-9, "{}", m[0].energy_wh);
        assert_eq!(m[0].quality, 1.0);
        assert_eq!(m[0].method, "power");
        assert_eq!(m[0].samples, 6);
    }

    #[test]
    fn an_interval_across_a_minute_boundary_is_split_linearly() {
        // 0 W at 50 s rising to 1200 W at 70 s: 10 s at mean 300 W, then 10 s at mean 900 W.
        let rs = vec![r(50, 0.0, None), r(70, 1200.0, None)];
        let m = integrate("s", "m", &rs, 0, 2 * MINUTE_US, 120_000_000);
        assert_eq!(m.len(), 2);
        assert!((m[0].energy_wh - 300.0 * 10.0 / 3600.0).abs() < 1e-9);
        assert!((m[1].energy_wh - 900.0 * 10.0 / 3600.0).abs() < 1e-9);
    }

    #[test]
    fn gaps_count_nothing_and_lower_quality() {
        let rs = vec![
            r(0, 1000.0, None),
            r(30, 1000.0, None),
            r(300, 1000.0, None),
        ];
        let m = integrate("s", "m", &rs, 0, 6 * MINUTE_US, 120_000_000);
        assert_eq!(m[0].covered_s, 30.0);
        assert!((m[0].quality - 0.5).abs() < 1e-9);
        assert!((m[0].energy_wh - 1000.0 * 30.0 / 3600.0).abs() < 1e-9);
        let total: f64 = m.iter().map(|x| x.energy_wh).sum();
        assert!((total - m[0].energy_wh).abs() < 1e-9);
    }

    #[test]
    fn counters_are_differenced_and_resets_fall_back_to_power() {
        let rs = vec![
            r(0, 3600.0, Some(100.0)),
            r(60, 3600.0, Some(150.0)),
            r(120, 3600.0, Some(10.0)),
        ];
        let m = integrate("s", "m", &rs, 0, 2 * MINUTE_US, 120_000_000);
        assert!((m[0].energy_wh - 50.0).abs() < 1e-9);
        assert_eq!(m[0].method, "counter");
        assert!((m[1].energy_wh - 60.0).abs() < 1e-9);
        assert_eq!(m[1].method, "power");
    }

    #[test]
    fn sites_sum_their_machines() {
        let rs: Vec<_> = (0..=6).map(|i| r(i * 10, 3600.0, None)).collect();
        let mut rows = integrate("s", "a", &rs, 0, MINUTE_US, 120_000_000);
        rows.extend(integrate("s", "b", &rs, 0, MINUTE_US, 120_000_000));
        let sites = site_minutes(&rows);
        assert_eq!(sites.len(), 1);
        assert!((sites[0].energy_wh - 120.0).abs() < 1e-9);
        assert!((sites[0].avg_power_w - 7200.0).abs() < 1e-9);
        assert_eq!(sites[0].machines, 2);
    }
}
