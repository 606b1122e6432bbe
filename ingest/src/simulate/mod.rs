//! A seeded simulator of a mining farm: sites with machines (power meters, miner status),
//! temperature and humidity sensors, and grid signals, published in real time.
//!
//! The same seed and the same clock give the same events, so a run can be reproduced. Faults
//! ([`faults`]) can be injected at given offsets, and time can run faster than the clock
//! (`speed`, from `backfill` in the past), so an hour of a misbehaving farm takes a minute.

pub mod cgminer;
mod clock;
pub mod controls;
pub mod devices;
pub mod faults;
pub mod pool;

use std::collections::BTreeMap;
use std::time::Duration;

use adit_schemas::registry::{self, Adapter, Record, Sensor, Site};
use adit_schemas::{
    AnyEvent, EnergyReading, EnergySource, GridSignal, GridSignalKind, MinerState, MinerStatus,
    SensorKind, SensorReading,
};
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use adit_bus::Result;
use adit_bus::publish::{Outgoing, Publisher};
use adit_bus::registry::{Registry, RegistryError};
use adit_config::{Checked, Invalid, check};
use clock::Clock;
use controls::{COOLING_PER_FAN_LEVEL_C, Controls};

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
    /// Seconds of simulated time per second of the clock (1: real time).
    pub speed: f64,
    /// Simulated time starts this far in the past (so a fast run ends near now).
    #[serde(with = "humantime_serde")]
    pub backfill: Duration,
    /// Faults to inject.
    pub faults: Vec<faults::Fault>,
    /// How long (simulated time) a machine takes to obey a sleep or wake command, and fans
    /// a level change.
    #[serde(with = "humantime_serde")]
    pub command_lag: Duration,
    /// Miners of a simulated pool beside the farm, each submitting one accepted share per
    /// tick (0: no pool); its shares, blocks and payouts land in the pool's tables.
    pub pool_miners: usize,
    /// The simulated pool finds a block every this many shares.
    pub block_every: u64,
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
            speed: 1.0,
            backfill: Duration::ZERO,
            faults: Vec::new(),
            command_lag: Duration::from_secs(5),
            pool_miners: 0,
            block_every: 10_000,
        }
    }
}

impl SimConfig {
    /// Checks the values; keys are relative to `[simulate]` (the caller puts them
    /// [`under`](Invalid::under) `simulate`).
    pub fn validate(&self) -> Checked {
        check(self.sites != 0, "sites", "must be at least 1")?;
        check(
            self.machines_per_site != 0,
            "machines_per_site",
            "must be at least 1",
        )?;
        check(
            self.interval >= Duration::from_millis(1),
            "interval",
            format!(
                "must be at least 1ms, not {:?} (with --rate: a lower rate)",
                self.interval
            ),
        )?;
        check(
            self.pool_miners <= MAX_POOL_MINERS,
            "pool_miners",
            format!("must be at most {MAX_POOL_MINERS}"),
        )?;
        check(self.block_every != 0, "block_every", "must be at least 1")?;
        check(
            self.command_lag <= Duration::from_secs(3600),
            "command_lag",
            "must be at most 1h",
        )?;
        check(
            self.speed.is_finite() && self.speed > 0.0 && self.speed <= 3600.0,
            "speed",
            format!("must be within (0, 3600], not {}", self.speed),
        )?;
        for (i, fault) in self.faults.iter().enumerate() {
            // The kind goes into the reason, so the key stays a path (`faults[0].pct`).
            let kind = fault.kind();
            let at = |e: Invalid| {
                let e = e.under(&format!("faults[{i}]"));
                Invalid::new(e.key, format!("{} ({kind} fault)", e.reason))
            };
            fault.validate().map_err(at)?;
            let site_ok = (0..self.sites).any(|s| site_name(s) == fault.site());
            if !site_ok {
                return Err(at(Invalid::new(
                    "site",
                    format!("no site {:?} in the simulated farm", fault.site()),
                )));
            }
        }
        Ok(())
    }
}

/// The most miners a simulated pool holds (each is a share per tick).
const MAX_POOL_MINERS: usize = 1_000_000;

/// A machine model: nominal power and hashrate.
#[derive(Debug, Clone, Copy)]
struct Model {
    /// Its name (peers for anomaly detection share it).
    name: &'static str,
    /// Nameplate power, watts.
    power_w: f64,
    /// Nominal hashrate, hashes per second.
    hashrate_hs: f64,
}

const MODELS: [Model; 3] = [
    Model {
        name: "S19-110T",
        power_w: 3250.0,
        hashrate_hs: 110e12,
    },
    Model {
        name: "S21-200T",
        power_w: 3500.0,
        hashrate_hs: 200e12,
    },
    Model {
        name: "L7-60T",
        power_w: 1800.0,
        hashrate_hs: 60e12,
    },
];

/// Share of its nameplate power a sleeping machine still draws (control board, idle fans).
const STANDBY_SHARE: f64 = 0.005;

/// Share of its allocation a simulated site draws at nominal load (warnings start at 80 %).
const SITE_LOAD: f64 = 0.7;

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
    /// When the first tick was: faults are timed from it.
    start: Option<DateTime<Utc>>,
    /// Each sensor's last value (a stuck sensor repeats it).
    last_values: BTreeMap<(String, String), f64>,
    /// What the actuators have ordered.
    controls: Controls,
    /// The simulated pool, if it has miners.
    pool: Option<pool::SimPool>,
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
        let pool = (config.pool_miners > 0)
            .then(|| pool::SimPool::new(config.pool_miners, config.block_every));
        Self {
            config,
            rng,
            machines,
            ticks: 0,
            last: None,
            start: None,
            last_values: BTreeMap::new(),
            controls: Controls::default(),
            pool,
        }
    }

    /// What the actuators order the farm to do (shared: the device servers write it).
    pub fn controls(&self) -> Controls {
        self.controls.clone()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// A site's allocation, kW: its nominal load is [`SITE_LOAD`] of it.
    fn allocation_kw(&self, site: &str) -> f64 {
        (self.nominal_w(site) / 1000.0 / SITE_LOAD).ceil()
    }

    fn nominal_w(&self, site: &str) -> f64 {
        self.machines
            .iter()
            .filter(|m| m.site == site)
            .map(|m| m.model.power_w)
            .sum()
    }

    /// A machine's power and hashrate factors at `elapsed`, from the faults (power as the
    /// share of nominal, before noise).
    fn fault_factors(&self, m: &Machine, elapsed: Duration) -> (f64, f64) {
        let faults = &self.config.faults;
        let forced = faults
            .iter()
            .find_map(|f| f.site_load_pct(&m.site, elapsed))
            .map(|pct| {
                self.allocation_kw(&m.site) * 1000.0 * pct / 100.0 / self.nominal_w(&m.site)
            });
        let drift: f64 = faults
            .iter()
            .map(|f| f.power_factor(&m.site, &m.id, elapsed))
            .product();
        let hashrate: f64 = faults
            .iter()
            .map(|f| f.hashrate_factor(&m.site, &m.id, elapsed))
            .product();
        (forced.unwrap_or(1.0) * drift, hashrate)
    }

    /// A sensor's reading after the faults.
    fn sensor_value(&mut self, site: &str, sensor: &str, elapsed: Duration, value: f64) -> f64 {
        let key = (site.to_string(), sensor.to_string());
        let last = self.last_values.get(&key).copied();
        let value = self
            .config
            .faults
            .iter()
            .fold(value, |v, f| f.sensor_value(site, sensor, elapsed, v, last));
        self.last_values.insert(key, value);
        value
    }

    /// The farm as registry records: each site (allocated so that its nominal load is 70 %
    /// of it), machine and sensor.
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for s in 0..self.config.sites {
            let site = site_name(s);
            let allocation_kw = self.allocation_kw(&site);
            out.push(Record::Site(Site {
                name: format!("Simulated site {}", s + 1),
                ..Site::new(&site, allocation_kw)
            }));
            for t in 0..self.config.sensors_per_site {
                out.push(Record::Sensor(Sensor {
                    id: format!("temp-{:02}", t + 1),
                    site: site.clone(),
                    kind: SensorKind::Temperature,
                    adapter: Adapter::default(),
                }));
            }
            out.push(Record::Sensor(Sensor {
                id: "hum-01".into(),
                site: site.clone(),
                kind: SensorKind::Humidity,
                adapter: Adapter::default(),
            }));
        }
        for (i, m) in self.machines.iter().enumerate() {
            out.push(Record::Machine(registry::Machine {
                id: m.id.clone(),
                site: m.site.clone(),
                pool: None,
                model: m.model.name.into(),
                rack: Some(format!("rack-{}", i % 10 / 5 + 1)),
                pdu: None,
                outlet: None,
                nominal_hashrate_hs: m.model.hashrate_hs,
                nominal_power_w: m.model.power_w,
                adapter: Adapter::default(),
                mines_as: None,
                customer: None,
                power_target_min_w: None,
            }));
        }
        out
    }

    /// Events per tick (the simulated pool's blocks, one per `block_every` shares, aside).
    pub fn events_per_tick(&self) -> usize {
        self.machines.len() * 2
            + self.config.sites * (self.config.sensors_per_site + 1)
            + self.config.pool_miners
    }

    /// Every reading the farm takes at `now`.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<AnyEvent> {
        let dt_h = self
            .last
            .map_or(0.0, |l| (now - l).num_milliseconds().max(0) as f64 / 3.6e6);
        self.last = Some(now);
        let elapsed = (now - *self.start.get_or_insert(now))
            .to_std()
            .unwrap_or_default();
        self.ticks += 1;
        let mut out = Vec::with_capacity(self.events_per_tick() + 1);
        for i in 0..self.machines.len() {
            let load = self.rng.random_range(0.97..1.03);
            let (power_factor, hashrate_factor) = self.fault_factors(&self.machines[i], elapsed);
            let lag = self.config.command_lag;
            let m = &mut self.machines[i];
            let asleep = self.controls.asleep(&m.site, &m.id, now, lag);
            // A power target caps the draw, and the hashes fall with it.
            let full_w = m.model.power_w * load * power_factor;
            let capped = self
                .controls
                .power_target(&m.site, &m.id, now, lag)
                .map_or(1.0, |t| (t / full_w).clamp(0.0, 1.0));
            let power_w = if asleep {
                m.model.power_w * STANDBY_SHARE
            } else {
                full_w * capped
            };
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
                hashrate_hs: if asleep {
                    0.0
                } else {
                    m.model.hashrate_hs * load * hashrate_factor * capped
                },
                temp_c: Some(temp_c),
                fan_rpm: Some(4000.0 + 100.0 * (temp_c - 60.0)),
                power_w: Some(power_w),
                state: if asleep {
                    MinerState::Sleeping
                } else {
                    MinerState::Mining
                },
            }));
        }
        for s in 0..self.config.sites {
            let site = site_name(s);
            for t in 0..self.config.sensors_per_site {
                let sensor = format!("temp-{:02}", t + 1);
                let cooling = self
                    .controls
                    .fan_level(&site, now, self.config.command_lag)
                    .map_or(0.0, |level| {
                        f64::from(level.saturating_sub(1)) * COOLING_PER_FAN_LEVEL_C
                    });
                let raw = 27.0 + self.rng.random_range(-3.0..5.0) - cooling;
                let value = self.sensor_value(&site, &sensor, elapsed, raw);
                out.push(AnyEvent::Sensor(SensorReading {
                    site: site.clone(),
                    sensor,
                    kind: SensorKind::Temperature,
                    value,
                    ts: now,
                }));
            }
            let raw = 40.0 + self.rng.random_range(-10.0..10.0);
            let value = self.sensor_value(&site, "hum-01", elapsed, raw);
            out.push(AnyEvent::Sensor(SensorReading {
                site: site.clone(),
                sensor: "hum-01".into(),
                kind: SensorKind::Humidity,
                value,
                ts: now,
            }));
        }
        if self.config.grid_every > 0 && self.ticks.is_multiple_of(self.config.grid_every) {
            out.push(self.grid_signal(now));
        }
        if let Some(pool) = &mut self.pool {
            pool.tick(now, self.ticks, &mut self.rng, &mut out);
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

    /// Each machine's site and id, and whether a revenue meter (rather than a PDU outlet)
    /// measures it, in site order.
    pub(crate) fn machine_meters(&self) -> impl Iterator<Item = (&str, &str, bool)> + '_ {
        self.machines
            .iter()
            .map(|m| (m.site.as_str(), m.id.as_str(), m.metered))
    }
}

/// Registers the farm (sites first) through `registry` as `by`; records already there as they
/// are do not change.
pub async fn register(farm: &Farm, registry: &Registry, by: &str) -> Result<usize, RegistryError> {
    registry.put_all(farm.records(), by).await
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
    let clock = Clock::new(farm.config.backfill, farm.config.speed);
    loop {
        if ticks.is_some_and(|t| farm.ticks >= t) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let events = farm.tick(clock.now());
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
    fn errors_name_the_key_relative_to_simulate() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
        let err = |config: SimConfig| config.validate().expect_err("invalid").to_string();
        let e = err(SimConfig {
            sites: 0,
            ..SimConfig::default()
        });
        assert_eq!(e, "sites: must be at least 1");
        let e = err(SimConfig {
            speed: 0.0,
            ..SimConfig::default()
        });
        assert!(e.starts_with("speed: "), "{e}");
        let drift = |site: &str, pct: f64| faults::Fault::PowerDrift {
            site: site.into(),
            machine: "m-001".into(),
            at: Duration::ZERO,
            ramp: Duration::from_secs(60),
            pct,
        };
        let e = err(SimConfig {
            faults: vec![drift("site-01", 5.0), drift("site-01", -1.0)],
            ..SimConfig::default()
        });
        assert_eq!(
            e,
            "faults[1].pct: must be a positive number, not -1 (power_drift fault)"
        );
        let e = err(SimConfig {
            faults: vec![drift("nowhere", 5.0)],
            ..SimConfig::default()
        });
        assert!(e.starts_with("faults[0].site: no site \"nowhere\""), "{e}");
        assert!(e.ends_with("(power_drift fault)"), "{e}");
    }

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
    fn the_farm_registers_valid_records_for_every_device_it_reports() {
        let mut farm = Farm::new(SimConfig::default());
        let records = farm.records();
        for r in &records {
            r.validate().unwrap_or_else(|e| panic!("{r:?}: {e}"));
            for (_, key) in r.references() {
                assert!(records.iter().any(|x| x.key() == key), "{key}");
            }
        }
        let keys: Vec<String> = records.iter().map(Record::key).collect();
        for event in farm.tick(Utc::now()) {
            let key = match &event {
                AnyEvent::Energy(e) => format!("machine.{}.{}", e.site, e.machine),
                AnyEvent::Miner(m) => format!("machine.{}.{}", m.site, m.machine),
                AnyEvent::Sensor(s) => format!("sensor.{}.{}", s.site, s.sensor),
                _ => continue,
            };
            assert!(keys.contains(&key), "{key} is not registered");
        }
    }

    #[test]
    fn faults_change_what_the_farm_reports_when_they_are_due() {
        use faults::Fault;
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let config = SimConfig {
            sites: 1,
            grid_every: 0,
            faults: vec![
                Fault::HashrateDrop {
                    site: "site-01".into(),
                    machine: "m-001".into(),
                    at: minutes(10),
                    factor: 0.5,
                },
                Fault::OverAllocation {
                    site: "site-01".into(),
                    at: minutes(20),
                    duration: minutes(10),
                    pct: 110.0,
                },
                Fault::SensorStuck {
                    site: "site-01".into(),
                    sensor: "temp-01".into(),
                    at: minutes(5),
                },
            ],
            ..SimConfig::default()
        };
        config.validate().unwrap();
        let mut farm = Farm::new(config);
        let t0 = Utc::now();
        let at = |m: i64| t0 + chrono::Duration::minutes(m);
        let site_kw = |events: &[AnyEvent]| -> f64 {
            events
                .iter()
                .filter_map(|e| match e {
                    AnyEvent::Energy(r) => Some(r.power_w / 1000.0),
                    _ => None,
                })
                .sum()
        };
        let hashrate = |events: &[AnyEvent]| match &events[1] {
            AnyEvent::Miner(m) => m.hashrate_hs,
            _ => panic!("second event is m-001's status"),
        };
        let temp = |events: &[AnyEvent]| {
            events
                .iter()
                .find_map(|e| match e {
                    AnyEvent::Sensor(s) if s.sensor == "temp-01" => Some(s.value),
                    _ => None,
                })
                .unwrap()
        };
        let allocation = farm.allocation_kw("site-01");
        let before = farm.tick(at(0));
        assert!(site_kw(&before) / allocation < 0.75);
        let stuck_at = temp(&farm.tick(at(5)));
        let halved = farm.tick(at(12));
        assert!(
            hashrate(&halved) < 0.55 * hashrate(&before),
            "{}",
            hashrate(&halved)
        );
        assert_eq!(temp(&halved), stuck_at);
        let over = farm.tick(at(25));
        let pct = site_kw(&over) / allocation * 100.0;
        assert!((106.0..114.0).contains(&pct), "{pct}");
        let after = farm.tick(at(31));
        assert!(site_kw(&after) / allocation < 0.75);
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
