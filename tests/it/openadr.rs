//! A site connected to its utility over OpenADR 2.0b, end to end: a real VTN (openleadr's)
//! and the real binary (`adit run --roles pipelines,query,simulate,adapters,actuators` with
//! an `[[adapters.openadr]]` VEN). The VEN registers and offers its power report; the VTN
//! sends a curtail event due in five minutes, then a modification, then a cancellation; the
//! site's measured power (from SQL) meets each target by its time, the VTN receives the VEN's
//! opt-ins and power reports, a restart while the VTN is silent keeps it, a cancellation that
//! arrives while adit is down ends the curtailment once it is back, and a VTN that falls silent during a curtailment takes the
//! site to the controller's failsafe. A VTN that requires client certificates is reached with
//! the site's certificate.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::{Value, json};

const SITE: &str = "site-01";
const VEN_ID: &str = "ven-site-01";

async fn site_kw(app: &App) -> Option<f64> {
    farm::site_kw(app, SITE).await
}

/// How many `normal` signals ended the VEN's curtailments of event `dr-1`.
async fn normals(app: &App) -> Option<i64> {
    app.rows(&format!(
        "SELECT count(*) AS n FROM grid_signals WHERE site = '{SITE}' AND kind = 'normal' \
         AND event_id LIKE 'oadr-dr-1-%'"
    ))
    .await[0]["n"]
        .as_i64()
}

/// Waits until the site's power is at most `target_kw`; when it got there.
async fn reach(app: &App, target_kw: f64, what: &str) -> chrono::DateTime<Utc> {
    let give_up = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < give_up {
        if site_kw(app).await.unwrap_or(f64::MAX) <= target_kw {
            return Utc::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: never at {target_kw} kW; log:\n{}", app.log());
}

fn opted(seen: &Value, event_id: &str, modification: u64) -> Option<String> {
    seen["opts"].as_array()?.iter().find_map(|o| {
        (o["event_id"] == event_id && o["modification_number"].as_u64() == Some(modification))
            .then(|| o["opt_type"].as_str().unwrap_or("").to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vtns_events_are_followed_answered_and_reported_and_its_silence_is_failsafe() {
    let vtn = adit_testkit::Vtn::start().await;
    let (_nats, _dir, mut app) = start_app(
        farm::FARM_ROLES,
        &farm::Farm {
            polling: "interval = \"2s\"\ntimeout = \"1s\"\nstale_after = \"6s\"\nmax_backoff = \"4s\"\n",
            adapters: "grid_confirm = \"1s\"\n",
            curtailment: "signal_stale = \"6s\"\n",
            extra: &format!(
                "[[adapters.openadr]]\nsite = \"{SITE}\"\nvtn_url = \"{}\"\nven_name = \"{SITE}\"\nlead = \"10m\"\npoll = \"1s\"\n",
                vtn.url()
            ),
            ..Default::default()
        }
        .config(),
    )
    .await;
    // Registered, the power report offered and asked for, every machine read.
    let give_up = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let seen = vtn.seen().await;
        let sql = format!(
            "SELECT count(DISTINCT machine) AS m FROM energy_readings WHERE site = '{SITE}'"
        );
        if seen["registrations"][0]["ven_id"] == VEN_ID
            && seen["report_offers"][0]["ven_id"] == VEN_ID
            && app.sql(&sql, "json", Some(READ_TOKEN)).await.0 == 200
            && app.rows(&sql).await[0]["m"].as_i64() == Some(4)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "not registered, reporting and read: the VTN saw {seen}\nits log:\n{}\nadit's log:\n{}",
            vtn.output(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before_kw = site_kw(&app).await.unwrap();
    let first_kw = (before_kw / 2.0).floor();
    assert!(first_kw >= 2.0, "a site worth curtailing: {before_kw} kW");

    // A curtail event: the site at `first_kw` from five minutes from now, for fifteen minutes.
    let sent = Utc::now();
    vtn.add_event(json!({
        "event_id": "dr-1", "ven_id": VEN_ID, "value": first_kw,
        "start_in_s": 300, "duration_s": 900,
    }))
    .await;
    let reached = reach(&app, first_kw, "the event's target").await;
    let signals = app
        .rows(&format!(
            "SELECT event_id, target_kw, to_unixtime(deadline) AS deadline_s FROM grid_signals \
             WHERE site = '{SITE}' AND kind = 'curtail' ORDER BY ts"
        ))
        .await;
    assert_eq!(signals[0]["event_id"], "oadr-dr-1-m0-i0", "{signals:?}");
    assert_eq!(signals[0]["target_kw"].as_f64(), Some(first_kw));
    let deadline_s = signals[0]["deadline_s"].as_f64().unwrap();
    let due_s = (sent.timestamp_millis() as f64) / 1000.0 + 300.0;
    assert!(
        (deadline_s - due_s).abs() < 10.0,
        "due at the event's start: {signals:?}"
    );
    assert!(
        (reached.timestamp() as f64) < deadline_s,
        "met before its start"
    );
    eprintln!(
        "OpenADR event: {before_kw:.1} kW → {first_kw} kW in {:.1} s (due in 300 s)",
        (reached - sent).num_milliseconds() as f64 / 1000.0
    );
    eventually(Duration::from_secs(30), "the VEN opted in", || async {
        opted(&vtn.seen().await, "dr-1", 0).as_deref() == Some("optIn")
    })
    .await;

    // The power report reaches the VTN with the site's power.
    eventually(Duration::from_secs(30), "power reports", || async {
        let seen = vtn.seen().await;
        seen["reports"].as_array().is_some_and(|r| {
            r.iter()
                .filter_map(|v| v["value"].as_f64())
                .any(|kw| kw > 0.0 && kw <= before_kw * 1.5)
        })
    })
    .await;

    // A modification: a lower target, due in a minute.
    let modified = Utc::now();
    let m = vtn
        .modify_event(
            "dr-1",
            json!({ "value": 1.0, "start_in_s": 60, "duration_s": 900 }),
        )
        .await;
    assert_eq!(m, 1);
    let reached = reach(&app, 1.0, "the modified target").await;
    assert!(
        (reached - modified).num_seconds() < 60,
        "the modified target met within its minute"
    );
    eventually(
        Duration::from_secs(30),
        "the VEN opted in to the modification",
        || async { opted(&vtn.seen().await, "dr-1", 1).as_deref() == Some("optIn") },
    )
    .await;

    // The VTN falls silent: the curtailment is no longer confirmed and the controller goes
    // to its failsafe; it speaks again and the site is out of it.
    vtn.silence(true).await;
    eventually(
        Duration::from_secs(60),
        "the failsafe on a silent VTN",
        || farm::failsafe(&app, SITE, "to"),
    )
    .await;
    vtn.silence(false).await;
    eventually(Duration::from_secs(60), "out of the failsafe", || {
        farm::failsafe(&app, SITE, "from")
    })
    .await;

    // A restart while the event is in force and the VTN does not answer does not lift it:
    // the restarted VEN has heard nothing yet, so it publishes nothing (no `normal`); once the
    // VTN answers, the VEN takes the event again.
    vtn.silence(true).await;
    app.restart();
    app.wait_http().await;
    // Past `signal_stale` and the restart itself: a `normal` from the first ticks would have
    // landed by now.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        normals(&app).await,
        Some(0),
        "a restart lifted the curtailment"
    );
    vtn.silence(false).await;
    eventually(Duration::from_secs(60), "registered again", || async {
        vtn.seen().await["registrations"]
            .as_array()
            .is_some_and(|r| r.len() >= 2)
    })
    .await;

    // Cancelled while adit is down (killed): the restarted VEN finds the cancellation, and
    // ends the curtailment it had asked before (its last signal on GRID); the machines are
    // woken.
    app.kill();
    let c = vtn.cancel_event("dr-1").await;
    app.restart();
    app.wait_http().await;
    eventually(
        Duration::from_secs(30),
        "the cancellation answered",
        || async { opted(&vtn.seen().await, "dr-1", c).is_some() },
    )
    .await;
    eventually(
        Duration::from_secs(120),
        "the site back near its load",
        || async { site_kw(&app).await.unwrap_or(0.0) >= before_kw * 0.9 },
    )
    .await;
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while normals(&app).await == Some(0) && std::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        normals(&app).await > Some(0),
        "the cancellation ended it; the VEN said:\n{}",
        app.log()
            .lines()
            .filter(|l| l.contains("openadr"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let missed = app
        .rows("SELECT count(*) AS n FROM violations WHERE kind = 'curtailment_deadline'")
        .await;
    assert_eq!(
        missed[0]["n"].as_i64(),
        Some(0),
        "every target met by its time"
    );
}

/// A VTN that requires client certificates (the 2.0b profile's TLS): the VEN with its site's
/// certificate (made by `adit certs`) registers and the VTN sees that certificate; a VEN of
/// another site without one is refused at the handshake and says so in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vtn_requiring_client_certificates_is_reached_with_the_sites_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = std::process::Command::new(adit_binary())
        .args(["certs", "--out"])
        .arg(&certs)
        .args([
            "--server",
            "127.0.0.1",
            "--worker",
            SITE,
            "--cluster",
            "utility",
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let vtn = adit_testkit::Vtn::start_tls(
        &certs.join("coordinator.pem"),
        &certs.join("coordinator.key"),
        &certs.join("ca.pem"),
    )
    .await;
    let nats = NatsServer::start();
    let (pem, key, ca) = (
        certs.join(format!("{SITE}.pem")),
        certs.join(format!("{SITE}.key")),
        certs.join("ca.pem"),
    );
    let app = App::start(
        &nats.url(),
        dir.path(),
        "adapters",
        &format!(
            "[adapters]\ninterval = \"2s\"\ntimeout = \"1s\"\nstale_after = \"6s\"\nmax_backoff = \"4s\"\n\
             [[adapters.openadr]]\nsite = \"{SITE}\"\nvtn_url = \"{url}\"\nven_name = \"{SITE}\"\npoll = \"1s\"\n\
             client_cert = \"{}\"\nclient_key = \"{}\"\nca = \"{}\"\n\
             [[adapters.openadr]]\nsite = \"site-02\"\nvtn_url = \"{url}\"\nven_name = \"site-02\"\npoll = \"1s\"\nca = \"{}\"\n",
            pem.display(),
            key.display(),
            ca.display(),
            ca.display(),
            url = vtn.url()
        ),
    );
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = vtn.seen().await;
        if seen["report_offers"][0]["ven_id"] == VEN_ID {
            break seen;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "not registered over TLS: the VTN saw {seen}\nits log:\n{}\nadit's log:\n{}",
            vtn.output(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let registrations = seen["registrations"].as_array().unwrap();
    assert_eq!(
        registrations.len(),
        1,
        "only the VEN with a certificate: {seen}"
    );
    assert!(
        registrations[0]["fingerprint"]
            .as_str()
            .is_some_and(|f| !f.is_empty()),
        "the VTN saw the VEN's certificate: {seen}"
    );
    eventually(
        Duration::from_secs(30),
        "the VEN without a certificate refused, in the log",
        || async {
            app.log()
                .lines()
                .any(|l| l.contains("OpenADR VTN failing") && l.contains("site-02"))
        },
    )
    .await;
}
