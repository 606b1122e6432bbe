//! PPLNS payouts: each block the node accepted is split over the pool's last N shares
//! ([`crate::pool::split`]), written as one `block_rewards` row and one `payouts` row per miner, and
//! published on `results.payout.<pool>`, beside each block's later `confirmed` or `orphaned`
//! status (which makes its payouts final or void).
//!
//! The pipeline reads the MINING stream itself (shares and blocks of a pool, in stream order),
//! so what a block is split over is a function of the stream alone: a replay after a crash
//! splits it the same way, and a block is never split before its shares are known. A block
//! names the share that found it (job id and nonce); its window ends there, not at the block
//! event, which follows the node's round trip.
//!
//! Per pool it keeps the accepted shares any block still to come can need (issue 23): every
//! share of the last `max_block_delay` of event time (a block event follows its share by at
//! most the pool's submit patience, even through a node outage, so any of them may yet be a
//! finding share), and before those, shares worth [`RISE`] times the largest window of the
//! last or a waiting block (the network difficulty may rise that much before the next block);
//! never more than `max_window_shares`. Nothing stops the trimming: a waiting block is covered
//! by the same rule.
//!
//! Nothing on the bus is paid blindly: a block is split once per hash whatever is re-sent
//! (`adit_pplns_blocks_duplicate_total`); a block with network difficulty 0 is refused at once
//! and one whose share has not come `max_block_delay` after it is refused then
//! (`adit_pplns_blocks_refused_total{reason}`, logged with the reason); a block whose window
//! reaches past the shares kept (something was forgotten that it needs) waits instead of
//! paying short (`adit_pplns_windows_short_total`, logged), counted in
//! `adit_pplns_blocks_waiting` like a block whose share is not in the stream yet.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use adit_config::{Checked, check};
use adit_schemas::names::{
    TABLE_BLOCK_REWARDS, TABLE_PAYOUTS, TABLE_SHARE_CREDITS, payout_result_subject,
};
use adit_schemas::results::{BlockReward, Payout, ShareCredit};
use adit_schemas::window::{MINER_ID_BYTES, WindowHeader, miner_id_bytes, window_hash};
use adit_schemas::{AnyEvent, Block, BlockStatus, EventKind, Share, names, to_batch};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::pool::pps::{self, CreditError, Priced};
use crate::pool::split::{
    BPS, Factor, Scheme, Split, SplitError, SplitRules, Unfilled, WindowShare, split,
};
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput, StreamInput,
};
use crate::runtime::timer::Timer;

/// How far the network difficulty may rise between two of a pool's blocks with the next
/// window still covered by the shares kept (beyond it, a block waits rather than pay short).
pub const RISE: u128 = 4;

/// How many split blocks are remembered by hash, so a re-sent one is not paid again.
const SPLIT_REMEMBERED: usize = 10_000;

/// A pool's payout scheme from a block height on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeFrom {
    /// The first block height it applies to.
    pub from: u64,
    /// The scheme.
    pub scheme: Scheme,
}

/// The payout rules of one pool, each falling back to the defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRules {
    /// Its schemes, each from a block height on, in rising order of height (a switch applies
    /// from its block on; blocks below the first switch use `scheme`).
    #[serde(default)]
    pub schemes: Vec<SchemeFrom>,
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
    /// How miners are paid, for pools (and heights) no `schemes` list names: `pplns`,
    /// `solo`, `pps` or `fpps`.
    pub scheme: Scheme,
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
    /// The longest a block event may follow the share that found it, in event time (the
    /// pool's submit patience is 2 minutes): the shares this recent are all kept, and a block
    /// whose share has not come this long after it is refused.
    #[serde(with = "humantime_serde")]
    pub max_block_delay: Duration,
    /// How often the kept shares are snapshotted (they can be large; a restart replays the
    /// stream since).
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
}

impl Default for PplnsConfig {
    fn default() -> Self {
        Self {
            scheme: Scheme::Pplns,
            factor: Factor::default(),
            fee_bps: 100,
            unfilled: Unfilled::Pool,
            pools: BTreeMap::new(),
            max_window_shares: 5_000_000,
            max_block_delay: Duration::from_secs(600),
            snapshot_every: Duration::from_secs(60),
        }
    }
}

impl PplnsConfig {
    /// The rules in force for `pool`'s block at `height`.
    pub fn rules(&self, pool: &str, height: u64) -> SplitRules {
        let own = self.pools.get(pool);
        let scheme = own
            .and_then(|r| r.schemes.iter().rev().find(|s| s.from <= height))
            .map_or(self.scheme, |s| s.scheme);
        SplitRules {
            scheme,
            factor: own.and_then(|r| r.factor).unwrap_or(self.factor),
            fee_bps: own.and_then(|r| r.fee_bps).unwrap_or(self.fee_bps),
            unfilled: own.and_then(|r| r.unfilled).unwrap_or(self.unfilled),
        }
    }

    /// Refuses values the split cannot work with, naming the key.
    pub fn validate(&self) -> Checked {
        let fee = |key: &str, bps: u64| {
            check(
                bps < BPS,
                key,
                format!("{bps} must be below 10000 (the whole reward)"),
            )
        };
        fee("pipelines.pplns.fee_bps", self.fee_bps)?;
        for (pool, rules) in &self.pools {
            check(
                names::is_token(pool),
                &format!("pipelines.pplns.pools.{pool}"),
                "a pool id is 1-64 of A-Z a-z 0-9 _ -",
            )?;
            if let Some(bps) = rules.fee_bps {
                fee(&format!("pipelines.pplns.pools.{pool}.fee_bps"), bps)?;
            }
            check(
                rules.schemes.windows(2).all(|w| w[0].from < w[1].from),
                &format!("pipelines.pplns.pools.{pool}.schemes"),
                "each switch's `from` height must be above the one before it",
            )?;
        }
        check(
            self.max_window_shares >= 1_000,
            "pipelines.pplns.max_window_shares",
            "must be at least 1000",
        )?;
        check(
            (Duration::from_secs(180)..=Duration::from_secs(86_400))
                .contains(&self.max_block_delay),
            "pipelines.pplns.max_block_delay",
            "must be 3m to 24h (the pool may take 2m to submit a block)",
        )
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
    /// Recent shares' `job_id:nonce` → sequence, oldest first: those that may still be a
    /// block's finding share.
    recent: VecDeque<(String, u64)>,
    /// (minute of event time, first kept share's sequence in it), oldest first: where the
    /// last `max_block_delay` begins.
    #[serde(default)]
    minutes: VecDeque<(i64, u64)>,
    /// Event time of the newest share, Unix seconds.
    #[serde(default)]
    newest_ts: i64,
    /// Sequence of the newest share forgotten, if any was: a window reaching past the oldest
    /// kept share is short only then.
    #[serde(default)]
    trimmed_through: Option<u64>,
}

impl PoolWindow {
    /// The sequence from which every share is of the last `delay` of event time (all kept).
    fn recent_from(&self, delay: Duration) -> u64 {
        let cutoff = self.newest_ts - i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
        let before = self
            .minutes
            .partition_point(|(minute, _)| minute * 60 <= cutoff);
        match before.checked_sub(1).and_then(|i| self.minutes.get(i)) {
            Some(&(_, seq)) => seq,
            // Nothing older than the cutoff: from the oldest minute on (and everything, when
            // a snapshot from before minutes were kept has none yet).
            None => self.minutes.front().map_or(0, |&(_, seq)| seq),
        }
    }
}

/// A block waiting for the share that found it (or for a window the kept shares can fill).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    seq: u64,
    block: Block,
    /// Whether its window was found short (told once).
    #[serde(default)]
    short: bool,
    /// The sequence of the share that found it, once found.
    #[serde(default)]
    share_seq: Option<u64>,
}

/// What splitting a waiting block came to.
enum Attempt {
    /// Split over the window ending at the share of this sequence, with the split's
    /// commitment ([`adit_schemas::window::window_hash`]).
    Split(u64, Split, String),
    /// The share that found it is not in the stream (yet).
    NoShare,
    /// Its window reaches past the oldest share kept, and older ones were forgotten.
    Short {
        share_seq: u64,
        filled: u128,
        window: u128,
    },
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
    /// (pool, hash) of the blocks split, oldest first: a re-sent block is not paid again.
    #[serde(default)]
    split: VecDeque<(String, String)>,
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

    /// Keeps an accepted share: always as a possible finding share, and in the pool's window
    /// only when `windowed` (a share a per-share scheme paid counts in no block's window, so
    /// a switch to PPLNS never pays it twice).
    fn take_share(&mut self, seq: u64, share: &Share, windowed: bool) {
        if !share.accepted {
            return;
        }
        let miner = self.intern(&share.miner);
        let pool = self.pools.entry(share.pool.clone()).or_default();
        if windowed {
            pool.shares.push_back((seq, miner, share.difficulty));
            pool.weight += u128::from(share.difficulty);
        }
        pool.recent
            .push_back((format!("{}:{}", share.job_id, share.nonce), seq));
        let ts = share.ts.timestamp();
        pool.newest_ts = pool.newest_ts.max(ts);
        let minute = ts.div_euclid(60);
        if pool.minutes.back().is_none_or(|&(last, _)| minute > last) {
            pool.minutes.push_back((minute, seq));
        }
    }

    /// Whether `block` was split already or is waiting: a re-sent block is paid once.
    fn known(&self, block: &Block) -> bool {
        self.split
            .iter()
            .any(|(pool, hash)| *pool == block.pool && *hash == block.hash)
            || self
                .waiting
                .iter()
                .any(|w| w.block.pool == block.pool && w.block.hash == block.hash)
    }

    /// Remembers that `block` was split.
    fn mark_split(&mut self, block: &Block) {
        self.split
            .push_back((block.pool.clone(), block.hash.clone()));
        while self.split.len() > SPLIT_REMEMBERED {
            self.split.pop_front();
        }
    }
}

/// A block refused for good: logged with the reason and counted.
fn refuse(block: &Block, reason: &'static str) {
    metrics::counter!("adit_pplns_blocks_refused_total", "pool" => block.pool.clone(), "reason" => reason)
        .increment(1);
    tracing::error!(pool = %block.pool, height = block.height, hash = %block.hash, reason, "block refused: it is not split and pays nothing");
}

/// What a published window says of `block` and `rules` besides its shares.
pub fn window_header(block: &Block, rules: &SplitRules) -> WindowHeader {
    WindowHeader {
        pool: block.pool.clone(),
        height: block.height,
        hash: block.hash.clone(),
        reward: block.reward,
        network_difficulty: block.network_difficulty,
        factor: rules.factor.to_string(),
        fee_bps: rules.fee_bps,
        unfilled: <&str>::from(rules.unfilled).to_string(),
        scheme: <&str>::from(rules.scheme).to_string(),
    }
}

/// The split's commitment to `header` and the shares it `counted` (newest first), whose
/// miners are indexes into `miners`. Each miner's id is hashed once.
pub fn commitment(
    header: &WindowHeader,
    counted: impl Iterator<Item = WindowShare>,
    miners: &[String],
) -> String {
    let mut ids: HashMap<u32, [u8; MINER_ID_BYTES]> = HashMap::new();
    let shares = counted.map(|s| {
        let id = *ids.entry(s.miner).or_insert_with(|| {
            let name = miners.get(s.miner as usize).map_or("", String::as_str);
            miner_id_bytes(&header.pool, name)
        });
        (s.seq, id, s.difficulty)
    });
    window_hash(header, shares)
}

/// The credit row of accepted share `share` (stream sequence `seq`) under per-share `rules`.
fn share_credit(seq: u64, share: &Share, rules: &SplitRules) -> Result<ShareCredit, CreditError> {
    let priced = Priced {
        difficulty: share.difficulty,
        network_difficulty: share.network_difficulty,
        reward: share.reward,
        subsidy: share.subsidy,
    };
    let base = pps::base(rules.scheme, &priced)?;
    let network_difficulty = share
        .network_difficulty
        .ok_or(CreditError::Unpriced("network difficulty"))?;
    let amount = pps::credit(share.difficulty, network_difficulty, base, rules.fee_bps)?;
    // Every figure fits an i64: the share event's checks bound its fields, and `credit`
    // refuses an amount that does not.
    let int = |v: u64| i64::try_from(v).map_err(|_| CreditError::Overflow);
    Ok(ShareCredit {
        pool: share.pool.clone(),
        miner: share.miner.clone(),
        worker: share.worker.clone(),
        share_seq: int(seq)?,
        height: int(share.height)?,
        scheme: <&str>::from(rules.scheme).to_string(),
        difficulty: int(share.difficulty)?,
        network_difficulty: int(network_difficulty)?,
        base: int(base)?,
        fee_bps: int(rules.fee_bps)?,
        amount: int(amount)?,
        ts: share.ts,
        date: share.ts.date_naive(),
    })
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

    /// Splits `block` if the share that found it is known and the kept shares fill its
    /// window (or nothing was ever forgotten).
    fn try_split(&self, state: &PplnsState, waiting: &Waiting) -> Result<Attempt, SplitError> {
        let block = &waiting.block;
        let Some(pool) = state.pools.get(&block.pool) else {
            return Ok(Attempt::NoShare);
        };
        let key = format!("{}:{}", block.job_id, block.nonce);
        let found = waiting.share_seq.or_else(|| {
            pool.recent
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|&(_, seq)| seq)
        });
        let Some(share_seq) = found else {
            return Ok(Attempt::NoShare);
        };
        let end = pool.shares.partition_point(|(seq, _, _)| *seq <= share_seq);
        let walk = || {
            pool.shares
                .range(..end)
                .rev()
                .map(|&(seq, miner, difficulty)| WindowShare {
                    seq,
                    miner,
                    difficulty,
                })
        };
        let rules = self.config.rules(&block.pool, block.height);
        let split = split(
            block.reward,
            block.network_difficulty,
            &rules,
            walk(),
            &state.miners,
        )?;
        if split.filled < split.window && pool.trimmed_through.is_some() {
            return Ok(Attempt::Short {
                share_seq,
                filled: split.filled,
                window: split.window,
            });
        }
        let counted = walk().take(usize::try_from(split.shares).unwrap_or(usize::MAX));
        let hash = commitment(&window_header(block, &rules), counted, &state.miners);
        Ok(Attempt::Split(share_seq, split, hash))
    }

    /// Forgets the shares no block still to come can need: all of the last
    /// `max_block_delay` are kept (any may be a finding share whose block event is late), and
    /// before them [`RISE`] times the largest window of the last or a waiting block.
    fn trim(&self, state: &mut PplnsState) {
        let delay = self.config.max_block_delay;
        for (name, pool) in &mut state.pools {
            let largest = state
                .waiting
                .iter()
                .filter(|w| w.block.pool == *name)
                .map(|w| w.block.network_difficulty)
                .fold(pool.last_network_difficulty, u64::max);
            let (num, den) = self.config.rules(name, u64::MAX).factor.ratio();
            let keep = (largest > 0)
                .then(|| RISE * u128::from(largest) * u128::from(num) / u128::from(den) + 1);
            let recent_from = pool.recent_from(delay);
            let start = pool
                .shares
                .partition_point(|(seq, _, _)| *seq < recent_from);
            let mut recent_weight: u128 = pool
                .shares
                .range(start..)
                .map(|&(_, _, d)| u128::from(d))
                .sum();
            while let Some(&(seq, _, difficulty)) = pool.shares.front() {
                let rest = pool.weight - u128::from(difficulty);
                let older = seq < recent_from;
                let enough = older && keep.is_some_and(|k| rest - recent_weight >= k);
                if !enough && pool.shares.len() <= self.config.max_window_shares {
                    break;
                }
                if !older {
                    recent_weight -= u128::from(difficulty);
                }
                pool.shares.pop_front();
                pool.weight = rest;
                pool.trimmed_through = Some(seq);
            }
            let front = pool.shares.front().map_or(u64::MAX, |&(seq, _, _)| seq);
            while pool
                .minutes
                .get(1)
                .is_some_and(|&(_, seq)| seq <= front.min(recent_from))
            {
                pool.minutes.pop_front();
            }
            // Only a share of the last `max_block_delay` can still find a block to come.
            while pool
                .recent
                .front()
                .is_some_and(|&(_, seq)| seq < recent_from)
                || pool.recent.len() > self.config.max_window_shares
            {
                pool.recent.pop_front();
            }
        }
    }

    /// Whether the pool's shares have gone `max_block_delay` past `block` without the one that
    /// found it (which comes before the block, or soon after when its publish was retried).
    fn share_never_came(&self, state: &PplnsState, block: &Block) -> bool {
        let delay = i64::try_from(self.config.max_block_delay.as_secs()).unwrap_or(i64::MAX);
        state
            .pools
            .get(&block.pool)
            .is_some_and(|p| p.newest_ts > block.ts.timestamp().saturating_add(delay))
    }

    fn rows(
        &self,
        waiting: &Waiting,
        share_seq: u64,
        s: &Split,
        window_hash: String,
    ) -> (BlockReward, Vec<Payout>) {
        let b = &waiting.block;
        let rules = self.config.rules(&b.pool, b.height);
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
            unfilled: Some(<&str>::from(rules.unfilled).to_string()),
            window_hash: Some(window_hash),
            scheme: Some(<&str>::from(rules.scheme).to_string()),
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
            inputs: vec![StreamInput::whole_stream("mining", names::STREAM_MINING)],
            outputs: vec![
                OutputTable::dated(TABLE_BLOCK_REWARDS, BlockReward::schema()),
                OutputTable::dated(TABLE_PAYOUTS, Payout::schema()),
                OutputTable::dated(TABLE_SHARE_CREDITS, ShareCredit::schema()),
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
        let mut credits = Vec::new();
        let mut unpriced: BTreeMap<(String, String), u64> = BTreeMap::new();
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
                AnyEvent::Share(share) => {
                    let rules = self.config.rules(&share.pool, share.height);
                    state.take_share(seq, share, !rules.scheme.per_share());
                    if share.accepted && rules.scheme.per_share() {
                        match share_credit(seq, share, &rules) {
                            Ok(row) => credits.push(row),
                            Err(e) => {
                                *unpriced
                                    .entry((share.pool.clone(), e.to_string()))
                                    .or_default() += 1;
                            }
                        }
                    }
                }
                AnyEvent::Block(block) if block.status == BlockStatus::Submitted => {
                    if block.network_difficulty == 0 {
                        refuse(block, "network difficulty 0: its window weighs nothing");
                        continue;
                    }
                    if state.known(block) {
                        metrics::counter!("adit_pplns_blocks_duplicate_total", "pool" => block.pool.clone())
                            .increment(1);
                        tracing::warn!(pool = %block.pool, height = block.height, hash = %block.hash, "block sent again: it is split once");
                        continue;
                    }
                    let pool = state.pools.entry(block.pool.clone()).or_default();
                    pool.last_network_difficulty = block.network_difficulty;
                    state.waiting.push(Waiting {
                        seq,
                        block: block.clone(),
                        short: false,
                        share_seq: None,
                    });
                }
                _ => {} // a refused or unreachable block earns nothing
            }
        }

        let (mut rewards, mut payouts) = (Vec::new(), Vec::new());
        let mut still = Vec::new();
        for mut waiting in std::mem::take(&mut state.waiting) {
            match self.try_split(state, &waiting) {
                Ok(Attempt::Split(share_seq, split, hash)) => {
                    let (reward, rows) = self.rows(&waiting, share_seq, &split, hash);
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
                    state.mark_split(&waiting.block);
                }
                Ok(Attempt::NoShare) if self.share_never_came(state, &waiting.block) => {
                    refuse(&waiting.block, "the share that found it never came");
                }
                Ok(Attempt::NoShare) => {
                    tracing::warn!(pool = %waiting.block.pool, height = waiting.block.height, job_id = %waiting.block.job_id, nonce = %waiting.block.nonce, "block waits: the share that found it is not in the stream yet");
                    still.push(waiting);
                }
                Ok(Attempt::Short {
                    share_seq,
                    filled,
                    window,
                }) => {
                    if !waiting.short {
                        metrics::counter!("adit_pplns_windows_short_total", "pool" => waiting.block.pool.clone())
                            .increment(1);
                        tracing::error!(pool = %waiting.block.pool, height = waiting.block.height, hash = %waiting.block.hash, filled = %filled, window = %window, "block waits: its window reaches past the shares kept, so it is not paid short; raise pipelines.pplns.max_window_shares and replay the pipeline");
                    }
                    waiting.short = true;
                    waiting.share_seq = Some(share_seq);
                    still.push(waiting);
                }
                Err(e) => {
                    refuse(&waiting.block, "it cannot be split");
                    tracing::error!(pool = %waiting.block.pool, height = waiting.block.height, error = %e, "why the block cannot be split");
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
        for ((pool, why), n) in unpriced {
            metrics::counter!("adit_pps_shares_unpriced_total", "pool" => pool.clone())
                .increment(n);
            tracing::error!(%pool, shares = n, reason = %why, "accepted shares of a per-share scheme cannot be priced, so they are credited nothing");
        }
        if !credits.is_empty() {
            out.rows(
                TABLE_SHARE_CREDITS,
                to_batch(TABLE_SHARE_CREDITS, ShareCredit::schema(), &credits)?,
            );
        }
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
mod tests;
