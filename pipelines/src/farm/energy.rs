//! Energy per machine and per site per minute, integrated from power readings as they
//! arrive on the TELEMETRY stream (`telemetry.energy.<site>.<machine>`).
//!
//! **Gap rule**: between two consecutive readings of one machine, energy is the integral of
//! power interpolated linearly between them, or the difference of the kWh counters when both
//! readings carry one and it did not go backwards. An interval longer than `max_gap` is a gap:
//! it contributes no energy, nothing is interpolated across it, and the minutes it spans show
//! it as lower `quality` (`covered_s / 60`).
//!
//! **When a minute is final**: each site has an event-time watermark ([`crate::watermark`]):
//! the lowest newest-reading time of its machines that reported within `idle`, less `grace`,
//! and never past processing time less `grace`. A site's minutes close, for all its machines
//! at once, when the watermark is `max_gap` past their end (a later reading could still
//! interpolate into them before that). A machine whose clock runs fast cannot close its site's
//! minutes early; one that falls silent stops holding them open after `idle`. A reading for a
//! minute already closed is *late*: counted (`adit_pipeline_late_events_total`), kept in
//! `energy_readings`, never used to rewrite a committed minute.
//!
//! **Profit**: the pipeline also reads the pools' shares, the sites' prices and the coins'
//! prices, and prices each machine's closed settlement interval ([`crate::farm::profit`]).
//!
//! State (the watermarks and each machine's readings still needed) is snapshotted into the
//! epoch record every `snapshot_every`; a restart replays the epochs since.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use adit_config::{Checked, check};
use adit_schemas::names::{
    TABLE_ENERGY_1D, TABLE_ENERGY_1H, TABLE_ENERGY_SETTLEMENT, TABLE_MACHINE_ENERGY_1M,
    TABLE_MACHINE_PROFIT, TABLE_SITE_ENERGY_1M, energy_result_subject,
};
use adit_schemas::registry::RegistryView;
use adit_schemas::results::{EnergyPeriod, MachineEnergyMinute, MachineProfit, SiteEnergyMinute};
use adit_schemas::{
    AnyEvent, EnergySource, EventKind, GridSignalKind, MinerState, Share, to_batch,
};
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::farm::energy_periods::{PeriodKind, Periods};
use crate::farm::profit::{self, Profit, Taken};
use crate::inputs::{grid_input, registry_input};
use crate::pool::pplns::PplnsConfig;
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput, StreamInput,
};
use crate::runtime::timer::Timer;
use crate::watermark::{WatermarkConfig, Watermarks};

mod integrate;

use integrate::MINUTE_US;
pub use integrate::{Reading, integrate, site_minutes};

/// Energy pipeline settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyConfig {
    /// Longest interval between two readings that still counts (the gap rule).
    #[serde(with = "humantime_serde")]
    pub max_gap: Duration,
    /// Allowed lateness: how far behind its machine's newest reading a reading may arrive.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// A machine silent this long stops holding its site's minutes open.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// How often minutes are closed when no reading arrives (processing time moves on).
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// How often the state goes into the epoch record.
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        Self {
            max_gap: Duration::from_secs(120),
            grace: Duration::from_secs(5),
            idle: Duration::from_secs(120),
            tick: Duration::from_secs(5),
            snapshot_every: Duration::from_secs(10),
        }
    }
}

impl EnergyConfig {
    /// Checks the values, naming the key.
    pub fn validate(&self) -> Checked {
        check(
            !self.max_gap.is_zero(),
            "pipelines.energy.max_gap",
            "must be more than 0",
        )?;
        check(
            !self.tick.is_zero(),
            "pipelines.energy.tick",
            "must be more than 0",
        )?;
        check(
            self.idle >= self.grace,
            "pipelines.energy.idle",
            "must be at least pipelines.energy.grace",
        )?;
        check(
            self.max_gap <= Duration::from_secs(24 * 3600),
            "pipelines.energy.max_gap",
            "must be at most 24h",
        )
    }
}

/// One machine's readings still needed and how far its minutes are computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct MachineBuffer {
    /// Site.
    site: String,
    /// Machine.
    machine: String,
    /// Minutes before this (µs) are computed; readings before it are late.
    closed_us: i64,
    /// Readings from `closed_us - max_gap` on, sorted by time.
    readings: Vec<StoredReading>,
}

/// A reading as kept in state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredReading {
    /// µs.
    t: i64,
    /// W.
    p: f64,
    /// Wh counter.
    e: Option<f64>,
    /// Source kind.
    s: String,
}

impl From<&StoredReading> for Reading {
    fn from(r: &StoredReading) -> Self {
        Reading {
            ts_us: r.t,
            power_w: r.p,
            energy_wh: r.e,
            source: r.s.clone(),
        }
    }
}

/// A machine's last status report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Status {
    /// µs.
    t: i64,
    /// Since when it has said it was mining without a break, µs.
    #[serde(default)]
    since: i64,
    /// Reported hashrate, H/s.
    hs: f64,
    /// Whether it said it was mining.
    mining: bool,
}

/// What the energy pipeline remembers between steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyState {
    /// The registry (settlement intervals, time zones, pools, nominal power).
    #[serde(default)]
    registry: RegistryView,
    /// `site/machine` → its last status report.
    #[serde(default)]
    status: BTreeMap<String, Status>,
    /// Settlement, hour and day periods still open.
    #[serde(default)]
    periods: Periods,
    /// Watermarks: group = site, source = machine.
    watermarks: Watermarks,
    /// `site/machine` → its buffer.
    machines: BTreeMap<String, MachineBuffer>,
    /// Site → minutes before this (µs) are computed.
    sites: BTreeMap<String, i64>,
    /// Each machine's earnings and the prices, for its profit per settlement interval.
    #[serde(default)]
    profit: Profit,
}

/// The energy pipeline.
#[derive(Debug, Clone)]
pub struct Energy {
    /// Settings.
    config: EnergyConfig,
    /// The payouts' settings, for each pool's fee (a share's revenue is what its miner is
    /// owed after it).
    fees: PplnsConfig,
}

impl Energy {
    /// With `config` (validated), and `fees` (the PPLNS settings, for each pool's fee).
    pub fn new(config: EnergyConfig, fees: PplnsConfig) -> Self {
        Self { config, fees }
    }

    fn watermark_config(&self) -> WatermarkConfig {
        WatermarkConfig::new(self.config.grace, self.config.idle)
    }

    /// Takes a step's shares and prices into the profit accounts; returns how many shares
    /// came for an interval already closed.
    fn take_market(&self, state: &mut EnergyState, input: &StepInput) -> u64 {
        for (_, event) in input.of(EventKind::Grid) {
            if let AnyEvent::Grid(g) = event
                && g.kind == GridSignalKind::Price
                && let Some(price) = g.price_per_mwh
            {
                state
                    .profit
                    .take_site_price(&g.site, g.ts.timestamp_micros(), price);
            }
        }
        for (_, event) in input.of(EventKind::CoinPrice) {
            if let AnyEvent::CoinPrice(quote) = event {
                state.profit.take_coin_price(quote);
            }
        }
        let mut shares = input.of(EventKind::Share).peekable();
        if shares.peek().is_none() {
            return 0;
        }
        let who = profit::identities(&state.registry);
        let mut late = 0;
        for (_, event) in shares {
            let fee_bps = |s: &Share| self.fees.rules(&s.pool, s.height).fee_bps;
            if let AnyEvent::Share(share) = event
                && state.profit.take_share(
                    &state.registry,
                    &who,
                    (share, fee_bps(share)),
                    &state.sites,
                ) == Taken::Late
            {
                late += 1;
            }
        }
        late
    }

    /// Takes one reading into the state; returns whether it was late.
    fn take(state: &mut EnergyState, r: &adit_schemas::EnergyReading, now_us: i64) -> bool {
        let ts = r.ts.timestamp_micros();
        state.watermarks.observe(&r.site, &r.machine, ts, now_us);
        let site_closed = state.sites.get(&r.site).copied().unwrap_or(i64::MIN);
        let buffer = state
            .machines
            .entry(format!("{}/{}", r.site, r.machine))
            .or_insert_with(|| MachineBuffer {
                site: r.site.clone(),
                machine: r.machine.clone(),
                closed_us: site_closed.max(ts.div_euclid(MINUTE_US) * MINUTE_US),
                readings: Vec::new(),
            });
        if ts < buffer.closed_us {
            return true;
        }
        let stored = StoredReading {
            t: ts,
            p: r.power_w,
            e: r.energy_wh,
            s: r.source.as_str().to_string(),
        };
        let at = buffer.readings.partition_point(|x| x.t <= ts);
        buffer.readings.insert(at, stored);
        false
    }

    /// Closes every site's minutes its watermark allows; returns machine and site rows.
    fn close(
        &self,
        state: &mut EnergyState,
        now_us: i64,
    ) -> (Vec<MachineEnergyMinute>, Vec<SiteEnergyMinute>) {
        let max_gap_us = self.config.max_gap.as_micros() as i64;
        let sites: Vec<String> = state.watermarks.groups().map(str::to_string).collect();
        let mut machine_rows = Vec::new();
        let mut closing = Vec::new();
        for site in sites {
            let Some(mark) = state
                .watermarks
                .advance(&site, self.watermark_config(), now_us)
            else {
                continue;
            };
            let close_to = (mark.saturating_sub(max_gap_us)).div_euclid(MINUTE_US) * MINUTE_US;
            let closed = state.sites.entry(site.clone()).or_insert(i64::MIN);
            if close_to <= *closed {
                continue;
            }
            closing.push((site.clone(), *closed, close_to));
            *closed = close_to;
            let prefix = format!("{site}/");
            for (_, buffer) in state
                .machines
                .range_mut(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
            {
                if buffer.closed_us >= close_to {
                    continue;
                }
                let readings = preferred(&buffer.readings);
                machine_rows.extend(integrate(
                    &buffer.site,
                    &buffer.machine,
                    &readings,
                    buffer.closed_us,
                    close_to,
                    max_gap_us,
                ));
                buffer.closed_us = close_to;
                let keep_from = close_to - max_gap_us;
                buffer.readings.retain(|r| r.t >= keep_from);
            }
        }
        let measured: BTreeSet<(String, String, i64)> = machine_rows
            .iter()
            .map(|m| {
                (
                    m.site.clone(),
                    m.machine.clone(),
                    m.minute.timestamp_micros(),
                )
            })
            .collect();
        for (site, from_us, to_us) in closing {
            machine_rows.extend(self.estimates(state, &site, from_us, to_us, &measured));
        }
        let site_rows = site_minutes(&machine_rows);
        (machine_rows, site_rows)
    }

    /// Estimated minutes for registered machines of `site` that said they were mining but
    /// had no power reading, in `[from_us, to_us)` (at most the last hour).
    fn estimates(
        &self,
        state: &EnergyState,
        site: &str,
        from_us: i64,
        to_us: i64,
        measured: &BTreeSet<(String, String, i64)>,
    ) -> Vec<MachineEnergyMinute> {
        let max_gap_us = self.config.max_gap.as_micros() as i64;
        let from_us = from_us.max(to_us - 60 * MINUTE_US);
        let mut out = Vec::new();
        for m in state.registry.machines().filter(|m| m.site == site) {
            let Some(status) = state.status.get(&format!("{site}/{}", m.id)) else {
                continue;
            };
            if !status.mining {
                continue;
            }
            // Only minutes wholly within its mining streak, while its reports were fresh.
            let mut minute =
                from_us.max(status.since.div_euclid(MINUTE_US) * MINUTE_US + MINUTE_US);
            while minute < to_us {
                let heard = status.t >= minute - max_gap_us;
                let key = (site.to_string(), m.id.clone(), minute);
                if heard && !measured.contains(&key) {
                    out.push(estimate(site, &m.id, m.nominal_power_w, minute));
                }
                minute += MINUTE_US;
            }
        }
        out
    }

    /// Each closed machine minute with the machine's reported hashrate in it, if fresh.
    fn with_hashrate(
        &self,
        state: &EnergyState,
        rows: &[MachineEnergyMinute],
    ) -> Vec<(MachineEnergyMinute, Option<f64>)> {
        let max_gap_us = self.config.max_gap.as_micros() as i64;
        rows.iter()
            .map(|m| {
                let minute = m.minute.timestamp_micros();
                let hs = state
                    .status
                    .get(&format!("{}/{}", m.site, m.machine))
                    .filter(|s| s.mining && (s.t - minute).abs() <= max_gap_us + MINUTE_US)
                    .map(|s| s.hs);
                (m.clone(), hs)
            })
            .collect()
    }
}

fn period_table(name: &str) -> OutputTable {
    OutputTable::dated(name, EnergyPeriod::schema())
}

/// Source rank: meter, PDU, firmware, estimate.
fn rank(source: &str) -> u8 {
    match source {
        "meter" => 0,
        "pdu" => 1,
        "firmware" => 2,
        "estimate" => 3,
        _ => 4,
    }
}

/// The readings of the best source a machine has (meter > PDU > firmware), so two devices
/// measuring the same machine are never added together.
fn preferred(readings: &[StoredReading]) -> Vec<Reading> {
    let best = readings.iter().map(|r| rank(&r.s)).min().unwrap_or(0);
    readings
        .iter()
        .filter(|r| rank(&r.s) == best)
        .map(Reading::from)
        .collect()
}

/// A minute of a machine's nominal power, for a machine that said it was mining while
/// nothing measured it.
fn estimate(site: &str, machine: &str, nominal_w: f64, minute_us: i64) -> MachineEnergyMinute {
    let ts = Utc.timestamp_micros(minute_us).single().unwrap_or_default();
    MachineEnergyMinute {
        site: site.into(),
        machine: machine.into(),
        minute: ts,
        energy_wh: nominal_w / 60.0,
        avg_power_w: nominal_w,
        max_power_w: nominal_w,
        samples: 0,
        covered_s: 60.0,
        quality: 0.0,
        method: "estimate".into(),
        source: EnergySource::Estimate.as_str().into(),
        date: ts.date_naive(),
    }
}

impl Pipeline for Energy {
    type State = EnergyState;

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: "energy".into(),
            inputs: vec![
                StreamInput::of("energy", EventKind::Energy),
                registry_input(),
                StreamInput::of("miner", EventKind::Miner),
                StreamInput::of_all("shares", EventKind::Share),
                grid_input(),
                StreamInput::of_all("coins", EventKind::CoinPrice),
            ],
            outputs: vec![
                period_table(TABLE_ENERGY_SETTLEMENT),
                OutputTable::dated(TABLE_MACHINE_PROFIT, MachineProfit::schema()),
                period_table(TABLE_ENERGY_1H),
                period_table(TABLE_ENERGY_1D),
                OutputTable::dated(TABLE_MACHINE_ENERGY_1M, MachineEnergyMinute::schema()),
                OutputTable::dated(TABLE_SITE_ENERGY_1M, SiteEnergyMinute::schema()),
            ],
            timers: vec![Timer::Every {
                name: "close".into(),
                period: self.config.tick,
            }],
            snapshot_every: self.config.snapshot_every,
        }
    }

    async fn step(&self, state: &mut EnergyState, input: StepInput) -> Result<StepOutput> {
        let now_us = input.now.timestamp_micros();
        let mut out = StepOutput::default();
        for decoded in &input.inputs {
            for (_, event) in decoded.of(EventKind::Registry) {
                if let AnyEvent::Registry(entry) = event {
                    state.registry.apply(entry);
                }
            }
            for (_, event) in decoded.of(EventKind::Miner) {
                if let AnyEvent::Miner(m) = event {
                    let t = m.ts.timestamp_micros();
                    let seen = state.status.entry(format!("{}/{}", m.site, m.machine));
                    let mining = m.state == MinerState::Mining;
                    let status = Status {
                        t,
                        since: t,
                        hs: m.hashrate_hs,
                        mining,
                    };
                    seen.and_modify(|s| {
                        if t >= s.t {
                            let since = if s.mining && mining { s.since } else { t };
                            *s = Status { since, ..status };
                        }
                    })
                    .or_insert(status);
                }
            }
        }
        out.late += self.take_market(state, &input);
        for decoded in &input.inputs {
            for (_, event) in decoded.of(EventKind::Energy) {
                if let AnyEvent::Energy(reading) = event
                    && Self::take(state, reading, now_us)
                {
                    out.late += 1;
                }
            }
        }
        let (machines, sites) = self.close(state, now_us);
        if machines.is_empty() {
            return Ok(out);
        }
        let with_hashrate = self.with_hashrate(state, &machines);
        state.periods.add(&state.registry, &with_hashrate);
        let closed = state.periods.close(&state.sites);
        let settled: Vec<&EnergyPeriod> = closed
            .iter()
            .filter(|(k, _)| *k == PeriodKind::Settlement)
            .map(|(_, r)| r)
            .collect();
        let (profits, orphaned) = state.profit.rows(&state.registry, &settled, &state.sites);
        if orphaned > 0 {
            metrics::counter!("adit_profit_shares_without_energy_total").increment(orphaned as u64);
            tracing::warn!(
                shares = orphaned,
                "shares of machines that had no energy in their settlement interval: not priced"
            );
        }
        if !profits.is_empty() {
            out.rows(
                TABLE_MACHINE_PROFIT,
                to_batch(TABLE_MACHINE_PROFIT, MachineProfit::schema(), &profits)?,
            );
        }
        for (kind, table) in [
            (PeriodKind::Settlement, TABLE_ENERGY_SETTLEMENT),
            (PeriodKind::Hour, TABLE_ENERGY_1H),
            (PeriodKind::Day, TABLE_ENERGY_1D),
        ] {
            let rows: Vec<&EnergyPeriod> = closed
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, r)| r)
                .collect();
            if !rows.is_empty() {
                out.rows(table, to_batch(table, EnergyPeriod::schema(), &rows)?);
            }
        }
        for site in &sites {
            out.results.push(ResultMessage::json(
                energy_result_subject(&site.site),
                format!("energy:{}:{}", site.site, site.minute.timestamp_micros()),
                site,
            )?);
        }
        out.rows(
            TABLE_MACHINE_ENERGY_1M,
            to_batch(
                TABLE_MACHINE_ENERGY_1M,
                MachineEnergyMinute::schema(),
                &machines,
            )?,
        );
        out.rows(
            TABLE_SITE_ENERGY_1M,
            to_batch(TABLE_SITE_ENERGY_1M, SiteEnergyMinute::schema(), &sites)?,
        );
        tracing::debug!(
            machines = machines.len(),
            sites = sites.len(),
            "energy minutes closed"
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
