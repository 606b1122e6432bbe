//! Worker-down notices (issue 59), on real parts: `monerod --regtest` with the pool's and two
//! miners' `monero-wallet-rpc`, a real SMTP server (aiosmtpd), and `adit run --roles
//! pool,pipelines,query,notify`. Alice asks, signed by her own wallet, to be told by email;
//! the same request signed by Bob's wallet, or signed too long ago, is refused. Of her two
//! workers, one sends a share every half second and stops; the other sends one every eight
//! seconds and goes on: the stopped one is told of, once, in one mail; the slow one, whose
//! gaps a single fixed threshold low enough to catch the first would call down, never is. Once
//! she opts out, a worker stopping again is not told of.

use crate::common;

use std::time::{Duration, Instant};

use adit_stratum::StratumClient;
use adit_testkit::{Monerod, WalletRpc};
use chrono::Utc;
use common::*;
use serde_json::{Value, json};

/// A signed request for `miner`'s notices, as the miner's wallet would sign it.
fn request(
    wallet: &WalletRpc,
    miner: &str,
    body: Value,
    signed_at: chrono::DateTime<Utc>,
) -> Value {
    let mut body = body;
    body["signed_at"] = json!(signed_at.to_rfc3339());
    let parsed: adit_api::routes::notices::NoticeRequest = serde_json::from_value(json!({
        "signature": "", "signed_at": body["signed_at"], "enabled": body.get("enabled").cloned().unwrap_or(json!(true)),
        "email": body.get("email"), "webhook": body.get("webhook"), "factor": body.get("factor"),
    }))
    .unwrap();
    let text = adit_api::routes::notices::signed_text("regtest", miner, &parsed);
    body["signature"] = wallet.call("sign", json!({"data": text}))["signature"].clone();
    body
}

async fn put(app: &App, miner: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/public/pools/regtest/miners/{miner}/notices",
            app.url()
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// One share from `miner` (any hash meets difficulty 1); a refused one is fine.
async fn share(miner: &mut StratumClient) {
    let (nonce, result) = miner.mine().unwrap();
    let _ = miner.submit(&nonce, &result).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_told_of_and_a_slow_one_is_not() {
    let monerod = Monerod::start_with_difficulty(100_000);
    let pool_wallet = WalletRpc::start(&monerod);
    let alice = WalletRpc::start(&monerod);
    let bob = WalletRpc::start(&monerod);
    let smtp = Smtp::start();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let stratum_port = free_port();
    let config = format!(
        "[pool]\nlisten = \"127.0.0.1:{stratum_port}\"\nnode = \"{node}\"\nwallet = \"{wallet}\"\ntip_poll = \"200ms\"\n\
         [pool.server]\npool = \"regtest\"\nverify_threads = 1\n[pool.server.vardiff]\nmin_difficulty = 1\n\
         [payments]\nwallet_rpc = \"{wallet_rpc}\"\nnode = \"{node}\"\n\
         [notify]\ntimeout = \"5s\"\nreceivers = [\n\
           {{ name = \"mail\", kind = \"email\", smtp_host = \"127.0.0.1\", smtp_port = {port}, from = \"pool@pool.test\", to = [\"ops@pool.test\"] }},\n\
         ]\n[notify.route]\nreceiver = \"mail\"\n\
         [notify.workers]\nenabled = true\nmail = \"mail\"\ncheck_every = \"1s\"\nmin_silence = \"5s\"\nmin_shares = 4\n",
        node = monerod.rpc_url(),
        wallet = pool_wallet.address,
        wallet_rpc = pool_wallet.url(),
        port = smtp.port,
    );
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pool,pipelines,query,notify",
        &config,
    );
    app.wait_http().await;

    // Only Alice's own wallet, recently, can ask for Alice's notices.
    let ask = json!({"email": "alice@miner.test", "factor": 3});
    let (status, said) = put(
        &app,
        &alice.address,
        &request(&bob, &alice.address, ask.clone(), Utc::now()),
    )
    .await;
    assert_eq!(status, 403, "signed by another wallet: {said}");
    let stale = Utc::now() - chrono::Duration::minutes(20);
    let (status, said) = put(
        &app,
        &alice.address,
        &request(&alice, &alice.address, ask.clone(), stale),
    )
    .await;
    assert_eq!(status, 403, "signed 20 minutes ago: {said}");
    let mut tampered = request(&alice, &alice.address, ask.clone(), Utc::now());
    tampered["email"] = json!("eve@thief.test");
    let (status, said) = put(&app, &alice.address, &tampered).await;
    assert_eq!(status, 403, "a field changed after signing: {said}");
    let accepted = request(&alice, &alice.address, ask, Utc::now());
    let (status, said) = put(&app, &alice.address, &accepted).await;
    assert_eq!(status, 200, "{said}");
    assert_eq!(said["email"], "alice@miner.test");
    let (status, said) = put(&app, &alice.address, &accepted).await;
    assert_eq!(status, 403, "the same signed request sent again: {said}");

    let addr: std::net::SocketAddr = format!("127.0.0.1:{stratum_port}").parse().unwrap();
    let mut fast = stratum_login(&app, addr, &format!("{}+1.rig-fast", alice.address)).await;
    let mut slow = stratum_login(&app, addr, &format!("{}+1.rig-slow", alice.address)).await;
    // The slow rig's history: a share every 8 s; the fast one's: every half second, then stop.
    let start = Instant::now();
    let mut next_slow = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        if Instant::now() >= next_slow {
            share(&mut slow).await;
            next_slow += Duration::from_secs(8);
        }
        share(&mut fast).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stopped = Instant::now();
    // The slow rig goes on for 40 s more: its gaps are long, and it is healthy.
    let told = |m: &String| m.contains("rig-fast");
    while stopped.elapsed() < Duration::from_secs(40) {
        if Instant::now() >= next_slow {
            share(&mut slow).await;
            next_slow += Duration::from_secs(8);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The mail is waited for, not assumed after a fixed time (a busy machine sends it late).
    eventually(
        Duration::from_secs(60),
        "the stopped rig's notice",
        || async { smtp.mail().iter().any(&told) },
    )
    .await;
    let mail = smtp.mail();
    let to_alice: Vec<&String> = mail
        .iter()
        .filter(|m| m.contains("alice@miner.test"))
        .collect();
    assert_eq!(
        to_alice.iter().filter(|m| told(m)).count(),
        1,
        "one mail for the stopped rig, told once: {mail:?}\nlog:\n{}",
        app.log()
    );
    assert!(
        !mail.iter().any(|m| m.contains("rig-slow")),
        "the slow, healthy rig was called down: {mail:?}"
    );
    assert!(
        !mail.iter().any(|m| m.contains("ops@pool.test")),
        "a miner's notice went to the operator's address: {mail:?}"
    );
    eventually(Duration::from_secs(30), "the notice recorded", || async {
        app.rows(
            "SELECT count(*) AS n FROM notifications WHERE receiver = 'miners' AND status = 'sent'",
        )
        .await
        .first()
        .and_then(|r| r["n"].as_i64())
        .unwrap_or(0)
            >= 1
    })
    .await;

    // Opted out: the fast rig comes back and stops again, and nothing more is sent.
    let stop = json!({"enabled": false});
    let (status, said) = put(
        &app,
        &alice.address,
        &request(&alice, &alice.address, stop, Utc::now()),
    )
    .await;
    assert_eq!(status, 200, "{said}");
    assert_eq!(said["enabled"], false);
    // Replaying the earlier opt-in (still within its 10 minutes) does not undo the opt-out.
    let (status, said) = put(&app, &alice.address, &accepted).await;
    assert_eq!(status, 403, "the earlier opt-in replayed: {said}");
    for _ in 0..8 {
        share(&mut fast).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = smtp.mail().iter().filter(|m| told(m)).count();
    assert_eq!(after, 1, "a notice after the opt-out: {:?}", smtp.mail());
}
