//! The farm controller end to end through the real binary (`adit run --roles
//! pipelines,query,simulate,adapters,actuators`): a demand-response signal posted to the ingest
//! API makes the curtailment pipeline shed the least efficient machines; the actuators pause
//! them over their cgminer APIs and set the fans over the fan relay; the simulated miners obey,
//! the adapters read the lower power; the deadline is met (no violation); a `normal` signal
//! wakes them again; `adit replay decisions` recomputes every decision with no difference; a
//! malformed command is dead-lettered with its reason. And a cooperative's plain-text power
//! signal (`NORMAL` / `CURTAIL`), read through a feed map in config, drives the same
//! curtailment with no adit-shaped message anywhere; when the feed turns to garbage the
//! controller goes to its failsafe, and back out when the feed speaks again. An operator's
//! sleep of one machine holds through the controller's resume until the operator wakes it.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

const SITE: &str = "site-01";

async fn site_kw(app: &App) -> Option<f64> {
    farm::site_kw(app, SITE).await
}

/// Waits until the adapters have read each of the site's `machines`.
async fn wait_every_machine_read(app: &App, machines: i64) {
    let sql =
        format!("SELECT count(DISTINCT machine) AS n FROM energy_readings WHERE site = '{SITE}'");
    app.wait_rows(
        Duration::from_secs(90),
        "every machine read",
        &sql,
        |rows| rows[0]["n"].as_i64() == Some(machines),
    )
    .await;
}

/// When the site, as its meters read it, came down to `target_kw` (within 90 s).
async fn at_target(app: &App, target_kw: f64) -> chrono::DateTime<Utc> {
    let give_up = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < give_up {
        if site_kw(app).await.unwrap_or(f64::MAX) <= target_kw {
            return Utc::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("never at the target; log:\n{}", app.log())
}

/// Waits up to 90 s for the site to draw 90 % of `kw` again.
async fn wait_back_near(app: &App, kw: f64, what: &str) {
    eventually(Duration::from_secs(90), what, || async {
        site_kw(app).await.unwrap_or(0.0) >= kw * 0.9
    })
    .await;
}

/// No curtailment deadline was missed.
async fn assert_deadline_met(app: &App) {
    let missed = app
        .rows("SELECT count(*) AS n FROM violations WHERE kind = 'curtailment_deadline'")
        .await;
    assert_eq!(missed[0]["n"].as_i64(), Some(0), "the deadline was met");
}

/// POSTs `body` to `path` with the operate token; the answer must be `want`.
async fn post_operate(app: &App, path: &str, body: Value, want: u16) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", app.url()))
        .bearer_auth(OPERATE_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), want, "{}", r.text().await.unwrap());
}

async fn ingest_grid(app: &App, body: Value) {
    post_operate(app, "/api/v1/ingest/grid", body, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_curtailment_is_obeyed_by_the_simulated_miners_and_replays_identically() {
    let (nats, dir, app) = start_app(
        farm::FARM_ROLES,
        &farm::Farm {
            machines: 8,
            command_lag: "2s",
            ..Default::default()
        }
        .config(),
    )
    .await;
    wait_every_machine_read(&app, 8).await;
    let before_kw = site_kw(&app).await.unwrap();
    let target_kw = (before_kw * 0.5).round();
    let t0 = Utc::now();
    let deadline = t0 + chrono::Duration::seconds(60);
    ingest_grid(
        &app,
        json!({"site": SITE, "event_id": "dr-e2e", "kind": "curtail", "target_kw": target_kw,
               "deadline": deadline, "ts": t0}),
    )
    .await;

    // The site comes down to the target, as the meters read it.
    let reached = at_target(&app, target_kw).await;
    eprintln!(
        "site {before_kw:.1} kW → target {target_kw} kW reached after {:.1} s (deadline 60 s)",
        (reached - t0).num_milliseconds() as f64 / 1000.0
    );
    assert!(reached <= deadline, "deadline missed");

    // Shed least efficient first, each command acked by the miner's API.
    let machines: Vec<Value> = app.get_json("/api/v1/registry/machines", READ_TOKEN).await;
    let efficiency: BTreeMap<String, f64> = machines
        .iter()
        .map(|m| {
            let j_th = m["nominal_power_w"].as_f64().unwrap()
                / (m["nominal_hashrate_hs"].as_f64().unwrap() / 1e12);
            (m["id"].as_str().unwrap().to_string(), j_th)
        })
        .collect();
    let sheds = app
        .rows(
            "SELECT machine, id FROM decisions WHERE rule = 'grid_curtail' AND action = 'sleep' \
             ORDER BY ts, id",
        )
        .await;
    assert!(!sheds.is_empty());
    let order: Vec<f64> = sheds
        .iter()
        .map(|r| efficiency[r["machine"].as_str().unwrap()])
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] >= w[1]),
        "least efficient first: {order:?}"
    );
    let acked = "SELECT count(*) AS n FROM commands WHERE action = 'sleep' AND status = 'acked' \
                 AND actuator = 'miner_api'";
    eventually(Duration::from_secs(30), "sleep commands acked", || async {
        app.rows(acked).await[0]["n"].as_i64() >= Some(sheds.len() as i64)
    })
    .await;
    let fans = "SELECT count(*) AS n FROM commands WHERE action = 'fan_level' AND status = 'acked' \
                AND actuator = 'fan_relay'";
    assert!(
        app.rows(fans).await[0]["n"].as_i64() > Some(0),
        "fans set through the relay"
    );

    // The grid lifts the event: the machines are woken again.
    ingest_grid(
        &app,
        json!({"site": SITE, "event_id": "dr-e2e-end", "kind": "normal", "ts": Utc::now()}),
    )
    .await;
    wait_back_near(&app, before_kw, "the site back near its load").await;
    let woken = app
        .rows("SELECT count(*) AS n FROM decisions WHERE action = 'wake' AND rule = 'resume'")
        .await;
    assert!(woken[0]["n"].as_i64() > Some(0));
    assert_deadline_met(&app).await;

    // A malformed command is dead-lettered with its reason.
    let (_, js) = publisher(&nats).await;
    js.publish("control.site-01.m-001", "{\"id\":\"x\"}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let dlq = js.get_stream("DLQ").await.unwrap();
    let consumer = dlq
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: "dlq.control".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let dead = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .expect("a dead letter within 30 s")
        .unwrap()
        .unwrap();
    let reason = dead
        .headers
        .as_ref()
        .and_then(|h| h.get("Adit-Dlq-Reason"))
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(reason.contains("missing field"), "{reason}");

    // Overrides: a pinned fan level (operate) is obeyed and named in its decision; a hold
    // needs the admin role; each override is in the table with its author.
    let client = reqwest::Client::new();
    let overrides = format!("{}/api/v1/control/overrides", app.url());
    let r = client
        .post(&overrides)
        .bearer_auth(OPERATE_TOKEN)
        .json(
            &json!({"site": SITE, "kind": "fan_level", "value": 8, "duration": "10m",
                      "reason": "testing the relay"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let pinned: Value = r.json().await.unwrap();
    let pin_id = pinned["id"].as_str().unwrap().to_string();
    let r = client
        .post(&overrides)
        .bearer_auth(OPERATE_TOKEN)
        .json(&json!({"site": SITE, "kind": "hold", "duration": "10m", "reason": "maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a hold needs the admin role");
    let r = client
        .post(&overrides)
        .bearer_auth(OPERATE_TOKEN)
        .json(
            &json!({"site": SITE, "kind": "fan_level", "value": 12, "duration": "10m",
                      "reason": "too far"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "fan level 12 is refused");
    let pinned_fans = "SELECT count(*) AS n FROM commands c JOIN decisions d ON c.id = d.id                        WHERE d.rule = 'override_fan' AND d.fan_level = 8 AND c.status = 'acked'";
    app.wait_rows(
        Duration::from_secs(30),
        "the pinned fan level acked",
        pinned_fans,
        |rows| rows[0]["n"].as_i64() > Some(0),
    )
    .await;
    let named = app
        .rows("SELECT inputs FROM decisions WHERE rule = 'override_fan' LIMIT 1")
        .await;
    assert!(
        named[0]["inputs"].as_str().unwrap().contains(&pin_id),
        "the decision names the override"
    );
    let r = client
        .post(format!("{overrides}/{SITE}/{pin_id}/cancel"))
        .bearer_auth(OPERATE_TOKEN)
        .json(&json!({"reason": "done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Issue 56: a hold only an admin may set, only an admin may end.
    let r = client
        .post(&overrides)
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"site": SITE, "kind": "hold", "duration": "10m", "reason": "maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let hold: Value = r.json().await.unwrap();
    let hold_id = hold["id"].as_str().unwrap().to_string();
    for (token, want) in [(OPERATE_TOKEN, 403), (ADMIN_TOKEN, 202)] {
        let r = client
            .post(format!("{overrides}/{SITE}/{hold_id}/cancel"))
            .bearer_auth(token)
            .json(&json!({"reason": "over"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{}", r.text().await.unwrap());
    }
    let r = client
        .post(format!("{overrides}/{SITE}/other-site:hold:1/cancel"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"reason": "not this site's"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let listed: Vec<Value> = app
        .get_json(
            &format!("/api/v1/control/overrides?site={SITE}"),
            READ_TOKEN,
        )
        .await;
    assert!(
        listed
            .iter()
            .any(|o| o["id"] == pin_id.as_str() && o["by"] == "operator"),
        "{listed:?}"
    );

    // A signal for a site the registry does not know is not obeyed, and the shipped rule
    // for it finds it (run here as SQL against the real tables).
    ingest_grid(
        &app,
        json!({"site": "site-zz", "event_id": "dr-stray", "kind": "curtail", "target_kw": 1.0,
               "deadline": Utc::now() + chrono::Duration::seconds(60), "ts": Utc::now()}),
    )
    .await;
    let rules = adit_alerts::RuleFile::from_yaml(
        include_str!("../../rules/default.yml"),
        Default::default(),
    )
    .unwrap();
    let stray = rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .find(|r| r.alert == "GridSignalUnknownSite")
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the stray signal found",
        || async {
            let (status, body) = app.sql(&stray.expr, "json", Some(READ_TOKEN)).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let rows: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
            rows.iter().any(|r| r["site"] == "site-zz") && !rows.iter().any(|r| r["site"] == SITE)
        },
    )
    .await;
    let obeyed = app
        .rows("SELECT count(*) AS n FROM decisions WHERE site = 'site-zz'")
        .await;
    assert_eq!(obeyed[0]["n"].as_i64(), Some(0), "not obeyed");

    // Every decision recomputes identically from its row.
    assert_replays(&dir, t0).await;
}

/// `adit replay decisions` recomputes every decision of the site since an hour before `t0`
/// identically from its row.
async fn assert_replays(dir: &tempfile::TempDir, t0: chrono::DateTime<Utc>) {
    let out = Command::new(env!("CARGO_BIN_EXE_adit"))
        .args([
            "--tables",
            &dir.path().join("tables").to_string_lossy(),
            "replay",
            "decisions",
            "--site",
            SITE,
            "--from",
            &(t0 - chrono::Duration::hours(1)).to_rfc3339(),
            "--to",
            &(Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    eprintln!(
        "replay: {} decisions in {} steps, {} differences",
        report["decisions"],
        report["steps"],
        report["differences"].as_array().unwrap().len()
    );
    assert!(report["steps"].as_u64() > Some(2), "{report}");
    assert_eq!(report["differences"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperatives_plain_text_power_signal_drives_a_curtailment() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let feed = adit_testkit::Feed::start("/power-signal", "NORMAL\n").await;
    // The cooperative says CURTAIL: the site goes down to 1 kW (its miners asleep) within
    // the minute.
    let target_kw = 1.0;
    let url = &feed.url;
    let app = App::start(
        &nats.url(),
        dir.path(),
        farm::FARM_ROLES,
        &farm::Farm {
            adapters: "grid_confirm = \"1s\"\n",
            curtailment: "signal_stale = \"5s\"\n",
            extra: &format!(
                "[[adapters.grid]]\nsite = \"{SITE}\"\nkind = \"signal\"\nurl = \"{url}\"\n\
                 [adapters.grid.map]\nformat = \"text\"\ntarget_kw = {target_kw:.1}\nlead = \"60s\"\n\
                 values = {{ CURTAIL = \"curtail\", NORMAL = \"normal\" }}\n"
            ),
            ..Default::default()
        }
        .config(),
    );
    app.wait_http().await;
    eventually(
        Duration::from_secs(90),
        "every machine read and the feed's NORMAL landed",
        || async {
            let sql = format!(
                "SELECT (SELECT count(DISTINCT machine) FROM energy_readings WHERE site = '{SITE}') AS m, \
                 (SELECT count(*) FROM grid_signals WHERE site = '{SITE}' AND kind = 'normal' AND event_id LIKE 'feed-%') AS g"
            );
            app.try_rows(&sql).await.is_some_and(|rows| {
                rows[0]["m"].as_i64() == Some(4) && rows[0]["g"].as_i64() == Some(1)
            })
        },
    )
    .await;
    let before_kw = site_kw(&app).await.unwrap();
    assert!(
        before_kw > target_kw * 4.0,
        "a site worth curtailing: {before_kw} kW"
    );

    let t0 = Utc::now();
    feed.set("CURTAIL\n");
    let reached = at_target(&app, target_kw).await;
    eprintln!(
        "plain-text CURTAIL: site {before_kw:.1} kW → {target_kw} kW after {:.1} s (lead 60 s)",
        (reached - t0).num_milliseconds() as f64 / 1000.0
    );
    // The feed's word became one curtail event with the configured target and a deadline a
    // minute after it was first seen; the controller met it.
    let signals = app
        .rows(&format!(
            "SELECT event_id, target_kw, to_unixtime(deadline) AS deadline_s, \
             to_unixtime(deadline) - to_unixtime(ts) AS lead_s FROM grid_signals \
             WHERE site = '{SITE}' AND kind = 'curtail' ORDER BY ts"
        ))
        .await;
    // One event, confirmed every `grid_confirm` with its id and deadline kept.
    assert!(!signals.is_empty());
    assert!(
        signals
            .iter()
            .all(|g| g["event_id"] == signals[0]["event_id"]
                && g["deadline_s"] == signals[0]["deadline_s"]),
        "{signals:?}"
    );
    assert_eq!(signals[0]["target_kw"].as_f64(), Some(target_kw));
    assert_eq!(signals[0]["lead_s"].as_i64(), Some(60), "{signals:?}");
    let deadline_s = signals[0]["deadline_s"].as_i64().unwrap();
    assert!(reached.timestamp() <= deadline_s, "deadline missed");
    let sheds = app
        .rows(
            "SELECT count(*) AS n FROM decisions WHERE rule = 'grid_curtail' AND action = 'sleep'",
        )
        .await;
    assert!(sheds[0]["n"].as_i64() > Some(0));

    // The feed turns to garbage: nothing confirms the curtailment any more, and once
    // `signal_stale` passes the controller goes to its failsafe (the load held, fans up).
    feed.set("<html>down for maintenance</html>");
    eventually(
        Duration::from_secs(30),
        "the failsafe on a silent feed",
        || farm::failsafe(&app, SITE, "to"),
    )
    .await;
    let said_maintenance = || {
        app.log()
            .lines()
            .any(|l| l.contains("maintenance") && l.contains("power-signal"))
    };
    eventually(
        Duration::from_secs(10),
        "the feed's failure in the log, with what it said",
        || async { said_maintenance() },
    )
    .await;
    // It speaks again (still CURTAIL): confirmed, out of the failsafe.
    feed.set("CURTAIL");
    eventually(Duration::from_secs(30), "out of the failsafe", || {
        farm::failsafe(&app, SITE, "from")
    })
    .await;

    // NORMAL again: the machines are woken; no deadline was missed.
    feed.set("NORMAL");
    wait_back_near(&app, before_kw, "the site back near its load").await;
    assert_deadline_met(&app).await;
}

/// A machine's last reading, W.
async fn machine_w(app: &App, machine: &str) -> Option<f64> {
    let sql = format!(
        "SELECT first_value(power_w ORDER BY ts DESC) AS w FROM energy_readings \
         WHERE site = '{SITE}' AND machine = '{machine}'"
    );
    app.rows(&sql).await.first().and_then(|r| r["w"].as_f64())
}

async fn operator_command(app: &App, body: Value) {
    post_operate(app, "/api/v1/control/commands", body, 202).await;
}

/// An operator sleeps one machine through the API (a hashboard to swap); a curtailment comes
/// and goes, and the controller's resume wakes every other machine but leaves that one asleep;
/// the operator's wake brings it back. Every step is a decision row and an acked command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_an_operator_slept_stays_asleep_through_a_resume_until_woken() {
    let (_nats, _dir, app) = start_app(farm::FARM_ROLES, &farm::Farm::default().config()).await;
    wait_every_machine_read(&app, 4).await;
    let held = "m-001";
    let held_w = machine_w(&app, held).await.unwrap();
    let before_kw = site_kw(&app).await.unwrap();
    assert!(held_w > 500.0, "a running machine: {held_w} W");

    operator_command(
        &app,
        json!({"site": SITE, "machine": held, "action": "sleep", "reason": "hashboard swap"}),
    )
    .await;
    let slept = format!(
        "SELECT count(*) AS n FROM commands WHERE target = '{held}' AND action = 'sleep' AND status = 'acked'"
    );
    eventually(
        Duration::from_secs(60),
        "the operator's sleep acked",
        || async { app.rows(&slept).await[0]["n"].as_i64() > Some(0) },
    )
    .await;
    eventually(Duration::from_secs(60), "the machine asleep", || async {
        machine_w(&app, held)
            .await
            .is_some_and(|w| w < held_w * 0.2)
    })
    .await;
    let decided = app
        .rows(&format!(
            "SELECT rule, action, to_unixtime(ts) AS at FROM decisions \
             WHERE machine = '{held}' AND rule = 'operator'"
        ))
        .await;
    assert_eq!(decided[0]["action"], "sleep", "{decided:?}");
    // What the controller decided before the operator's sleep (its start-up steps) is not
    // what this test is about.
    let slept_at = decided[0]["at"].as_f64().unwrap();

    // A curtailment and its end: the resume wakes every other machine, not the held one.
    let others_kw = before_kw - held_w / 1000.0;
    let t0 = Utc::now();
    ingest_grid(
        &app,
        json!({"site": SITE, "event_id": "dr-op", "kind": "curtail", "target_kw": (others_kw * 0.4).round(),
               "deadline": t0 + chrono::Duration::seconds(60), "ts": t0}),
    )
    .await;
    eventually(Duration::from_secs(90), "curtailed", || async {
        site_kw(&app).await.unwrap_or(f64::MAX) <= (others_kw * 0.4).round()
    })
    .await;
    ingest_grid(
        &app,
        json!({"site": SITE, "event_id": "dr-op-end", "kind": "normal", "ts": Utc::now()}),
    )
    .await;
    wait_back_near(&app, others_kw, "the other machines back").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        machine_w(&app, held).await.unwrap() < held_w * 0.2,
        "the held machine still asleep after the resume"
    );
    let woken_by_controller = app
        .rows(&format!(
            "SELECT ts, rule, action, from_mode, to_mode, inputs FROM decisions \
             WHERE machine = '{held}' AND to_unixtime(ts) > {slept_at} ORDER BY ts"
        ))
        .await;
    assert!(
        !woken_by_controller.iter().any(|d| d["action"] == "wake"),
        "{woken_by_controller:#?}"
    );

    // The operator wakes it.
    operator_command(
        &app,
        json!({"site": SITE, "machine": held, "action": "wake", "reason": "board swapped"}),
    )
    .await;
    eventually(Duration::from_secs(60), "the held machine back", || async {
        machine_w(&app, held)
            .await
            .is_some_and(|w| w > held_w * 0.8)
    })
    .await;
    let woken = app
        .rows(&format!(
            "SELECT rule FROM decisions WHERE machine = '{held}' AND action = 'wake' \
             AND to_unixtime(ts) > {slept_at}"
        ))
        .await;
    assert_eq!(woken.len(), 1, "{woken:?}");
    assert_eq!(woken[0]["rule"], "operator");
}

/// The old controller's `raw-state` (issue 61): an admin writes a site's mode directly. An
/// operator may not (403), and a mode that does not exist is a 400. The admin's `emergency` is
/// a decision (rule `operator`, action `mode`) and every machine sleeps, as in a real
/// emergency; `running` written back ends it and the machines come back. Both writes are in
/// `overrides` with who wrote them and why and in the audit trail, and every decision of the
/// controller replays identically around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_writes_a_sites_mode_directly_and_the_controller_steps_on_from_it() {
    let (_nats, dir, app) = start_app(farm::FARM_ROLES, &farm::Farm::default().config()).await;
    wait_every_machine_read(&app, 4).await;
    let before_kw = site_kw(&app).await.unwrap();
    let t0 = Utc::now();
    let write = |token: &'static str, body: Value| {
        let url = format!("{}/api/v1/control/mode", app.url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let emergency = json!({"site": SITE, "mode": "emergency", "reason": "smoke in row 3"});
    assert_eq!(write(OPERATE_TOKEN, emergency.clone()).await.0, 403);
    let (status, text) = write(
        ADMIN_TOKEN,
        json!({"site": SITE, "mode": "panic", "reason": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = write(ADMIN_TOKEN, emergency).await;
    assert_eq!(status, 202, "{text}");
    eventually(Duration::from_secs(60), "every machine asleep", || async {
        site_kw(&app).await.unwrap_or(f64::MAX) < before_kw * 0.2
    })
    .await;
    let written = app
        .rows(&format!(
            "SELECT from_mode, to_mode, inputs FROM decisions WHERE site = '{SITE}' \
             AND rule = 'operator' AND action = 'mode' ORDER BY ts"
        ))
        .await;
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0]["to_mode"], "emergency");
    assert!(
        written[0]["inputs"]
            .as_str()
            .unwrap()
            .contains("smoke in row 3")
    );
    let slept = app
        .rows(&format!(
            "SELECT count(*) AS n FROM decisions WHERE site = '{SITE}' \
             AND rule = 'emergency_temperature' AND action = 'sleep'"
        ))
        .await;
    assert!(slept[0]["n"].as_i64() > Some(0), "{slept:?}");

    let (status, text) = write(
        ADMIN_TOKEN,
        json!({"site": SITE, "mode": "running", "reason": "all clear"}),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    wait_back_near(&app, before_kw, "the machines back after the mode write").await;
    let listed: Vec<Value> = app
        .get_json(
            &format!("/api/v1/control/overrides?site={SITE}"),
            READ_TOKEN,
        )
        .await;
    let writes: Vec<(&Value, &Value)> = listed
        .iter()
        .filter(|o| o["kind"] == "mode")
        .map(|o| (&o["mode"], &o["by"]))
        .collect();
    assert_eq!(
        writes,
        [
            (&json!("running"), &json!("admin")),
            (&json!("emergency"), &json!("admin"))
        ],
        "{listed:?}"
    );
    app.wait_rows(
        Duration::from_secs(30),
        "both writes and the operator's refusal in the audit trail",
        "SELECT who, status FROM audit WHERE path = '/api/v1/control/mode' ORDER BY ts",
        |rows| {
            rows.iter().filter(|r| r["status"] == 202).count() == 2
                && rows
                    .iter()
                    .any(|r| r["status"] == 403 && r["who"] == "operator")
        },
    )
    .await;
    assert_replays(&dir, t0).await;
}

/// Watt set-points (issue 60): two of the site's four miners take a power target (LuxOS). A
/// curtailment they can meet by turning down is met with no machine slept: the controller
/// lowers their targets, the actuators set each through a LuxOS session on the miner's API
/// (`logon`, `profileset <session>,<W>W`, `logoff`), the miners' measured power falls to the
/// targets and the site's to the event's; once the event ends the targets go back to
/// nameplate and the site to its load. Every decision replays identically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watt_set_point_lowers_a_miners_power_before_any_machine_sleeps() {
    let (nats, dir, app) = start_app(farm::FARM_ROLES, &farm::Farm::default().config()).await;
    wait_every_machine_read(&app, 4).await;
    let mut machines: Vec<Value> = app
        .get_json(
            &format!("/api/v1/registry/machines?site={SITE}"),
            READ_TOKEN,
        )
        .await;
    machines.sort_by_key(|m| m["id"].as_str().unwrap().to_string());
    let mut turnable = BTreeMap::new();
    let mut records = Vec::new();
    for m in machines.iter_mut().skip(2) {
        let nominal = m["nominal_power_w"].as_f64().unwrap();
        m["power_target_min_w"] = json!((nominal * 0.4).round());
        let id = m["id"].as_str().unwrap().to_string();
        records.push((format!("/api/v1/registry/machines/{SITE}/{id}"), m.clone()));
        turnable.insert(id, nominal);
    }
    app.put_all(records).await;
    farm::registry_committed(&nats).await;
    let before_kw = site_kw(&app).await.unwrap();
    // What the two can give is 60 % of their nameplate; ask for half of that.
    let can_give_kw: f64 = turnable.values().map(|w| w * 0.6 / 1000.0).sum();
    let target_kw = ((before_kw - can_give_kw / 2.0) * 10.0).floor() / 10.0;
    let t0 = Utc::now();
    let deadline = t0 + chrono::Duration::seconds(60);
    ingest_grid(
        &app,
        json!({"site": SITE, "event_id": "dr-watts", "kind": "curtail", "target_kw": target_kw,
               "deadline": deadline, "ts": t0}),
    )
    .await;
    let reached = at_target(&app, target_kw).await;
    eprintln!(
        "site {before_kw:.2} kW → {target_kw} kW by power targets in {:.1} s (deadline 60 s)",
        (reached - t0).num_milliseconds() as f64 / 1000.0
    );
    assert!(reached <= deadline, "deadline missed");

    // Only targets, only on the machines that take one, each set on the miner through LuxOS.
    let targets = app
        .rows(
            "SELECT machine, power_target_w FROM decisions WHERE action = 'power_target' \
             AND rule = 'grid_curtail' ORDER BY ts, id",
        )
        .await;
    assert!(!targets.is_empty(), "targets lowered");
    for t in &targets {
        let machine = t["machine"].as_str().unwrap();
        let watts = t["power_target_w"].as_f64().unwrap();
        let nominal = turnable
            .get(machine)
            .expect("a machine that takes a target");
        assert!(watts >= (nominal * 0.4).round() && watts < *nominal, "{t}");
    }
    let slept = app
        .rows("SELECT count(*) AS n FROM decisions WHERE action = 'sleep'")
        .await;
    assert_eq!(slept[0]["n"].as_i64(), Some(0), "no machine slept");
    let acked = "SELECT count(*) AS n FROM commands WHERE action = 'power_limit' \
                 AND status = 'acked' AND actuator = 'miner_power_target' AND reply LIKE '%profile%'";
    eventually(Duration::from_secs(30), "power targets acked", || async {
        app.rows(acked).await[0]["n"].as_i64() >= Some(targets.len() as i64)
    })
    .await;
    // Each lowered miner draws at most its last target, yet still hashes.
    for machine in turnable.keys() {
        let last = app
            .rows(&format!(
                "SELECT last_value(power_target_w ORDER BY ts, id) AS w FROM decisions \
                 WHERE machine = '{machine}' AND action = 'power_target'"
            ))
            .await;
        let Some(target_w) = last[0]["w"].as_f64() else {
            continue;
        };
        eventually(Duration::from_secs(30), "a miner at its target", || async {
            machine_w(&app, machine)
                .await
                .is_some_and(|w| w <= target_w + 0.5 && w > target_w * 0.5)
        })
        .await;
    }

    // The event ends: the targets are lifted to nameplate, and the site draws its load again.
    ingest_grid(
        &app,
        json!({"site": SITE, "event_id": "dr-watts-end", "kind": "normal", "ts": Utc::now()}),
    )
    .await;
    wait_back_near(&app, before_kw, "the site back near its load").await;
    // Each machine turned down is lifted to its nameplate once (one the curtailment never
    // needed has nothing to lift).
    let lowered: BTreeSet<String> = app
        .rows(
            "SELECT DISTINCT machine FROM decisions WHERE action = 'power_target' \
             AND rule = 'grid_curtail'",
        )
        .await
        .iter()
        .filter_map(|t| t["machine"].as_str().map(str::to_string))
        .collect();
    for (machine, nominal) in turnable.iter().filter(|(m, _)| lowered.contains(*m)) {
        wait_lifted(&app, machine, *nominal).await;
    }
    assert_deadline_met(&app).await;
    assert_replays(&dir, t0).await;
}

/// Waits up to 60 s for `machine`'s target to be lifted to its `nominal` power once, by
/// `resume`; on timing out, panics with every decision and command about the machine.
async fn wait_lifted(app: &App, machine: &str, nominal: f64) {
    let lifted = format!(
        "SELECT count(*) AS n FROM decisions WHERE machine = '{machine}' \
         AND action = 'power_target' AND rule = 'resume' AND power_target_w = {}",
        nominal.round()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if app
            .try_rows(&lifted)
            .await
            .is_some_and(|r| r[0]["n"].as_i64() == Some(1))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let decided = app
        .rows(&format!(
            "SELECT ts, action, rule, power_target_w, from_mode, to_mode FROM decisions \
             WHERE machine = '{machine}' ORDER BY ts, id"
        ))
        .await;
    let commanded = app
        .rows(&format!(
            "SELECT ts, action, value, status, attempt, reply FROM commands \
             WHERE target = '{machine}' ORDER BY ts, id, attempt"
        ))
        .await;
    panic!(
        "{machine}'s target not lifted to {nominal} W once in 60 s\ndecisions: {decided:#?}\n\
         commands: {commanded:#?}\nlog:\n{}",
        app.log()
    );
}

/// Runs `adit control` with `args` against `app`'s config and tables; success, stdout, stderr.
fn control(app: &App, nats: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_adit"))
        .args(["--config", app.dir.join("adit.toml").to_str().unwrap()])
        .args([
            "--nats-url",
            nats,
            "--tables",
            app.dir.join("tables").to_str().unwrap(),
        ])
        .arg("control")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `adit control --once` (issue 61, the old controller's `--cron`) with no pipelines role
/// running: each run recovers the controller, reads its inputs up to now, steps once and
/// commits the same decision rows the running controller writes, printing each; a second run
/// goes on from the first (nothing decided twice); while a pipelines role holds the
/// controller it is refused, saying so; `--site` is refused where the controller is not
/// partitioned by site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_once_steps_the_controller_like_cron_and_commits_its_decisions_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "query",
        "[pipelines.curtailment]\neval_every = \"1s\"\n",
    );
    app.wait_http().await;
    app.put_all(vec![
        (
            "/api/v1/registry/sites/site-c1".to_string(),
            json!({"allocation_kw": 10.0, "timezone": "UTC"}),
        ),
        (
            "/api/v1/registry/machines/site-c1/m1".to_string(),
            json!({"model": "S19", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000}),
        ),
        (
            "/api/v1/registry/machines/site-c1/m2".to_string(),
            json!({"model": "S19", "nominal_hashrate_hs": 0.8e14, "nominal_power_w": 3000}),
        ),
    ])
    .await;
    let now = Utc::now() - chrono::Duration::seconds(5);
    for machine in ["m1", "m2"] {
        post_operate(
            &app,
            "/api/v1/ingest/energy",
            json!({"site": "site-c1", "machine": machine, "ts": now, "power_w": 3000.0, "source": "meter"}),
            200,
        )
        .await;
    }
    ingest_grid(
        &app,
        json!({"site": "site-c1", "event_id": "dr-cron", "kind": "curtail", "target_kw": 3.5,
               "deadline": now + chrono::Duration::minutes(5), "ts": now}),
    )
    .await;

    let (ok, first, err) = control(&app, &nats.url(), &["--once", "--wait", "20s"]);
    assert!(ok, "adit control --once failed:\n{first}\n{err}");
    println!("adit control --once:\n{first}{err}");
    let printed = |out: &str| -> Vec<Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    };
    let first = printed(&first);
    assert!(!first.is_empty(), "no decision: {err}");
    assert!(first.iter().all(|d| d["site"] == "site-c1"), "{first:?}");
    assert!(
        first
            .iter()
            .any(|d| d["rule"] == "grid_curtail" && d["action"] == "sleep"),
        "the curtailment shed nothing: {first:?}"
    );
    // The utility lifts the curtailment; the next run (a minute later in cron) resumes.
    ingest_grid(
        &app,
        json!({"site": "site-c1", "event_id": "dr-cron", "kind": "normal", "ts": Utc::now()}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, second, err) = control(&app, &nats.url(), &["--once"]);
    assert!(ok, "the second run failed:\n{second}\n{err}");
    let second = printed(&second);
    assert!(
        second
            .iter()
            .any(|d| d["from_mode"] == "curtailed" && d["to_mode"] != "curtailed"),
        "the second run did not go on from the first: {second:?}\n{err}"
    );

    // The table holds what each run printed, each decision once.
    let mut ids: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "a decision made twice");
    // (The runs commit from their own processes; the server's snapshots are up to `[query]
    // snapshot_refresh` old, so its view is waited for, then compared.)
    let landed = || async {
        let rows = app.rows("SELECT id FROM decisions ORDER BY id").await;
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(30),
        "the second run's decisions",
        || async { landed().await.len() >= ids.len() },
    )
    .await;
    assert_eq!(
        landed().await,
        ids,
        "the decisions table is what the runs printed"
    );

    // Refused where it cannot work.
    let (ok, _, err) = control(&app, &nats.url(), &["--once", "--site", "site-c1"]);
    assert!(!ok && err.contains("not partitioned by site"), "{err}");
    let dir2 = tempfile::tempdir().unwrap();
    let running = App::start(&nats.url(), dir2.path(), "pipelines", "");
    eventually(
        Duration::from_secs(30),
        "the pipelines role holds the controller",
        || async {
            running
                .log()
                .lines()
                .any(|l| l.contains("lease taken") && l.contains("curtailment"))
        },
    )
    .await;
    let (ok, _, err) = control(&app, &nats.url(), &["--once", "--wait", "2s"]);
    assert!(!ok, "ran beside a running controller");
    assert!(err.contains("another process holds its lease"), "{err}");
}
