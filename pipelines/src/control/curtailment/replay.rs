//! Replaying a recorded step (`adit replay decisions`): its rows' state and inputs through the
//! controller again, compared line by line with what was recorded.

use adit_schemas::control::DecisionRow;
use serde::Serialize;

use super::operator::is_operators;
use super::rows::{StepRecord, decision_row};
use crate::control::controller::{self, ControlRules, SiteControl};
use crate::error::Result;

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
fn line(r: &DecisionRow) -> String {
    let target = r
        .machine
        .clone()
        .or(r.fan_level.map(|l| format!("level {l}")))
        .unwrap_or_default();
    format!("{} {} {target} -> {}", r.rule, r.action, r.to_mode)
}

/// Recomputes the step whose recorded rows (in order) are `rows`: from their state and
/// inputs, with `rules` (the recorded ones when `None`). `None` when they agree. The operators'
/// commands and mode writes carried out at the step are what was asked, not what the rules
/// decided: they are left out.
pub fn replay_step(
    rows: &[DecisionRow],
    rules: Option<&ControlRules>,
) -> Result<Option<ReplayDiff>> {
    let rows: Vec<&DecisionRow> = rows.iter().filter(|r| !is_operators(r)).collect();
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let record: StepRecord = serde_json::from_str(&first.inputs).map_err(crate::Error::Encode)?;
    let mut state: SiteControl =
        serde_json::from_str(&first.state).map_err(crate::Error::Encode)?;
    let rules = rules.unwrap_or(&record.rules);
    let at_us = first.ts.timestamp_micros();
    let decisions = controller::step(rules, &mut state, &record.inputs, at_us);
    let recorded: Vec<String> = rows.iter().map(|r| line(r)).collect();
    let recomputed: Vec<String> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| line(&decision_row(&first.site, at_us, i, d, false, "", "")))
        .collect();
    Ok((recorded != recomputed).then(|| ReplayDiff {
        step: first.step.clone(),
        recorded,
        recomputed,
    }))
}
