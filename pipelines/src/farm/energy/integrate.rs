//! The gap rule: one machine's power readings integrated into energy per minute, and machine
//! minutes summed into site minutes. Pure functions of the readings; the pipeline
//! ([`super::Energy`]) decides which readings and which minutes.

use std::collections::BTreeMap;

use adit_schemas::results::{MachineEnergyMinute, SiteEnergyMinute};
use chrono::{DateTime, TimeZone, Utc};

/// A minute, µs.
pub(crate) const MINUTE_US: i64 = 60_000_000;

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
