//! The curtailment and cooling pipeline: runs [`crate::control::controller::step`] for every registered
//! site at each `eval_every` of the site's event time, and turns its decisions into rows of
//! `decisions` (each with the rules, inputs and state it was taken from), results on
//! `results.decision.<site>`, and commands on `control.<site>.<target>` for the actuators (none
//! in dry-run). The actuators' outcomes (`control.outcome.<site>`) land beside the `sent`
//! lines in `commands`.
//!
//! **Inputs of a step** (what [`crate::control::controller::Inputs`] holds, built here): the site's
//! allocation and emergency temperature from the registry; each registered machine's best
//! fresh power (meter > PDU > firmware, as `violations` reads it) and its efficiency from its
//! nominal power and hashrate; the hottest fresh temperature; the oldest of the temperature
//! sensors' latest readings (one sensor gone silent is enough for failsafe); the newest power
//! figure of the site; the demand-response event in force (a `curtail` until a `normal`);
//! the last prices.
//!
//! **Overrides** (`control.override.<site>`, landed in `overrides`): in force from their `ts`
//! to `expires` (or a `cancel`), applied to the inputs before the step — a pinned fan level, a
//! machine out of control, a stand-in grid signal or temperature, a forced target, a hold —
//! and named in the inputs' `overrides`, so every decision they shaped says so.
//!
//! **Time**: event time, as in `violations`: readings and signals of a step are taken in
//! (time, sequence) order, the site decided at each boundary they cross with what was known
//! then; a quiet site's clock moves with processing time, so silence still leads to failsafe.
//!
//! **Replay**: a decision row's `inputs` column is a [`StepRecord`] (rules and inputs) and its
//! `state` column the controller's state before the step, so `adit replay decisions`
//! recomputes every recorded step and compares.

use adit_schemas::time::{from_micros, span_micros};
use std::collections::BTreeMap;
use std::time::Duration;

use adit_config::{Checked, check};
use adit_schemas::control::{
    Command, CommandAction, CommandOutcome, CommandRow, DecisionRow, FANS_TARGET, OutcomeStatus,
};
use adit_schemas::names::{self, TABLE_COMMANDS, TABLE_DECISIONS, TABLE_OVERRIDES};
use adit_schemas::overrides::{Override, OverrideKind};
use adit_schemas::registry::{Record, RegistryEntry, RegistryView};
use adit_schemas::{AnyEvent, EventKind, GridSignal, GridSignalKind, SensorKind, to_batch};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::controller::{
    self, Action, ControlRules, Decision, GridEvent, Inputs, MachineInput, SiteControl,
};
use crate::error::Result;
use crate::farm::readings::{Reading, SiteDevices, best_power};
use crate::inputs::{grid_input, readings_input, registry_input};
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput, StreamInput,
};
use crate::runtime::timer::Timer;

/// Curtailment pipeline settings (`[pipelines.curtailment]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurtailmentConfig {
    /// Decide and record, send no commands.
    pub dry_run: bool,
    /// How often (event time) each site is decided.
    #[serde(with = "humantime_serde")]
    pub eval_every: Duration,
    /// How often the state goes into the epoch record.
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
    /// Most load shed or added per minute, kW.
    pub ramp_kw_per_min: f64,
    /// A machine stays on at least this long before it may be shed.
    #[serde(with = "humantime_serde")]
    pub min_on: Duration,
    /// A machine stays off at least this long before it may be woken.
    #[serde(with = "humantime_serde")]
    pub min_off: Duration,
    /// No waking for this long after the last shed.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Headroom kept under the target when waking, kW.
    pub resume_margin_kw: f64,
    /// A machine commanded to sleep whose power did not drop is passed over this long.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Price above which mining stops being worth it, per MWh (unset: prices are ignored).
    pub strike_price: Option<f64>,
    /// Consecutive price intervals needed to cross the strike, both ways.
    pub strike_intervals: usize,
    /// Load allowed while the price is over the strike, kW.
    pub price_target_kw: f64,
    /// Upper bound of fan levels 1..=8, °C, ascending (9 above the last).
    pub fan_bands_c: Vec<f64>,
    /// How far under a band's bound the temperature must fall to step the fans down, °C.
    pub fan_hysteresis_c: f64,
    /// The fans step down only this long after their last change.
    #[serde(with = "humantime_serde")]
    pub fan_dwell: Duration,
    /// How far under the emergency limit the temperature must fall to lift an emergency, °C.
    pub emergency_clear_c: f64,
    /// The site's newest power figure older than this: failsafe.
    #[serde(with = "humantime_serde")]
    pub meter_stale: Duration,
    /// A temperature sensor's latest reading older than this: failsafe.
    #[serde(with = "humantime_serde")]
    pub sensor_stale: Duration,
    /// While a curtailment is in force, no grid signal for this long: failsafe (unset: the
    /// feed only speaks on change, so silence says nothing).
    #[serde(with = "humantime_serde")]
    pub signal_stale: Option<Duration>,
    /// Load to shed to in failsafe, kW (unset: hold the load as it is).
    pub failsafe_target_kw: Option<f64>,
}

impl Default for CurtailmentConfig {
    fn default() -> Self {
        let rules = ControlRules::default();
        let d = |us: i64| Duration::from_micros(us as u64);
        Self {
            dry_run: false,
            eval_every: Duration::from_secs(10),
            snapshot_every: Duration::from_secs(10),
            ramp_kw_per_min: rules.ramp_kw_per_min,
            min_on: d(rules.min_on_us),
            min_off: d(rules.min_off_us),
            cooldown: d(rules.cooldown_us),
            resume_margin_kw: rules.resume_margin_kw,
            command_timeout: d(rules.command_timeout_us),
            strike_price: rules.strike_price,
            strike_intervals: rules.strike_intervals,
            price_target_kw: rules.price_target_kw,
            fan_bands_c: rules.fan_bands_c,
            fan_hysteresis_c: rules.fan_hysteresis_c,
            fan_dwell: d(rules.fan_dwell_us),
            emergency_clear_c: rules.emergency_clear_c,
            meter_stale: d(rules.meter_stale_us),
            sensor_stale: d(rules.sensor_stale_us),
            signal_stale: None,
            failsafe_target_kw: rules.failsafe_target_kw,
        }
    }
}

impl CurtailmentConfig {
    /// The pure core's rules.
    pub fn rules(&self) -> ControlRules {
        ControlRules {
            ramp_kw_per_min: self.ramp_kw_per_min,
            min_on_us: span_micros(self.min_on),
            min_off_us: span_micros(self.min_off),
            cooldown_us: span_micros(self.cooldown),
            resume_margin_kw: self.resume_margin_kw,
            command_timeout_us: span_micros(self.command_timeout),
            strike_price: self.strike_price,
            strike_intervals: self.strike_intervals,
            price_target_kw: self.price_target_kw,
            fan_bands_c: self.fan_bands_c.clone(),
            fan_hysteresis_c: self.fan_hysteresis_c,
            fan_dwell_us: span_micros(self.fan_dwell),
            emergency_clear_c: self.emergency_clear_c,
            meter_stale_us: span_micros(self.meter_stale),
            sensor_stale_us: span_micros(self.sensor_stale),
            signal_stale_us: self.signal_stale.map_or(i64::MAX, span_micros),
            failsafe_target_kw: self.failsafe_target_kw,
        }
    }

    /// Checks the values, naming the key.
    pub fn validate(&self) -> Checked {
        let key = |k: &str| format!("pipelines.curtailment.{k}");
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        check(
            (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&self.eval_every),
            &key("eval_every"),
            "must be from 100ms to 10m",
        )?;
        check(
            self.ramp_kw_per_min.is_finite() && self.ramp_kw_per_min > 0.0,
            &key("ramp_kw_per_min"),
            "must be more than 0",
        )?;
        for (k, v) in [
            ("resume_margin_kw", self.resume_margin_kw),
            ("price_target_kw", self.price_target_kw),
            ("fan_hysteresis_c", self.fan_hysteresis_c),
            ("emergency_clear_c", self.emergency_clear_c),
        ] {
            check(
                finite_non_negative(v),
                &key(k),
                "must be a number, 0 or more",
            )?;
        }
        check(
            self.failsafe_target_kw.is_none_or(finite_non_negative),
            &key("failsafe_target_kw"),
            "must be a number, 0 or more",
        )?;
        check(
            self.strike_price.is_none_or(f64::is_finite),
            &key("strike_price"),
            "must be a number",
        )?;
        check(
            (1..=96).contains(&self.strike_intervals),
            &key("strike_intervals"),
            "must be from 1 to 96",
        )?;
        check(
            self.fan_bands_c.len() == 8
                && self.fan_bands_c.windows(2).all(|w| w[0] < w[1])
                && self.fan_bands_c.iter().all(|v| v.is_finite()),
            &key("fan_bands_c"),
            "must be 8 ascending temperatures (upper bounds of levels 1 to 8)",
        )?;
        let week = Duration::from_secs(7 * 24 * 3600);
        for (k, d) in [
            ("min_on", self.min_on),
            ("min_off", self.min_off),
            ("cooldown", self.cooldown),
            ("command_timeout", self.command_timeout),
            ("fan_dwell", self.fan_dwell),
            ("meter_stale", self.meter_stale),
            ("sensor_stale", self.sensor_stale),
            ("signal_stale", self.signal_stale.unwrap_or_default()),
        ] {
            check(d <= week, &key(k), "must be at most 7 days")?;
        }
        for (k, d) in [
            ("meter_stale", self.meter_stale),
            ("sensor_stale", self.sensor_stale),
        ] {
            check(d >= self.eval_every, &key(k), "must be at least eval_every")?;
        }
        Ok(())
    }
}

/// What a decision row's `inputs` column holds: enough, with its `state`, to recompute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The rules in force.
    pub rules: ControlRules,
    /// What the step saw.
    pub inputs: Inputs,
}

/// One site as the pipeline follows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SiteState {
    /// Newest event time heard at the site.
    event_us: i64,
    /// Processing time it was heard.
    heard_now_us: i64,
    /// Next decision boundary.
    next_eval_us: i64,
    /// What its devices said.
    devices: SiteDevices,
    /// The demand-response event in force.
    grid: Option<GridEvent>,
    /// When the newest grid signal was issued.
    signal_us: Option<i64>,
    /// The last prices, oldest first.
    prices: Vec<f64>,
    /// The controller.
    control: SiteControl,
    /// Machines whose latest command an actuator reported failed.
    #[serde(default)]
    failed: std::collections::BTreeSet<String>,
    /// Operators' overrides not yet expired or cancelled, by id.
    #[serde(default)]
    overrides: BTreeMap<String, Override>,
    /// Operators' commands heard since the last step, carried out at the next.
    #[serde(default)]
    operator: Vec<Override>,
}

/// The whole pipeline state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CurtailmentState {
    registry: RegistryView,
    sites: BTreeMap<String, SiteState>,
}

/// Something that happened at a site, in time order.
enum Item {
    Reading(Reading),
    Signal(GridSignal),
    Override(Override),
}

impl Item {
    fn site(&self) -> &str {
        match self {
            Self::Reading(r) => r.site(),
            Self::Signal(g) => &g.site,
            Self::Override(o) => &o.site,
        }
    }
}

/// The curtailment pipeline.
#[derive(Debug, Clone)]
pub struct Curtailment {
    config: CurtailmentConfig,
    rules: ControlRules,
}

/// What one decided step produced.
#[derive(Debug, Default)]
struct Produced {
    decisions: Vec<DecisionRow>,
    commands: Vec<Command>,
}

impl Curtailment {
    /// With `config`.
    pub fn new(config: CurtailmentConfig) -> Self {
        let rules = config.rules();
        Self { config, rules }
    }

    fn eval_us(&self) -> i64 {
        span_micros(self.config.eval_every)
    }

    /// What the controller of `site_id` sees at `at_us`; `None` for a site the registry does
    /// not know (nothing to control).
    fn inputs(
        &self,
        view: &RegistryView,
        site_id: &str,
        site: &SiteState,
        at_us: i64,
    ) -> Option<Inputs> {
        let limits = view.site(site_id)?;
        let stale = self.rules.meter_stale_us;
        let mut machines = Vec::new();
        let mut temperature_sensors = Vec::new();
        for record in view.records.values() {
            match record {
                Record::Machine(m) if m.site == site_id => {
                    let device = site.devices.machines.get(&m.id);
                    let power_w = device
                        .and_then(|d| best_power(d, Some(m.nominal_power_w), at_us, stale))
                        .unwrap_or(0.0);
                    let th = m.nominal_hashrate_hs / 1e12;
                    machines.push(MachineInput {
                        controllable: true,
                        id: m.id.clone(),
                        power_w,
                        nominal_w: m.nominal_power_w,
                        efficiency_j_th: if th > 0.0 {
                            m.nominal_power_w / th
                        } else {
                            f64::MAX
                        },
                    });
                }
                Record::Sensor(s) if s.site == site_id && s.kind == SensorKind::Temperature => {
                    temperature_sensors.push(site.devices.sensors.get(&s.id));
                }
                _ => {}
            }
        }
        let sensor_stale = self.rules.sensor_stale_us;
        let hottest_c = temperature_sensors
            .iter()
            .flatten()
            .filter_map(|d| d.value)
            .filter(|f| at_us - f.ts_us <= sensor_stale)
            .map(|f| f.value)
            .reduce(f64::max);
        // The oldest sensor decides: one gone silent is a blind spot (never heard: blind).
        let sensors_us = if temperature_sensors.is_empty() {
            Some(at_us)
        } else {
            temperature_sensors
                .iter()
                .map(|d| d.and_then(|d| d.value).map(|f| f.ts_us))
                .collect::<Option<Vec<i64>>>()
                .and_then(|v| v.into_iter().min())
        };
        let meters_us = site
            .devices
            .machines
            .values()
            .flat_map(|d| d.power.values().map(|f| f.ts_us))
            .max();
        let mut inputs = Inputs {
            allocation_kw: limits.allocation_kw,
            emergency_temp_c: limits.emergency_temp_c,
            grid: site.grid.clone(),
            signal_us: site.signal_us,
            prices: site.prices.clone(),
            hottest_c,
            sensors_us,
            meters_us,
            machines,
            failed: site.failed.iter().cloned().collect(),
            forced_target_kw: None,
            hold: false,
            fan_pin: None,
            overrides: Vec::new(),
        };
        let at = from_micros(at_us);
        let active: Vec<&Override> = site.overrides.values().filter(|o| o.active(at)).collect();
        apply_overrides(&mut inputs, &active, at_us);
        Some(inputs)
    }

    /// Decides `site_id` at `at_us`: the operators' commands heard since the last step first,
    /// then the controller's step.
    fn decide(
        &self,
        state: &mut CurtailmentState,
        site_id: &str,
        at_us: i64,
        out: &mut Produced,
    ) -> Result<()> {
        if state
            .sites
            .get(site_id)
            .is_some_and(|s| !s.operator.is_empty())
        {
            let load_kw = state
                .sites
                .get(site_id)
                .and_then(|site| self.inputs(&state.registry, site_id, site, at_us))
                .map_or(0.0, |i| {
                    i.machines.iter().map(|m| m.power_w).sum::<f64>() / 1000.0
                });
            if let Some(site) = state.sites.get_mut(site_id) {
                self.operator_commands(site_id, site, load_kw, at_us, out)?;
            }
        }
        let Some(site) = state.sites.get(site_id) else {
            return Ok(());
        };
        let Some(inputs) = self.inputs(&state.registry, site_id, site, at_us) else {
            return Ok(());
        };
        let before = site.control.clone();
        let Some(site) = state.sites.get_mut(site_id) else {
            return Ok(());
        };
        let decisions = controller::step(&self.rules, &mut site.control, &inputs, at_us);
        if decisions.is_empty() {
            return Ok(());
        }
        let record = StepRecord {
            rules: self.rules.clone(),
            inputs,
        };
        let inputs_json = serde_json::to_string(&record).map_err(crate::Error::Encode)?;
        let state_json = serde_json::to_string(&before).map_err(crate::Error::Encode)?;
        let ts = from_micros(at_us);
        for (i, d) in decisions.iter().enumerate() {
            let row = decision_row(
                site_id,
                at_us,
                i,
                d,
                self.config.dry_run,
                &inputs_json,
                &state_json,
            );
            if let Some(command) = command_of(&row, d, ts) {
                site.failed.remove(&command.target);
                out.commands.push(command);
            }
            out.decisions.push(row);
        }
        Ok(())
    }

    /// Carries out the operators' commands waiting at `site`: each is a decision row (rule
    /// `operator`, or `operator_refused` for one that would power a machine up during an
    /// emergency) and, unless refused, a command. A `wake` ends the machine's `sleep`.
    fn operator_commands(
        &self,
        site_id: &str,
        site: &mut SiteState,
        load_kw: f64,
        at_us: i64,
        out: &mut Produced,
    ) -> Result<()> {
        let mode = site.control.mode;
        let state_json = serde_json::to_string(&site.control).map_err(crate::Error::Encode)?;
        let at = from_micros(at_us);
        for (j, o) in std::mem::take(&mut site.operator).into_iter().enumerate() {
            let (Some(machine), Some(action)) = (o.machine.clone(), operator_action(o.kind)) else {
                continue;
            };
            let powers_down = action == CommandAction::Sleep
                || (action == CommandAction::Outlet && o.value == Some(0.0));
            let refused = mode == controller::Mode::Emergency && !powers_down;
            if o.kind == OverrideKind::Wake && !refused {
                site.overrides.retain(|_, held| {
                    !(held.kind == OverrideKind::Sleep && held.machine.as_ref() == Some(&machine))
                });
            }
            let inputs = serde_json::json!({ "override": &o, "mode": mode_name(mode) });
            let row = DecisionRow {
                id: format!("{site_id}:{at_us}:op{j}"),
                site: site_id.to_string(),
                ts: at,
                step: format!("{site_id}:{at_us}"),
                from_mode: mode_name(mode),
                to_mode: mode_name(mode),
                rule: if refused {
                    "operator_refused"
                } else {
                    "operator"
                }
                .into(),
                action: action.as_str().into(),
                machine: Some(machine.clone()),
                fan_level: None,
                target_kw: None,
                load_kw,
                dry_run: self.config.dry_run,
                inputs: inputs.to_string(),
                state: state_json.clone(),
                date: at.date_naive(),
            };
            if !refused {
                site.failed.remove(&machine);
                // The controller counts it as it counts its own commands: in flight until
                // `command_timeout`, so it is neither woken nor shed again meanwhile.
                site.control.machines.insert(
                    machine.clone(),
                    controller::MachineControl {
                        on: !powers_down,
                        since_us: at_us,
                    },
                );
                out.commands.push(Command {
                    id: row.id.clone(),
                    site: site_id.to_string(),
                    target: machine,
                    action,
                    value: o.value,
                    rule: row.rule.clone(),
                    ts: at,
                });
            }
            out.decisions.push(row);
        }
        Ok(())
    }

    /// Decides `site_id` at every boundary up to `until_us`.
    fn advance(
        &self,
        state: &mut CurtailmentState,
        site_id: &str,
        until_us: i64,
        out: &mut Produced,
    ) -> Result<()> {
        let step = self.eval_us();
        let Some(mut next) = state.sites.get(site_id).map(|s| s.next_eval_us) else {
            return Ok(());
        };
        // After a long gap, decide only the last hour of boundaries.
        if until_us - next > 360 * step {
            next = until_us - (until_us - next) % step - 360 * step;
        }
        while next <= until_us {
            self.decide(state, site_id, next, out)?;
            next += step;
        }
        if let Some(site) = state.sites.get_mut(site_id) {
            site.next_eval_us = next;
        }
        Ok(())
    }

    /// One step's inputs: registry entries first, then readings and signals in time order.
    fn observe(
        &self,
        state: &mut CurtailmentState,
        entries: &[&RegistryEntry],
        mut items: Vec<(i64, u64, Item)>,
        now_us: i64,
    ) -> Result<Produced> {
        for entry in entries {
            state.registry.apply(entry);
        }
        items.sort_by_key(|(ts, seq, _)| (*ts, *seq));
        let step = self.eval_us();
        let mut out = Produced::default();
        for (ts_us, _, item) in items {
            let site_id = item.site().to_string();
            if !state.sites.contains_key(&site_id) {
                let site = state.sites.entry(site_id.clone()).or_default();
                site.next_eval_us = ts_us - ts_us.rem_euclid(step) + step;
            }
            // Decide with what was known before this item, at every boundary it crosses.
            self.advance(state, &site_id, ts_us - 1, &mut out)?;
            let Some(site) = state.sites.get_mut(&site_id) else {
                continue;
            };
            match &item {
                Item::Reading(r) => site.devices.apply(ts_us, r),
                Item::Signal(g) => apply_signal(site, g, self.rules.strike_intervals),
                Item::Override(o) => apply_override(site, o),
            }
            site.event_us = site.event_us.max(ts_us);
            site.heard_now_us = now_us;
        }
        // Quiet sites: their clock moves on with processing time.
        let clocks: Vec<(String, i64)> = state
            .sites
            .iter()
            .map(|(id, s)| {
                let idle = now_us - s.heard_now_us - step;
                (id.clone(), s.event_us + idle.max(0))
            })
            .collect();
        for (site_id, clock) in clocks {
            self.advance(state, &site_id, clock, &mut out)?;
        }
        Ok(out)
    }
}

/// Takes in an override: a cancel ends the one it names, an operator's command waits for the
/// next step (a `sleep` is also kept, holding its machine, until it expires or is woken), any
/// other is kept until it expires.
fn apply_override(site: &mut SiteState, o: &Override) {
    match (o.kind, &o.cancels) {
        (OverrideKind::Cancel, Some(id)) => {
            site.overrides.remove(id);
        }
        (kind, _) if kind.is_command() => {
            if kind == OverrideKind::Sleep {
                site.overrides.insert(o.id.clone(), o.clone());
            }
            site.operator.push(o.clone());
        }
        _ => {
            site.overrides.insert(o.id.clone(), o.clone());
        }
    }
}

/// Applies the overrides in force to what the controller sees.
fn apply_overrides(inputs: &mut Inputs, overrides: &[&Override], at_us: i64) {
    for o in overrides {
        match o.kind {
            OverrideKind::FanLevel => inputs.fan_pin = o.value.map(|v| v as u8),
            OverrideKind::ExcludeMachine | OverrideKind::Sleep => {
                for m in &mut inputs.machines {
                    if Some(&m.id) == o.machine.as_ref() {
                        m.controllable = false;
                    }
                }
            }
            OverrideKind::Grid => {
                inputs.grid = o.value.map(|target_kw| GridEvent {
                    event_id: o.id.clone(),
                    target_kw,
                    deadline_us: o.expires.timestamp_micros(),
                });
                inputs.signal_us = Some(at_us);
            }
            OverrideKind::Temperature => {
                inputs.hottest_c = o.value;
                inputs.sensors_us = Some(at_us);
            }
            OverrideKind::Target => inputs.forced_target_kw = o.value,
            OverrideKind::Hold => inputs.hold = true,
            OverrideKind::Cancel
            | OverrideKind::Wake
            | OverrideKind::Reboot
            | OverrideKind::Outlet
            | OverrideKind::OutletCycle => {}
        }
        inputs.overrides.push(o.id.clone());
    }
}

/// Takes in an actuator's report: a machine whose command failed is not counted as about to
/// change until an attempt succeeds or a new command is decided for it.
fn apply_outcome(state: &mut CurtailmentState, o: &CommandOutcome) {
    if o.target == FANS_TARGET {
        return;
    }
    let site = state.sites.entry(o.site.clone()).or_default();
    match o.status {
        OutcomeStatus::Failed => {
            site.failed.insert(o.target.clone());
        }
        OutcomeStatus::Acked => {
            site.failed.remove(&o.target);
        }
    }
}

/// Takes in a grid signal: a curtail event starts (or replaces the one in force), a normal
/// ends it, a price joins the last `keep` prices.
fn apply_signal(site: &mut SiteState, g: &GridSignal, keep: usize) {
    site.signal_us = Some(g.ts.timestamp_micros());
    match (g.kind, g.target_kw, g.deadline) {
        (GridSignalKind::Curtail, Some(target_kw), Some(deadline)) => {
            site.grid = Some(GridEvent {
                event_id: g.event_id.clone(),
                target_kw,
                deadline_us: deadline.timestamp_micros(),
            });
        }
        (GridSignalKind::Normal, ..) => site.grid = None,
        (GridSignalKind::Price, ..) => {
            if let Some(p) = g.price_per_mwh {
                site.prices.push(p);
                let excess = site.prices.len().saturating_sub(keep.max(1));
                site.prices.drain(..excess);
            }
        }
        _ => {} // validation refuses a curtail without its figures
    }
}

fn mode_name(mode: controller::Mode) -> String {
    serde_json::to_value(mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The row of decision `i` of the step of `site` at `at_us`.
pub fn decision_row(
    site: &str,
    at_us: i64,
    i: usize,
    d: &Decision,
    dry_run: bool,
    inputs: &str,
    state: &str,
) -> DecisionRow {
    let (action, machine, fan_level) = match &d.action {
        Action::Mode => ("mode", None, None),
        Action::Sleep { machine } => ("sleep", Some(machine.clone()), None),
        Action::Wake { machine } => ("wake", Some(machine.clone()), None),
        Action::FanLevel { level } => ("fan_level", None, Some(i64::from(*level))),
    };
    let at = from_micros(at_us);
    DecisionRow {
        id: format!("{site}:{at_us}:{i}"),
        site: site.to_string(),
        ts: at,
        step: format!("{site}:{at_us}"),
        from_mode: mode_name(d.from),
        to_mode: mode_name(d.to),
        rule: d.rule.to_string(),
        action: action.into(),
        machine,
        fan_level,
        target_kw: d.target_kw,
        load_kw: d.load_kw,
        dry_run,
        inputs: inputs.to_string(),
        state: state.to_string(),
        date: at.date_naive(),
    }
}

/// The command an operator's override asks for (none for one that steers the controller).
fn operator_action(kind: OverrideKind) -> Option<CommandAction> {
    Some(match kind {
        OverrideKind::Sleep => CommandAction::Sleep,
        OverrideKind::Wake => CommandAction::Wake,
        OverrideKind::Reboot => CommandAction::Reboot,
        OverrideKind::Outlet => CommandAction::Outlet,
        OverrideKind::OutletCycle => CommandAction::OutletCycle,
        _ => return None,
    })
}

/// The command a decision sends (a mode change sends none).
fn command_of(row: &DecisionRow, d: &Decision, at: DateTime<Utc>) -> Option<Command> {
    let (target, action, value) = match &d.action {
        Action::Mode => return None,
        Action::Sleep { machine } => (machine.clone(), CommandAction::Sleep, None),
        Action::Wake { machine } => (machine.clone(), CommandAction::Wake, None),
        Action::FanLevel { level } => (
            FANS_TARGET.to_string(),
            CommandAction::FanLevel,
            Some(f64::from(*level)),
        ),
    };
    Some(Command {
        id: row.id.clone(),
        site: row.site.clone(),
        target,
        action,
        value,
        rule: row.rule.clone(),
        ts: at,
    })
}

/// The actuators' outcomes as an input (the only reader of them).
fn outcomes_input() -> StreamInput {
    StreamInput::of("outcomes", EventKind::CommandOutcome).filing_dead_letters()
}

impl Pipeline for Curtailment {
    type State = CurtailmentState;

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: "curtailment".into(),
            inputs: vec![
                registry_input(),
                readings_input(),
                grid_input(),
                outcomes_input(),
                // The only reader of the overrides.
                StreamInput::of("overrides", EventKind::Override).filing_dead_letters(),
            ],
            outputs: vec![
                OutputTable::dated(TABLE_DECISIONS, DecisionRow::schema()),
                OutputTable::dated(TABLE_COMMANDS, CommandRow::schema()),
                OutputTable::dated(TABLE_OVERRIDES, EventKind::Override.table_schema()),
            ],
            timers: vec![Timer::Every {
                name: "clock".into(),
                period: self.config.eval_every,
            }],
            snapshot_every: self.config.snapshot_every,
        }
    }

    async fn step(&self, state: &mut CurtailmentState, input: StepInput) -> Result<StepOutput> {
        let entries: Vec<_> = input.registry().collect();
        let readings = crate::inputs::readings_in(&input).into_iter();
        let signals = crate::inputs::signals_in(&input).into_iter();
        let mut items: Vec<_> = readings
            .map(|(ts, seq, reading)| (ts, seq, Item::Reading(reading)))
            .chain(signals.map(|(ts, seq, signal)| (ts, seq, Item::Signal(signal))))
            .collect();
        let mut override_rows = Vec::new();
        for (seq, event) in input.of(EventKind::Override) {
            if let AnyEvent::Override(o) = event {
                items.push((o.ts.timestamp_micros(), seq, Item::Override(o.clone())));
                override_rows.push((seq, event.clone()));
            }
        }
        let mut outcomes = Vec::new();
        for (_, event) in input.of(EventKind::CommandOutcome) {
            if let AnyEvent::CommandOutcome(o) = event {
                apply_outcome(state, o);
                outcomes.push(CommandRow::outcome(o));
            }
        }
        let produced = self.observe(state, &entries, items, input.now.timestamp_micros())?;
        let mut out = StepOutput::default();
        let mut command_rows = outcomes;
        for command in &produced.commands {
            command_rows.push(CommandRow::sent(command, self.config.dry_run));
            if !self.config.dry_run {
                let (subject, id, payload) = AnyEvent::Command(command.clone()).to_message();
                out.results.push(ResultMessage {
                    subject,
                    id,
                    payload,
                });
            }
        }
        for row in &produced.decisions {
            out.results.push(ResultMessage::json(
                names::decision_result_subject(&row.site),
                format!("decision:{}", row.id),
                row,
            )?);
        }
        if !produced.decisions.is_empty() {
            out.rows(
                TABLE_DECISIONS,
                to_batch(TABLE_DECISIONS, DecisionRow::schema(), &produced.decisions)?,
            );
        }
        if !override_rows.is_empty() {
            out.rows(TABLE_OVERRIDES, EventKind::Override.batch(&override_rows)?);
        }
        if !command_rows.is_empty() {
            out.rows(
                TABLE_COMMANDS,
                to_batch(TABLE_COMMANDS, CommandRow::schema(), &command_rows)?,
            );
        }
        Ok(out)
    }
}

/// How one recomputed step differs from its recorded decisions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayDiff {
    /// The step (`<site>:<µs>`).
    pub step: String,
    /// What the table holds, one line per decision.
    pub recorded: Vec<String>,
    /// What the rules decide from the same inputs and state.
    pub recomputed: Vec<String>,
}

/// A decision as one comparable line.
fn line(rule: &str, action: &str, machine: Option<&str>, fan: Option<i64>, to: &str) -> String {
    let target = machine
        .map(str::to_string)
        .or(fan.map(|l| format!("level {l}")))
        .unwrap_or_default();
    format!("{rule} {action} {target} -> {to}")
}

/// Recomputes the step whose recorded rows (in order) are `rows`: from their state and
/// inputs, with `rules` (the recorded ones when `None`). `None` when they agree.
pub fn replay_step(
    rows: &[DecisionRow],
    rules: Option<&ControlRules>,
) -> Result<Option<ReplayDiff>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let record: StepRecord = serde_json::from_str(&first.inputs).map_err(crate::Error::Encode)?;
    let mut state: SiteControl =
        serde_json::from_str(&first.state).map_err(crate::Error::Encode)?;
    let rules = rules.unwrap_or(&record.rules);
    let decisions = controller::step(
        rules,
        &mut state,
        &record.inputs,
        first.ts.timestamp_micros(),
    );
    let recorded: Vec<String> = rows
        .iter()
        .map(|r| {
            line(
                &r.rule,
                &r.action,
                r.machine.as_deref(),
                r.fan_level,
                &r.to_mode,
            )
        })
        .collect();
    let recomputed: Vec<String> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let r = decision_row(
                &first.site,
                first.ts.timestamp_micros(),
                i,
                d,
                false,
                "",
                "",
            );
            line(
                &r.rule,
                &r.action,
                r.machine.as_deref(),
                r.fan_level,
                &r.to_mode,
            )
        })
        .collect();
    Ok((recorded != recomputed).then(|| ReplayDiff {
        step: first.step.clone(),
        recorded,
        recomputed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_bus::DecodedBatch;
    use adit_schemas::registry::{Adapter, ChangeOp, Machine, Sensor, Site};
    use adit_schemas::{EnergyReading, EnergySource, SensorReading};

    fn entry(record: Record, at: DateTime<Utc>) -> AnyEvent {
        AnyEvent::Registry(RegistryEntry {
            key: record.key(),
            op: ChangeOp::Put,
            by: "test".into(),
            at,
            record: Some(record),
        })
    }

    /// A site of two 3 kW machines at `t0`, readings every 10 s for `seconds`, and a curtail
    /// to 3 kW at the start.
    fn inputs(t0: DateTime<Utc>, seconds: i64) -> Vec<AnyEvent> {
        let mut out = vec![
            entry(Record::Site(Site::new("s1", 10.0)), t0),
            entry(
                Record::Sensor(Sensor {
                    id: "t1".into(),
                    site: "s1".into(),
                    kind: SensorKind::Temperature,
                    adapter: Adapter::default(),
                }),
                t0,
            ),
        ];
        for (i, j_th) in [(1, 20.0), (2, 30.0)] {
            out.push(entry(
                Record::Machine(Machine {
                    id: format!("m{i}"),
                    site: "s1".into(),
                    pool: None,
                    model: "x".into(),
                    rack: None,
                    pdu: None,
                    outlet: None,
                    nominal_hashrate_hs: 3000.0 / j_th * 1e12,
                    nominal_power_w: 3000.0,
                    adapter: Adapter::default(),
                }),
                t0,
            ));
        }
        out.push(AnyEvent::Grid(GridSignal {
            site: "s1".into(),
            event_id: "dr".into(),
            kind: GridSignalKind::Curtail,
            target_kw: Some(3.0),
            deadline: Some(t0 + chrono::Duration::minutes(5)),
            price_per_mwh: None,
            ts: t0,
        }));
        for s in (0..seconds).step_by(10) {
            let ts = t0 + chrono::Duration::seconds(s);
            for m in ["m1", "m2"] {
                out.push(AnyEvent::Energy(EnergyReading {
                    site: "s1".into(),
                    machine: m.into(),
                    ts,
                    power_w: 3000.0,
                    energy_wh: None,
                    source: EnergySource::Meter,
                }));
            }
            out.push(AnyEvent::Sensor(SensorReading {
                site: "s1".into(),
                sensor: "t1".into(),
                kind: SensorKind::Temperature,
                value: 24.0,
                ts,
            }));
        }
        out
    }

    async fn run(dry_run: bool) -> StepOutput {
        let t0: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
        let pipeline = Curtailment::new(CurtailmentConfig {
            dry_run,
            ..Default::default()
        });
        step_over(
            &pipeline,
            inputs(t0, 60),
            t0 + chrono::Duration::seconds(61),
        )
        .await
    }

    fn statuses(out: &StepOutput) -> Vec<String> {
        let (_, batch) = out
            .tables
            .iter()
            .find(|(t, _)| t == TABLE_COMMANDS)
            .expect("command rows");
        let status = arrow::compute::cast(
            batch.column_by_name("status").unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let status = arrow::array::AsArray::as_string::<i32>(&status);
        status.iter().flatten().map(str::to_string).collect()
    }

    #[tokio::test]
    async fn the_least_efficient_machine_is_shed_and_a_dry_run_sends_nothing() {
        let live = run(false).await;
        let commands: Vec<&ResultMessage> = live
            .results
            .iter()
            .filter(|r| r.subject.starts_with("control."))
            .collect();
        assert!(
            commands.iter().any(|r| r.subject == "control.s1.m2"),
            "m2 (30 J/TH) is shed: {:?}",
            commands.iter().map(|r| &r.subject).collect::<Vec<_>>()
        );
        assert!(!commands.iter().any(|r| r.subject == "control.s1.m1"));
        assert!(statuses(&live).iter().all(|s| s == "sent"));

        let dry = run(true).await;
        assert!(
            !dry.results
                .iter()
                .any(|r| r.subject.starts_with("control.")),
            "a dry run sends no command"
        );
        assert!(
            dry.results
                .iter()
                .any(|r| r.subject == "results.decision.s1"),
            "but decides and publishes its decisions"
        );
        assert!(!statuses(&dry).is_empty());
        assert!(statuses(&dry).iter().all(|s| s == "dry_run"));
    }

    fn operator(kind: OverrideKind, machine: &str, at: DateTime<Utc>) -> AnyEvent {
        AnyEvent::Override(Override {
            id: format!("s1:{}:{machine}:{}", kind.as_str(), at.timestamp_micros()),
            site: "s1".into(),
            kind,
            machine: Some(machine.into()),
            value: None,
            cancels: None,
            reason: "hands on".into(),
            by: "ops".into(),
            ts: at,
            expires: at + chrono::Duration::hours(2),
        })
    }

    /// One step over `events` (sorted by time as the runtime would hand them), up to `now`.
    async fn step_over(
        pipeline: &Curtailment,
        events: Vec<AnyEvent>,
        now: DateTime<Utc>,
    ) -> StepOutput {
        let mut batch = DecodedBatch::default();
        for (seq, e) in events.into_iter().enumerate() {
            batch
                .rows
                .entry(e.kind())
                .or_default()
                .push((seq as u64 + 1, e));
        }
        let mut state = CurtailmentState::default();
        pipeline
            .step(
                &mut state,
                StepInput {
                    now,
                    ticks: vec![],
                    inputs: vec![batch],
                },
            )
            .await
            .unwrap()
    }

    /// The (subject, action, rule) of every command sent.
    fn commands_sent(out: &StepOutput) -> Vec<(String, String, String)> {
        out.results
            .iter()
            .filter(|r| {
                r.subject.starts_with("control.") && !r.subject.starts_with("control.override")
            })
            .map(|r| {
                let c: Command = serde_json::from_slice(&r.payload).unwrap();
                (c.target, c.action.as_str().to_string(), c.rule)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_machine_an_operator_slept_stays_asleep_through_a_resume_until_woken() {
        let t0: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
        let pipeline = Curtailment::new(CurtailmentConfig {
            cooldown: Duration::from_secs(60),
            min_off: Duration::from_secs(60),
            resume_margin_kw: 0.0,
            ..Default::default()
        });
        // The curtailment sheds both machines (m2's meter falls to standby); the operator
        // sleeps m1 as well; the curtailment ends, and the controller would wake m1 first.
        let mut events: Vec<AnyEvent> = inputs(t0, 600)
            .into_iter()
            .map(|e| match e {
                AnyEvent::Energy(r)
                    if r.machine == "m2" && r.ts > t0 + chrono::Duration::seconds(20) =>
                {
                    AnyEvent::Energy(EnergyReading { power_w: 20.0, ..r })
                }
                e => e,
            })
            .collect();
        events.push(operator(
            OverrideKind::Sleep,
            "m1",
            t0 + chrono::Duration::seconds(30),
        ));
        events.push(AnyEvent::Grid(GridSignal {
            site: "s1".into(),
            event_id: "dr".into(),
            kind: GridSignalKind::Normal,
            target_kw: None,
            deadline: None,
            price_per_mwh: None,
            ts: t0 + chrono::Duration::seconds(60),
        }));
        events.sort_by_key(AnyEvent::ts);
        let held = step_over(
            &pipeline,
            events.clone(),
            t0 + chrono::Duration::seconds(601),
        )
        .await;
        let sent = commands_sent(&held);
        assert!(
            sent.contains(&("m1".into(), "sleep".into(), "operator".into())),
            "{sent:?}"
        );
        assert!(
            !sent.iter().any(|(m, a, _)| m == "m1" && a == "wake"),
            "the controller woke the machine the operator slept: {sent:?}"
        );
        // Without the operator's sleep, the same resume wakes m1: the test can fail.
        let free: Vec<AnyEvent> = events
            .iter()
            .filter(|e| !matches!(e, AnyEvent::Override(_)))
            .cloned()
            .collect();
        let resumed =
            commands_sent(&step_over(&pipeline, free, t0 + chrono::Duration::seconds(601)).await);
        assert!(
            resumed.iter().any(|(m, a, _)| m == "m1" && a == "wake"),
            "{resumed:?}"
        );
        // The operator's wake ends the hold and wakes it; m1 reads standby until it is up
        // (20 s later), and the controller, counting the wake in flight, does not wake it again.
        let asleep = |e: AnyEvent| match e {
            AnyEvent::Energy(r)
                if r.machine == "m1"
                    && r.ts > t0 + chrono::Duration::seconds(35)
                    && r.ts < t0 + chrono::Duration::seconds(320) =>
            {
                AnyEvent::Energy(EnergyReading { power_w: 20.0, ..r })
            }
            e => e,
        };
        let mut events: Vec<AnyEvent> = events.into_iter().map(asleep).collect();
        events.push(operator(
            OverrideKind::Wake,
            "m1",
            t0 + chrono::Duration::seconds(300),
        ));
        events.sort_by_key(AnyEvent::ts);
        let woken =
            commands_sent(&step_over(&pipeline, events, t0 + chrono::Duration::seconds(601)).await);
        let wakes: Vec<_> = woken
            .iter()
            .filter(|(m, a, _)| m == "m1" && a == "wake")
            .collect();
        assert_eq!(
            wakes,
            [&("m1".to_string(), "wake".to_string(), "operator".to_string())],
            "{woken:?}"
        );
    }

    #[tokio::test]
    async fn an_operators_wake_during_an_emergency_is_refused_and_recorded() {
        let t0: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
        let pipeline = Curtailment::new(CurtailmentConfig::default());
        let mut events: Vec<AnyEvent> = inputs(t0, 120)
            .into_iter()
            .map(|e| match e {
                // 60 °C: over the emergency temperature.
                AnyEvent::Sensor(r) => AnyEvent::Sensor(SensorReading { value: 60.0, ..r }),
                e => e,
            })
            .collect();
        events.push(operator(
            OverrideKind::Wake,
            "m2",
            t0 + chrono::Duration::seconds(45),
        ));
        events.push(operator(
            OverrideKind::Reboot,
            "m1",
            t0 + chrono::Duration::seconds(45),
        ));
        events.sort_by_key(AnyEvent::ts);
        let out = step_over(&pipeline, events, t0 + chrono::Duration::seconds(121)).await;
        let sent = commands_sent(&out);
        assert!(
            !sent.iter().any(|(_, _, rule)| rule.starts_with("operator")),
            "{sent:?}"
        );
        let (_, decisions) = out
            .tables
            .iter()
            .find(|(t, _)| t == TABLE_DECISIONS)
            .expect("decision rows");
        let column = |name: &str| -> Vec<String> {
            let c = arrow::compute::cast(
                decisions.column_by_name(name).unwrap(),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            arrow::array::AsArray::as_string::<i32>(&c)
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect()
        };
        let (rule, machine, action, mode) = (
            column("rule"),
            column("machine"),
            column("action"),
            column("to_mode"),
        );
        let refused: Vec<(&str, &str, &str)> = (0..rule.len())
            .filter(|&i| rule[i] == "operator_refused")
            .map(|i| (machine[i].as_str(), action[i].as_str(), mode[i].as_str()))
            .collect();
        assert_eq!(
            refused,
            [("m2", "wake", "emergency"), ("m1", "reboot", "emergency")],
            "{rule:?}"
        );
    }
}
