//! What the actuators have told the simulated farm: machines put to sleep or woken, their
//! power targets, each site's fan level. The device servers write it as commands arrive; the farm reads it at
//! each tick, and a command takes effect `lag` after it arrived (a miner takes a while to
//! stop its boards; fans take a while to spin), so the loop the controller closes is a
//! realistic one: its command changes the power the meters read a little later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The temperature a site's air loses per fan level above 1, °C.
pub const COOLING_PER_FAN_LEVEL_C: f64 = 0.8;

/// One commanded state and when it was commanded.
#[derive(Debug, Clone, Copy)]
struct Commanded<T> {
    now: T,
    before: T,
    at: DateTime<Utc>,
}

impl<T: Copy + PartialEq> Commanded<T> {
    /// In effect at `now`: the new state once `lag` has passed, the old one until then.
    fn at(&self, now: DateTime<Utc>, lag: Duration) -> T {
        let lag = chrono::Duration::from_std(lag).unwrap_or_default();
        if now - self.at >= lag {
            self.now
        } else {
            self.before
        }
    }
}

#[derive(Debug, Default)]
struct State {
    asleep: HashMap<(String, String), Commanded<bool>>,
    targets: HashMap<(String, String), Commanded<Option<f64>>>,
    fans: HashMap<String, Commanded<Option<u8>>>,
}

/// Shared between the device servers (writers) and the farm (reader).
#[derive(Debug, Clone, Default)]
pub struct Controls(Arc<Mutex<State>>);

impl Controls {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `machine` to sleep (or wakes it) as of `at`; the same order twice changes nothing.
    pub fn set_asleep(&self, site: &str, machine: &str, asleep: bool, at: DateTime<Utc>) {
        let mut state = self.lock();
        let key = (site.to_string(), machine.to_string());
        let current = state.asleep.get(&key).map(|c| c.at(at, Duration::ZERO));
        if current == Some(asleep) || (current.is_none() && !asleep) {
            return;
        }
        state.asleep.insert(
            key,
            Commanded {
                now: asleep,
                before: current.unwrap_or(false),
                at,
            },
        );
    }

    /// Sets `machine`'s power target to `watts` as of `at` (it draws at most that once the
    /// lag has passed).
    pub fn set_power_target(&self, site: &str, machine: &str, watts: f64, at: DateTime<Utc>) {
        let mut state = self.lock();
        let key = (site.to_string(), machine.to_string());
        let before = state
            .targets
            .get(&key)
            .and_then(|c| c.at(at, Duration::ZERO));
        state.targets.insert(
            key,
            Commanded {
                now: Some(watts),
                before,
                at,
            },
        );
    }

    /// `machine`'s power target at `now`, W (none until commanded).
    pub fn power_target(
        &self,
        site: &str,
        machine: &str,
        now: DateTime<Utc>,
        lag: Duration,
    ) -> Option<f64> {
        self.lock()
            .targets
            .get(&(site.to_string(), machine.to_string()))
            .and_then(|c| c.at(now, lag))
    }

    /// Sets `site`'s fans to `level` as of `at`.
    pub fn set_fans(&self, site: &str, level: u8, at: DateTime<Utc>) {
        let mut state = self.lock();
        let before = state.fans.get(site).and_then(|c| c.at(at, Duration::ZERO));
        state.fans.insert(
            site.to_string(),
            Commanded {
                now: Some(level),
                before,
                at,
            },
        );
    }

    /// Whether `machine` is asleep at `now`.
    pub fn asleep(&self, site: &str, machine: &str, now: DateTime<Utc>, lag: Duration) -> bool {
        self.lock()
            .asleep
            .get(&(site.to_string(), machine.to_string()))
            .is_some_and(|c| c.at(now, lag))
    }

    /// `site`'s fan level at `now` (none until commanded).
    pub fn fan_level(&self, site: &str, now: DateTime<Utc>, lag: Duration) -> Option<u8> {
        self.lock().fans.get(site).and_then(|c| c.at(now, lag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_takes_effect_after_the_lag_and_repeats_change_nothing() {
        let c = Controls::default();
        let t0 = Utc::now();
        let lag = Duration::from_secs(5);
        let s = chrono::Duration::seconds;
        assert!(!c.asleep("s", "m", t0, lag));
        c.set_asleep("s", "m", true, t0);
        assert!(
            !c.asleep("s", "m", t0 + s(4), lag),
            "still mining within the lag"
        );
        assert!(c.asleep("s", "m", t0 + s(5), lag));
        // A second sleep order does not restart the lag.
        c.set_asleep("s", "m", true, t0 + s(6));
        assert!(c.asleep("s", "m", t0 + s(7), lag));
        c.set_asleep("s", "m", false, t0 + s(10));
        assert!(
            c.asleep("s", "m", t0 + s(12), lag),
            "still asleep while waking"
        );
        assert!(!c.asleep("s", "m", t0 + s(15), lag));
        assert_eq!(c.power_target("s", "m", t0, lag), None);
        c.set_power_target("s", "m", 900.0, t0);
        assert_eq!(c.power_target("s", "m", t0 + s(4), lag), None);
        assert_eq!(c.power_target("s", "m", t0 + s(5), lag), Some(900.0));
        c.set_power_target("s", "m", 1200.0, t0 + s(6));
        assert_eq!(c.power_target("s", "m", t0 + s(7), lag), Some(900.0));
        assert_eq!(c.power_target("s", "m", t0 + s(11), lag), Some(1200.0));
        assert_eq!(c.fan_level("s", t0, lag), None);
        c.set_fans("s", 7, t0);
        assert_eq!(c.fan_level("s", t0 + s(1), lag), None);
        assert_eq!(c.fan_level("s", t0 + s(5), lag), Some(7));
    }
}
