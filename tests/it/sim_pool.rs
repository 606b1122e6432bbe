//! The simulated pool through the real binary (`adit run --roles pipelines,query,simulate`
//! with `[simulate] pool_miners`): its shares and blocks land as a real pool's do, every block
//! is split by the PPLNS pipeline into a `block_rewards` row whose parts add up (reward = fee +
//! paid + remainder, paid = Σ its payouts), windows fill, and the per-miner join of payouts and
//! shares that `scripts/bench_sql.py --landed` times answers each miner's own work.

use crate::common;

use std::time::Duration;

use adit_ingest::simulate::pool::{BASE_DIFFICULTY, miner_name};
use common::*;
use serde_json::Value;

const MINERS: usize = 4;

/// The bench's query (`LANDED_QUERIES` in scripts/bench_sql.py).
const PER_MINER: &str = "SELECT p.miner, count(DISTINCT p.hash) AS blocks, count(*) AS shares, \
     sum(s.difficulty) AS work FROM payouts p JOIN shares s ON s.pool = p.pool \
     AND s.height = p.height AND s.miner = p.miner \
     GROUP BY p.miner ORDER BY work DESC, p.miner LIMIT 10";

fn int(row: &Value, name: &str) -> i64 {
    row[name]
        .as_i64()
        .unwrap_or_else(|| panic!("{name} in {row}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_pools_blocks_are_split_and_its_miners_paid_for_their_own_shares() {
    let (_nats, _dir, app) = start_app(
        "pipelines,query,simulate",
        &format!(
            "[simulate]\nsites = 1\nmachines_per_site = 1\nsensors_per_site = 1\n\
             interval = \"200ms\"\ngrid_every = 0\npool_miners = {MINERS}\nblock_every = 6\n"
        ),
    )
    .await;
    // Each block's payouts and its reward row land in one commit per table, not together:
    // wait until the reward rows seen all have their payouts.
    let split = "SELECT r.hash, r.reward, r.fee, r.paid, r.remainder, \
         coalesce(sum(p.amount), 0) AS summed, count(p.miner) AS paid_miners \
         FROM block_rewards r LEFT JOIN payouts p ON p.hash = r.hash \
         GROUP BY r.hash, r.reward, r.fee, r.paid, r.remainder ORDER BY r.hash";
    app.wait_rows(
        Duration::from_secs(90),
        "six blocks split, each with its payouts landed",
        split,
        |rows| rows.len() >= 6 && rows.iter().all(|r| int(r, "summed") == int(r, "paid")),
    )
    .await;
    let rows = app.rows(split).await;
    let log = app.log();
    for r in rows.iter().filter(|r| int(r, "summed") == int(r, "paid")) {
        assert_eq!(
            int(r, "reward"),
            int(r, "fee") + int(r, "paid") + int(r, "remainder"),
            "{r}"
        );
        assert!(int(r, "paid") > 0 && int(r, "paid_miners") >= 1, "{r}");
    }
    // From the third block on a window (twice the network difficulty: two blocks of shares)
    // is full, and the pool keeps nothing but its fee.
    assert!(
        rows.iter()
            .any(|r| int(r, "remainder") == 0 && int(r, "paid_miners") == MINERS as i64),
        "no block paid a full window to every miner: {rows:?}\n{log}"
    );
    let shares = app
        .rows("SELECT count(*) AS n, count(DISTINCT nonce) AS nonces, min(accepted) AS all_accepted FROM shares")
        .await;
    assert_eq!(shares[0]["n"], shares[0]["nonces"], "{shares:?}");
    assert_eq!(shares[0]["all_accepted"], true, "{shares:?}");

    // Each miner's work in the rounds it was paid for is its own shares at its own difficulty.
    let per_miner = app.rows(PER_MINER).await;
    assert_eq!(per_miner.len(), MINERS, "{per_miner:?}");
    for row in &per_miner {
        let miner = row["miner"].as_str().expect("a miner");
        let i = (0..MINERS)
            .find(|&i| miner_name(i) == miner)
            .unwrap_or_else(|| panic!("{miner} is not a simulated miner"));
        let difficulty = BASE_DIFFICULTY as i64 * (1 + i as i64 % 4);
        assert!(int(row, "blocks") >= 1 && int(row, "shares") >= 1, "{row}");
        assert_eq!(int(row, "work"), int(row, "shares") * difficulty, "{row}");
    }
}
