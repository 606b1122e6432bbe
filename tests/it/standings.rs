//! Where a pool stands (issue 61), through the real binary (`adit run --roles
//! pipelines,query`): shares and the chain's terms published as the pool publishes them land
//! in `hashrate_1m` and `network`; the leaderboard ranks the miners by their accepted work
//! over the window, and the pool-beside-network view gives each hour's pool and network
//! hashrate, both equal to what the published events say (computed here, not by SQL).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use adit_bus::publish::Outgoing;
use adit_schemas::{AnyEvent, NetworkState, Share};
use chrono::{DateTime, DurationRound, Utc};
use common::*;
use serde_json::Value;

const POOL: &str = "p-stand";

fn share(miner: &str, worker: &str, difficulty: u64, ts: DateTime<Utc>, n: u64) -> Outgoing {
    Outgoing::event(&AnyEvent::Share(Share {
        pool: POOL.into(),
        miner: miner.into(),
        worker: worker.into(),
        job_id: format!("j{n}"),
        nonce: format!("{n:08x}"),
        difficulty,
        height: 100,
        accepted: true,
        reason: None,
        ts,
        network_difficulty: Some(1_000_000),
        reward: Some(600_000_000_000),
        subsidy: Some(600_000_000_000),
        team: None,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaderboard_and_the_network_view_say_what_the_shares_and_terms_say() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&nats.url(), dir.path(), "pipelines,query", "");
    app.wait_http().await;
    let (publisher, _js) = publisher(&nats).await;
    let t = Utc::now() - chrono::Duration::minutes(3);
    // Work per miner: big 9 000 on two workers, mid 4 000, small 500.
    let plan = [
        ("miner-big", "rig-a", 5_000),
        ("miner-big", "rig-b", 4_000),
        ("miner-mid", "rig", 4_000),
        ("miner-small", "rig", 500),
    ];
    let mut events = Vec::new();
    for (n, (miner, worker, difficulty)) in plan.iter().enumerate() {
        events.push(share(miner, worker, *difficulty, t, n as u64));
    }
    // Later shares move the minute of `t` past the watermark.
    for n in 0..3 {
        events.push(share("miner-late", "rig", 1, Utc::now(), 100 + n));
    }
    let terms = [
        (100, 1_000u64, t),
        (101, 2_000, t + chrono::Duration::seconds(30)),
    ];
    for (height, difficulty, ts) in terms {
        events.push(Outgoing::event(&AnyEvent::Network(NetworkState {
            pool: POOL.into(),
            height,
            network_difficulty: difficulty,
            reward: 600_000_000_000,
            subsidy: 600_000_000_000,
            fee_bps: 100,
            ts,
        })));
    }
    publisher.publish_all(events).await.unwrap();
    app.wait_rows(
        Duration::from_secs(90),
        "the three miners' minute in hashrate_1m",
        &format!("SELECT count(DISTINCT miner) AS n FROM hashrate_1m WHERE pool = '{POOL}' AND miner <> 'miner-late'"),
        |rows| rows.first().is_some_and(|r| r["n"] == 3),
    )
    .await;
    app.wait_rows(
        Duration::from_secs(60),
        "both heights in network",
        &format!("SELECT count(*) AS n FROM network WHERE pool = '{POOL}'"),
        |rows| rows.first().is_some_and(|r| r["n"] == 2),
    )
    .await;

    let board: Vec<Value> = app
        .get_json(
            &format!("/api/v1/pools/{POOL}/leaderboard?window=1h"),
            READ_TOKEN,
        )
        .await;
    let top: Vec<(i64, &str, i64, f64)> = board
        .iter()
        .take(3)
        .map(|r| {
            (
                r["rank"].as_i64().unwrap(),
                r["miner"].as_str().unwrap(),
                r["workers"].as_i64().unwrap(),
                r["hashrate_hs"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        top,
        [
            (1, "miner-big", 2, 9_000.0 / 3_600.0),
            (2, "miner-mid", 1, 4_000.0 / 3_600.0),
            (3, "miner-small", 1, 500.0 / 3_600.0),
        ],
        "{board:?}"
    );
    let total: f64 = board
        .iter()
        .map(|r| r["hashrate_hs"].as_f64().unwrap())
        .sum();
    let share = board[0]["share"].as_f64().unwrap();
    assert!(
        (share - 9_000.0 / 3_600.0 / total).abs() < 1e-9,
        "{board:?}"
    );
    for bad in ["window=2h", "limit=0", "limit=101", "sort=miner"] {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/pools/{POOL}/leaderboard?{bad}",
                app.url()
            ))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    // Each hour: the pool's work and the network's blocks over 3 600 s.
    let hour = |ts: DateTime<Utc>| ts.duration_trunc(chrono::Duration::hours(1)).unwrap();
    let mut network: BTreeMap<DateTime<Utc>, f64> = BTreeMap::new();
    for (_, difficulty, ts) in terms {
        *network.entry(hour(ts)).or_default() += difficulty as f64 / 3_600.0;
    }
    let view: Vec<Value> = app
        .get_json(&format!("/api/v1/pools/{POOL}/network?hours=2"), READ_TOKEN)
        .await;
    let shown: BTreeMap<DateTime<Utc>, Option<f64>> = view
        .iter()
        .map(|r| {
            let at = DateTime::parse_from_rfc3339(r["hour"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc);
            (at, r["network_hs"].as_f64())
        })
        .collect();
    for (at, hs) in &network {
        assert_eq!(shown.get(at), Some(&Some(*hs)), "{view:?}");
    }
    let ours = view
        .iter()
        .find(|r| {
            r["hour"]
                .as_str()
                .unwrap()
                .starts_with(&hour(t).format("%Y-%m-%dT%H").to_string())
        })
        .unwrap();
    assert!(
        ours["pool_hs"].as_f64().unwrap() >= 13_500.0 / 3_600.0,
        "the pool's hour holds the three miners' work: {view:?}"
    );
}
