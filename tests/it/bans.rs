//! Stratum bans managed over the API (issue 25), on the real binary with real miners from
//! several loopback addresses: the pool's own ban for invalid input is shared in the bans
//! bucket and listed; an operator (admin) bans a network with a reason and a duration, which
//! closes the open connection it covers and refuses new ones, survives a restart of the
//! process, and is lifted; a ban that has ended is purged from the bucket; the API refuses
//! other roles and bad networks; every change is in the audit trail.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use adit_stratum::StratumClient;
use common::*;
use serde_json::{Value, json};

const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// A login from `source`: whether the pool let it in.
async fn logs_in(addr: SocketAddr, source: [u8; 4]) -> bool {
    match StratumClient::connect_from(addr, source).await {
        Ok(stream) => StratumClient::login_on(stream, WALLET).await.is_ok(),
        Err(_) => false,
    }
}

async fn call(
    app: &App,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", app.url()))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn listed(app: &App) -> Vec<Value> {
    let (status, body) = call(app, reqwest::Method::GET, "/api/v1/bans", ADMIN_TOKEN, None).await;
    assert_eq!(status, 200, "{body}");
    body["bans"].as_array().unwrap().clone()
}

async fn until(what: &str, app: &App, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}; log:\n{}", app.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_shared_listed_set_lifted_kept_over_a_restart_and_audited() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut app = App::start(
        &nats.url(),
        dir.path(),
        "pool,pipelines,query",
        &format!(
            "[pool]\nlisten = \"127.0.0.1:{port}\"\nnode = \"sim\"\n\
             [pool.server]\npool = \"sim\"\nverify_threads = 1\n\
             [pool.server.limits]\nban_score = 30\ninvalid_penalty = 10\nban_for = \"1h\"\n"
        ),
    );
    app.wait_http().await;
    until("the pool never let a miner in", &app, async || {
        logs_in(addr, [127, 0, 0, 2]).await
    })
    .await;

    // The pool's own ban: three bad lines from 127.0.0.5, shared in the bucket.
    let stream = StratumClient::connect_from(addr, [127, 0, 0, 5])
        .await
        .unwrap();
    let mut raw = StratumClient::login_on(stream, WALLET).await.unwrap();
    for _ in 0..3 {
        if raw.send_raw(b"{not json\n").await.is_err() {
            break;
        }
        let _ = raw.read().await;
    }
    until("the automatic ban was never listed", &app, async || {
        listed(&app)
            .await
            .iter()
            .any(|b| b["network"] == "127.0.0.5/32" && b["by"] == "auto")
    })
    .await;
    assert!(!logs_in(addr, [127, 0, 0, 5]).await, "banned");
    // An operator lifts it: the pool's guard forgets it too.
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/bans/127.0.0.5",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 204);
    until("the lifted ban still refused the miner", &app, async || {
        logs_in(addr, [127, 0, 0, 5]).await
    })
    .await;

    // Only an admin manages bans; a network must be one.
    let ban = json!({"reason": "stratum flood from this range", "duration": "2h"});
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/bans",
        OPERATE_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/bans/127.0.0.8_30",
        READ_TOKEN,
        Some(ban.clone()),
    )
    .await;
    assert_eq!(status, 403);
    for bad in ["example.com", "127.0.0.8_33", "127.0.0.8%0A"] {
        let (status, body) = call(
            &app,
            reqwest::Method::PUT,
            &format!("/api/v1/bans/{bad}"),
            ADMIN_TOKEN,
            Some(ban.clone()),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "network", "{body}");
    }
    let (status, body) = call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/bans/127.0.0.8_30",
        ADMIN_TOKEN,
        Some(json!({"reason": "x\nforged log line"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // An operator bans 127.0.0.8/30 while a miner from 127.0.0.9 is connected: it is closed,
    // and new logins from the range are refused; others still get in.
    let stream = StratumClient::connect_from(addr, [127, 0, 0, 9])
        .await
        .unwrap();
    let mut inside = StratumClient::login_on(stream, WALLET).await.unwrap();
    let (status, body) = call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/bans/127.0.0.8_30",
        ADMIN_TOKEN,
        Some(ban.clone()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["network"], "127.0.0.8/30");
    assert_eq!(body["by"], "admin");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match inside.read().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the banned miner's connection was not closed"
    );
    assert!(!logs_in(addr, [127, 0, 0, 10]).await, "in the banned range");
    assert!(logs_in(addr, [127, 0, 0, 12]).await, "outside it");
    let bans = listed(&app).await;
    let ours = bans
        .iter()
        .find(|b| b["network"] == "127.0.0.8/30")
        .expect("listed");
    assert_eq!(ours["reason"], "stratum flood from this range");
    assert!(ours["expires"].is_string());

    // A ban that has ended (as the pool's own for invalid shares do, an hour later), written
    // before the restart: purged from the bucket by the pool, so the bucket and every
    // process's list do not grow with each address ever banned.
    let js = nats.jetstream().await;
    let bucket = js
        .get_key_value(adit_schemas::names::KV_BANS)
        .await
        .unwrap();
    let old = adit_schemas::bans::parse_network("127.0.0.20").unwrap();
    let ended = adit_schemas::bans::Ban::new(
        &old,
        "invalid shares",
        Some(chrono::Utc::now() + chrono::Duration::seconds(1)),
        adit_schemas::bans::AUTO,
    );
    let old_key = adit_schemas::bans::key(&old);
    bucket
        .put(&old_key, serde_json::to_vec(&ended).unwrap().into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A restart keeps the one in force, and purges the one that ended.
    app.restart();
    app.wait_http().await;
    until("the pool never came back", &app, async || {
        logs_in(addr, [127, 0, 0, 2]).await
    })
    .await;
    assert!(
        !logs_in(addr, [127, 0, 0, 9]).await,
        "the ban outlived the restart"
    );
    until("the ended ban was never purged", &app, async || {
        bucket.get(&old_key).await.unwrap().is_none()
    })
    .await;
    assert!(logs_in(addr, [127, 0, 0, 20]).await, "the ended ban");
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/bans/127.0.0.8%2F30",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 204);
    until("the lifted range still refused", &app, async || {
        logs_in(addr, [127, 0, 0, 9]).await
    })
    .await;
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/bans/127.0.0.8_30",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404, "already lifted");

    // Audited: who set and lifted what.
    until("the changes never reached the audit table", &app, async || {
        let rows = app
            .rows("SELECT method, path, who, status FROM audit WHERE path LIKE '/api/v1/bans/%' ORDER BY ts")
            .await;
        rows.iter().any(|r| r["method"] == "PUT" && r["path"] == "/api/v1/bans/127.0.0.8_30" && r["who"] == "admin" && r["status"] == 201)
            && rows.iter().any(|r| r["method"] == "DELETE" && r["path"] == "/api/v1/bans/127.0.0.5" && r["status"] == 204)
    })
    .await;
}
