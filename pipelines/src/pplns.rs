//! PPLNS payouts: each block the node accepted is split over the pool's last N shares
//! ([`crate::split`]), written as one `block_rewards` row and one `payouts` row per miner, and
//! published on `results.payout.<pool>`, beside each block's later `confirmed` or `orphaned`
//! status (which makes its payouts final or void).
//!
//! The pipeline reads the MINING stream itself (shares and blocks of a pool, in stream order),
//! so what a block is split over is a function of the stream alone: a replay after a crash
//! splits it the same way, and a block is never split before its shares are known. Per pool it
//! keeps the accepted shares the next window can need: the newest shares whose difficulty adds
//! up to twice the window of the last block seen (a difficulty rise between two blocks stays
//! covered), and at most `max_window_shares`. A block names the share that found it (job id
//! and nonce); its window ends there, not at the block event, which follows the node's round
//! trip. A block whose share is not (yet) in the stream waits, counted in
//! `adit_pplns_blocks_waiting` and logged, and is never split over a guess.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use adit_schemas::names::{TABLE_BLOCK_REWARDS, TABLE_PAYOUTS, payout_result_subject};
use adit_schemas::results::{BlockReward, Payout};
use adit_schemas::{AnyEvent, Block, BlockStatus, EventKind, Share, names, to_batch};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::pipeline::{
    OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput, StreamInput,
};
use crate::runtime::InvalidConfig;
use crate::split::{BPS, Factor, Split, SplitError, SplitRules, Unfilled, WindowShare, split};
use crate::timer::Timer;

/// How many recent shares are remembered by job id and nonce, to find the one that found a
/// block (whose event follows it within seconds).
const RECENT_SHARES: usize = 200_000;

/// The PPLNS rules of one pool, each falling back to the defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRules {
    /// W = factor × network difficulty.
    pub factor: Option<Factor>,
    /// The pool's fee, basis points.
    pub fee_bps: Option<u64>,
    /// What an unfilled window does.
    pub unfilled: Option<Unfilled>,
}

/// PPLNS settings; from config (`[pipelines.pplns]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PplnsConfig {
    /// Window factor for pools not listed in `pools`.
    pub factor: Factor,
    /// Fee in basis points for pools not listed.
    pub fee_bps: u64,
    /// What an unfilled window does, for pools not listed.
    pub unfilled: Unfilled,
    /// Per-pool rules, by pool id.
    pub pools: BTreeMap<String, PoolRules>,
    /// Most accepted shares kept per pool.
    pub max_window_shares: usize,
    /// How often the kept shares are snapshotted (they can be large; a restart replays the
    /// stream since).
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
}

impl Default for PplnsConfig {
    fn default() -> Self {
        Self {
            factor: Factor::default(),
            fee_bps: 100,
            unfilled: Unfilled::Pool,
            pools: BTreeMap::new(),
            max_window_shares: 5_000_000,
            snapshot_every: Duration::from_secs(60),
        }
    }
}

impl PplnsConfig {
    /// The rules in force for `pool`.
    pub fn rules(&self, pool: &str) -> SplitRules {
        let own = self.pools.get(pool);
        SplitRules {
            factor: own.and_then(|r| r.factor).unwrap_or(self.factor),
            fee_bps: own.and_then(|r| r.fee_bps).unwrap_or(self.fee_bps),
            unfilled: own.and_then(|r| r.unfilled).unwrap_or(self.unfilled),
        }
    }

    /// Refuses values the split cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let fee = |key: String, bps: u64| {
            if bps >= BPS {
                Err(InvalidConfig {
                    key,
                    reason: format!("{bps} must be below 10000 (the whole reward)"),
                })
            } else {
                Ok(())
            }
        };
        fee("pipelines.pplns.fee_bps".into(), self.fee_bps)?;
        for (pool, rules) in &self.pools {
            if !names::is_token(pool) {
                return Err(InvalidConfig {
                    key: format!("pipelines.pplns.pools.{pool}"),
                    reason: "a pool id is 1-64 of A-Z a-z 0-9 _ -".into(),
                });
            }
            if let Some(bps) = rules.fee_bps {
                fee(format!("pipelines.pplns.pools.{pool}.fee_bps"), bps)?;
            }
        }
        if self.max_window_shares < 1_000 {
            return Err(InvalidConfig {
                key: "pipelines.pplns.max_window_shares".into(),
                reason: "must be at least 1000".into(),
            });
        }
        Ok(())
    }
}

/// One pool's accepted shares, oldest first, and what is known of its window.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PoolWindow {
    /// (sequence, miner index, difficulty), in sequence order.
    shares: VecDeque<(u64, u32, u64)>,
    /// Σ difficulty of `shares`.
    weight: u128,
    /// Network difficulty of the last block seen: sizes what is kept.
    last_network_difficulty: u64,
    /// Recent shares' `job_id:nonce` → sequence, oldest first.
    recent: VecDeque<(String, u64)>,
}

/// A block waiting for the share that found it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    seq: u64,
    block: Block,
}

/// What survives a restart: the kept shares per pool, the miners' names and waiting blocks.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PplnsState {
    /// Every miner seen, by index.
    miners: Vec<String>,
    /// Name → index (rebuilt from `miners` after a restart).
    #[serde(skip)]
    index: HashMap<String, u32>,
    /// Per pool.
    pools: BTreeMap<String, PoolWindow>,
    /// Blocks whose share has not been seen.
    waiting: Vec<Waiting>,
}

impl PplnsState {
    fn intern(&mut self, miner: &str) -> u32 {
        if self.index.len() != self.miners.len() {
            self.index = self
                .miners
                .iter()
                .enumerate()
                .map(|(i, m)| (m.clone(), i as u32))
                .collect();
        }
        if let Some(&i) = self.index.get(miner) {
            return i;
        }
        let i = u32::try_from(self.miners.len()).expect("fewer than 4 billion miners");
        self.miners.push(miner.to_string());
        self.index.insert(miner.to_string(), i);
        i
    }

    fn take_share(&mut self, seq: u64, share: &Share) {
        if !share.accepted {
            return;
        }
        let miner = self.intern(&share.miner);
        let pool = self.pools.entry(share.pool.clone()).or_default();
        pool.shares.push_back((seq, miner, share.difficulty));
        pool.weight += u128::from(share.difficulty);
        pool.recent
            .push_back((format!("{}:{}", share.job_id, share.nonce), seq));
        if pool.recent.len() > RECENT_SHARES {
            pool.recent.pop_front();
        }
    }
}

/// The PPLNS pipeline.
pub struct Pplns {
    config: PplnsConfig,
}

impl Pplns {
    /// The pipeline with `config`.
    pub fn new(config: PplnsConfig) -> Self {
        Self { config }
    }

    /// Splits `block` if the share that found it is known; `None` when it must wait.
    fn try_split(
        &self,
        state: &PplnsState,
        waiting: &Waiting,
    ) -> Result<Option<(u64, Split)>, SplitError> {
        let block = &waiting.block;
        let Some(pool) = state.pools.get(&block.pool) else {
            return Ok(None);
        };
        let key = format!("{}:{}", block.job_id, block.nonce);
        let Some(&(_, share_seq)) = pool.recent.iter().rev().find(|(k, _)| *k == key) else {
            return Ok(None);
        };
        let end = pool.shares.partition_point(|(seq, _, _)| *seq <= share_seq);
        let walk = pool
            .shares
            .range(..end)
            .rev()
            .map(|&(seq, miner, difficulty)| WindowShare {
                seq,
                miner,
                difficulty,
            });
        let rules = self.config.rules(&block.pool);
        let split = split(
            block.reward,
            block.network_difficulty,
            &rules,
            walk,
            &state.miners,
        )?;
        Ok(Some((share_seq, split)))
    }

    /// Forgets the shares no window can need any more.
    fn trim(&self, state: &mut PplnsState) {
        let waiting: Vec<String> = state.waiting.iter().map(|w| w.block.pool.clone()).collect();
        for (name, pool) in &mut state.pools {
            if waiting.contains(name) {
                continue; // a waiting block may still need everything kept
            }
            let (num, den) = self.config.rules(name).factor.ratio();
            let keep = (pool.last_network_difficulty > 0).then(|| {
                2 * u128::from(pool.last_network_difficulty) * u128::from(num) / u128::from(den) + 1
            });
            while let Some(&(_, _, difficulty)) = pool.shares.front() {
                let rest = pool.weight - u128::from(difficulty);
                let enough = keep.is_some_and(|k| rest >= k);
                if !enough && pool.shares.len() <= self.config.max_window_shares {
                    break;
                }
                pool.shares.pop_front();
                pool.weight = rest;
            }
        }
    }

    fn rows(&self, waiting: &Waiting, share_seq: u64, s: &Split) -> (BlockReward, Vec<Payout>) {
        let b = &waiting.block;
        let rules = self.config.rules(&b.pool);
        let as_difficulty = |w: u128| w as f64 / s.scale as f64;
        let reward = BlockReward {
            pool: b.pool.clone(),
            height: b.height as i64,
            hash: b.hash.clone(),
            block_seq: waiting.seq as i64,
            share_seq: share_seq as i64,
            finder: b.miner.clone(),
            reward: s.reward as i64,
            fee: s.fee as i64,
            paid: s.paid as i64,
            remainder: s.remainder as i64,
            factor: rules.factor.to_string(),
            fee_bps: rules.fee_bps as i64,
            network_difficulty: b.network_difficulty as i64,
            window_difficulty: as_difficulty(s.window),
            filled_difficulty: as_difficulty(s.filled),
            shares: s.shares as i64,
            first_seq: s.first_seq.map(|q| q as i64),
            miners: s.payouts.len() as i64,
            ts: b.ts,
            date: b.ts.date_naive(),
        };
        let payouts = s
            .payouts
            .iter()
            .map(|p| Payout {
                pool: b.pool.clone(),
                height: b.height as i64,
                hash: b.hash.clone(),
                miner: p.miner.clone(),
                amount: p.amount as i64,
                weight_difficulty: as_difficulty(p.weight),
                ts: b.ts,
                date: b.ts.date_naive(),
            })
            .collect();
        (reward, payouts)
    }
}

impl Pipeline for Pplns {
    type State = PplnsState;

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: "pplns".into(),
            inputs: vec![StreamInput {
                name: "mining".into(),
                stream: names::STREAM_MINING.into(),
                subject: "mining.>".into(),
                partitioned: Some("mining.*.{part}".into()),
                kinds: vec![EventKind::Share, EventKind::Block],
            }],
            outputs: vec![
                OutputTable {
                    name: TABLE_BLOCK_REWARDS.into(),
                    schema: BlockReward::schema(),
                    partitions: vec!["date".into()],
                },
                OutputTable {
                    name: TABLE_PAYOUTS.into(),
                    schema: Payout::schema(),
                    partitions: vec!["date".into()],
                },
            ],
            timers: vec![Timer::Every {
                name: "waiting".into(),
                period: Duration::from_secs(10),
            }],
            snapshot_every: self.config.snapshot_every,
        }
    }

    async fn step(&self, state: &mut PplnsState, input: StepInput) -> Result<StepOutput> {
        let mut events: Vec<(u64, &AnyEvent)> = input
            .inputs
            .iter()
            .flat_map(|d| {
                d.of(EventKind::Share)
                    .iter()
                    .chain(d.of(EventKind::Block))
                    .map(|(seq, e)| (*seq, e))
            })
            .collect();
        events.sort_by_key(|(seq, _)| *seq);
        let mut out = StepOutput::default();
        for (seq, event) in events {
            match event {
                AnyEvent::Block(block)
                    if matches!(block.status, BlockStatus::Confirmed | BlockStatus::Orphaned) =>
                {
                    // Subscribers to payouts learn when they become final or void.
                    let status =
                        serde_json::to_value(block.status).map_err(crate::Error::Encode)?;
                    out.results.push(ResultMessage::json(
                        payout_result_subject(&block.pool),
                        format!(
                            "block:{}:{}:{}",
                            block.pool,
                            block.hash,
                            status.as_str().unwrap_or("")
                        ),
                        block,
                    )?);
                }
                AnyEvent::Share(share) => state.take_share(seq, share),
                AnyEvent::Block(block) if block.status == BlockStatus::Submitted => {
                    let pool = state.pools.entry(block.pool.clone()).or_default();
                    pool.last_network_difficulty = block.network_difficulty;
                    state.waiting.push(Waiting {
                        seq,
                        block: block.clone(),
                    });
                }
                _ => {} // a refused or unreachable block earns nothing
            }
        }

        let (mut rewards, mut payouts) = (Vec::new(), Vec::new());
        let mut still = Vec::new();
        for waiting in std::mem::take(&mut state.waiting) {
            match self.try_split(state, &waiting) {
                Ok(Some((share_seq, split))) => {
                    let (reward, rows) = self.rows(&waiting, share_seq, &split);
                    tracing::info!(pool = %reward.pool, height = reward.height, paid = reward.paid, miners = reward.miners, "block split");
                    for p in &rows {
                        out.results.push(ResultMessage::json(
                            payout_result_subject(&p.pool),
                            format!("payout:{}:{}:{}", p.pool, p.hash, p.miner),
                            p,
                        )?);
                    }
                    rewards.push(reward);
                    payouts.extend(rows);
                }
                Ok(None) => {
                    tracing::warn!(pool = %waiting.block.pool, height = waiting.block.height, job_id = %waiting.block.job_id, nonce = %waiting.block.nonce, "block waits: the share that found it is not in the stream yet");
                    still.push(waiting);
                }
                Err(e) => {
                    tracing::error!(pool = %waiting.block.pool, height = waiting.block.height, error = %e, "block waits: it cannot be split");
                    still.push(waiting);
                }
            }
        }
        state.waiting = still;
        let mut by_pool: BTreeMap<&str, f64> = BTreeMap::new();
        for w in &state.waiting {
            *by_pool.entry(&w.block.pool).or_default() += 1.0;
        }
        for pool in state.pools.keys() {
            let n = by_pool.get(pool.as_str()).copied().unwrap_or(0.0);
            metrics::gauge!("adit_pplns_blocks_waiting", "pool" => pool.clone()).set(n);
        }
        self.trim(state);
        if !rewards.is_empty() {
            out.rows(
                TABLE_BLOCK_REWARDS,
                to_batch(TABLE_BLOCK_REWARDS, BlockReward::schema(), &rewards)?,
            );
            out.rows(
                TABLE_PAYOUTS,
                to_batch(TABLE_PAYOUTS, Payout::schema(), &payouts)?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_ingest::DecodedBatch;
    use arrow::array::{AsArray, Int64Array};
    use chrono::Utc;

    fn share(pool: &str, miner: &str, nonce: &str, difficulty: u64, accepted: bool) -> AnyEvent {
        AnyEvent::Share(Share {
            pool: pool.into(),
            miner: miner.into(),
            worker: "w".into(),
            job_id: "j".into(),
            nonce: nonce.into(),
            difficulty,
            height: 10,
            accepted,
            reason: (!accepted).then(|| "stale".into()),
            ts: Utc::now(),
        })
    }

    fn block(pool: &str, nonce: &str, status: BlockStatus) -> AnyEvent {
        AnyEvent::Block(Block {
            pool: pool.into(),
            height: 10,
            hash: "ab".repeat(32),
            miner: "a".into(),
            worker: "w".into(),
            job_id: "j".into(),
            nonce: nonce.into(),
            reward: 1_000_000,
            network_difficulty: 100,
            status,
            error: None,
            ts: Utc::now(),
        })
    }

    fn input(events: Vec<(u64, AnyEvent)>) -> StepInput {
        let mut rows: BTreeMap<EventKind, Vec<(u64, AnyEvent)>> = BTreeMap::new();
        for (seq, e) in events {
            rows.entry(e.kind()).or_default().push((seq, e));
        }
        StepInput {
            now: Utc::now(),
            ticks: vec![],
            inputs: vec![DecodedBatch {
                lo: 0,
                hi: 0,
                rows,
                rejected: vec![],
            }],
        }
    }

    fn pplns() -> Pplns {
        Pplns::new(PplnsConfig {
            fee_bps: 0,
            ..PplnsConfig::default()
        })
    }

    fn paid(out: &StepOutput) -> Vec<(String, i64)> {
        let Some((_, batch)) = out.tables.iter().find(|(t, _)| t == TABLE_PAYOUTS) else {
            return vec![];
        };
        let miners = batch.column_by_name("miner").unwrap().as_string::<i32>();
        let amounts = batch
            .column_by_name("amount")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        (0..batch.num_rows())
            .map(|i| (miners.value(i).to_string(), amounts.value(i)))
            .collect()
    }

    #[tokio::test]
    async fn the_window_ends_at_the_finding_share_and_ignores_the_rest() {
        let p = pplns();
        let mut state = PplnsState::default();
        // W = 200. Oldest first: b 150 (only 40 counts), rejected, other pool, a 60 (finds the
        // block), a 100, b 999 after the finder (not counted), then the block event.
        let out = p
            .step(
                &mut state,
                input(vec![
                    (1, share("p1", "b", "01", 150, true)),
                    (2, share("p1", "a", "02", 500, false)),
                    (3, share("p2", "a", "03", 500, true)),
                    (4, share("p1", "a", "04", 100, true)),
                    (5, share("p1", "a", "05", 60, true)),
                    (6, share("p1", "b", "06", 999, true)),
                    (7, block("p1", "05", BlockStatus::Submitted)),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(
            paid(&out),
            [("a".to_string(), 800_000), ("b".to_string(), 200_000)]
        );
        assert!(state.waiting.is_empty());
        assert_eq!(out.results.len(), 2);
    }

    #[tokio::test]
    async fn a_block_waits_for_its_share_and_a_refused_block_pays_nothing() {
        let p = pplns();
        let mut state = PplnsState::default();
        let out = p
            .step(
                &mut state,
                input(vec![
                    (1, share("p1", "a", "01", 300, true)),
                    (2, block("p1", "02", BlockStatus::Submitted)),
                    (3, block("p1", "01", BlockStatus::Rejected)),
                ]),
            )
            .await
            .unwrap();
        assert!(paid(&out).is_empty());
        assert_eq!(state.waiting.len(), 1);
        // The share arrives after the block (a publish retried): the block is split then,
        // over the window ending at that share.
        let out = p
            .step(
                &mut state,
                input(vec![(4, share("p1", "c", "02", 50, true))]),
            )
            .await
            .unwrap();
        assert_eq!(
            paid(&out),
            [("a".to_string(), 750_000), ("c".to_string(), 250_000)]
        );
        assert!(state.waiting.is_empty());
    }

    #[tokio::test]
    async fn state_survives_a_snapshot_and_old_shares_are_forgotten() {
        let p = pplns();
        let mut state = PplnsState::default();
        let mut events: Vec<(u64, AnyEvent)> = (1..=1_000)
            .map(|i| {
                (
                    i,
                    share("p1", &format!("m{}", i % 7), &format!("{i:04}"), 10, true),
                )
            })
            .collect();
        events.push((1_001, block("p1", "1000", BlockStatus::Submitted)));
        p.step(&mut state, input(events)).await.unwrap();
        // Twice the window (2 × 200) is kept, plus the share that crosses it.
        let kept: u128 = state.pools["p1"].weight;
        assert!((400..=410).contains(&kept), "{kept}");
        let json = serde_json::to_vec(&state).unwrap();
        let mut back: PplnsState = serde_json::from_slice(&json).unwrap();
        let out = p
            .step(
                &mut back,
                input(vec![
                    (1_002, share("p1", "new", "x1", 200, true)),
                    (1_003, block("p1", "x1", BlockStatus::Submitted)),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(paid(&out), [("new".to_string(), 1_000_000)]);
    }

    #[tokio::test]
    async fn a_blocks_confirmation_and_orphaning_reach_payout_subscribers() {
        let p = pplns();
        let mut state = PplnsState::default();
        let out = p
            .step(
                &mut state,
                input(vec![
                    (1, block("p1", "01", BlockStatus::Confirmed)),
                    (2, block("p2", "02", BlockStatus::Orphaned)),
                ]),
            )
            .await
            .unwrap();
        let subjects: Vec<(&str, &str)> = out
            .results
            .iter()
            .map(|r| (r.subject.as_str(), r.id.as_str()))
            .collect();
        let hash = "ab".repeat(32);
        assert_eq!(
            subjects,
            [
                (
                    "results.payout.p1",
                    format!("block:p1:{hash}:confirmed").as_str()
                ),
                (
                    "results.payout.p2",
                    format!("block:p2:{hash}:orphaned").as_str()
                ),
            ]
        );
        assert!(paid(&out).is_empty(), "a status change pays nothing");
    }

    #[test]
    fn config_refuses_a_whole_fee_and_names_the_key() {
        let mut c = PplnsConfig::default();
        assert!(c.validate().is_ok());
        c.pools.insert(
            "p1".into(),
            PoolRules {
                fee_bps: Some(10_000),
                ..PoolRules::default()
            },
        );
        assert_eq!(
            c.validate().unwrap_err().key,
            "pipelines.pplns.pools.p1.fee_bps"
        );
        let c = PplnsConfig {
            fee_bps: 20_000,
            ..PplnsConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "pipelines.pplns.fee_bps");
    }
}
