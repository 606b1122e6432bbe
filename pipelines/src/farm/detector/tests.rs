//! The detector's decisions on seeded feeds: each detector opening, updating and resolving
//! as the module's rules say, replay from a snapshot deciding the same, and the settings' checks.

use std::time::Duration;

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
fn stuck_by_pass(d: &Detector, key: &SeriesKey, cfg: &DetectConfig, ts: i64) -> Option<Reading> {
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
