//! Teams and competitions (issue 61) through the real binary: `adit run --roles
//! pool,pipelines,query` on the simulated chain, real Stratum miners mining real RandomX
//! shares (light mode). Each miner names its team in its password (`team=NAME`, or
//! `rig;team=NAME`); a malformed team is refused at login with a message that says why. An
//! operator sets a competition (a reader may not; the same id twice is a 409). With no token,
//! the public team ranking and the competition's standings give each team the work its
//! accepted shares prove — counted here from the pool's answers, not by SQL — in that order,
//! and so does the public `/pool` page in headless Chromium.

use crate::common;

use std::time::Duration;

use adit_stratum::{ClientOptions, PoolUrl, StratumClient};
use chrono::Utc;
use common::*;
use serde_json::{Value, json};

const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";
/// The difficulty each miner fixes (`+25`): its accepted shares' work, each.
const DIFFICULTY: u64 = 25;

/// GETs `path` with no token; the status and the body.
async fn public(app: &App, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{}{path}", app.url())).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Mines until `shares` are accepted; how many were.
async fn mine(miner: &mut StratumClient, shares: u64) -> u64 {
    let mut accepted = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while accepted < shares {
        assert!(
            std::time::Instant::now() < deadline,
            "{accepted} of {shares} shares accepted"
        );
        let (nonce, result) = miner.mine().unwrap();
        let reply = miner.submit(&nonce, &result).await.unwrap();
        if reply["result"]["status"] == "OK" {
            accepted += 1;
        }
    }
    accepted
}

/// The `(team, work)` of each ranked row.
fn ranked(rows: &Value) -> Vec<(String, u64)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["team"].as_str().unwrap().to_string(),
                r["work"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_join_teams_at_login_and_the_public_page_ranks_them_and_their_competition() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pool,pipelines,query",
        &format!(
            "[pool]\nlisten = \"127.0.0.1:{port}\"\nnode = \"sim\"\n\
             [pool.server]\npool = \"sim\"\nverify_threads = 1\n\
             [pool.server.vardiff]\nmin_difficulty = 1\n"
        ),
    );
    app.wait_http().await;
    let competitions = format!("{}/api/v1/pools/sim/competitions", app.url());
    let now = Utc::now();
    let cup = json!({"id": "winter-cup", "name": "Winter cup", "starts": now - chrono::Duration::minutes(1),
                     "ends": now + chrono::Duration::hours(1)});
    let set = |token: &'static str, body: Value| {
        let url = competitions.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(set(READ_TOKEN, cup.clone()).await, 403);
    assert_eq!(set(OPERATE_TOKEN, cup.clone()).await, 201);
    let later = json!({"id": "spring-cup", "name": "Spring cup", "starts": now + chrono::Duration::days(90),
                       "ends": now + chrono::Duration::days(97)});
    assert_eq!(set(OPERATE_TOKEN, later).await, 201);
    let backwards = json!({"id": "odd", "name": "Odd", "starts": now, "ends": now - chrono::Duration::hours(1)});
    assert_eq!(set(OPERATE_TOKEN, backwards).await, 400);

    let url: PoolUrl = format!("stratum+tcp://127.0.0.1:{port}").parse().unwrap();
    let options = ClientOptions::default();
    let login = |pass: &'static str| {
        let (url, options) = (url.clone(), options.clone());
        async move {
            StratumClient::login_url(&url, &format!("{WALLET}+{DIFFICULTY}"), pass, &options).await
        }
    };
    let mut red = None;
    for _ in 0..100 {
        if let Ok(m) = login("rig-r;team=red").await {
            red = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut red = red.unwrap_or_else(|| panic!("no login; log:\n{}", app.log()));
    let mut blue = login("team=blue").await.unwrap();
    let refused = login("team=<script>").await.unwrap_err().to_string();
    assert!(refused.contains("Invalid team"), "{refused}");

    let red_work = mine(&mut red, 3).await * DIFFICULTY;
    let blue_work = mine(&mut blue, 1).await * DIFFICULTY;
    let want = vec![
        ("red".to_string(), red_work),
        ("blue".to_string(), blue_work),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, teams) = public(&app, "/api/v1/public/pools/sim/teams?window=1h").await;
        assert_eq!(status, 200, "{teams}");
        if ranked(&teams) == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "teams {teams}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, listed) = public(&app, "/api/v1/public/pools/sim/competitions").await;
    assert_eq!(status, 200, "{listed}");
    let by_id = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {listed}"))
    };
    let winter = by_id("winter-cup");
    assert_eq!(winter["state"], "running");
    assert_eq!(ranked(&winter["standings"]), want, "{winter}");
    let spring = by_id("spring-cup");
    assert_eq!(
        (&spring["state"], &spring["standings"]),
        (&json!("upcoming"), &json!([]))
    );
    assert_eq!(set(OPERATE_TOKEN, cup).await, 409, "the same id twice");
    let (status, _) = public(&app, "/api/v1/public/pools/sim/teams?window=1y").await;
    assert_eq!(status, 400);
    let (status, _) = public(&app, "/api/v1/public/pools/a.b/teams").await;
    assert_eq!(status, 400);

    let shot = dir.path().join("pool-teams.png");
    let args = [
        "--url",
        &app.url(),
        "--pool",
        "sim",
        "--teams",
        "red,blue",
        "--competition",
        "winter-cup",
        "--shot",
        shot.to_str().unwrap(),
    ]
    .map(String::from);
    let (status, said) = run_browser_script(
        "teams.py",
        &args,
        &dir.path().join("teams.log"),
        Duration::from_secs(120),
    );
    assert!(status.success(), "{said}");
}
