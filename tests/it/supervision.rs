//! A panic is never silent (issue 22), on the real binary: each supervised part of a running
//! adit is killed from inside (a panic injected through `ADIT_FAULTS`, read by debug builds
//! only) and is restarted, counted in `adit_task_restarts_total{task}` and shown by `/ready`,
//! while the process stays the same process and its readings keep landing; a part that keeps
//! dying is shown down by `/ready` (503) and then stops the process with a non-zero exit, so
//! systemd or the container runtime restarts it. And a volume adit writes that is nearly full
//! is shown down by `/ready` too (issue 25), with the process's and the host's vital signs on
//! `/metrics`, and up again once space is freed; and so is the pool's node once it cannot be
//! reached, up again once it is back.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The parts killed once each in the first test.
const KILLED: &[&str] = &[
    "pool_publisher",
    "pipeline:telemetry",
    "adapters",
    "actuators",
    "alerts",
    "notify",
];

/// A farm read over real sockets, a pool, every pipeline, alerts and notifications.
const ROLES: &str = "pipelines,query,pool,simulate,adapters,actuators,alerts,notify";

fn config(stratum_port: u16) -> String {
    format!(
        "[simulate]\nsites = 1\nmachines_per_site = 3\nsensors_per_site = 1\ninterval = \"500ms\"\ngrid_every = 0\n\
         [adapters]\ninterval = \"1s\"\ntimeout = \"500ms\"\nstale_after = \"5s\"\nmax_backoff = \"2s\"\nregistry_refresh = \"1s\"\n\
         [pool]\nlisten = \"127.0.0.1:{stratum_port}\"\nnode = \"sim\"\n\
         [pool.server]\npool = \"sim\"\nverify_threads = 1\n\
         [notify]\nreceivers = [{{ name = \"hook\", kind = \"webhook\", url = \"http://127.0.0.1:{}/hook\" }}]\n\
         [notify.route]\nreceiver = \"hook\"\n",
        free_port()
    )
}

async fn ready(app: &App) -> Option<(u16, Value)> {
    let r = reqwest::get(format!("{}/ready", app.url())).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

async fn metrics(app: &App) -> String {
    let r = reqwest::get(format!("{}/metrics", app.url()))
        .await
        .expect("metrics");
    r.text().await.unwrap()
}

/// The value of the first series of `metrics` whose text starts with `prefix`.
fn series(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

fn restarts(metrics: &str, task: &str) -> Option<f64> {
    series(
        metrics,
        &format!("adit_task_restarts_total{{task=\"{task}\"}} "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_part_killed_from_inside_is_restarted_counted_and_shown() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let faults = KILLED.join(",");
    let app = App::start_with_env(
        &nats.url(),
        dir.path(),
        &dir.path().join("tables"),
        ROLES,
        &config(free_port()),
        &[("ADIT_FAULTS", &faults)],
    );
    app.wait_http().await;
    let pid = app.pid().unwrap();

    // Every killed part comes back: /ready shows it up again with one restart and the panic.
    let deadline = Instant::now() + Duration::from_secs(120);
    let parts = loop {
        let seen = ready(&app).await;
        if let Some((200, body)) = &seen
            && KILLED
                .iter()
                .all(|p| body["parts"][p]["restarts"].as_u64() == Some(1))
        {
            break body["parts"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "parts not restarted: {seen:?}; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for part in KILLED {
        assert_eq!(parts[part]["up"], true, "{part}: {parts}");
        assert_eq!(
            parts[part]["last_error"].as_str(),
            Some(format!("injected fault in {part}").as_str()),
            "{parts}"
        );
    }
    // A part that was not killed was never restarted.
    let other = parts
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, _)| name.starts_with("pipeline:") && !KILLED.contains(&name.as_str()))
        .expect("other pipelines are supervised");
    assert_eq!(other.1["restarts"], 0, "{parts}");

    let text = metrics(&app).await;
    for part in KILLED {
        assert_eq!(restarts(&text, part), Some(1.0), "{part} in:\n{text}");
    }

    // Same process, and what the restarted parts carry still lands: readings polled by the
    // restarted adapters, published and landed by the restarted landing pipeline.
    assert_eq!(app.pid(), Some(pid));
    let after = chrono::Utc::now().to_rfc3339();
    eventually(
        Duration::from_secs(90),
        "readings landed after the restarts",
        || async {
            let sql = format!("SELECT count(*) AS n FROM miner_status WHERE ts > '{after}'");
            let (status, body) = app.sql(&sql, "json", Some(READ_TOKEN)).await;
            let rows: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            status == 200 && rows[0]["n"].as_i64() > Some(0)
        },
    )
    .await;
    assert_eq!(app.pid(), Some(pid), "log:\n{}", app.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_keeps_dying_is_shown_down_then_stops_the_process() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::start_with_env(
        &nats.url(),
        dir.path(),
        &dir.path().join("tables"),
        "pipelines,query,simulate,adapters",
        &config(free_port()),
        &[("ADIT_FAULTS", "adapters=1000")],
    );
    app.wait_http().await;

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_down = None;
    let status = loop {
        if let Some(status) = app.exited() {
            break status;
        }
        if let Some((503, body)) = ready(&app).await
            && body["down"]
                .as_array()
                .is_some_and(|d| d.iter().any(|p| p == "adapters"))
        {
            seen_down = Some(body);
        }
        assert!(
            Instant::now() < deadline,
            "adit neither gave up nor exited; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = seen_down
        .unwrap_or_else(|| panic!("/ready never said adapters was down; log:\n{}", app.log()));
    assert!(
        body["parts"]["adapters"]["restarts"].as_u64() >= Some(1),
        "{body}"
    );
    assert!(!status.success(), "exit {status:?}; log:\n{}", app.log());
    let log = app.log();
    assert!(
        log.contains("adapters kept failing and was given up on"),
        "log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_volume_is_shown_down_with_the_vital_signs_on_metrics() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // No volume has an exabyte free: both are "nearly full".
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pipelines,query",
        "[health]\nsample_every = \"1s\"\nmin_free_bytes = 1000000000000000000\n",
    );
    app.wait_http().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some((503, body)) = ready(&app).await
            && body["down"].as_array().is_some_and(|d| d.len() >= 2)
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never named the volumes; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        body["down"],
        serde_json::json!(["disk:data", "disk:tables"]),
        "{body}"
    );
    let reason = body["parts"]["disk:tables"]["last_error"].as_str().unwrap();
    assert!(reason.contains("health.min_free_bytes"), "{reason}");
    assert!(app.log().contains("a volume adit writes is nearly full"));

    // The sampler sets the volumes' gauges before it asks NATS for the streams' sizes: on a
    // loaded machine /ready can name the volumes before the streams' gauges are set.
    let stream_gauge = "adit_stream_messages{stream=\"MINING\"} ";
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = metrics(&app).await;
        if series(&metrics, stream_gauge).is_some() || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let value = |name: &str| -> f64 {
        series(&metrics, name).unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(value("adit_disk_free_bytes{volume=\"tables\"} ") > 0.0);
    assert!(value("adit_disk_total_bytes{volume=\"data\"} ") > 0.0);
    assert!(value("process_resident_memory_bytes ") > 1e6);
    assert!(value("process_open_fds ") > 0.0);
    assert!(value("process_threads ") >= 2.0);
    assert!(value(stream_gauge) >= 0.0);
}

/// Bytes free to an unprivileged writer on the volume holding `path` (`df`'s "avail").
fn available_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df (coreutils) runs");
    assert!(out.status.success(), "df: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df printed no size: {text}"))
}

/// The data volume filling past `health.min_free_bytes` while adit runs turns `/ready` 503
/// naming it, and freeing the space turns it back to 200: the threshold is set 1 GiB below
/// what is free at start, and a 2 GiB file is allocated in the data dir, then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_filling_past_its_threshold_and_freed_again_is_shown() {
    const GIB: u64 = 1 << 30;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let free = available_bytes(dir.path());
    assert!(
        free > 4 * GIB,
        "this test needs 4 GiB free under {}",
        dir.path().display()
    );
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pipelines,query",
        &format!(
            "[health]\nsample_every = \"1s\"\nmin_free_bytes = {}\n",
            free - GIB
        ),
    );
    app.wait_http().await;
    let data_up = |up: bool| move |b: &Value| b["parts"]["disk:data"]["up"] == up;
    ready_until(&app, 200, "ready before the volume filled", data_up(true)).await;
    let filler = dir.path().join("filler");
    let status = std::process::Command::new("fallocate")
        .args(["-l", &(2 * GIB).to_string()])
        .arg(&filler)
        .status()
        .expect("fallocate (util-linux) runs");
    assert!(status.success(), "fallocate: {status}");
    let down = ready_until(&app, 503, "the filled volume never shown", data_up(false)).await;
    let reason = down["parts"]["disk:data"]["last_error"].as_str().unwrap();
    assert!(reason.contains("health.min_free_bytes"), "{reason}");
    std::fs::remove_file(&filler).unwrap();
    let back = ready_until(&app, 200, "the freed volume never shown", data_up(true)).await;
    assert_eq!(back["down"], serde_json::json!([]), "{back}");
}

/// The pool's node is part of readiness: up while a real monerod answers, down (503, `node`,
/// with the reason) once it is gone, and up again (200) when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_node_going_away_and_coming_back_is_shown() {
    let mut monerod = adit_testkit::Monerod::start_with_difficulty(100);
    let (_nats, _dir, app) = start_app(
        "pool,query",
        &format!(
            "[pool]\nlisten = \"127.0.0.1:{}\"\nnode = \"{}\"\nwallet = \"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A\"\ntip_poll = \"200ms\"\n\
             [health]\nsample_every = \"1s\"\n",
            free_port(),
            monerod.rpc_url()
        ),
    )
    .await;
    let until = |want: u16, what: &'static str| {
        let app = &app;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some((status, body)) = ready(app).await
                    && status == want
                    && body["parts"]["node"].is_object()
                {
                    return body;
                }
                assert!(Instant::now() < deadline, "{what}; log:\n{}", app.log());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let up = until(200, "the node was never up").await;
    assert_eq!(up["parts"]["node"]["up"], true, "{up}");
    monerod.kill();
    let down = until(503, "the node's absence was never shown").await;
    assert_eq!(down["down"], serde_json::json!(["node"]), "{down}");
    let reason = down["parts"]["node"]["last_error"].as_str().unwrap();
    assert!(reason.contains("monerod unreachable"), "{reason}");
    monerod.restart();
    let back = until(200, "the node's return was never shown").await;
    assert_eq!(back["parts"]["node"]["up"], true, "{back}");
    assert_eq!(back["down"], serde_json::json!([]), "{back}");
}

/// Waits until `/ready` answers `want` with `check` true of its body; the body.
async fn ready_until(app: &App, want: u16, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((status, body)) = ready(app).await
            && status == want
            && check(&body)
        {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}; log:\n{}", app.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Puts a plain file where the folder `path` was (moved aside), so nothing can be written
/// under it, even by root; the returned closure puts the folder back.
fn block(path: &std::path::Path) -> impl FnOnce() + use<> {
    let aside = path.with_extension("aside");
    std::fs::rename(path, &aside).unwrap();
    std::fs::write(path, b"not a folder").unwrap();
    let path = path.to_path_buf();
    move || {
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(&aside, &path).unwrap();
    }
}

/// A pipeline that stops committing (one of its tables cannot be written) is shown down once
/// its oldest uncommitted message is older than `pipelines.max_lag`, naming it and its lag,
/// and up once it has caught up; a table root that cannot be written is shown down as
/// `tables`, and up once it can. Both seen by a real client of `/ready`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pipeline_and_an_unwritable_table_root_are_shown_down_and_back() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    let app = App::start_with_env(
        &nats.url(),
        dir.path(),
        &tables,
        "pipelines,query",
        "[health]\nsample_every = \"1s\"\n",
        &[("ADIT_PIPELINES__MAX_LAG", "3s")],
    );
    app.wait_http().await;
    let (publisher, _js) = publisher(&nats).await;
    let base = chrono::Utc::now();
    publisher.publish_all(telemetry(40, base)).await.unwrap();
    let is_up = |part: &'static str| move |b: &Value| b["parts"][part]["up"] == true;
    ready_until(
        &app,
        200,
        "lag:telemetry never watched",
        is_up("lag:telemetry"),
    )
    .await;
    ready_until(&app, 200, "the table root never probed", is_up("tables")).await;
    while !tables.join("sensor_readings").is_dir() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One table of the telemetry landing cannot be written: it stops committing, and its
    // readings wait in the stream.
    let unblock = block(&tables.join("sensor_readings"));
    publisher
        .publish_all(telemetry(40, base + chrono::Duration::seconds(1)))
        .await
        .unwrap();
    let down = ready_until(&app, 503, "the stalled pipeline was never shown", |b| {
        b["down"]
            .as_array()
            .is_some_and(|d| d.iter().any(|p| p == "lag:telemetry"))
    })
    .await;
    assert!(
        !down["down"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "tables"),
        "the root itself can still be written: {down}"
    );
    let reason = down["parts"]["lag:telemetry"]["last_error"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("not committed on input") && reason.contains("pipelines.max_lag (3s)"),
        "{reason}"
    );
    let lagging = metrics(&app).await;
    let seconds = series(&lagging, "adit_pipeline_lag_seconds{pipeline=\"telemetry\"")
        .expect("adit_pipeline_lag_seconds for telemetry");
    assert!(seconds > 3.0, "lag {seconds} s while stalled");

    // Writable again: the pipeline catches up, every reading landed once.
    unblock();
    ready_until(
        &app,
        200,
        "the pipeline never caught up",
        is_up("lag:telemetry"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = app.rows("SELECT count(*) AS n FROM sensor_readings").await;
        if rows[0]["n"] == 20 {
            break; // every sensor reading of both batches, once
        }
        assert!(Instant::now() < deadline, "sensor readings: {rows:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Event time: the newest reading committed was stamped moments ago.
    let caught_up = metrics(&app).await;
    let event_lag = series(
        &caught_up,
        "adit_pipeline_event_lag_seconds{pipeline=\"telemetry\"",
    )
    .expect("adit_pipeline_event_lag_seconds for telemetry");
    let since_base = (chrono::Utc::now() - base).num_seconds() as f64;
    assert!(
        (0.0..=since_base + 1.0).contains(&event_lag),
        "event lag {event_lag} s, readings stamped {since_base} s ago at most"
    );

    // The whole root cannot be written: `tables` is down, with the reason.
    let unblock = block(&tables);
    let down = ready_until(&app, 503, "the unwritable root was never shown", |b| {
        b["parts"]["tables"]["up"] == false
    })
    .await;
    let reason = down["parts"]["tables"]["last_error"].as_str().unwrap();
    assert!(reason.contains("cannot write"), "{reason}");
    assert!(app.log().contains("the table root cannot be written"));
    unblock();
    ready_until(
        &app,
        200,
        "the root was never writable again",
        is_up("tables"),
    )
    .await;
}

/// What an operator scraping `/metrics` expects (issue 61): every series carries the configured
/// `environment`; every HTTP route is counted and timed by its template (an id a client sent is
/// never a label value) and status, unmatched paths under one label; the host's CPU, memory,
/// disks and network beside the process's; and how many records of each kind the registry
/// holds. And `metrics.enabled = false` turns the endpoint off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_environment_every_routes_traffic_the_host_and_the_registry() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "query",
        "[health]\nsample_every = \"1s\"\n[metrics]\nenvironment = \"staging\"\n",
    );
    app.wait_http().await;
    let client = reqwest::Client::new();
    let put = client
        .put(format!(
            "{}/api/v1/registry/sites/site-secret-id",
            app.url()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"allocation_kw": 10.0, "timezone": "UTC", "name": "S"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    let missing = client
        .get(format!("{}/api/v1/registry/sites/no-such-site", app.url()))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let unknown = client
        .get(format!("{}/wp-admin/../../etc/passwd", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let registry = "adit_registry_records{environment=\"staging\",kind=\"sites\"} ";
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics(&app).await;
        if series(&text, registry) == Some(1.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the registry's one site never counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let route = "/api/v1/registry/{kind}/{id}";
    for (method, status) in [("PUT", 201), ("GET", 404)] {
        let counted = format!(
            "adit_http_requests_total{{environment=\"staging\",route=\"{route}\",method=\"{method}\",status=\"{status}\"}} "
        );
        assert_eq!(series(&text, &counted), Some(1.0), "{counted}\n{text}");
        let timed = format!(
            "adit_http_request_duration_seconds_count{{environment=\"staging\",route=\"{route}\",method=\"{method}\",status=\"{status}\"}} "
        );
        assert_eq!(series(&text, &timed), Some(1.0), "{timed}\n{text}");
    }
    assert!(
        text.contains("route=\"unmatched\",method=\"GET\",status=\"404\""),
        "the unknown path is not counted as unmatched:\n{text}"
    );
    for sent in ["site-secret-id", "no-such-site", "passwd"] {
        assert!(
            !text.contains(sent),
            "a path a client sent became a label: {sent}"
        );
    }
    let total = series(&text, "pool_memory_total_bytes{environment=\"staging\"} ").unwrap();
    let used = series(&text, "pool_memory_used_bytes{environment=\"staging\"} ").unwrap();
    assert!(used > 0.0 && used <= total, "host memory {used} of {total}");
    let cpu = series(&text, "pool_cpu_usage_percent{environment=\"staging\"} ").unwrap();
    assert!((0.0..=100.0).contains(&cpu), "host CPU {cpu}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("pool_disk_total_bytes{environment=\"staging\",mount=")),
        "no host disk:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("pool_load_average{")),
        "no load average:\n{text}"
    );
    // The process's own figures are there too, with the same label.
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_resident_memory_bytes{environment=\"staging\"}")),
        "no process memory:\n{text}"
    );
    drop(app);

    let dir = tempfile::tempdir().unwrap();
    let off = App::start(
        &nats.url(),
        dir.path(),
        "query",
        "[metrics]\nenabled = false\n",
    );
    off.wait_http().await;
    let r = reqwest::get(format!("{}/metrics", off.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// `query.ops_networks` (issue 61): `/metrics` and `/ready`, which say what is inside, answer
/// only to the listed networks; `/health` and `/live` still answer probes from anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_answer_only_to_the_listed_networks() {
    let nats = NatsServer::start();
    for (networks, inside) in [
        ("[\"10.99.0.0/16\"]", false),
        ("[\"127.0.0.0/8\", \"10.99.0.0/16\"]", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let app = App::start(
            &nats.url(),
            dir.path(),
            "query",
            &format!("ops_networks = {networks}\n"),
        );
        app.wait_http().await;
        for path in ["/metrics", "/ready"] {
            let r = reqwest::get(format!("{}{path}", app.url())).await.unwrap();
            let status = r.status().as_u16();
            if inside {
                assert_ne!(status, 403, "{path} refused from a listed network");
            } else {
                assert_eq!(status, 403, "{path} answered outside {networks}");
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "outside_ops_networks");
            }
        }
        for path in ["/health", "/live"] {
            let r = reqwest::get(format!("{}{path}", app.url())).await.unwrap();
            assert_eq!(r.status(), 200, "{path} with {networks}");
        }
    }
}
