//! The site's power as the VEN reports it: each machine's freshest reading from its best
//! source (meter, then PDU, then firmware, then estimate, as the controller reads them),
//! summed over the machines heard from within `fresh`. Pure but for [`readings`], the site's
//! readings as they are published: the caller passes the time.

use std::collections::HashMap;
use std::time::Duration;

use adit_schemas::{EnergyReading, EnergySource, EventKind};
use chrono::{DateTime, Utc};

use super::Shared;
use crate::adapters::poll::AdaptersError;

/// The site's energy readings as they are published (both VENs' view of the site's load).
pub(crate) async fn readings(
    shared: &Shared,
    site: &str,
) -> Result<async_nats::Subscriber, AdaptersError> {
    let subject = EventKind::Energy.filter(Some(site));
    shared
        .publisher
        .jetstream()
        .client()
        .subscribe(subject.clone())
        .await
        .map_err(|source| AdaptersError::Subscribe { subject, source })
}

/// The latest good reading per machine.
#[derive(Debug, Clone)]
pub(crate) struct SitePower {
    fresh: Duration,
    machines: HashMap<String, (u8, DateTime<Utc>, f64)>,
}

fn rank(source: EnergySource) -> u8 {
    match source {
        EnergySource::Meter => 0,
        EnergySource::Pdu => 1,
        EnergySource::Firmware => 2,
        EnergySource::Estimate => 3,
    }
}

impl SitePower {
    /// Readings older than `fresh` no longer count.
    pub(crate) fn new(fresh: Duration) -> Self {
        Self {
            fresh,
            machines: HashMap::new(),
        }
    }

    fn is_fresh(&self, ts: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(ts)
            .to_std()
            .map_or(true, |age| age <= self.fresh)
    }

    /// Takes one published reading (its message's payload) heard at `now`; a payload that is
    /// no reading is passed over.
    pub(crate) fn take_payload(&mut self, payload: &[u8], now: DateTime<Utc>) {
        if let Ok(r) = serde_json::from_slice::<EnergyReading>(payload) {
            self.take(&r, now);
        }
    }

    /// Takes one reading heard at `now`.
    pub(crate) fn take(&mut self, r: &EnergyReading, now: DateTime<Utc>) {
        if !(r.power_w.is_finite() && r.power_w >= 0.0 && self.is_fresh(r.ts, now)) {
            return;
        }
        let new = (rank(r.source), r.ts, r.power_w);
        let keep = self
            .machines
            .get(&r.machine)
            .is_some_and(|&(best, ts, _)| best < new.0 && self.is_fresh(ts, now));
        if !keep {
            self.machines.insert(r.machine.clone(), new);
        }
    }

    /// The site's power, kW, at `now`; `None` when no machine was heard from lately.
    pub(crate) fn kw(&self, now: DateTime<Utc>) -> Option<f64> {
        let fresh: Vec<f64> = self
            .machines
            .values()
            .filter(|(_, ts, _)| self.is_fresh(*ts, now))
            .map(|(_, _, w)| *w)
            .collect();
        (!fresh.is_empty()).then(|| fresh.iter().sum::<f64>() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(machine: &str, s: i64, w: f64, source: EnergySource) -> EnergyReading {
        EnergyReading {
            site: "s".into(),
            machine: machine.into(),
            ts: DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap(),
            power_w: w,
            energy_wh: None,
            source,
        }
    }

    #[test]
    fn each_machine_counts_once_from_its_best_fresh_source() {
        let now = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let mut p = SitePower::new(Duration::from_secs(30));
        assert_eq!(p.kw(now(0)), None);
        p.take(&reading("m1", 0, 3000.0, EnergySource::Meter), now(0));
        p.take(&reading("m1", 1, 3300.0, EnergySource::Firmware), now(1));
        p.take(&reading("m2", 1, 1500.0, EnergySource::Firmware), now(1));
        assert_eq!(p.kw(now(1)), Some(4.5), "the meter wins over the firmware");
        // The meter falls silent: past `fresh` the firmware takes over, then all is stale.
        p.take(&reading("m1", 40, 3200.0, EnergySource::Firmware), now(40));
        assert_eq!(p.kw(now(40)), Some(3.2));
        assert_eq!(p.kw(now(100)), None);
        p.take(&reading("m3", 100, f64::NAN, EnergySource::Meter), now(100));
        assert_eq!(p.kw(now(100)), None, "garbage is not a reading");
    }
}
