//! A stateful pipeline under SIGKILL (issue 6): the energy pipeline (watermarks and buffered
//! readings in its state, snapshotted only every few seconds) is killed at random moments and
//! restarted; its minutes come out identical, row for row, to an uninterrupted run over the
//! same stream.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use adit_bus::publish::Outgoing;
use adit_schemas::{AnyEvent, EnergyReading, EnergySource};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::*;
use rand::{Rng, SeedableRng};

const SITES: usize = 4;
const MACHINES: usize = 25;
const READINGS: usize = 600; // every 2 s for 20 minutes
/// Minutes final once the watermark (newest reading − 5 s grace) is max_gap (2 min) past
/// them: 17 of the 20.
const MINUTES: usize = 17;

fn readings(base: chrono::DateTime<chrono::Utc>) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for k in 0..READINGS {
        for s in 0..SITES {
            for m in 0..MACHINES {
                let watts = 2000.0 + (m * 37 + s * 11) as f64 + ((k * 7 + m) % 13) as f64 * 9.5;
                out.push(Outgoing::event(&AnyEvent::Energy(EnergyReading {
                    site: format!("site-{s}"),
                    machine: format!("m-{m:02}"),
                    ts: base + chrono::Duration::seconds(2 * k as i64),
                    power_w: watts,
                    energy_wh: (m % 2 == 0).then_some(k as f64 * watts / 1800.0),
                    source: EnergySource::Meter,
                })));
            }
        }
    }
    out
}

/// Every machine minute as comparable text, sorted.
async fn minutes(tables: &Path) -> Vec<String> {
    let batches = query(
        tables,
        &["machine_energy_1m"],
        "SELECT site, machine, CAST(minute AS BIGINT), CAST(round(energy_wh * 1000000) AS BIGINT), \
         samples, CAST(round(quality * 1000000) AS BIGINT), method \
         FROM machine_energy_1m ORDER BY 1, 2, 3",
    )
    .await;
    let mut out = Vec::new();
    for b in &batches {
        let text: Vec<_> = (0..b.num_columns())
            .map(|c| arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Utf8).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            out.push(
                text.iter()
                    .map(|c| c.as_string::<i32>().value(i).to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    out
}

/// Waits until every machine minute is there. On a busy machine the pipeline is slower (and
/// may lose its lease and replay), so what is waited on is progress: it fails once no new
/// minute has landed for `STALL`, not at a fixed time.
async fn wait_for_minutes(tables: &Path, app: &App) {
    const STALL: Duration = Duration::from_secs(240);
    let want = (SITES * MACHINES * MINUTES) as i64;
    let (mut seen, mut moved) = (-1, Instant::now());
    loop {
        let got = scalar(
            tables,
            &["machine_energy_1m"],
            "SELECT count(*) FROM machine_energy_1m",
        )
        .await;
        if got >= want {
            break;
        }
        if got > seen {
            (seen, moved) = (got, Instant::now());
        }
        assert!(
            moved.elapsed() < STALL,
            "{got} of {want} machine minutes, none new for {STALL:?}; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn energy_minutes_survive_sigkill_identical_to_an_uninterrupted_run() {
    let nats = NatsServer::start();
    let (publisher, _js) = publisher(&nats).await;
    let now = chrono::Utc::now();
    let base = now - chrono::Duration::minutes(40);
    let base = base
        - chrono::Duration::seconds(base.timestamp() % 60)
        - chrono::Duration::nanoseconds(base.timestamp_subsec_nanos() as i64);
    publisher.publish_all(readings(base)).await.unwrap();
    let root = tempfile::tempdir().unwrap();

    // The reference: one uninterrupted run.
    let clean_dir = root.path().join("clean");
    std::fs::create_dir_all(&clean_dir).unwrap();
    let mut clean = App::start(&nats.url(), &clean_dir, "pipelines", "");
    wait_for_minutes(&clean_dir.join("tables"), &clean).await;
    assert!(clean.terminate(), "clean exit; log:\n{}", clean.log());
    let reference = minutes(&clean_dir.join("tables")).await;
    assert_eq!(reference.len(), SITES * MACHINES * MINUTES);

    // The same stream again into fresh tables, killed at random moments.
    let dir = root.path().join("killed");
    std::fs::create_dir_all(&dir).unwrap();
    let tables = dir.join("tables");
    let mut app = App::start(&nats.url(), &dir, "pipelines", "");
    let mut rng = rand::rngs::StdRng::seed_from_u64(66);
    for kill in 1..=10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..2000))).await;
        app.kill();
        let so_far = scalar(
            &tables,
            &["machine_energy_1m"],
            "SELECT count(*) FROM machine_energy_1m",
        )
        .await;
        eprintln!("kill {kill}: {so_far} machine minutes so far");
        app.restart();
    }
    wait_for_minutes(&tables, &app).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = minutes(&tables).await;
    assert_eq!(
        killed.len(),
        reference.len(),
        "same number of machine minutes"
    );
    assert_eq!(killed, reference, "identical minutes");
    let sites = query(
        &tables,
        &["site_energy_1m"],
        "SELECT count(*), count(DISTINCT concat(site, CAST(minute AS VARCHAR))) FROM site_energy_1m",
    )
    .await;
    let (n, distinct) = (
        sites[0].column(0).as_primitive::<Int64Type>().value(0),
        sites[0].column(1).as_primitive::<Int64Type>().value(0),
    );
    assert_eq!(
        (n, distinct),
        ((SITES * MINUTES) as i64, (SITES * MINUTES) as i64),
        "site minutes once each"
    );
    assert!(app.terminate(), "clean exit; log:\n{}", app.log());
}
