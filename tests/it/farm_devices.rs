//! The simulated farm as devices on real sockets, read by the adapters, through the real
//! binary (`adit run --roles pipelines,query,simulate,adapters`): a miner whose API stops
//! answering (its registered address moved to a dead port, live) is reported offline by the
//! adapters and raises a silent-device violation, while the other miners stay quiet.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_that_stops_answering_is_reported_offline_and_silent() {
    let (_nats, _dir, app) = start_app(
        "pipelines,query,simulate,adapters",
        "[simulate]\nsites = 1\nmachines_per_site = 3\nsensors_per_site = 1\ninterval = \"500ms\"\ngrid_every = 0\n\
         [adapters]\ninterval = \"1s\"\ntimeout = \"500ms\"\nstale_after = \"2s\"\nmax_backoff = \"2s\"\nregistry_refresh = \"1s\"\n\
         [pipelines.violations]\neval_every = \"1s\"\nmin_duration = \"2s\"\nclear_after = \"2s\"\nsilent_after = \"5s\"\nstale_after = \"5s\"\n",
    )
    .await;
    let mining =
        "SELECT count(*) AS n FROM miner_status WHERE machine = 'm-001' AND state = 'mining'";
    app.wait_rows(
        Duration::from_secs(60),
        "m-001 read over its cgminer API",
        mining,
        |rows| rows[0]["n"].as_i64() > Some(0),
    )
    .await;

    // The miner moves to a dead address (as if unplugged), changed live in the registry.
    let client = reqwest::Client::new();
    let machine = "/api/v1/registry/machines/site-01/m-001";
    let current: Value = app.get_json(machine, READ_TOKEN).await;
    let mut moved = current.clone();
    moved["adapter"]["address"] = "127.0.0.1:1".into();
    let r = client
        .put(format!("{}{machine}", app.url()))
        .bearer_auth(OPERATE_TOKEN)
        .header("if-match", current["revision"].to_string())
        .json(&moved)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let changed = Instant::now();

    let offline =
        "SELECT count(*) AS n FROM miner_status WHERE machine = 'm-001' AND state = 'offline'";
    app.wait_rows(
        Duration::from_secs(60),
        "m-001 reported offline",
        offline,
        |rows| rows[0]["n"].as_i64() > Some(0),
    )
    .await;
    let silent = "SELECT subject, scope, severity FROM violations WHERE kind = 'silent_device' AND event = 'opened'";
    app.wait_rows(
        Duration::from_secs(60),
        "a silent-device violation for m-001",
        silent,
        |rows| !rows.is_empty(),
    )
    .await;
    println!(
        "silent-device violation {:?} after the miner stopped answering",
        changed.elapsed()
    );
    let rows = app.rows(silent).await;
    assert_eq!(
        rows,
        vec![serde_json::json!({"subject": "m-001", "scope": "machine", "severity": "warning"})],
        "only the miner that stopped answering; log:\n{}",
        app.log()
    );
}
