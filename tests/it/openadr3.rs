//! A site connected to its utility over OpenADR 3.1, end to end (issue 60): OpenLEADR's VTN
//! (`openleadr-vtn` 0.2.8, on a PostgreSQL of the test's own) and the real binary (`adit run`
//! with the farm's roles and an `[[adapters.openadr3]]` VEN). The VEN registers; the utility
//! creates a program, a `PRICE` event (published as the site's price per MWh) and an
//! `IMPORT_CAPACITY_LIMIT` event due in three minutes; the site's
//! measured power (from SQL) falls to the limit before the deadline; the VEN's load reports
//! reach the VTN and read back through its API; the utility ending the event early ends the
//! curtailment.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::json;

const SITE: &str = "site-01";

/// Waits until the site's power is at most `target_kw`; when it got there.
async fn reach(app: &App, target_kw: f64, what: &str) -> chrono::DateTime<Utc> {
    let give_up = std::time::Instant::now() + Duration::from_secs(150);
    while std::time::Instant::now() < give_up {
        if farm::site_kw(app, SITE).await.unwrap_or(f64::MAX) <= target_kw {
            return Utc::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: never at {target_kw} kW; log:\n{}", app.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_1_vtns_capacity_limit_is_met_before_its_deadline_and_reported() {
    let vtn = adit_testkit::Vtn3::start().await;
    let (_nats, _dir, app) = start_app(
        farm::FARM_ROLES,
        &farm::Farm {
            polling: "interval = \"2s\"\ntimeout = \"1s\"\nstale_after = \"6s\"\nmax_backoff = \"4s\"\n",
            adapters: "grid_confirm = \"1s\"\n",
            curtailment: "signal_stale = \"10s\"\n",
            extra: &format!(
                "[[adapters.openadr3]]\nsite = \"{SITE}\"\nvtn_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nlead = \"10m\"\npoll = \"1s\"\nsample_every = \"2s\"\nreport_every = \"5s\"\nprices = true\n",
                vtn.url(),
                adit_testkit::VEN_CLIENT_ID,
                adit_testkit::VEN_CLIENT_SECRET,
            ),
            ..Default::default()
        }
        .config(),
    )
    .await;

    // Registered, and every machine read.
    let give_up = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let sql = format!(
            "SELECT count(DISTINCT machine) AS m FROM energy_readings WHERE site = '{SITE}'"
        );
        let vens = vtn.vens().await;
        if vens.iter().any(|v| v["venName"] == SITE)
            && app.sql(&sql, "json", Some(READ_TOKEN)).await.0 == 200
            && app.rows(&sql).await[0]["m"].as_i64() == Some(4)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "not registered and read: the VTN's VENs {vens:?}\nits log:\n{}\nadit's log:\n{}",
            vtn.output(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before_kw = farm::site_kw(&app, SITE).await.unwrap();
    let limit_kw = (before_kw / 2.0).floor();
    assert!(limit_kw >= 2.0, "a site worth curtailing: {before_kw} kW");

    // The utility's program, and its energy price now: 0.031 per kWh, published as 31 per MWh.
    let program = vtn.create_program("farm-dr").await;
    let priced = vtn
        .create_event(json!({
            "programID": program,
            "eventName": "tariff",
            "priority": 5,
            "intervalPeriod": {"start": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(), "duration": "PT30M"},
            "payloadDescriptors": [{"payloadType": "PRICE", "units": "KWH", "currency": "USD"}],
            "intervals": [{"id": 0, "payloads": [{"type": "PRICE", "values": [0.031]}]}],
        }))
        .await;
    eventually(Duration::from_secs(30), "the price published", || async {
        app.rows(&format!(
            "SELECT price_per_mwh FROM grid_signals WHERE site = '{SITE}' AND kind = 'price' \
             AND event_id = 'oadr-{priced}-i0'"
        ))
        .await
        .first()
        .and_then(|r| r["price_per_mwh"].as_f64())
        .is_some_and(|p| (p - 31.0).abs() < 1e-6)
    })
    .await;

    // The capacity event: at most `limit_kw` from three minutes from now, for fifteen minutes.
    let sent = Utc::now();
    let start = sent + chrono::Duration::seconds(180);
    let event = vtn
        .create_event(json!({
            "programID": program,
            "eventName": "cap",
            "priority": 0,
            "intervalPeriod": {"start": start.to_rfc3339(), "duration": "PT15M"},
            "payloadDescriptors": [{"payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}],
            "intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [limit_kw]}]}],
        }))
        .await;
    let reached = reach(&app, limit_kw, "the capacity limit").await;
    assert!(reached < start, "the limit met before its deadline");
    let signals = app
        .rows(&format!(
            "SELECT event_id, target_kw, to_unixtime(deadline) AS deadline_s FROM grid_signals \
             WHERE site = '{SITE}' AND kind = 'curtail' ORDER BY ts"
        ))
        .await;
    assert_eq!(
        signals[0]["event_id"],
        format!("oadr-{event}-i0"),
        "{signals:?}"
    );
    assert_eq!(signals[0]["target_kw"].as_f64(), Some(limit_kw));
    let deadline_s = signals[0]["deadline_s"].as_f64().unwrap();
    assert!(
        (deadline_s - start.timestamp() as f64).abs() < 1.0,
        "due at the interval's start: {signals:?}"
    );
    eprintln!(
        "OpenADR 3.1 event: {before_kw:.1} kW → {limit_kw} kW in {:.1} s (due in 180 s)",
        (reached - sent).num_milliseconds() as f64 / 1000.0
    );

    // The VEN's load reports reach the VTN, and the utility reads the curtailed load back.
    eventually(Duration::from_secs(60), "a report at the limit", || async {
        vtn.reports(&event).await.iter().any(|r| {
            r["clientName"] == SITE
                && r["resources"][0]["intervals"]
                    .as_array()
                    .is_some_and(|intervals| {
                        intervals.iter().any(|i| {
                            i["payloads"][0]["type"] == "DEMAND"
                                && i["payloads"][0]["values"][0]
                                    .as_f64()
                                    .is_some_and(|kw| kw > 0.0 && kw <= limit_kw)
                        })
                    })
        })
    })
    .await;

    // The utility ends the event early (its period moved into the past; the reports keep it
    // from being deleted): the curtailment ends with a `normal` and the site comes back up.
    let ended = Utc::now() - chrono::Duration::hours(1);
    vtn.update_event(
        &event,
        json!({
            "programID": program,
            "eventName": "cap",
            "priority": 0,
            "intervalPeriod": {"start": ended.to_rfc3339(), "duration": "PT1M"},
            "payloadDescriptors": [{"payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}],
            "intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [limit_kw]}]}],
        }),
    )
    .await;
    eventually(Duration::from_secs(60), "the curtailment ended", || async {
        app.rows(&format!(
            "SELECT count(*) AS n FROM grid_signals WHERE site = '{SITE}' AND kind = 'normal' \
             AND event_id = 'oadr-{event}-i0'"
        ))
        .await[0]["n"]
            .as_i64()
            .is_some_and(|n| n >= 1)
    })
    .await;
    eventually(Duration::from_secs(120), "the site back up", || async {
        farm::site_kw(&app, SITE)
            .await
            .is_some_and(|kw| kw > limit_kw + 1.0)
    })
    .await;
}
