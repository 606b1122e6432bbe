//! Moving the load toward the target: an emergency's sleep for every machine, the
//! unprofitable machines' sleep, or shedding (power targets lowered first, then machines
//! slept least profitable, then least efficient first) and waking (targets raised first, then
//! machines woken most efficient first, never an unprofitable one) within the ramp.

use super::decision::{Action, Decision, Made, Rule};
use super::expected::expected_w;
use super::inputs::{ControlRules, Inputs, MachineInput};
use super::state::{Mode, SiteControl};
use super::targets;

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
    match made.target_kw {
        Some(target) if made.expected_kw > target + 1e-9 => {
            let excess_kw = made.expected_kw - target;
            let at = (excess_kw, made.allowance_kw);
            let lowered_kw = targets::lower(rules, state, inputs, now_us, at, made, out);
            let at = (excess_kw - lowered_kw, made.allowance_kw - lowered_kw);
            let shed = shed(rules, state, inputs, now_us, at);
            out.extend(
                shed.into_iter()
                    .map(|machine| made.decision(made.mode, Action::Sleep { machine }, made.rule)),
            );
            if made.mode == Mode::Failsafe {
                made.mode
            } else {
                Mode::Curtailing
            }
        }
        Some(target) if made.mode != Mode::Failsafe => {
            resume(rules, state, inputs, now_us, (made, target), out)
        }
        _ => made.mode,
    }
}

/// Under the target, once `cooldown` has passed since the last shed: raises lowered targets,
/// then (once none is left lowered) wakes machines, within the room under the target less the
/// margin and the ramp; returns the mode after.
fn resume(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    (made, target_kw): (&Made, f64),
    out: &mut Vec<Decision>,
) -> Mode {
    let why = if made.rule == Rule::AllocationCap {
        Rule::Resume
    } else {
        made.rule
    };
    let cooling_down = state
        .last_shed_us
        .is_some_and(|t| now_us - t < rules.cooldown_us);
    let room_kw = (target_kw - made.expected_kw - rules.resume_margin_kw).min(made.allowance_kw);
    let before = out.len();
    let (mut woken, mut still_lowered) = (
        Vec::new(),
        targets::any_lowered(rules, state, inputs, now_us),
    );
    if !cooling_down {
        let raised_kw;
        (raised_kw, still_lowered) =
            targets::raise(rules, state, inputs, now_us, room_kw, (made, why), out);
        if !still_lowered {
            woken = wake(rules, state, inputs, now_us, room_kw - raised_kw);
        }
    }
    let raised = out.len() > before;
    let asleep = state.machines.values().any(|c| !c.on);
    let after = match made.rule {
        Rule::AllocationCap if !(raised || still_lowered || asleep || !woken.is_empty()) => {
            Mode::Running
        }
        Rule::AllocationCap => Mode::Resuming,
        _ => Mode::Curtailed,
    };
    for machine in woken {
        out.push(made.decision(
            after,
            Action::Wake {
                machine: machine.clone(),
            },
            why,
        ));
        // A machine slept under a lowered target wakes at its nameplate.
        let lowered = state
            .machines
            .get(&machine)
            .is_some_and(|c| c.target_w.is_some());
        if let Some(m) = inputs.machines.iter().find(|m| m.id == machine && lowered) {
            let watts = m.nominal_w.round();
            state.set_target(&machine, None, now_us);
            out.push(made.decision(after, Action::PowerTarget { machine, watts }, why));
        }
    }
    after
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
        let kw = expected_w(rules, state, &inputs.failed, m, now_us) / 1000.0;
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
    (excess_kw, allowance_kw): (f64, f64),
) -> Vec<String> {
    let mut candidates = sheddable(rules, state, inputs, now_us);
    candidates.sort_by(|a, b| MachineInput::shed_order(a, b));
    let (mut shed_kw, mut out) = (0.0, Vec::new());
    for m in candidates {
        let kw = expected_w(rules, state, &inputs.failed, m, now_us) / 1000.0;
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

/// Machines to wake, most profitable then most efficient first, while `room_kw` allows.
fn wake(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    room_kw: f64,
) -> Vec<String> {
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
    let (mut added, mut out) = (0.0, Vec::new());
    for m in candidates {
        let kw = m.nominal_w / 1000.0;
        if added + kw > room_kw + 1e-9 {
            break;
        }
        added += kw;
        state.command(&m.id, true, now_us);
        out.push(m.id.clone());
    }
    out
}
