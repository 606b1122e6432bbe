//! Anomaly detection: the pure decisions of the `anomalies` pipeline (DESIGN.md §5).
//!
//! A *series* is one `(site, kind, id)`: a machine's power (W) or hashrate (H/s), or one
//! temperature sensor (°C). Machines may name a *peer group* (the model); peers are the
//! series of the same site and kind in the same group. Samples `(ts µs, value)` are fed in
//! event-time order; nothing here reads a clock, does I/O or iterates a hash map, so the same
//! state and samples always give the same events (and ids), which is what replay relies on.
//!
//! # Per series
//! - A sample not newer than its series' last accepted one, or less than `min_spacing` after
//!   it, is ignored (a 1 s feed is looked at every 10 s, so `window` spans a known time), and
//!   so is a non-finite value.
//! - The last `window` accepted values are kept in a ring; once it is full the series is
//!   *learned*. `floor(m) = max(abs, rel·|m|)` with `abs`, `rel` from `floors` for the kind: the
//!   smallest deviation from a level `m` that matters.
//!
//! # Detectors (one reading per accepted sample each)
//! - **zscore** (transients): against the ring *before* the new value `x`:
//!   `med = median`, `MAD = median |v − med|`, `scale = max(1.4826·MAD, floor(med))`,
//!   `z = (x − med) / scale`. Holds when `|z| > z_threshold` and `|x − med| ≥ floor(med)`. The
//!   floor under the scale keeps a flat series (MAD = 0) from dividing by zero or alarming on
//!   its first wiggle. Score `|z|`; expected `med`.
//! - **drift** (slow creep, which a rolling z adapts to and misses): a slow EWMA
//!   `e ← α·x' + (1 − α)·e` (`α = alpha_slow`), where `x'` is `x` clipped to
//!   `med ± z_threshold·scale` so that a spike, which zscore judges, cannot drag the slow level.
//!   The *baseline* `b` is the ring's median when the series is first learned, re-learned every
//!   `rebaseline` only while no detector of the series is pending or open — except a drift
//!   anomaly open for a whole `rebaseline`, which is then accepted as the new level.
//!   `drift = (e − b) / max(|b|, floor(b))`; holds when `|drift| > drift_threshold` and
//!   `|e − b| ≥ floor(b)`. Score `|drift|`; value `e`; expected `b`.
//! - **peer** (machines with a peer group only): `own` = median of the series' last
//!   `recent_samples` values; `expected` = median of the same of every *other* member heard
//!   within `peer_stale` (at least `min_peers` members counting itself, else no reading).
//!   `dev = (own − expected) / max(|expected|, floor(expected))`; holds when
//!   `|dev| > peer_threshold` and `|own − expected| ≥ floor(expected)`. Score `|dev|`.
//!   Peers are read at each sample's time from their current state.
//! - **stuck** (temperature only): the last `stuck_samples` values are exactly equal (same
//!   bits) while at least one other temperature sensor of the site, heard within `peer_stale`,
//!   is not stuck. A site whose sensors are all flat alarms nothing. Yes/no: score 1; value the
//!   stuck reading; expected the median of the other sensors' last values.
//!
//! # From readings to anomalies (per series and detector)
//! - A condition must hold on every sample for `min_duration` of event time before an anomaly
//!   *opens* (`Opened`, at the sample that completes it; `started_us` is the first sample of
//!   the run). A reading that does not hold, or cannot be made (not learned, too few peers),
//!   restarts the wait.
//! - While open, `Updated` is emitted only when the peak score has grown by `update_step`
//!   (10 %) since it was last reported, so rows stay few.
//! - It *resolves* once the condition has been false on every sample for `clear_after`
//!   (hysteresis): `Resolved` with `ended_us` = the first sample on which it stopped holding and
//!   `duration_us = ended_us − started_us`. At most one anomaly is open per series and detector.
//! - A series not heard from for `forget_after` is dropped (state stays bounded: one ring per
//!   live series); its open anomalies resolve with reason `forgotten` at its last sample time
//!   plus `forget_after`, whichever batch notices it.
//!
//! # Defaults and how they hang together
//! A step stays above `z_threshold` for about `window / 2` samples before the rolling median
//! follows it, so `window / 2 × min_spacing` must clearly exceed `min_duration` or zscore can
//! never open: 60 samples 10 s apart (a 10 min window, 5 min of z) against 2 min. `z_threshold`
//! 3.5 is the usual cut for the MAD-based z (Iglewicz–Hoaglin); over 2 min (12 samples) in a
//! row pure noise never gets there. `alpha_slow` 0.05 (time constant 20 samples, 200 s) lags
//! a creep by 19 samples' worth of slope and leaves the EWMA's noise at 0.16 σ, far below a
//! 10 % `drift_threshold`. `recent_samples` 5 makes the peer level ignore two outliers in a
//! row. `stuck_samples` 30 (5 min) because sensors quantized to 0.1 °C can repeat a value for
//! a few minutes in a still room. Floors: 50 W (or 1 %) of power, 5 % of hashrate (a share-based
//! hashrate is that noisy), 1.5 °C of temperature.
//!
//! Peers and neighbours are not found by a pass over the site: an index kept beside the series
//! (`detector/neighbours.rs`, derived, rebuilt after a restore) holds each pool's values sorted,
//! so a reading at 1 000 machines a site costs a few lookups.
//!
//! Ids: an anomaly is `anomaly:<site>:<kind>:<id>:<detector>:<opened_ts_us>`; its events are
//! that plus `:opened`, `:updated:<n>` or `:resolved`. The state serializes to JSON with every
//! float as text (`{:?}`, read back with std's exact parser): serde_json's default float parser
//! may move the last bit, and a replay from a snapshot must decide exactly as the first run.

use adit_schemas::time::span_micros;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

mod config;
mod neighbours;

pub use config::{DetectConfig, Floor, Floors};

use neighbours::{Member, Neighbours, PoolKey};

/// MAD × this estimates the standard deviation of normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// A machine's power draw, W.
    MachinePower,
    /// A machine's hashrate, H/s.
    MachineHashrate,
    /// One temperature sensor, °C.
    Temperature,
}

impl SeriesKind {
    /// The name used in ids and config keys.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for SeriesKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One series: `(site, kind, id)`, ordered in that order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[derive(Serialize, Deserialize)]
pub struct SeriesKey {
    /// The site.
    pub site: String,
    /// What is measured.
    pub kind: SeriesKind,
    /// The machine or sensor.
    pub id: String,
}

/// One of the four detectors of the file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[derive(Serialize, Deserialize)]
pub enum DetectorKind {
    /// Robust z-score against the rolling window.
    #[serde(rename = "zscore")]
    ZScore,
    /// Slow EWMA against the learned baseline.
    #[serde(rename = "drift")]
    Drift,
    /// Recent median against the peer group's.
    #[serde(rename = "peer")]
    Peer,
    /// A temperature sensor repeating one value while its site's others vary.
    #[serde(rename = "stuck")]
    Stuck,
}

impl DetectorKind {
    /// Every detector, in the order they are evaluated on a sample.
    pub const ALL: [DetectorKind; 4] = [
        DetectorKind::ZScore,
        DetectorKind::Drift,
        DetectorKind::Peer,
        DetectorKind::Stuck,
    ];

    /// The name used in ids.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::ZScore => "zscore",
            DetectorKind::Drift => "drift",
            DetectorKind::Peer => "peer",
            DetectorKind::Stuck => "stuck",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reading of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The series.
    pub key: SeriesKey,
    /// The machine's peer group within its site and kind (its model); `None` for no peers.
    /// Ignored for temperature (a site's sensors are compared only for `stuck`).
    pub peer_group: Option<String>,
    /// Event time, µs since the epoch.
    pub ts_us: i64,
    /// In the kind's unit.
    pub value: f64,
}

/// Why an anomaly resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReason {
    /// Its condition was false for `clear_after`.
    Cleared,
    /// Its series went silent for `forget_after`.
    Forgotten,
}

/// What happened to an anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AnomalyChange {
    /// The condition held for `min_duration`.
    Opened {
        /// The first sample of the run of the condition, µs.
        started_us: i64,
        /// What was tested (the value, the EWMA, the recent median, the stuck reading).
        value: f64,
        /// What it was compared with (window median, baseline, peers' median).
        expected: f64,
        /// The detector's score (see the file header).
        score: f64,
    },
    /// The peak score grew by `update_step`.
    Updated {
        /// As in `Opened`, at this sample.
        value: f64,
        /// As in `Opened`, at this sample.
        expected: f64,
        /// At this sample.
        score: f64,
        /// The highest score since it opened.
        peak_score: f64,
    },
    /// The anomaly is over.
    Resolved {
        /// As in `Opened`.
        started_us: i64,
        /// The first sample on which the condition no longer held (cleared), or the series'
        /// last sample (forgotten), µs.
        ended_us: i64,
        /// `ended_us − started_us`.
        duration_us: i64,
        /// The highest score while open.
        peak_score: f64,
        /// Why.
        reason: ResolveReason,
    },
}

/// One event of one anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEvent {
    /// Unique to this event, from the inputs: `<anomaly_id>:opened|updated:<n>|resolved`.
    pub id: String,
    /// `anomaly:<site>:<kind>:<id>:<detector>:<opened_ts_us>`, shared by its events.
    pub anomaly_id: String,
    /// The series.
    pub series: SeriesKey,
    /// The detector.
    pub detector: DetectorKind,
    /// Event time of the sample that caused it, µs.
    pub ts_us: i64,
    /// What happened.
    pub change: AnomalyChange,
}

/// The whole state of anomaly detection for one pipeline instance; [`Detector::observe`] feeds
/// it. Survives restarts as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Detector {
    /// Newest sample time seen, µs (event time); drives forgetting.
    clock_us: Option<i64>,
    /// Every live series.
    #[serde(with = "crate::serde_pairs")]
    series: BTreeMap<SeriesKey, SeriesState>,
    /// Derived from `series`: what peers and neighbours offer, sorted.
    #[serde(skip)]
    neighbours: Neighbours,
}

/// Two detectors are equal when their series are: the neighbour index is derived from them.
impl PartialEq for Detector {
    fn eq(&self, other: &Self) -> bool {
        self.clock_us == other.clock_us && self.series == other.series
    }
}

impl Detector {
    /// Feeds samples (of any series, in time order: they are stably sorted by time first) and
    /// returns what happened to anomalies, in the order it happened.
    pub fn observe(&mut self, cfg: &DetectConfig, samples: &[Sample]) -> Vec<AnomalyEvent> {
        let timing = Timing::of(cfg);
        self.neighbours.ensure(cfg, self.series.iter());
        let mut order: Vec<&Sample> = samples.iter().collect();
        order.sort_by_key(|s| s.ts_us);
        let mut out = Vec::new();
        for sample in order {
            self.sample(cfg, &timing, sample, &mut out);
        }
        self.forget(cfg, &timing, &mut out);
        out
    }

    /// How many series are tracked.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn sample(&mut self, cfg: &DetectConfig, t: &Timing, sample: &Sample, out: &mut Vec<Event>) {
        let (key, ts, x) = (&sample.key, sample.ts_us, sample.value);
        if !x.is_finite() {
            return;
        }
        match self.series.get(key) {
            Some(s) if ts <= s.last_ts_us || ts < s.last_ts_us.saturating_add(t.spacing) => {
                return;
            }
            Some(_) => {}
            None => {
                self.series.insert(key.clone(), SeriesState::default());
            }
        }
        self.clock_us = Some(self.clock_us.map_or(ts, |c| c.max(ts)));
        let floor = cfg.floors.of(key.kind);
        let mut readings = [None; 4];
        let mut mine = None;
        if let Some(s) = self.series.get_mut(key) {
            let before = neighbours::member(key, s, cfg);
            if s.peer_group != sample.peer_group {
                s.peer_group.clone_from(&sample.peer_group);
            }
            let stats = s.window_stats(cfg.window, floor);
            readings[0] = stats.map(|w| w.zscore(x, cfg.z_threshold, floor));
            s.push(x, ts, cfg, t, stats);
            readings[1] = s.drift(cfg.drift_threshold, floor);
            mine = neighbours::member(key, s, cfg);
            self.neighbours.replace(&key.id, before, mine.as_ref());
        }
        readings[2] = self.peer(key, mine.as_ref(), cfg, t, ts);
        readings[3] = self.stuck(key, mine.as_ref(), cfg, t, ts);
        if let Some(s) = self.series.get_mut(key) {
            for (i, detector) in DetectorKind::ALL.into_iter().enumerate() {
                if let Some(event) = s.tracks[i].step(key, detector, readings[i], ts, t) {
                    out.push(event);
                }
            }
        }
    }

    /// The peer reading of `key` at `ts` (machines with a group and enough live peers), where
    /// `mine` is what `key` offers its pool (`neighbours::member`).
    fn peer(
        &self,
        key: &SeriesKey,
        mine: Option<&(PoolKey, Member)>,
        cfg: &DetectConfig,
        t: &Timing,
        ts: i64,
    ) -> Option<Reading> {
        if key.kind == SeriesKind::Temperature {
            return None;
        }
        let (pool, me) = mine?;
        let others = self
            .neighbours
            .others(pool, *me, ts.saturating_sub(t.stale));
        if others.count + 1 < cfg.min_peers {
            return None;
        }
        Some(peer_reading(cfg, key.kind, me.value, others.median?))
    }

    /// The stuck reading of temperature sensor `key` at `ts`, `mine` as for [`Self::peer`].
    fn stuck(
        &self,
        key: &SeriesKey,
        mine: Option<&(PoolKey, Member)>,
        cfg: &DetectConfig,
        t: &Timing,
        ts: i64,
    ) -> Option<Reading> {
        if key.kind != SeriesKind::Temperature {
            return None;
        }
        if self.series.get(key)?.run < cfg.stuck_samples {
            return None;
        }
        let (pool, me) = mine?;
        let others = self
            .neighbours
            .others(pool, *me, ts.saturating_sub(t.stale));
        Some(Reading {
            holds: others.varying,
            value: me.value,
            expected: others.median?,
            score: 1.0,
        })
    }

    /// Drops series silent for `forget_after`, resolving their open anomalies.
    fn forget(&mut self, cfg: &DetectConfig, t: &Timing, out: &mut Vec<Event>) {
        let Some(clock) = self.clock_us else {
            return;
        };
        let horizon = clock.saturating_sub(t.forget);
        let silent: Vec<SeriesKey> = self
            .series
            .iter()
            .filter(|(_, s)| s.last_ts_us < horizon)
            .map(|(k, _)| k.clone())
            .collect();
        for key in silent {
            let Some(s) = self.series.remove(&key) else {
                continue;
            };
            let gone = neighbours::member(&key, &s, cfg);
            self.neighbours.replace(&key.id, gone, None);
            let ts = s.last_ts_us.saturating_add(t.forget);
            for (track, detector) in s.tracks.iter().zip(DetectorKind::ALL) {
                if let Some(open) = &track.open {
                    let ended = open.false_since_us.unwrap_or(s.last_ts_us);
                    out.push(open.resolved(&key, detector, ts, ended, ResolveReason::Forgotten));
                }
            }
        }
    }
}

type Event = AnomalyEvent;

/// The peer reading of a series whose recent level is `own` where its peers' is `expected`.
fn peer_reading(cfg: &DetectConfig, kind: SeriesKind, own: f64, expected: f64) -> Reading {
    let floor = cfg.floors.of(kind).at(expected);
    let dev = own - expected;
    let rel = dev / expected.abs().max(floor);
    Reading {
        holds: rel.abs() > cfg.peer_threshold && dev.abs() >= floor,
        value: own,
        expected,
        score: rel.abs(),
    }
}

/// The config's durations in µs.
struct Timing {
    spacing: i64,
    stale: i64,
    min_duration: i64,
    clear_after: i64,
    rebaseline: i64,
    forget: i64,
    update_step: f64,
}

impl Timing {
    fn of(cfg: &DetectConfig) -> Self {
        Self {
            spacing: span_micros(cfg.min_spacing),
            stale: span_micros(cfg.peer_stale),
            min_duration: span_micros(cfg.min_duration),
            clear_after: span_micros(cfg.clear_after),
            rebaseline: span_micros(cfg.rebaseline),
            forget: span_micros(cfg.forget_after),
            update_step: cfg.update_step,
        }
    }
}

/// One detector's verdict on one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    /// Whether its condition holds.
    holds: bool,
    /// What was tested.
    value: f64,
    /// What it was compared with.
    expected: f64,
    /// Its score.
    score: f64,
}

/// The rolling window's level and spread.
#[derive(Debug, Clone, Copy)]
struct WindowStats {
    median: f64,
    /// `max(1.4826·MAD, floor(median))`.
    scale: f64,
}

impl WindowStats {
    fn zscore(self, x: f64, threshold: f64, floor: Floor) -> Reading {
        let dev = x - self.median;
        let z = dev / self.scale;
        Reading {
            holds: z.abs() > threshold && dev.abs() >= floor.at(self.median),
            value: x,
            expected: self.median,
            score: z.abs(),
        }
    }
}

/// What is kept per series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SeriesState {
    /// Its peer group, as last sent.
    peer_group: Option<String>,
    /// Its last accepted sample, µs.
    last_ts_us: i64,
    /// The last `window` accepted values, oldest first.
    values: VecDeque<Exact>,
    /// How many accepted values in a row equal the last one (stuck).
    run: usize,
    /// The slow EWMA (drift).
    ewma: Option<Exact>,
    /// The learned level (drift), once the window first filled.
    baseline: Option<Exact>,
    /// When the baseline was learned, µs.
    baseline_ts_us: i64,
    /// One per detector, in [`DetectorKind::ALL`] order.
    tracks: [Track; 4],
}

impl SeriesState {
    /// Median and scale of the window, once it is full.
    fn window_stats(&self, window: usize, floor: Floor) -> Option<WindowStats> {
        if window == 0 || self.values.len() < window {
            return None;
        }
        let med = median(self.values.iter().map(|v| v.0).collect())?;
        let mad = median(self.values.iter().map(|v| (v.0 - med).abs()).collect())?;
        Some(WindowStats {
            median: med,
            scale: (MAD_TO_SIGMA * mad).max(floor.at(med)),
        })
    }

    /// Takes accepted value `x`: ring, stuck run, EWMA (clipped by `stats`), baseline.
    fn push(
        &mut self,
        x: f64,
        ts: i64,
        cfg: &DetectConfig,
        t: &Timing,
        stats: Option<WindowStats>,
    ) {
        let same = self
            .values
            .back()
            .is_some_and(|v| v.0.to_bits() == x.to_bits());
        self.run = if same { self.run.saturating_add(1) } else { 1 };
        self.values.push_back(Exact(x));
        while self.values.len() > cfg.window {
            self.values.pop_front();
        }
        self.last_ts_us = ts;
        let clipped = match stats {
            Some(w) => {
                let band = cfg.z_threshold * w.scale;
                x.clamp(w.median - band, w.median + band)
            }
            None => x,
        };
        let ewma = match self.ewma {
            Some(e) => cfg.alpha_slow * clipped + (1.0 - cfg.alpha_slow) * e.0,
            None => x,
        };
        self.ewma = Some(Exact(ewma));
        if self.values.len() < cfg.window {
            return;
        }
        let due = match self.baseline {
            None => true,
            Some(_) => ts.saturating_sub(self.baseline_ts_us) >= t.rebaseline && self.quiet(ts, t),
        };
        if due && let Some(level) = median(self.values.iter().map(|v| v.0).collect()) {
            self.baseline = Some(Exact(level));
            self.baseline_ts_us = ts;
        }
    }

    /// Whether the baseline may be re-learned: nothing pending or open, except a drift
    /// anomaly open for a whole `rebaseline` (a lasting shift, accepted as the new level).
    fn quiet(&self, ts: i64, t: &Timing) -> bool {
        self.tracks
            .iter()
            .zip(DetectorKind::ALL)
            .all(|(track, detector)| match &track.open {
                None => track.since_us.is_none(),
                Some(open) => {
                    detector == DetectorKind::Drift
                        && ts.saturating_sub(open.opened_us) >= t.rebaseline
                }
            })
    }

    /// The drift reading, once a baseline is learned.
    fn drift(&self, threshold: f64, floor: Floor) -> Option<Reading> {
        let (b, e) = (self.baseline?.0, self.ewma?.0);
        let floor = floor.at(b);
        let dev = e - b;
        let rel = dev / b.abs().max(floor);
        Some(Reading {
            holds: rel.abs() > threshold && dev.abs() >= floor,
            value: e,
            expected: b,
            score: rel.abs(),
        })
    }

    /// Median of the last `n` values, if there are that many.
    fn recent_median(&self, n: usize) -> Option<f64> {
        if n == 0 || self.values.len() < n {
            return None;
        }
        median(self.values.iter().rev().take(n).map(|v| v.0).collect())
    }
}

/// One detector's anomaly life cycle on one series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Track {
    /// While closed: the condition has held on every sample since, µs (pending).
    since_us: Option<i64>,
    /// The open anomaly.
    open: Option<Open>,
}

/// An open anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Open {
    /// The sample it opened at, µs (in its id).
    opened_us: i64,
    /// The first sample of the condition's run, µs.
    started_us: i64,
    /// The condition has been false on every sample since, µs.
    false_since_us: Option<i64>,
    /// Highest score so far.
    peak: Exact,
    /// Peak last reported (in `Opened` or `Updated`).
    reported: Exact,
    /// `Updated` events so far (numbers their ids).
    updates: u32,
}

impl Open {
    fn anomaly_id(&self, key: &SeriesKey, detector: DetectorKind) -> String {
        format!(
            "anomaly:{}:{}:{}:{}:{}",
            key.site, key.kind, key.id, detector, self.opened_us
        )
    }

    fn event(
        &self,
        key: &SeriesKey,
        detector: DetectorKind,
        ts: i64,
        change: AnomalyChange,
    ) -> Event {
        let anomaly_id = self.anomaly_id(key, detector);
        let id = match &change {
            AnomalyChange::Opened { .. } => format!("{anomaly_id}:opened"),
            AnomalyChange::Updated { .. } => format!("{anomaly_id}:updated:{}", self.updates),
            AnomalyChange::Resolved { .. } => format!("{anomaly_id}:resolved"),
        };
        AnomalyEvent {
            id,
            anomaly_id,
            series: key.clone(),
            detector,
            ts_us: ts,
            change,
        }
    }

    fn resolved(
        &self,
        key: &SeriesKey,
        detector: DetectorKind,
        ts: i64,
        ended_us: i64,
        reason: ResolveReason,
    ) -> Event {
        let change = AnomalyChange::Resolved {
            started_us: self.started_us,
            ended_us,
            duration_us: ended_us.saturating_sub(self.started_us),
            peak_score: self.peak.0,
            reason,
        };
        self.event(key, detector, ts, change)
    }
}

impl Track {
    /// Advances on one sample's reading (`None`: no reading, counts as not holding).
    fn step(
        &mut self,
        key: &SeriesKey,
        detector: DetectorKind,
        reading: Option<Reading>,
        ts: i64,
        t: &Timing,
    ) -> Option<Event> {
        let holding = reading.filter(|r| r.holds);
        match (&mut self.open, holding) {
            (None, None) => {
                self.since_us = None;
                None
            }
            (None, Some(r)) => {
                let since = *self.since_us.get_or_insert(ts);
                if ts.saturating_sub(since) < t.min_duration {
                    return None;
                }
                self.since_us = None;
                let open = Open {
                    opened_us: ts,
                    started_us: since,
                    false_since_us: None,
                    peak: Exact(r.score),
                    reported: Exact(r.score),
                    updates: 0,
                };
                let change = AnomalyChange::Opened {
                    started_us: since,
                    value: r.value,
                    expected: r.expected,
                    score: r.score,
                };
                let event = open.event(key, detector, ts, change);
                self.open = Some(open);
                Some(event)
            }
            (Some(open), Some(r)) => {
                open.false_since_us = None;
                open.peak = Exact(open.peak.0.max(r.score));
                if open.peak.0 < open.reported.0 * (1.0 + t.update_step) {
                    return None;
                }
                open.reported = open.peak;
                open.updates = open.updates.saturating_add(1);
                let change = AnomalyChange::Updated {
                    value: r.value,
                    expected: r.expected,
                    score: r.score,
                    peak_score: open.peak.0,
                };
                Some(open.event(key, detector, ts, change))
            }
            (Some(open), None) => {
                let ended = *open.false_since_us.get_or_insert(ts);
                if ts.saturating_sub(ended) < t.clear_after {
                    return None;
                }
                let event = open.resolved(key, detector, ts, ended, ResolveReason::Cleared);
                self.open = None;
                Some(event)
            }
        }
    }
}

/// The median (mean of the middle two for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => values.get(n / 2).copied(),
        _ => Some((values.get(n / 2 - 1)? + values.get(n / 2)?) / 2.0),
    }
}

/// An `f64` that survives JSON exactly: written as its shortest round-trip text (`{:?}`) and
/// read with std's correctly rounded parser, not serde_json's best-effort one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Exact(f64);

impl Serialize for Exact {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:?}", self.0))
    }
}

impl<'de> Deserialize<'de> for Exact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<f64>()
            .map(Exact)
            .map_err(|e| serde::de::Error::custom(format!("float {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests;
