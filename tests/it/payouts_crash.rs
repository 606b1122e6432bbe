//! Payouts exactly once under SIGKILL (issue 8): 60 000 shares from 50 miners and 30 blocks on
//! the MINING stream, the pipelines process killed at random moments and restarted; afterwards
//! every block is split once, and each miner's payout equals a split computed here, from the
//! landed `shares` and `blocks` tables, with the pure split function. The network difficulty
//! triples every 5 blocks (150 000 to 36 450 000), so from the 16th block on a block's window
//! reaches back past the block before it: the shares PPLNS keeps between blocks must cover a
//! window that grows (issue 23), through every restart.
//!
//! The pool changes scheme by height (issue 59): PPLNS to 104, PPS from 105, FPPS from 110,
//! SOLO from 115 and PPLNS again from 125. Each share of the PPS and FPPS heights is credited
//! once, by the formula computed here alone from the landed share; their blocks pay nothing
//! (the pool keeps them); the SOLO blocks pay their finder the reward less the fee; and the
//! PPLNS blocks after the switch back are split over windows that reach across the SOLO
//! shares and skip the ones already paid per share.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use adit_bus::publish::Outgoing;
use adit_pipelines::pool::split::{SplitRules, WindowShare, split};
use adit_schemas::{AnyEvent, Block, BlockStatus, Share};
use common::*;
use rand::{Rng, SeedableRng};

const SHARES: usize = 60_000;
const BLOCK_EVERY: usize = 2_000;
const MINERS: usize = 50;
/// Shares and blocks at heights from this one up to [`FPPS_FROM`] are PPS.
const PPS_FROM: i64 = 105;
/// From this height up to [`SOLO_FROM`], FPPS.
const FPPS_FROM: i64 = 110;
/// Blocks at heights from this one up to [`PPLNS_AGAIN`] are SOLO.
const SOLO_FROM: i64 = 115;
/// The height from which blocks are PPLNS again.
const PPLNS_AGAIN: i64 = 125;

/// The network difficulty of share `i`'s job: it triples every 5 blocks.
fn network_difficulty(i: usize) -> u64 {
    150_000 * 3u64.pow((i / BLOCK_EVERY / 5) as u32)
}

/// The reward of share `i`'s template.
fn reward(i: usize) -> u64 {
    600_000_000_000 + i as u64
}

/// Whether shares and blocks at `height` are paid per share.
fn per_share(height: i64) -> bool {
    (PPS_FROM..SOLO_FROM).contains(&height)
}

fn events(base: chrono::DateTime<chrono::Utc>) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for i in 0..SHARES {
        // Every 17th share is rejected, except a block's finding share.
        let accepted = i % 17 != 0 || i % BLOCK_EVERY == BLOCK_EVERY - 1;
        let share = Share {
            pool: "p1".into(),
            miner: format!("miner-{:02}", (i * 7) % MINERS),
            worker: "rig".into(),
            job_id: format!("j{}", i / 100),
            nonce: format!("{i:08x}"),
            difficulty: 1_000 + (i as u64 * 37) % 5_000,
            height: 100 + (i / BLOCK_EVERY) as u64,
            accepted,
            reason: (!accepted).then(|| "low_difficulty".into()),
            ts: base + chrono::Duration::milliseconds(i as i64),
            network_difficulty: accepted.then_some(network_difficulty(i)),
            reward: accepted.then_some(reward(i)),
            // The template's fees vary with its transactions.
            subsidy: accepted.then_some(reward(i) - (i as u64 % 1_000) * 1_000),
            team: None,
        };
        out.push(Outgoing::event(&AnyEvent::Share(share.clone())));
        if i % BLOCK_EVERY == BLOCK_EVERY - 1 {
            out.push(Outgoing::event(&AnyEvent::Block(Block {
                pool: "p1".into(),
                height: share.height,
                hash: format!("{i:064x}"),
                miner: share.miner,
                worker: share.worker,
                job_id: share.job_id,
                nonce: share.nonce,
                reward: reward(i),
                network_difficulty: network_difficulty(i),
                status: BlockStatus::Submitted,
                error: None,
                ts: share.ts,
            })));
        }
    }
    out
}

/// Every landed payout by (block hash, miner); a payout landed twice fails.
async fn landed_payouts(tables: &std::path::Path) -> BTreeMap<(String, String), i64> {
    let landed = query(
        tables,
        &["payouts"],
        "SELECT hash, miner, amount FROM payouts",
    )
    .await;
    let mut got = BTreeMap::new();
    for b in &landed {
        let (hash, miner, amount) = (strings(b, "hash"), strings(b, "miner"), ints(b, "amount"));
        for i in 0..b.num_rows() {
            let key = (hash[i].clone(), miner[i].clone());
            assert!(
                got.insert(key.clone(), amount[i]).is_none(),
                "{key:?} paid twice"
            );
        }
    }
    got
}

/// (block hash, miner) → amount, split here from the landed tables, and per block hash the
/// window it was split over (first and last share sequence, share count).
async fn expected(
    tables: &std::path::Path,
) -> (
    BTreeMap<(String, String), i64>,
    BTreeMap<String, (Option<u64>, Option<u64>, u64)>,
) {
    let shares = query(
        tables,
        &["shares"],
        "SELECT seq, miner, difficulty, job_id, nonce, height FROM shares WHERE accepted ORDER BY seq",
    )
    .await;
    let mut walk: Vec<(u64, String, u64)> = Vec::new();
    let mut finder: HashMap<String, u64> = HashMap::new();
    for b in &shares {
        let (seq, miner, diff) = (ints(b, "seq"), strings(b, "miner"), ints(b, "difficulty"));
        let (job, nonce, height) = (strings(b, "job_id"), strings(b, "nonce"), ints(b, "height"));
        for i in 0..b.num_rows() {
            // A share paid per share counts in no block's window.
            if !per_share(height[i]) {
                walk.push((seq[i] as u64, miner[i].clone(), diff[i] as u64));
            }
            finder.insert(format!("{}:{}", job[i], nonce[i]), seq[i] as u64);
        }
    }
    let names: Vec<String> = (0..MINERS).map(|m| format!("miner-{m:02}")).collect();
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let blocks = query(
        tables,
        &["blocks"],
        "SELECT hash, height, miner, job_id, nonce, reward, network_difficulty FROM blocks ORDER BY seq",
    )
    .await;
    let rules = SplitRules {
        fee_bps: 100,
        ..SplitRules::default()
    };
    let mut out = BTreeMap::new();
    let mut windows = BTreeMap::new();
    for b in &blocks {
        let (hash, job, nonce) = (
            strings(b, "hash"),
            strings(b, "job_id"),
            strings(b, "nonce"),
        );
        let (reward, nd) = (ints(b, "reward"), ints(b, "network_difficulty"));
        let (height, miner) = (ints(b, "height"), strings(b, "miner"));
        for i in 0..b.num_rows() {
            let end = finder[&format!("{}:{}", job[i], nonce[i])];
            if per_share(height[i]) {
                // The pool paid these shares as they came: its blocks pay no one.
                windows.insert(hash[i].clone(), (None, None, 0));
                continue;
            }
            if (SOLO_FROM..PPLNS_AGAIN).contains(&height[i]) {
                // SOLO, by its rule alone: the finder takes the reward less the 1 % fee.
                let fee = reward[i] / 100;
                out.insert((hash[i].clone(), miner[i].clone()), reward[i] - fee);
                windows.insert(hash[i].clone(), (Some(end), Some(end), 1));
                continue;
            }
            let window = walk.iter().rev().filter(|(seq, _, _)| *seq <= end).map(
                |(seq, miner, difficulty)| WindowShare {
                    seq: *seq,
                    miner: index[miner.as_str()],
                    difficulty: *difficulty,
                },
            );
            let s = split(reward[i] as u64, nd[i] as u64, &rules, window, &names).unwrap();
            windows.insert(hash[i].clone(), (s.first_seq, s.last_seq, s.shares));
            for p in s.payouts {
                out.insert((hash[i].clone(), p.miner), p.amount as i64);
            }
        }
    }
    (out, windows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_payouts_splits_every_block_once_and_exactly() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (publisher, _js) = publisher(&nats).await;
    let msgs = events(chrono::Utc::now() - chrono::Duration::hours(1));
    let blocks = (SHARES / BLOCK_EVERY) as i64;
    let producer = tokio::spawn(async move {
        for chunk in msgs.chunks(5_000) {
            publisher.publish_all(chunk.to_vec()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    let config = format!(
        "[pipelines.pplns]\nsnapshot_every = \"1s\"\n\
         [[pipelines.pplns.pools.p1.schemes]]\nfrom = {PPS_FROM}\nscheme = \"pps\"\n\
         [[pipelines.pplns.pools.p1.schemes]]\nfrom = {FPPS_FROM}\nscheme = \"fpps\"\n\
         [[pipelines.pplns.pools.p1.schemes]]\nfrom = {SOLO_FROM}\nscheme = \"solo\"\n\
         [[pipelines.pplns.pools.p1.schemes]]\nfrom = {PPLNS_AGAIN}\nscheme = \"pplns\"\n"
    );
    let mut app = App::start(&nats.url(), dir.path(), "pipelines", &config);
    let tables = dir.path().join("tables");
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    for kill in 1..=8 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(800..2500))).await;
        app.kill();
        let split = scalar(
            &tables,
            &["block_rewards"],
            "SELECT count(*) FROM block_rewards",
        )
        .await;
        eprintln!("kill {kill}: {split} blocks split so far");
        app.restart();
    }
    producer.await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    // The landing of every share is slower than the splits (which read the stream, not the
    // table): wait for both before comparing the splits with the landed shares.
    while scalar(
        &tables,
        &["block_rewards"],
        "SELECT count(*) FROM block_rewards",
    )
    .await
        < blocks
        || scalar(&tables, &["shares"], "SELECT count(*) FROM shares").await < SHARES as i64
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not every block was split or not every share landed; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scalar(
            &tables,
            &["block_rewards"],
            "SELECT count(DISTINCT hash) FROM block_rewards"
        )
        .await,
        blocks
    );
    assert_eq!(
        scalar(
            &tables,
            &["block_rewards"],
            "SELECT count(*) FROM block_rewards"
        )
        .await,
        blocks,
        "a block split twice"
    );
    // The shares the expected split reads landed exactly once.
    assert_eq!(
        scalar(&tables, &["shares"], "SELECT count(*) FROM shares").await,
        SHARES as i64,
        "every share landed once"
    );
    assert_eq!(
        scalar(
            &tables,
            &["shares"],
            "SELECT count(DISTINCT seq) FROM shares"
        )
        .await,
        SHARES as i64
    );
    // A split's payouts are committed to their own table beside `block_rewards` (no
    // transaction spans two Delta tables): wait until they are there, or until what is there
    // stays different from the expected split.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (got, want, windows) = loop {
        let got = landed_payouts(&tables).await;
        let (want, windows) = expected(&tables).await;
        if got == want || std::time::Instant::now() > deadline {
            break (got, want, windows);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if got != want {
        let rewards = query(
            &tables,
            &["block_rewards"],
            "SELECT hash, share_seq, first_seq, shares FROM block_rewards ORDER BY share_seq",
        )
        .await;
        let mut report = String::new();
        for b in &rewards {
            let (hash, last, shares) =
                (strings(b, "hash"), ints(b, "share_seq"), ints(b, "shares"));
            let first = ints(b, "first_seq");
            for i in 0..b.num_rows() {
                // A payout that differs, is missing or is extra.
                let differs = got
                    .iter()
                    .filter(|((h, _), _)| *h == hash[i])
                    .any(|(k, v)| want.get(k) != Some(v))
                    || want
                        .iter()
                        .filter(|((h, _), _)| *h == hash[i])
                        .any(|(k, v)| got.get(k) != Some(v));
                if differs {
                    report.push_str(&format!(
                        "block {}: pipeline window {}..={} ({} shares), expected {:?}\n",
                        &hash[i][56..],
                        first[i],
                        last[i],
                        shares[i],
                        windows.get(&hash[i])
                    ));
                }
            }
        }
        panic!(
            "payouts differ from the split of the landed shares ({} landed, {} expected):\n\
             {report}\nlog:\n{}",
            got.len(),
            want.len(),
            app.log()
        );
    }
    assert_eq!(
        scalar(
            &tables,
            &["block_rewards"],
            "SELECT count(*) FROM block_rewards WHERE fee + paid + remainder <> reward"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &tables,
            &["block_rewards"],
            "SELECT count(*) FROM block_rewards WHERE scheme = 'solo' AND shares = 1"
        )
        .await,
        PPLNS_AGAIN - SOLO_FROM,
        "the blocks from the switch to SOLO to the switch back are SOLO"
    );
    assert_eq!(
        scalar(
            &tables,
            &["block_rewards"],
            "SELECT count(*) FROM block_rewards
             WHERE scheme IN ('pps', 'fpps') AND paid = 0 AND remainder = reward"
        )
        .await,
        SOLO_FROM - PPS_FROM,
        "the pool keeps the blocks it paid per share"
    );
    credits_are_the_formula(&tables, &app).await;
}

/// Every accepted share of the PPS and FPPS heights is credited once, exactly
/// ⌊d × base × (10 000 − fee) / (nd × 10 000)⌋ on its own landed figures (base: the subsidy
/// for PPS, the whole reward for FPPS), and no other share is credited.
async fn credits_are_the_formula(tables: &std::path::Path, app: &App) {
    let sql = format!(
        "SELECT seq, miner, difficulty, height, network_difficulty, reward, subsidy FROM shares
         WHERE accepted AND height >= {PPS_FROM} AND height < {SOLO_FROM}"
    );
    let mut want: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    for b in &query(tables, &["shares"], &sql).await {
        let (seq, miner, height) = (ints(b, "seq"), strings(b, "miner"), ints(b, "height"));
        let (d, nd) = (ints(b, "difficulty"), ints(b, "network_difficulty"));
        let (reward, subsidy) = (ints(b, "reward"), ints(b, "subsidy"));
        for i in 0..b.num_rows() {
            let base = if height[i] < FPPS_FROM {
                subsidy[i]
            } else {
                reward[i]
            };
            let amount = d[i] as u128 * base as u128 * 9_900 / (nd[i] as u128 * 10_000);
            want.insert(seq[i], (miner[i].clone(), amount as i64));
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while scalar(
        tables,
        &["share_credits"],
        "SELECT count(*) FROM share_credits",
    )
    .await
        < want.len() as i64
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not every PPS or FPPS share was credited; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut got: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    let landed = query(
        tables,
        &["share_credits"],
        "SELECT share_seq, miner, amount FROM share_credits",
    )
    .await;
    for b in &landed {
        let (seq, miner, amount) = (ints(b, "share_seq"), strings(b, "miner"), ints(b, "amount"));
        for i in 0..b.num_rows() {
            assert!(
                got.insert(seq[i], (miner[i].clone(), amount[i])).is_none(),
                "share {} credited twice",
                seq[i]
            );
        }
    }
    assert!(want.len() > 9_000, "{} shares of PPS and FPPS", want.len());
    assert_eq!(got, want, "the credits are the formula's, once per share");
}
