//! Violations: the farm's readings checked against the limits in the registry.
//!
//! **What is checked** (each site at every `eval_every` of its event time, pools likewise):
//! - `power_allocation` of a site: its power (the site's main meters when they are fresh,
//!   else the sum over every machine heard there of its best fresh figure, meter > PDU >
//!   firmware > estimate — the nominal power of a registered machine that says it is mining
//!   with no power figure) against its allocation: `warning` from `warning_pct`, `critical`
//!   from `critical_pct`, `violation` above 100 %. A pool with an allocation likewise, over
//!   its machines on every site.
//! - `temperature` of each temperature sensor: `critical` over the site's `max_temp_c`,
//!   `emergency` over `emergency_temp_c`; `low_temperature`: `warning` under `min_temp_c`
//!   (its peak is the coldest reading); `humidity`: `critical` over `max_humidity_pct`.
//! - `silent_device`: a registered machine, sensor or meter not heard from for `silent_after`
//!   (counted from its registration when it was never heard).
//! - `unregistered_device`: readings from a device the registry does not know (they are landed
//!   all the same; also counted in `adit_farm_unregistered_readings_total`).
//!
//! **Lifecycle** (pure, [`Tracker::evaluate`]): a condition must hold for `min_duration` before
//! its violation opens (a silence has already lasted `silent_after`); while open, a row is
//! added when its severity rises or its peak grows by a tenth; it resolves once the condition
//! has been false for `clear_after`. One open violation per (scope, subject, kind).
//!
//! **Time**: event time. Readings of one step are taken in (time, sequence) order, and a
//! site is evaluated at each boundary its readings cross, with what was known at that moment,
//! so accelerated replays decide as real time would. A site that falls quiet keeps its clock
//! moving with processing time, so its silence is still seen. Registry changes (read from the
//! registry bucket's stream) apply at the start of the step that carries them.
//!
//! **Gauges**: after each step, every site's power, allocation, temperatures and open
//! violations at its clock are reported as metrics ([`crate::runtime::metrics`]) for dashboards; the
//! `violations` table stays the record.

use adit_config::{Checked, check};
use adit_schemas::time::span_micros;
use std::collections::BTreeMap;
use std::time::Duration;
use strum::IntoEnumIterator;

use adit_schemas::names::{self, TABLE_VIOLATION_NOTES, TABLE_VIOLATIONS};
use adit_schemas::registry::{RegistryEntry, RegistryView};
use adit_schemas::results::ViolationRow;
use adit_schemas::{
    AnyEvent, EventKind, GridSignal, GridSignalKind, NoteAction, SensorKind, ViolationNote,
    to_batch,
};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::farm::readings::{Reading, SiteDevices};
use crate::inputs::{grid_input, readings_input, registry_input};
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput, StreamInput,
};
use crate::runtime::timer::Timer;

mod conditions;
mod lifecycle;
pub use conditions::allocation_condition;
pub use lifecycle::{Condition, Key, Tracker};

/// Violations pipeline settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViolationsConfig {
    /// How often (event time) each site is checked.
    #[serde(with = "humantime_serde")]
    pub eval_every: Duration,
    /// How long a condition must hold before its violation opens.
    #[serde(with = "humantime_serde")]
    pub min_duration: Duration,
    /// How long a condition must be gone before its violation resolves.
    #[serde(with = "humantime_serde")]
    pub clear_after: Duration,
    /// A registered device not heard from this long is silent.
    #[serde(with = "humantime_serde")]
    pub silent_after: Duration,
    /// A reading older than this no longer counts as the device's current value.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// How often the state goes into the epoch record.
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
}

impl Default for ViolationsConfig {
    fn default() -> Self {
        Self {
            eval_every: Duration::from_secs(10),
            min_duration: Duration::from_secs(60),
            clear_after: Duration::from_secs(60),
            silent_after: Duration::from_secs(120),
            stale_after: Duration::from_secs(60),
            snapshot_every: Duration::from_secs(10),
        }
    }
}

impl ViolationsConfig {
    /// Checks the values, naming the key.
    pub fn validate(&self) -> Checked {
        let key = |k: &str| format!("pipelines.violations.{k}");
        check(
            self.eval_every >= Duration::from_millis(100),
            &key("eval_every"),
            "must be at least 100ms",
        )?;
        check(
            self.eval_every <= Duration::from_secs(3600),
            &key("eval_every"),
            "must be at most 1h",
        )?;
        check(
            !self.stale_after.is_zero(),
            &key("stale_after"),
            "must be more than 0",
        )?;
        check(
            self.silent_after >= self.eval_every,
            &key("silent_after"),
            "must be at least eval_every",
        )?;
        for (k, d) in [
            ("min_duration", self.min_duration),
            ("clear_after", self.clear_after),
            ("silent_after", self.silent_after),
            ("stale_after", self.stale_after),
        ] {
            check(
                d <= Duration::from_secs(7 * 24 * 3600),
                &key(k),
                "must be at most 7 days",
            )?;
        }
        Ok(())
    }
}

/// How bad a violation is, in rising order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Approaching a limit.
    Warning,
    /// Close to or over a limit that needs action.
    Critical,
    /// Over the allocation.
    Violation,
    /// Machines must stop.
    Emergency,
}

impl Severity {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a violation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Power against an allocation.
    PowerAllocation,
    /// Ambient temperature over the site's maximum.
    Temperature,
    /// Ambient temperature under the site's minimum.
    LowTemperature,
    /// Relative humidity.
    Humidity,
    /// A registered device that stopped reporting.
    SilentDevice,
    /// A device the registry does not know.
    UnregisteredDevice,
    /// A grid curtailment whose target was not met by its deadline.
    CurtailmentDeadline,
}

impl Kind {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One site's clock and devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SiteState {
    /// Newest event time heard at the site.
    event_us: i64,
    /// Processing time it was heard.
    heard_now_us: i64,
    /// Next evaluation boundary.
    next_eval_us: i64,
    /// What its devices said.
    #[serde(flatten)]
    devices: SiteDevices,
    /// The grid curtailment in force: target kW and deadline µs.
    #[serde(default)]
    curtail: Option<(f64, i64)>,
}

/// The whole pipeline state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ViolationsState {
    registry: RegistryView,
    /// When each registered key was last written (the silence of a device never heard counts
    /// from there).
    registered_us: BTreeMap<String, i64>,
    sites: BTreeMap<String, SiteState>,
    next_pool_eval_us: i64,
    tracker: Tracker,
    /// Violations an operator opened, by id.
    #[serde(default)]
    manual: BTreeMap<String, ViolationRow>,
}

/// Applies an operator's note: opens a manual violation, or resolves one (manual or not).
fn apply_note(state: &mut ViolationsState, note: &ViolationNote) -> Option<ViolationRow> {
    let at_us = note.ts.timestamp_micros();
    match note.action {
        NoteAction::Open => {
            let subject = note.subject.clone().unwrap_or_else(|| note.site.clone());
            let kind = note.kind.clone().unwrap_or_default();
            let row = ViolationRow {
                id: format!("manual:{}:{subject}:{kind}:{at_us}", note.site),
                event: "opened".into(),
                site: Some(note.site.clone()),
                scope: if note.subject.is_some() {
                    "device"
                } else {
                    "site"
                }
                .into(),
                subject,
                kind,
                severity: note.severity.clone().unwrap_or_default(),
                value: None,
                limit: None,
                peak: None,
                started: note.ts,
                ts: note.ts,
                duration_s: 0.0,
                source: "manual".into(),
                note: Some(format!("{} (by {})", note.note, note.by)),
                date: note.ts.date_naive(),
            };
            state.manual.insert(row.id.clone(), row.clone());
            Some(row)
        }
        NoteAction::Resolve => {
            let id = note.id.as_deref().unwrap_or_default();
            let text = format!("{} (by {})", note.note, note.by);
            if let Some(open) = state.manual.remove(id) {
                return Some(ViolationRow {
                    event: "resolved".into(),
                    ts: note.ts,
                    duration_s: (at_us - open.started.timestamp_micros()).max(0) as f64 / 1e6,
                    note: Some(text),
                    date: note.ts.date_naive(),
                    ..open
                });
            }
            let row = state.tracker.resolve(id, at_us, &text);
            if row.is_none() {
                tracing::warn!(%id, by = %note.by, "a note resolves no open violation");
            }
            row
        }
    }
}

/// The violations pipeline.
#[derive(Debug, Clone)]
pub struct Violations {
    config: ViolationsConfig,
}

impl Violations {
    /// With `config`.
    pub fn new(config: ViolationsConfig) -> Self {
        Self { config }
    }

    fn eval_us(&self) -> i64 {
        span_micros(self.config.eval_every)
    }

    /// Reports `site_id` at `at_us` as gauges: its power and allocation, its temperatures and
    /// its open violations (every kind and severity, so a closed one reads 0).
    fn report(&self, state: &ViolationsState, site_id: &str, at_us: i64) {
        let Some(site) = state.sites.get(site_id) else {
            return;
        };
        let view = &state.registry;
        let kw = self.site_power_kw(view, site_id, site, at_us);
        let allocation_kw = view.site(site_id).map(|s| s.allocation_kw);
        crate::runtime::metrics::site_power(
            site_id,
            kw * 1000.0,
            allocation_kw.map(|kw| kw * 1000.0),
        );
        let stale = span_micros(self.config.stale_after);
        for (id, sensor) in &site.devices.sensors {
            if sensor.sensor_kind == Some(SensorKind::Temperature) {
                let celsius = sensor
                    .value
                    .filter(|f| at_us - f.ts_us <= stale)
                    .map_or(f64::NAN, |f| f.value);
                crate::runtime::metrics::sensor_temperature(site_id, id, celsius);
            }
        }
        let mut open: BTreeMap<(Kind, Severity), usize> = BTreeMap::new();
        for (key, track) in &state.tracker.tracks {
            if let Some(o) = &track.open
                && key.scope != "pool"
                && key.site == site_id
            {
                *open.entry((key.kind, o.severity)).or_default() += 1;
            }
        }
        for kind in Kind::iter() {
            for severity in Severity::iter() {
                let n = open.get(&(kind, severity)).copied().unwrap_or(0);
                crate::runtime::metrics::violations_open(
                    site_id,
                    kind.as_str(),
                    severity.as_str(),
                    n,
                );
            }
        }
    }

    fn run_conditions(
        &self,
        state: &mut ViolationsState,
        conditions: Vec<(Key, Option<Condition>)>,
        at_us: i64,
        rows: &mut Vec<ViolationRow>,
    ) {
        let hold = span_micros(self.config.min_duration);
        let clear = span_micros(self.config.clear_after);
        for (key, condition) in conditions {
            // A silence has already lasted `silent_after`: it opens at once.
            let hold = if matches!(key.kind, Kind::SilentDevice | Kind::CurtailmentDeadline) {
                0
            } else {
                hold
            };
            if let Some(row) = state.tracker.evaluate(&key, condition, at_us, hold, clear) {
                rows.push(row);
            }
        }
    }

    /// Evaluates `site` at every boundary up to `until_us`.
    fn advance_site(
        &self,
        state: &mut ViolationsState,
        site_id: &str,
        until_us: i64,
        rows: &mut Vec<ViolationRow>,
    ) {
        let step = self.eval_us();
        let Some(mut next) = state.sites.get(site_id).map(|s| s.next_eval_us) else {
            return;
        };
        // After a long gap, evaluate only the last hour of boundaries.
        if until_us - next > 360 * step {
            next = until_us - (until_us - next) % step - 360 * step;
        }
        while next <= until_us {
            let conditions = self.site_conditions(state, site_id, next);
            self.run_conditions(state, conditions, next, rows);
            next += step;
        }
        if let Some(site) = state.sites.get_mut(site_id) {
            site.next_eval_us = next;
        }
    }

    fn advance_pools(
        &self,
        state: &mut ViolationsState,
        until_us: i64,
        rows: &mut Vec<ViolationRow>,
    ) {
        let step = self.eval_us();
        let mut next = state.next_pool_eval_us;
        if next == 0 || until_us - next > 360 * step {
            next = until_us - until_us.rem_euclid(step);
        }
        while next <= until_us {
            let conditions = self.pool_conditions(state, next);
            self.run_conditions(state, conditions, next, rows);
            next += step;
        }
        state.next_pool_eval_us = next;
    }

    /// One step's worth of inputs: registry entries first, then readings in time order.
    fn observe(
        &self,
        state: &mut ViolationsState,
        entries: &[&RegistryEntry],
        mut readings: Vec<(i64, u64, Reading)>,
        mut signals: Vec<(i64, u64, GridSignal)>,
        now_us: i64,
    ) -> Vec<ViolationRow> {
        for entry in entries {
            state.registry.apply(entry);
            match entry.record {
                Some(_) => {
                    state
                        .registered_us
                        .insert(entry.key.clone(), entry.at.timestamp_micros());
                }
                None => {
                    state.registered_us.remove(&entry.key);
                }
            }
        }
        count_unregistered(&state.registry, &readings);
        readings.sort_by_key(|(ts, seq, _)| (*ts, *seq));
        signals.sort_by_key(|(ts, seq, _)| (*ts, *seq));
        let mut signals = signals.into_iter().peekable();
        let step = self.eval_us();
        let mut rows = Vec::new();
        for (ts_us, _, reading) in &readings {
            while let Some((_, _, g)) = signals.next_if(|(t, _, _)| t <= ts_us) {
                apply_signal(state, &g);
            }
            let site_id = reading.site().to_string();
            let fresh = !state.sites.contains_key(&site_id);
            if fresh {
                let site = state.sites.entry(site_id.clone()).or_default();
                site.next_eval_us = ts_us - ts_us.rem_euclid(step) + step;
            }
            // Decide what was true before this reading, at every boundary it crosses.
            self.advance_site(state, &site_id, ts_us - 1, &mut rows);
            if state.next_pool_eval_us != 0 {
                self.advance_pools(state, ts_us - 1, &mut rows);
            }
            state
                .sites
                .entry(site_id.clone())
                .or_default()
                .devices
                .apply(*ts_us, reading);
            if let Some(site) = state.sites.get_mut(&site_id) {
                site.event_us = site.event_us.max(*ts_us);
                site.heard_now_us = now_us;
            }
        }
        for (_, _, g) in signals {
            apply_signal(state, &g);
        }
        // Quiet sites: their clock moves on with processing time.
        let quiet_grace = step;
        let clocks: Vec<(String, i64)> = state
            .sites
            .iter()
            .map(|(id, s)| {
                let idle = now_us - s.heard_now_us - quiet_grace;
                (id.clone(), s.event_us + idle.max(0))
            })
            .collect();
        let mut newest = 0;
        for (site_id, clock) in clocks {
            self.advance_site(state, &site_id, clock, &mut rows);
            self.report(state, &site_id, clock);
            newest = newest.max(clock);
        }
        if newest > 0 {
            self.advance_pools(state, newest, &mut rows);
        }
        rows
    }
}

/// A curtail signal sets the site's target and deadline; a normal one lifts them.
fn apply_signal(state: &mut ViolationsState, g: &GridSignal) {
    let site = state.sites.entry(g.site.clone()).or_default();
    match (g.kind, g.target_kw, g.deadline) {
        (GridSignalKind::Curtail, Some(target), Some(deadline)) => {
            site.curtail = Some((target, deadline.timestamp_micros()));
        }
        (GridSignalKind::Normal, ..) => site.curtail = None,
        _ => {}
    }
}

impl Pipeline for Violations {
    type State = ViolationsState;

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: "violations".into(),
            inputs: vec![
                registry_input(),
                readings_input(),
                grid_input(),
                // The only reader of the operators' notes.
                StreamInput::of("notes", EventKind::ViolationNote).filing_dead_letters(),
            ],
            outputs: vec![
                OutputTable::dated(TABLE_VIOLATIONS, ViolationRow::schema()),
                OutputTable::dated(
                    TABLE_VIOLATION_NOTES,
                    EventKind::ViolationNote.table_schema(),
                ),
            ],
            timers: vec![Timer::Every {
                name: "clock".into(),
                period: self.config.eval_every,
            }],
            snapshot_every: self.config.snapshot_every,
        }
    }

    async fn step(&self, state: &mut ViolationsState, input: StepInput) -> Result<StepOutput> {
        let entries: Vec<_> = input.registry().collect();
        let readings = crate::inputs::readings_in(&input);
        let signals = crate::inputs::signals_in(&input);
        let mut rows = self.observe(
            state,
            &entries,
            readings,
            signals,
            input.now.timestamp_micros(),
        );
        let mut out = StepOutput::default();
        let notes: Vec<(u64, AnyEvent)> = input
            .inputs
            .iter()
            .flat_map(|d| d.of(EventKind::ViolationNote).iter().cloned())
            .collect();
        for (_, event) in &notes {
            if let AnyEvent::ViolationNote(note) = event {
                rows.extend(apply_note(state, note));
            }
        }
        if !notes.is_empty() {
            out.rows(
                TABLE_VIOLATION_NOTES,
                EventKind::ViolationNote.batch(&notes)?,
            );
        }
        if rows.is_empty() {
            return Ok(out);
        }
        for row in &rows {
            out.results.push(ResultMessage::json(
                names::violation_result_subject(row.site.as_deref(), &row.subject),
                format!(
                    "violation:{}:{}:{}",
                    row.id,
                    row.event,
                    row.ts.timestamp_micros()
                ),
                row,
            )?);
        }
        out.rows(
            TABLE_VIOLATIONS,
            to_batch(TABLE_VIOLATIONS, ViolationRow::schema(), &rows)?,
        );
        Ok(out)
    }
}

/// Counts readings from devices the registry does not know.
fn count_unregistered(view: &RegistryView, readings: &[(i64, u64, Reading)]) {
    let unknown = readings
        .iter()
        .filter(|(_, _, r)| match r {
            Reading::Power { site, machine, .. } | Reading::Miner { site, machine, .. } => {
                view.machine(site, machine).is_none()
                    && !view.meters().any(|m| &m.site == site && &m.id == machine)
            }
            Reading::Sensor { site, sensor, .. } => view.sensor(site, sensor).is_none(),
        })
        .count();
    if unknown > 0 {
        metrics::counter!("adit_farm_unregistered_readings_total").increment(unknown as u64);
    }
}

#[cfg(test)]
mod tests;
