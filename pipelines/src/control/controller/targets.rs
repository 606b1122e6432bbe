//! Watt set-points: a machine whose firmware takes a power target (`min_target_w`) is turned
//! down before any machine is put to sleep, and turned back up before any is woken, so a
//! curtailment idles machines warm instead of cold-starting them (LuxOS and Braiins OS do
//! this on one machine; the controller does it across the site, within the same ramp).
//!
//! A target is lowered from what the machine is expected to draw (its pending target, else its
//! measured power) toward its `min_target_w`, least profitable first, and whole watts are
//! rounded so the load lands at or under what was asked. One whose target is already at its
//! minimum, or whose last command failed, has nothing more to give: the next machine gives,
//! then machines are slept. Raising goes most profitable first, up to the nameplate power,
//! where the target is lifted; a machine whose last command failed is raised too, once that
//! command had `command_timeout` (it may have taken the set-point and lost the answer).

use super::decision::{Action, Decision, Made, Rule};
use super::expected::expected_w;
use super::inputs::{ControlRules, Inputs, MachineInput};
use super::state::{Mode, SiteControl};

/// Less than this, W, is not worth a command when raising (lowering takes what is asked,
/// rounded down to whole watts).
const MIN_STEP_W: f64 = 1.0;

/// The target `m` runs under now, W: its commanded target, else its nameplate power.
fn target_of(state: &SiteControl, m: &MachineInput) -> f64 {
    state
        .machines
        .get(&m.id)
        .and_then(|c| c.target_w)
        .map_or(m.nominal_w, |t| t.min(m.nominal_w))
}

/// Whether `m` may have its target moved now: it takes one, is under control, runs, is meant
/// to be on, and its last command did not fail.
fn adjustable(state: &SiteControl, inputs: &Inputs, m: &MachineInput) -> bool {
    takes_target(state, m) && !inputs.failed.contains(&m.id)
}

/// Whether `m` takes a target, is under control, runs and is meant to be on.
fn takes_target(state: &SiteControl, m: &MachineInput) -> bool {
    m.min_target_w.is_some()
        && m.controllable
        && m.running()
        && state.machines.get(&m.id).is_some_and(|c| c.on)
}

/// Lowers targets by up to `excess_kw`, within `allowance_kw`, least profitable first;
/// returns the kW taken off the expected load.
pub(super) fn lower(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    (excess_kw, allowance_kw): (f64, f64),
    made: &Made,
    out: &mut Vec<Decision>,
) -> f64 {
    let mut candidates: Vec<&MachineInput> = inputs
        .machines
        .iter()
        .filter(|m| adjustable(state, inputs, m))
        .collect();
    candidates.sort_by(|a, b| MachineInput::shed_order(a, b));
    let mut left_w = (excess_kw.min(allowance_kw) * 1000.0).max(0.0);
    let mut lowered_w = 0.0;
    for m in candidates {
        if left_w <= 0.0 {
            break;
        }
        let floor = m.min_target_w.unwrap_or(m.nominal_w).ceil();
        let from = expected_w(rules, state, &inputs.failed, m, now_us).min(target_of(state, m));
        let to = (from - left_w).floor().max(floor);
        if to >= from {
            continue;
        }
        left_w -= from - to;
        lowered_w += from - to;
        state.set_target(&m.id, Some(to), now_us);
        state.last_shed_us = Some(now_us);
        out.push(made.decision(
            Mode::Curtailing,
            Action::PowerTarget {
                machine: m.id.clone(),
                watts: to,
            },
            made.rule,
        ));
    }
    lowered_w / 1000.0
}

/// Whether `m` runs under a lowered target that may be raised now: as for lowering, except
/// that a machine whose last command failed is tried again once `command_timeout` has passed
/// since that command. A set-point the machine took but whose answer was lost (a timeout on a
/// busy host) would otherwise hold it down for good after the curtailment ended; one it never
/// took is lifted on paper, which is what it draws.
fn lowered(
    rules: &ControlRules,
    state: &SiteControl,
    inputs: &Inputs,
    m: &MachineInput,
    now_us: i64,
) -> bool {
    let retry_due = || {
        state.machines.get(&m.id).is_some_and(|c| {
            let last_us = c.target_since_us.unwrap_or(c.since_us).max(c.since_us);
            now_us - last_us >= rules.command_timeout_us
        })
    };
    let may_raise = takes_target(state, m) && (!inputs.failed.contains(&m.id) || retry_due());
    may_raise && target_of(state, m) < m.nominal_w
}

/// Whether any machine runs under a lowered target that may be raised.
pub(super) fn any_lowered(
    rules: &ControlRules,
    state: &SiteControl,
    inputs: &Inputs,
    now_us: i64,
) -> bool {
    inputs
        .machines
        .iter()
        .any(|m| lowered(rules, state, inputs, m, now_us))
}

/// Raises lowered targets by up to `room_kw`, most profitable first, lifting each that reaches
/// its nameplate power; returns the kW added and whether any target is still lowered.
pub(super) fn raise(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    room_kw: f64,
    (made, why): (&Made, Rule),
    out: &mut Vec<Decision>,
) -> (f64, bool) {
    let mut candidates: Vec<&MachineInput> = inputs
        .machines
        .iter()
        .filter(|m| lowered(rules, state, inputs, m, now_us))
        .collect();
    candidates.sort_by(|a, b| MachineInput::wake_order(a, b));
    let mut left_w = (room_kw * 1000.0).max(0.0);
    let (mut added_w, mut still_lowered) = (0.0, false);
    for m in candidates {
        let from = target_of(state, m);
        let expected = expected_w(rules, state, &inputs.failed, m, now_us).max(from);
        let want = m.nominal_w - expected;
        let add = want.min(left_w).floor();
        if add < MIN_STEP_W && want >= MIN_STEP_W {
            still_lowered = true;
            continue;
        }
        left_w -= add.max(0.0);
        added_w += add.max(0.0);
        let to = (expected + add).min(m.nominal_w);
        let lifted = m.nominal_w - to < MIN_STEP_W;
        still_lowered |= !lifted;
        state.set_target(&m.id, (!lifted).then_some(to), now_us);
        out.push(made.decision(
            made.mode,
            Action::PowerTarget {
                machine: m.id.clone(),
                watts: if lifted { m.nominal_w.round() } else { to },
            },
            why,
        ));
    }
    (added_w / 1000.0, still_lowered)
}

#[cfg(test)]
mod tests {
    use super::super::{Action, GridEvent, Inputs, MachineInput, Mode, Rule, SiteControl, step};
    use super::*;
    use proptest::prelude::*;

    const M: i64 = 60_000_000;
    const T0: i64 = 1_800_000_000_000_000;

    /// Four machines of 3 kW, m-0 the most efficient; `turnable` of them (the most efficient)
    /// take a power target down to 1.5 kW.
    fn site(turnable: usize) -> Inputs {
        Inputs {
            allocation_kw: 40.0,
            emergency_temp_c: 40.0,
            grid: None,
            signal_us: Some(T0),
            prices: vec![],
            hottest_c: Some(24.0),
            sensors_us: Some(T0),
            meters_us: Some(T0),
            machines: (0..4)
                .map(|i| MachineInput {
                    id: format!("m-{i}"),
                    power_w: 3000.0,
                    power_us: None,
                    nominal_w: 3000.0,
                    efficiency_j_th: 20.0 + i as f64,
                    controllable: true,
                    breakeven_per_mwh: None,
                    min_target_w: (i < turnable).then_some(1500.0),
                })
                .collect(),
            failed: Vec::new(),
            forced_target_kw: None,
            hold: false,
            fan_pin: None,
            overrides: Vec::new(),
        }
    }

    /// An ideal actuator: a target caps the draw, a sleep stops it, a wake restores it (under
    /// the target it runs at).
    fn obey(
        inputs: &mut Inputs,
        caps: &mut std::collections::BTreeMap<String, f64>,
        d: &[Decision],
    ) {
        for d in d {
            let (id, power) = match &d.action {
                Action::Sleep { machine } => (machine, Some(0.0)),
                Action::Wake { machine } => (machine, None),
                Action::PowerTarget { machine, watts } => {
                    caps.insert(machine.clone(), *watts);
                    (machine, None)
                }
                _ => continue,
            };
            let m = inputs
                .machines
                .iter_mut()
                .find(|m| &m.id == id)
                .expect("known");
            let cap = caps
                .get(id)
                .copied()
                .unwrap_or(m.nominal_w)
                .min(m.nominal_w);
            m.power_w = match power {
                Some(p) => p,
                None if matches!(d.action, Action::PowerTarget { .. }) && m.power_w == 0.0 => 0.0,
                None => cap,
            };
        }
    }

    fn at(inputs: &mut Inputs, now: i64) {
        inputs.signal_us = Some(now);
        inputs.sensors_us = Some(now);
        inputs.meters_us = Some(now);
    }

    /// A demand-response event "dr" to `target_kw` (deadline T0 + 10 min) in force at `now`.
    fn curtail(inputs: &mut Inputs, target_kw: f64, now: i64) {
        inputs.grid = Some(GridEvent {
            event_id: "dr".into(),
            target_kw,
            deadline_us: T0 + 10 * M,
        });
        at(inputs, now);
    }

    /// Two of four machines take targets; a first step at T0, then "dr" to 9.5 kW at T0 + 1
    /// min: the state, the inputs and (empty) caps after it, and that step's decisions.
    fn two_turnable_curtailed(
        rules: &ControlRules,
    ) -> (
        SiteControl,
        Inputs,
        std::collections::BTreeMap<String, f64>,
        Vec<Decision>,
    ) {
        let (mut state, mut inputs) = (SiteControl::default(), site(2));
        step(rules, &mut state, &inputs, T0);
        curtail(&mut inputs, 9.5, T0 + M);
        let d = step(rules, &mut state, &inputs, T0 + M);
        (state, inputs, Default::default(), d)
    }

    fn load_kw(inputs: &Inputs) -> f64 {
        inputs.machines.iter().map(|m| m.power_w).sum::<f64>() / 1000.0
    }

    #[test]
    fn targets_are_lowered_before_any_machine_sleeps_and_raised_before_any_wakes() {
        let rules = ControlRules {
            cooldown_us: 2 * M,
            min_off_us: M,
            ..ControlRules::default()
        };
        // 12 kW to 9.5: two turnable machines can give 3 kW, so nothing sleeps.
        let (mut state, mut inputs, mut caps, d) = two_turnable_curtailed(&rules);
        assert!(
            d.iter().all(|d| !matches!(d.action, Action::Sleep { .. })),
            "{d:?}"
        );
        let targets: Vec<(String, f64)> = d
            .iter()
            .filter_map(|d| match &d.action {
                Action::PowerTarget { machine, watts } => Some((machine.clone(), *watts)),
                _ => None,
            })
            .collect();
        assert_eq!(
            targets,
            vec![("m-1".into(), 1500.0), ("m-0".into(), 2000.0)],
            "least efficient first"
        );
        assert!(
            d.iter()
                .all(|d| d.rule == Rule::GridCurtail || d.rule == Rule::FanBand)
        );
        obey(&mut inputs, &mut caps, &d);
        assert!(load_kw(&inputs) <= 9.5, "{}", load_kw(&inputs));
        // Still in force: nothing more to do.
        at(&mut inputs, T0 + 2 * M);
        let d = step(&rules, &mut state, &inputs, T0 + 2 * M);
        assert!(
            d.iter()
                .all(|d| matches!(d.action, Action::Mode | Action::FanLevel { .. })),
            "{d:?}"
        );
        // Deeper, to 6 kW: the targets go to their minimum, then the least efficient machine
        // sleeps.
        inputs.grid.as_mut().expect("event").target_kw = 6.0;
        at(&mut inputs, T0 + 3 * M);
        let d = step(&rules, &mut state, &inputs, T0 + 3 * M);
        let kinds: Vec<&Action> = d
            .iter()
            .map(|d| &d.action)
            .filter(|a| !matches!(a, Action::Mode | Action::FanLevel { .. }))
            .collect();
        assert!(
            matches!(kinds.first(), Some(Action::PowerTarget { watts, .. }) if *watts == 1500.0),
            "{kinds:?}"
        );
        assert!(
            matches!(kinds.last(), Some(Action::Sleep { .. })),
            "{kinds:?}"
        );
        obey(&mut inputs, &mut caps, &d);
        assert!(load_kw(&inputs) <= 6.0, "{}", load_kw(&inputs));
        // The event ends: after the cooldown the running machines' targets are raised, and
        // only once they are lifted does the sleeping machine wake.
        inputs.grid = None;
        let mut order = Vec::new();
        for minute in 4..=12 {
            let now = T0 + minute * M;
            at(&mut inputs, now);
            let d = step(&rules, &mut state, &inputs, now);
            obey(&mut inputs, &mut caps, &d);
            order.extend(d.iter().filter_map(|d| match &d.action {
                Action::PowerTarget { machine, watts } => Some(format!("{machine}={watts}")),
                Action::Wake { machine } => Some(format!("wake {machine}")),
                _ => None,
            }));
        }
        let first_wake = order
            .iter()
            .position(|o| o.starts_with("wake"))
            .expect("a wake");
        let last_target = order
            .iter()
            .rposition(|o| !o.starts_with("wake"))
            .expect("targets");
        assert!(last_target < first_wake, "{order:?}");
        assert_eq!(
            order,
            vec!["m-0=3000", "m-1=3000", "wake m-3"],
            "lifted to nameplate, then woken"
        );
        assert_eq!(state.mode, Mode::Running, "{order:?}");
        assert!((load_kw(&inputs) - 12.0).abs() < 1e-9);
    }

    #[test]
    fn a_machine_whose_lowering_failed_is_lifted_once_its_command_had_its_time() {
        let rules = ControlRules {
            cooldown_us: M,
            min_off_us: M,
            command_timeout_us: 3 * M,
            ..ControlRules::default()
        };
        let (mut state, mut inputs, mut caps, d) = two_turnable_curtailed(&rules);
        // The machines obey, but m-0's answer is lost: its actuator reports it failed.
        obey(&mut inputs, &mut caps, &d);
        assert_eq!(caps.get("m-0"), Some(&2000.0), "{d:?}");
        inputs.failed = vec!["m-0".into()];
        inputs.grid = None;
        let lifted = |d: &[Decision], id: &str| {
            d.iter().any(|d| {
                matches!(&d.action, Action::PowerTarget { machine, watts }
                    if machine == id && *watts == 3000.0)
            })
        };
        // After the cooldown m-1 is lifted at once; m-0 is left until its command had its time,
        // then tried again, once.
        let (mut m0_lifted, mut m1_lifted) = (Vec::new(), Vec::new());
        for minute in 2..=6 {
            let now = T0 + minute * M;
            at(&mut inputs, now);
            let d = step(&rules, &mut state, &inputs, now);
            if lifted(&d, "m-0") {
                m0_lifted.push(minute);
                inputs.failed.clear();
            }
            if lifted(&d, "m-1") {
                m1_lifted.push(minute);
            }
            obey(&mut inputs, &mut caps, &d);
        }
        assert_eq!(m1_lifted, vec![2], "after the cooldown");
        assert_eq!(m0_lifted, vec![4], "3 minutes after its command");
        assert!(
            (load_kw(&inputs) - 12.0).abs() < 1e-9,
            "{}",
            load_kw(&inputs)
        );
        assert!(targets_of(&state).is_empty(), "{:?}", targets_of(&state));
    }

    #[test]
    fn a_machine_first_seen_before_its_first_reading_is_turned_down_once_it_runs() {
        let rules = ControlRules::default();
        let (mut state, mut inputs) = (SiteControl::default(), site(2));
        // The controller's first step comes before any meter is read (failsafe: nothing is
        // woken), m-1 among them; then it runs, and with no room under the allocation to wake
        // a machine (the margin takes it), no command ever tells the controller so.
        inputs.allocation_kw = 12.0 + rules.resume_margin_kw - 1.0;
        inputs.meters_us = None;
        inputs.machines[1].power_w = 0.0;
        step(&rules, &mut state, &inputs, T0);
        inputs.machines[1].power_w = 3000.0;
        at(&mut inputs, T0 + M);
        step(&rules, &mut state, &inputs, T0 + M);
        curtail(&mut inputs, 9.5, T0 + 2 * M);
        let d = step(&rules, &mut state, &inputs, T0 + 2 * M);
        let acted: Vec<String> = d
            .iter()
            .filter_map(|d| match &d.action {
                Action::PowerTarget { machine, watts } => Some(format!("{machine}={watts}")),
                Action::Sleep { machine } => Some(format!("sleep {machine}")),
                Action::Wake { machine } => Some(format!("wake {machine}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            acted,
            vec!["m-1=1500", "m-0=2000"],
            "as if read from the start"
        );
    }

    #[test]
    fn a_state_written_before_commands_were_told_apart_keeps_what_it_said() {
        let old = r#"{"on":false,"since_us":5,"target_w":null,"target_since_us":null}"#;
        let c: super::super::MachineControl = serde_json::from_str(old).unwrap();
        assert!(c.commanded && !c.on, "{c:?}");
    }

    fn targets_of(state: &SiteControl) -> Vec<(String, f64)> {
        state
            .machines
            .iter()
            .filter_map(|(id, c)| c.target_w.map(|w| (id.clone(), w)))
            .collect()
    }

    #[test]
    fn a_target_the_machine_does_not_follow_is_not_lowered_again_and_the_next_machine_sleeps() {
        let rules = ControlRules::default();
        let (mut state, mut inputs) = (SiteControl::default(), site(1));
        step(&rules, &mut state, &inputs, T0);
        curtail(&mut inputs, 10.5, T0 + M);
        let d = step(&rules, &mut state, &inputs, T0 + M);
        assert_eq!(
            d.iter()
                .filter(|d| matches!(d.action, Action::PowerTarget { .. }))
                .count(),
            1,
            "{d:?}"
        );
        // m-3 ignores its target: once the command had its time, the load is measured again,
        // its target is at its minimum, and a machine is slept instead.
        let later = T0 + M + rules.command_timeout_us;
        at(&mut inputs, later);
        let d = step(&rules, &mut state, &inputs, later);
        assert!(
            d.iter()
                .all(|d| !matches!(d.action, Action::PowerTarget { .. })),
            "{d:?}"
        );
        assert!(
            d.iter().any(|d| matches!(d.action, Action::Sleep { .. })),
            "{d:?}"
        );
    }

    #[test]
    fn a_target_is_judged_by_the_readings_taken_after_it_not_by_the_clock() {
        let rules = ControlRules::default();
        let (mut state, mut inputs) = (SiteControl::default(), site(1));
        let measured = |inputs: &mut Inputs, t: i64| {
            for m in &mut inputs.machines {
                m.power_us = Some(t);
            }
        };
        measured(&mut inputs, T0);
        step(&rules, &mut state, &inputs, T0);
        curtail(&mut inputs, 10.5, T0 + M);
        measured(&mut inputs, T0 + M);
        let d = step(&rules, &mut state, &inputs, T0 + M);
        assert!(
            d.iter()
                .any(|d| matches!(d.action, Action::PowerTarget { .. })),
            "{d:?}"
        );
        // The clock passes the command's time, but the newest reading was taken before the
        // command could show (a busy host lands readings late): nothing more is decided.
        let later = T0 + M + rules.command_timeout_us;
        at(&mut inputs, later);
        measured(&mut inputs, later - rules.command_timeout_us / 2);
        let d = step(&rules, &mut state, &inputs, later);
        assert!(
            d.iter()
                .all(|d| !matches!(d.action, Action::PowerTarget { .. } | Action::Sleep { .. })),
            "a lagging reading is taken for a machine that ignored its target: {d:?}"
        );
        // A reading taken once the command had its time shows it ignored: the site is
        // curtailing again and, within the ramp's minute, a machine sleeps.
        let mut decided = Vec::new();
        for now in [later + 1, later + M] {
            at(&mut inputs, now);
            measured(&mut inputs, now);
            decided.extend(step(&rules, &mut state, &inputs, now));
        }
        assert!(
            decided
                .iter()
                .any(|d| matches!(d.action, Action::Sleep { .. })),
            "{decided:?}"
        );
    }

    proptest! {
        /// Whatever the targets asked, a machine is slept for the load only once no machine
        /// that takes a target can be turned down further, every target lies within its
        /// machine's minimum and nameplate power, and the load obeyed reaches the target.
        #[test]
        fn no_machine_sleeps_while_a_target_could_still_be_lowered(
            turnable in 0usize..=4,
            targets in proptest::collection::vec(0.0f64..14.0, 1..6),
        ) {
            let rules = ControlRules { min_on_us: 0, min_off_us: 0, cooldown_us: 0, ..ControlRules::default() };
            let (mut state, mut inputs) = (SiteControl::default(), site(turnable));
            let mut caps = std::collections::BTreeMap::<String, f64>::new();
            step(&rules, &mut state, &inputs, T0);
            for (i, target_kw) in targets.into_iter().enumerate() {
                let now = T0 + (i as i64 + 1) * 10 * M;
                inputs.grid = Some(GridEvent { event_id: format!("dr-{i}"), target_kw, deadline_us: now + M });
                at(&mut inputs, now);
                let d = step(&rules, &mut state, &inputs, now);
                let first_sleep = d.iter().position(|d| matches!(d.action, Action::Sleep { .. }));
                if let Some(at_sleep) = first_sleep {
                    for m in inputs.machines.iter().filter(|m| m.min_target_w.is_some() && m.running()) {
                        let lowered_to = d[..at_sleep].iter().rev().find_map(|d| match &d.action {
                            Action::PowerTarget { machine, watts } if machine == &m.id => Some(*watts),
                            _ => None,
                        }).or_else(|| caps.get(&m.id).copied()).unwrap_or(m.nominal_w);
                        prop_assert!(lowered_to <= 1500.0, "{} at {lowered_to} when a machine slept: {d:?}", m.id);
                    }
                }
                for d in &d {
                    if let Action::PowerTarget { watts, .. } = d.action {
                        prop_assert!((1500.0..=3000.0).contains(&watts), "{d:?}");
                    }
                }
                obey(&mut inputs, &mut caps, &d);
                prop_assert!(load_kw(&inputs) <= target_kw + 1e-9, "{} over {target_kw}", load_kw(&inputs));
            }
        }
    }
}
