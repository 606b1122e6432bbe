//! A seeded hour of a simulated farm (two sites, 10 s between readings, published as fast as
//! the bus takes them) through the real pipelines: without faults it raises no anomaly and no
//! violation; with injected faults — a machine's power drifting up 15 %, a hashrate halving, a
//! stuck sensor, a site over its allocation for 10 minutes, a hot aisle over 40 °C, each
//! twice — every fault is detected, and the minute it was detected, recall per fault kind and
//! precision are printed (`cargo nextest run --workspace -E 'test(/^farm_faults::/)' --no-capture`).

use crate::common;

use std::time::Duration;

use adit_bus::publish::Outgoing;
use adit_bus::registry::Registry;
use adit_ingest::simulate::faults::Fault;
use adit_ingest::simulate::{Farm, SimConfig, register};
use chrono::{DateTime, Utc};
use common::*;

const TICKS: i64 = 360;
const STEP_S: i64 = 10;

/// An opened anomaly or violation.
#[derive(Debug, Clone)]
struct Detection {
    table: &'static str,
    site: String,
    subject: String,
    what: String,
    started: DateTime<Utc>,
    ts: DateTime<Utc>,
}

fn faults() -> Vec<Fault> {
    let m = |minutes: u64| Duration::from_secs(60 * minutes);
    let s = |i: usize| format!("site-0{i}");
    vec![
        Fault::PowerDrift {
            site: s(1),
            machine: "m-002".into(),
            at: m(15),
            ramp: m(20),
            pct: 15.0,
        },
        Fault::PowerDrift {
            site: s(2),
            machine: "m-005".into(),
            at: m(20),
            ramp: m(15),
            pct: 15.0,
        },
        Fault::HashrateDrop {
            site: s(1),
            machine: "m-003".into(),
            at: m(15),
            factor: 0.5,
        },
        Fault::HashrateDrop {
            site: s(2),
            machine: "m-007".into(),
            at: m(25),
            factor: 0.5,
        },
        Fault::SensorStuck {
            site: s(1),
            sensor: "temp-01".into(),
            at: m(20),
        },
        Fault::SensorStuck {
            site: s(2),
            sensor: "temp-02".into(),
            at: m(30),
        },
        Fault::OverAllocation {
            site: s(1),
            at: m(40),
            duration: m(10),
            pct: 110.0,
        },
        Fault::OverAllocation {
            site: s(2),
            at: m(45),
            duration: m(10),
            pct: 112.0,
        },
        Fault::HotAisle {
            site: s(1),
            sensor: "temp-02".into(),
            at: m(52),
            duration: m(5),
            temp_c: 42.0,
        },
        Fault::HotAisle {
            site: s(2),
            sensor: "temp-03".into(),
            at: m(30),
            duration: m(6),
            temp_c: 43.0,
        },
    ]
}

/// Whether `d` is what `fault` should raise.
fn detects(fault: &Fault, d: &Detection) -> bool {
    let same = d.site == fault.site() && fault.subject().is_none_or(|s| s == d.subject);
    same && match fault {
        Fault::PowerDrift { .. } => d.what.starts_with("machine_power"),
        Fault::HashrateDrop { .. } => d.what.starts_with("machine_hashrate"),
        Fault::SensorStuck { .. } => d.what == "temperature/stuck",
        Fault::OverAllocation { .. } => d.what == "power_allocation",
        Fault::HotAisle { .. } => d.what == "temperature",
    }
}

/// Whether `d` is explained by `fault`: same site, the fault's device (or any, for a
/// site-wide fault), while it lasts (and a few minutes after).
fn explained(fault: &Fault, d: &Detection, t0: DateTime<Utc>) -> bool {
    let (from, to) = fault.window();
    let from = t0 + chrono::Duration::from_std(from).unwrap();
    let to =
        to.map(|to| t0 + chrono::Duration::from_std(to).unwrap() + chrono::Duration::minutes(5));
    d.site == fault.site()
        && fault.subject().is_none_or(|s| s == d.subject)
        && d.ts >= from
        && to.is_none_or(|to| d.started <= to)
}

/// Publishes an hour of `farm` starting at `t0`, then waits until the anomalies and
/// violations pipelines have committed all of it; returns what they opened in that hour.
async fn run_hour(sim: SimConfig, t0: DateTime<Utc>) -> (Vec<Detection>, App, std::path::PathBuf) {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap().keep();
    let (publisher, js) = publisher(&nats).await;
    adit_bus::ensure_buckets(&js, 1).await.unwrap();
    let mut farm = Farm::new(sim);
    register(&farm, &Registry::open(js.clone()).await.unwrap(), "test")
        .await
        .unwrap();
    let app = App::start(&nats.url(), &dir, "pipelines", "");
    for chunk in 0..TICKS / 30 {
        let mut msgs = Vec::new();
        for k in chunk * 30..chunk * 30 + 30 {
            let events = farm.tick(t0 + chrono::Duration::seconds(k * STEP_S));
            msgs.extend(events.iter().map(Outgoing::event));
        }
        publisher.publish_all(msgs).await.unwrap();
    }
    let stream = js.get_stream("TELEMETRY").await.unwrap();
    eventually(
        Duration::from_secs(300),
        "the farm pipelines to catch up",
        || {
            let stream = stream.clone();
            async move {
                let mut done = true;
                for name in [
                    "adit-violations-telemetry",
                    "adit-anomalies-telemetry",
                    "adit-energy-energy",
                ] {
                    match stream
                        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(name)
                        .await
                    {
                        // A consumer the pipeline re-creates between the two calls is
                        // not found by the second: not caught up yet.
                        Ok(mut c) => match c.info().await {
                            Ok(info) => {
                                done &= info.num_pending == 0 && info.num_ack_pending == 0;
                            }
                            Err(_) => done = false,
                        },
                        Err(_) => done = false,
                    }
                }
                done
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = t0 + chrono::Duration::seconds(TICKS * STEP_S);
    let mut found = Vec::new();
    let root = dir.join("tables");
    let have = |t: &str| root.join(t).join("_delta_log").exists();
    let ts = |s: &str| format!("CAST({s} AS BIGINT) AS {s}_us");
    if have("violations") {
        let sql = format!(
            "SELECT site, subject, kind, {}, {} FROM violations WHERE event = 'opened' AND ts <= to_timestamp_micros({})",
            ts("started"),
            ts("ts"),
            end.timestamp_micros()
        );
        for b in query(&root, &["violations"], &sql).await {
            let (site, subject, kind) = (
                strings(&b, "site"),
                strings(&b, "subject"),
                strings(&b, "kind"),
            );
            let (started, at) = (ints(&b, "started_us"), ints(&b, "ts_us"));
            for i in 0..b.num_rows() {
                found.push(Detection {
                    table: "violations",
                    site: site[i].clone(),
                    subject: subject[i].clone(),
                    what: kind[i].clone(),
                    started: DateTime::from_timestamp_micros(started[i]).unwrap(),
                    ts: DateTime::from_timestamp_micros(at[i]).unwrap(),
                });
            }
        }
    }
    if have("anomalies") {
        let sql = format!(
            "SELECT site, subject, series, detector, {}, {} FROM anomalies WHERE event = 'opened' AND ts <= to_timestamp_micros({})",
            ts("started"),
            ts("ts"),
            end.timestamp_micros()
        );
        for b in query(&root, &["anomalies"], &sql).await {
            let (site, subject) = (strings(&b, "site"), strings(&b, "subject"));
            let (series, detector) = (strings(&b, "series"), strings(&b, "detector"));
            let (started, at) = (ints(&b, "started_us"), ints(&b, "ts_us"));
            for i in 0..b.num_rows() {
                found.push(Detection {
                    table: "anomalies",
                    site: site[i].clone(),
                    subject: subject[i].clone(),
                    what: format!("{}/{}", series[i], detector[i]),
                    started: DateTime::from_timestamp_micros(started[i]).unwrap(),
                    ts: DateTime::from_timestamp_micros(at[i]).unwrap(),
                });
            }
        }
    }
    drop(nats);
    (found, app, root)
}

fn sim(faults: Vec<Fault>) -> SimConfig {
    SimConfig {
        seed: 7,
        sites: 2,
        machines_per_site: 10,
        sensors_per_site: 3,
        grid_every: 0,
        faults,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_without_faults_raises_nothing() {
    // From ten minutes before a whole hour, so that hour's first ten minutes and 50 minutes of
    // the next are in the run: the first hour closes whatever the time of day.
    let hour = chrono::DurationRound::duration_trunc(
        Utc::now() - chrono::Duration::hours(2),
        chrono::Duration::hours(1),
    )
    .unwrap();
    let t0 = hour - chrono::Duration::minutes(10);
    let (found, app, root) = run_hour(sim(vec![]), t0).await;
    assert!(found.is_empty(), "{found:#?}\nlog:\n{}", app.log());

    // Settlement intervals and hours are exactly the sums of their machine minutes.
    for table in ["energy_settlement", "energy_1h"] {
        let sql = format!(
            "SELECT p.scope, p.subject, p.period_start, p.energy_wh AS period_wh, \
                    SUM(m.energy_wh) AS minutes_wh, COUNT(*) AS n \
             FROM {table} p JOIN machine_energy_1m m \
               ON m.site = p.site AND (p.scope = 'site' OR m.machine = p.subject) \
              AND m.minute >= p.period_start AND m.minute < p.period_end \
             GROUP BY p.scope, p.subject, p.period_start, p.energy_wh"
        );
        let batches = query(&root, &[table, "machine_energy_1m"], &sql).await;
        let mut checked = 0;
        for b in &batches {
            let period = b.column_by_name("period_wh").unwrap();
            let minutes = b.column_by_name("minutes_wh").unwrap();
            let (period, minutes) = (
                arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(period),
                arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(minutes),
            );
            for i in 0..b.num_rows() {
                let (p, m) = (period.value(i), minutes.value(i));
                assert!(
                    (p - m).abs() < 1e-6 * m.max(1.0),
                    "{table} row {i}: {p} vs {m}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 3, "{table}: {checked} periods checked");
        println!("{table}: {checked} periods equal the sum of their minutes");
    }
    // DuckDB reading the same files gets the same total.
    let sql = "SELECT round(sum(energy_wh), 3) FROM {t} WHERE scope = 'site'";
    let duck: f64 = duckdb_value(&root, "energy_settlement", sql)
        .await
        .parse()
        .unwrap();
    let ours = query(
        &root,
        &["energy_settlement"],
        &sql.replace("{t}", "energy_settlement"),
    )
    .await;
    let ours =
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(ours[0].column(0))
            .value(0);
    assert_eq!(duck, ours, "DuckDB and DataFusion total the same energy");
    assert!(ours > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_with_faults_detects_each_of_them() {
    let t0 = Utc::now() - chrono::Duration::minutes(65);
    let faults = faults();
    let (found, app, _) = run_hour(sim(faults.clone()), t0).await;
    let minute = |t: DateTime<Utc>| (t - t0).num_seconds() as f64 / 60.0;
    let mut recall: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for fault in &faults {
        let hit = found
            .iter()
            .filter(|d| detects(fault, d) && explained(fault, d, t0))
            .min_by_key(|d| d.ts);
        let entry = recall.entry(fault.kind()).or_default();
        entry.1 += 1;
        let (from, _) = fault.window();
        match hit {
            Some(d) => {
                entry.0 += 1;
                println!(
                    "{:16} {} {:8} from minute {:4.1}: detected at minute {:4.1} by {} {}",
                    fault.kind(),
                    fault.site(),
                    fault.subject().unwrap_or("(site)"),
                    from.as_secs_f64() / 60.0,
                    minute(d.ts),
                    d.table,
                    d.what
                );
            }
            None => println!(
                "{:16} {} {:?}: NOT detected",
                fault.kind(),
                fault.site(),
                fault.subject()
            ),
        }
    }
    let unexplained: Vec<&Detection> = found
        .iter()
        .filter(|d| !faults.iter().any(|f| explained(f, d, t0)))
        .collect();
    for (table, total) in [("anomalies", 0), ("violations", 0)]
        .map(|(t, _)| (t, found.iter().filter(|d| d.table == t).count()))
    {
        let wrong = unexplained.iter().filter(|d| d.table == table).count();
        println!(
            "{table}: {total} opened, {wrong} not explained by a fault: precision {:.2}",
            if total == 0 {
                1.0
            } else {
                (total - wrong) as f64 / total as f64
            }
        );
    }
    for (kind, (hit, all)) in &recall {
        let explained_by_kind = found
            .iter()
            .filter(|d| {
                faults
                    .iter()
                    .any(|f| f.kind() == *kind && explained(f, d, t0))
            })
            .count();
        let expected = found
            .iter()
            .filter(|d| {
                faults
                    .iter()
                    .any(|f| f.kind() == *kind && detects(f, d) && explained(f, d, t0))
            })
            .count();
        println!(
            "{kind}: recall {hit}/{all}; {explained_by_kind} detections during these faults, \
             {expected} of the kind expected"
        );
    }
    assert!(
        recall.values().all(|(hit, all)| hit == all),
        "every fault detected: {recall:?}\nfound: {found:#?}\nlog:\n{}",
        app.log()
    );
    assert!(unexplained.is_empty(), "false detections: {unexplained:#?}");
}
