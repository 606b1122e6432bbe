//! Energy per settlement interval, hour and day, per machine, site and pool, summed from the
//! closed machine minutes of the energy pipeline (so a period is exactly the sum of its
//! minutes), with its quality, the sources it came from and its efficiency.
//!
//! - **Periods**: the site's settlement interval from the registry (default 15 min), UTC hours,
//!   and days in the site's time zone (pools: UTC days, 15-minute settlement).
//! - **When a period is final**: once every site that contributed to it has closed its
//!   minutes past the period's end.
//! - **Quality**: covered seconds over (period length × machines reporting), 1.0 for a complete
//!   period; `measured_share`: the part of the energy from a meter or PDU.
//! - **Efficiency**: J/TH = average power over the period / average reported hashrate (TH/s),
//!   from the miners' status reports of the same minutes.

use adit_schemas::time::from_micros;
use std::collections::{BTreeMap, BTreeSet};
use strum::IntoEnumIterator;

use adit_schemas::registry::RegistryView;
use adit_schemas::results::{EnergyPeriod, MachineEnergyMinute};
use chrono::{DateTime, TimeZone};
use serde::{Deserialize, Serialize};

const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 60 * MINUTE_US;

/// Which kind of period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[derive(Serialize, Deserialize, strum::EnumIter)]
pub enum PeriodKind {
    /// The utility's settlement interval.
    Settlement,
    /// An hour (UTC).
    Hour,
    /// A day (the site's local day; UTC for pools).
    Day,
}

impl PeriodKind {}

/// One period of one subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeriodKey {
    kind: PeriodKind,
    scope: String,
    site: String,
    subject: String,
    start_us: i64,
}

/// What a period has gathered so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodAcc {
    end_us: i64,
    energy_wh: f64,
    measured_wh: f64,
    covered_s: f64,
    /// Energy per minute (for the peak).
    minutes: BTreeMap<i64, f64>,
    /// Machines seen.
    machines: BTreeSet<String>,
    /// Sources seen.
    sources: BTreeSet<String>,
    /// TH·s of reported hashrate over the covered minutes.
    hash_ths_s: f64,
    /// Sites contributing.
    sites: BTreeSet<String>,
}

/// Every open period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Periods {
    #[serde(with = "crate::serde_pairs")]
    open: BTreeMap<PeriodKey, PeriodAcc>,
}

/// The bounds of the `kind` period holding `minute_us` for `site` (`None`: a pool's).
fn bounds(view: &RegistryView, kind: PeriodKind, site: Option<&str>, minute_us: i64) -> (i64, i64) {
    let limits = site.and_then(|s| view.site(s));
    match kind {
        PeriodKind::Settlement => {
            let len = i64::from(limits.map_or(15, |s| s.settlement_minutes)) * MINUTE_US;
            let start = minute_us.div_euclid(len) * len;
            (start, start + len)
        }
        PeriodKind::Hour => {
            let start = minute_us.div_euclid(HOUR_US) * HOUR_US;
            (start, start + HOUR_US)
        }
        PeriodKind::Day => {
            let tz: chrono_tz::Tz = limits
                .and_then(|s| s.timezone.parse().ok())
                .unwrap_or(chrono_tz::UTC);
            let at = DateTime::from_timestamp_micros(minute_us)
                .unwrap_or_default()
                .with_timezone(&tz);
            let midnight = |d: chrono::NaiveDate| {
                tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
                    .earliest()
                    .map_or(minute_us, |t| t.timestamp_micros())
            };
            let day = at.date_naive();
            let next = day.succ_opt().unwrap_or(day);
            (midnight(day), midnight(next))
        }
    }
}

/// The bounds of `site`'s settlement interval holding `t_us`.
pub(crate) fn settlement_bounds(view: &RegistryView, site: &str, t_us: i64) -> (i64, i64) {
    bounds(view, PeriodKind::Settlement, Some(site), t_us)
}

impl Periods {
    /// Adds closed machine minutes (with the machine's mean reported hashrate in each, H/s).
    pub fn add(&mut self, view: &RegistryView, rows: &[(MachineEnergyMinute, Option<f64>)]) {
        for (m, hashrate_hs) in rows {
            let minute_us = m.minute.timestamp_micros();
            let pool = view
                .machine(&m.site, &m.machine)
                .and_then(|r| r.pool.clone());
            let mut subjects = vec![
                ("machine", m.site.clone(), m.machine.clone()),
                ("site", m.site.clone(), m.site.clone()),
            ];
            if let Some(pool) = pool {
                subjects.push(("pool", String::new(), pool));
            }
            for (scope, site, subject) in subjects {
                for kind in PeriodKind::iter() {
                    let site_of = (scope != "pool").then_some(m.site.as_str());
                    let (start_us, end_us) = bounds(view, kind, site_of, minute_us);
                    let acc = self
                        .open
                        .entry(PeriodKey {
                            kind,
                            scope: scope.into(),
                            site: site.clone(),
                            subject: subject.clone(),
                            start_us,
                        })
                        .or_default();
                    acc.end_us = end_us;
                    acc.energy_wh += m.energy_wh;
                    if m.source == "meter" || m.source == "pdu" {
                        acc.measured_wh += m.energy_wh;
                    }
                    acc.covered_s += m.covered_s;
                    *acc.minutes.entry(minute_us).or_default() += m.energy_wh;
                    acc.machines.insert(format!("{}/{}", m.site, m.machine));
                    if !m.source.is_empty() {
                        acc.sources.insert(m.source.clone());
                    }
                    if let Some(hs) = hashrate_hs {
                        acc.hash_ths_s += hs / 1e12 * m.covered_s;
                    }
                    acc.sites.insert(m.site.clone());
                }
            }
        }
    }

    /// Takes out every period whose sites have all closed past its end (`closed`: site → the
    /// time before which its minutes are final), as rows of each kind.
    pub fn close(&mut self, closed: &BTreeMap<String, i64>) -> Vec<(PeriodKind, EnergyPeriod)> {
        let done: Vec<PeriodKey> = self
            .open
            .iter()
            .filter(|(_, acc)| {
                acc.sites
                    .iter()
                    .all(|s| closed.get(s).is_some_and(|c| *c >= acc.end_us))
            })
            .map(|(k, _)| k.clone())
            .collect();
        done.into_iter()
            .filter_map(|key| {
                let acc = self.open.remove(&key)?;
                Some((key.kind, row(&key, &acc)))
            })
            .collect()
    }
}

const SOURCE_ORDER: [&str; 4] = ["meter", "pdu", "firmware", "estimate"];

fn row(key: &PeriodKey, acc: &PeriodAcc) -> EnergyPeriod {
    let period_s = (acc.end_us - key.start_us) as f64 / 1e6;
    let avg_power_w = acc.energy_wh * 3600.0 / period_s;
    let covered_avg_w = if acc.covered_s > 0.0 {
        acc.energy_wh * 3600.0 / acc.covered_s * acc.machines.len() as f64
    } else {
        0.0
    };
    let hashrate_ths = (acc.covered_s > 0.0)
        .then(|| acc.hash_ths_s / acc.covered_s * acc.machines.len() as f64)
        .filter(|h| *h > 0.0);
    let sources: Vec<&str> = SOURCE_ORDER
        .iter()
        .copied()
        .filter(|s| acc.sources.contains(*s))
        .collect();
    let start = from_micros(key.start_us);
    EnergyPeriod {
        scope: key.scope.clone(),
        site: (key.scope != "pool").then(|| key.site.clone()),
        subject: key.subject.clone(),
        period_start: start,
        period_end: from_micros(acc.end_us),
        energy_wh: acc.energy_wh,
        avg_power_w,
        peak_power_w: acc.minutes.values().fold(0.0, |m, wh| m.max(wh * 60.0)),
        minutes: acc.minutes.len() as i64,
        machines: acc.machines.len() as i64,
        quality: (acc.covered_s / (period_s * acc.machines.len().max(1) as f64)).min(1.0),
        measured_share: if acc.energy_wh > 0.0 {
            acc.measured_wh / acc.energy_wh
        } else {
            0.0
        },
        sources: sources.join(","),
        hashrate_ths,
        efficiency_j_th: hashrate_ths.map(|h| covered_avg_w / h),
        // The middle's UTC date: a site's local day files under its own date.
        date: (start + (from_micros(acc.end_us) - start) / 2).date_naive(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::registry::{ChangeOp, Record, RegistryEntry, Site};
    use chrono::Utc;

    fn minute(
        site: &str,
        machine: &str,
        minute_us: i64,
        wh: f64,
        source: &str,
    ) -> MachineEnergyMinute {
        let t = DateTime::from_timestamp_micros(minute_us).unwrap();
        MachineEnergyMinute {
            site: site.into(),
            machine: machine.into(),
            minute: t,
            energy_wh: wh,
            avg_power_w: wh * 60.0,
            max_power_w: wh * 60.0,
            samples: 6,
            covered_s: 60.0,
            quality: 1.0,
            method: "power".into(),
            source: source.into(),
            date: t.date_naive(),
        }
    }

    #[test]
    fn periods_are_the_sums_of_their_minutes_and_close_when_their_site_has() {
        let mut view = RegistryView::default();
        let mut site = Site::new("s1", 100.0);
        site.timezone = "Europe/Oslo".into();
        site.settlement_minutes = 30;
        view.apply(&RegistryEntry {
            key: "site.s1".into(),
            op: ChangeOp::Put,
            by: "t".into(),
            at: Utc::now(),
            record: Some(Record::Site(site)),
        });
        // 2026-03-01 00:00 UTC is 01:00 in Oslo: 2 hours of minutes from 22:00 UTC.
        let t0 = Utc
            .with_ymd_and_hms(2026, 2, 28, 22, 0, 0)
            .unwrap()
            .timestamp_micros();
        let mut periods = Periods::default();
        let rows: Vec<_> = (0..120)
            .flat_map(|i| {
                [
                    (
                        minute("s1", "m1", t0 + i * MINUTE_US, 50.0, "meter"),
                        Some(100e12),
                    ),
                    (
                        minute("s1", "m2", t0 + i * MINUTE_US, 25.0 + i as f64, "pdu"),
                        None,
                    ),
                ]
            })
            .collect();
        periods.add(&view, &rows);
        let closed = BTreeMap::from([("s1".to_string(), t0 + 90 * MINUTE_US)]);
        let out = periods.close(&closed);
        let settlements: Vec<_> = out
            .iter()
            .filter(|(k, r)| *k == PeriodKind::Settlement && r.scope == "site")
            .collect();
        assert_eq!(settlements.len(), 3, "three 30-minute intervals closed");
        let first = &settlements[0].1;
        let expected: f64 = (0..30).map(|i| 50.0 + 25.0 + i as f64).sum();
        assert_eq!(first.energy_wh, expected);
        assert_eq!(first.sources, "meter,pdu");
        assert_eq!(first.quality, 1.0);
        assert!((first.measured_share - 1.0).abs() < 1e-12);
        let hours: Vec<_> = out.iter().filter(|(k, _)| *k == PeriodKind::Hour).collect();
        assert_eq!(
            hours.len(),
            3,
            "machine m1, m2 and the site: first hour only"
        );
        let m1_hour = hours.iter().find(|(_, r)| r.subject == "m1").unwrap();
        assert_eq!(m1_hour.1.energy_wh, 3000.0);
        assert_eq!(
            m1_hour.1.efficiency_j_th,
            Some(3000.0 / 100.0),
            "3 kW at 100 TH/s"
        );
        // Oslo's 2026-02-28 runs 23:00 UTC on the 27th to 23:00 UTC on the 28th: the first
        // hour of minutes (22:00–23:00) closes it; the second belongs to the 1st of March.
        let day = out
            .iter()
            .find(|(k, r)| *k == PeriodKind::Day && r.scope == "site")
            .expect("the local day of the 28th closed");
        assert_eq!(
            day.1.period_start,
            Utc.with_ymd_and_hms(2026, 2, 27, 23, 0, 0).unwrap()
        );
        assert_eq!(day.1.minutes, 60);
        assert_eq!(
            day.1.date,
            chrono::NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
        );
        let rest = periods.close(&BTreeMap::from([("s1".to_string(), t0 + 26 * HOUR_US)]));
        let next = rest
            .iter()
            .find(|(k, r)| *k == PeriodKind::Day && r.scope == "site")
            .expect("the 1st of March closed");
        assert_eq!(next.1.minutes, 60);
        let total: f64 = rest
            .iter()
            .chain(out.iter())
            .filter(|(k, r)| *k == PeriodKind::Day && r.scope == "site")
            .map(|(_, r)| r.energy_wh)
            .sum();
        let all: f64 = rows.iter().map(|(m, _)| m.energy_wh).sum();
        assert_eq!(total, all, "days add up to every minute");
    }
}
