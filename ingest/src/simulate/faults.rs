//! Faults the simulator can inject, each at an offset from the farm's first reading, so a
//! seeded run with faults has a known answer: which device misbehaved, how, and when.
//!
//! - `power_drift`: a machine's power creeps up by `pct` over `ramp`, then stays up;
//! - `hashrate_drop`: a machine's hashrate is multiplied by `factor` from `at` on;
//! - `sensor_stuck`: a sensor repeats its last value from `at` on;
//! - `over_allocation`: a site's machines draw `pct` % of its allocation for `duration`;
//! - `hot_aisle`: a temperature sensor reads `temp_c` for `duration`.

use std::time::Duration;

use adit_config::{Checked, check};
use serde::Deserialize;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// A machine's power creeps up.
    PowerDrift {
        /// Its site.
        site: String,
        /// The machine.
        machine: String,
        /// When the creep starts, after the first reading.
        #[serde(with = "humantime_serde")]
        at: Duration,
        /// How long it takes to reach `pct`.
        #[serde(with = "humantime_serde")]
        ramp: Duration,
        /// How much higher it ends, percent.
        pct: f64,
    },
    /// A machine's hashrate falls.
    HashrateDrop {
        /// Its site.
        site: String,
        /// The machine.
        machine: String,
        /// From when.
        #[serde(with = "humantime_serde")]
        at: Duration,
        /// Multiplier (0.5: halves).
        factor: f64,
    },
    /// A sensor stops changing.
    SensorStuck {
        /// Its site.
        site: String,
        /// The sensor.
        sensor: String,
        /// From when.
        #[serde(with = "humantime_serde")]
        at: Duration,
    },
    /// A whole site draws more than its allocation.
    OverAllocation {
        /// The site.
        site: String,
        /// From when.
        #[serde(with = "humantime_serde")]
        at: Duration,
        /// For how long.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// Site power, percent of its allocation.
        pct: f64,
    },
    /// A temperature sensor reads hot.
    HotAisle {
        /// Its site.
        site: String,
        /// The sensor.
        sensor: String,
        /// From when.
        #[serde(with = "humantime_serde")]
        at: Duration,
        /// For how long.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// The temperature, °C.
        temp_c: f64,
    },
}

impl Fault {
    /// Its kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PowerDrift { .. } => "power_drift",
            Self::HashrateDrop { .. } => "hashrate_drop",
            Self::SensorStuck { .. } => "sensor_stuck",
            Self::OverAllocation { .. } => "over_allocation",
            Self::HotAisle { .. } => "hot_aisle",
        }
    }

    /// The site it happens at.
    pub fn site(&self) -> &str {
        match self {
            Self::PowerDrift { site, .. }
            | Self::HashrateDrop { site, .. }
            | Self::SensorStuck { site, .. }
            | Self::OverAllocation { site, .. }
            | Self::HotAisle { site, .. } => site,
        }
    }

    /// The device it affects (`None`: the whole site).
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::PowerDrift { machine, .. } | Self::HashrateDrop { machine, .. } => Some(machine),
            Self::SensorStuck { sensor, .. } | Self::HotAisle { sensor, .. } => Some(sensor),
            Self::OverAllocation { .. } => None,
        }
    }

    /// When it starts and (if it does) ends, after the first reading.
    pub fn window(&self) -> (Duration, Option<Duration>) {
        match self {
            Self::PowerDrift { at, .. }
            | Self::HashrateDrop { at, .. }
            | Self::SensorStuck { at, .. } => (*at, None),
            Self::OverAllocation { at, duration, .. } | Self::HotAisle { at, duration, .. } => {
                (*at, Some(*at + *duration))
            }
        }
    }

    /// Checks the values; the key is the field (the caller puts it under the fault's place).
    pub fn validate(&self) -> Checked {
        let positive = |field: &str, v: f64| {
            check(
                v.is_finite() && v > 0.0,
                field,
                format!("must be a positive number, not {v}"),
            )
        };
        match self {
            Self::PowerDrift { pct, ramp, .. } => {
                positive("pct", *pct)?;
                check(!ramp.is_zero(), "ramp", "must be more than 0")
            }
            Self::HashrateDrop { factor, .. } => check(
                factor.is_finite() && (0.0..=10.0).contains(factor),
                "factor",
                format!("must be within 0..=10, not {factor}"),
            ),
            Self::SensorStuck { .. } => Ok(()),
            Self::OverAllocation { pct, .. } => positive("pct", *pct),
            Self::HotAisle { temp_c, .. } => check(
                temp_c.is_finite() && (-60.0..=150.0).contains(temp_c),
                "temp_c",
                format!("must be within -60..=150, not {temp_c}"),
            ),
        }
    }

    fn active(&self, elapsed: Duration) -> bool {
        let (from, to) = self.window();
        elapsed >= from && to.is_none_or(|to| elapsed < to)
    }

    /// The factor on `machine`'s power at `elapsed`.
    pub fn power_factor(&self, site: &str, machine: &str, elapsed: Duration) -> f64 {
        match self {
            Self::PowerDrift {
                site: s,
                machine: m,
                at,
                ramp,
                pct,
            } if s == site && m == machine && elapsed >= *at => {
                let progress = ((elapsed - *at).as_secs_f64() / ramp.as_secs_f64()).min(1.0);
                1.0 + pct / 100.0 * progress
            }
            _ => 1.0,
        }
    }

    /// The factor on `machine`'s hashrate at `elapsed`.
    pub fn hashrate_factor(&self, site: &str, machine: &str, elapsed: Duration) -> f64 {
        match self {
            Self::HashrateDrop {
                site: s,
                machine: m,
                factor,
                ..
            } if s == site && m == machine && self.active(elapsed) => *factor,
            _ => 1.0,
        }
    }

    /// The share of its allocation `site` must draw at `elapsed`, percent, if this forces one.
    pub fn site_load_pct(&self, site: &str, elapsed: Duration) -> Option<f64> {
        match self {
            Self::OverAllocation { site: s, pct, .. } if s == site && self.active(elapsed) => {
                Some(*pct)
            }
            _ => None,
        }
    }

    /// What `sensor` reads at `elapsed` instead of `value` (`last`: its previous reading).
    pub fn sensor_value(
        &self,
        site: &str,
        sensor: &str,
        elapsed: Duration,
        value: f64,
        last: Option<f64>,
    ) -> f64 {
        match self {
            Self::SensorStuck {
                site: s, sensor: n, ..
            } if s == site && n == sensor && self.active(elapsed) => last.unwrap_or(value),
            Self::HotAisle {
                site: s,
                sensor: n,
                temp_c,
                ..
            } if s == site && n == sensor && self.active(elapsed) => *temp_c,
            _ => value,
        }
    }
}
