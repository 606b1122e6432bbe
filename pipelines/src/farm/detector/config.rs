//! The anomaly detector's settings (`[pipelines.anomalies]`): windows, thresholds, the floors
//! under every deviation, and the checks that refuse values that cannot work.

use std::time::Duration;

use adit_config::{Checked, check};
use serde::{Deserialize, Serialize};
use strum::IntoEnumIterator;

use super::SeriesKind;

/// The smallest deviation that matters for one kind: `max(abs, rel·|level|)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    /// In the kind's unit (W, H/s, °C); must be above 0 (it also bounds a divisor).
    pub abs: f64,
    /// As a fraction of the level compared against.
    pub rel: f64,
}

impl Floor {
    /// The floor at level `level`.
    pub fn at(&self, level: f64) -> f64 {
        self.abs.max(self.rel * level.abs())
    }
}

/// One [`Floor`] per series kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Floors {
    /// Machine power: 50 W, or 1 % of the level on larger machines.
    pub machine_power: Floor,
    /// Machine hashrate: 5 % of the level (the 1 H/s only guards a machine at 0).
    pub machine_hashrate: Floor,
    /// Temperature: 1.5 °C.
    pub temperature: Floor,
}

impl Default for Floors {
    fn default() -> Self {
        Self {
            machine_power: Floor {
                abs: 50.0,
                rel: 0.01,
            },
            machine_hashrate: Floor {
                abs: 1.0,
                rel: 0.05,
            },
            temperature: Floor { abs: 1.5, rel: 0.0 },
        }
    }
}

impl Floors {
    /// The floor of `kind`.
    pub fn of(&self, kind: SeriesKind) -> Floor {
        match kind {
            SeriesKind::MachinePower => self.machine_power,
            SeriesKind::MachineHashrate => self.machine_hashrate,
            SeriesKind::Temperature => self.temperature,
        }
    }
}

/// Anomaly detection settings; from config (`[pipelines.anomalies]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Accepted samples kept per series (the rolling window of zscore and the baseline).
    pub window: usize,
    /// A sample sooner than this after its series' last accepted one is ignored.
    #[serde(with = "humantime_serde")]
    pub min_spacing: Duration,
    /// Samples whose median is a series' recent level for peer comparison (odd is best).
    pub recent_samples: usize,
    /// Weight of a new value in the slow EWMA of drift.
    pub alpha_slow: f64,
    /// |robust z| above this is a zscore condition.
    pub z_threshold: f64,
    /// |relative drift| of the EWMA from the baseline above this is a drift condition.
    pub drift_threshold: f64,
    /// |relative deviation| from the peers' median above this is a peer condition.
    pub peer_threshold: f64,
    /// Fewest members (counting the series itself) with a recent value for a peer reading.
    pub min_peers: usize,
    /// A member heard from longer ago than this is left out of peer and stuck readings.
    #[serde(with = "humantime_serde")]
    pub peer_stale: Duration,
    /// This many exactly equal values in a row make a temperature sensor stuck.
    pub stuck_samples: usize,
    /// A condition must hold this long (event time) before an anomaly opens.
    #[serde(with = "humantime_serde")]
    pub min_duration: Duration,
    /// An open anomaly resolves after its condition has been false this long.
    #[serde(with = "humantime_serde")]
    pub clear_after: Duration,
    /// `Updated` is emitted when the peak score has grown by this fraction since last reported.
    pub update_step: f64,
    /// The drift baseline is re-learned this often (when the series is quiet).
    #[serde(with = "humantime_serde")]
    pub rebaseline: Duration,
    /// A series not heard from this long is forgotten.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
    /// Smallest deviations that matter, per kind.
    pub floors: Floors,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            window: 60,
            min_spacing: Duration::from_secs(10),
            recent_samples: 5,
            alpha_slow: 0.05,
            z_threshold: 3.5,
            drift_threshold: 0.10,
            peer_threshold: 0.25,
            min_peers: 3,
            peer_stale: Duration::from_secs(300),
            stuck_samples: 30,
            min_duration: Duration::from_secs(120),
            clear_after: Duration::from_secs(120),
            update_step: 0.10,
            rebaseline: Duration::from_secs(6 * 3600),
            forget_after: Duration::from_secs(3600),
            floors: Floors::default(),
        }
    }
}

impl DetectConfig {
    /// Refuses values that cannot work, naming the key.
    pub fn validate(&self) -> Checked {
        let key = |k: &str| format!("pipelines.anomalies.{k}");
        let positive = |v: f64| v.is_finite() && v > 0.0;
        check(self.window >= 5, &key("window"), "must be at least 5")?;
        check(
            (1..=self.window).contains(&self.recent_samples),
            &key("recent_samples"),
            "must be between 1 and pipelines.anomalies.window",
        )?;
        check(
            positive(self.alpha_slow) && self.alpha_slow <= 1.0,
            &key("alpha_slow"),
            "must be in (0, 1]",
        )?;
        for (k, v) in [
            ("z_threshold", self.z_threshold),
            ("drift_threshold", self.drift_threshold),
            ("peer_threshold", self.peer_threshold),
            ("update_step", self.update_step),
        ] {
            check(positive(v), &key(k), "must be a number above 0")?;
        }
        check(self.min_peers >= 2, &key("min_peers"), "must be at least 2")?;
        check(
            self.stuck_samples >= 2,
            &key("stuck_samples"),
            "must be at least 2",
        )?;
        check(
            !self.peer_stale.is_zero(),
            &key("peer_stale"),
            "must be more than 0",
        )?;
        check(
            !self.rebaseline.is_zero(),
            &key("rebaseline"),
            "must be more than 0",
        )?;
        check(
            self.forget_after >= self.peer_stale,
            &key("forget_after"),
            "must be at least pipelines.anomalies.peer_stale",
        )?;
        for kind in SeriesKind::iter() {
            let floor = self.floors.of(kind);
            check(
                positive(floor.abs),
                &key(&format!("floors.{kind}.abs")),
                "must be a number above 0",
            )?;
            check(
                floor.rel.is_finite() && floor.rel >= 0.0,
                &key(&format!("floors.{kind}.rel")),
                "must be 0 or more",
            )?;
        }
        Ok(())
    }
}
