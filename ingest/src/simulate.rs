//! A seeded simulator of a mining farm: sites with machines (power meters, miner status),
//! temperature and humidity sensors, and grid signals, published in real time.
//!
//! The same seed and the same clock give the same events, so a run can be reproduced.

use std::time::Duration;

use adit_schemas::{
    AnyEvent, EnergyReading, EnergySource, GridSignal, GridSignalKind, MinerState, MinerStatus,
    SensorKind, SensorReading,
};
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::publish::{Outgoing, Publisher};

/// Shape of the simulated farm.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of the random generator.
    pub seed: u64,
    /// Number of sites.
    pub sites: usize,
    /// Machines per site.
    pub machines_per_site: usize,
    /// Temperature sensors per site (one humidity sensor is added).
    pub sensors_per_site: usize,
    /// Time between readings of one device.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A grid signal is issued every this many ticks (0 = never).
    pub grid_every: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            sites: 2,
            machines_per_site: 10,
            sensors_per_site: 2,
            interval: Duration::from_secs(1),
            grid_every: 60,
        }
    }
}

impl SimConfig {
    /// Checks the values; the message starts with the key (under `simulate.`).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.sites == 0 {
            return Err("sites must be at least 1".into());
        }
        if self.machines_per_site == 0 {
            return Err("machines_per_site must be at least 1".into());
        }
        if self.interval < std::time::Duration::from_millis(1) {
            return Err(format!(
                "interval must be at least 1ms, not {:?} (with --rate: a lower rate)",
                self.interval
            ));
        }
        Ok(())
    }
}

/// A machine model: nominal power and hashrate.
#[derive(Debug, Clone, Copy)]
struct Model {
    /// Nameplate power, watts.
    power_w: f64,
    /// Nominal hashrate, hashes per second.
    hashrate_hs: f64,
}

const MODELS: [Model; 3] = [
    Model {
        power_w: 3250.0,
        hashrate_hs: 110e12,
    },
    Model {
        power_w: 3500.0,
        hashrate_hs: 200e12,
    },
    Model {
        power_w: 1800.0,
        hashrate_hs: 60e12,
    },
];

/// One simulated machine.
#[derive(Debug, Clone)]
struct Machine {
    /// Its site.
    site: String,
    /// Its id.
    id: String,
    /// Its model.
    model: Model,
    /// Whether its meter has a cumulative counter (a revenue meter) or only power (a PDU).
    metered: bool,
    /// The cumulative counter, Wh.
    energy_wh: f64,
}

/// The simulated farm.
pub struct Farm {
    /// Shape.
    config: SimConfig,
    /// Random source, seeded.
    rng: ChaCha8Rng,
    /// Every machine.
    machines: Vec<Machine>,
    /// Ticks so far.
    ticks: u64,
    /// When the last tick was, to advance energy counters.
    last: Option<DateTime<Utc>>,
}

/// The name of site `i`.
pub fn site_name(i: usize) -> String {
    format!("site-{:02}", i + 1)
}

impl Farm {
    /// A farm shaped by `config`.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut machines = Vec::new();
        for s in 0..config.sites {
            for m in 0..config.machines_per_site {
                machines.push(Machine {
                    site: site_name(s),
                    id: format!("m-{:03}", m + 1),
                    model: MODELS[rng.random_range(0..MODELS.len())],
                    metered: m % 2 == 0,
                    energy_wh: rng.random_range(0.0..1e6),
                });
            }
        }
        Self {
            config,
            rng,
            machines,
            ticks: 0,
            last: None,
        }
    }

    /// Events per tick.
    pub fn events_per_tick(&self) -> usize {
        self.machines.len() * 2 + self.config.sites * (self.config.sensors_per_site + 1)
    }

    /// Every reading the farm takes at `now`.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<AnyEvent> {
        let dt_h = self
            .last
            .map_or(0.0, |l| (now - l).num_milliseconds().max(0) as f64 / 3.6e6);
        self.last = Some(now);
        self.ticks += 1;
        let mut out = Vec::with_capacity(self.events_per_tick() + 1);
        for i in 0..self.machines.len() {
            let load = self.rng.random_range(0.97..1.03);
            let m = &mut self.machines[i];
            let power_w = m.model.power_w * load;
            m.energy_wh += power_w * dt_h;
            out.push(AnyEvent::Energy(EnergyReading {
                site: m.site.clone(),
                machine: m.id.clone(),
                ts: now,
                power_w,
                energy_wh: m.metered.then_some(m.energy_wh),
                source: if m.metered {
                    EnergySource::Meter
                } else {
                    EnergySource::Pdu
                },
            }));
            let temp_c = 55.0 + 15.0 * load + self.rng.random_range(-2.0..2.0);
            let m = &self.machines[i];
            out.push(AnyEvent::Miner(MinerStatus {
                site: m.site.clone(),
                machine: m.id.clone(),
                ts: now,
                hashrate_hs: m.model.hashrate_hs * load,
                temp_c: Some(temp_c),
                fan_rpm: Some(4000.0 + 100.0 * (temp_c - 60.0)),
                power_w: Some(power_w),
                state: MinerState::Mining,
            }));
        }
        for s in 0..self.config.sites {
            let site = site_name(s);
            for t in 0..self.config.sensors_per_site {
                out.push(AnyEvent::Sensor(SensorReading {
                    site: site.clone(),
                    sensor: format!("temp-{:02}", t + 1),
                    kind: SensorKind::Temperature,
                    value: 27.0 + self.rng.random_range(-3.0..5.0),
                    ts: now,
                }));
            }
            out.push(AnyEvent::Sensor(SensorReading {
                site: site.clone(),
                sensor: "hum-01".into(),
                kind: SensorKind::Humidity,
                value: 40.0 + self.rng.random_range(-10.0..10.0),
                ts: now,
            }));
        }
        if self.config.grid_every > 0 && self.ticks.is_multiple_of(self.config.grid_every) {
            out.push(self.grid_signal(now));
        }
        out
    }

    fn grid_signal(&mut self, now: DateTime<Utc>) -> AnyEvent {
        let site = site_name(self.rng.random_range(0..self.config.sites.max(1)));
        let n = self.ticks / self.config.grid_every;
        let kind = match n % 3 {
            0 => GridSignalKind::Price,
            1 => GridSignalKind::Curtail,
            _ => GridSignalKind::Normal,
        };
        let site_kw: f64 = self
            .machines
            .iter()
            .filter(|m| m.site == site)
            .map(|m| m.model.power_w / 1000.0)
            .sum();
        AnyEvent::Grid(GridSignal {
            site,
            event_id: format!("sim-{n}"),
            kind,
            target_kw: (kind == GridSignalKind::Curtail).then_some((site_kw * 0.5).round()),
            deadline: (kind == GridSignalKind::Curtail)
                .then(|| now + chrono::Duration::minutes(10)),
            price_per_mwh: (kind == GridSignalKind::Price)
                .then(|| self.rng.random_range(20.0..200.0)),
            ts: now,
        })
    }
}

/// Publishes the farm's readings every `config.interval` until `ticks` have run (if given) or
/// `shutdown` fires; returns how many events were published.
pub async fn run(
    mut farm: Farm,
    publisher: Publisher,
    ticks: Option<u64>,
    shutdown: CancellationToken,
) -> Result<u64> {
    let mut interval = tokio::time::interval(farm.config.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published = 0u64;
    loop {
        if ticks.is_some_and(|t| farm.ticks >= t) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let events = farm.tick(Utc::now());
        let msgs: Vec<_> = events.iter().map(Outgoing::event).collect();
        published += publisher.publish_all(msgs).await? as u64;
        if farm.ticks.is_multiple_of(10) {
            tracing::info!(ticks = farm.ticks, published, "simulator progress");
        }
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::{Event, ValidationPolicy};

    #[test]
    fn same_seed_same_events_and_all_valid() {
        let now = Utc::now();
        let config = SimConfig {
            grid_every: 1,
            ..SimConfig::default()
        };
        let mut a = Farm::new(config.clone());
        let mut b = Farm::new(config);
        let (ea, eb) = (a.tick(now), b.tick(now));
        assert_eq!(ea, eb);
        assert_eq!(ea.len(), a.events_per_tick() + 1);
        let policy = ValidationPolicy::default();
        for e in &ea {
            let ok = match e {
                AnyEvent::Energy(x) => x.validate(&policy, now),
                AnyEvent::Miner(x) => x.validate(&policy, now),
                AnyEvent::Sensor(x) => x.validate(&policy, now),
                AnyEvent::Grid(x) => x.validate(&policy, now),
                other => panic!("unexpected {other:?}"),
            };
            assert!(ok.is_ok(), "{e:?}: {ok:?}");
        }
    }

    #[test]
    fn counters_advance_with_time() {
        let mut farm = Farm::new(SimConfig::default());
        let t0 = Utc::now();
        let first = farm.tick(t0);
        let second = farm.tick(t0 + chrono::Duration::seconds(3600));
        let wh = |events: &[AnyEvent]| match &events[0] {
            AnyEvent::Energy(e) => e.energy_wh.unwrap(),
            _ => panic!("first event is an energy reading"),
        };
        let used = wh(&second) - wh(&first);
        assert!((1500.0..3700.0).contains(&used), "{used}");
    }
}
