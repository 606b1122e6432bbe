//! Payments exactly once under SIGKILL (issue 8), on both chains. Monero: against a real
//! `monerod --regtest` and two real `monero-wallet-rpc`s: the pool's (funded by 160 mined blocks) and a recipient's, whose
//! subaddresses are the miners' logins. Shares, blocks and their confirmations go through the
//! MINING stream; one `adit` process runs the pipelines and the payer and is killed at random
//! moments, the pool's wallet RPC now and then too. Afterwards every miner due was paid, the
//! recipient wallet received exactly what the `payments` table says (nothing twice, nothing
//! unrecorded), and no miner was paid more than its confirmed payouts.
//!
//! The blocks are real blocks of the regtest chain whose coinbase went to the pool's wallet,
//! and one more is not: a `confirmed` block on the bus with a hash the node never saw, whose
//! window a thief filled with shares (issue 23). The thief is never paid.
//!
//! OpenSY (issue 58): the same waves, kills and checks against the simulated OpenSY node, run
//! beside the process (so it outlives each kill), whose wallet the pool's coinbases paid and
//! whose chain is read block by block for what each miner received.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use adit_bus::publish::Outgoing;
use adit_schemas::{AnyEvent, Block, BlockStatus, Share};
use adit_testkit::{Monerod, WalletRpc};
use common::*;
use rand::{Rng, SeedableRng};
use serde_json::json;

const MINERS: usize = 6;
const BLOCKS: usize = 12;
const SHARES_PER_BLOCK: usize = 300;
/// 0.6 XMR per block; at 6 miners each earns about 0.1 XMR a block.
const REWARD: u64 = 600_000_000_000;
/// 0.15 XMR: a miner is paid about every second block.
const THRESHOLD: u64 = 150_000_000_000;

/// A block's shares, the block (at `height`, with `hash`) and, right after it, its
/// confirmation; `i0` numbers the first share.
fn wave(
    miners: &[String],
    blocks: (u64, &str),
    i0: usize,
    base: chrono::DateTime<chrono::Utc>,
    reward: u64,
) -> Vec<Outgoing> {
    let (height, hash) = blocks;
    let mut wave = Vec::new();
    for s in 0..SHARES_PER_BLOCK {
        let i = i0 + s;
        let share = Share {
            pool: "p1".into(),
            miner: miners[(i * 5) % miners.len()].clone(),
            worker: "rig".into(),
            job_id: format!("j{}", i / 50),
            nonce: format!("{i:08x}"),
            difficulty: 1_000 + (i as u64 * 13) % 700,
            height,
            accepted: true,
            reason: None,
            ts: base + chrono::Duration::milliseconds(i as i64),
            network_difficulty: None,
            reward: None,
            subsidy: None,
            team: None,
        };
        wave.push(Outgoing::event(&AnyEvent::Share(share.clone())));
        if s == SHARES_PER_BLOCK - 1 {
            let block = Block {
                pool: "p1".into(),
                height,
                hash: hash.to_string(),
                miner: share.miner,
                worker: share.worker,
                job_id: share.job_id,
                nonce: share.nonce,
                reward,
                network_difficulty: 150_000,
                status: BlockStatus::Submitted,
                error: None,
                ts: share.ts,
            };
            wave.push(Outgoing::event(&AnyEvent::Block(block.clone())));
            wave.push(Outgoing::event(&AnyEvent::Block(Block {
                status: BlockStatus::Confirmed,
                ts: share.ts + chrono::Duration::seconds(1),
                ..block
            })));
        }
    }
    wave
}

/// A wave per real block (height, hash), each block's shares spread over `miners`; then the
/// thief's: every share its own, and a block the node never saw.
fn events(
    miners: &[String],
    blocks: &[(u64, String)],
    thief: &str,
    base: chrono::DateTime<chrono::Utc>,
    reward: u64,
) -> Vec<Vec<Outgoing>> {
    let mut waves: Vec<Vec<Outgoing>> = blocks
        .iter()
        .enumerate()
        .map(|(b, (height, hash))| {
            wave(miners, (*height, hash), b * SHARES_PER_BLOCK, base, reward)
        })
        .collect();
    waves.push(wave(
        &[thief.to_string()],
        (150, &format!("{:064x}", 0xdead_u64)),
        BLOCKS * SHARES_PER_BLOCK,
        base,
        reward,
    ));
    waves
}

/// Publishes every block's wave and then the thief's, killing and restarting `app` after every
/// other wave (and calling `between` after each, to mine a block and restart a wallet).
async fn publish_with_kills(
    publisher: &adit_bus::Publisher,
    app: &mut App,
    waves: Vec<Vec<Outgoing>>,
    mut between: impl AsyncFnMut(usize),
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for (w, wave) in waves.into_iter().enumerate() {
        publisher.publish_all(wave).await.unwrap();
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        if w % 2 == 1 {
            app.kill();
            eprintln!("wave {w}: killed");
            between(w).await;
            app.restart();
        }
    }
}

/// Mines (with `mine`) until every miner but the thief is paid: the block's payouts all split,
/// no balance at or above `threshold`, nothing in flight, and the thief's block refused.
async fn settle(
    app: &App,
    tables: &std::path::Path,
    thief: &str,
    threshold: u64,
    mut mine: impl AsyncFnMut(),
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        mine().await;
        let earned = per_miner(tables, &["payouts"], "SELECT miner, amount FROM payouts").await;
        let paid = per_miner(
            tables,
            &["payments"],
            "SELECT miner, CASE WHEN status = 'created' THEN amount WHEN status = 'failed' THEN -amount ELSE 0 END AS amount FROM payments",
        )
        .await;
        let open = scalar(
            tables,
            &["payments"],
            "SELECT count(*) FROM (SELECT tx_hash FROM payments GROUP BY tx_hash HAVING NOT bool_or(status IN ('confirmed', 'failed')))",
        )
        .await;
        let blocks = scalar(
            tables,
            &["block_rewards"],
            "SELECT count(*) FROM block_rewards",
        )
        .await;
        let due = earned
            .iter()
            .filter(|(m, _)| *m != thief)
            .filter(|(m, e)| **e - paid.get(*m).copied().unwrap_or(0) >= threshold as i64)
            .count();
        // The payer has judged the thief's block: the last wave's split can land after the
        // round that paid everyone else, and the next round is the one that refuses it.
        let judged = app.log().contains("is not paid from");
        if blocks == BLOCKS as i64 + 1 && due == 0 && open == 0 && !paid.is_empty() && judged {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "payments did not settle: {blocks} blocks split, {due} miners due, {open} open, \
             the thief's block judged: {judged}; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What each miner earned and was paid (confirmed), checking no one was paid more than it
/// earned and the thief nothing.
async fn earned_and_paid(
    app: &App,
    tables: &std::path::Path,
    thief: &str,
    threshold: u64,
) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let earned = per_miner(tables, &["payouts"], "SELECT miner, amount FROM payouts").await;
    let paid = per_miner(
        tables,
        &["payments"],
        "SELECT miner, amount FROM payments WHERE status = 'confirmed'",
    )
    .await;
    for (miner, amount) in &paid {
        assert!(
            *amount <= earned[miner],
            "{miner} was paid {amount}, more than the {} it earned",
            earned[miner]
        );
    }
    let log = app.log();
    assert!(log.contains("payment recorded"), "{log}");
    // The thief earned the unknown block's payouts on the bus and was paid nothing.
    assert!(
        earned.get(thief).copied().unwrap_or(0) >= threshold as i64,
        "the thief's block was split: {earned:?}"
    );
    assert_eq!(paid.get(thief), None, "the thief was paid");
    assert!(
        log.contains("is not paid from") && log.contains("the node does not know this block"),
        "{log}"
    );
    (earned, paid)
}

/// The transactions the `payments` table records as confirmed.
async fn recorded_txs(tables: &std::path::Path) -> BTreeSet<String> {
    let recorded = query(
        tables,
        &["payments"],
        "SELECT DISTINCT tx_hash FROM payments WHERE status = 'confirmed'",
    )
    .await;
    recorded
        .iter()
        .flat_map(|b| strings(b, "tx_hash"))
        .collect()
}

/// Σ amount per miner of `sql`'s (miner, amount) rows.
async fn per_miner(tables: &std::path::Path, names: &[&str], sql: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for b in query(tables, names, sql).await {
        for (m, a) in strings(&b, "miner").into_iter().zip(ints(&b, "amount")) {
            *out.entry(m).or_default() += a;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_payments_pays_every_miner_once() {
    let monerod = Monerod::start();
    let mut pool_wallet = WalletRpc::start(&monerod);
    let recipient = WalletRpc::start(&monerod);
    // Coinbase outputs unlock after 60 blocks; ring size 16 wants many outputs around.
    monerod.generate(160, &pool_wallet.address);
    let created = recipient.call(
        "create_address",
        json!({"account_index": 0, "count": MINERS + 1}),
    );
    let mut miners: Vec<String> = created["addresses"]
        .as_array()
        .expect("subaddresses")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let index: BTreeMap<u64, String> = created["address_indices"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&miners)
        .map(|(i, m)| (i.as_u64().unwrap(), m.clone()))
        .collect();
    let thief = miners.pop().expect("the thief's subaddress");
    // Blocks 1..=BLOCKS of the chain: their coinbase is the pool wallet's.
    let real: Vec<(u64, String)> = (1..=BLOCKS as u64)
        .map(|height| {
            let header = monerod.call("get_block_header_by_height", json!({"height": height}));
            let hash = header["block_header"]["hash"].as_str().expect("a hash");
            (height, hash.to_string())
        })
        .collect();

    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    let (publisher, _js) = publisher(&nats).await;
    let config = format!(
        "[pipelines.pplns]\nsnapshot_every = \"1s\"\nfee_bps = 100\n\
         [payments]\nwallet_rpc = \"{}\"\nnode = \"{}\"\ninterval = \"1s\"\nthreshold = {THRESHOLD}\n\
         confirmations = 2\nmax_destinations = 4\n",
        pool_wallet.url(),
        monerod.rpc_url()
    );
    let mut app = App::start(&nats.url(), dir.path(), "pipelines,payments", &config);

    // Blocks keep coming (payments confirm, change unlocks) while the waves go out and the
    // process is killed.
    let miner_of_blocks = recipient.address.clone();
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let waves = events(&miners, &real, &thief, base, REWARD);
    publish_with_kills(&publisher, &mut app, waves, async |w| {
        if w % 4 == 3 {
            pool_wallet.restart();
            eprintln!("wave {w}: wallet RPC restarted");
        }
        monerod.generate(1, &miner_of_blocks);
    })
    .await;
    settle(&app, &tables, &thief, THRESHOLD, async || {
        monerod.generate(1, &miner_of_blocks);
    })
    .await;
    let (_, paid) = earned_and_paid(&app, &tables, &thief, THRESHOLD).await;
    // What the recipient's wallet received, per subaddress, against the table.
    recipient.call("refresh", json!({}));
    let transfers = recipient.call("get_transfers", json!({"in": true, "account_index": 0}));
    let mut received: BTreeMap<String, i64> = BTreeMap::new();
    let mut txs = BTreeSet::new();
    for t in transfers["in"].as_array().cloned().unwrap_or_default() {
        let minor = t["subaddr_index"]["minor"].as_u64().unwrap();
        let Some(miner) = index.get(&minor) else {
            continue; // the primary address: coinbase of the blocks mined above
        };
        *received.entry(miner.clone()).or_default() += t["amount"].as_i64().unwrap();
        txs.insert(t["txid"].as_str().unwrap().to_string());
    }
    assert_eq!(
        received, paid,
        "the wallet received exactly what was recorded"
    );
    assert_eq!(
        txs,
        recorded_txs(&tables).await,
        "every payment the wallet saw is in the table"
    );
    assert!(
        !received.contains_key(&thief),
        "the thief's wallet received money"
    );
}

/// 6 SYL per block; at 6 miners each earns about 1 SYL a block.
const SYL_REWARD: u64 = 600_000_000;
/// 1.5 SYL: a miner is paid about every second block.
const SYL_THRESHOLD: u64 = 150_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_syl_payments_pays_every_miner_once() {
    use adit_stratum::opensy::simnode::{SimNode, unowned_address};
    use adit_stratum::opensy::{Network, script_for};
    let stop = tokio_util::sync::CancellationToken::new();
    let sim = SimNode::on_loopback(stop.clone()).await.unwrap();
    let node = sim.url();
    // Blocks 1..=BLOCKS pay the node's wallet and are 100 deep (the payer's default for SYL).
    adit_testkit::jsonrpc::result(
        &node,
        "generatetoaddress",
        json!([BLOCKS + 100, sim.wallet_address()]),
    )
    .await;
    let mut miners: Vec<String> = (0..=MINERS as u8)
        .map(|i| {
            let program =
                bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V0, &[0x40 + i; 20]).unwrap();
            Network::Regtest.segwit_address(&program)
        })
        .collect();
    let thief = miners.pop().expect("the thief's address");
    let mut real = Vec::new();
    for height in 1..=BLOCKS as u64 {
        let hash = adit_testkit::jsonrpc::result(&node, "getblockhash", json!([height])).await;
        real.push((height, hash.as_str().unwrap().to_string()));
    }

    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    let (publisher, _js) = publisher(&nats).await;
    let config = format!(
        "[pipelines.pplns]\nsnapshot_every = \"1s\"\nfee_bps = 100\n\
         [payments]\nchain = \"opensy\"\nnode = \"{node}\"\nwallet = \"adit\"\ninterval = \"1s\"\n\
         threshold = {SYL_THRESHOLD}\nconfirmations = 2\nmax_destinations = 4\nfee_rate = 10\n"
    );
    let mut app = App::start(&nats.url(), dir.path(), "pipelines,payments", &config);
    let start = sim.height();
    let outsider = unowned_address();
    let mine = async || {
        adit_testkit::jsonrpc::result(&node, "generatetoaddress", json!([1, outsider])).await;
    };
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let waves = events(&miners, &real, &thief, base, SYL_REWARD);
    publish_with_kills(&publisher, &mut app, waves, async |_| mine().await).await;
    settle(&app, &tables, &thief, SYL_THRESHOLD, mine).await;
    let (_, paid) = earned_and_paid(&app, &tables, &thief, SYL_THRESHOLD).await;

    // What each miner's script received on the chain since the payer started, against the
    // table, read from the blocks' bytes.
    let scripts: BTreeMap<bitcoin::ScriptBuf, String> = miners
        .iter()
        .chain([&thief])
        .map(|m| (script_for(m, Network::Regtest).unwrap(), m.clone()))
        .collect();
    let mut received: BTreeMap<String, i64> = BTreeMap::new();
    let mut txs = BTreeSet::new();
    for height in start + 1..=sim.height() {
        let hash = adit_testkit::jsonrpc::result(&node, "getblockhash", json!([height])).await;
        let hex = adit_testkit::jsonrpc::result(&node, "getblock", json!([hash, 0])).await;
        let block: bitcoin::Block =
            bitcoin::consensus::encode::deserialize(&hex::decode(hex.as_str().unwrap()).unwrap())
                .unwrap();
        for tx in &block.txdata[1..] {
            txs.insert(tx.compute_txid().to_string());
            for out in &tx.output {
                if let Some(miner) = scripts.get(&out.script_pubkey) {
                    *received.entry(miner.clone()).or_default() += out.value.to_sat() as i64;
                }
            }
        }
    }
    assert_eq!(received, paid, "the chain paid exactly what was recorded");
    assert_eq!(
        txs,
        recorded_txs(&tables).await,
        "every payment on the chain is in the table, once"
    );
    stop.cancel();
}
