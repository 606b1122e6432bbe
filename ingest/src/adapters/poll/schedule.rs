//! When each device is polled: pure (the caller passes the time). Due times, exponential
//! backoff after failures (interval·2ⁿ up to `max_backoff`), and when a device turns *stale*
//! (no good reading for `stale_after`), each change reported once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use adit_retry::Backoff;

use super::DeviceKey;

/// The scheduler's rules, from config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timing {
    /// Between polls of a device that answers.
    pub(super) interval: Duration,
    /// Cap of the backoff.
    pub(super) max_backoff: Duration,
    /// Without a good reading this long, a device is stale.
    pub(super) stale_after: Duration,
}

impl Timing {
    /// The wait after `failures` consecutive failures: interval·2ⁿ, at most `max_backoff`.
    pub(super) fn delay(&self, failures: u32) -> Duration {
        Backoff::new(self.interval, self.max_backoff).after(failures.saturating_add(1))
    }
}

/// One device's schedule and health.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Health {
    /// When it is next polled.
    pub(super) due: Instant,
    /// A poll is under way (not polled again until it reports).
    pub(super) in_flight: bool,
    /// Failures in a row.
    pub(super) failures: u32,
    /// Its last good reading (when it was first seen, before one).
    pub(super) last_good: Instant,
    /// No good reading for `stale_after`.
    pub(super) stale: bool,
    /// Channels registered at it that its last good reply lacked.
    pub(super) missing: Vec<String>,
    /// What its failures in a row last said, as logged.
    pub(super) last_error: Option<String>,
}

/// A change of a good device's state, to log once. (Its first failure is
/// [`Scheduler::failed`]'s `true`; turning stale is [`Scheduler::expire`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// It answered after failing; `was_stale` if it had turned stale meanwhile.
    Recovered {
        /// It had been stale.
        was_stale: bool,
    },
    /// The registered channels its reply lacks changed (empty: none lacked any more).
    Missing(Vec<String>),
}

/// When each device is polled, and which are failing or stale. Pure: the caller passes the
/// time.
#[derive(Debug)]
pub(super) struct Scheduler {
    /// The rules.
    pub(super) timing: Timing,
    /// Every device.
    pub(super) devices: BTreeMap<DeviceKey, Health>,
}

impl Scheduler {
    pub(super) fn new(timing: Timing) -> Self {
        Self {
            timing,
            devices: BTreeMap::new(),
        }
    }

    /// Makes the set of devices `keys`: new ones are due at once, absent ones are forgotten.
    pub(super) fn sync<'a>(&mut self, keys: impl IntoIterator<Item = &'a DeviceKey>, now: Instant) {
        let mut kept = BTreeMap::new();
        for key in keys {
            let health = self.devices.remove(key).unwrap_or_else(|| Health {
                due: now,
                in_flight: false,
                failures: 0,
                last_good: now,
                stale: false,
                missing: Vec::new(),
                last_error: None,
            });
            kept.insert(key.clone(), health);
        }
        self.devices = kept;
    }

    /// The devices due at `now`, marked as being polled.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<DeviceKey> {
        self.devices
            .iter_mut()
            .filter(|(_, h)| !h.in_flight && h.due <= now)
            .map(|(key, h)| {
                h.in_flight = true;
                key.clone()
            })
            .collect()
    }

    /// `key` answered at `now` with a good reading, lacking the channels `missing`.
    pub(super) fn succeeded(
        &mut self,
        key: &DeviceKey,
        now: Instant,
        missing: Vec<String>,
    ) -> Vec<Change> {
        let Some(h) = self.devices.get_mut(key) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        if h.failures > 0 || h.stale {
            changes.push(Change::Recovered { was_stale: h.stale });
        }
        if h.missing != missing {
            changes.push(Change::Missing(missing.clone()));
        }
        *h = Health {
            due: now + self.timing.interval,
            in_flight: false,
            failures: 0,
            last_good: now,
            stale: false,
            missing,
            last_error: None,
        };
        changes
    }

    /// `key`'s poll failed at `now` saying `error`: it waits its backoff. True when this is
    /// the one to log: the first failure in a row, or one that says something else than the
    /// last logged (a feed that timed out and now answers garbage).
    pub(super) fn failed(&mut self, key: &DeviceKey, now: Instant, error: &str) -> bool {
        let Some(h) = self.devices.get_mut(key) else {
            return false;
        };
        h.failures = h.failures.saturating_add(1);
        h.in_flight = false;
        h.due = now + self.timing.delay(h.failures);
        let changed = h.last_error.as_deref() != Some(error);
        if changed {
            h.last_error = Some(error.to_owned());
        }
        h.failures == 1 || changed
    }

    /// The devices that turn stale at `now` (each once, until it recovers).
    pub(super) fn expire(&mut self, now: Instant) -> Vec<DeviceKey> {
        let stale_after = self.timing.stale_after;
        self.devices
            .iter_mut()
            .filter(|(_, h)| !h.stale && now >= h.last_good + stale_after)
            .map(|(key, h)| {
                h.stale = true;
                key.clone()
            })
            .collect()
    }

    /// When something is next due: a poll or a device turning stale.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let stale_after = self.timing.stale_after;
        self.devices
            .values()
            .flat_map(|h| {
                let poll = (!h.in_flight).then_some(h.due);
                let stale = (!h.stale).then_some(h.last_good + stale_after);
                poll.into_iter().chain(stale)
            })
            .min()
    }

    /// Stale devices of `family`.
    pub(super) fn stale(&self, family: &str) -> usize {
        self.devices
            .iter()
            .filter(|(k, h)| k.family == family && h.stale)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn timing() -> Timing {
        Timing {
            interval: 10 * S,
            max_backoff: 60 * S,
            stale_after: 30 * S,
        }
    }

    fn key(address: &str) -> DeviceKey {
        DeviceKey {
            family: "cgminer",
            address: address.into(),
            owner: "s1/m1".into(),
        }
    }

    #[test]
    fn backoff_doubles_from_the_interval_up_to_the_cap() {
        let t = timing();
        let delays: Vec<u64> = (0..8).map(|n| t.delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 60, 60, 60, 60, 60]);
        assert_eq!(t.delay(u32::MAX), 60 * S);
    }

    #[test]
    fn new_devices_are_due_at_once_and_not_twice_while_polled() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(timing());
        let a = key("a:4028");
        s.sync([&a], t0);
        assert_eq!(s.take_due(t0), vec![a.clone()]);
        assert!(s.take_due(t0 + 100 * S).is_empty(), "in flight");
        assert_eq!(s.next_wake(), Some(t0 + 30 * S), "only the stale deadline");
        assert!(s.succeeded(&a, t0 + S, vec![]).is_empty());
        assert!(s.take_due(t0 + 10 * S).is_empty());
        assert_eq!(s.next_wake(), Some(t0 + 11 * S));
        assert_eq!(s.take_due(t0 + 11 * S), [a]);
    }

    #[test]
    fn a_failing_device_backs_off_turns_stale_once_and_recovers() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(timing());
        let a = key("a:4028");
        s.sync([&a], t0);
        s.take_due(t0);
        s.succeeded(&a, t0, vec![]);

        // Fails at 10 s: logged once, next poll after 20 s.
        assert_eq!(s.take_due(t0 + 10 * S), vec![a.clone()]);
        assert!(s.failed(&a, t0 + 10 * S, "refused"));
        assert!(s.take_due(t0 + 29 * S).is_empty());
        assert!(s.expire(t0 + 29 * S).is_empty());
        // 30 s after the last good reading: stale, once.
        assert_eq!(s.expire(t0 + 30 * S), vec![a.clone()]);
        assert!(s.expire(t0 + 31 * S).is_empty());
        assert_eq!(s.stale("cgminer"), 1);
        assert_eq!(s.take_due(t0 + 30 * S), vec![a.clone()]);
        assert!(!s.failed(&a, t0 + 30 * S, "refused"), "not logged again");
        // The second failure in a row waits 40 s, the third the 60 s cap.
        assert!(s.take_due(t0 + 69 * S).is_empty());
        assert_eq!(s.take_due(t0 + 70 * S), vec![a.clone()]);
        assert!(!s.failed(&a, t0 + 70 * S, "refused"));
        assert!(s.take_due(t0 + 129 * S).is_empty());
        assert_eq!(s.take_due(t0 + 130 * S), vec![a.clone()]);

        assert_eq!(
            s.succeeded(&a, t0 + 130 * S, vec![]),
            [Change::Recovered { was_stale: true }]
        );
        assert_eq!(s.stale("cgminer"), 0);
        assert!(s.take_due(t0 + 139 * S).is_empty());
        assert_eq!(s.take_due(t0 + 140 * S), vec![a.clone()]);
        // A failure that recovers before the stale deadline is not stale.
        assert!(s.failed(&a, t0 + 140 * S, "refused"));
        s.take_due(t0 + 160 * S);
        assert_eq!(
            s.succeeded(&a, t0 + 160 * S, vec![]),
            [Change::Recovered { was_stale: false }]
        );
        assert!(s.expire(t0 + 160 * S).is_empty());
    }

    #[test]
    fn a_device_that_never_answers_turns_stale_after_it_was_first_seen() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(timing());
        let a = key("a:4028");
        s.sync([&a], t0);
        s.take_due(t0);
        // Still in flight (hanging) at the deadline: stale all the same.
        assert!(s.expire(t0 + 29 * S).is_empty());
        assert_eq!(s.expire(t0 + 30 * S), [a]);
    }

    #[test]
    fn sync_keeps_known_devices_and_forgets_removed_ones() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(timing());
        let (a, b) = (key("a:4028"), key("b:4028"));
        s.sync([&a], t0);
        s.take_due(t0);
        assert!(s.failed(&a, t0, "refused"));
        // b added later is due at once; a keeps its backoff (due at 20 s) and its clock.
        s.sync([&a, &b], t0 + 5 * S);
        assert_eq!(s.take_due(t0 + 5 * S), vec![b.clone()]);
        assert_eq!(s.expire(t0 + 30 * S), vec![a.clone()]);
        assert_eq!(s.stale("cgminer"), 1);
        // a removed (or moved: a new address is a new key): forgotten, reports ignored.
        s.sync([&b], t0 + 32 * S);
        assert_eq!(s.stale("cgminer"), 0);
        assert!(s.succeeded(&a, t0 + 33 * S, vec![]).is_empty());
        assert!(!s.failed(&a, t0 + 33 * S, "refused"));
        assert_eq!(s.devices.len(), 1);
    }

    #[test]
    fn a_failure_that_says_something_new_is_logged_again() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(timing());
        let a = key("http://feed/");
        s.sync([&a], t0);
        s.take_due(t0);
        assert!(s.failed(&a, t0, "timed out"));
        s.take_due(t0 + 20 * S);
        assert!(!s.failed(&a, t0 + 20 * S, "timed out"));
        s.take_due(t0 + 60 * S);
        assert!(
            s.failed(&a, t0 + 60 * S, "not a value: <html>"),
            "it says something new"
        );
        s.take_due(t0 + 120 * S);
        assert!(!s.failed(&a, t0 + 120 * S, "not a value: <html>"));
        // A recovery forgets it: the same failure afterwards is new again.
        s.take_due(t0 + 180 * S);
        s.succeeded(&a, t0 + 180 * S, vec![]);
        s.take_due(t0 + 190 * S);
        assert!(s.failed(&a, t0 + 190 * S, "not a value: <html>"));
    }

    #[test]
    fn missing_channels_are_reported_when_they_change() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(timing());
        let a = key("http://pdu/");
        s.sync([&a], t0);
        s.take_due(t0);
        let gone = vec!["meter s1/x".to_string()];
        assert_eq!(
            s.succeeded(&a, t0, gone.clone()),
            [Change::Missing(gone.clone())]
        );
        s.take_due(t0 + 10 * S);
        assert!(s.succeeded(&a, t0 + 10 * S, gone).is_empty());
        s.take_due(t0 + 20 * S);
        assert_eq!(
            s.succeeded(&a, t0 + 20 * S, vec![]),
            [Change::Missing(vec![])]
        );
    }
}
