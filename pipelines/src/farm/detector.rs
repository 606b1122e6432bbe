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

use adit_config::{Checked, check};
use adit_schemas::time::span_micros;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;
use strum::IntoEnumIterator;

use serde::{Deserialize, Serialize};

mod neighbours;

use neighbours::{Member, Neighbours, PoolKey};

/// MAD × this estimates the standard deviation of normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;

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
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const MIN: i64 = 60 * S;
    /// The feed's cadence in these tests (= the default `min_spacing`).
    const STEP: i64 = 10 * S;
    const T0: i64 = 1_700_000_000 * S;

    /// xorshift64* with Box–Muller normals: seeded noise without a dependency.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform in (0, 1].
        fn unit(&mut self) -> f64 {
            ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.unit(), self.unit());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }

    fn key(kind: SeriesKind, id: &str) -> SeriesKey {
        SeriesKey {
            site: "site-a".into(),
            kind,
            id: id.into(),
        }
    }

    /// `n` samples every `STEP` from `T0`: `level(k)·(1 + noise·N(0,1))`.
    fn series(
        rng: &mut Rng,
        key: &SeriesKey,
        group: Option<&str>,
        n: usize,
        noise: f64,
        level: impl Fn(usize) -> f64,
    ) -> Vec<Sample> {
        (0..n)
            .map(|k| Sample {
                key: key.clone(),
                peer_group: group.map(str::to_string),
                ts_us: T0 + k as i64 * STEP,
                value: level(k) * (1.0 + noise * rng.normal()),
            })
            .collect()
    }

    /// Several series as one feed, in time order.
    fn merged(streams: Vec<Vec<Sample>>) -> Vec<Sample> {
        let mut all: Vec<Sample> = streams.into_iter().flatten().collect();
        all.sort_by_key(|s| s.ts_us);
        all
    }

    /// Runs `samples` through a fresh detector in batches of `batch`.
    fn run(cfg: &DetectConfig, samples: &[Sample], batch: usize) -> (Detector, Vec<AnomalyEvent>) {
        let mut d = Detector::default();
        let mut events = Vec::new();
        for chunk in samples.chunks(batch) {
            events.extend(d.observe(cfg, chunk));
        }
        check_lifecycles(&events);
        (d, events)
    }

    /// Ids are unique; per series and detector: opened, updated*, resolved, and again.
    fn check_lifecycles(events: &[AnomalyEvent]) {
        let mut ids = std::collections::BTreeSet::new();
        let mut open: BTreeMap<(SeriesKey, DetectorKind), String> = BTreeMap::new();
        for e in events {
            assert!(ids.insert(e.id.clone()), "duplicate id {}", e.id);
            assert!(e.id.starts_with(&e.anomaly_id), "{e:?}");
            let slot = (e.series.clone(), e.detector);
            match &e.change {
                AnomalyChange::Opened { .. } => {
                    assert!(open.insert(slot, e.anomaly_id.clone()).is_none(), "{e:?}");
                }
                AnomalyChange::Updated { .. } => {
                    assert_eq!(open.get(&slot), Some(&e.anomaly_id), "{e:?}");
                }
                AnomalyChange::Resolved { .. } => {
                    assert_eq!(open.remove(&slot), Some(e.anomaly_id.clone()), "{e:?}");
                }
            }
        }
    }

    fn opened<'a>(
        events: &'a [AnomalyEvent],
        series: &SeriesKey,
        detector: DetectorKind,
    ) -> Vec<&'a AnomalyEvent> {
        events
            .iter()
            .filter(|e| &e.series == series && e.detector == detector)
            .filter(|e| matches!(e.change, AnomalyChange::Opened { .. }))
            .collect()
    }

    /// Four power machines, four hashrate machines (one model) and four temperature sensors.
    fn quiet_site(rng: &mut Rng, n: usize, noise: f64) -> Vec<Sample> {
        let mut streams = Vec::new();
        for i in 0..4 {
            let id = format!("m{i}");
            let power = key(SeriesKind::MachinePower, &id);
            streams.push(series(rng, &power, Some("s19"), n, noise, |_| 3250.0));
            let hash = key(SeriesKind::MachineHashrate, &id);
            streams.push(series(rng, &hash, Some("s19"), n, noise, |_| 110e12));
            let temp = key(SeriesKind::Temperature, &format!("t{i}"));
            streams.push(series(rng, &temp, None, n, noise, |_| 25.0 + i as f64));
        }
        merged(streams)
    }

    #[test]
    fn a_noisy_flat_site_for_two_hours_opens_nothing() {
        let cfg = DetectConfig::default();
        let instant = DetectConfig {
            min_duration: Duration::ZERO,
            clear_after: Duration::ZERO,
            ..DetectConfig::default()
        };
        let n = (2 * 60 * MIN / STEP) as usize;
        let mut raw = BTreeMap::<DetectorKind, usize>::new();
        for seed in 1..=10 {
            let feed = quiet_site(&mut Rng::new(seed), n, 0.03);
            let (_, events) = run(&cfg, &feed, 64);
            assert!(events.is_empty(), "seed {seed}: {:#?}", &events[..1]);
            // The same feed without the minimum duration: what it protects against.
            for e in run(&instant, &feed, 64).1 {
                if matches!(e.change, AnomalyChange::Opened { .. }) {
                    *raw.entry(e.detector).or_default() += 1;
                }
            }
        }
        println!(
            "FIGURE quiet: 10 seeds × 12 series × {n} samples (2 h, σ 3 %): 0 anomalies; \
             with min_duration = 0 it would open {raw:?}"
        );
    }

    #[test]
    fn power_creeping_up_15_percent_in_30_min_is_caught_by_drift_alone() {
        let cfg = DetectConfig::default();
        let learn = (60 * MIN / STEP) as usize;
        let ramp = (30 * MIN / STEP) as usize;
        let n = learn + 2 * ramp;
        let m0 = key(SeriesKind::MachinePower, "m0");
        let mut delays = Vec::new();
        for seed in 1..=10 {
            let rng = &mut Rng::new(seed);
            let mut streams = vec![series(rng, &m0, Some("s19"), n, 0.03, |k| {
                let r = k.saturating_sub(learn).min(ramp) as f64 / ramp as f64;
                3250.0 * (1.0 + 0.15 * r)
            })];
            for id in ["m1", "m2", "m3"] {
                let peer = key(SeriesKind::MachinePower, id);
                streams.push(series(rng, &peer, Some("s19"), n, 0.03, |_| 3250.0));
            }
            let (_, events) = run(&cfg, &merged(streams), 100);
            let drift = opened(&events, &m0, DetectorKind::Drift);
            let [first] = drift[..] else {
                panic!("seed {seed}: one drift anomaly expected: {events:#?}");
            };
            let ramp_start = T0 + learn as i64 * STEP;
            let delay = first.ts_us - ramp_start;
            assert!(
                (0..=ramp as i64 * STEP).contains(&delay),
                "seed {seed}: drift opened {delay} µs into the ramp"
            );
            delays.push(delay / STEP);
            assert!(
                events.iter().all(|e| e.detector == DetectorKind::Drift),
                "seed {seed}: the rolling z and the 25 % peer threshold do not see it: {events:#?}"
            );
        }
        println!(
            "FIGURE drift: +15 % over 30 min (180 samples): detected by drift in 10/10 seeds \
             after {delays:?} samples into the ramp; zscore/peer 0/10"
        );
    }

    /// Four machines of one model at 110 TH/s; m0 halves after an hour.
    fn halving(seed: u64, after: usize) -> (Vec<Sample>, usize) {
        let rng = &mut Rng::new(seed);
        let learn = (60 * MIN / STEP) as usize;
        let n = learn + after;
        let m0 = key(SeriesKind::MachineHashrate, "m0");
        let mut streams = vec![series(rng, &m0, Some("s19"), n, 0.03, |k| {
            if k < learn { 110e12 } else { 55e12 }
        })];
        for id in ["m1", "m2", "m3"] {
            let peer = key(SeriesKind::MachineHashrate, id);
            streams.push(series(rng, &peer, Some("s19"), n, 0.03, |_| 110e12));
        }
        (merged(streams), learn)
    }

    #[test]
    fn a_halved_hashrate_is_caught_by_zscore_and_peer_within_min_duration_and_a_few_samples() {
        let cfg = DetectConfig::default();
        let m0 = key(SeriesKind::MachineHashrate, "m0");
        let limit = 120 * S + 3 * STEP;
        let mut figures = BTreeMap::<DetectorKind, Vec<i64>>::new();
        for seed in 1..=10 {
            let (feed, learn) = halving(seed, 180);
            let step_ts = T0 + learn as i64 * STEP;
            let (_, events) = run(&cfg, &feed, 37);
            for detector in [
                DetectorKind::ZScore,
                DetectorKind::Peer,
                DetectorKind::Drift,
            ] {
                let found = opened(&events, &m0, detector);
                let Some(first) = found.first() else {
                    panic!("seed {seed}: no {detector} anomaly: {events:#?}");
                };
                let delay = first.ts_us - step_ts;
                if detector != DetectorKind::Drift {
                    assert!(
                        (0..=limit).contains(&delay),
                        "seed {seed}: {detector} after {delay} µs"
                    );
                }
                figures.entry(detector).or_default().push(delay / STEP);
            }
            assert!(
                events.iter().all(|e| e.series == m0),
                "seed {seed}: the healthy peers stay quiet: {events:#?}"
            );
        }
        println!(
            "FIGURE halving: detected 10/10 seeds, delay in samples after the step \
             (min_duration = 12): {figures:?}"
        );
    }

    /// Four temperature sensors; `stuck` of them repeat their last value after an hour.
    fn sensors(seed: u64, stuck: usize, n: usize) -> (Vec<Sample>, usize) {
        let rng = &mut Rng::new(seed);
        let learn = (60 * MIN / STEP) as usize;
        let mut streams = Vec::new();
        for i in 0..4 {
            let t = key(SeriesKind::Temperature, &format!("t{i}"));
            let mut s = series(rng, &t, None, n, 0.03, |_| 28.0 + i as f64);
            if i < stuck {
                let frozen = s[learn - 1].value;
                s[learn..].iter_mut().for_each(|x| x.value = frozen);
            }
            streams.push(s);
        }
        (merged(streams), learn)
    }

    #[test]
    fn a_stuck_sensor_among_varying_ones_is_caught_and_a_flat_site_is_not() {
        let cfg = DetectConfig::default();
        let t0 = key(SeriesKind::Temperature, "t0");
        let mut delays = Vec::new();
        for seed in 1..=10 {
            let (feed, learn) = sensors(seed, 1, 500);
            let (_, events) = run(&cfg, &feed, 50);
            let stuck: Vec<_> = events
                .iter()
                .filter(|e| e.detector == DetectorKind::Stuck)
                .collect();
            assert_eq!(stuck.len(), 1, "seed {seed}: {events:#?}");
            assert_eq!(stuck[0].series, t0);
            let AnomalyChange::Opened {
                value, expected, ..
            } = stuck[0].change
            else {
                panic!("{stuck:?}");
            };
            assert!((value - 28.0).abs() < 5.0 && (expected - 29.5).abs() < 5.0);
            // The frozen value is the last real one: the run is 30 at the 29th repeat.
            let delay = (stuck[0].ts_us - (T0 + learn as i64 * STEP)) / STEP;
            assert_eq!(delay, 28 + 12, "seed {seed}");
            delays.push(delay);
        }
        // Every sensor of the site freezes: nothing to compare with, nothing alarms.
        let (feed, _) = sensors(1, 4, 500);
        let (_, events) = run(&cfg, &feed, 50);
        assert!(
            events.iter().all(|e| e.detector != DetectorKind::Stuck),
            "{events:#?}"
        );
        println!(
            "FIGURE stuck: 1 stuck among 4 caught 10/10 seeds, {delays:?} samples after it \
             froze (stuck_samples 30 + min_duration 12 − 2); all frozen: 0 stuck anomalies"
        );
    }

    #[test]
    fn a_spike_or_burst_shorter_than_min_duration_opens_nothing() {
        let cfg = DetectConfig::default();
        let n = (2 * 60 * MIN / STEP) as usize;
        for (factor, len) in [(10.0, 1), (0.0, 1), (3.0, 5), (0.5, 11)] {
            for seed in 1..=5 {
                let rng = &mut Rng::new(seed);
                let at = n / 2;
                let m0 = key(SeriesKind::MachinePower, "m0");
                let mut streams = vec![series(rng, &m0, Some("s19"), n, 0.03, |k| {
                    if (at..at + len).contains(&k) {
                        3250.0 * factor
                    } else {
                        3250.0
                    }
                })];
                for id in ["m1", "m2", "m3"] {
                    let peer = key(SeriesKind::MachinePower, id);
                    streams.push(series(rng, &peer, Some("s19"), n, 0.03, |_| 3250.0));
                }
                let (_, events) = run(&cfg, &merged(streams), 64);
                assert!(
                    events.is_empty(),
                    "×{factor} for {len} samples, seed {seed}: {events:#?}"
                );
            }
        }
    }

    #[test]
    fn a_condition_that_clears_resolves_once_with_its_duration() {
        let cfg = DetectConfig::default();
        let learn = (60 * MIN / STEP) as usize;
        let high = (10 * MIN / STEP) as usize;
        let n = learn + high + 60;
        let m0 = key(SeriesKind::MachinePower, "m0");
        for seed in 1..=10 {
            let rng = &mut Rng::new(seed);
            let mut streams = vec![series(rng, &m0, Some("s19"), n, 0.03, |k| {
                if (learn..learn + high).contains(&k) {
                    3250.0 * 1.4
                } else {
                    3250.0
                }
            })];
            for id in ["m1", "m2", "m3"] {
                let peer = key(SeriesKind::MachinePower, id);
                streams.push(series(rng, &peer, Some("s19"), n, 0.03, |_| 3250.0));
            }
            let (_, events) = run(&cfg, &merged(streams), 64);
            let peer: Vec<_> = events
                .iter()
                .filter(|e| e.series == m0 && e.detector == DetectorKind::Peer)
                .collect();
            let step = T0 + learn as i64 * STEP;
            // The median of the last 5 turns at the 3rd sample, both ways.
            let (start, end) = (step + 2 * STEP, step + (high as i64 + 2) * STEP);
            let opened = peer.first().map(|e| (&e.change, e.ts_us));
            assert!(
                matches!(opened, Some((AnomalyChange::Opened { started_us, .. }, ts))
                    if *started_us == start && ts == start + 120 * S),
                "seed {seed}: {peer:#?}"
            );
            let resolved: Vec<_> = peer
                .iter()
                .filter(|e| matches!(e.change, AnomalyChange::Resolved { .. }))
                .collect();
            assert_eq!(resolved.len(), 1, "seed {seed}: {peer:#?}");
            assert_eq!(resolved[0].ts_us, end + 120 * S);
            assert_eq!(
                resolved[0].change,
                AnomalyChange::Resolved {
                    started_us: start,
                    ended_us: end,
                    duration_us: 10 * MIN,
                    peak_score: match resolved[0].change {
                        AnomalyChange::Resolved { peak_score, .. } => peak_score,
                        _ => f64::NAN,
                    },
                    reason: ResolveReason::Cleared,
                }
            );
        }
        println!(
            "FIGURE clear: +40 % for 10 min: peer opens 14 samples after the step, resolves \
             once, duration exactly 600 s, 10/10 seeds"
        );
    }

    /// A site with a halving, a power step and a stuck sensor: many events of every kind.
    fn busy_site(seed: u64) -> Vec<Sample> {
        let (mut feed, _) = halving(seed, 480);
        let (temps, _) = sensors(seed + 100, 1, 840);
        let rng = &mut Rng::new(seed + 200);
        for id in ["m0", "m1", "m2", "m3"] {
            let power = key(SeriesKind::MachinePower, id);
            feed.extend(series(rng, &power, Some("s19"), 840, 0.03, |k| {
                if id == "m2" && (400..500).contains(&k) {
                    4200.0
                } else {
                    3250.0
                }
            }));
        }
        feed.extend(temps);
        merged(vec![feed])
    }

    #[test]
    fn a_restart_from_a_json_snapshot_gives_the_same_events_as_an_uninterrupted_run() {
        let cfg = DetectConfig::default();
        let feed = busy_site(7);
        let (whole, all) = run(&cfg, &feed, 50);
        let kinds: std::collections::BTreeSet<_> = all.iter().map(|e| e.detector).collect();
        assert_eq!(
            kinds.len(),
            4,
            "the scenario exercises every detector: {kinds:?}"
        );
        assert!(all.len() >= 10, "{all:#?}");
        for batch in [1, 333, feed.len()] {
            assert_eq!(run(&cfg, &feed, batch).1, all, "batch size {batch}");
        }
        for cut in [1, 997, feed.len() / 2, feed.len() - 3] {
            let mut first = Detector::default();
            let mut events = first.observe(&cfg, &feed[..cut]);
            let json = serde_json::to_string(&first).expect("serialize");
            let mut second: Detector = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(second, first, "the snapshot is exact");
            events.extend(second.observe(&cfg, &feed[cut..]));
            assert_eq!(events, all, "cut at {cut}");
            assert_eq!(second, whole, "cut at {cut}");
        }
        for s in whole.series.values() {
            assert!(s.values.len() <= cfg.window, "the ring is bounded");
        }
        println!(
            "FIGURE replay: {} events over {} samples identical across batch sizes 1/50/333/all \
             and JSON restarts at 4 cuts; snapshot {} bytes for {} series",
            all.len(),
            feed.len(),
            serde_json::to_string(&whole).map_or(0, |j| j.len()),
            whole.series_count()
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_event_ids() {
        let cfg = DetectConfig::default();
        let feed = busy_site(3);
        let a = run(&cfg, &feed, 64).1;
        let b = run(&cfg, &feed, 10).1;
        let ids = |events: &[AnomalyEvent]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        let learn = 60 * MIN / STEP;
        let step = T0 + learn * STEP;
        let m0 = key(SeriesKind::MachineHashrate, "m0");
        let peer = opened(&a, &m0, DetectorKind::Peer);
        let opened_at = step + 14 * STEP;
        assert_eq!(
            peer.first().map(|e| e.id.as_str()),
            Some(format!("anomaly:site-a:machine_hashrate:m0:peer:{opened_at}:opened").as_str()),
            "{peer:#?}"
        );
        // A different feed gives different ids for its own anomalies.
        let c = run(&cfg, &busy_site(4), 64).1;
        assert_ne!(ids(&a), ids(&c));
    }

    #[test]
    fn a_silent_series_is_forgotten_and_its_anomalies_resolve() {
        let cfg = DetectConfig::default();
        let (mut feed, learn) = halving(5, 60);
        let m0 = key(SeriesKind::MachineHashrate, "m0");
        let last = feed.iter().map(|s| s.ts_us).max().unwrap_or(T0);
        // m1 keeps talking for two more hours; the others fall silent.
        let m1 = key(SeriesKind::MachineHashrate, "m1");
        let rng = &mut Rng::new(9);
        let more = series(rng, &m1, Some("s19"), 720, 0.03, |_| 110e12);
        feed.extend(more.into_iter().map(|mut s| {
            s.ts_us += last - T0 + STEP;
            s
        }));
        let (d, events) = run(&cfg, &feed, 100);
        assert_eq!(d.series_count(), 1);
        let forgotten: Vec<_> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.change,
                    AnomalyChange::Resolved {
                        reason: ResolveReason::Forgotten,
                        ..
                    }
                )
            })
            .collect();
        assert!(!forgotten.is_empty(), "{events:#?}");
        let m0_last = T0 + (learn as i64 + 59) * STEP;
        for e in forgotten {
            assert_eq!(e.series, m0);
            assert_eq!(e.ts_us, m0_last + 60 * MIN);
        }
    }

    #[test]
    fn samples_too_soon_too_old_or_not_finite_are_ignored() {
        let cfg = DetectConfig::default();
        let t = key(SeriesKind::Temperature, "t0");
        let at = |ts_us: i64, value: f64| Sample {
            key: t.clone(),
            peer_group: None,
            ts_us,
            value,
        };
        let mut feed: Vec<Sample> = (0..60).map(|k| at(T0 + k * S, 25.0)).collect();
        feed.push(at(T0 + 100 * S, f64::NAN));
        let mut d = Detector::default();
        d.observe(&cfg, &feed);
        d.observe(&cfg, &[at(T0 + 30 * S, 99.0)]);
        let s = &d.series[&t];
        assert_eq!(
            s.values.len(),
            6,
            "one sample per 10 s, the NaN and the old one dropped"
        );
        assert_eq!(s.last_ts_us, T0 + 50 * S);
        assert_eq!(s.run, 6);
    }

    #[test]
    fn config_defaults_validate_and_each_bad_value_names_its_key() {
        assert_eq!(DetectConfig::default().validate(), Ok(()));
        let base = DetectConfig::default;
        let cases: Vec<(DetectConfig, &str)> = vec![
            (
                DetectConfig {
                    window: 3,
                    ..base()
                },
                "window",
            ),
            (
                DetectConfig {
                    recent_samples: 61,
                    ..base()
                },
                "recent_samples",
            ),
            (
                DetectConfig {
                    alpha_slow: 0.0,
                    ..base()
                },
                "alpha_slow",
            ),
            (
                DetectConfig {
                    z_threshold: f64::NAN,
                    ..base()
                },
                "z_threshold",
            ),
            (
                DetectConfig {
                    drift_threshold: -0.1,
                    ..base()
                },
                "drift_threshold",
            ),
            (
                DetectConfig {
                    peer_threshold: 0.0,
                    ..base()
                },
                "peer_threshold",
            ),
            (
                DetectConfig {
                    update_step: 0.0,
                    ..base()
                },
                "update_step",
            ),
            (
                DetectConfig {
                    min_peers: 1,
                    ..base()
                },
                "min_peers",
            ),
            (
                DetectConfig {
                    stuck_samples: 1,
                    ..base()
                },
                "stuck_samples",
            ),
            (
                DetectConfig {
                    peer_stale: Duration::ZERO,
                    ..base()
                },
                "peer_stale",
            ),
            (
                DetectConfig {
                    rebaseline: Duration::ZERO,
                    ..base()
                },
                "rebaseline",
            ),
            (
                DetectConfig {
                    forget_after: Duration::from_secs(60),
                    ..base()
                },
                "forget_after",
            ),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate().map_err(|e| e.key);
            assert_eq!(err, Err(format!("pipelines.anomalies.{field}")));
        }
        let mut cfg = base();
        cfg.floors.machine_hashrate.abs = 0.0;
        assert_eq!(
            cfg.validate().map_err(|e| e.key),
            Err("pipelines.anomalies.floors.machine_hashrate.abs".into())
        );
        let parsed: DetectConfig = toml::from_str(
            "min_duration = \"3m\"\nwindow = 90\n[floors.temperature]\nabs = 2.0\nrel = 0.0\n",
        )
        .expect("toml");
        assert_eq!(parsed.min_duration, Duration::from_secs(180));
        assert_eq!(parsed.window, 90);
        assert_eq!(parsed.floors.temperature.abs, 2.0);
        assert_eq!(parsed.floors.machine_power, Floors::default().machine_power);
        assert!(toml::from_str::<DetectConfig>("windw = 3").is_err());
    }

    /// The peer reading by a pass over every series of the site (what the index replaces).
    fn peer_by_pass(d: &Detector, key: &SeriesKey, cfg: &DetectConfig, ts: i64) -> Option<Reading> {
        if key.kind == SeriesKind::Temperature {
            return None;
        }
        let s = d.series.get(key)?;
        let group = s.peer_group.as_deref()?;
        let own = s.recent_median(cfg.recent_samples)?;
        let others: Vec<f64> = pass(d, key, cfg, ts)
            .filter(|o| o.peer_group.as_deref() == Some(group))
            .filter_map(|o| o.recent_median(cfg.recent_samples))
            .collect();
        if others.len() + 1 < cfg.min_peers {
            return None;
        }
        Some(peer_reading(cfg, key.kind, own, median(others)?))
    }

    /// The stuck reading by a pass over every series of the site.
    fn stuck_by_pass(
        d: &Detector,
        key: &SeriesKey,
        cfg: &DetectConfig,
        ts: i64,
    ) -> Option<Reading> {
        if key.kind != SeriesKind::Temperature {
            return None;
        }
        let s = d.series.get(key)?;
        if s.run < cfg.stuck_samples {
            return None;
        }
        let others: Vec<&SeriesState> = pass(d, key, cfg, ts).collect();
        Some(Reading {
            holds: others.iter().any(|o| o.run < cfg.stuck_samples),
            value: s.values.back()?.0,
            expected: median(
                others
                    .iter()
                    .filter_map(|o| o.values.back())
                    .map(|v| v.0)
                    .collect(),
            )?,
            score: 1.0,
        })
    }

    /// The other series of `key`'s site and kind heard within `peer_stale` of `ts`.
    fn pass<'a>(
        d: &'a Detector,
        key: &'a SeriesKey,
        cfg: &DetectConfig,
        ts: i64,
    ) -> impl Iterator<Item = &'a SeriesState> + 'a {
        let since = ts.saturating_sub(Timing::of(cfg).stale);
        d.series
            .iter()
            .filter(move |(k, o)| {
                k.site == key.site && k.kind == key.kind && k.id != key.id && o.last_ts_us >= since
            })
            .map(|(_, o)| o)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the feed (groups that change, series that go stale or are forgotten, equal
        /// values, restarts from JSON, a setting changed), every peer and stuck reading taken
        /// through the index equals the one a pass over the site's series gives.
        #[test]
        fn readings_through_the_index_equal_a_pass_over_the_site(
            feed in proptest::collection::vec(
                (0..2usize, 0..3usize, 0..6usize, 0..3usize, 0..4u8, 1..40i64, 0..40u8),
                1..300,
            )
        ) {
            let mut cfg = DetectConfig {
                window: 4,
                recent_samples: 2,
                stuck_samples: 3,
                min_peers: 2,
                peer_stale: Duration::from_secs(60),
                forget_after: Duration::from_secs(150),
                ..DetectConfig::default()
            };
            let kinds = [
                SeriesKind::MachinePower,
                SeriesKind::MachineHashrate,
                SeriesKind::Temperature,
            ];
            let groups = [None, Some("a"), Some("b")];
            let mut d = Detector::default();
            let mut ts = T0;
            for (site, kind, id, group, value, gap, action) in feed {
                ts += gap * STEP / 4;
                let sample = Sample {
                    key: SeriesKey {
                        site: format!("s{site}"),
                        kind: kinds[kind],
                        id: format!("m{id}"),
                    },
                    peer_group: groups[group].map(str::to_string),
                    ts_us: ts,
                    value: f64::from(value) * 100.0,
                };
                d.observe(&cfg, &[sample]);
                match action {
                    0 => {
                        let json = serde_json::to_string(&d).expect("json");
                        d = serde_json::from_str(&json).expect("json");
                    }
                    1 => cfg.recent_samples = 1 + cfg.recent_samples % 3,
                    _ => {}
                }
                d.neighbours.ensure(&cfg, d.series.iter());
                let t = Timing::of(&cfg);
                let keys: Vec<SeriesKey> = d.series.keys().cloned().collect();
                for key in &keys {
                    for at in [ts, ts + 30 * S, ts + 90 * S] {
                        let mine = neighbours::member(key, &d.series[key], &cfg);
                        let peer = d.peer(key, mine.as_ref(), &cfg, &t, at);
                        let stuck = d.stuck(key, mine.as_ref(), &cfg, &t, at);
                        let by_pass = peer_by_pass(&d, key, &cfg, at);
                        proptest::prop_assert_eq!(peer, by_pass, "peer {:?} at {}", key, at);
                        let by_pass = stuck_by_pass(&d, key, &cfg, at);
                        proptest::prop_assert_eq!(stuck, by_pass, "stuck {:?} at {}", key, at);
                    }
                }
            }
        }
    }
}
