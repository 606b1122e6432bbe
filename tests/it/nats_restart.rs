//! A nats-server restart in the middle of a run loses nothing (issue 2).

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_nats_mid_run_loses_nothing() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (publisher, _js) = publisher(&nats).await;
    let base = chrono::Utc::now() - chrono::Duration::hours(2);
    let app = App::start(&nats.url(), dir.path(), "pipelines", "");
    let tables = dir.path().join("tables");
    publisher
        .publish_all((0..20_000).map(|i| energy(i, base)).collect())
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "first rows landed", || async {
        energy_rows(&tables).await > 0
    })
    .await;
    nats.restart();
    // The publisher retries through the outage; the pipeline re-creates its consumer.
    publisher
        .publish_all((20_000..40_000).map(|i| energy(i, base)).collect())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(120),
        "all 40 000 rows landed",
        || async { energy_rows(&tables).await >= 40_000 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = scalar(
        &tables,
        &["energy_readings"],
        "SELECT count(DISTINCT seq) FROM energy_readings",
    )
    .await;
    let c = energy_rows(&tables).await;
    assert_eq!((n, c), (40_000, 40_000), "log:\n{}", app.log());
}
