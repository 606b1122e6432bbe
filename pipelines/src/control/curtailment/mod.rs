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
//! the last prices; each machine's breakeven (`market`: a strike set per customer or model,
//! or what its nameplate hashrate earns at its pool's latest terms and coin price).
//!
//! **Overrides** (`control.override.<site>`, landed in `overrides`): in force from their `ts`
//! to `expires` (or a `cancel`), applied to the inputs before the step — a pinned fan level, a
//! machine out of control, a stand-in grid signal or temperature, a forced target, a hold —
//! and named in the inputs' `overrides`, so every decision they shaped says so.
//!
//! **Time**: event time, as in `violations`: readings and signals of a step are taken in
//! (time, sequence) order, the site decided at each boundary they cross with what was known
//! then; a quiet site's clock moves with processing time, so silence still leads to failsafe.
//! A step that holds every input up to its `now` (the `caught_up` tick of `adit control
//! --once`) moves every site's clock to `now`: nothing earlier can still arrive.
//!
//! **Replay**: a decision row's `inputs` column is a [`StepRecord`] (rules and inputs) and its
//! `state` column the controller's state before the step, so `adit replay decisions`
//! recomputes every recorded step and compares.

use adit_schemas::control::{CommandRow, DecisionRow};
use adit_schemas::names::{self, TABLE_COMMANDS, TABLE_DECISIONS, TABLE_OVERRIDES};
use adit_schemas::{AnyEvent, EventKind, to_batch};

use crate::control::controller::ControlRules;
use crate::error::Result;
use crate::inputs::{grid_input, readings_input, registry_input};
use crate::runtime::pipeline::{
    CAUGHT_UP, OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput,
    StreamInput,
};
use crate::runtime::timer::Timer;

mod config;
mod decide;
mod gather;
mod market;
mod operator;
mod replay;
mod rows;
mod site;

pub use config::CurtailmentConfig;
pub use replay::{ReplayDiff, replay_step};
pub use rows::{StepRecord, decision_row};
pub use site::CurtailmentState;

use site::{Item, apply_outcome};

/// The curtailment pipeline.
#[derive(Debug, Clone)]
pub struct Curtailment {
    config: CurtailmentConfig,
    rules: ControlRules,
}

impl Curtailment {
    /// With `config`.
    pub fn new(config: CurtailmentConfig) -> Self {
        let rules = config.rules();
        Self { config, rules }
    }
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
                StreamInput::of_all("network", EventKind::Network),
                StreamInput::of_all("coins", EventKind::CoinPrice),
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
        for kind in [EventKind::Network, EventKind::CoinPrice] {
            for (_, event) in input.of(kind) {
                state.market.take(event);
            }
        }
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
        let mut command_rows = Vec::new();
        for (_, event) in input.of(EventKind::CommandOutcome) {
            if let AnyEvent::CommandOutcome(o) = event {
                apply_outcome(state, o);
                command_rows.push(CommandRow::outcome(o));
            }
        }
        let caught_up = input.ticks.iter().any(|t| t == CAUGHT_UP);
        let produced = self.observe(
            state,
            &entries,
            items,
            input.now.timestamp_micros(),
            caught_up,
        )?;
        let mut out = StepOutput::default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use adit_bus::DecodedBatch;
    use adit_schemas::control::Command;
    use adit_schemas::overrides::{Override, OverrideKind};
    use adit_schemas::registry::{Adapter, ChangeOp, Machine, Record, RegistryEntry, Sensor, Site};
    use adit_schemas::{EnergyReading, EnergySource, GridSignal, GridSignalKind};
    use adit_schemas::{SensorKind, SensorReading};
    use chrono::{DateTime, Utc};
    use std::time::Duration;

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
                    mines_as: None,
                    customer: None,
                    power_target_min_w: None,
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
            mode: None,
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

    /// Column `name` of the decision rows, as text (null as empty).
    fn decision_column(out: &StepOutput, name: &str) -> Vec<String> {
        let (_, decisions) = out
            .tables
            .iter()
            .find(|(t, _)| t == TABLE_DECISIONS)
            .expect("decision rows");
        let c = arrow::compute::cast(
            decisions.column_by_name(name).unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        arrow::array::AsArray::as_string::<i32>(&c)
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect()
    }

    /// The `(rule, action, to_mode)` of every decision row.
    fn decided(out: &StepOutput) -> Vec<(String, String, String)> {
        let [rule, action, mode] = ["rule", "action", "to_mode"].map(|c| decision_column(out, c));
        (0..rule.len())
            .map(|i| (rule[i].clone(), action[i].clone(), mode[i].clone()))
            .collect()
    }

    /// An admin's mode write (the old `raw-state`) is carried out at the next step: a cool
    /// site written into `emergency` sleeps every machine and stays there for the cooldown,
    /// and without the write the same inputs sleep only the one machine the curtailment needs.
    #[tokio::test]
    async fn a_written_emergency_sleeps_every_machine_at_the_next_step() {
        let t0: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
        let pipeline = Curtailment::new(CurtailmentConfig::default());
        let mut events = inputs(t0, 60);
        let at = t0 + chrono::Duration::seconds(25);
        events.push(AnyEvent::Override(Override {
            id: format!("s1:mode:{}", at.timestamp_micros()),
            site: "s1".into(),
            kind: OverrideKind::Mode,
            machine: None,
            value: None,
            cancels: None,
            mode: Some(adit_schemas::control::SiteMode::Emergency),
            reason: "smoke".into(),
            by: "admin".into(),
            ts: at,
            expires: at + chrono::Duration::minutes(1),
        }));
        events.sort_by_key(AnyEvent::ts);
        let now = t0 + chrono::Duration::seconds(61);
        let written = step_over(&pipeline, events.clone(), now).await;
        let decisions = decided(&written);
        let writes: Vec<_> = decisions
            .iter()
            .filter(|(rule, action, _)| rule == "operator" && action == "mode")
            .collect();
        assert_eq!(writes.len(), 1, "{decisions:?}");
        assert_eq!(writes[0].2, "emergency");
        let sent = commands_sent(&written);
        for m in ["m1", "m2"] {
            assert!(
                sent.contains(&(m.into(), "sleep".into(), "emergency_temperature".into())),
                "{m}: {sent:?}"
            );
        }
        assert!(
            decisions.last().is_some_and(|d| d.2 == "emergency"),
            "{decisions:?}"
        );
        let free: Vec<AnyEvent> = events
            .into_iter()
            .filter(|e| !matches!(e, AnyEvent::Override(_)))
            .collect();
        let sent = commands_sent(&step_over(&pipeline, free, now).await);
        assert!(
            !sent.iter().any(|(m, a, _)| m == "m1" && a == "sleep"),
            "{sent:?}"
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
        let [rule, machine, action, mode] =
            ["rule", "machine", "action", "to_mode"].map(|c| decision_column(&out, c));
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
