//! The farm's economics end to end through the real binary (issue 60): the simulated site's
//! machines mine as workers of a pool whose coin has a price; the pool's terms and each
//! machine's shares arrive on MINING (published here as the pool would), the coin's price from
//! a market served here and read by `[[adapters.coin_price]]`, the site's energy prices over
//! the ingest API. A price rise over two machines' breakeven puts
//! those two to sleep, least profitable first, and the simulated miners' measured power falls;
//! a fall wakes them. Every `machine_profit` row then equals a recomputation made here from
//! `shares`, `energy_settlement`, `coin_prices` and `grid_signals` alone, and the site's profit
//! view sums those rows.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use adit_schemas::{AnyEvent, NetworkState, Share};
use chrono::Utc;
use common::*;
use serde_json::{Value, json};

const SITE: &str = "site-01";
const POOL: &str = "main";
const LOGIN: &str = "4FarmWallet";
/// The pool's terms: 0.1 coin a block at network difficulty 9·10¹⁸.
const REWARD: u64 = 100_000_000_000;
const NETWORK_DIFFICULTY: u64 = 9_000_000_000_000_000_000;
/// The coin's price per coin, 12 decimals.
const COIN_PRICE: f64 = 100.0;
/// The pool's fee (`pipelines.pplns`'s default), basis points.
const FEE_BPS: u64 = 100;
/// Every machine's nameplate power, W.
const NOMINAL_W: f64 = 3000.0;

/// Nameplate hashrates by machine, in order: breakevens of 79.2, 105.6, 132 and 158.4 per MWh
/// (after the pool's 1 % fee).
const HASHRATES: [f64; 4] = [60e12, 80e12, 100e12, 120e12];

/// The energy price at which a machine of `hashrate` breaks even, per MWh, computed here.
fn breakeven(hashrate: f64) -> f64 {
    let kept = 1.0 - FEE_BPS as f64 / 10_000.0;
    let per_hash = REWARD as f64 / NETWORK_DIFFICULTY as f64 * kept * COIN_PRICE / 1e12;
    hashrate * 3600.0 * per_hash / (NOMINAL_W / 1e6)
}

/// The mean of the step function `points` (time, value) over `[start, end)`, none where
/// some of it has no value: the rule `machine_profit` states, written again here.
fn mean_over(points: &[(i64, f64)], start: i64, end: i64) -> Option<f64> {
    let mut value = points.iter().rev().find(|(t, _)| *t <= start)?.1;
    let (mut t, mut sum) = (start, 0.0);
    for &(at, next) in points.iter().filter(|(at, _)| *at > start && *at < end) {
        sum += value * (at - t) as f64;
        (t, value) = (at, next);
    }
    sum += value * (end - t) as f64;
    Some(sum / (end - start) as f64)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-9)
}

async fn post(app: &App, kind: &str, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest/{kind}", app.url()))
        .bearer_auth(OPERATE_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The site's energy price from now on.
async fn site_price(app: &App, id: &str, price: f64) {
    post(
        app,
        "grid",
        json!({"site": SITE, "event_id": id, "kind": "price", "price_per_mwh": price,
               "ts": Utc::now()}),
    )
    .await;
}

/// Machines slept or woken by `rule`, in decision order.
async fn acted(app: &App, action: &str, rule: &str) -> Vec<String> {
    app.rows(&format!(
        "SELECT machine FROM decisions WHERE action = '{action}' AND rule = '{rule}' \
         ORDER BY ts, id"
    ))
    .await
    .iter()
    .map(|r| r["machine"].as_str().unwrap().to_string())
    .collect()
}

/// Publishes one accepted share a second for each machine that is awake, as the pool would:
/// difficulty = its nameplate hashrate, so the shares stand for its hashes.
fn mine(
    nats: &NatsServer,
    machines: Vec<(String, f64)>,
    awake: Arc<std::sync::Mutex<BTreeMap<String, bool>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let url = nats.url();
    tokio::spawn(async move {
        let client = async_nats::connect(&url).await.unwrap();
        let publisher = adit_bus::Publisher::new(async_nats::jetstream::new(client));
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (machine, hashrate) in &machines {
                if !awake.lock().unwrap().get(machine).copied().unwrap_or(true) {
                    continue;
                }
                n += 1;
                let share = Share {
                    pool: POOL.into(),
                    miner: LOGIN.into(),
                    worker: machine.clone(),
                    job_id: format!("j{n}"),
                    nonce: format!("{n:08x}"),
                    difficulty: *hashrate as u64,
                    height: 100,
                    accepted: true,
                    reason: None,
                    ts: Utc::now(),
                    network_difficulty: Some(NETWORK_DIFFICULTY),
                    reward: Some(REWARD),
                    subsidy: Some(REWARD),
                    team: None,
                };
                publisher.publish(&AnyEvent::Share(share)).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_over_a_machines_breakeven_sleeps_it_and_its_margins_recompute_from_the_tables() {
    // A market answering as CoinGecko's simple price does, read by the adapters' coin feed.
    let market = axum::Router::new().route(
        "/simple/price",
        axum::routing::get(|| async { axum::Json(json!({"monero": {"usd": COIN_PRICE}})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let market_url = format!("http://{}/simple/price", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, market).await.unwrap() });
    let coin_feed = format!(
        "[[adapters.coin_price]]\ncoin = \"XMR\"\ndecimals = 12\nurl = \"{market_url}\"\n\
         pointer = \"/monero/usd\"\nevery = \"5s\"\n"
    );
    let (nats, dir, app) = start_app(
        farm::FARM_ROLES,
        &farm::Farm {
            machines: 4,
            adapters: &coin_feed,
            curtailment: "shed_unprofitable = true\nstrike_intervals = 1\n",
            extra: "[pipelines.energy]\nmax_gap = \"10s\"\ngrace = \"1s\"\nidle = \"10s\"\ntick = \"500ms\"\n",
            ..Default::default()
        }
        .config(),
    )
    .await;
    app.wait_rows(
        Duration::from_secs(90),
        "every machine read",
        &format!("SELECT count(DISTINCT machine) AS n FROM energy_readings WHERE site = '{SITE}'"),
        |rows| rows[0]["n"].as_i64() == Some(4),
    )
    .await;

    // The registry: the pool's coin, one-minute settlement, and whom each machine mines as.
    let sites: Vec<Value> = app.get_json("/api/v1/registry/sites", READ_TOKEN).await;
    let mut site = sites.into_iter().find(|s| s["id"] == SITE).unwrap();
    site["settlement_minutes"] = json!(1);
    let mut machines: Vec<Value> = app
        .get_json(
            &format!("/api/v1/registry/machines?site={SITE}"),
            READ_TOKEN,
        )
        .await;
    machines.sort_by_key(|m| m["id"].as_str().unwrap().to_string());
    let mut records = vec![
        (
            format!("/api/v1/registry/pools/{POOL}"),
            json!({"coin": "XMR"}),
        ),
        (format!("/api/v1/registry/sites/{SITE}"), site),
    ];
    let mut hashrates = Vec::new();
    for (m, hashrate) in machines.iter_mut().zip(HASHRATES) {
        let id = m["id"].as_str().unwrap().to_string();
        m["pool"] = json!(POOL);
        m["mines_as"] = json!({"miner": LOGIN});
        m["nominal_hashrate_hs"] = json!(hashrate);
        m["nominal_power_w"] = json!(NOMINAL_W);
        records.push((format!("/api/v1/registry/machines/{SITE}/{id}"), m.clone()));
        hashrates.push((id, hashrate));
    }
    app.put_all(records).await;
    farm::registry_committed(&nats).await;

    // The market: the pool's terms (as the pool publishes them), the coin's price and the
    // site's energy price, all machines profitable at 70 per MWh.
    let (publisher, _) = publisher(&nats).await;
    publisher
        .publish(&AnyEvent::Network(NetworkState {
            pool: POOL.into(),
            height: 100,
            network_difficulty: NETWORK_DIFFICULTY,
            reward: REWARD,
            subsidy: REWARD,
            fee_bps: FEE_BPS,
            ts: Utc::now(),
        }))
        .await
        .unwrap();
    app.wait_rows(
        Duration::from_secs(60),
        "the market's coin price read by the feed",
        "SELECT count(*) AS n FROM coin_prices WHERE coin = 'XMR' AND source = '127.0.0.1' \
         AND price = 100.0 AND decimals = 12",
        |rows| rows[0]["n"].as_i64() > Some(0),
    )
    .await;
    site_price(&app, "p-low-1", 70.0).await;
    let awake = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mining = mine(&nats, hashrates.clone(), awake.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before_kw = farm::site_kw(&app, SITE).await.unwrap();

    // 120 per MWh: the two machines breaking even at 80 and 106.7 lose money and sleep, the
    // least profitable first; the other two run on.
    site_price(&app, "p-high", 120.0).await;
    let (cheap, dear) = (&hashrates[0].0, &hashrates[1].0);
    eventually(
        Duration::from_secs(60),
        "the two unprofitable machines slept",
        || async { acted(&app, "sleep", "price_breakeven").await.len() >= 2 },
    )
    .await;
    let slept = acted(&app, "sleep", "price_breakeven").await;
    eprintln!(
        "breakevens {:?} per MWh; at 120 slept {slept:?}",
        HASHRATES.map(breakeven)
    );
    assert_eq!(
        slept,
        vec![cheap.clone(), dear.clone()],
        "least profitable first, only those"
    );
    for id in [cheap, dear] {
        awake.lock().unwrap().insert(id.clone(), false);
    }
    eventually(
        Duration::from_secs(60),
        "the site's measured power falls",
        || async { farm::site_kw(&app, SITE).await.unwrap_or(f64::MAX) < before_kw * 0.75 },
    )
    .await;
    eprintln!(
        "site {before_kw:.2} kW → {:.2} kW",
        farm::site_kw(&app, SITE).await.unwrap()
    );
    let recorded = app
        .rows(&format!(
            "SELECT inputs FROM decisions WHERE rule = 'price_breakeven' AND machine = '{cheap}'"
        ))
        .await;
    let inputs: Value = serde_json::from_str(recorded[0]["inputs"].as_str().unwrap()).unwrap();
    let machine = inputs["inputs"]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == cheap.as_str())
        .unwrap();
    assert!(
        close(
            machine["breakeven_per_mwh"].as_f64().unwrap(),
            breakeven(HASHRATES[0])
        ),
        "the recorded breakeven {machine} is the nameplate's at the pool's terms and the coin's price"
    );
    // 70 again: both earn and are woken (once the curtailment's 5 s cooldown has passed).
    site_price(&app, "p-low-2", 70.0).await;
    eventually(Duration::from_secs(60), "both woken", || async {
        app.rows("SELECT machine FROM decisions WHERE action = 'wake'")
            .await
            .len()
            >= 2
    })
    .await;
    awake.lock().unwrap().clear();
    eventually(Duration::from_secs(60), "the site draws again", || async {
        farm::site_kw(&app, SITE).await.unwrap_or(0.0) > before_kw * 0.9
    })
    .await;

    // Wait for an interval after the wake to be settled, then recompute every row.
    let woke = Utc::now();
    app.wait_rows(
        Duration::from_secs(180),
        "a settled interval after the wake, for every machine",
        &format!(
            "SELECT count(DISTINCT machine) AS n FROM machine_profit \
             WHERE CAST(period_start AS BIGINT) >= {}",
            woke.timestamp_micros()
        ),
        |rows| rows[0]["n"].as_i64() == Some(4),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let published = mining.await.unwrap();
    assert!(published > 100, "{published} shares");
    check_every_row(&app).await;
    let view: Value = app
        .get_json(&format!("/api/v1/sites/{SITE}/profit?hours=1"), READ_TOKEN)
        .await;
    check_view(&app, &view).await;

    // The site page's panel shows each machine's margin as the view gives it.
    let expect: Vec<Value> = view["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!({"machine": m["machine"], "margin": m["margin"]}))
        .collect();
    let expect_path = dir.path().join("expect.json");
    std::fs::write(&expect_path, serde_json::to_vec(&expect).unwrap()).unwrap();
    let args = [
        "--url",
        &app.url(),
        "--token",
        READ_TOKEN,
        "--site",
        SITE,
        "--expect",
        expect_path.to_str().unwrap(),
        "--shot",
        dir.path().join("profit.png").to_str().unwrap(),
    ]
    .map(String::from);
    let (status, said) = run_browser_script(
        "profit.py",
        &args,
        &dir.path().join("profit.log"),
        Duration::from_secs(120),
    );
    assert!(status.success(), "{said}");
    eprintln!("{said}");
    if let Ok(keep) = std::env::var("ADIT_KEEP_SHOTS") {
        std::fs::copy(dir.path().join("profit.png"), keep).unwrap();
    }
}

/// Every `machine_profit` row equals what `shares`, `energy_settlement`, `coin_prices` and
/// `grid_signals` say, recomputed here.
async fn check_every_row(app: &App) {
    let us = |v: &Value| v.as_i64().unwrap();
    let rows = app
        .rows(
            "SELECT machine, worker, CAST(period_start AS BIGINT) AS s, CAST(period_end AS BIGINT) AS e, \
             shares, work, revenue_units, pool_fee_units, coin_price, revenue, energy_wh, energy_price_per_mwh, \
             energy_cost, margin, breakeven_per_mwh FROM machine_profit ORDER BY s, machine",
        )
        .await;
    let prices: Vec<(i64, f64)> = app
        .rows(&format!(
            "SELECT CAST(ts AS BIGINT) AS t, price_per_mwh FROM grid_signals \
             WHERE site = '{SITE}' AND kind = 'price' ORDER BY t"
        ))
        .await
        .iter()
        .map(|r| (us(&r["t"]), r["price_per_mwh"].as_f64().unwrap()))
        .collect();
    let quotes: Vec<(i64, f64)> = app
        .rows(
            "SELECT CAST(ts AS BIGINT) AS t, price FROM coin_prices WHERE coin = 'XMR' ORDER BY t",
        )
        .await
        .iter()
        .map(|r| (us(&r["t"]), r["price"].as_f64().unwrap()))
        .collect();
    let (mut priced, mut with_margin) = (0, 0);
    for row in &rows {
        let (machine, s, e) = (
            row["machine"].as_str().unwrap(),
            us(&row["s"]),
            us(&row["e"]),
        );
        let shares = app
            .rows(&format!(
                "SELECT difficulty, reward, network_difficulty FROM shares WHERE accepted \
                 AND pool = '{POOL}' AND miner = '{LOGIN}' AND worker = '{machine}' \
                 AND CAST(ts AS BIGINT) >= {s} AND CAST(ts AS BIGINT) < {e}"
            ))
            .await;
        // Each share's worth to the miner after the pool's fee, and the fee.
        let (units, fees): (u128, u128) = shares
            .iter()
            .map(|r| {
                let n = |k: &str| u128::from(r[k].as_u64().unwrap());
                let whole = n("difficulty") * n("reward");
                let owed =
                    whole * u128::from(10_000 - FEE_BPS) / (n("network_difficulty") * 10_000);
                (owed, whole / n("network_difficulty") - owed)
            })
            .fold((0, 0), |(u, f), (o, fee)| (u + o, f + fee));
        assert_eq!(row["shares"].as_i64(), Some(shares.len() as i64), "{row}");
        assert_eq!(
            row["revenue_units"].as_u64().map(u128::from),
            Some(units),
            "{row}"
        );
        assert_eq!(
            row["pool_fee_units"].as_u64().map(u128::from),
            Some(fees),
            "{row}"
        );
        let energy = app
            .rows(&format!(
                "SELECT energy_wh FROM energy_settlement WHERE scope = 'machine' AND site = '{SITE}' \
                 AND subject = '{machine}' AND CAST(period_start AS BIGINT) = {s}"
            ))
            .await;
        let energy_wh = energy[0]["energy_wh"].as_f64().unwrap();
        assert_eq!(row["energy_wh"].as_f64(), Some(energy_wh), "{row}");
        let coin = mean_over(&quotes, s, e);
        let revenue = coin.map(|p| units as f64 / 1e12 * p);
        let price = mean_over(&prices, s, e);
        let cost = price.map(|p| energy_wh / 1e6 * p);
        let same = |column: &str, want: Option<f64>| match (row[column].as_f64(), want) {
            (Some(got), Some(want)) => {
                assert!(close(got, want), "{column}: {got} ≠ {want} in {row}")
            }
            (got, want) => assert_eq!(got, want, "{column} in {row}"),
        };
        same("coin_price", coin);
        same("revenue", revenue);
        same("energy_price_per_mwh", price);
        same("energy_cost", cost);
        same("margin", revenue.zip(cost).map(|(r, c)| r - c));
        same(
            "breakeven_per_mwh",
            revenue
                .filter(|_| energy_wh > 0.0)
                .map(|r| r / (energy_wh / 1e6)),
        );
        priced += usize::from(revenue.is_some() && units > 0);
        with_margin += usize::from(row["margin"].is_number());
    }
    eprintln!(
        "machine_profit: {} rows recomputed, {priced} with priced shares, {with_margin} with a margin",
        rows.len()
    );
    assert!(
        priced >= 4 && with_margin >= 4,
        "{priced} priced, {with_margin} with a margin of {}",
        rows.len()
    );
}

/// The site's profit view sums each machine's rows of the hour.
async fn check_view(app: &App, view: &Value) {
    let machines = view["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 4, "{view}");
    eprintln!("profit view: {view}");
    assert_eq!(view["energy_price_per_mwh"].as_f64(), Some(70.0), "{view}");
    for m in machines {
        let id = m["machine"].as_str().unwrap();
        let i: usize = id.trim_start_matches("m-").parse::<usize>().unwrap() - 1;
        let now = m["breakeven_now_per_mwh"].as_f64().unwrap();
        assert!(
            close(now, breakeven(HASHRATES[i])),
            "{id}: breakeven now {now}"
        );
        let rows = app
            .rows(&format!(
                "SELECT revenue_units, energy_wh, revenue, margin FROM machine_profit \
                 WHERE site = '{SITE}' AND machine = '{id}'"
            ))
            .await;
        let known = |k: &str| {
            rows.iter()
                .filter_map(|r| r[k].as_f64())
                .collect::<Vec<_>>()
        };
        let units: i64 = rows
            .iter()
            .map(|r| r["revenue_units"].as_i64().unwrap())
            .sum();
        let wh: f64 = rows.iter().map(|r| r["energy_wh"].as_f64().unwrap()).sum();
        let priced_wh: f64 = rows
            .iter()
            .filter(|r| r["revenue"].is_number())
            .map(|r| r["energy_wh"].as_f64().unwrap())
            .sum();
        let (revenue, margin) = (known("revenue"), known("margin"));
        assert_eq!(m["intervals"].as_u64(), Some(rows.len() as u64), "{m}");
        assert_eq!(m["priced"].as_u64(), Some(revenue.len() as u64), "{m}");
        assert_eq!(m["margined"].as_u64(), Some(margin.len() as u64), "{m}");
        assert_eq!(m["revenue_units"].as_i64(), Some(units), "{m}");
        assert!(close(m["energy_kwh"].as_f64().unwrap(), wh / 1000.0), "{m}");
        assert!(!margin.is_empty(), "{m}");
        let margin_sum: f64 = margin.iter().sum();
        assert!(close(m["margin"].as_f64().unwrap(), margin_sum), "{m}");
        let breakeven = revenue.iter().sum::<f64>() / (priced_wh / 1e6);
        assert!(
            close(m["breakeven_per_mwh"].as_f64().unwrap(), breakeven),
            "{m}"
        );
    }
}
