//! Exactly-once under SIGKILL (issue 2): 200 000 events, the pipelines process killed at 12
//! random moments and restarted; every event ends up in its table exactly once.

use crate::common;

use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};

const EVENTS: usize = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (publisher, _js) = publisher(&nats).await;
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let msgs = telemetry(EVENTS, base);
    let producer = tokio::spawn(async move {
        for chunk in msgs.chunks(20_000) {
            publisher.publish_all(chunk.to_vec()).await.unwrap();
        }
    });

    let mut app = App::start(&nats.url(), dir.path(), "pipelines", "");
    let tables = dir.path().join("tables");
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut kills = 0;
    let mut last_count = 0;
    while kills < 12 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..2500))).await;
        app.kill();
        kills += 1;
        let landed = scalar(
            &tables,
            &["energy_readings"],
            "SELECT count(*) FROM energy_readings",
        )
        .await;
        eprintln!("kill {kills}: {landed} energy rows landed so far");
        last_count = landed;
        app.restart();
    }
    assert!(
        last_count > 0,
        "the pipeline made progress between kills; log:\n{}",
        app.log()
    );
    producer.await.unwrap();

    let expected_energy = (0..EVENTS).filter(|i| i % 4 != 3).count() as i64;
    let both = ["energy_readings", "sensor_readings"];
    let total_sql =
        "SELECT (SELECT count(*) FROM energy_readings) + (SELECT count(*) FROM sensor_readings)";
    // Waits on progress, not on the clock: on a busy machine the pipelines are slower (and
    // may lose their leases and replay); it fails once nothing new has landed for 240 s.
    let (mut seen, mut moved) = (-1, std::time::Instant::now());
    loop {
        let landed = scalar(&tables, &both, total_sql).await;
        if landed >= EVENTS as i64 {
            break;
        }
        if landed > seen {
            (seen, moved) = (landed, std::time::Instant::now());
        }
        let log = app.log();
        let tail: Vec<_> = log.lines().rev().take(40).collect();
        assert!(
            moved.elapsed() < Duration::from_secs(240),
            "not all events landed ({landed}), none new for 240 s; log tail:\n{}",
            tail.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let all = "(SELECT seq FROM energy_readings UNION ALL SELECT seq FROM sensor_readings)";
    let count = scalar(&tables, &both, &format!("SELECT count(*) FROM {all}")).await;
    let distinct = scalar(
        &tables,
        &both,
        &format!("SELECT count(DISTINCT seq) FROM {all}"),
    )
    .await;
    let sum = scalar(&tables, &both, &format!("SELECT sum(seq) FROM {all}")).await;
    let energy = scalar(&tables, &both, "SELECT count(*) FROM energy_readings").await;
    let n = EVENTS as i64;
    assert_eq!(count, n, "row count");
    assert_eq!(distinct, n, "each stream sequence once");
    assert_eq!(sum, n * (n + 1) / 2, "checksum over stream sequences 1..=N");
    assert_eq!(energy, expected_energy, "each kind in its own table");
    assert!(
        app.terminate(),
        "clean shutdown after the run; log:\n{}",
        app.log()
    );
}
