//! Notifications end to end through the real binary (`adit run --roles
//! pipelines,query,alerts,notify`): rules fire on hot sensor readings and each is routed by its
//! `to` label to a webhook, Telegram (a local fake of the Bot API), email (a real SMTP server,
//! Python's aiosmtpd) and SMS (a local fake of Twilio's API); a silenced one is recorded and not
//! sent; a critical one whose receiver is down falls back after its attempts; a critical one
//! routed with `continue` reaches the webhook, Telegram, email and SMS at once while a fifth
//! receiver is down; every attempt is in the `notifications` table; the webhook is told when
//! the alerts resolve. A stored rule evaluated on demand shows its series; each receiver can be
//! sent a test message (admin). Receivers (with several channels) and the route are managed
//! over the API and followed by the running notify role.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::Utc;
use common::*;
use serde_json::{Value, json};

/// What the fake HTTP services received: (path, authorization header, body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

async fn fake_services() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn record(
        State(seen): State<Seen>,
        Path(rest): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> axum::Json<Value> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        seen.lock().unwrap().push((format!("/{rest}"), auth, body));
        axum::Json(json!({"ok": true}))
    }
    let app = axum::Router::new()
        .route("/{*rest}", axum::routing::post(record))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_webhook_telegram_email_and_sms_respecting_silences_and_falling_back() {
    let nats = NatsServer::start();
    let smtp = Smtp::start();
    let (fake, seen) = fake_services().await;
    // A webhook whose path and query are its credential (as Slack's, Discord's and Teams' are):
    // its failures must not write them where a read token can see (issue 23).
    let dead = format!(
        "http://127.0.0.1:{}/down/HOOKSECRET?token=QUERYSECRET",
        free_port()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[alerts]\nreload = \"500ms\"\n\
         [notify]\nattempts = 2\nretry_after = \"200ms\"\ntimeout = \"2s\"\nreload = \"500ms\"\n\
         heartbeat = {{ receiver = \"hook\", every = \"3s\" }}\n\
         receivers = [\n\
           {{ name = \"hook\", kind = \"webhook\", url = \"{fake}/hook\" }},\n\
           {{ name = \"tg\", kind = \"telegram\", api_url = \"{fake}\", bot_token = \"123:abc\", chat_id = \"-100\" }},\n\
           {{ name = \"mail\", kind = \"email\", smtp_host = \"127.0.0.1\", smtp_port = {port}, from = \"adit@farm.test\", to = [\"ops@farm.test\"] }},\n\
           {{ name = \"sms\", kind = \"sms\", api_url = \"{fake}\", account_sid = \"AC1\", auth_token = \"secret\", from = \"+15550000\", to = [\"+15551111\"] }},\n\
           {{ name = \"broken\", kind = \"webhook\", url = \"{dead}\", fallback = \"hook\" }},\n\
           {{ name = \"down\", kind = \"webhook\", url = \"http://127.0.0.1:{down}/hook\" }},\n\
         ]\n\
         [notify.route]\nreceiver = \"hook\"\ngroup_by = [\"alertname\"]\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"\n\
         routes = [{{ matchers = {{ to = \"all\" }}, receiver = \"hook\", continue = true }},\n\
                   {{ matchers = {{ to = \"all\" }}, receiver = \"tg\", continue = true }},\n\
                   {{ matchers = {{ to = \"all\" }}, receiver = \"mail\", continue = true }},\n\
                   {{ matchers = {{ to = \"all\" }}, receiver = \"sms\", continue = true }},\n\
                   {{ matchers = {{ to = \"all\" }}, receiver = \"down\" }},\n\
                   {{ matchers = {{ to = \"tg\" }}, receiver = \"tg\" }}, {{ matchers = {{ to = \"mail\" }}, receiver = \"mail\" }},\n\
                   {{ matchers = {{ to = \"sms\" }}, receiver = \"sms\" }}, {{ matchers = {{ to = \"broken\" }}, receiver = \"broken\" }}]\n",
        port = smtp.port,
        down = free_port()
    );
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pipelines,query,alerts,notify",
        &config,
    );
    app.wait_http().await;
    let client = reqwest::Client::new();

    // Six rules on the same condition, each routed by its `to` label.
    let rule = |alert: &str, to: &str, severity: &str| {
        json!({"alert": alert, "for": "1s",
               "expr": "SELECT site, max(value) AS value FROM sensor_readings \
                        WHERE ts > now() - INTERVAL '4 seconds' AND value > 30 GROUP BY site",
               "labels": {"to": to, "severity": severity},
               "annotations": {"summary": format!("{alert}: too hot")}})
    };
    let group = json!({"name": "notify-test", "interval": "1s", "rules": [
        rule("HotHook", "hook", "warning"), rule("HotTg", "tg", "warning"),
        rule("HotMail", "mail", "warning"), rule("HotSms", "sms", "warning"),
        rule("HotBroken", "broken", "critical"), rule("HotSilenced", "hook", "warning"),
        rule("HotAll", "all", "critical")]});
    let r = client
        .put(format!("{}/api/v1/alerts/rules/notify-test", app.url()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = client
        .post(format!("{}/api/v1/alerts/silences", app.url()))
        .bearer_auth(OPERATE_TOKEN)
        .json(
            &json!({"matchers": {"alertname": "HotSilenced"}, "duration": "1h",
                      "comment": "known, being fixed"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // Hot for 6 s.
    let hot_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < hot_until {
        let r = client
            .post(format!("{}/api/v1/ingest/sensor", app.url()))
            .bearer_auth(OPERATE_TOKEN)
            .json(
                &json!({"site": "site-n", "sensor": "t-1", "kind": "temperature",
                          "value": 36.0, "ts": Utc::now()}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A stored rule evaluated on demand: the series it would fire now, changing nothing.
    let evaluate = |body: Value| {
        let client = client.clone();
        let url = format!("{}/api/v1/alerts/evaluate", app.url());
        async move {
            let r = client
                .post(url)
                .bearer_auth(READ_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, shown) = evaluate(json!({"group": "notify-test", "alert": "HotAll"})).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["severity"], "critical", "{shown}");
    assert_eq!(shown["state_when_new"], "pending", "{shown}");
    let series = shown["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{shown}");
    assert_eq!(series[0]["labels"]["site"], "site-n", "{shown}");
    assert_eq!(series[0]["labels"]["alertname"], "HotAll", "{shown}");
    assert_eq!(series[0]["value"], 36.0, "{shown}");
    // A rule given whole; one that fires for nothing; and refusals.
    let (status, shown) = evaluate(json!({"rule": {"alert": "Never",
        "expr": "SELECT site, max(value) AS value FROM sensor_readings WHERE value > 1000 GROUP BY site"}}))
    .await;
    assert_eq!(
        (status, shown["series"].clone()),
        (200, json!([])),
        "{shown}"
    );
    let (status, shown) =
        evaluate(json!({"rule": {"alert": "Bad", "expr": "DELETE FROM sensor_readings"}})).await;
    assert_eq!(status, 400, "{shown}");
    let (status, _) = evaluate(json!({"group": "notify-test", "alert": "NoSuchRule"})).await;
    assert_eq!(status, 404);
    let (status, _) = evaluate(json!({})).await;
    assert_eq!(status, 400);

    let bodies = |prefix: &str| -> Vec<(String, String)> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p.starts_with(prefix))
            .map(|(_, a, b)| (a.clone(), b.clone()))
            .collect()
    };
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let hook = bodies("/hook");
        let resolved = hook
            .iter()
            .any(|(_, b)| b.contains("\"status\":\"resolved\""));
        let everywhere = hook.iter().any(|(_, b)| b.contains("HotAll"))
            && bodies("/bot").iter().any(|(_, b)| b.contains("HotAll"))
            && bodies("/2010-04-01")
                .iter()
                .any(|(_, b)| b.contains("HotAll"))
            && smtp.mail().iter().any(|m| m.contains("HotAll"));
        let done = resolved
            && everywhere
            && hook.iter().any(|(_, b)| b.contains("HotBroken"))
            && !bodies("/bot").is_empty()
            && !bodies("/2010-04-01").is_empty()
            && !smtp.mail().is_empty();
        if done {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "not every channel was told: {:?}\nmail: {:?}\n{}",
            seen.lock().unwrap(),
            smtp.mail(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let hook = bodies("/hook");
    assert!(
        hook.iter()
            .any(|(_, b)| b.contains("HotHook") && b.contains("\"status\":\"firing\""))
    );
    assert!(
        !hook.iter().any(|(_, b)| b.contains("HotSilenced")),
        "silenced"
    );
    let tg = bodies("/bot123:abc/sendMessage");
    // HotAll reaches these receivers too, in whatever order: look for each alert's own.
    assert!(
        tg.iter()
            .any(|(_, b)| b.contains("\"chat_id\":\"-100\"") && b.contains("HotTg")),
        "{tg:?}"
    );
    let sms = bodies("/2010-04-01/Accounts/AC1/Messages.json");
    assert!(
        sms.iter()
            .any(|(_, b)| b.contains("To=%2B15551111") && b.contains("HotSms")),
        "{sms:?}"
    );
    assert!(
        sms.iter().all(|(auth, _)| auth.starts_with("Basic ")),
        "basic auth: {sms:?}"
    );
    let mail = smtp.mail();
    assert!(
        mail.iter()
            .any(|m| m.contains("HotMail") && m.contains("ops@farm.test")),
        "{mail:?}"
    );
    // The heartbeat came through the webhook too.
    let give_up = Instant::now() + Duration::from_secs(20);
    while !bodies("/hook")
        .iter()
        .any(|(_, b)| b.contains("\"heartbeat\":true"))
    {
        assert!(Instant::now() < give_up, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every attempt is in the table.
    let sql = "SELECT receiver, status, count(*) AS n FROM notifications \
               GROUP BY receiver, status ORDER BY receiver, status";
    let mut counts = BTreeMap::new();
    let give_up = Instant::now() + Duration::from_secs(30);
    while Instant::now() < give_up {
        if app.sql(sql, "json", Some(READ_TOKEN)).await.0 == 200 {
            counts = app
                .rows(sql)
                .await
                .iter()
                .map(|r| {
                    (
                        format!(
                            "{}/{}",
                            r["receiver"].as_str().unwrap(),
                            r["status"].as_str().unwrap()
                        ),
                        r["n"].as_i64().unwrap(),
                    )
                })
                .collect::<BTreeMap<_, _>>();
            if [
                "down/failed",
                "broken/failed",
                "hook/sent",
                "hook/silenced",
                "tg/sent",
                "mail/sent",
                "sms/sent",
            ]
            .iter()
            .all(|k| counts.contains_key(*k))
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("notifications: {counts:?}");
    // The firing notification to the broken receiver: two attempts, then the fallback (its
    // resolution, not critical, is tried there too and has no fallback).
    let firing_failed = app
        .rows(
            "SELECT count(*) AS n FROM notifications WHERE receiver = 'broken' \
             AND status = 'failed' AND summary LIKE '[FIRING%'",
        )
        .await;
    assert_eq!(
        firing_failed[0]["n"].as_i64(),
        Some(2),
        "two attempts, then the fallback: {counts:?}"
    );
    let errors = app
        .rows("SELECT error FROM notifications WHERE receiver = 'broken' AND status = 'failed'")
        .await;
    assert!(!errors.is_empty());
    for row in &errors {
        let error = row["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("http://127.0.0.1:") && !error.contains("SECRET"),
            "a failed webhook's error shows its host, never its path or query: {error}"
        );
    }
    // The critical alert routed everywhere: the down receiver tried twice (its firing; its
    // resolution is tried again), the others sent.
    let down = app
        .rows(
            "SELECT count(*) AS n FROM notifications WHERE receiver = 'down' \
             AND status = 'failed' AND summary LIKE '[FIRING%' AND summary LIKE '%HotAll%'",
        )
        .await;
    assert_eq!(down[0]["n"].as_i64(), Some(2), "{counts:?}");

    // A test message through each kind of receiver (admin), recorded like the others.
    let test = |name: &str, token: &str| {
        let request = client
            .post(format!("{}/api/v1/alerts/receivers/{name}/test", app.url()))
            .bearer_auth(token.to_string());
        async move {
            let r = request.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for name in ["hook", "tg", "mail", "sms"] {
        let (status, said) = test(name, ADMIN_TOKEN).await;
        assert_eq!(status, 200, "{name}: {said}");
        assert_eq!(said["status"], "sent", "{name}: {said}");
    }
    assert!(
        bodies("/bot123:abc/sendMessage")
            .iter()
            .any(|(_, b)| b.contains("adit test message to tg, sent by admin")),
        "telegram test"
    );
    let give_up = Instant::now() + Duration::from_secs(10);
    while !smtp
        .mail()
        .iter()
        .any(|m| m.contains("adit test message to mail"))
    {
        assert!(Instant::now() < give_up, "no test mail: {:?}", smtp.mail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, said) = test("down", ADMIN_TOKEN).await;
    assert_eq!(
        (status, said["status"].as_str()),
        (200, Some("failed")),
        "{said}"
    );
    assert!(
        said["error"].as_str().unwrap().contains("127.0.0.1"),
        "{said}"
    );
    assert_eq!(test("nobody", ADMIN_TOKEN).await.0, 404);
    assert_eq!(test("hook", OPERATE_TOKEN).await.0, 403, "admin only");
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let tests = app
            .rows("SELECT receiver, status FROM notifications WHERE \"group\" = 'test' ORDER BY receiver")
            .await;
        if tests.len() >= 5 {
            assert!(
                tests
                    .iter()
                    .any(|r| r["receiver"] == "down" && r["status"] == "failed"),
                "{tests:?}"
            );
            break;
        }
        assert!(
            Instant::now() < give_up,
            "test messages not recorded: {tests:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    for k in [
        "hook/sent",
        "hook/silenced",
        "tg/sent",
        "mail/sent",
        "sms/sent",
    ] {
        assert!(counts.contains_key(k), "{k} missing: {counts:?}");
    }
}

/// Receivers and the route managed over the API (admin), stored in KV: a receiver with three
/// channels (webhook, Telegram, SMS) is added, shown with its secrets hidden and tested on every
/// channel; a route sending everything to it is set and the `notify` role follows it without a
/// restart: a firing alert reaches all three channels. What cannot work is a 400, what would
/// break the configuration a 409; removing the route gives back the file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_and_the_route_managed_over_the_api_reach_every_channel() {
    let nats = NatsServer::start();
    let (fake, seen) = fake_services().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pipelines,query,alerts,notify",
        &format!(
            "[alerts]\nreload = \"500ms\"\n\
             [notify]\nattempts = 1\ntimeout = \"2s\"\nreload = \"500ms\"\n\
             receivers = [{{ name = \"hook\", kind = \"webhook\", url = \"{fake}/hook\" }}]\n\
             [notify.route]\nreceiver = \"hook\"\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"\n"
        ),
    );
    app.wait_http().await;
    let client = reqwest::Client::new();
    let admin = Caller::new(&app, ADMIN_TOKEN);
    let operator = Caller::new(&app, OPERATE_TOKEN);
    let oncall = json!({
        "kind": "webhook", "url": format!("{fake}/oncall/HOOKSECRET"),
        "channels": [
            {"kind": "telegram", "api_url": fake, "bot_token": "999:zzz", "chat_id": "-7"},
            {"kind": "sms", "api_url": fake, "account_sid": "AC9", "auth_token": "smssecret",
             "from": "+15550000", "to": ["+15552222"]}
        ]
    });
    let (status, said) = admin
        .put("/api/v1/alerts/receivers/oncall", oncall.clone(), None)
        .await;
    assert_eq!(status, 200, "{said}");
    assert_eq!(
        operator
            .put("/api/v1/alerts/receivers/oncall", oncall.clone(), None)
            .await
            .0,
        403,
        "admin only"
    );
    let (status, said) = admin
        .put(
            "/api/v1/alerts/receivers/bad",
            json!({"kind": "webhook", "url": "ftp://x/y"}),
            None,
        )
        .await;
    assert_eq!(status, 400, "{said}");
    let (status, said) = admin
        .put("/api/v1/alerts/receivers/hook", oncall.clone(), None)
        .await;
    assert_eq!(status, 409, "the file's receiver stays the file's: {said}");

    // Listed with where each comes from, no secret in sight.
    let (status, listed) = admin.get("/api/v1/alerts/receivers").await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    for secret in ["999:zzz", "smssecret", "HOOKSECRET"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    let sources: Vec<(String, String)> = listed["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["source"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("hook".into(), "file".into()),
            ("oncall".into(), "api".into())
        ]
    );

    // A test message on every channel.
    let (status, said) = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/alerts/receivers/oncall/test",
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, said["status"].as_str()),
        (200, Some("sent")),
        "{said}"
    );
    assert_eq!(said["channel"], "webhook+telegram+sms");
    let paths = |prefix: &str, text: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(p, _, b)| p.starts_with(prefix) && b.contains(text))
            .count()
    };
    assert_eq!(paths("/oncall/", "adit test message to oncall"), 1);
    assert_eq!(
        paths("/bot999:zzz/sendMessage", "adit test message to oncall"),
        1
    );
    assert_eq!(
        paths(
            "/2010-04-01/Accounts/AC9/Messages.json",
            "adit+test+message"
        ),
        1
    );

    // Everything to `oncall`; the notify role follows without a restart.
    let route = json!({"receiver": "oncall", "group_by": ["alertname"], "group_wait": "1s",
                       "group_interval": "1s", "repeat_interval": "1h"});
    let (status, said) = admin.put("/api/v1/alerts/route", route, None).await;
    assert_eq!(status, 200, "{said}");
    let (status, said) = admin.delete("/api/v1/alerts/receivers/oncall").await;
    assert_eq!(status, 409, "the route names it: {said}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let group = json!({"name": "managed", "interval": "1s", "rules": [
        {"alert": "HotManaged", "for": "0s",
         "expr": "SELECT site, max(value) AS value FROM sensor_readings \
                  WHERE ts > now() - INTERVAL '4 seconds' AND value > 30 GROUP BY site",
         "labels": {"severity": "critical"}, "annotations": {"summary": "too hot"}}]});
    let (status, said) = admin.put("/api/v1/alerts/rules/managed", group, None).await;
    assert_eq!(status, 200, "{said}");
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .post(format!("{}/api/v1/ingest/sensor", app.url()))
            .bearer_auth(OPERATE_TOKEN)
            .json(
                &json!({"site": "site-m", "sensor": "t-1", "kind": "temperature",
                          "value": 36.0, "ts": Utc::now()}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let everywhere = paths("/oncall/", "HotManaged") > 0
            && paths("/bot999:zzz/sendMessage", "HotManaged") > 0
            && paths("/2010-04-01/Accounts/AC9/Messages.json", "HotManaged") > 0;
        if everywhere {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the firing alert did not reach every channel of oncall: {:?}\n{}",
            seen.lock().unwrap(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        paths("/hook", "HotManaged"),
        0,
        "the file's route is replaced"
    );

    // The file's route back; then the receiver can go.
    assert_eq!(admin.delete("/api/v1/alerts/route").await.0, 200);
    assert_eq!(admin.delete("/api/v1/alerts/receivers/oncall").await.0, 200);
    assert_eq!(admin.delete("/api/v1/alerts/receivers/oncall").await.0, 404);
    let (_, listed) = admin.get("/api/v1/alerts/receivers").await;
    assert_eq!(listed["receivers"].as_array().unwrap().len(), 1);
    assert_eq!(listed["route_source"], "file");
}
