//! The pool end to end on real parts (issue 3): monerod in regtest, `adit run --roles
//! pool,pipelines,query`, and a Rust Stratum client mining real RandomX nonces in light mode.
//! Its shares are accepted, it finds a block, monerod's height rises, and the shares and the
//! block are in the tables.

use crate::common;

use std::time::Duration;

use adit_testkit::Monerod;
use common::*;

const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_finds_a_block_that_monerod_accepts() {
    let monerod = Monerod::start_with_difficulty(100);
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let stratum_port = free_port();
    let pool = format!(
        "[pool]\nlisten = \"127.0.0.1:{stratum_port}\"\nnode = \"{}\"\nwallet = \"{WALLET}\"\ntip_poll = \"200ms\"\nmetrics_per_miner = 10\nconfirmations = 3\n\
         [pool.server]\npool = \"regtest\"\nverify_threads = 1\n[pool.server.vardiff]\nmin_difficulty = 1\n",
        monerod.rpc_url()
    );
    let app = App::start(&nats.url(), dir.path(), "pool,pipelines,query", &pool);
    app.wait_http().await;
    let start_height = monerod_height(&monerod.rpc_url()).await;

    let addr = format!("127.0.0.1:{stratum_port}").parse().unwrap();
    let mut miner = stratum_login(&app, addr, &format!("{WALLET}+25.rig-a")).await;
    assert_eq!(miner.job.height, start_height);

    // Difficulty 25 shares against network difficulty 100: a block every ~4 shares.
    let mut accepted = 0;
    let mut duplicates = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    // Until a block is found and a duplicate was refused (a share that finds the block
    // replaces its job, so its resubmission is stale, not a duplicate: try the next one).
    while monerod_height(&monerod.rpc_url()).await == start_height || duplicates == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no block accepted by monerod; pool log:\n{}\nmonerod:\n{}",
            app.log(),
            monerod.log_tail()
        );
        let (nonce, result) = miner.mine().unwrap();
        let reply = miner.submit(&nonce, &result).await.unwrap();
        if reply["result"]["status"] == "OK" {
            accepted += 1;
            if duplicates == 0 {
                // The same nonce again: refused, and recorded as a rejected share.
                let again = miner.submit(&nonce, &result).await.unwrap();
                if again["error"]["message"] == "Duplicate share" {
                    duplicates += 1;
                }
            }
        } else {
            // A share for a job that just got replaced is stale (or, after several new jobs
            // while a slow debug miner hashed, no longer remembered); anything else is a bug.
            let message = &reply["error"]["message"];
            assert!(
                message == "Block expired" || message == "Invalid job id",
                "{reply}"
            );
        }
    }
    assert!(accepted >= 1);
    assert!(monerod_height(&monerod.rpc_url()).await > start_height);

    let tables = dir.path().join("tables");
    eventually(
        Duration::from_secs(60),
        "shares and the block landed",
        || async {
            scalar(
                &tables,
                &["blocks"],
                "SELECT count(*) FROM blocks WHERE status = 'submitted'",
            )
            .await
                >= 1
                && scalar(
                    &tables,
                    &["shares"],
                    "SELECT count(*) FROM shares WHERE accepted",
                )
                .await
                    >= accepted
        },
    )
    .await;
    assert_eq!(duplicates, 1, "a duplicate was submitted and refused");
    eventually(
        Duration::from_secs(30),
        "the refused duplicate landed beside its accepted original",
        || async {
            scalar(
                &tables,
                &["shares"],
                "SELECT count(*) FROM shares WHERE NOT accepted AND reason = 'duplicate'",
            )
            .await
                == 1
        },
    )
    .await;
    // The pool published the terms of every height it mined on (`network`), before the
    // shares priced on them: each accepted share's height, difficulty and reward are a row's,
    // with the fee the payouts take (the default 100 bps).
    eventually(
        Duration::from_secs(30),
        "each accepted share's terms are in `network`",
        || async {
            scalar(
                &tables,
                &["network"],
                "SELECT count(DISTINCT height) FROM network",
            )
            .await
                >= 2
                && scalar(
                    &tables,
                    &["shares", "network"],
                    "SELECT count(*) FROM shares s WHERE s.accepted AND NOT EXISTS \
                     (SELECT 1 FROM network n WHERE n.height = s.height \
                      AND n.network_difficulty = s.network_difficulty AND n.reward = s.reward \
                      AND n.fee_bps = 100)",
                )
                .await
                    == 0
        },
    )
    .await;
    let (s, body) = app
        .sql(
            "SELECT b.job_id FROM blocks b JOIN shares s ON s.job_id = b.job_id AND s.nonce = b.nonce AND s.accepted",
            "json",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s, 200);
    let named: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert!(!named.is_empty(), "the block names an accepted share");
    // The block is split (PPLNS): one miner, so it gets everything but the fee.
    eventually(
        Duration::from_secs(60),
        "the block was split into payouts",
        || async {
            scalar(
                &tables,
                &["block_rewards"],
                "SELECT count(*) FROM block_rewards",
            )
            .await
                >= 1
        },
    )
    .await;
    let (s, body) = app
        .sql(
            "SELECT r.hash, r.reward, r.fee, r.paid, r.remainder, sum(p.amount) AS payouts, count(p.miner) AS miners \
             FROM block_rewards r JOIN payouts p ON p.hash = r.hash \
             GROUP BY r.hash, r.reward, r.fee, r.paid, r.remainder",
            "json",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let splits: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    // One split per block (the loop above may find more than one before a duplicate).
    assert!(!splits.is_empty());
    for split in &splits {
        let num = |k: &str| {
            split[k]
                .as_i64()
                .unwrap_or_else(|| panic!("{k} in {split}"))
        };
        assert!(num("reward") > 0, "{split}");
        assert_eq!(
            num("fee"),
            num("reward") / 100,
            "default fee 100 bps: {split}"
        );
        assert_eq!(num("payouts"), num("paid"), "{split}");
        assert_eq!(
            num("fee") + num("paid") + num("remainder"),
            num("reward"),
            "{split}"
        );
        assert_eq!(num("miners"), 1, "{split}");
    }
    // Bury the block: monerod mines 3 more, and the pool records it confirmed.
    let reply: serde_json::Value = json_of(
        reqwest::Client::new()
            .post(format!("{}/json_rpc", monerod.rpc_url()))
            .json(
                &serde_json::json!({"jsonrpc": "2.0", "id": "0", "method": "generateblocks",
            "params": {"amount_of_blocks": 3, "wallet_address": WALLET}}),
            ),
    )
    .await;
    assert!(reply["result"]["height"].as_u64().is_some(), "{reply}");
    eventually(
        Duration::from_secs(90),
        "the block was recorded confirmed",
        || async {
            scalar(
                &tables,
                &["blocks"],
                "SELECT count(*) FROM blocks WHERE status = 'confirmed'",
            )
            .await
                >= 1
        },
    )
    .await;
    let miners = scalar(&tables, &["shares"], &format!("SELECT count(*) FROM shares WHERE miner = '{WALLET}' AND worker = 'rig-a' AND difficulty = 25")).await;
    assert!(
        miners >= accepted,
        "{miners} shares of rig-a at difficulty 25"
    );
    let (s, body) = app
        .sql(
            "SELECT pool, height, miner, status FROM blocks",
            "json",
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s, 200);
    let blocks: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert!(
        blocks.iter().any(|b| b["pool"] == "regtest"
            && b["height"].as_u64() == Some(start_height)
            && b["status"] == "submitted"),
        "{blocks:?}"
    );
    let metrics = app.metrics().await;
    assert!(metrics.contains("adit_pool_shares_total"), "{metrics}");
    assert!(
        metrics.contains("adit_pool_verify_seconds_bucket{le=\"0.005\"}"),
        "timings are histograms: {metrics}"
    );
    for name in [
        "pool_total_hashrate",
        "pool_shares_per_second",
        "pool_blocks_found_total",
        "pool_uptime_seconds",
        "pool_active_miners",
        &format!("miner_shares_accepted_total{{miner=\"{WALLET}\"}}"),
        &format!("miner_online{{miner=\"{WALLET}\"}} 1"),
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    assert!(
        metrics.contains("adit_pool_blocks_found_total"),
        "{metrics}"
    );

    // Graceful shutdown with a miner still connected: stop accepting, finish, exit 0.
    let mut app = app;
    assert!(
        app.terminate(),
        "SIGTERM exits cleanly; log:\n{}",
        app.log()
    );
    assert!(
        !app.log().contains("did not finish"),
        "every role drained by itself, none was aborted; log:\n{}",
        app.log()
    );
    let after = miner.submit("00000000", &"00".repeat(32)).await;
    assert!(after.is_err(), "the pool closed the connection: {after:?}");
}

/// `adit bench pool --servers 2` (issue 62): the server spread over two processes on one port
/// holds every idle miner asked for, each process some of them, and the honest miners' shares
/// are timed meanwhile. (Its figures come from a release build; this shows it works.)
#[test]
fn the_pool_bench_holds_idle_miners_over_two_server_processes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adit"))
        .args(["bench", "pool", "--threads", "1", "--connections", "2"])
        .args(["--shares", "2", "--rounds", "1", "--idle", "0,300"])
        .args(["--probes", "1", "--probe-shares", "2", "--servers", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    let row = stdout
        .lines()
        .map(str::split_whitespace)
        .map(Iterator::collect::<Vec<_>>)
        .find(|words| words.first() == Some(&"300"))
        .unwrap_or_else(|| panic!("no row for 300 idle miners:\n{stdout}"));
    let bytes: f64 = row[1].parse().unwrap_or_else(|_| panic!("{row:?}"));
    assert!(bytes > 0.0, "no memory per connection: {row:?}");
    // The last words: each server process's connections, "a + b".
    let held: Vec<usize> = row[row.len() - 3..]
        .iter()
        .filter(|w| **w != "+")
        .map(|w| w.parse().unwrap_or_else(|_| panic!("{row:?}")))
        .collect();
    assert_eq!(held.len(), 2, "{row:?}");
    assert_eq!(
        held.iter().sum::<usize>(),
        300,
        "every idle miner held: {row:?}"
    );
    assert!(
        held.iter().all(|&n| n > 0),
        "both processes hold some: {row:?}"
    );
    assert!(stdout.contains("ratio server / raw"), "{stdout}");
    // Beside each rate, the CPU each hash and each share took this process.
    for what in ["CPU per hash, raw", "CPU per share, through server"] {
        let ms: f64 = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(what))
            .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or_else(|| panic!("no {what:?} line:\n{stdout}"));
        assert!(ms.is_finite() && ms > 0.0, "{what}: {ms} ms");
    }
}
