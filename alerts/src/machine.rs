//! One rule's alerts as Prometheus keeps them, as a pure function: each evaluation takes the
//! series that alert now (labels → value) and returns the transitions.
//!
//! A series that starts alerting is `pending` (or `firing` at once when `for` is 0); it fires
//! once it has alerted for `for`; a pending series that stops alerting is dropped without a
//! word (as Prometheus does); a firing one keeps firing for `keep_firing_for` after it stops,
//! then is `resolved`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A series' labels, sorted.
pub type Labels = BTreeMap<String, String>;

/// Where one alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Alerting, for less than `for`.
    Pending,
    /// Alerting for `for` or more (or within `keep_firing_for` of it).
    Firing,
}

/// One tracked alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    /// Pending or firing.
    pub phase: Phase,
    /// Since when it has alerted.
    pub active_at: DateTime<Utc>,
    /// The last evaluation at which it alerted.
    pub last_seen: DateTime<Utc>,
    /// Its value then.
    pub value: Option<f64>,
}

/// A change worth recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The series.
    pub labels: Labels,
    /// `pending`, `firing` or `resolved`.
    pub state: &'static str,
    /// Since when it alerted.
    pub active_at: DateTime<Utc>,
    /// Its last value.
    pub value: Option<f64>,
}

/// Evaluates one rule at `now` with the series alerting now; updates `tracked`.
pub fn evaluate(
    tracked: &mut BTreeMap<Labels, Tracked>,
    alerting: &BTreeMap<Labels, Option<f64>>,
    hold: Duration,
    keep_firing: Duration,
    now: DateTime<Utc>,
) -> Vec<Transition> {
    let hold = chrono::Duration::from_std(hold).unwrap_or_default();
    let keep = chrono::Duration::from_std(keep_firing).unwrap_or_default();
    let mut out = Vec::new();
    let emit = |labels: &Labels, state, t: &Tracked| Transition {
        labels: labels.clone(),
        state,
        active_at: t.active_at,
        value: t.value,
    };
    for (labels, value) in alerting {
        match tracked.get_mut(labels) {
            Some(t) => {
                t.last_seen = now;
                t.value = *value;
                if t.phase == Phase::Pending && now - t.active_at >= hold {
                    t.phase = Phase::Firing;
                    out.push(emit(labels, "firing", t));
                }
            }
            None => {
                let t = Tracked {
                    phase: if hold.is_zero() {
                        Phase::Firing
                    } else {
                        Phase::Pending
                    },
                    active_at: now,
                    last_seen: now,
                    value: *value,
                };
                let state = if hold.is_zero() { "firing" } else { "pending" };
                out.push(emit(labels, state, &t));
                tracked.insert(labels.clone(), t);
            }
        }
    }
    let gone: Vec<Labels> = tracked
        .iter()
        .filter(|(labels, t)| !alerting.contains_key(*labels) && t.last_seen < now)
        .filter(|(_, t)| t.phase == Phase::Pending || now - t.last_seen >= keep)
        .map(|(labels, _)| labels.clone())
        .collect();
    for labels in gone {
        if let Some(t) = tracked.remove(&labels)
            && t.phase == Phase::Firing
        {
            out.push(emit(&labels, "resolved", &t));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(site: &str) -> Labels {
        BTreeMap::from([("site".to_string(), site.to_string())])
    }

    fn states(t: &[Transition]) -> Vec<(&str, &str)> {
        t.iter()
            .map(|t| (t.labels["site"].as_str(), t.state))
            .collect()
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let hold = Duration::from_secs(60);
        let mut tracked = BTreeMap::new();
        let on = BTreeMap::from([(series("a"), Some(41.0))]);
        let off = BTreeMap::new();
        let at =
            |tracked: &mut _, alerting, n| evaluate(tracked, alerting, hold, Duration::ZERO, s(n));
        assert_eq!(states(&at(&mut tracked, &on, 0)), [("a", "pending")]);
        assert!(at(&mut tracked, &on, 30).is_empty());
        let fired = at(&mut tracked, &on, 60);
        assert_eq!(states(&fired), [("a", "firing")]);
        assert_eq!(fired[0].active_at, s(0));
        assert!(at(&mut tracked, &on, 90).is_empty());
        assert_eq!(states(&at(&mut tracked, &off, 120)), [("a", "resolved")]);
        assert!(tracked.is_empty());
    }

    #[test]
    fn a_pending_alert_that_stops_is_dropped_and_keep_firing_holds_a_firing_one() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let mut tracked = BTreeMap::new();
        let on = BTreeMap::from([(series("a"), None)]);
        let off = BTreeMap::new();
        let hold = Duration::from_secs(60);
        evaluate(&mut tracked, &on, hold, Duration::ZERO, s(0));
        assert!(evaluate(&mut tracked, &off, hold, Duration::ZERO, s(30)).is_empty());
        assert!(tracked.is_empty(), "dropped without a word");
        // for = 0 fires at once; keep_firing_for 60 s holds it through a 30 s gap.
        let keep = Duration::from_secs(60);
        let first = evaluate(&mut tracked, &on, Duration::ZERO, keep, s(100));
        assert_eq!(states(&first), [("a", "firing")]);
        assert!(evaluate(&mut tracked, &off, Duration::ZERO, keep, s(130)).is_empty());
        assert!(evaluate(&mut tracked, &on, Duration::ZERO, keep, s(140)).is_empty());
        assert!(evaluate(&mut tracked, &off, Duration::ZERO, keep, s(170)).is_empty());
        let resolved = evaluate(&mut tracked, &off, Duration::ZERO, keep, s(200));
        assert_eq!(states(&resolved), [("a", "resolved")]);
        assert_eq!(resolved[0].active_at, s(100));
    }
}
