//! Event-time watermarks per source, combined per group, bounded by processing time.
//!
//! A *source* is what has its own clock (a machine, a sensor, a pool's server); a *group* is
//! what a window is computed over (a machine's own minutes, a site's minutes). Rules:
//! - A source's watermark is its newest event time minus the allowed lateness, but never past
//!   processing time minus the lateness: a clock five minutes fast cannot close even its own
//!   windows early.
//! - A group's watermark is the lowest watermark of its *active* sources (heard from within
//!   `idle`, in processing time): one fast source cannot close windows for the others, and a
//!   silent one stops holding the group back after `idle`. When every source of a group is
//!   silent, nothing holds it: it is the highest of their watermarks.
//! - A group's watermark never goes backwards.
//!
//! An event whose time is below its group's watermark is *late*: the pipeline counts it and
//! keeps it where it was landed, but never reopens a window it has closed. Pure: time is an
//! argument, so tests run on simulated time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How far behind a watermark trails and when a source counts as silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkConfig {
    /// Allowed lateness: how far behind its source's newest event an event may arrive.
    pub lateness_us: i64,
    /// A source not heard from for this long (processing time) stops holding its group back.
    pub idle_us: i64,
}

impl WatermarkConfig {
    /// From durations.
    pub fn new(lateness: Duration, idle: Duration) -> Self {
        Self {
            lateness_us: lateness.as_micros().min(i64::MAX as u128) as i64,
            idle_us: idle.as_micros().min(i64::MAX as u128) as i64,
        }
    }
}

/// One source's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SourceClock {
    /// Newest event time seen, µs.
    max_event_us: i64,
    /// Processing time it was last heard from, µs.
    last_seen_us: i64,
}

/// The watermarks of every source and group of one pipeline instance (part of its state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermarks {
    /// group → source → clock.
    groups: BTreeMap<String, BTreeMap<String, SourceClock>>,
    /// group → its watermark so far (never decreases).
    marks: BTreeMap<String, i64>,
}

/// Whether an event arrived in time for its group's open windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Its windows are still open.
    OnTime,
    /// Its group's watermark had passed it: its window may be closed.
    Late,
}

impl Watermarks {
    /// Records an event of `source` in `group` at event time `event_us`, seen at `now_us`.
    pub fn observe(&mut self, group: &str, source: &str, event_us: i64, now_us: i64) -> Arrival {
        let arrival = match self.marks.get(group) {
            Some(mark) if event_us < *mark => Arrival::Late,
            _ => Arrival::OnTime,
        };
        let clock = self
            .groups
            .entry(group.to_string())
            .or_default()
            .entry(source.to_string())
            .or_insert(SourceClock {
                max_event_us: event_us,
                last_seen_us: now_us,
            });
        clock.max_event_us = clock.max_event_us.max(event_us);
        clock.last_seen_us = clock.last_seen_us.max(now_us);
        arrival
    }

    /// The watermark of `group` at `now_us` (advancing it), or `None` for a group never seen.
    pub fn advance(&mut self, group: &str, config: WatermarkConfig, now_us: i64) -> Option<i64> {
        let sources = self.groups.get(group)?;
        let cap = now_us.saturating_sub(config.lateness_us);
        let source_mark =
            |c: &SourceClock| c.max_event_us.saturating_sub(config.lateness_us).min(cap);
        let active = sources
            .values()
            .filter(|c| now_us.saturating_sub(c.last_seen_us) <= config.idle_us)
            .map(source_mark)
            .min();
        let candidate = active.or_else(|| sources.values().map(source_mark).max())?;
        let mark = self.marks.entry(group.to_string()).or_insert(i64::MIN);
        *mark = (*mark).max(candidate);
        Some(*mark)
    }

    /// Every group seen so far.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// The sources of `group`.
    pub fn sources(&self, group: &str) -> impl Iterator<Item = &str> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|s| s.keys().map(String::as_str))
    }

    /// The watermark of `group` as last advanced.
    pub fn mark(&self, group: &str) -> Option<i64> {
        self.marks.get(group).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const MIN: i64 = 60 * S;

    fn config() -> WatermarkConfig {
        WatermarkConfig::new(Duration::from_secs(5), Duration::from_secs(120))
    }

    #[test]
    fn a_fast_clock_closes_nothing_for_others_nor_early_for_itself() {
        let mut w = Watermarks::default();
        let now = 1_000 * MIN;
        // m-fast's clock runs five minutes ahead; m-ok's is right, 10 s behind real time.
        w.observe("site-a", "m-fast", now + 5 * MIN, now);
        w.observe("site-a", "m-ok", now - 10 * S, now);
        let mark = w.advance("site-a", config(), now).unwrap();
        assert_eq!(
            mark,
            now - 15 * S,
            "the group follows its slowest active source"
        );
        // Alone in its own group, the fast source is still capped at processing time.
        w.observe("m-fast", "m-fast", now + 5 * MIN, now);
        assert_eq!(w.advance("m-fast", config(), now), Some(now - 5 * S));
        // A third site never hears of it.
        w.observe("site-b", "m-b", now - 30 * S, now);
        assert_eq!(w.advance("site-b", config(), now), Some(now - 35 * S));
    }

    #[test]
    fn a_silent_source_stops_holding_its_group_after_idle() {
        let mut w = Watermarks::default();
        let t0 = 1_000 * MIN;
        w.observe("site", "quiet", t0, t0);
        w.observe("site", "busy", t0, t0);
        // busy keeps reporting for three minutes; quiet says nothing.
        for s in (1..=180).step_by(10) {
            w.observe("site", "busy", t0 + s * S, t0 + s * S);
            let mark = w.advance("site", config(), t0 + s * S).unwrap();
            if s <= 120 {
                assert_eq!(mark, t0 - 5 * S, "held by quiet at {s} s");
            } else {
                assert_eq!(mark, t0 + (s - 5) * S, "quiet idle at {s} s: busy leads");
            }
        }
        // Everyone silent: nothing holds the group, and it never goes back.
        let later = t0 + 3_600 * S;
        let mark = w.advance("site", config(), later).unwrap();
        assert_eq!(mark, t0 + 166 * S);
        w.observe("site", "quiet", t0 + 10 * S, later);
        assert_eq!(w.advance("site", config(), later), Some(t0 + 166 * S));
    }

    #[test]
    fn an_event_behind_its_groups_watermark_is_late() {
        let mut w = Watermarks::default();
        let t0 = 1_000 * MIN;
        assert_eq!(w.observe("g", "s", t0, t0), Arrival::OnTime);
        w.observe("g", "s", t0 + 60 * S, t0 + 60 * S);
        assert_eq!(w.advance("g", config(), t0 + 60 * S), Some(t0 + 55 * S));
        assert_eq!(
            w.observe("g", "s", t0 + 56 * S, t0 + 61 * S),
            Arrival::OnTime
        );
        assert_eq!(w.observe("g", "s", t0 + 54 * S, t0 + 61 * S), Arrival::Late);
        assert_eq!(w.observe("g", "other", t0, t0 + 61 * S), Arrival::Late);
    }

    #[test]
    fn watermarks_survive_a_round_trip_through_state() {
        let mut w = Watermarks::default();
        w.observe("g", "s", 5 * MIN, 5 * MIN);
        w.advance("g", config(), 5 * MIN);
        let json = serde_json::to_value(&w).unwrap();
        let back: Watermarks = serde_json::from_value(json).unwrap();
        assert_eq!(back, w);
    }
}
