//! Fresh reads (issue 29): the SQL API shows readings within a fraction of a second of their
//! publish, seconds before the landing commits them; a crash before that commit loses none of
//! what was shown and doubles nothing, and no statement ever sees a row twice. The last-value
//! tables (issue 62) show each machine's newest readings from memory, across a restart too.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

/// The landing's batch wait in this test: a row seen sooner was read fresh.
const BATCH_WAIT: &str = "5s";

/// The landing's batch size in this test. A batch drawn from a backlog closes early once it
/// holds a sixteenth of this (`adit_bus::consumer`); the 500 below stay under that even when
/// they are all stored before the landing reads the first, so only the batch wait commits them.
const BATCH_ROWS: &str = "50000";

/// adit with the landing (its batch wait and size as above) and the API over `dir`, answering.
async fn landing_and_query(nats: &NatsServer, dir: &std::path::Path, extra_toml: &str) -> App {
    let app = App::start_with_env(
        &nats.url(),
        dir,
        &dir.join("tables"),
        "pipelines,query",
        extra_toml,
        &[
            ("ADIT_PIPELINES__BATCH_MAX_WAIT", BATCH_WAIT),
            ("ADIT_PIPELINES__BATCH_MAX_ROWS", BATCH_ROWS),
        ],
    );
    app.wait_http().await;
    app
}

/// Rows of the API's `energy_readings` as seq → (machine, power), asserting no seq twice.
async fn shown(app: &App) -> BTreeMap<i64, (String, f64)> {
    let rows = app
        .rows("SELECT seq, machine, power_w FROM energy_readings ORDER BY seq")
        .await;
    let mut out = BTreeMap::new();
    for row in &rows {
        let seq = row["seq"].as_i64().expect("seq");
        let value = (
            row["machine"].as_str().expect("machine").to_string(),
            row["power_w"].as_f64().expect("power"),
        );
        assert!(
            out.insert(seq, value).is_none(),
            "seq {seq} shown twice in one statement"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_rows_are_shown_before_their_commit_and_a_crash_neither_loses_nor_doubles_them() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    let (publisher, _js) = publisher(&nats).await;
    let mut app = landing_and_query(&nats, dir.path(), "").await;
    let base = chrono::Utc::now() - chrono::Duration::minutes(10);

    // One committed reading makes the table; the first statement over it starts its tail.
    publisher.publish_all(vec![energy(0, base)]).await.unwrap();
    eventually(Duration::from_secs(30), "the first commit", || async {
        energy_rows(&tables).await == 1
    })
    .await;
    assert_eq!(shown(&app).await.len(), 1);

    // 500 more: the API shows them long before the landing's batch wait ends.
    let published = Instant::now();
    publisher
        .publish_all((1..=500).map(|i| energy(i, base)).collect())
        .await
        .unwrap();
    let fresh = loop {
        let rows = shown(&app).await;
        if rows.len() == 501 {
            break rows;
        }
        // Fresh is shown by the commit count below (still 1), not by the clock: a busy
        // machine may be slow to show them; this only bounds a hang.
        assert!(
            published.elapsed() < Duration::from_secs(30),
            "after {:?} the API shows {} of 501 rows; log:\n{}",
            published.elapsed(),
            rows.len(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let visible_after = published.elapsed();
    let committed = energy_rows(&tables).await;
    assert_eq!(
        committed, 1,
        "the 500 were shown fresh ({visible_after:?} after publishing), not committed"
    );
    eprintln!(
        "500 readings visible in SQL {visible_after:?} after publishing; committed: {committed}"
    );

    // The process dies before its commit; 500 more arrive while it is down.
    app.kill();
    publisher
        .publish_all((501..=1000).map(|i| energy(i, base)).collect())
        .await
        .unwrap();
    app.restart();
    app.wait_http().await;

    // Every statement while it recovers shows each row at most once, and the rows it shows
    // are the rows published; in the end all 1001 are there and committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut statements = 0;
    let last = loop {
        let rows = shown(&app).await;
        statements += 1;
        assert!(rows.len() <= 1001, "{} rows shown", rows.len());
        if rows.len() == 1001 && energy_rows(&tables).await == 1001 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "shown {} rows, committed {}; log:\n{}",
            rows.len(),
            energy_rows(&tables).await,
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    eprintln!("{statements} statements while recovering, none showed a row twice");
    for (seq, value) in &fresh {
        assert_eq!(
            last.get(seq),
            Some(value),
            "seq {seq} was shown fresh before the crash and must be committed as shown"
        );
    }
    let seqs: Vec<i64> = last.keys().copied().collect();
    assert_eq!(seqs, (1..=1001).collect::<Vec<_>>());
    let distinct = scalar(
        &tables,
        &["energy_readings"],
        "SELECT count(DISTINCT seq) FROM energy_readings",
    )
    .await;
    assert_eq!(distinct, 1001, "each reading committed once");
}

/// The readings of each `(site, machine)` a last-value `table` shows through the API, newest
/// first, as `site/machine` → powers.
async fn latest(app: &App, table: &str) -> BTreeMap<String, Vec<f64>> {
    let rows = app
        .rows(&format!(
            "SELECT site, machine, power_w FROM {table} ORDER BY site, machine, ts DESC"
        ))
        .await;
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for row in &rows {
        let key = format!(
            "{}/{}",
            row["site"].as_str().expect("site"),
            row["machine"].as_str().expect("machine")
        );
        out.entry(key)
            .or_default()
            .push(row["power_w"].as_f64().expect("power"));
    }
    out
}

/// The last-value tables (issue 62): `latest_energy_readings` holds each machine's newest
/// reading by time (not by arrival: readings are published out of order), `recent_` its
/// newest `query.latest.keep`; both within a moment of the publish, long before the landing's
/// batch wait, and the same after the process restarts (read again from the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_value_tables_hold_each_machines_newest_readings_across_a_restart() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    let (publisher, _js) = publisher(&nats).await;
    let mut app = landing_and_query(&nats, dir.path(), "[query.latest]\nkeep = 3\n").await;
    let base = chrono::Utc::now() - chrono::Duration::minutes(10);
    // 450 readings of 150 machines (3 each; reading i is machine i % 150's, at base + i ms,
    // of i watts), each machine's newest published first.
    let reading = |i: usize| {
        use adit_schemas::{AnyEvent, EnergyReading, EnergySource};
        adit_bus::publish::Outgoing::event(&AnyEvent::Energy(EnergyReading {
            site: format!("site-{:02}", i % 3),
            machine: format!("m-{:03}", i % 50),
            ts: base + chrono::Duration::milliseconds(i as i64),
            power_w: i as f64,
            energy_wh: None,
            source: EnergySource::Pdu,
        }))
    };
    let key = |i: usize| format!("site-{:02}/m-{:03}", i % 3, i % 50);
    publisher
        .publish_all((0..450).rev().map(reading).collect())
        .await
        .unwrap();
    let want_latest: BTreeMap<String, Vec<f64>> =
        (300..450).map(|i| (key(i), vec![i as f64])).collect();
    let want_recent: BTreeMap<String, Vec<f64>> = (300..450)
        .map(|i| (key(i), vec![i as f64, (i - 150) as f64, (i - 300) as f64]))
        .collect();
    let published = Instant::now();
    loop {
        if latest(&app, "latest_energy_readings").await == want_latest
            && latest(&app, "recent_energy_readings").await == want_recent
        {
            break;
        }
        // Shown from memory is the commit count below (none), not the clock: this only
        // bounds a hang.
        assert!(
            published.elapsed() < Duration::from_secs(30),
            "latest: {:?}; log:\n{}",
            latest(&app, "latest_energy_readings").await,
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "the newest of 450 readings shown {:?} after publishing",
        published.elapsed()
    );
    assert_eq!(
        energy_rows(&tables).await,
        0,
        "shown from memory, not committed yet"
    );

    // After a restart the messages of the last minute are read again: the newest by time
    // and the newest three per machine are what they were, whatever the order they came in.
    app.kill();
    app.restart();
    app.wait_http().await;
    eventually(
        Duration::from_secs(30),
        "the last values after a restart",
        || async { latest(&app, "latest_energy_readings").await == want_latest },
    )
    .await;
    assert_eq!(latest(&app, "recent_energy_readings").await, want_recent);
}
