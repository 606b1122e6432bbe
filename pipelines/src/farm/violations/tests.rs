//! The violation rules on a small seeded farm: each opening after its minimum, escalating and
//! resolving, silent and unknown machines, curtailment deadlines, and the state across a restart.

use super::*;
use adit_schemas::EnergySource;
use adit_schemas::registry::{Adapter, ChangeOp, Machine, Record, Sensor, Site};
use adit_schemas::time::from_micros;

const S: i64 = 1_000_000;
const T0: i64 = 1_800_000_000 * S;

fn put(record: Record, at_us: i64) -> RegistryEntry {
    RegistryEntry {
        key: record.key(),
        op: ChangeOp::Put,
        by: "test".into(),
        at: from_micros(at_us),
        record: Some(record),
    }
}

fn machine(id: &str) -> Record {
    Record::Machine(Machine::new(id, "s1", "S19", 1e14, 3000.0))
}

fn farm() -> Vec<RegistryEntry> {
    vec![
        put(Record::Site(Site::new("s1", 10.0)), T0),
        put(machine("m1"), T0),
        put(machine("m2"), T0),
        put(
            Record::Sensor(Sensor {
                id: "t1".into(),
                site: "s1".into(),
                kind: SensorKind::Temperature,
                adapter: Adapter::default(),
            }),
            T0,
        ),
    ]
}

fn power(machine: &str, w: f64) -> Reading {
    Reading::Power {
        site: "s1".into(),
        machine: machine.into(),
        source: EnergySource::Meter,
        power_w: w,
    }
}

fn temp(v: f64) -> Reading {
    Reading::Sensor {
        site: "s1".into(),
        sensor: "t1".into(),
        kind: SensorKind::Temperature,
        value: v,
    }
}

/// Runs `minutes` of readings every 10 s from `reading(t)`, one step per minute.
fn run(
    p: &Violations,
    state: &mut ViolationsState,
    from_s: i64,
    seconds: i64,
    reading: impl Fn(i64) -> Vec<Reading>,
) -> Vec<ViolationRow> {
    let mut rows = Vec::new();
    let mut seq = 0u64;
    for chunk in (from_s..from_s + seconds).step_by(60) {
        let mut batch = Vec::new();
        for t in (chunk..(chunk + 60).min(from_s + seconds)).step_by(10) {
            for r in reading(t) {
                seq += 1;
                batch.push((T0 + t * S, seq, r));
            }
        }
        rows.extend(p.observe(state, &[], batch, vec![], T0 + chunk * S + 60 * S));
    }
    rows
}

fn setup() -> (Violations, ViolationsState) {
    let p = Violations::new(ViolationsConfig::default());
    let mut state = ViolationsState::default();
    let entries = farm();
    let refs: Vec<&RegistryEntry> = entries.iter().collect();
    assert!(p.observe(&mut state, &refs, vec![], vec![], T0).is_empty());
    (p, state)
}

#[test]
fn a_normal_farm_raises_nothing() {
    let (p, mut state) = setup();
    let rows = run(&p, &mut state, 0, 3600, |_| {
        vec![power("m1", 3000.0), power("m2", 3000.0), temp(27.0)]
    });
    assert!(rows.is_empty(), "{rows:#?}");
}

#[test]
fn over_allocation_opens_after_the_minimum_escalates_and_resolves() {
    let (p, mut state) = setup();
    // 6 kW of 10 for 10 min, then 8.5 kW (warning, 85 %), then 10.5 kW (violation), back.
    let rows = run(&p, &mut state, 0, 3600, |t| {
        let w = match t {
            600..1200 => 4250.0,
            1200..1800 => 5250.0,
            _ => 3000.0,
        };
        vec![power("m1", w), power("m2", w), temp(27.0)]
    });
    let power_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == "power_allocation")
        .collect();
    let events: Vec<(&str, &str)> = power_rows
        .iter()
        .map(|r| (r.event.as_str(), r.severity.as_str()))
        .collect();
    assert_eq!(
        events,
        vec![
            ("opened", "warning"),
            ("updated", "violation"),
            ("resolved", "violation")
        ],
        "{power_rows:#?}"
    );
    let opened = power_rows[0];
    assert_eq!(opened.started, from_micros(T0 + 600 * S));
    assert_eq!(
        opened.ts,
        from_micros(T0 + 660 * S),
        "detected after min_duration"
    );
    assert_eq!(power_rows[2].peak, Some(10.5));
    assert_eq!(power_rows[2].duration_s, 1200.0);
    assert!(power_rows.iter().all(|r| r.id == opened.id));
    assert!(
        rows.iter().all(|r| r.kind == "power_allocation"),
        "{rows:#?}"
    );
}

#[test]
fn a_spike_shorter_than_the_minimum_opens_nothing() {
    let (p, mut state) = setup();
    let rows = run(&p, &mut state, 0, 600, |t| {
        let w = if (300..330).contains(&t) {
            6000.0
        } else {
            3000.0
        };
        vec![power("m1", w), power("m2", w), temp(27.0)]
    });
    assert!(rows.is_empty(), "{rows:#?}");
}

#[test]
fn heat_is_critical_then_an_emergency() {
    let (p, mut state) = setup();
    let rows = run(&p, &mut state, 0, 1800, |t| {
        let v = match t {
            300..600 => 37.0,
            600..900 => 41.0,
            _ => 27.0,
        };
        vec![power("m1", 3000.0), power("m2", 3000.0), temp(v)]
    });
    let seen: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.kind.as_str(), r.event.as_str(), r.severity.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("temperature", "opened", "critical"),
            ("temperature", "updated", "emergency"),
            ("temperature", "resolved", "emergency"),
        ]
    );
    assert_eq!(rows[1].limit, Some(40.0));
}

#[test]
fn cold_under_the_sites_minimum_is_a_warning_whose_peak_is_the_coldest() {
    let (p, mut state) = setup();
    // The default minimum is 10 °C: 8 °C, then 5.5 °C (colder by over a degree), then
    // 5.2 °C (not a degree colder: no row), then warm again.
    let rows = run(&p, &mut state, 0, 1800, |t| {
        let v = match t {
            300..600 => 8.0,
            600..800 => 5.5,
            800..900 => 5.2,
            _ => 27.0,
        };
        vec![power("m1", 3000.0), power("m2", 3000.0), temp(v)]
    });
    let seen: Vec<(&str, &str, &str, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                r.kind.as_str(),
                r.event.as_str(),
                r.severity.as_str(),
                r.peak,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("low_temperature", "opened", "warning", Some(8.0)),
            ("low_temperature", "updated", "warning", Some(5.5)),
            ("low_temperature", "resolved", "warning", Some(5.2)),
        ]
    );
    assert_eq!(rows[0].limit, Some(10.0));
    assert_eq!(rows[0].subject, "t1");
}

#[test]
fn a_silent_machine_opens_once_and_resolves_when_heard_again() {
    let (p, mut state) = setup();
    let rows = run(&p, &mut state, 0, 1800, |t| {
        let mut r = vec![power("m1", 3000.0), temp(27.0)];
        if !(300..900).contains(&t) {
            r.push(power("m2", 3000.0));
        }
        r
    });
    let silent: Vec<_> = rows.iter().filter(|r| r.kind == "silent_device").collect();
    assert!(silent.len() >= 2, "{rows:#?}");
    assert_eq!(silent[0].event, "opened");
    assert_eq!(silent[0].subject, "m2");
    // Last heard at 290 s; silent once more than 120 s have passed: at 420 s.
    assert_eq!(silent[0].ts, from_micros(T0 + 420 * S));
    assert_eq!(silent.last().unwrap().event, "resolved");
    // Estimated power keeps the site inside its allocation: no power row.
    assert!(rows.iter().all(|r| r.kind == "silent_device"), "{rows:#?}");
}

#[test]
fn a_curtailment_not_met_by_its_deadline_is_a_violation_until_met_or_lifted() {
    let (p, mut state) = setup();
    let signal = |at_s: i64, kind: GridSignalKind| GridSignal {
        site: "s1".into(),
        event_id: format!("dr-{at_s}"),
        kind,
        target_kw: (kind == GridSignalKind::Curtail).then_some(4.0),
        deadline: (kind == GridSignalKind::Curtail).then(|| from_micros(T0 + (at_s + 120) * S)),
        price_per_mwh: None,
        ts: from_micros(T0 + at_s * S),
    };
    let mut seq = 0;
    let mut rows = Vec::new();
    // 6 kW against a 4 kW target due at 180 s; from 300 s one machine sleeps (3 kW).
    for minute in 0..8 {
        let mut batch = Vec::new();
        for t in (minute * 60..minute * 60 + 60).step_by(10) {
            seq += 1;
            let m2 = if t >= 300 { 0.0 } else { 3000.0 };
            batch.push((T0 + t * S, seq, power("m1", 3000.0)));
            batch.push((T0 + t * S, seq + 1000, power("m2", m2)));
            batch.push((T0 + t * S, seq + 2000, temp(27.0)));
        }
        let signals = if minute == 1 {
            vec![(T0 + 60 * S, 1, signal(60, GridSignalKind::Curtail))]
        } else {
            vec![]
        };
        rows.extend(p.observe(
            &mut state,
            &[],
            batch,
            signals,
            T0 + minute * 60 * S + 60 * S,
        ));
    }
    let deadline: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == "curtailment_deadline")
        .collect();
    assert_eq!(deadline.len(), 2, "{rows:#?}");
    assert_eq!(deadline[0].event, "opened");
    assert_eq!(deadline[0].severity, "violation");
    assert_eq!(deadline[0].limit, Some(4.0));
    assert_eq!(deadline[0].value, Some(6.0));
    assert!(
        deadline[0].ts > from_micros(T0 + 180 * S) && deadline[0].ts <= from_micros(T0 + 200 * S)
    );
    assert_eq!(deadline[1].event, "resolved");
    // A normal signal lifts a target never met (a fresh site).
    let (p, mut state) = setup();
    let mut rows = Vec::new();
    let signals = vec![(T0 + 500 * S, 2, signal(500, GridSignalKind::Curtail))];
    let batch = |from: i64| -> Vec<(i64, u64, Reading)> {
        (from..from + 60)
            .step_by(10)
            .flat_map(|t| {
                [
                    (T0 + t * S, 1, power("m1", 3000.0)),
                    (T0 + t * S, 2, power("m2", 3000.0)),
                    (T0 + t * S, 3, temp(27.0)),
                ]
            })
            .collect()
    };
    for (i, from) in (480..1020).step_by(60).enumerate() {
        let sig = if i == 0 { signals.clone() } else { vec![] };
        let sig = if from == 840 {
            vec![(T0 + 840 * S, 3, signal(840, GridSignalKind::Normal))]
        } else {
            sig
        };
        rows.extend(p.observe(&mut state, &[], batch(from), sig, T0 + (from + 60) * S));
    }
    let events: Vec<&str> = rows
        .iter()
        .filter(|r| r.kind == "curtailment_deadline")
        .map(|r| r.event.as_str())
        .collect();
    assert_eq!(events, vec!["opened", "resolved"], "{rows:#?}");
}

#[test]
fn a_quiet_site_is_still_found_silent_in_processing_time() {
    let (p, mut state) = setup();
    let batch = vec![
        (T0, 1, power("m1", 3000.0)),
        (T0, 2, power("m2", 3000.0)),
        (T0, 3, temp(27.0)),
    ];
    assert!(p.observe(&mut state, &[], batch, vec![], T0).is_empty());
    let rows = p.observe(&mut state, &[], vec![], vec![], T0 + 600 * S);
    let subjects: Vec<&str> = rows
        .iter()
        .filter(|r| r.event == "opened")
        .map(|r| r.subject.as_str())
        .collect();
    assert_eq!(subjects, vec!["m1", "m2", "t1"], "{rows:#?}");
}

#[test]
fn unknown_devices_are_flagged_and_a_live_allocation_change_applies() {
    let (p, mut state) = setup();
    let rows = run(&p, &mut state, 0, 300, |_| {
        vec![
            power("m1", 3000.0),
            power("m2", 3000.0),
            temp(27.0),
            power("m9", 10.0),
        ]
    });
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        (rows[0].kind.as_str(), rows[0].subject.as_str()),
        ("unregistered_device", "m9")
    );
    // Allocation lowered from 10 to 6 kW: 6.01 kW is now over it.
    let lowered = put(Record::Site(Site::new("s1", 6.0)), T0 + 300 * S);
    p.observe(&mut state, &[&lowered], vec![], vec![], T0 + 300 * S);
    let rows = run(&p, &mut state, 300, 300, |_| {
        vec![
            power("m1", 3000.0),
            power("m2", 3000.0),
            temp(27.0),
            power("m9", 10.0),
        ]
    });
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        (rows[0].kind.as_str(), rows[0].severity.as_str()),
        ("power_allocation", "violation")
    );
}

#[test]
fn the_state_survives_a_round_trip_mid_violation() {
    let (p, mut a) = setup();
    let feed = |t: i64| {
        let w = if (100..700).contains(&t) {
            5500.0
        } else {
            3000.0
        };
        vec![power("m1", w), power("m2", w), temp(27.0)]
    };
    let mut b = a.clone();
    let whole = run(&p, &mut a, 0, 1200, feed);
    let mut first = run(&p, &mut b, 0, 360, feed);
    let mut restored: ViolationsState =
        serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
    first.extend(run(&p, &mut restored, 360, 840, feed));
    assert_eq!(whole, first);
    assert!(!whole.is_empty());
}

fn note(action: NoteAction, id: Option<&str>, at_us: i64) -> ViolationNote {
    ViolationNote {
        site: "s1".into(),
        action,
        id: id.map(str::to_string),
        kind: Some("noise".into()),
        severity: Some("warning".into()),
        subject: Some("m1".into()),
        note: "checked on site".into(),
        by: "ops".into(),
        ts: from_micros(at_us),
    }
}

#[test]
fn operators_open_and_resolve_violations_with_a_note() {
    let (p, mut state) = setup();
    let opened = apply_note(&mut state, &note(NoteAction::Open, None, T0)).unwrap();
    assert_eq!(
        (opened.source.as_str(), opened.kind.as_str()),
        ("manual", "noise")
    );
    let resolved = apply_note(
        &mut state,
        &note(NoteAction::Resolve, Some(&opened.id), T0 + 90 * S),
    )
    .unwrap();
    assert_eq!(resolved.event, "resolved");
    assert_eq!(resolved.duration_s, 90.0);
    // A violation the pipeline found, resolved by hand.
    let rows = run(&p, &mut state, 0, 300, |_| {
        vec![power("m1", 6000.0), power("m2", 3000.0), temp(27.0)]
    });
    let open = rows
        .iter()
        .find(|r| r.event == "opened")
        .expect("over 80 %");
    let by_hand = apply_note(
        &mut state,
        &note(NoteAction::Resolve, Some(&open.id), T0 + 300 * S),
    )
    .unwrap();
    assert_eq!(
        (by_hand.id.as_str(), by_hand.source.as_str()),
        (open.id.as_str(), "manual")
    );
    assert!(state.tracker.open_keys().next().is_none());
    assert!(apply_note(&mut state, &note(NoteAction::Resolve, Some("nope"), T0)).is_none());
}

#[test]
fn a_miner_whose_api_stops_is_silent_though_its_meter_reads_on() {
    let (p, mut state) = setup();
    let status = |online: bool| Reading::Miner {
        site: "s1".into(),
        machine: "m1".into(),
        power_w: None,
        mining: online,
        online,
    };
    let rows = run(&p, &mut state, 0, 900, |t| {
        let mut r = vec![power("m1", 3000.0), power("m2", 3000.0), temp(27.0)];
        match t {
            ..300 => r.push(status(true)),
            300 => r.push(status(false)),
            _ => {}
        }
        r
    });
    let opened: Vec<_> = rows.iter().filter(|r| r.event == "opened").collect();
    assert_eq!(opened.len(), 1, "{rows:#?}");
    assert_eq!(
        (opened[0].kind.as_str(), opened[0].subject.as_str()),
        ("silent_device", "m1")
    );
    // Last answered at 290 s: silent once more than 120 s have passed.
    assert_eq!(opened[0].ts, from_micros(T0 + 420 * S));
}
