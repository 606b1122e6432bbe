//! A miner need not take the pool's word (issue 59), on real parts: `monerod --regtest`, the
//! pool's `monero-wallet-rpc` and two miners' own, `adit run --roles
//! pool,pipelines,query,payments,alerts` with the shipped rules. Two Stratum miners find blocks
//! together; for every block and every miner of it, `adit verify payout` recomputes the split
//! from the pool's public window alone and says equal, and says not equal once one published
//! share is altered; so does the `/verify` page in headless Chromium, by its own code. While
//! payments are held the pools owe something, and the payer's reserve proofs, public without a
//! token, check in a miner's wallet (`check_reserve_proof`). Released, the miners are paid,
//! and each payment's proof checks in the miner's own wallet (`check_tx_proof`) for the amount
//! the payments table records. Held again with one more block owed, the pool wallet's outputs
//! frozen: the next proof fails and `ReserveShort` fires.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use adit_testkit::{Monerod, WalletRpc};
use common::*;
use serde_json::{Value, json};

/// `adit verify payout` with `args`.
fn verify(args: &[&str]) -> Output {
    std::process::Command::new(adit_binary())
        .args(["verify", "payout"])
        .args(args)
        .output()
        .unwrap()
}

/// What `adit verify payout` printed, as JSON.
fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// GET `path` of `app` without a token.
async fn public(app: &App, path: &str) -> Value {
    let response = reqwest::get(format!("{}{path}", app.url())).await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The firing count of `rule` in the `alerts` table.
async fn firing(tables: &Path, rule: &str) -> i64 {
    if !tables.join("alerts/_delta_log").is_dir() {
        return 0;
    }
    scalar(
        tables,
        &["alerts"],
        &format!("SELECT count(*) FROM alerts WHERE rule = '{rule}' AND state = 'firing'"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_check_their_payouts_payments_and_the_pools_reserve() {
    // Difficulty 1, so every share is a block and regtest mines the wallets' blocks at once;
    // a window of 60 × 1 holds fifteen shares at difficulty 4: every block's window reaches
    // back over the blocks before it, both miners' shares.
    let monerod = Monerod::start();
    let pool_wallet = WalletRpc::start(&monerod);
    let alice = WalletRpc::start(&monerod);
    let bob = WalletRpc::start(&monerod);
    // Enough unlocked outputs on the chain for the wallet to pick a transfer's 15 decoys
    // from quickly (with a few dozen, `transfer` searched for minutes).
    monerod.generate(200, &pool_wallet.address);

    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        shortened_rules(adit_alerts::evaluate::DEFAULT_RULES),
    )
    .unwrap();
    let stratum_port = free_port();
    let config = format!(
        "[pool]\nlisten = \"127.0.0.1:{stratum_port}\"\nnode = \"{node}\"\nwallet = \"{wallet}\"\n\
         tip_poll = \"200ms\"\nconfirmations = 3\n\
         [pool.server]\npool = \"regtest\"\nverify_threads = 1\n[pool.server.vardiff]\nmin_difficulty = 1\n\
         [payments]\nwallet_rpc = \"{wallet_rpc}\"\nnode = \"{node}\"\ninterval = \"1s\"\n\
         threshold = 1000000\nconfirmations = 2\nblock_confirmations = 3\nreserve_every = \"2s\"\n\
         [pipelines.pplns]\nfactor = 60\n\
         [alerts]\nrules_file = \"{rules}\"\nreload = \"500ms\"\n",
        node = monerod.rpc_url(),
        wallet = pool_wallet.address,
        wallet_rpc = pool_wallet.url(),
        rules = rules.display(),
    );
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pool,pipelines,query,payments,alerts",
        &config,
    );
    app.wait_http().await;
    let tables = dir.path().join("tables");
    // Held from the start: blocks confirm and balances are owed, and nothing is paid yet.
    let store = adit_sinks::TableStore::new(tables.to_str().unwrap(), Default::default()).unwrap();
    adit_payments::hold::put(&store, "proofs test: owe before paying", None)
        .await
        .unwrap();

    // Both miners share until three blocks are split.
    let addr = format!("127.0.0.1:{stratum_port}").parse().unwrap();
    let mut miners = Vec::new();
    for wallet in [&alice, &bob] {
        let login = format!("{}+4.rig", wallet.address);
        miners.push(stratum_login(&app, addr, &login).await);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let split = "SELECT count(*) FROM block_rewards WHERE window_hash IS NOT NULL";
    let mut turn = 0;
    while !tables.join("block_rewards/_delta_log").is_dir()
        || scalar(&tables, &["block_rewards"], split).await < 3
    {
        assert!(
            Instant::now() < deadline,
            "no three blocks split; log:\n{}",
            app.log()
        );
        let miner = &mut miners[turn % 2];
        turn += 1;
        let (nonce, result) = miner.mine().unwrap();
        // A share on a job the tip has left is refused; the next one is on the new job.
        let _ = miner.submit(&nonce, &result).await;
        // Each share is a block: mine on once the pool has the next template.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(miners);

    // Every miner of every block split: equal from the public window alone.
    let split_blocks = app
        .rows("SELECT height, hash FROM block_rewards WHERE pool = 'regtest' ORDER BY height")
        .await;
    let url = app.url();
    let mut checked_both = false;
    let mut saved = None;
    for block in &split_blocks {
        let height = block["height"].as_i64().unwrap().to_string();
        let hash = block["hash"].as_str().unwrap();
        let mut paid_here = 0;
        for wallet in [&alice, &bob] {
            let owed = app
                .rows(&format!(
                    "SELECT coalesce(sum(amount), 0) AS a FROM payouts WHERE hash = '{hash}' AND miner = '{}'",
                    wallet.address
                ))
                .await[0]["a"]
                .as_i64()
                .unwrap();
            let file = dir.path().join(format!("window-{height}.json"));
            let out = verify(&[
                "--url",
                &url,
                "--pool",
                "regtest",
                "--block",
                &height,
                "--hash",
                hash,
                "--miner",
                &wallet.address,
                "--save",
                file.to_str().unwrap(),
            ]);
            let said = report(&out);
            assert!(
                out.status.success(),
                "{said}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(said["check"]["equal"], true, "{said}");
            assert_eq!(
                said["check"]["miner"]["published"].as_i64(),
                Some(owed),
                "{said}"
            );
            assert_eq!(
                said["check"]["miner"]["recomputed"].as_i64(),
                Some(owed),
                "{said}"
            );
            if owed > 0 {
                paid_here += 1;
                saved = Some((
                    file,
                    height.clone(),
                    hash.to_string(),
                    wallet.address.clone(),
                    owed,
                ));
            }
        }
        checked_both |= paid_here == 2;
    }
    assert!(
        checked_both,
        "a window held both miners' shares: {split_blocks:?}"
    );

    // One published share altered: not equal.
    let (saved, height, hash, login, owed) = saved.unwrap();
    let mut windows: Vec<Value> = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let difficulty = windows[0]["shares"][0][2].as_u64().unwrap();
    windows[0]["shares"][0][2] = json!(difficulty + 1);
    let altered = dir.path().join("altered.json");
    std::fs::write(&altered, serde_json::to_vec(&windows).unwrap()).unwrap();
    let out = verify(&[
        "--file",
        altered.to_str().unwrap(),
        "--miner",
        &alice.address,
    ]);
    let said = report(&out);
    assert!(
        !out.status.success(),
        "an altered window must not check: {said}"
    );
    assert_eq!(said["check"]["equal"], false, "{said}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOT EQUAL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same two checks on the /verify page, in headless Chromium, by its own code.
    let args = [
        "--url",
        &url,
        "--pool",
        "regtest",
        "--block",
        &height,
        "--hash",
        &hash,
        "--miner",
        &login,
        "--amount",
        &owed.to_string(),
        "--altered",
        altered.to_str().unwrap(),
    ]
    .map(String::from);
    let (status, said) = run_browser_script(
        "verify.py",
        &args,
        &dir.path().join("verify.log"),
        Duration::from_secs(120),
    );
    assert!(status.success(), "{said}");

    // Confirm the blocks: balances are owed (held), and a reserve proof covers them. A miner's
    // wallet checks it from the public view.
    let deadline = Instant::now() + Duration::from_secs(180);
    let proof = loop {
        assert!(
            Instant::now() < deadline,
            "no good reserve proof of an owed balance; log:\n{}",
            app.log()
        );
        monerod.generate(1, &pool_wallet.address);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let proofs = public(&app, "/api/v1/public/reserve").await;
        if let Some(p) = proofs.as_array().unwrap().first()
            && p["owed"].as_i64().unwrap_or(0) > 0
        {
            break p.clone();
        }
    };
    assert_eq!(proof["good"], true, "{proof}");
    let checked = bob.call(
        "check_reserve_proof",
        json!({"address": proof["address"], "message": proof["message"], "signature": proof["signature"]}),
    );
    assert_eq!(checked["good"], true, "{checked}");
    let held = checked["total"].as_i64().unwrap() - checked["spent"].as_i64().unwrap();
    assert!(held >= proof["owed"].as_i64().unwrap(), "{checked} {proof}");
    assert_eq!(proof["proven"].as_i64(), Some(held), "{proof} {checked}");

    // Released: the miners are paid, and each payment's proof checks in the miner's wallet.
    let released = std::process::Command::new(adit_binary())
        .arg("--config")
        .arg(dir.path().join("adit.toml"))
        .arg("--nats-url")
        .arg(nats.url())
        .arg("--tables")
        .arg(&tables)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["payments", "release"])
        .output()
        .unwrap();
    assert!(
        released.status.success(),
        "{}",
        String::from_utf8_lossy(&released.stderr)
    );
    for wallet in [&alice, &bob] {
        let path = format!("/api/v1/pools/regtest/miners/{}", wallet.address);
        let deadline = Instant::now() + Duration::from_secs(180);
        let payment = loop {
            assert!(
                Instant::now() < deadline,
                "no payment with a proof; log:\n{}\npool wallet:\n{}",
                app.log(),
                pool_wallet.log_tail()
            );
            let me = json_of::<Value>(
                reqwest::Client::new()
                    .get(format!("{}{path}", app.url()))
                    .bearer_auth(READ_TOKEN),
            )
            .await;
            if let Some(p) = me["recent_payments"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["proof"].is_string()))
            {
                break p.clone();
            }
            monerod.generate(1, &pool_wallet.address);
            tokio::time::sleep(Duration::from_millis(1500)).await;
        };
        let checked = wallet.call(
            "check_tx_proof",
            json!({"txid": payment["tx_hash"], "address": wallet.address, "message": "", "signature": payment["proof"]}),
        );
        assert_eq!(checked["good"], true, "{checked}");
        assert_eq!(
            checked["received"].as_i64(),
            payment["amount"].as_i64(),
            "{checked} {payment}"
        );
        // Another address's check of the same proof fails: it proves this payment only.
        let other = if std::ptr::eq(wallet, &alice) {
            &bob
        } else {
            &alice
        };
        let wrong = json_rpc_error(
            wallet,
            "check_tx_proof",
            json!({"txid": payment["tx_hash"], "address": other.address, "message": "", "signature": payment["proof"]}),
        )
        .await;
        assert!(wrong, "a proof for one address checked for another");
    }

    // Owed again (held, and one more block found): with the pool's outputs frozen the wallet
    // cannot prove what it owes, and ReserveShort fires.
    adit_payments::hold::put(&store, "proofs test: owe again", None)
        .await
        .unwrap();
    let before = scalar(&tables, &["block_rewards"], split).await;
    let mut again = stratum_login(&app, addr, &format!("{}+4.rig", alice.address)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while scalar(&tables, &["block_rewards"], split).await == before {
        assert!(
            Instant::now() < deadline,
            "no further block split; log:\n{}",
            app.log()
        );
        let (nonce, result) = again.mine().unwrap();
        let _ = again.submit(&nonce, &result).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let owed_again = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < owed_again,
            "nothing owed again; log:\n{}",
            app.log()
        );
        monerod.generate(1, &pool_wallet.address);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let proofs = public(&app, "/api/v1/public/reserve").await;
        if proofs[0]["owed"].as_i64().unwrap_or(0) > 0 {
            break;
        }
    }
    let outputs = pool_wallet.call(
        "incoming_transfers",
        json!({"transfer_type": "available", "account_index": 0}),
    );
    let images: Vec<String> = outputs["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["key_image"].as_str().map(String::from))
        .collect();
    for image in &images {
        pool_wallet.call("freeze", json!({"key_image": image}));
    }
    // Two steps, each waited on by itself (a loaded machine is slower, not stuck): the payer's
    // next proof fails, then the rule that reads it fires.
    app.wait_rows(
        Duration::from_secs(120),
        "a reserve proof that fails",
        "SELECT count(*) AS n FROM reserve_proofs WHERE NOT good",
        |rows| rows.first().and_then(|r| r["n"].as_i64()) > Some(0),
    )
    .await;
    eventually(Duration::from_secs(90), "ReserveShort firing", || async {
        firing(&tables, "ReserveShort").await > 0
    })
    .await;
    let short = app
        .rows(
            "SELECT owed, good, error FROM reserve_proofs WHERE NOT good ORDER BY ts DESC LIMIT 1",
        )
        .await;
    assert!(
        short[0]["owed"].as_i64().unwrap() > 0 && short[0]["error"].as_str().is_some(),
        "{short:?}"
    );
}

/// Whether `method` with `params` fails, or answers `good: false`, on `wallet`.
async fn json_rpc_error(wallet: &WalletRpc, method: &str, params: Value) -> bool {
    let reply: Value = json_of(
        reqwest::Client::new()
            .post(format!("{}/json_rpc", wallet.url()))
            .json(&json!({"jsonrpc": "2.0", "id": "0", "method": method, "params": params})),
    )
    .await;
    reply.get("error").is_some() || reply["result"]["good"] == false
}
