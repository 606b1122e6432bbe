//! A simulated pool beside the farm: `pool_miners` miners, each submitting one accepted share
//! per tick, and a block found by every `block_every`-th share, published on the MINING stream
//! as the Stratum server publishes a real pool's (the share, then the block naming it by job
//! and nonce). The pool pipelines land them as they land a real pool's: shares, blocks, and
//! each block split into `block_rewards` and per-miner `payouts`, so a farm's tables can grow
//! with a pool's beside them (`scripts/bench_sql.py --landed` joins shares and payouts per
//! miner) without hashing a share.
//!
//! Miner `i` submits at difficulty [`BASE_DIFFICULTY`] × (1 + i mod 4), and the network
//! difficulty is what `block_every` shares of the mean difficulty make, so a PPLNS window
//! (twice the network difficulty by default) spans about two blocks of shares.

use adit_schemas::{AnyEvent, Block, BlockStatus, Share};
use chrono::{DateTime, Utc};
use rand::Rng;

/// The simulated pool's id (the `pool` column of its shares, blocks and payouts).
pub const POOL: &str = "sim";

/// The lowest share difficulty a simulated miner submits at.
pub const BASE_DIFFICULTY: u64 = 10_000;

/// The height of the first block the simulated pool mines on.
const FIRST_HEIGHT: u64 = 3_000_000;

/// Each template's subsidy, atomic units (0.6 XMR); its fees vary with the height.
const SUBSIDY: u64 = 600_000_000_000;

/// The simulated pool's state: its miners and how far it has mined.
#[derive(Debug, Clone)]
pub(crate) struct SimPool {
    /// Each miner's login and share difficulty.
    miners: Vec<(String, u64)>,
    /// Shares per block.
    block_every: u64,
    /// The network difficulty: `block_every` shares of the miners' mean difficulty.
    network_difficulty: u64,
    /// Shares submitted so far.
    submitted: u64,
    /// The height mined on.
    height: u64,
}

/// The login of simulated pool miner `i`.
pub fn miner_name(i: usize) -> String {
    format!("sim-miner-{:05}", i + 1)
}

impl SimPool {
    /// A pool of `miners` miners finding a block every `block_every` shares (at least 1).
    pub(crate) fn new(miners: usize, block_every: u64) -> Self {
        let miners: Vec<(String, u64)> = (0..miners)
            .map(|i| (miner_name(i), BASE_DIFFICULTY * (1 + i as u64 % 4)))
            .collect();
        let block_every = block_every.max(1);
        let mean = miners.iter().map(|(_, d)| d).sum::<u64>() / miners.len().max(1) as u64;
        Self {
            miners,
            block_every,
            network_difficulty: mean.saturating_mul(block_every),
            submitted: 0,
            height: FIRST_HEIGHT,
        }
    }

    /// The template's whole reward at the current height: the subsidy and its fees.
    fn reward(&self) -> u64 {
        SUBSIDY + (self.height % 1_000) * 1_000_000
    }

    /// Every miner's share at `now` (tick `tick`), each followed by the block it finds, if
    /// it is a `block_every`-th.
    pub(crate) fn tick(
        &mut self,
        now: DateTime<Utc>,
        tick: u64,
        rng: &mut impl Rng,
        out: &mut Vec<AnyEvent>,
    ) {
        let network_difficulty = self.network_difficulty;
        for (miner, difficulty) in &self.miners {
            self.submitted += 1;
            let reward = self.reward();
            let share = Share {
                pool: POOL.into(),
                miner: miner.clone(),
                worker: "rig".into(),
                job_id: format!("{}.{tick}", self.height),
                nonce: format!("{:08x}", self.submitted as u32),
                difficulty: *difficulty,
                height: self.height,
                accepted: true,
                reason: None,
                ts: now,
                network_difficulty: Some(network_difficulty),
                reward: Some(reward),
                subsidy: Some(SUBSIDY),
                team: None,
            };
            let found = self.submitted.is_multiple_of(self.block_every);
            let block = found.then(|| Block {
                pool: POOL.into(),
                height: self.height,
                hash: (0..4)
                    .map(|_| format!("{:016x}", rng.random::<u64>()))
                    .collect(),
                miner: share.miner.clone(),
                worker: share.worker.clone(),
                job_id: share.job_id.clone(),
                nonce: share.nonce.clone(),
                reward,
                network_difficulty,
                status: BlockStatus::Submitted,
                error: None,
                ts: now,
            });
            out.push(AnyEvent::Share(share));
            if let Some(block) = block {
                out.push(AnyEvent::Block(block));
                self.height += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::{Event, ValidationPolicy};
    use rand::SeedableRng;
    use std::collections::HashSet;

    /// Every share is valid, accepted and unique; every block follows, at once, the share it
    /// names (same job, nonce, miner, height), is the `block_every`-th, and moves the height on.
    #[test]
    fn each_block_follows_the_share_it_names_and_every_share_is_its_own() {
        let (miners, block_every) = (7, 5);
        let mut pool = SimPool::new(miners, block_every);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let now = Utc::now();
        let mut out = Vec::new();
        for tick in 0..20 {
            pool.tick(
                now + chrono::Duration::seconds(tick as i64),
                tick,
                &mut rng,
                &mut out,
            );
        }
        let policy = ValidationPolicy::default();
        let (mut shares, mut blocks, mut ids) = (0u64, 0u64, HashSet::new());
        let mut height = FIRST_HEIGHT;
        for (i, event) in out.iter().enumerate() {
            match event {
                AnyEvent::Share(s) => {
                    shares += 1;
                    s.validate(&policy, now + chrono::Duration::seconds(20))
                        .expect("a valid share");
                    assert!(s.accepted);
                    assert_eq!(s.height, height);
                    assert!(ids.insert(s.dedupe_id()), "share {i} repeats an id");
                }
                AnyEvent::Block(b) => {
                    blocks += 1;
                    b.validate(&policy, now + chrono::Duration::seconds(20))
                        .expect("a valid block");
                    let AnyEvent::Share(s) = &out[i - 1] else {
                        panic!("block {i} does not follow a share");
                    };
                    assert_eq!(
                        (&b.job_id, &b.nonce, &b.miner, b.height),
                        (&s.job_id, &s.nonce, &s.miner, s.height)
                    );
                    assert_eq!(shares % block_every, 0, "block {i} after {shares} shares");
                    assert_eq!(Some(b.network_difficulty), s.network_difficulty);
                    assert_eq!(Some(b.reward), s.reward);
                    height += 1;
                }
                other => panic!("the pool published {other:?}"),
            }
        }
        assert_eq!(shares, 20 * miners as u64);
        assert_eq!(blocks, shares / block_every);
        // The network difficulty is block_every shares of the mean difficulty.
        let mean = (0..miners as u64)
            .map(|i| BASE_DIFFICULTY * (1 + i % 4))
            .sum::<u64>()
            / miners as u64;
        assert_eq!(pool.network_difficulty, mean * block_every);
    }
}
