//! The energy pipeline's tests: the gap rule's integration, and the pipeline over a feed.

use super::*;

fn r(s: i64, p: f64, e: Option<f64>) -> Reading {
    Reading {
        ts_us: s * 1_000_000,
        power_w: p,
        energy_wh: e,
        source: "meter".into(),
    }
}

#[test]
fn constant_power_for_a_minute_is_power_over_sixty() {
    let rs: Vec<_> = (0..=6).map(|i| r(i * 10, 3600.0, None)).collect();
    let m = integrate("s", "m", &rs, 0, MINUTE_US, 120_000_000);
    assert_eq!(m.len(), 1);
    assert!((m[0].energy_wh - 60.0).abs() < 1e-9, "{}", m[0].energy_wh);
    assert_eq!(m[0].quality, 1.0);
    assert_eq!(m[0].method, "power");
    assert_eq!(m[0].samples, 6);
}

#[test]
fn an_interval_across_a_minute_boundary_is_split_linearly() {
    // 0 W at 50 s rising to 1200 W at 70 s: 10 s at mean 300 W, then 10 s at mean 900 W.
    let rs = vec![r(50, 0.0, None), r(70, 1200.0, None)];
    let m = integrate("s", "m", &rs, 0, 2 * MINUTE_US, 120_000_000);
    assert_eq!(m.len(), 2);
    assert!((m[0].energy_wh - 300.0 * 10.0 / 3600.0).abs() < 1e-9);
    assert!((m[1].energy_wh - 900.0 * 10.0 / 3600.0).abs() < 1e-9);
}

#[test]
fn gaps_count_nothing_and_lower_quality() {
    let rs = vec![
        r(0, 1000.0, None),
        r(30, 1000.0, None),
        r(300, 1000.0, None),
    ];
    let m = integrate("s", "m", &rs, 0, 6 * MINUTE_US, 120_000_000);
    assert_eq!(m[0].covered_s, 30.0);
    assert!((m[0].quality - 0.5).abs() < 1e-9);
    assert!((m[0].energy_wh - 1000.0 * 30.0 / 3600.0).abs() < 1e-9);
    let total: f64 = m.iter().map(|x| x.energy_wh).sum();
    assert!((total - m[0].energy_wh).abs() < 1e-9);
}

#[test]
fn counters_are_differenced_and_resets_fall_back_to_power() {
    let rs = vec![
        r(0, 3600.0, Some(100.0)),
        r(60, 3600.0, Some(150.0)),
        r(120, 3600.0, Some(10.0)),
    ];
    let m = integrate("s", "m", &rs, 0, 2 * MINUTE_US, 120_000_000);
    assert!((m[0].energy_wh - 50.0).abs() < 1e-9);
    assert_eq!(m[0].method, "counter");
    assert!((m[1].energy_wh - 60.0).abs() < 1e-9);
    assert_eq!(m[1].method, "power");
}

#[test]
fn sites_sum_their_machines() {
    let rs: Vec<_> = (0..=6).map(|i| r(i * 10, 3600.0, None)).collect();
    let mut rows = integrate("s", "a", &rs, 0, MINUTE_US, 120_000_000);
    rows.extend(integrate("s", "b", &rs, 0, MINUTE_US, 120_000_000));
    let sites = site_minutes(&rows);
    assert_eq!(sites.len(), 1);
    assert!((sites[0].energy_wh - 120.0).abs() < 1e-9);
    assert!((sites[0].avg_power_w - 7200.0).abs() < 1e-9);
    assert_eq!(sites[0].machines, 2);
}

#[tokio::test]
async fn a_mining_machine_nothing_measures_is_estimated_from_its_streak_on() {
    use adit_bus::DecodedBatch;
    use adit_schemas::registry::{ChangeOp, Machine, Record, RegistryEntry, Site};
    use adit_schemas::{EnergyReading, MinerStatus};

    const T0: i64 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % MINUTE_US;
    let at = |s: i64| Utc.timestamp_micros(T0 + s * 1_000_000).unwrap();
    let put = |record: Record| {
        (
            0,
            AnyEvent::Registry(RegistryEntry {
                key: record.key(),
                op: ChangeOp::Put,
                by: "t".into(),
                at: at(0),
                record: Some(record),
            }),
        )
    };
    let machine = |id: &str| Record::Machine(Machine::new(id, "s1", "S19", 1e14, 3000.0));
    let registry = vec![
        put(Record::Site(Site::new("s1", 100.0))),
        put(machine("m1")),
        put(machine("m2")),
    ];
    let p = Energy::new(EnergyConfig::default(), PplnsConfig::default());
    let mut state = EnergyState::default();
    let mut rows = Vec::new();
    // m2 is metered from the start; m1 only reports its status, from 5 minutes in.
    for step in 0..15i64 {
        let mut energy = Vec::new();
        let mut miner = Vec::new();
        for s in (step * 60..step * 60 + 60).step_by(10) {
            energy.push((
                s as u64,
                AnyEvent::Energy(EnergyReading {
                    site: "s1".into(),
                    machine: "m2".into(),
                    ts: at(s),
                    power_w: 2000.0,
                    energy_wh: None,
                    source: EnergySource::Meter,
                }),
            ));
            if s >= 330 {
                miner.push((
                    s as u64,
                    AnyEvent::Miner(MinerStatus {
                        site: "s1".into(),
                        machine: "m1".into(),
                        ts: at(s),
                        hashrate_hs: 1e14,
                        temp_c: None,
                        fan_rpm: None,
                        power_w: None,
                        state: MinerState::Mining,
                    }),
                ));
            }
        }
        let batch = |kind, rows| DecodedBatch {
            rows: BTreeMap::from([(kind, rows)]),
            ..Default::default()
        };
        let registry = if step == 0 { registry.clone() } else { vec![] };
        let out = p
            .step(
                &mut state,
                StepInput {
                    now: at(step * 60 + 60),
                    ticks: vec!["close".into()],
                    inputs: vec![
                        batch(EventKind::Energy, energy),
                        batch(EventKind::Registry, registry),
                        batch(EventKind::Miner, miner),
                    ],
                },
            )
            .await
            .unwrap();
        for (table, batch) in &out.tables {
            if table == TABLE_MACHINE_ENERGY_1M {
                let sources = arrow::array::AsArray::as_string::<i32>(
                    batch.column_by_name("source").unwrap(),
                )
                .iter()
                .map(|s| s.unwrap_or_default().to_string())
                .collect::<Vec<_>>();
                let minutes = arrow::array::AsArray::as_primitive::<
                    arrow::datatypes::TimestampMicrosecondType,
                >(batch.column_by_name("minute").unwrap())
                .values()
                .to_vec();
                rows.extend(sources.into_iter().zip(minutes));
            }
        }
    }
    let estimated: Vec<i64> = rows
        .iter()
        .filter(|(s, _)| s == "estimate")
        .map(|(_, m)| (m - T0) / MINUTE_US)
        .collect();
    assert!(!estimated.is_empty(), "{rows:?}");
    // Its streak began at 5:30: minute 6 is the first it mined wholly.
    assert_eq!(estimated[0], 6, "{estimated:?}");
    assert!(
        estimated.windows(2).all(|w| w[1] == w[0] + 1),
        "{estimated:?}"
    );
    assert!(rows.iter().all(|(s, _)| s == "meter" || s == "estimate"));
}
