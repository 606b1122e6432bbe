//! The farm controller's messages on the CONTROL stream: a [`Command`] for an actuator
//! (`control.<site>.<target>`, its dedupe id the decision's id) and the actuator's
//! [`CommandOutcome`] (`control.outcome.<site>`), with the rows of the `decisions` and
//! `commands` tables they become.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::{f64_opt, i64_field, ts_field, utf8};
use crate::record::Event;
use crate::validate::{Invalid, ValidationPolicy, check_range, check_token};

/// The second subject token of actuators' outcomes (reserved: no site may be named so).
pub const OUTCOME_TOKEN: &str = "outcome";
/// The target of a site-wide fan command.
pub const FANS_TARGET: &str = "fans";

/// A site's controller mode (the `from_mode` and `to_mode` of `decisions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::EnumString
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SiteMode {
    /// No limit below the allocation binds.
    #[default]
    Running,
    /// Load over the target: shedding.
    Curtailing,
    /// At or under the target.
    Curtailed,
    /// A limit lifted: waking machines back.
    Resuming,
    /// Over the emergency temperature: everything asleep.
    Emergency,
    /// An input is stale: the safe action.
    Failsafe,
}

impl SiteMode {
    /// Its name, as in the tables.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a command asks of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum CommandAction {
    /// Stop hashing, drawing only standby power.
    Sleep,
    /// Resume hashing.
    Wake,
    /// Cap the machine's power at `value` watts.
    PowerLimit,
    /// Set the site's fans to level `value` (1–9).
    FanLevel,
    /// Switch the machine's PDU outlet on (`value` 1) or off (0).
    Outlet,
    /// Switch the machine's PDU outlet off for `value` seconds (at least the PDU's
    /// `min_off`), then on again.
    OutletCycle,
    /// Restart the machine through its API.
    Reboot,
}

impl CommandAction {
    /// Its name, as in the tables.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A command for an actuator, from a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The decision's id: the command's dedupe id, and the key of its outcomes.
    pub id: String,
    /// The site.
    pub site: String,
    /// The machine, or [`FANS_TARGET`].
    pub target: String,
    /// What to do.
    pub action: CommandAction,
    /// Its figure: the fan level, the power limit in W, the outlet state (1 on, 0 off), the
    /// seconds an outlet is cycled off.
    #[serde(default)]
    pub value: Option<f64>,
    /// The rule that decided it.
    pub rule: String,
    /// When it was decided (the decision's event time).
    pub ts: DateTime<Utc>,
}

impl Event for Command {
    fn dedupe_id(&self) -> String {
        self.id.clone()
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, _policy: &ValidationPolicy, _now: DateTime<Utc>) -> Result<(), Invalid> {
        // A command is replayed long after it was decided: no time window applies.
        if self.id.is_empty() {
            return Err(Invalid::new("a command needs its decision's id"));
        }
        match (self.action, self.value) {
            (CommandAction::FanLevel, Some(level)) => check_range("value", level, 1.0, 9.0),
            (CommandAction::PowerLimit, Some(w)) => check_range("value", w, 0.0, 1e6),
            (CommandAction::Outlet, Some(v)) if v == 0.0 || v == 1.0 => Ok(()),
            (CommandAction::Outlet, Some(v)) => Err(Invalid::new(format!(
                "value {v} of an outlet command must be 1 (on) or 0 (off)"
            ))),
            (CommandAction::OutletCycle, Some(s)) => check_range("value", s, 1.0, 600.0),
            (CommandAction::Sleep | CommandAction::Wake | CommandAction::Reboot, _) => Ok(()),
            (action, None) => Err(Invalid::new(format!(
                "a {} command needs a value",
                action.as_str()
            ))),
        }
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("id"),
            utf8("site"),
            utf8("target"),
            utf8("action"),
            f64_opt("value"),
            utf8("rule"),
            ts_field("ts"),
        ]
    }
}

/// How one attempt at a command went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// The device said it did it.
    Acked,
    /// The device refused, or could not be reached.
    Failed,
}

/// An actuator's report of one attempt at a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandOutcome {
    /// The command's id.
    pub id: String,
    /// The site.
    pub site: String,
    /// The machine or device.
    pub target: String,
    /// What was asked.
    pub action: CommandAction,
    /// Acked or failed.
    pub status: OutcomeStatus,
    /// Which attempt (from 1).
    pub attempt: i64,
    /// What the device answered, or why it could not be reached.
    pub reply: String,
    /// The actuator that tried (`miner_api`, `fan_relay`, `pdu`, `webhook`).
    pub actuator: String,
    /// When the attempt ended.
    pub ts: DateTime<Utc>,
}

impl Event for CommandOutcome {
    fn dedupe_id(&self) -> String {
        format!("outcome:{}:{}", self.id, self.attempt)
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_token("target", &self.target)?;
        if self.id.is_empty() || self.attempt < 1 {
            return Err(Invalid::new(
                "an outcome needs its command's id and attempt",
            ));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("id"),
            utf8("site"),
            utf8("target"),
            utf8("action"),
            utf8("status"),
            i64_field("attempt"),
            utf8("reply"),
            utf8("actuator"),
            ts_field("ts"),
        ]
    }
}

/// One decision of the curtailment and cooling controller (`decisions` table,
/// `results.decision.<site>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRow {
    /// `<site>:<step µs>:<n>`: the dedupe id of its command.
    pub id: String,
    /// The site.
    pub site: String,
    /// The step it was taken at (event time).
    pub ts: DateTime<Utc>,
    /// `<site>:<step µs>`: shared by the decisions of one step.
    pub step: String,
    /// The mode before the step.
    pub from_mode: String,
    /// The mode after it.
    pub to_mode: String,
    /// The rule that fired.
    pub rule: String,
    /// `mode`, `sleep`, `wake`, `power_target` or `fan_level`.
    pub action: String,
    /// The machine slept, woken or given a power target.
    pub machine: Option<String>,
    /// The fan level set.
    pub fan_level: Option<i64>,
    /// The power target set on the machine, W (`power_target`).
    #[serde(default)]
    pub power_target_w: Option<f64>,
    /// The load target in force, kW.
    pub target_kw: Option<f64>,
    /// The load measured, kW.
    pub load_kw: f64,
    /// Decided without sending commands (dry run).
    pub dry_run: bool,
    /// Everything the step saw, JSON (grid event, prices, temperatures, each machine's power
    /// and efficiency, overrides in force).
    pub inputs: String,
    /// The controller's state before the step, JSON: with `inputs`, enough to recompute it.
    pub state: String,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
}

impl DecisionRow {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, false),
            ts_field("ts"),
            Field::new("step", DataType::Utf8, false),
            Field::new("from_mode", DataType::Utf8, false),
            Field::new("to_mode", DataType::Utf8, false),
            Field::new("rule", DataType::Utf8, false),
            Field::new("action", DataType::Utf8, false),
            Field::new("machine", DataType::Utf8, true),
            Field::new("fan_level", DataType::Int64, true),
            Field::new("power_target_w", DataType::Float64, true),
            Field::new("target_kw", DataType::Float64, true),
            Field::new("load_kw", DataType::Float64, false),
            Field::new("dry_run", DataType::Boolean, false),
            Field::new("inputs", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// One line of a command's life (`commands` table): `sent` (or `dry_run`) when decided,
/// then `acked` or `failed` per attempt, with the device's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRow {
    /// The command (its decision's id).
    pub id: String,
    /// The site.
    pub site: String,
    /// The machine or device.
    pub target: String,
    /// `sleep`, `wake`, `power_limit`, `fan_level` or `outlet`.
    pub action: String,
    /// The command's figure.
    pub value: Option<f64>,
    /// `sent`, `dry_run`, `acked` or `failed`.
    pub status: String,
    /// The attempt (0 for `sent`).
    pub attempt: i64,
    /// The device's reply.
    pub reply: Option<String>,
    /// The actuator that tried.
    pub actuator: Option<String>,
    /// When.
    pub ts: DateTime<Utc>,
    /// UTC date of `ts` (partition).
    pub date: NaiveDate,
}

impl CommandRow {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, false),
            Field::new("target", DataType::Utf8, false),
            Field::new("action", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new("status", DataType::Utf8, false),
            Field::new("attempt", DataType::Int64, false),
            Field::new("reply", DataType::Utf8, true),
            Field::new("actuator", DataType::Utf8, true),
            ts_field("ts"),
            Field::new("date", DataType::Date32, false),
        ]))
    }

    /// The `sent` (or `dry_run`) line of `command`.
    pub fn sent(command: &Command, dry_run: bool) -> Self {
        Self {
            id: command.id.clone(),
            site: command.site.clone(),
            target: command.target.clone(),
            action: command.action.as_str().into(),
            value: command.value,
            status: if dry_run { "dry_run" } else { "sent" }.into(),
            attempt: 0,
            reply: None,
            actuator: None,
            ts: command.ts,
            date: command.ts.date_naive(),
        }
    }

    /// The line of one attempt.
    pub fn outcome(o: &CommandOutcome) -> Self {
        Self {
            id: o.id.clone(),
            site: o.site.clone(),
            target: o.target.clone(),
            action: o.action.as_str().into(),
            value: None,
            status: match o.status {
                OutcomeStatus::Acked => "acked",
                OutcomeStatus::Failed => "failed",
            }
            .into(),
            attempt: o.attempt,
            reply: Some(o.reply.clone()),
            actuator: Some(o.actuator.clone()),
            ts: o.ts,
            date: o.ts.date_naive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrow_rows::to_batch;
    use crate::events::EventKind;

    fn command(action: CommandAction, value: Option<f64>) -> Command {
        Command {
            id: "s1:1:0".into(),
            site: "s1".into(),
            target: "m-1".into(),
            action,
            value,
            rule: "grid_curtail".into(),
            ts: Utc::now(),
        }
    }

    #[test]
    fn commands_need_their_figures_in_range() {
        let policy = ValidationPolicy::default();
        let now = Utc::now();
        assert!(
            command(CommandAction::Sleep, None)
                .validate(&policy, now)
                .is_ok()
        );
        let err = command(CommandAction::FanLevel, Some(12.0))
            .validate(&policy, now)
            .unwrap_err();
        assert!(err.reason.contains("value"), "{}", err.reason);
        let err = command(CommandAction::PowerLimit, None)
            .validate(&policy, now)
            .unwrap_err();
        assert!(err.reason.contains("needs a value"), "{}", err.reason);
        let c = command(CommandAction::FanLevel, Some(9.0));
        assert_eq!(c.subject(), "control.s1.m-1");
        assert_eq!(
            EventKind::from_subject(&c.subject()),
            Some(EventKind::Command)
        );
        assert_eq!(
            EventKind::from_subject("control.outcome.s1"),
            Some(EventKind::CommandOutcome)
        );
    }

    #[test]
    fn rows_encode_to_their_schemas() {
        let c = command(CommandAction::Wake, None);
        let rows = vec![
            CommandRow::sent(&c, false),
            CommandRow::outcome(&CommandOutcome {
                id: c.id.clone(),
                site: c.site.clone(),
                target: c.target.clone(),
                action: c.action,
                status: OutcomeStatus::Failed,
                attempt: 2,
                reply: "connection refused".into(),
                actuator: "miner_api".into(),
                ts: Utc::now(),
            }),
        ];
        let batch = to_batch("commands", CommandRow::schema(), &rows).unwrap();
        assert_eq!(batch.num_rows(), 2);
    }
}
