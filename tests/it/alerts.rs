//! Alerts end to end through the real binary (`adit run --roles pipelines,query,alerts` with
//! the shipped rules file): a rule group PUT over the API (a bad one refused with its place),
//! sensor readings over the ingest API make its series pending, then firing after its `for`,
//! seen live on `results.alert.critical` and in the `alerts` table; when the readings stop it
//! resolves. Then an operator acknowledges it and resolves it by hand while it is still hot: it
//! starts again as pending and fires again.

use crate::common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

/// The next event of HotSensor in state `want` (within 30 s).
async fn next_state(sub: &mut async_nats::Subscriber, want: &str) -> Value {
    let give_up = Instant::now() + Duration::from_secs(30);
    while Instant::now() < give_up {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
            let e: Value = serde_json::from_slice(&m.payload).unwrap();
            if e["rule"] == "HotSensor" && e["state"] == want {
                return e;
            }
        }
    }
    panic!("no {want} event");
}

async fn post_reading(app: &App, value: f64) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest/sensor", app.url()))
        .bearer_auth(OPERATE_TOKEN)
        .json(
            &json!({"site": "site-a", "sensor": "t-1", "kind": "temperature",
                      "value": value, "ts": Utc::now()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_goes_pending_then_firing_after_its_for_then_resolves() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.yml");
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pipelines,query,alerts",
        &format!("[alerts]\nrules_file = \"{rules}\"\nreload = \"500ms\"\n"),
    );
    app.wait_http().await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/alerts/rules/test", app.url());

    // A rule whose SQL is not a read-only query is refused, naming it.
    let bad = json!({"name": "test", "interval": "1s", "rules": [
        {"alert": "Bad", "expr": "DROP TABLE shares"}]});
    let r = client
        .put(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_field", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("test/Bad.expr"),
        "{body}"
    );
    let r = client
        .put(&url)
        .bearer_auth(OPERATE_TOKEN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "rules need the admin role");

    // The real rule, as YAML.
    let yaml = "name: test\ninterval: 1s\nrules:\n  - alert: HotSensor\n    expr: >-\n      \
                SELECT site, sensor, max(value) AS value FROM sensor_readings\n      \
                WHERE ts > now() - INTERVAL '4 seconds' AND value > 30 GROUP BY site, sensor\n    \
                for: 3s\n    labels: { severity: critical }\n    \
                annotations: { summary: too hot }\n";
    let r = client
        .put(&url)
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The alerts role loads the rules file group by group after the API is up: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let names = loop {
        let groups: Value = app.get_json("/api/v1/alerts/rules", READ_TOKEN).await;
        let names: Vec<String> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect();
        if names.len() >= 4 || std::time::Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        names,
        ["access", "farm", "pool", "test"],
        "the shipped groups and ours"
    );

    // Watch the alerts live.
    let live = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = live.subscribe("results.alert.critical").await.unwrap();

    // Hot readings for 8 s: pending, then firing 3 s later.
    let hot_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < hot_until {
        post_reading(&app, 35.0).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut seen: Vec<Value> = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(40);
    while !seen.iter().any(|e| e["state"] == "resolved") && Instant::now() < give_up {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
            let e: Value = serde_json::from_slice(&m.payload).unwrap();
            if e["rule"] == "HotSensor" {
                seen.push(e);
            }
        }
    }
    // pending → firing → resolved (a pending series that blinked off under load may have been
    // dropped and started again before it fired: only the last pending counts).
    let states: Vec<&str> = seen.iter().map(|e| e["state"].as_str().unwrap()).collect();
    let fired = states
        .iter()
        .position(|s| *s == "firing")
        .unwrap_or_else(|| panic!("never fired: {seen:#?}\n{}", app.log()));
    assert!(fired > 0 && states[fired - 1] == "pending", "{states:?}");
    assert_eq!(seen[fired - 1]["active_at"], seen[fired]["active_at"]);
    assert_eq!(states[fired + 1..], ["resolved"], "{states:?}");
    let at = |i: usize, k: &str| {
        chrono::DateTime::parse_from_rfc3339(seen[i][k].as_str().unwrap()).unwrap()
    };
    let held = at(fired, "ts") - at(fired, "active_at");
    eprintln!(
        "HotSensor fired {} ms after it began alerting (for: 3s)",
        held.num_milliseconds()
    );
    assert!(
        held >= chrono::Duration::seconds(3),
        "fired before its for: {held}"
    );
    let labels: Value = serde_json::from_str(seen[fired]["labels"].as_str().unwrap()).unwrap();
    assert_eq!(labels["site"], "site-a");
    assert_eq!(labels["alertname"], "HotSensor");
    assert_eq!(seen[fired]["value"], 35.0);

    // The table holds every transition.
    let sql = "SELECT state FROM alerts WHERE rule = 'HotSensor' ORDER BY ts";
    app.wait_rows(
        Duration::from_secs(30),
        "every transition in alerts",
        sql,
        |rows| rows.len() == states.len(),
    )
    .await;
    let listed: Vec<Value> = app
        .get_json("/api/v1/alerts?state=resolved", READ_TOKEN)
        .await;
    assert!(
        listed.iter().any(|a| a["rule"] == "HotSensor"),
        "{listed:?}"
    );
    // An operator acknowledges a firing alert, then resolves it by hand while it is still
    // hot: it starts again as pending and fires again.
    let app_url = app.url();
    let heat = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for _ in 0..40 {
            client
                .post(format!("{app_url}/api/v1/ingest/sensor"))
                .bearer_auth(OPERATE_TOKEN)
                .json(
                    &json!({"site": "site-a", "sensor": "t-1", "kind": "temperature",
                              "value": 36.0, "ts": Utc::now()}),
                )
                .send()
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let firing = next_state(&mut sub, "firing").await;
    let id = firing["id"].as_str().unwrap().to_string();
    let act = |path: &'static str, token: &'static str| {
        let (client, url, id) = (client.clone(), app.url(), id.clone());
        async move {
            client
                .post(format!("{url}/api/v1/alerts/{path}"))
                .bearer_auth(token)
                .json(&json!({"id": id, "note": "on it"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(act("acknowledge", READ_TOKEN).await, 403);
    assert_eq!(act("acknowledge", OPERATE_TOKEN).await, 202);
    let acked = next_state(&mut sub, "acknowledged").await;
    assert_eq!(acked["by"], "operator");
    assert_eq!(act("resolve", OPERATE_TOKEN).await, 202);
    let resolved = next_state(&mut sub, "resolved").await;
    assert_eq!(resolved["by"], "operator");
    let again = next_state(&mut sub, "pending").await;
    assert_eq!(again["id"], id.as_str(), "the same alert starts again");
    next_state(&mut sub, "firing").await;
    heat.abort();

    // The shipped rules evaluated without SQL errors against the tables that exist.
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("adit_alert_rule_errors_total"),
        "a rule failed: {}",
        metrics
            .lines()
            .filter(|l| l.contains("adit_alert_rule_errors_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The shipped rules for the seed's gaps fire on the real pipelines' tables, through the real
/// evaluator: a sensor under the site's minimum temperature (`LowTemperature`, over the
/// violations the pipeline opens), a fan that reads 0 RPM after the controller set the site's
/// fans to run (`FanNotTurning`), and a curtailment from the utility (`GridSignalChanged`). The
/// shipped file is loaded with its intervals and `for` durations shortened to a second; the
/// SQL is the shipped SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rules_for_cold_a_still_fan_and_a_grid_signal_fire() {
    use adit_bus::publish::Outgoing;
    use adit_schemas::{AnyEvent, GridSignal, GridSignalKind, SensorKind, SensorReading};
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.yml")).unwrap();
    let quick = shortened_rules(&shipped);
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, quick).unwrap();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pipelines,query,alerts",
        &format!(
            "[alerts]\nrules_file = \"{}\"\nreload = \"500ms\"\n\
             [pipelines.violations]\neval_every = \"1s\"\nmin_duration = \"1s\"\n",
            rules.display()
        ),
    );
    app.wait_http().await;
    app.put_all(vec![
        (
            "/api/v1/registry/sites/site-a".into(),
            json!({"allocation_kw": 100.0}),
        ),
        (
            "/api/v1/registry/sensors/site-a/t-1".into(),
            json!({"kind": "temperature"}),
        ),
        (
            "/api/v1/registry/sensors/site-a/fan-1".into(),
            json!({"kind": "fan"}),
        ),
    ])
    .await;
    let live = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = live.subscribe("results.alert.>").await.unwrap();
    let (publisher, _js) = publisher(&nats).await;

    // The controller sets the site's fans as soon as it steps; the utility asks for 40 kW.
    let now = Utc::now();
    let signal = GridSignal {
        site: "site-a".into(),
        event_id: "dr-7".into(),
        kind: GridSignalKind::Curtail,
        target_kw: Some(40.0),
        deadline: Some(now + chrono::Duration::minutes(10)),
        price_per_mwh: None,
        ts: now,
    };
    publisher
        .publish_all(vec![Outgoing::event(&AnyEvent::Grid(signal))])
        .await
        .unwrap();

    // Then, every half second: 4 °C (the site's minimum is 10 °C) and a fan at 0 RPM.
    let want = ["LowTemperature", "FanNotTurning", "GridSignalChanged"];
    let mut firing: std::collections::BTreeMap<String, Value> = Default::default();
    let give_up = Instant::now() + Duration::from_secs(90);
    let mut i = 0;
    while firing.len() < want.len() {
        assert!(
            Instant::now() < give_up,
            "fired: {:?}; log:\n{}",
            firing.keys(),
            app.log()
        );
        i += 1;
        let at = Utc::now();
        let reading = |sensor: &str, kind, value| {
            Outgoing::event(&AnyEvent::Sensor(SensorReading {
                site: "site-a".into(),
                sensor: sensor.into(),
                kind,
                value,
                ts: at,
            }))
        };
        publisher
            .publish_all(vec![
                reading("t-1", SensorKind::Temperature, 4.0 - (i % 2) as f64 * 0.1),
                reading("fan-1", SensorKind::Fan, 0.0),
            ])
            .await
            .unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            let e: Value = serde_json::from_slice(&m.payload).unwrap();
            let rule = e["rule"].as_str().unwrap_or_default().to_string();
            if e["state"] == "firing" && want.contains(&rule.as_str()) {
                firing.insert(rule, e);
            }
        }
    }
    let labels = |rule: &str| -> Value {
        serde_json::from_str(firing[rule]["labels"].as_str().unwrap()).unwrap()
    };
    let cold = labels("LowTemperature");
    assert_eq!(
        (cold["site"].as_str(), cold["sensor"].as_str()),
        (Some("site-a"), Some("t-1"))
    );
    assert_eq!(firing["LowTemperature"]["severity"], "warning");
    let fan = labels("FanNotTurning");
    assert_eq!(fan["sensor"], "fan-1", "{fan}");
    let level: i64 = fan["level"].as_str().unwrap().parse().unwrap();
    assert!((1..=9).contains(&level), "{fan}");
    assert_eq!(firing["FanNotTurning"]["value"], 0.0);
    assert_eq!(firing["FanNotTurning"]["severity"], "critical");
    let grid = labels("GridSignalChanged");
    assert_eq!(
        (grid["kind"].as_str(), grid["event_id"].as_str()),
        (Some("curtail"), Some("dr-7")),
        "{grid}"
    );
    assert_eq!(firing["GridSignalChanged"]["value"], 40.0);
}

/// An operator raises an alert by hand (issue 61): refused with the field named when its
/// severity, name or labels are wrong, or when a reader asks; otherwise it fires at once in the
/// group `manual` with who raised it and why, lands in `alerts` like a rule's, cannot be raised
/// twice while it fires, and is resolved by hand. No rule group may take the name `manual`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_by_hand_fires_at_once_with_who_raised_it_until_resolved_by_hand() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&nats.url(), dir.path(), "pipelines,query", "");
    app.wait_http().await;
    let client = reqwest::Client::new();
    let live = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = live.subscribe("results.alert.>").await.unwrap();
    let raise = |token: &'static str, body: Value| {
        let (client, url) = (client.clone(), app.url());
        async move {
            let r = client
                .post(format!("{url}/api/v1/alerts/raise"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let leak = json!({"alert": "CoolantLeak", "severity": "error",
                      "summary": "coolant on the floor of row 3", "labels": {"site": "site-a"}});
    assert_eq!(raise(READ_TOKEN, leak.clone()).await.0, 403);
    for (bad, field) in [
        (
            json!({"alert": "CoolantLeak", "severity": "dire", "summary": "x"}),
            "severity",
        ),
        (
            json!({"alert": "9lives", "severity": "error", "summary": "x"}),
            "alert",
        ),
        (
            json!({"alert": "CoolantLeak", "severity": "error", "summary": " "}),
            "summary",
        ),
        (
            json!({"alert": "CoolantLeak", "severity": "error", "summary": "x",
                   "labels": {"severity": "info"}}),
            "labels",
        ),
        (
            json!({"alert": "CoolantLeak", "severity": "error", "summary": "x",
                   "labels": {"site": "a\nb"}}),
            "labels",
        ),
    ] {
        let (status, body) = raise(OPERATE_TOKEN, bad.clone()).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{bad}: {body}"
        );
    }
    let (status, body) = raise(OPERATE_TOKEN, leak.clone()).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("manual/CoolantLeak/"), "{id}");

    let (subject, event) = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("no alert event")
            .unwrap();
        let e: Value = serde_json::from_slice(&m.payload).unwrap();
        if e["id"] == id.as_str() {
            break (m.subject.to_string(), e);
        }
    };
    assert_eq!(subject, "results.alert.error");
    assert_eq!(event["severity"], "error");
    assert_eq!(event["state"], "firing");
    assert_eq!(event["group"], "manual");
    assert_eq!(event["by"], "operator");
    assert_eq!(event["note"], "coolant on the floor of row 3");
    let labels: Value = serde_json::from_str(event["labels"].as_str().unwrap()).unwrap();
    assert_eq!(labels["site"], "site-a");
    assert_eq!(labels["alertname"], "CoolantLeak");

    let landed = format!("SELECT state, \"by\" FROM alerts WHERE id = '{id}'");
    app.wait_rows(
        Duration::from_secs(30),
        "the raised alert in alerts",
        &landed,
        |rows| rows.len() == 1,
    )
    .await;
    let listed: Vec<Value> = app
        .get_json("/api/v1/alerts?state=firing", READ_TOKEN)
        .await;
    assert!(listed.iter().any(|a| a["id"] == id.as_str()), "{listed:?}");
    let (status, body) = raise(OPERATE_TOKEN, leak.clone()).await;
    assert_eq!(status, 409, "raised twice while firing: {body}");

    let r = client
        .post(format!("{}/api/v1/alerts/resolve", app.url()))
        .bearer_auth(OPERATE_TOKEN)
        .json(&json!({"id": id, "note": "mopped up, hose replaced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    app.wait_rows(
        Duration::from_secs(30),
        "the resolve in alerts",
        &landed,
        |rows| rows.len() == 2,
    )
    .await;
    // Resolved, it can be raised again.
    assert_eq!(raise(OPERATE_TOKEN, leak).await.0, 201);

    let r = client
        .put(format!("{}/api/v1/alerts/rules/manual", app.url()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "manual", "rules": [{"alert": "X", "expr": "SELECT 1 AS value"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a rule group took the name manual");
}

/// The shipped `NoBlockFound` rule, evaluated through the API on shares and blocks landed by
/// the real pipelines: it fires for a pool that has done more than five blocks' worth of work
/// (each accepted share's difficulty over its own network difficulty) since its last block,
/// or without ever finding one, and not for a pool whose effort since its block is low, nor
/// counting work done before a block or rejected shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_no_block_rule_fires_past_five_blocks_of_work_since_the_last() {
    use adit_bus::publish::Outgoing;
    use adit_schemas::{AnyEvent, Block, BlockStatus, Share};

    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&nats.url(), dir.path(), "pipelines,query", "");
    app.wait_http().await;
    let (publisher, _js) = publisher(&nats).await;
    let t0 = Utc::now() - chrono::Duration::minutes(30);
    let share = |pool: &str, i: i64, accepted: bool, difficulty: u64, network: u64| {
        Outgoing::event(&AnyEvent::Share(Share {
            pool: pool.into(),
            miner: "miner-1".into(),
            worker: "rig".into(),
            job_id: format!("j{i}"),
            nonce: format!("{i:08x}"),
            difficulty,
            height: 100,
            accepted,
            reason: (!accepted).then(|| "low_difficulty".into()),
            ts: t0 + chrono::Duration::seconds(i),
            network_difficulty: accepted.then_some(network),
            reward: accepted.then_some(600_000_000_000),
            subsidy: accepted.then_some(600_000_000_000),
            team: None,
        }))
    };
    let block = |pool: &str, i: i64| {
        Outgoing::event(&AnyEvent::Block(Block {
            pool: pool.into(),
            height: 100,
            hash: format!("{i:064x}"),
            miner: "miner-1".into(),
            worker: "rig".into(),
            job_id: format!("j{i}"),
            nonce: format!("{i:08x}"),
            reward: 600_000_000_000,
            network_difficulty: 1_000,
            status: BlockStatus::Submitted,
            error: None,
            ts: t0 + chrono::Duration::seconds(i),
        }))
    };
    let mut events = Vec::new();
    // p-unlucky: ten blocks' worth before its block (not counted), then 5.5 after it, and a
    // rejected share that would push it further if it counted.
    for i in 0..10 {
        events.push(share("p-unlucky", i, true, 1_000, 1_000));
    }
    events.push(block("p-unlucky", 10));
    for i in 11..22 {
        events.push(share("p-unlucky", i, true, 500, 1_000));
    }
    events.push(share("p-unlucky", 22, false, 100_000, 1_000));
    // p-lucky: a block, then two blocks' worth.
    events.push(block("p-lucky", 1));
    for i in 2..6 {
        events.push(share("p-lucky", i, true, 1_000, 2_000));
    }
    // p-never: no block at all, six blocks' worth.
    for i in 0..6 {
        events.push(share("p-never", i, true, 3_000, 3_000));
    }
    let shares = events.len() - 2;
    publisher.publish_all(events).await.unwrap();
    app.wait_rows(
        Duration::from_secs(60),
        "the shares landed",
        "SELECT count(*) AS n FROM shares",
        |rows| rows.first().is_some_and(|r| r["n"] == shares),
    )
    .await;
    app.wait_rows(
        Duration::from_secs(60),
        "the blocks landed",
        "SELECT count(*) AS n FROM blocks",
        |rows| rows.first().is_some_and(|r| r["n"] == 2),
    )
    .await;

    let rule = shipped_rule("NoBlockFound");
    assert_eq!(rule.severity(), "error");
    let body = app.evaluate(&json!({ "rule": rule })).await;
    let mut fired: Vec<(String, f64)> = body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["labels"]["pool"].as_str().unwrap().to_string(),
                s["value"].as_f64().unwrap(),
            )
        })
        .collect();
    fired.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        fired,
        [("p-never".to_string(), 6.0), ("p-unlucky".to_string(), 5.5)],
        "{body}"
    );
}

/// The shipped `MachineInefficient` rule, evaluated through the API on what the real
/// pipelines landed: a machine drawing its nameplate power while hashing at half its
/// nameplate rate (twice its registered J/TH) fires, with its norm as a label; one at its norm
/// does not. The norm is read from the registry's records in SQL (`json_get_float`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_efficiency_rule_fires_for_a_machine_over_its_registered_norm() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&nats.url(), dir.path(), "pipelines,query", "");
    app.wait_http().await;
    app.put_all(vec![
        (
            "/api/v1/registry/sites/site-e".to_string(),
            json!({"allocation_kw": 20.0, "timezone": "UTC"}),
        ),
        (
            "/api/v1/registry/machines/site-e/m-worn".to_string(),
            json!({"model": "S19", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000}),
        ),
        (
            "/api/v1/registry/machines/site-e/m-fine".to_string(),
            json!({"model": "S19", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000}),
        ),
    ])
    .await;
    // Five minutes of readings, every 10 s: both draw 3 kW; m-worn hashes 50 TH/s.
    let start = Utc::now() - chrono::Duration::minutes(5);
    let mut energy = Vec::new();
    let mut status = Vec::new();
    for i in 0..30 {
        let ts = start + chrono::Duration::seconds(10 * i);
        for (machine, hs) in [("m-worn", 5e13), ("m-fine", 1e14)] {
            energy.push(json!({"site": "site-e", "machine": machine, "ts": ts, "power_w": 3000.0, "source": "meter"}));
            status.push(json!({"site": "site-e", "machine": machine, "ts": ts, "hashrate_hs": hs, "state": "mining"}));
        }
    }
    for (kind, body) in [("energy", energy), ("miner", status)] {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/ingest/{kind}", app.url()))
            .bearer_auth(OPERATE_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    app.wait_rows(
        Duration::from_secs(90),
        "both machines' minutes",
        "SELECT count(DISTINCT machine) AS n FROM machine_energy_1m WHERE site = 'site-e'",
        |rows| rows.first().is_some_and(|r| r["n"] == 2),
    )
    .await;
    app.wait_rows(
        Duration::from_secs(60),
        "both machines' status",
        "SELECT count(DISTINCT machine) AS n FROM miner_status WHERE site = 'site-e'",
        |rows| rows.first().is_some_and(|r| r["n"] == 2),
    )
    .await;

    let rule = shipped_rule("MachineInefficient");
    let body = app.evaluate(&json!({ "rule": rule })).await;
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{body}");
    assert_eq!(series[0]["labels"]["machine"], "m-worn", "{body}");
    assert_eq!(series[0]["labels"]["norm_j_per_th"], "30.0", "{body}");
    let j_per_th = series[0]["value"].as_f64().unwrap();
    assert!(
        (j_per_th - 60.0).abs() < 1.0,
        "m-worn at {j_per_th} J/TH: {body}"
    );
}

/// The shipped rule `alert` (`rules/default.yml`).
fn shipped_rule(alert: &str) -> adit_alerts::Rule {
    let shipped = adit_alerts::RuleFile::from_yaml(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.yml"))
            .unwrap(),
        Default::default(),
    )
    .unwrap();
    shipped
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .find(|r| r.alert == alert)
        .unwrap_or_else(|| panic!("{alert} is not shipped"))
        .clone()
}
