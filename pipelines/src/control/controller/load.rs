//! Moving the load toward the target: an emergency's sleep for every machine, the
//! unprofitable machines' sleep, or shedding (least profitable, then least efficient first)
//! and waking (most efficient first, never an unprofitable machine) within the ramp.

use super::decision::{Action, Decision, Made, Rule};
use super::inputs::{ControlRules, Inputs, MachineInput};
use super::state::{Mode, SiteControl};

/// An emergency: every machine that is on, or commanded on, to sleep, minimum on-times
/// ignored.
pub(super) fn emergency(
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
) -> impl Iterator<Item = Action> {
    state.emergency_since_us.get_or_insert(now_us);
    let mut slept = Vec::new();
    for m in &inputs.machines {
        if state
            .machines
            .get(&m.id)
            .is_some_and(|c| c.on || m.running())
        {
            state.command(&m.id, false, now_us);
            slept.push(Action::Sleep {
                machine: m.id.clone(),
            });
        }
    }
    state.last_shed_us = Some(now_us);
    slept.into_iter()
}

/// Sheds toward the target while the expected load is over it, or wakes machines while it is
/// under (outside failsafe), within the ramp since the last step; returns the mode after.
pub(super) fn toward_target(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    made: &Made,
    out: &mut Vec<Decision>,
) -> Mode {
    let Made {
        rule,
        mode,
        expected_kw,
        allowance_kw,
        ..
    } = *made;
    match made.target_kw {
        Some(target) if expected_kw > target + 1e-9 => {
            let shed = shed(
                rules,
                state,
                inputs,
                now_us,
                expected_kw - target,
                allowance_kw,
            );
            out.extend(
                shed.into_iter()
                    .map(|machine| made.decision(mode, Action::Sleep { machine }, rule)),
            );
            if mode == Mode::Failsafe {
                mode
            } else {
                Mode::Curtailing
            }
        }
        Some(target) if mode != Mode::Failsafe => {
            let woken = wake(
                rules,
                state,
                inputs,
                now_us,
                target - expected_kw,
                allowance_kw,
            );
            let asleep = state.machines.values().any(|c| !c.on);
            let after = match (rule, woken.is_empty(), asleep) {
                (Rule::AllocationCap, true, false) => Mode::Running,
                (Rule::AllocationCap, _, _) => Mode::Resuming,
                _ => Mode::Curtailed,
            };
            let why = if rule == Rule::AllocationCap {
                Rule::Resume
            } else {
                rule
            };
            out.extend(
                woken
                    .into_iter()
                    .map(|machine| made.decision(after, Action::Wake { machine }, why)),
            );
            after
        }
        _ => mode,
    }
}

/// The machines that may be put to sleep now: running, under control, on for at least
/// `min_on` (or commanded off but still running after `command_timeout`).
fn sheddable<'a>(
    rules: &ControlRules,
    state: &SiteControl,
    inputs: &'a Inputs,
    now_us: i64,
) -> Vec<&'a MachineInput> {
    inputs
        .machines
        .iter()
        .filter(|m| m.running() && m.controllable)
        .filter(|m| {
            state.machines.get(&m.id).is_some_and(|c| {
                (c.on && now_us - c.since_us >= rules.min_on_us)
                    || (!c.on && now_us - c.since_us >= rules.command_timeout_us)
            })
        })
        .collect()
}

/// Puts the unprofitable machines that run to sleep, least profitable first, within the
/// ramp; returns `made` with what they drew taken off the expected load and the allowance.
pub(super) fn shed_unprofitable(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    made: Made,
    out: &mut Vec<Decision>,
) -> Made {
    if state.unprofitable.is_empty() {
        return made;
    }
    let mut candidates: Vec<&MachineInput> = sheddable(rules, state, inputs, now_us)
        .into_iter()
        .filter(|m| state.unprofitable.contains(&m.id))
        .collect();
    candidates.sort_by(|a, b| MachineInput::shed_order(a, b));
    let mut shed_kw = 0.0;
    for m in candidates {
        let kw = m.power_w / 1000.0;
        if shed_kw + kw > made.allowance_kw + 1e-9 {
            break;
        }
        shed_kw += kw;
        state.command(&m.id, false, now_us);
        state.last_shed_us = Some(now_us);
        out.push(made.decision(
            Mode::Curtailing,
            Action::Sleep {
                machine: m.id.clone(),
            },
            Rule::PriceBreakeven,
        ));
    }
    Made {
        expected_kw: made.expected_kw - shed_kw,
        allowance_kw: made.allowance_kw - shed_kw,
        ..made
    }
}

/// Machines to sleep, least profitable first, up to `excess_kw` within `allowance_kw`.
fn shed(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    excess_kw: f64,
    allowance_kw: f64,
) -> Vec<String> {
    let mut candidates = sheddable(rules, state, inputs, now_us);
    candidates.sort_by(|a, b| MachineInput::shed_order(a, b));
    let (mut shed_kw, mut out) = (0.0, Vec::new());
    for m in candidates {
        let kw = m.power_w / 1000.0;
        if shed_kw >= excess_kw - 1e-9 || shed_kw + kw > allowance_kw + 1e-9 {
            break;
        }
        shed_kw += kw;
        state.command(&m.id, false, now_us);
        out.push(m.id.clone());
    }
    if !out.is_empty() {
        state.last_shed_us = Some(now_us);
    }
    out
}

/// Machines to wake, most profitable then most efficient first, while `headroom_kw` (less the margin) allows.
fn wake(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    headroom_kw: f64,
    allowance_kw: f64,
) -> Vec<String> {
    if state
        .last_shed_us
        .is_some_and(|t| now_us - t < rules.cooldown_us)
    {
        return Vec::new();
    }
    let mut candidates: Vec<&MachineInput> = inputs
        .machines
        .iter()
        .filter(|m| {
            m.controllable
                && !state.unprofitable.contains(&m.id)
                && state
                    .machines
                    .get(&m.id)
                    .is_some_and(|c| !c.on && now_us - c.since_us >= rules.min_off_us)
        })
        .collect();
    candidates.sort_by(|a, b| MachineInput::wake_order(a, b));
    let room = (headroom_kw - rules.resume_margin_kw).min(allowance_kw);
    let (mut added, mut out) = (0.0, Vec::new());
    for m in candidates {
        let kw = m.nominal_w / 1000.0;
        if added + kw > room + 1e-9 {
            break;
        }
        added += kw;
        state.command(&m.id, true, now_us);
        out.push(m.id.clone());
    }
    out
}
