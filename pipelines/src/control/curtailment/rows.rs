//! What a decided step becomes: its `decisions` rows (the inputs column a [`StepRecord`]) and
//! the commands they send.

use adit_schemas::control::{Command, CommandAction, DecisionRow, FANS_TARGET};
use adit_schemas::time::from_micros;
use serde::{Deserialize, Serialize};

use crate::control::controller::{Action, ControlRules, Decision, Inputs, Mode};

/// What a decision row's `inputs` column holds: enough, with its `state`, to recompute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The rules in force.
    pub rules: ControlRules,
    /// What the step saw.
    pub inputs: Inputs,
}

/// What one decided step produced.
#[derive(Debug, Default)]
pub(super) struct Produced {
    pub(super) decisions: Vec<DecisionRow>,
    pub(super) commands: Vec<Command>,
}

/// A mode as the `decisions` table spells it.
pub(super) fn mode_name(mode: Mode) -> String {
    mode.as_str().to_string()
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
    let (action, machine, fan_level, power_target_w) = match &d.action {
        Action::Mode => ("mode", None, None, None),
        Action::Sleep { machine } => ("sleep", Some(machine.clone()), None, None),
        Action::Wake { machine } => ("wake", Some(machine.clone()), None, None),
        Action::PowerTarget { machine, watts } => {
            ("power_target", Some(machine.clone()), None, Some(*watts))
        }
        Action::FanLevel { level } => ("fan_level", None, Some(i64::from(*level)), None),
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
        power_target_w,
        target_kw: d.target_kw,
        load_kw: d.load_kw,
        dry_run,
        inputs: inputs.to_string(),
        state: state.to_string(),
        date: at.date_naive(),
    }
}

/// The command a decision sends (a mode change sends none).
pub(super) fn command_of(row: &DecisionRow, d: &Decision) -> Option<Command> {
    Some(match &d.action {
        Action::Mode => return None,
        Action::Sleep { machine } => command(row, machine, CommandAction::Sleep, None),
        Action::Wake { machine } => command(row, machine, CommandAction::Wake, None),
        Action::PowerTarget { machine, watts } => {
            command(row, machine, CommandAction::PowerLimit, Some(*watts))
        }
        Action::FanLevel { level } => command(
            row,
            FANS_TARGET,
            CommandAction::FanLevel,
            Some(f64::from(*level)),
        ),
    })
}

/// The command `row` sends to `target`: its id, site, rule and time are the row's.
pub(super) fn command(
    row: &DecisionRow,
    target: &str,
    action: CommandAction,
    value: Option<f64>,
) -> Command {
    Command {
        id: row.id.clone(),
        site: row.site.clone(),
        target: target.to_string(),
        action,
        value,
        rule: row.rule.clone(),
        ts: row.ts,
    }
}
