//! The simulated clock: `backfill` in the past at start, `speed` times faster than the wall
//! clock. The farm's readings are stamped with it, and commands obeyed are timed on it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The simulated clock, as `run` and the devices keep it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// Simulated time at start.
    origin: DateTime<Utc>,
    /// Wall-clock start.
    started: Instant,
    /// Simulated seconds per second.
    speed: f64,
}

impl Clock {
    /// A clock starting now, `backfill` in the past, running `speed` times faster than the
    /// wall clock (`SimConfig`'s `backfill` and `speed`).
    pub(crate) fn new(backfill: Duration, speed: f64) -> Self {
        let backfill = chrono::Duration::from_std(backfill).unwrap_or_default();
        Self {
            origin: Utc::now() - backfill,
            started: Instant::now(),
            speed,
        }
    }

    /// The simulated time now.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let simulated = self.started.elapsed().mul_f64(self.speed);
        self.origin + chrono::Duration::from_std(simulated).unwrap_or_default()
    }
}
