//! Result rows the pipelines write, with their Arrow schemas.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::ts_field;

/// Energy one machine used in one minute, integrated from its power readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineEnergyMinute {
    /// Site of the machine.
    pub site: String,
    /// The machine.
    pub machine: String,
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Energy in the minute, watt-hours.
    pub energy_wh: f64,
    /// Mean power over the covered part of the minute, watts.
    pub avg_power_w: f64,
    /// Peak reading in the minute, watts.
    pub max_power_w: f64,
    /// Readings that fell in the minute.
    pub samples: i64,
    /// Seconds of the minute covered by intervals within the gap rule.
    pub covered_s: f64,
    /// `covered_s / 60`: 1.0 is a complete minute.
    pub quality: f64,
    /// `counter` when a cumulative kWh counter was differenced, else `power`.
    pub method: String,
    /// The device kind that measured it (meter, pdu, firmware, estimate).
    pub source: String,
    /// UTC date of the minute (partition).
    pub date: NaiveDate,
}

impl MachineEnergyMinute {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            Field::new("machine", DataType::Utf8, false),
            ts_field("minute"),
            Field::new("energy_wh", DataType::Float64, false),
            Field::new("avg_power_w", DataType::Float64, false),
            Field::new("max_power_w", DataType::Float64, false),
            Field::new("samples", DataType::Int64, false),
            Field::new("covered_s", DataType::Float64, false),
            Field::new("quality", DataType::Float64, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// Energy one site used in one minute: the sum over its machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteEnergyMinute {
    /// The site.
    pub site: String,
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Energy in the minute, watt-hours.
    pub energy_wh: f64,
    /// Mean site power, watts (energy over the minute).
    pub avg_power_w: f64,
    /// Machines that reported in the minute.
    pub machines: i64,
    /// Mean of the machines' quality.
    pub quality: f64,
    /// UTC date of the minute (partition).
    pub date: NaiveDate,
}

impl SiteEnergyMinute {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            ts_field("minute"),
            Field::new("energy_wh", DataType::Float64, false),
            Field::new("avg_power_w", DataType::Float64, false),
            Field::new("machines", DataType::Int64, false),
            Field::new("quality", DataType::Float64, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// How one block's reward was split (PPLNS): one row per block the node accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockReward {
    /// The pool.
    pub pool: String,
    /// Block height.
    pub height: i64,
    /// Block hash (hex).
    pub hash: String,
    /// Stream sequence of the block event.
    pub block_seq: i64,
    /// Stream sequence of the share that found it (where the window ends).
    pub share_seq: i64,
    /// Miner whose share found it.
    pub finder: String,
    /// Reward R, atomic units.
    pub reward: i64,
    /// Pool fee, ⌊R × fee_bps / 10 000⌋.
    pub fee: i64,
    /// Σ payouts.
    pub paid: i64,
    /// R − fee − paid (what an unfilled window leaves with the pool).
    pub remainder: i64,
    /// The window factor, as configured (`2`, `1.5`).
    pub factor: String,
    /// The fee rate, basis points.
    pub fee_bps: i64,
    /// Network difficulty of the block.
    pub network_difficulty: i64,
    /// W = factor × network difficulty, in share difficulty (display; the split is exact).
    pub window_difficulty: f64,
    /// The share difficulty the window holds (≤ W).
    pub filled_difficulty: f64,
    /// Shares that count.
    pub shares: i64,
    /// Sequence of the oldest share that counts.
    pub first_seq: Option<i64>,
    /// Miners paid.
    pub miners: i64,
    /// When the block was found.
    pub ts: DateTime<Utc>,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
    /// What an unfilled window does (`pool` or `scale`); null on rows from before it was
    /// recorded.
    pub unfilled: Option<String>,
    /// The split's commitment to the block, its rules and every share it counted
    /// ([`crate::window::window_hash`]), hex; null on rows from before it was recorded.
    pub window_hash: Option<String>,
    /// How it was paid (`pplns` or `solo`); null on rows from before it was recorded (PPLNS).
    pub scheme: Option<String>,
}

impl BlockReward {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("pool", DataType::Utf8, false),
            Field::new("height", DataType::Int64, false),
            Field::new("hash", DataType::Utf8, false),
            Field::new("block_seq", DataType::Int64, false),
            Field::new("share_seq", DataType::Int64, false),
            Field::new("finder", DataType::Utf8, false),
            Field::new("reward", DataType::Int64, false),
            Field::new("fee", DataType::Int64, false),
            Field::new("paid", DataType::Int64, false),
            Field::new("remainder", DataType::Int64, false),
            Field::new("factor", DataType::Utf8, false),
            Field::new("fee_bps", DataType::Int64, false),
            Field::new("network_difficulty", DataType::Int64, false),
            Field::new("window_difficulty", DataType::Float64, false),
            Field::new("filled_difficulty", DataType::Float64, false),
            Field::new("shares", DataType::Int64, false),
            Field::new("first_seq", DataType::Int64, true),
            Field::new("miners", DataType::Int64, false),
            ts_field("ts"),
            Field::new("date", DataType::Date32, false),
            // Added after the table's first release: nullable, at the end (how a table grows).
            Field::new("unfilled", DataType::Utf8, true),
            Field::new("window_hash", DataType::Utf8, true),
            Field::new("scheme", DataType::Utf8, true),
        ]))
    }
}

/// One miner's part of one block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payout {
    /// The pool.
    pub pool: String,
    /// Block height.
    pub height: i64,
    /// Block hash (hex).
    pub hash: String,
    /// The miner (wallet address or account).
    pub miner: String,
    /// Atomic units earned.
    pub amount: i64,
    /// The miner's share difficulty in the window.
    pub weight_difficulty: f64,
    /// When the block was found.
    pub ts: DateTime<Utc>,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
}

impl Payout {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("pool", DataType::Utf8, false),
            Field::new("height", DataType::Int64, false),
            Field::new("hash", DataType::Utf8, false),
            Field::new("miner", DataType::Utf8, false),
            Field::new("amount", DataType::Int64, false),
            Field::new("weight_difficulty", DataType::Float64, false),
            ts_field("ts"),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// What a per-share scheme (PPS or FPPS) credits one accepted share, with every input of
/// the formula, so anyone can recompute it:
/// `amount = ⌊difficulty × base × (10 000 − fee_bps) / (network_difficulty × 10 000)⌋`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareCredit {
    /// The pool.
    pub pool: String,
    /// The miner credited.
    pub miner: String,
    /// Its worker.
    pub worker: String,
    /// The share's stream sequence (its identity: one credit per share).
    pub share_seq: i64,
    /// The job's height.
    pub height: i64,
    /// `pps` (base = the template's subsidy) or `fpps` (base = subsidy and fees).
    pub scheme: String,
    /// The share's difficulty.
    pub difficulty: i64,
    /// The job's network difficulty.
    pub network_difficulty: i64,
    /// The reward the share is priced on, atomic units.
    pub base: i64,
    /// The pool's fee, basis points.
    pub fee_bps: i64,
    /// Atomic units credited.
    pub amount: i64,
    /// When the pool received the share.
    pub ts: DateTime<Utc>,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
}

impl ShareCredit {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        let int = |name: &str| Field::new(name, DataType::Int64, false);
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        Arc::new(Schema::new(vec![
            text("pool"),
            text("miner"),
            text("worker"),
            int("share_seq"),
            int("height"),
            text("scheme"),
            int("difficulty"),
            int("network_difficulty"),
            int("base"),
            int("fee_bps"),
            int("amount"),
            ts_field("ts"),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// Where a payment stands. Each change is a new row; the newest row of a transaction is its
/// state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The wallet built and signed the transaction; it is recorded, not yet sent. It counts
    /// against the balance from here on.
    Created,
    /// The node holds it (in its pool or in a block).
    Relayed,
    /// In a block `confirmations` deep.
    Confirmed,
    /// The node refused it and it is neither in the pool nor on chain; it is never sent again,
    /// and its amount is back in the balance.
    Failed,
}

impl PaymentStatus {
    /// Its name in the table.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One destination of one payment transaction, at one status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// The pool paying.
    pub pool: String,
    /// The transaction (hex); it names the payment.
    pub tx_hash: String,
    /// The miner paid (their login, a wallet address).
    pub miner: String,
    /// Atomic units sent to the miner.
    pub amount: i64,
    /// The network fee of the whole transaction, atomic units (paid by the pool).
    pub tx_fee: i64,
    /// Destinations in the transaction.
    pub destinations: i64,
    /// Where it stands.
    pub status: PaymentStatus,
    /// The signed transaction (hex), on `created` rows: what the node is sent after a crash.
    pub tx_blob: Option<String>,
    /// The wallet's own record of the transaction (hex), on `created` rows: what the wallet
    /// relays (so it knows the outputs are spent) after a crash.
    pub tx_metadata: Option<String>,
    /// Why it failed, or the node's last word.
    pub error: Option<String>,
    /// When the status was recorded.
    pub ts: DateTime<Utc>,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
    /// On `relayed` and `confirmed` rows, a proof the miner checks with its own wallet that
    /// this transaction paid it (Monero's `get_tx_proof`; checked with `check_tx_proof`, an
    /// empty message). Null where the chain has none or the wallet could not make one.
    pub proof: Option<String>,
}

impl Payment {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("pool", DataType::Utf8, false),
            Field::new("tx_hash", DataType::Utf8, false),
            Field::new("miner", DataType::Utf8, false),
            Field::new("amount", DataType::Int64, false),
            Field::new("tx_fee", DataType::Int64, false),
            Field::new("destinations", DataType::Int64, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("tx_blob", DataType::Utf8, true),
            Field::new("tx_metadata", DataType::Utf8, true),
            Field::new("error", DataType::Utf8, true),
            ts_field("ts"),
            Field::new("date", DataType::Date32, false),
            // Added after the table's first release: nullable, at the end.
            Field::new("proof", DataType::Utf8, true),
        ]))
    }
}

/// A reserve proof the payer made: that the pool's wallet holds at least what it owes its
/// miners, published for anyone to check with their own wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveProof {
    /// The chain (`monero`).
    pub chain: String,
    /// The wallet's address a checker names (`check_reserve_proof`).
    pub address: Option<String>,
    /// What the pools owe their miners: Σ of every positive balance, atomic units.
    pub owed: i64,
    /// Unspent atomic units the proof shows (its total less what is spent), when one was made.
    pub proven: Option<i64>,
    /// Whether the proof checks and proves at least `owed`.
    pub good: bool,
    /// The message the proof is signed over.
    pub message: String,
    /// The proof.
    pub signature: Option<String>,
    /// Why no proof could be made (a wallet short of `owed` says so here).
    pub error: Option<String>,
    /// When it was made.
    pub ts: DateTime<Utc>,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
}

impl ReserveProof {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("chain", DataType::Utf8, false),
            Field::new("address", DataType::Utf8, true),
            Field::new("owed", DataType::Int64, false),
            Field::new("proven", DataType::Int64, true),
            Field::new("good", DataType::Boolean, false),
            Field::new("message", DataType::Utf8, false),
            Field::new("signature", DataType::Utf8, true),
            Field::new("error", DataType::Utf8, true),
            ts_field("ts"),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// Effective hashrate of one worker in one minute: Σ accepted share difficulty / 60 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashrateMinute {
    /// The pool.
    pub pool: String,
    /// The miner.
    pub miner: String,
    /// The worker.
    pub worker: String,
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Accepted shares in it.
    pub shares: i64,
    /// Their summed difficulty.
    pub difficulty: f64,
    /// `difficulty / 60`: hashes per second.
    pub hashrate_hs: f64,
    /// UTC date (partition).
    pub date: NaiveDate,
}

impl HashrateMinute {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("pool", DataType::Utf8, false),
            Field::new("miner", DataType::Utf8, false),
            Field::new("worker", DataType::Utf8, false),
            ts_field("minute"),
            Field::new("shares", DataType::Int64, false),
            Field::new("difficulty", DataType::Float64, false),
            Field::new("hashrate_hs", DataType::Float64, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// Effective hashrate of one worker in one hour: Σ accepted share difficulty / 3600 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashrateHour {
    /// The pool.
    pub pool: String,
    /// The miner.
    pub miner: String,
    /// The worker.
    pub worker: String,
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// Accepted shares in it.
    pub shares: i64,
    /// Their summed difficulty.
    pub difficulty: f64,
    /// `difficulty / 3600`: hashes per second.
    pub hashrate_hs: f64,
    /// UTC date (partition).
    pub date: NaiveDate,
}

impl HashrateHour {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("pool", DataType::Utf8, false),
            Field::new("miner", DataType::Utf8, false),
            Field::new("worker", DataType::Utf8, false),
            ts_field("hour"),
            Field::new("shares", DataType::Int64, false),
            Field::new("difficulty", DataType::Float64, false),
            Field::new("hashrate_hs", DataType::Float64, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// One change of a violation's state: `opened` (after its condition held for the minimum
/// duration), `updated` (its severity rose or its peak grew), `resolved` (its condition was
/// false for the clearing time). The violation's rows share its `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationRow {
    /// The violation: `<scope>:<site>:<subject>:<kind>:<started µs>`.
    pub id: String,
    /// `opened`, `updated` or `resolved`.
    pub event: String,
    /// The site (none for a pool's).
    pub site: Option<String>,
    /// What is in violation: `site`, `pool`, `machine`, `sensor` or `meter`.
    pub scope: String,
    /// Its id within the scope.
    pub subject: String,
    /// `power_allocation`, `temperature`, `humidity`, `silent_device`, `unregistered_device`.
    pub kind: String,
    /// `warning`, `critical`, `violation` or `emergency`; at most rising while open.
    pub severity: String,
    /// The measure at this row (kW, °C, %, silent seconds).
    pub value: Option<f64>,
    /// The limit it crossed, in the same unit.
    pub limit: Option<f64>,
    /// The worst measure so far.
    pub peak: Option<f64>,
    /// When the condition began (event time).
    pub started: DateTime<Utc>,
    /// Event time of this row (for `opened`: when it was detected).
    pub ts: DateTime<Utc>,
    /// How long it has lasted (for `resolved`: until the condition ended), seconds.
    pub duration_s: f64,
    /// `pipeline`, or `manual` for one an operator recorded.
    pub source: String,
    /// An operator's note.
    pub note: Option<String>,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
}

impl ViolationRow {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("event", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, true),
            Field::new("scope", DataType::Utf8, false),
            Field::new("subject", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("severity", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new("limit", DataType::Float64, true),
            Field::new("peak", DataType::Float64, true),
            ts_field("started"),
            ts_field("ts"),
            Field::new("duration_s", DataType::Float64, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("note", DataType::Utf8, true),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// One change of an anomaly: `opened`, `updated` (its peak score grew), `resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyRow {
    /// This row: `<anomaly>:opened|updated:<n>|resolved`.
    pub event_id: String,
    /// The anomaly, shared by its rows: `anomaly:<site>:<series kind>:<id>:<detector>:<µs>`.
    pub id: String,
    /// `opened`, `updated` or `resolved`.
    pub event: String,
    /// The site.
    pub site: String,
    /// `machine_power`, `machine_hashrate` or `temperature`.
    pub series: String,
    /// The machine or sensor.
    pub subject: String,
    /// `zscore`, `drift`, `peer` or `stuck`.
    pub detector: String,
    /// Event time of the sample that caused this row.
    pub ts: DateTime<Utc>,
    /// When its condition began.
    pub started: Option<DateTime<Utc>>,
    /// What was tested (a value, a slow average, a recent median).
    pub value: Option<f64>,
    /// What it was compared with (the window's median, the baseline, the peers' median).
    pub expected: Option<f64>,
    /// The detector's score at this row.
    pub score: Option<f64>,
    /// The highest score so far.
    pub peak_score: Option<f64>,
    /// How long the condition lasted (resolved rows), seconds.
    pub duration_s: Option<f64>,
    /// Why it resolved: `cleared`, or `forgotten` (its series went silent).
    pub reason: Option<String>,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
}

impl AnomalyRow {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
            Field::new("event", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, false),
            Field::new("series", DataType::Utf8, false),
            Field::new("subject", DataType::Utf8, false),
            Field::new("detector", DataType::Utf8, false),
            ts_field("ts"),
            Field::new("started", crate::arrow_rows::ts_type(), true),
            Field::new("value", DataType::Float64, true),
            Field::new("expected", DataType::Float64, true),
            Field::new("score", DataType::Float64, true),
            Field::new("peak_score", DataType::Float64, true),
            Field::new("duration_s", DataType::Float64, true),
            Field::new("reason", DataType::Utf8, true),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// Energy of one machine, site or pool over one settlement interval, hour or day: the sum of
/// its closed minutes, with quality, sources and efficiency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyPeriod {
    /// `machine`, `site` or `pool`.
    pub scope: String,
    /// The site (none for a pool).
    pub site: Option<String>,
    /// The machine, site or pool.
    pub subject: String,
    /// Start of the period.
    pub period_start: DateTime<Utc>,
    /// End of the period (exclusive).
    pub period_end: DateTime<Utc>,
    /// Energy, Wh: the sum of the period's machine minutes.
    pub energy_wh: f64,
    /// Mean power over the whole period, W.
    pub avg_power_w: f64,
    /// Highest minute's mean power, W.
    pub peak_power_w: f64,
    /// Minutes with a figure.
    pub minutes: i64,
    /// Machines with a figure.
    pub machines: i64,
    /// Covered seconds over (period × machines): 1.0 is complete.
    pub quality: f64,
    /// Share of the energy measured by a meter or PDU (the rest: firmware or estimate).
    pub measured_share: f64,
    /// Sources used, best first (`meter,pdu`).
    pub sources: String,
    /// Mean reported hashrate over the covered minutes, TH/s.
    pub hashrate_ths: Option<f64>,
    /// Joules per terahash: mean power over mean hashrate.
    pub efficiency_j_th: Option<f64>,
    /// UTC date of the period's middle: a site's local day files under its own date
    /// (partition).
    pub date: NaiveDate,
}

impl EnergyPeriod {
    /// Its tables' schema (`energy_settlement`, `energy_1h`, `energy_1d`).
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("scope", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, true),
            Field::new("subject", DataType::Utf8, false),
            ts_field("period_start"),
            ts_field("period_end"),
            Field::new("energy_wh", DataType::Float64, false),
            Field::new("avg_power_w", DataType::Float64, false),
            Field::new("peak_power_w", DataType::Float64, false),
            Field::new("minutes", DataType::Int64, false),
            Field::new("machines", DataType::Int64, false),
            Field::new("quality", DataType::Float64, false),
            Field::new("measured_share", DataType::Float64, false),
            Field::new("sources", DataType::Utf8, false),
            Field::new("hashrate_ths", DataType::Float64, true),
            Field::new("efficiency_j_th", DataType::Float64, true),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// One machine over one settlement interval, priced: what its shares at its pool were worth
/// and what its energy cost, with every input beside the result so anyone can recompute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineProfit {
    /// The site.
    pub site: String,
    /// The machine.
    pub machine: String,
    /// The pool it mines at (none: it says of no pool or login, so it earns nothing known).
    pub pool: Option<String>,
    /// The login its shares name.
    pub miner: Option<String>,
    /// The worker its shares name.
    pub worker: Option<String>,
    /// Start of the settlement interval.
    pub period_start: DateTime<Utc>,
    /// Its end (exclusive).
    pub period_end: DateTime<Utc>,
    /// Accepted shares it submitted in the interval, priced or not.
    pub shares: i64,
    /// Their summed difficulty: the hashes they stand for.
    pub work: i64,
    /// What they are worth to the miner in expectation, atomic units: Σ ⌊difficulty ×
    /// reward × (10 000 − fee) ÷ (network difficulty × 10 000)⌋ of each share's own job, the
    /// fee being its pool's (basis points, `pipelines.pplns`).
    pub revenue_units: i64,
    /// The pool's fee on them, atomic units: what ⌊difficulty × reward ÷ network difficulty⌋
    /// adds up to beyond `revenue_units` (none in rows written before it was kept).
    #[serde(default)]
    pub pool_fee_units: Option<i64>,
    /// Accepted shares that carried no price (an older pool), counted in `shares` only.
    pub unpriced_shares: i64,
    /// The coin its pool pays in.
    pub coin: Option<String>,
    /// The coin's price over the interval (time-weighted), per coin.
    pub coin_price: Option<f64>,
    /// The coin's decimals (atomic units per coin, as a power of ten).
    pub coin_decimals: Option<i64>,
    /// `revenue_units ÷ 10^decimals × coin_price`.
    pub revenue: Option<f64>,
    /// Its energy over the interval, Wh (as in `energy_settlement`).
    pub energy_wh: f64,
    /// The site's energy price over the interval (time-weighted; its tariff where no price
    /// was published), per MWh.
    pub energy_price_per_mwh: Option<f64>,
    /// `energy_wh ÷ 10⁶ × energy_price_per_mwh`.
    pub energy_cost: Option<f64>,
    /// `revenue − energy_cost`.
    pub margin: Option<f64>,
    /// The energy price at which the margin would be 0: `revenue ÷ (energy_wh ÷ 10⁶)`.
    pub breakeven_per_mwh: Option<f64>,
    /// UTC date of the interval's middle (partition).
    pub date: NaiveDate,
}

impl MachineProfit {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
        let int = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
        let float = |name: &str, nullable| Field::new(name, DataType::Float64, nullable);
        Arc::new(Schema::new(vec![
            text("site", false),
            text("machine", false),
            text("pool", true),
            text("miner", true),
            text("worker", true),
            ts_field("period_start"),
            ts_field("period_end"),
            int("shares", false),
            int("work", false),
            int("revenue_units", false),
            int("pool_fee_units", true),
            int("unpriced_shares", false),
            text("coin", true),
            float("coin_price", true),
            int("coin_decimals", true),
            float("revenue", true),
            float("energy_wh", false),
            float("energy_price_per_mwh", true),
            float("energy_cost", true),
            float("margin", true),
            float("breakeven_per_mwh", true),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::ComplianceDay;
    use crate::control::{CommandRow, DecisionRow};
    use serde::de::DeserializeOwned;
    use serde_json::{Map, Value, json};

    /// A value of the column's type, as a row's JSON carries it.
    fn sample(data_type: &DataType) -> Value {
        match data_type {
            DataType::Timestamp(..) => json!("2026-11-28T10:00:00Z"),
            DataType::Date32 => json!("2026-11-28"),
            DataType::Boolean => json!(true),
            t if t.is_integer() => json!(7),
            t if t.is_floating() => json!(7.5),
            _ => json!("text"),
        }
    }

    /// `schema` is `T`'s, both ways: a row of the declared columns reads as a `T` and a `T`
    /// writes those columns in that order and no other, and a column is nullable exactly when
    /// its field takes a null (an `Option`). The schemas are written by hand because serde
    /// cannot tell a timestamp or a date from a string; this pins each to its row type.
    /// `values` are samples of the text columns that hold an enum's names.
    fn pinned<T: DeserializeOwned + Serialize>(schema: SchemaRef, values: &[(&str, &str)]) {
        let name = std::any::type_name::<T>();
        let mut row: Map<String, Value> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), sample(f.data_type())))
            .collect();
        for (column, value) in values {
            row.insert((*column).into(), json!(value));
        }
        let read: T = serde_json::from_value(Value::Object(row.clone()))
            .unwrap_or_else(|e| panic!("{name} does not read its schema's columns: {e}"));
        // The text keeps the fields' order (a JSON map would sort them).
        let text = serde_json::to_string(&read).expect("a row");
        let Value::Object(written) = serde_json::from_str(&text).expect("an object") else {
            panic!("{name} is not a struct");
        };
        let mut declared: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
        let place = |key: &String| text.find(&format!("\"{key}\":"));
        assert!(
            declared.is_sorted_by_key(|key| place(key)),
            "{name} writes its fields in another order than its columns: {text}"
        );
        declared.sort();
        assert_eq!(
            written.keys().collect::<Vec<_>>(),
            declared,
            "{name}'s fields and columns"
        );
        for field in schema.fields() {
            let mut nulled = row.clone();
            nulled.insert(field.name().clone(), Value::Null);
            let takes_null = serde_json::from_value::<T>(Value::Object(nulled)).is_ok();
            assert_eq!(
                takes_null,
                field.is_nullable(),
                "{name}.{}: nullable in the schema iff an Option",
                field.name()
            );
        }
    }

    #[test]
    fn every_result_table_s_schema_is_its_row_type_s() {
        pinned::<MachineEnergyMinute>(MachineEnergyMinute::schema(), &[]);
        pinned::<SiteEnergyMinute>(SiteEnergyMinute::schema(), &[]);
        pinned::<BlockReward>(BlockReward::schema(), &[]);
        pinned::<Payout>(Payout::schema(), &[]);
        pinned::<Payment>(Payment::schema(), &[("status", "created")]);
        pinned::<HashrateMinute>(HashrateMinute::schema(), &[]);
        pinned::<HashrateHour>(HashrateHour::schema(), &[]);
        pinned::<ViolationRow>(ViolationRow::schema(), &[]);
        pinned::<AnomalyRow>(AnomalyRow::schema(), &[]);
        pinned::<EnergyPeriod>(EnergyPeriod::schema(), &[]);
        pinned::<MachineProfit>(MachineProfit::schema(), &[]);
        pinned::<DecisionRow>(DecisionRow::schema(), &[]);
        pinned::<CommandRow>(CommandRow::schema(), &[]);
        pinned::<ComplianceDay>(ComplianceDay::schema(), &[]);
    }
}
