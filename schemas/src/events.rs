//! The events that arrive on JetStream: their fields, subjects, dedupe keys, validation and
//! Arrow schemas.

use crate::time::micros;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, SchemaRef};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertEvent, NotificationAttempt};
use crate::arrow_rows::{f64_field, f64_opt, i64_field, i64_opt, utf8, utf8_opt};
use crate::arrow_rows::{stamped_batch, stamped_schema, ts_field};
use crate::audit::AuditEntry;
use crate::competition::Competition;
use crate::control::{Command, CommandOutcome};
use crate::custom_metric::CustomMetric;
use crate::error::Result;
use crate::inspection::Inspection;
use crate::market::{CoinPrice, NetworkState};
use crate::names;
use crate::overrides::Override;
pub use crate::record::{Event, Routed};
pub use crate::registry::SensorKind;
use crate::registry::{RegistryChange, RegistryEntry};
use crate::validate::{Invalid, ValidationPolicy, check_range, check_text, check_token};

/// An [`Event`] in the kind table: its kind, and how it wraps into [`AnyEvent`]. Implemented
/// for every row of `event_kinds!` by the table itself, so no record module names the table.
pub trait Kinded: Event {
    /// Which kind of event this is.
    const KIND: EventKind;
    /// Wraps it in [`AnyEvent`].
    fn into_any(self) -> AnyEvent;
}

/// Longest id from outside an event may carry (a job id, a nonce, a feed's event id): room for
/// a 64-character id with every character escaped, far below a NATS message's size.
pub const MAX_ID_BYTES: usize = 256;
/// Longest name from outside (a miner's address, a worker).
pub const MAX_NAME_BYTES: usize = 256;
/// Longest reason or error text an event may carry.
pub const MAX_REASON_BYTES: usize = 4096;

/// A share a miner submitted to a pool, accepted or rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// Pool that received it.
    pub pool: String,
    /// Miner login (wallet address or account).
    pub miner: String,
    /// Worker (rig) name.
    pub worker: String,
    /// Job the share answers.
    pub job_id: String,
    /// The nonce, as the miner sent it (hex).
    pub nonce: String,
    /// Share difficulty it was judged against.
    pub difficulty: u64,
    /// Chain height of the job.
    pub height: u64,
    /// Whether the pool accepted it.
    pub accepted: bool,
    /// Why it was rejected, if it was.
    pub reason: Option<String>,
    /// When the pool received it.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
    /// Network difficulty of the job's template (what a per-share scheme prices the share
    /// against); none on rejected shares and on events of older versions.
    #[serde(default)]
    pub network_difficulty: Option<u64>,
    /// The template's whole block reward, subsidy and fees, atomic units (what FPPS pays on).
    #[serde(default)]
    pub reward: Option<u64>,
    /// The template's subsidy, its reward without the transactions' fees (what PPS pays on).
    #[serde(default)]
    pub subsidy: Option<u64>,
    /// The team the miner's session counts its shares for (`team=NAME` at login): a property
    /// of each share, so a session can only ever count its own work for a team.
    #[serde(default)]
    pub team: Option<String>,
}

impl Event for Share {
    /// The submission's job and nonce and the instant it was received (nanoseconds): a
    /// resubmitted nonce (a duplicate, rejected) is an event of its own and lands beside the
    /// accepted original, while a retried publish of the same event is stored once.
    fn dedupe_id(&self) -> String {
        format!(
            "share:{}:{}:{}:{}",
            self.pool,
            self.job_id,
            self.nonce,
            self.ts.timestamp_nanos_opt().unwrap_or(i64::MAX)
        )
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_text("miner", &self.miner, MAX_NAME_BYTES)?;
        check_text("job_id", &self.job_id, MAX_ID_BYTES)?;
        check_text("nonce", &self.nonce, MAX_ID_BYTES)?;
        if !self.worker.is_empty() {
            check_text("worker", &self.worker, MAX_NAME_BYTES)?;
        }
        if self.difficulty == 0 || self.difficulty > i64::MAX as u64 {
            return Err(Invalid::new("difficulty must be in 1..=i64::MAX"));
        }
        if self.height > i64::MAX as u64 {
            return Err(Invalid::new("height must fit in i64"));
        }
        if self
            .reason
            .as_ref()
            .is_some_and(|r| r.len() > MAX_REASON_BYTES)
        {
            return Err(Invalid::new(format!(
                "reason must be at most {MAX_REASON_BYTES} bytes"
            )));
        }
        if !self.accepted && self.reason.is_none() {
            return Err(Invalid::new("a rejected share needs a reason"));
        }
        if let Some(team) = &self.team {
            check_token("team", team)?;
        }
        for (name, value) in [
            ("network_difficulty", self.network_difficulty),
            ("reward", self.reward),
            ("subsidy", self.subsidy),
        ] {
            if value.is_some_and(|v| v > i64::MAX as u64) {
                return Err(Invalid::new(format!("{name} must fit in i64")));
            }
        }
        if self.network_difficulty == Some(0) {
            return Err(Invalid::new("network_difficulty must be above 0"));
        }
        if let (Some(subsidy), Some(reward)) = (self.subsidy, self.reward)
            && subsidy > reward
        {
            return Err(Invalid::new("subsidy must be at most the reward"));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("pool"),
            utf8("miner"),
            utf8("worker"),
            utf8("job_id"),
            utf8("nonce"),
            i64_field("difficulty"),
            i64_field("height"),
            Field::new("accepted", DataType::Boolean, false),
            utf8_opt("reason"),
            ts_field("ts"),
            // Added after the first release: nullable, at the end, so older tables evolve.
            i64_opt("network_difficulty"),
            i64_opt("reward"),
            i64_opt("subsidy"),
            utf8_opt("team"),
        ]
    }
}

/// What became of a block candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockStatus {
    /// The node accepted it.
    Submitted,
    /// The node refused it.
    Rejected,
    /// The node could not be reached while the block's template was current: the block was
    /// never seen by the network.
    Unreachable,
    /// Later: the block is on the main chain `confirmations` deep; its payouts are final.
    Confirmed,
    /// Later: another block holds its height on the main chain; its payouts are void.
    Orphaned,
}

/// A block a pool found, or a later change of its status (the same block with status
/// `confirmed` or `orphaned`): the `blocks` table holds one row per status a block went through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// Pool that found it.
    pub pool: String,
    /// Height it was found at.
    pub height: u64,
    /// Its hash (hex).
    pub hash: String,
    /// Miner whose share found it.
    pub miner: String,
    /// Worker whose share found it.
    pub worker: String,
    /// Job of the share that found it: with `nonce`, names that share in the `shares` table,
    /// where the block's PPLNS window ends.
    pub job_id: String,
    /// Nonce of the share that found it (hex, as the miner sent it).
    pub nonce: String,
    /// Block reward in atomic units.
    pub reward: u64,
    /// Network difficulty at the time.
    pub network_difficulty: u64,
    /// What the node said.
    pub status: BlockStatus,
    /// The node's error, if it refused.
    pub error: Option<String>,
    /// When it was found.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl Event for Block {
    /// One id per block and status: a status change is an event of its own.
    fn dedupe_id(&self) -> String {
        format!("block:{}:{}:{:?}", self.pool, self.hash, self.status)
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        if self.hash.len() != 64 || !self.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid::new("hash must be 64 hex characters"));
        }
        check_text("job_id", &self.job_id, MAX_ID_BYTES)?;
        check_text("nonce", &self.nonce, MAX_ID_BYTES)?;
        for (field, name) in [("miner", &self.miner), ("worker", &self.worker)] {
            if !name.is_empty() {
                check_text(field, name, MAX_NAME_BYTES)?;
            }
        }
        if self.reward > i64::MAX as u64
            || self.network_difficulty > i64::MAX as u64
            || self.height > i64::MAX as u64
        {
            return Err(Invalid::new(
                "reward, network_difficulty and height must fit in i64",
            ));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("pool"),
            i64_field("height"),
            utf8("hash"),
            utf8("miner"),
            utf8("worker"),
            utf8("job_id"),
            utf8("nonce"),
            i64_field("reward"),
            i64_field("network_difficulty"),
            utf8("status"),
            utf8_opt("error"),
            ts_field("ts"),
        ]
    }
}

/// Where a power or energy figure came from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum EnergySource {
    /// A revenue-grade meter.
    Meter,
    /// A PDU outlet.
    Pdu,
    /// The miner's own firmware.
    Firmware,
    /// A model-based estimate.
    Estimate,
}

impl EnergySource {
    /// The name it has on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A power reading from a meter, PDU or miner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    /// Site the machine is at.
    pub site: String,
    /// Machine (or meter) measured.
    pub machine: String,
    /// When it was measured.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
    /// Instantaneous power, watts.
    pub power_w: f64,
    /// Cumulative energy counter, watt-hours, where the device has one.
    pub energy_wh: Option<f64>,
    /// Which kind of device measured it.
    pub source: EnergySource,
}

impl Event for EnergyReading {
    fn dedupe_id(&self) -> String {
        // The source is part of the reading's identity: a machine's firmware and its meter
        // polled in the same millisecond are two readings, not one sent twice (without it the
        // stream's deduplication kept whichever came first and dropped the other unseen).
        format!(
            "energy:{}:{}:{}:{}",
            self.site,
            self.machine,
            self.source.as_str(),
            micros(self.ts)
        )
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_range("power_w", self.power_w, 0.0, policy.max_power_w)?;
        if let Some(wh) = self.energy_wh {
            check_range("energy_wh", wh, 0.0, f64::MAX)?;
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("site"),
            utf8("machine"),
            ts_field("ts"),
            f64_field("power_w"),
            f64_opt("energy_wh"),
            utf8("source"),
        ]
    }
}

/// A temperature, humidity or fan reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorReading {
    /// Site the sensor is at.
    pub site: String,
    /// Sensor id.
    pub sensor: String,
    /// What it measures.
    pub kind: SensorKind,
    /// The value, in the kind's unit.
    pub value: f64,
    /// When it was measured.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl Event for SensorReading {
    fn dedupe_id(&self) -> String {
        // What it measures is part of the reading, as an energy reading's source is.
        format!(
            "sensor:{}:{}:{}:{}",
            self.site,
            self.sensor,
            self.kind.as_str(),
            micros(self.ts)
        )
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        let (lo, hi) = self.kind.range();
        check_range("value", self.value, lo, hi)?;
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("site"),
            utf8("sensor"),
            utf8("kind"),
            f64_field("value"),
            ts_field("ts"),
        ]
    }
}

/// What a miner reports it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinerState {
    /// Hashing.
    Mining,
    /// Powered, not hashing.
    Idle,
    /// In low-power sleep (curtailed).
    Sleeping,
    /// Not answering.
    Offline,
    /// Reporting a fault.
    Error,
}

/// A miner's own status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerStatus {
    /// Site the miner is at.
    pub site: String,
    /// Machine id.
    pub machine: String,
    /// When it reported.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
    /// Reported hashrate, hashes per second.
    pub hashrate_hs: f64,
    /// Hottest chip or board temperature, °C.
    pub temp_c: Option<f64>,
    /// Fan speed, RPM.
    pub fan_rpm: Option<f64>,
    /// Power the firmware reports, watts.
    pub power_w: Option<f64>,
    /// Its state.
    pub state: MinerState,
}

impl Event for MinerStatus {
    fn dedupe_id(&self) -> String {
        format!("miner:{}:{}:{}", self.site, self.machine, micros(self.ts))
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_range("hashrate_hs", self.hashrate_hs, 0.0, f64::MAX)?;
        if let Some(t) = self.temp_c {
            check_range("temp_c", t, -60.0, 150.0)?;
        }
        if let Some(f) = self.fan_rpm {
            check_range("fan_rpm", f, 0.0, 100_000.0)?;
        }
        if let Some(p) = self.power_w {
            check_range("power_w", p, 0.0, policy.max_power_w)?;
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("site"),
            utf8("machine"),
            ts_field("ts"),
            f64_field("hashrate_hs"),
            f64_opt("temp_c"),
            f64_opt("fan_rpm"),
            f64_opt("power_w"),
            utf8("state"),
        ]
    }
}

/// Hashrate a cluster worker reports for itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashrateSample {
    /// Cluster the worker belongs to.
    pub cluster: String,
    /// Worker id.
    pub worker: String,
    /// When it was measured.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
    /// Hashes per second.
    pub hashrate_hs: f64,
}

impl Event for HashrateSample {
    fn dedupe_id(&self) -> String {
        format!(
            "hashrate:{}:{}:{}",
            self.cluster,
            self.worker,
            micros(self.ts)
        )
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_range("hashrate_hs", self.hashrate_hs, 0.0, f64::MAX)?;
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("cluster"),
            utf8("worker"),
            ts_field("ts"),
            f64_field("hashrate_hs"),
        ]
    }
}

/// A share a cluster worker submitted to its coordinator, with what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterShare {
    /// Cluster id.
    pub cluster: String,
    /// Worker id (its certificate's common name).
    pub worker: String,
    /// The coordinator's job id.
    pub job_id: String,
    /// The nonce (8 hex characters, blob order).
    pub nonce: String,
    /// The internal difficulty it was judged against.
    pub difficulty: u64,
    /// Whether the coordinator found it valid (hash recomputed, in the worker's slice, new).
    pub valid: bool,
    /// Why it was refused, if it was.
    pub reason: Option<String>,
    /// Whether it met the upstream target and was forwarded.
    pub forwarded: bool,
    /// The upstream pool's verdict on a forwarded share: `accepted` or its refusal.
    pub upstream_verdict: Option<String>,
    /// The upstream pool it went to (its URL), when forwarded.
    pub upstream: Option<String>,
    /// When the coordinator received it.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl Event for ClusterShare {
    /// Job, nonce and the instant it was received: a resubmission is its own (refused) event.
    fn dedupe_id(&self) -> String {
        format!(
            "cluster_share:{}:{}:{}:{}:{}",
            self.cluster,
            self.worker,
            self.job_id,
            self.nonce,
            self.ts.timestamp_nanos_opt().unwrap_or(i64::MAX)
        )
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        if self.job_id.is_empty() || self.nonce.is_empty() {
            return Err(Invalid::new("job_id and nonce must not be empty"));
        }
        if self.difficulty > i64::MAX as u64 {
            return Err(Invalid::new("difficulty must be at most i64::MAX"));
        }
        if !self.valid && self.reason.is_none() {
            return Err(Invalid::new("an invalid share needs a reason"));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("cluster"),
            utf8("worker"),
            utf8("job_id"),
            utf8("nonce"),
            i64_field("difficulty"),
            Field::new("valid", DataType::Boolean, false),
            utf8_opt("reason"),
            Field::new("forwarded", DataType::Boolean, false),
            utf8_opt("upstream_verdict"),
            utf8_opt("upstream"),
            ts_field("ts"),
        ]
    }
}

/// A change of a cluster coordinator's upstream connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterUpstream {
    /// Cluster id.
    pub cluster: String,
    /// The upstream pool (its URL).
    pub upstream: String,
    /// `connected`, `disconnected` or `failed`.
    pub state: String,
    /// Why, for a disconnection or failure.
    pub reason: Option<String>,
    /// When it happened.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl Event for ClusterUpstream {
    fn dedupe_id(&self) -> String {
        format!(
            "cluster_upstream:{}:{}:{}:{}",
            self.cluster,
            self.upstream,
            self.state,
            self.ts.timestamp_nanos_opt().unwrap_or(i64::MAX)
        )
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        if !matches!(self.state.as_str(), "connected" | "disconnected" | "failed") {
            return Err(Invalid::new(
                "state must be connected, disconnected or failed",
            ));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("cluster"),
            utf8("upstream"),
            utf8("state"),
            utf8_opt("reason"),
            ts_field("ts"),
        ]
    }
}

/// What a grid signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridSignalKind {
    /// Reduce load to `target_kw` by `deadline`.
    Curtail,
    /// The event is over; normal operation.
    Normal,
    /// An energy price for the coming interval.
    Price,
}

/// A demand-response event or a price from the utility or market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSignal {
    /// Site it applies to.
    pub site: String,
    /// The utility's event id (or a price interval id).
    pub event_id: String,
    /// What it asks for.
    pub kind: GridSignalKind,
    /// Target site load, kW (curtail).
    pub target_kw: Option<f64>,
    /// When the target must be met (curtail).
    pub deadline: Option<DateTime<Utc>>,
    /// Price, currency units per MWh (price).
    pub price_per_mwh: Option<f64>,
    /// When it was issued.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl Event for GridSignal {
    fn dedupe_id(&self) -> String {
        format!("grid:{}:{}:{}", self.site, self.event_id, micros(self.ts))
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_text("event_id", &self.event_id, MAX_ID_BYTES)?;
        match self.kind {
            GridSignalKind::Curtail => {
                let kw = self
                    .target_kw
                    .ok_or_else(|| Invalid::new("a curtail signal needs target_kw"))?;
                check_range("target_kw", kw, 0.0, f64::MAX)?;
                let deadline = self
                    .deadline
                    .ok_or_else(|| Invalid::new("a curtail signal needs a deadline"))?;
                if deadline < self.ts {
                    return Err(Invalid::new("deadline is before the signal's ts"));
                }
            }
            GridSignalKind::Price => {
                let p = self
                    .price_per_mwh
                    .ok_or_else(|| Invalid::new("a price signal needs price_per_mwh"))?;
                check_range("price_per_mwh", p, -1e6, 1e6)?;
            }
            GridSignalKind::Normal => {}
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("site"),
            utf8("event_id"),
            utf8("kind"),
            f64_opt("target_kw"),
            Field::new("deadline", crate::arrow_rows::ts_type(), true),
            f64_opt("price_per_mwh"),
            ts_field("ts"),
        ]
    }
}

impl Event for RegistryEntry {
    fn dedupe_id(&self) -> String {
        format!("registry:{}:{}", self.key, micros(self.at))
    }
    fn ts(&self) -> DateTime<Utc> {
        self.at
    }
    /// Registry values are configuration, not readings: no time window applies.
    fn check_values(&self, _policy: &ValidationPolicy, _now: DateTime<Utc>) -> Result<(), Invalid> {
        self.check().map_err(|e| Invalid::new(e.to_string()))
    }
    fn fields() -> Vec<Field> {
        RegistryChange::fields()
    }
}

/// What an operator does to a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteAction {
    /// Records a violation the pipeline did not see (a manual finding).
    Open,
    /// Resolves an open violation (manual or found by the pipeline).
    Resolve,
}

/// An operator's note on violations, from the API (`control.violation.<site>`): open a manual
/// violation or resolve one, with a note, in the `violations` table through its pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationNote {
    /// The site.
    pub site: String,
    /// Open or resolve.
    pub action: NoteAction,
    /// The violation to resolve (`resolve`).
    #[serde(default)]
    pub id: Option<String>,
    /// What it is about (`open`): e.g. `power_allocation`, `temperature`, `noise`, `access`.
    #[serde(default)]
    pub kind: Option<String>,
    /// How bad (`open`): warning, critical, violation, emergency.
    #[serde(default)]
    pub severity: Option<String>,
    /// The machine, sensor or meter (`open`; the site when none).
    #[serde(default)]
    pub subject: Option<String>,
    /// The operator's note.
    pub note: String,
    /// The token name that wrote it.
    pub by: String,
    /// When.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl Event for ViolationNote {
    fn dedupe_id(&self) -> String {
        format!(
            "violation-note:{}:{}:{}",
            self.site,
            self.by,
            micros(self.ts)
        )
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        if self.note.trim().is_empty() || self.note.len() > 2000 {
            return Err(Invalid::new("note must be 1-2000 characters"));
        }
        match self.action {
            NoteAction::Open => {
                let kind = self.kind.as_deref().unwrap_or_default();
                check_token("kind", kind)?;
                match self.severity.as_deref() {
                    Some("warning" | "critical" | "violation" | "emergency") => {}
                    other => {
                        return Err(Invalid::new(format!(
                            "severity {other:?} must be warning, critical, violation or emergency"
                        )));
                    }
                }
                if let Some(subject) = &self.subject {
                    check_token("subject", subject)?;
                }
            }
            NoteAction::Resolve => {
                if self.id.as_deref().is_none_or(str::is_empty) {
                    return Err(Invalid::new("resolving needs the violation's id"));
                }
            }
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("site"),
            utf8("action"),
            utf8_opt("id"),
            utf8_opt("kind"),
            utf8_opt("severity"),
            utf8_opt("subject"),
            utf8("note"),
            utf8("by"),
            ts_field("ts"),
        ]
    }
}

/// Who besides adit's own parts may publish a kind: each row of `event_kinds!` says, so a new
/// kind is pushable only where its row allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// HTTP ingest (any operator) and the simulator.
    Http,
    /// The simulator only: money (shares and blocks) comes from the pool, never over HTTP.
    Simulator,
    /// Nobody: written only by adit's own parts (the registry API, the controller, …).
    Never,
}

/// Who lands a kind in its table: each row of `event_kinds!` says, and a test fails when a
/// kind's table has no writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Land {
    /// The landing of its stream (TELEMETRY, GRID, MINING), as it arrived.
    Stream,
    /// A landing of its own that reads only its subjects (a CONTROL or RESULTS kind that no
    /// pipeline otherwise reads), partitioned by its subject's first token.
    Own,
    /// A pipeline that adds what it knows to each row (the registry's replaced value, a
    /// note's violation, a command's outcome): that pipeline lists the table in its outputs.
    Pipeline,
}

/// One token of a kind's subject, from its row's `by [...]`: a field of the record
/// (`site`), a field the record checks itself because it may span tokens (`(key)`), or a
/// constant (`"coordinator"`).
macro_rules! subject_token {
    ($event:ident, ($field:ident)) => {
        $event.$field.as_str()
    };
    ($event:ident, $field:ident) => {
        $event.$field.as_str()
    };
    ($event:ident, $constant:literal) => {
        $constant
    };
}

/// Refuses a record whose `by [...]` field is not one subject token, naming the field.
macro_rules! checked_token {
    ($event:ident, ($field:ident)) => {};
    ($event:ident, $field:ident) => {
        check_token(stringify!($field), &$event.$field)?
    };
    ($event:ident, $constant:literal) => {};
}

/// Declares every event kind once: its variant, record type, name, subject (its prefix and the record's tokens), stream,
/// table, who may push it and who lands it; [`EventKind`], [`AnyEvent`] and all their per-kind dispatch are
/// generated from it.
macro_rules! event_kinds {
    ($(
        $(#[$doc:meta])*
        $kind:ident($ty:ident) = $name:literal,
        subject $p1:literal . $p2:literal by [$($tok:tt),+], stream $stream:ident,
        table $table:ident, push $push:ident, land $land:ident;
    )+) => {
        /// The kinds of event, one per record type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EventKind {
            $( $(#[$doc])* $kind, )+
        }

        /// Any one event, after decoding.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyEvent {
            $( $(#[$doc])* $kind($ty), )+
        }

        impl EventKind {
            /// Every kind.
            pub const ALL: &[EventKind] = &[$(Self::$kind),+];

            /// The kind's name, as used in URLs (`/ingest/energy`).
            pub fn name(self) -> &'static str {
                match self { $(Self::$kind => $name,)+ }
            }

            /// The kind a subject carries, from its first two tokens (`*`: any second token;
            /// the first declared match wins).
            pub fn from_subject(subject: &str) -> Option<Self> {
                let mut tokens = subject.split('.');
                let prefix = (tokens.next()?, tokens.next()?);
                $( if prefix.0 == $p1 && ($p2 == "*" || prefix.1 == $p2) {
                    return Some(Self::$kind);
                } )+
                None
            }

            /// Its subjects' first two tokens (`telemetry.energy`; `*` for any token).
            pub fn subject_prefix(self) -> &'static str {
                match self { $(Self::$kind => concat!($p1, ".", $p2),)+ }
            }

            /// The tokens every subject of this kind begins with (`control` where the second
            /// token is the record's first: `control.<site>.<target>`).
            pub fn route_prefix(self) -> &'static str {
                match self {
                    $(Self::$kind => if $p2 == "*" { $p1 } else { concat!($p1, ".", $p2) },)+
                }
            }

            /// How many tokens a record adds after [`EventKind::route_prefix`].
            pub fn route_tokens(self) -> usize {
                match self { $(Self::$kind => [$(stringify!($tok)),+].len(),)+ }
            }

            /// Who lands this kind in its table.
            pub fn land(self) -> Land {
                match self { $(Self::$kind => Land::$land,)+ }
            }

            /// The stream that carries this kind.
            pub fn stream(self) -> &'static str {
                match self { $(Self::$kind => names::$stream,)+ }
            }

            /// Every kind `stream` carries, in declaration order: what a pipeline reading a
            /// whole stream accepts, so a kind added to the table is never refused there as
            /// unexpected.
            pub fn on_stream(stream: &str) -> Vec<Self> {
                Self::ALL.iter().copied().filter(|k| k.stream() == stream).collect()
            }

            /// Who besides adit's own parts may publish this kind.
            pub fn push(self) -> Push {
                match self { $(Self::$kind => Push::$push,)+ }
            }

            /// The table this kind lands in.
            pub fn table(self) -> &'static str {
                match self { $(Self::$kind => names::$table,)+ }
            }

            /// The schema of this kind's table: the event's fields, then `seq` and `date`.
            pub fn table_schema(self) -> SchemaRef {
                stamped_schema(match self { $(Self::$kind => $ty::fields(),)+ })
            }

            /// Parses and validates one JSON message of this kind.
            pub fn decode(
                self,
                payload: &[u8],
                policy: &ValidationPolicy,
                now: DateTime<Utc>,
            ) -> Result<AnyEvent, Invalid> {
                match self { $(Self::$kind => parse::<$ty>(payload, policy, now),)+ }
            }

            /// Encodes `rows` (all of this kind, with their stream sequences) as one batch of
            /// [`EventKind::table_schema`]. Rows of another kind are skipped.
            pub fn batch(self, rows: &[(u64, AnyEvent)]) -> Result<RecordBatch> {
                match self {
                    $(Self::$kind => encode::<$ty>(rows, |e| match e {
                        AnyEvent::$kind(x) => Some(x),
                        _ => None,
                    }),)+
                }
            }
        }

        $(impl Routed for $ty {
            fn route(&self) -> String {
                let mut subject = String::from(EventKind::$kind.route_prefix());
                $(
                    subject.push('.');
                    subject.push_str(subject_token!(self, $tok));
                )+
                subject
            }
            fn route_is(&self, subject: &str) -> bool {
                names::is_joined(
                    subject,
                    &[EventKind::$kind.route_prefix(), $(subject_token!(self, $tok)),+],
                )
            }
            fn check_route(&self) -> Result<(), Invalid> {
                $( checked_token!(self, $tok); )+
                Ok(())
            }
        })+

        $(impl Kinded for $ty {
            const KIND: EventKind = EventKind::$kind;
            fn into_any(self) -> AnyEvent {
                AnyEvent::$kind(self)
            }
        })+

        impl AnyEvent {
            /// Its kind.
            pub fn kind(&self) -> EventKind {
                match self { $(Self::$kind(_) => EventKind::$kind,)+ }
            }

            /// Its event time.
            pub fn ts(&self) -> DateTime<Utc> {
                match self { $(Self::$kind(e) => e.ts(),)+ }
            }

            /// The subject it belongs on.
            pub fn subject(&self) -> String {
                match self { $(Self::$kind(e) => e.subject(),)+ }
            }

            /// Whether `subject` is the one it belongs on.
            pub fn is_on(&self, subject: &str) -> bool {
                match self { $(Self::$kind(e) => e.is_on(subject),)+ }
            }

            /// Its subject, dedupe id and JSON body, ready to publish.
            pub fn to_message(&self) -> (String, String, Vec<u8>) {
                match self { $(Self::$kind(e) => parts(e),)+ }
            }
        }
    };
}

event_kinds! {
    /// [`Share`].
    Share(Share) = "share", subject "mining"."share" by [pool], stream STREAM_MINING,
        table TABLE_SHARES, push Simulator, land Stream;
    /// [`Block`].
    Block(Block) = "block", subject "mining"."block" by [pool], stream STREAM_MINING,
        table TABLE_BLOCKS, push Simulator, land Stream;
    /// [`NetworkState`]: the terms a pool mines on, one per new height.
    Network(NetworkState) = "network", subject "mining"."network" by [pool],
        stream STREAM_MINING, table TABLE_NETWORK, push Simulator, land Stream;
    /// [`EnergyReading`].
    Energy(EnergyReading) = "energy", subject "telemetry"."energy" by [site, machine],
        stream STREAM_TELEMETRY, table TABLE_ENERGY_READINGS, push Http, land Stream;
    /// [`SensorReading`].
    Sensor(SensorReading) = "sensor", subject "telemetry"."sensor" by [site, sensor],
        stream STREAM_TELEMETRY, table TABLE_SENSOR_READINGS, push Http, land Stream;
    /// [`MinerStatus`].
    Miner(MinerStatus) = "miner", subject "telemetry"."miner" by [site, machine],
        stream STREAM_TELEMETRY, table TABLE_MINER_STATUS, push Http, land Stream;
    /// [`HashrateSample`].
    Hashrate(HashrateSample) = "hashrate", subject "telemetry"."hashrate" by [cluster, worker],
        stream STREAM_TELEMETRY, table TABLE_HASHRATE_SAMPLES, push Http, land Stream;
    /// [`ClusterShare`].
    ClusterShare(ClusterShare) = "cluster_share",
        subject "telemetry"."cluster_share" by [cluster, worker],
        stream STREAM_TELEMETRY, table TABLE_CLUSTER_SHARES, push Http, land Stream;
    /// [`ClusterUpstream`] (its last token keeps the shape `telemetry.<kind>.<cluster>.<source>`
    /// the telemetry landing partitions by).
    ClusterUpstream(ClusterUpstream) = "cluster_upstream",
        subject "telemetry"."cluster_upstream" by [cluster, "coordinator"],
        stream STREAM_TELEMETRY, table TABLE_CLUSTER_UPSTREAM, push Http, land Stream;
    /// [`CustomMetric`]: a value posted under a `custom_` name, from its source.
    Metric(CustomMetric) = "metric", subject "telemetry"."metric" by [source, name],
        stream STREAM_TELEMETRY, table TABLE_CUSTOM_METRICS, push Http, land Stream;
    /// [`GridSignal`].
    Grid(GridSignal) = "grid", subject "grid"."signal" by [site], stream STREAM_GRID,
        table TABLE_GRID_SIGNALS, push Http, land Stream;
    /// [`CoinPrice`]: a coin's market price, from a price feed or posted.
    CoinPrice(CoinPrice) = "coin_price", subject "grid"."coin" by [coin], stream STREAM_GRID,
        table TABLE_COIN_PRICES, push Http, land Stream;
    /// [`RegistryEntry`]: a value of the registry bucket, read from the bucket's own stream
    /// (its key, `site.s1`, is several tokens, checked by the entry). Its table
    /// (`registry_changes`) is written by the `registry` pipeline, which adds the value each
    /// change replaced; [`EventKind::batch`] does not apply to it.
    Registry(RegistryEntry) = "registry", subject "$KV"."adit_registry" by [(key)],
        stream STREAM_REGISTRY, table TABLE_REGISTRY_CHANGES, push Never, land Pipeline;
    /// [`ViolationNote`]: an operator's note, landed in `violation_notes` by the `violations`
    /// pipeline (the `violation` token is reserved in the CONTROL subject space).
    ViolationNote(ViolationNote) = "violation_note", subject "control"."violation" by [site],
        stream STREAM_CONTROL, table TABLE_VIOLATION_NOTES, push Never, land Pipeline;
    /// [`AlertEvent`]: an alert's change of state, landed in `alerts`.
    Alert(AlertEvent) = "alert", subject "results"."alert" by [severity], stream STREAM_RESULTS,
        table TABLE_ALERTS, push Never, land Own;
    /// [`NotificationAttempt`]: one attempt to notify, landed in `notifications`.
    Notification(NotificationAttempt) = "notification",
        subject "results"."notification" by [receiver], stream STREAM_RESULTS,
        table TABLE_NOTIFICATIONS, push Never, land Own;
    /// [`Override`]: an operator's override of the controller, landed in `overrides` by the
    /// `curtailment` pipeline.
    Override(Override) = "override", subject "control"."override" by [site],
        stream STREAM_CONTROL, table TABLE_OVERRIDES, push Never, land Pipeline;
    /// [`AuditEntry`]: an action through the API by a token of its role, landed in `audit`.
    Audit(AuditEntry) = "audit", subject "control"."audit" by [role], stream STREAM_CONTROL,
        table TABLE_AUDIT, push Never, land Own;
    /// [`Inspection`]: an inspection of a site or a pool, recorded over the API, landed in
    /// `inspections`.
    Inspection(Inspection) = "inspection", subject "control"."inspection" by [target],
        stream STREAM_CONTROL, table TABLE_INSPECTIONS, push Never, land Own;
    /// [`Competition`]: a time-boxed competition between a pool's teams, set over the API,
    /// landed in `competitions`.
    Competition(Competition) = "competition", subject "control"."competition" by [pool],
        stream STREAM_CONTROL, table TABLE_COMPETITIONS, push Never, land Own;
    /// [`CommandOutcome`]: an actuator's report of one attempt, landed in `commands` by the
    /// `curtailment` pipeline.
    CommandOutcome(CommandOutcome) = "command_outcome", subject "control"."outcome" by [site],
        stream STREAM_CONTROL, table TABLE_COMMANDS, push Never, land Pipeline;
    /// [`Command`]: `control.<site>.<target>` (a machine, or `fans`), for the actuators
    /// (declared last: its second token is the site). Its `sent` line in `commands` is the
    /// curtailment pipeline's.
    Command(Command) = "command", subject "control"."*" by [site, target],
        stream STREAM_CONTROL, table TABLE_COMMANDS, push Never, land Pipeline;
}

impl EventKind {
    /// The subject filter of this kind's records: every one (`None`: `telemetry.energy.>`), or
    /// those of one partition, the value of the record's first subject token
    /// (`telemetry.energy.s1.*`; `{part}` gives a pipeline's partition template).
    pub fn filter(self, part: Option<&str>) -> String {
        let prefix = self.route_prefix();
        let Some(part) = part else {
            return format!("{prefix}.>");
        };
        let mut filter = format!("{prefix}.{part}");
        for _ in 1..self.route_tokens() {
            filter.push_str(".*");
        }
        filter
    }

    /// Whether clients may publish this kind themselves (HTTP ingest, the simulator): its
    /// row of the table says so ([`Push`]).
    pub fn pushable(self) -> bool {
        self.push() != Push::Never
    }

    /// Whether HTTP ingest may publish this kind: a [`pushable`](Self::pushable) kind that
    /// carries no money. Shares and blocks (the MINING stream) come only from the pool: PPLNS
    /// cannot tell a posted share from a mined one, so a posted share or block would be paid
    /// (issue 23).
    pub fn http_pushable(self) -> bool {
        self.push() == Push::Http && self.stream() != crate::names::STREAM_MINING
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// Parses and validates one JSON message as a `T`.
fn parse<T: Kinded>(
    payload: &[u8],
    policy: &ValidationPolicy,
    now: DateTime<Utc>,
) -> Result<AnyEvent, Invalid> {
    let event: T = serde_json::from_slice(payload)
        .map_err(|e| Invalid::new(format!("invalid {} JSON: {e}", T::KIND.name())))?;
    event.validate(policy, now)?;
    Ok(event.into_any())
}

/// Encodes the rows `pick` finds to be `T`s as one batch of `T`'s table schema.
fn encode<T: Kinded>(
    rows: &[(u64, AnyEvent)],
    pick: impl Fn(&AnyEvent) -> Option<&T>,
) -> Result<RecordBatch> {
    let picked: Vec<(u64, &T)> = rows
        .iter()
        .filter_map(|(seq, e)| pick(e).map(|t| (*seq, t)))
        .collect();
    stamped_batch(T::KIND.name(), T::KIND.table_schema(), &picked, T::ts)
}

/// An event's subject, dedupe id and JSON body.
fn parts<T: Event>(e: &T) -> (String, String, Vec<u8>) {
    // Serializing these plain structs (strings, numbers, timestamps) cannot fail.
    let body = serde_json::to_vec(e).expect("events serialize to JSON");
    (e.subject(), e.dedupe_id(), body)
}

#[cfg(test)]
mod tests;
