//! The curtailment and cooling state machine of one site, as a pure function
//! `(state, inputs, now) → (state, decisions)` (issue 10; the pipeline around it, the commands
//! and the actuators come next — this module decides only).
//!
//! **Modes**: `running` (no limit below the allocation binds), `curtailing` (load above the
//! target, shedding), `curtailed` (at or below the target), `resuming` (a limit lifted, waking
//! machines back), `emergency` (a temperature at or over the site's emergency limit: every
//! machine to sleep, fans to 9), `failsafe` (an input is older than its limit: the configured
//! safe action).
//!
//! **Rules, in order** (the first that applies decides the target; each decision names it):
//! 1. `stale_inputs`: the newest meter reading, sensor reading or (when a curtailment is active)
//!    grid signal older than its limit → failsafe: fans to 9, and either hold the load as it is
//!    or shed to `failsafe_target_kw`.
//! 2. `emergency_temperature`: the hottest sensor at or over `emergency_temp_c` → sleep every
//!    machine, ignoring minimum on-times; it lifts once the temperature is `emergency_clear_c`
//!    below the limit and the cooldown has passed.
//! 3. `override_target`: an operator's forced load target (until it expires).
//! 4. `grid_curtail`: an active demand-response event: target = its `target_kw` (at most the
//!    allocation) until a `normal` signal.
//! 5. `price_strike`: the price over `strike_price` for `strike_intervals` consecutive intervals
//!    → target `price_target_kw`; it lifts after as many consecutive intervals at or under it.
//! 6. `price_breakeven` (with `shed_unprofitable`): the price over a machine's breakeven for
//!    `strike_intervals` consecutive intervals makes it unprofitable until as many intervals
//!    at or under it; while any machine is, the target is the allocation under this rule.
//! 7. `allocation_cap`: otherwise the target is the allocation.
//!
//! **Unprofitable machines**: outside an emergency, failsafe or hold, each unprofitable
//! machine that runs is put to sleep (least profitable first, within the ramp and minimum
//! on-time) before the target is sought, and none is woken; once the price falls back under
//! its breakeven it is woken as any other, after the cooldown.
//! **Watt set-points** (`targets.rs`): while the load is over the target, the power targets of
//! the machines that take one (`min_target_w`) are lowered first, least profitable first, down
//! to their minimum; only what they cannot give is shed by sleeping machines. Back under,
//! lowered targets are raised (lifted at nameplate) before any machine is woken, and a machine
//! woken under a lowered target has it lifted.
//! **Shedding**: while the load is over the target, machines are put to sleep least profitable
//! first (lowest breakeven; those of unknown earnings after), then least efficient (highest
//! J/TH), then by id, only those on for at least `min_on`, at most
//! `ramp_kw_per_min` × the time since the last step (so a step never removes more than the ramp
//! allows). A machine commanded to sleep whose power did not drop is not chosen again within
//! `command_timeout`; the next machine is (the load is measured, not assumed).
//! **Resuming**: once no limit binds and `cooldown` has passed since the last shed, sleeping
//! machines are woken most efficient first, if off for at least `min_off`, while the load plus
//! their nominal power stays under the target less `resume_margin_kw`, within the same ramp.
//! **Overrides** (from the pipeline, named in `Inputs::overrides`): `hold` sheds and wakes
//! nothing (fans and the emergency still act); a machine not `controllable` is never chosen;
//! `fan_pin` fixes the fans outside failsafe and emergency.
//! **Fans**: the hottest temperature picks a level from the band table (the first band whose
//! upper bound it is under; 9 above all); going down needs `fan_hysteresis_c` below the bound
//! and `fan_dwell` since the last change (a noisy sensor does not make the fans hunt).

mod decision;
mod expected;
mod fans;
mod inputs;
mod load;
mod state;
mod targets;

pub use decision::{Action, Decision, Rule};
pub use inputs::{ControlRules, GridEvent, Inputs, MachineInput};
pub use state::{MachineControl, Mode, SiteControl};

use decision::Made;
use fans::fans;
use inputs::MINUTE_US;
use load::{emergency, shed_unprofitable, toward_target};
use std::collections::BTreeSet;

/// One step for one site: updates `state` and returns the decisions, in order.
pub fn step(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
) -> Vec<Decision> {
    for m in &inputs.machines {
        state
            .machines
            .entry(m.id.clone())
            .or_insert(MachineControl::new(
                m.running(),
                now_us - rules.min_on_us.max(rules.min_off_us),
            ))
            .seen(m.running());
    }
    state.price_high = price_high(rules, state.price_high, &inputs.prices);
    state.unprofitable = unprofitable(rules, &state.unprofitable, inputs);
    let (rule, mode, target_kw) = target(rules, state, inputs, now_us);
    let elapsed = state
        .last_step_us
        .map_or(MINUTE_US, |t| (now_us - t).clamp(0, MINUTE_US));
    let made = Made {
        rule,
        mode,
        from: state.mode,
        target_kw,
        load_kw: inputs.machines.iter().map(|m| m.power_w).sum::<f64>() / 1000.0,
        expected_kw: expected_load_kw(rules, state, inputs, now_us),
        allowance_kw: rules.ramp_kw_per_min * elapsed as f64 / MINUTE_US as f64,
    };
    state.last_step_us = Some(now_us);
    let mut out: Vec<Decision> = fans(rules, state, inputs, now_us, mode, rule)
        .map(|(action, why)| made.decision(mode, action, why))
        .into_iter()
        .collect();
    let mode = if mode == Mode::Emergency {
        out.extend(emergency(state, inputs, now_us).map(|a| made.decision(mode, a, rule)));
        mode
    } else if inputs.hold && mode != Mode::Failsafe {
        state.emergency_since_us = None;
        made.from
    } else {
        state.emergency_since_us = None;
        let made = if mode == Mode::Failsafe {
            made
        } else {
            shed_unprofitable(rules, state, inputs, now_us, made, &mut out)
        };
        let after = toward_target(rules, state, inputs, now_us, &made, &mut out);
        let unprofitable_on = state
            .unprofitable
            .iter()
            .any(|id| state.machines.get(id).is_some_and(|c| c.on));
        if after == Mode::Curtailed && unprofitable_on {
            Mode::Curtailing
        } else {
            after
        }
    };
    if mode != made.from && !out.iter().any(|d| d.to == mode) {
        out.push(made.decision(mode, Action::Mode, rule));
    }
    if inputs.hold && !state.held {
        out.push(made.decision(mode, Action::Mode, Rule::OverrideHold));
    }
    state.held = inputs.hold;
    for d in &mut out {
        d.to = mode;
    }
    state.mode = mode;
    out
}

/// The rule and target in force.
fn target(
    rules: &ControlRules,
    state: &SiteControl,
    inputs: &Inputs,
    now_us: i64,
) -> (Rule, Mode, Option<f64>) {
    let stale = |t: Option<i64>, limit: i64| t.is_none_or(|t| now_us - t > limit);
    let signal_stale = inputs.grid.is_some() && stale(inputs.signal_us, rules.signal_stale_us);
    if stale(inputs.meters_us, rules.meter_stale_us)
        || stale(inputs.sensors_us, rules.sensor_stale_us)
        || signal_stale
    {
        return (Rule::StaleInputs, Mode::Failsafe, rules.failsafe_target_kw);
    }
    let hottest = inputs.hottest_c.unwrap_or(f64::MIN);
    let in_emergency = state.mode == Mode::Emergency;
    let cooled = hottest <= inputs.emergency_temp_c - rules.emergency_clear_c
        && state
            .emergency_since_us
            .is_none_or(|t| now_us - t >= rules.cooldown_us);
    if hottest >= inputs.emergency_temp_c || (in_emergency && !cooled) {
        return (Rule::EmergencyTemperature, Mode::Emergency, Some(0.0));
    }
    if let Some(kw) = inputs.forced_target_kw {
        return (
            Rule::OverrideTarget,
            Mode::Curtailing,
            Some(kw.min(inputs.allocation_kw)),
        );
    }
    if let Some(g) = &inputs.grid {
        return (
            Rule::GridCurtail,
            Mode::Curtailing,
            Some(g.target_kw.min(inputs.allocation_kw)),
        );
    }
    if state.price_high {
        return (
            Rule::PriceStrike,
            Mode::Curtailing,
            Some(rules.price_target_kw.min(inputs.allocation_kw)),
        );
    }
    if !state.unprofitable.is_empty() {
        return (
            Rule::PriceBreakeven,
            Mode::Curtailing,
            Some(inputs.allocation_kw),
        );
    }
    (
        Rule::AllocationCap,
        Mode::Running,
        Some(inputs.allocation_kw),
    )
}

/// The machines the price makes unprofitable: a machine joins once the last
/// `strike_intervals` prices are all over its breakeven and leaves once they are all at or
/// under it; one whose breakeven is unknown, or that is gone, is not.
fn unprofitable(rules: &ControlRules, was: &BTreeSet<String>, inputs: &Inputs) -> BTreeSet<String> {
    let n = rules.strike_intervals.max(1);
    if !rules.shed_unprofitable {
        return BTreeSet::new();
    }
    if inputs.prices.len() < n {
        return was.clone();
    }
    let last = &inputs.prices[inputs.prices.len() - n..];
    inputs
        .machines
        .iter()
        .filter(|m| {
            let Some(b) = m.breakeven_per_mwh else {
                return false;
            };
            if was.contains(&m.id) {
                !last.iter().all(|p| *p <= b)
            } else {
                last.iter().all(|p| *p > b)
            }
        })
        .map(|m| m.id.clone())
        .collect()
}

/// Whether the price is over the strike, with hysteresis over `strike_intervals`.
fn price_high(rules: &ControlRules, was: bool, prices: &[f64]) -> bool {
    let Some(strike) = rules.strike_price else {
        return false;
    };
    let n = rules.strike_intervals.max(1);
    if prices.len() < n {
        return was;
    }
    let last = &prices[prices.len() - n..];
    if !was && last.iter().all(|p| *p > strike) {
        true
    } else if was && last.iter().all(|p| *p <= strike) {
        false
    } else {
        was
    }
}

/// The load once the commands still in flight have taken effect, kW (see
/// [`expected::expected_w`]): a lagging machine is not answered by shedding or waking another.
fn expected_load_kw(
    rules: &ControlRules,
    state: &SiteControl,
    inputs: &Inputs,
    now_us: i64,
) -> f64 {
    inputs
        .machines
        .iter()
        .map(|m| expected::expected_w(rules, state, &inputs.failed, m, now_us))
        .sum::<f64>()
        / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = MINUTE_US;
    const T0: i64 = 1_800_000_000_000_000;

    /// Ten machines of 3 kW: m-00 the most efficient (20 J/TH), m-09 the least (38).
    fn site(now_us: i64) -> Inputs {
        Inputs {
            allocation_kw: 40.0,
            emergency_temp_c: 40.0,
            grid: None,
            signal_us: Some(now_us),
            prices: vec![],
            hottest_c: Some(24.0),
            sensors_us: Some(now_us),
            meters_us: Some(now_us),
            machines: (0..10)
                .map(|i| MachineInput {
                    id: format!("m-{i:02}"),
                    power_w: 3000.0,
                    power_us: None,
                    nominal_w: 3000.0,
                    efficiency_j_th: 20.0 + 2.0 * i as f64,
                    controllable: true,
                    breakeven_per_mwh: None,
                    min_target_w: None,
                })
                .collect(),
            failed: Vec::new(),
            forced_target_kw: None,
            hold: false,
            fan_pin: None,
            overrides: Vec::new(),
        }
    }

    /// Applies sleep/wake decisions to the machines' power (an ideal actuator).
    fn obey(inputs: &mut Inputs, decisions: &[Decision]) {
        for d in decisions {
            match &d.action {
                Action::Sleep { machine } => {
                    if let Some(m) = inputs.machines.iter_mut().find(|m| &m.id == machine) {
                        m.power_w = 0.0;
                    }
                }
                Action::Wake { machine } => {
                    if let Some(m) = inputs.machines.iter_mut().find(|m| &m.id == machine) {
                        m.power_w = m.nominal_w;
                    }
                }
                _ => {}
            }
        }
    }

    fn sleeps(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter_map(|d| match &d.action {
                Action::Sleep { machine } => Some(machine.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_grid_curtailment_sheds_least_efficient_first_within_the_ramp_then_holds() {
        let rules = ControlRules {
            ramp_kw_per_min: 6.0,
            ..ControlRules::default()
        };
        let mut state = SiteControl::default();
        let mut inputs = site(T0);
        let first = step(&rules, &mut state, &inputs, T0);
        assert_eq!(state.mode, Mode::Running, "{first:?}");
        // Curtail to 20 kW: 10 kW to shed at 6 kW per minute (two machines a minute).
        inputs.grid = Some(GridEvent {
            event_id: "dr-1".into(),
            target_kw: 20.0,
            deadline_us: T0 + 10 * M,
        });
        let mut shed = Vec::new();
        for minute in 1..=3 {
            let now = T0 + minute * M;
            inputs.signal_us = Some(now);
            inputs.sensors_us = Some(now);
            inputs.meters_us = Some(now);
            let d = step(&rules, &mut state, &inputs, now);
            assert!(sleeps(&d).len() <= 2, "ramp: {d:?}");
            assert!(
                d.iter()
                    .all(|d| d.rule == Rule::GridCurtail || d.rule == Rule::FanBand)
            );
            obey(&mut inputs, &d);
            shed.extend(sleeps(&d));
        }
        assert_eq!(
            shed,
            vec!["m-09", "m-08", "m-07", "m-06"],
            "least efficient first"
        );
        assert_eq!(state.mode, Mode::Curtailed);
        let load: f64 = inputs.machines.iter().map(|m| m.power_w).sum::<f64>() / 1000.0;
        assert!(load <= 20.0, "{load}");
        // Normal again: after the cooldown, the most efficient sleeping machines wake first.
        inputs.grid = None;
        let mut woken = Vec::new();
        for minute in 4..=20 {
            let now = T0 + minute * M;
            inputs.sensors_us = Some(now);
            inputs.meters_us = Some(now);
            let d = step(&rules, &mut state, &inputs, now);
            obey(&mut inputs, &d);
            woken.extend(d.iter().filter_map(|d| match &d.action {
                Action::Wake { machine } => Some((minute, machine.clone())),
                _ => None,
            }));
        }
        // The last shed was at minute 2: nothing wakes before minute 12.
        assert!(
            woken.iter().all(|(m, _)| *m >= 12),
            "cooldown of 10 min: {woken:?}"
        );
        let order: Vec<&str> = woken.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(order, vec!["m-06", "m-07", "m-08", "m-09"]);
        assert_eq!(state.mode, Mode::Running);
    }

    #[test]
    fn a_machine_whose_power_does_not_drop_is_passed_over_for_the_next() {
        let mut state = SiteControl::default();
        let mut inputs = site(T0);
        step(&ControlRules::default(), &mut state, &inputs, T0);
        inputs.grid = Some(GridEvent {
            event_id: "dr-2".into(),
            target_kw: 27.0,
            deadline_us: T0 + 5 * M,
        });
        let d = step(&ControlRules::default(), &mut state, &inputs, T0 + M);
        assert_eq!(sleeps(&d), vec!["m-09"]);
        // m-09 still draws 3 kW ten seconds on: it may be slow to stop; nothing more is shed.
        let d = step(
            &ControlRules::default(),
            &mut state,
            &inputs,
            T0 + M + 10_000_000,
        );
        assert_eq!(sleeps(&d), Vec::<String>::new());
        // Its actuator reports the command failed: the next step sheds m-08.
        inputs.failed = vec!["m-09".into()];
        let d = step(
            &ControlRules::default(),
            &mut state,
            &inputs,
            T0 + M + 20_000_000,
        );
        assert_eq!(sleeps(&d), vec!["m-08"]);
        // Without a report, after `command_timeout` the measured power decides as well: m-09
        // (still running) is ordered to sleep again.
        inputs.failed.clear();
        inputs.sensors_us = Some(T0 + 4 * M);
        inputs.meters_us = Some(T0 + 4 * M);
        let d = step(&ControlRules::default(), &mut state, &inputs, T0 + 4 * M);
        assert_eq!(sleeps(&d), vec!["m-09"]);
    }

    #[test]
    fn heat_walks_the_fans_up_and_an_emergency_sleeps_everything_until_it_cools() {
        let rules = ControlRules::default();
        let mut state = SiteControl::default();
        let mut levels = Vec::new();
        let mut inputs = site(T0);
        for (i, temp) in [24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0]
            .into_iter()
            .enumerate()
        {
            let now = T0 + i as i64 * M;
            inputs = Inputs {
                hottest_c: Some(temp),
                ..site(now)
            };
            step(&rules, &mut state, &inputs, now);
            levels.push(state.fan_level);
        }
        assert_eq!(levels, vec![3, 4, 5, 6, 7, 8, 9]);
        let now = T0 + 10 * M;
        inputs.hottest_c = Some(40.5);
        inputs.sensors_us = Some(now);
        inputs.meters_us = Some(now);
        let d = step(&rules, &mut state, &inputs, now);
        assert_eq!(state.mode, Mode::Emergency);
        assert_eq!(sleeps(&d).len(), 10, "every machine, min on-time or not");
        assert!(d.iter().all(|d| d.rule == Rule::EmergencyTemperature));
        obey(&mut inputs, &d);
        // 38.5 °C is not cool enough (clear at 37); 36 °C after the cooldown is.
        let now = now + 15 * M;
        inputs.hottest_c = Some(38.5);
        inputs.sensors_us = Some(now);
        inputs.meters_us = Some(now);
        step(&rules, &mut state, &inputs, now);
        assert_eq!(state.mode, Mode::Emergency);
        let now = now + M;
        inputs.hottest_c = Some(36.0);
        inputs.sensors_us = Some(now);
        inputs.meters_us = Some(now);
        step(&rules, &mut state, &inputs, now);
        assert_ne!(state.mode, Mode::Emergency);
        // Fans step down only a hysteresis below a band: 34.5 °C keeps 9 (bound 35).
        let fans = state.fan_level;
        assert_eq!(fans, 9);
    }

    #[test]
    fn a_stale_sensor_means_failsafe_with_fans_at_nine_and_the_load_held() {
        let rules = ControlRules::default();
        let mut state = SiteControl::default();
        let inputs = site(T0);
        step(&rules, &mut state, &inputs, T0);
        let later = T0 + 3 * M;
        let stale = Inputs {
            sensors_us: Some(T0),
            meters_us: Some(later),
            signal_us: Some(later),
            ..site(later)
        };
        let d = step(&rules, &mut state, &stale, later);
        assert_eq!(state.mode, Mode::Failsafe);
        assert!(
            d.iter()
                .any(|d| d.action == Action::FanLevel { level: 9 } && d.rule == Rule::StaleInputs)
        );
        assert!(sleeps(&d).is_empty(), "hold the load: {d:?}");
        // With a failsafe target, it sheds toward it within the ramp.
        let shedding = ControlRules {
            failsafe_target_kw: Some(0.0),
            ramp_kw_per_min: 9.0,
            ..ControlRules::default()
        };
        let mut state = SiteControl::default();
        step(&shedding, &mut state, &inputs, T0);
        let d = step(&shedding, &mut state, &stale, later);
        assert_eq!(sleeps(&d), vec!["m-09", "m-08", "m-07"]);
        assert_eq!(state.mode, Mode::Failsafe);
        // Fresh inputs again: out of failsafe.
        let fresh = site(later + M);
        step(&shedding, &mut state, &fresh, later + M);
        assert_ne!(state.mode, Mode::Failsafe);
    }

    fn wakes(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter_map(|d| match &d.action {
                Action::Wake { machine } => Some(machine.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_price_over_a_machines_breakeven_sleeps_it_least_profitable_first_and_a_fall_wakes_it() {
        let rules = ControlRules {
            shed_unprofitable: true,
            strike_intervals: 2,
            ramp_kw_per_min: 6.0,
            cooldown_us: 2 * M,
            min_off_us: M,
            ..ControlRules::default()
        };
        // m-i breaks even at 200 − 10 i per MWh; m-09's earnings are unknown.
        let at = |i: i64, prices: &[f64], power: &[(usize, f64)]| {
            let mut inputs = Inputs {
                prices: prices.to_vec(),
                ..site(T0 + i * M)
            };
            for (j, m) in inputs.machines.iter_mut().enumerate() {
                m.breakeven_per_mwh = (j < 9).then_some(200.0 - 10.0 * j as f64);
                if let Some((_, w)) = power.iter().find(|(k, _)| *k == j) {
                    m.power_w = *w;
                }
            }
            inputs
        };
        let mut state = SiteControl::default();
        let d = step(&rules, &mut state, &at(0, &[100.0, 175.0], &[]), T0);
        assert!(sleeps(&d).is_empty(), "one price over is not enough: {d:?}");
        // 175 twice: m-03..m-08 (170..120) lose money; the ramp (6 kW a minute) sleeps two a
        // minute, least profitable (lowest breakeven) first.
        let d = step(&rules, &mut state, &at(1, &[175.0, 175.0], &[]), T0 + M);
        assert_eq!(sleeps(&d), vec!["m-08", "m-07"]);
        assert!(
            d.iter()
                .filter(|d| matches!(d.action, Action::Sleep { .. }))
                .all(|d| d.rule == Rule::PriceBreakeven),
            "{d:?}"
        );
        let asleep = [(8, 0.0), (7, 0.0)];
        let d = step(
            &rules,
            &mut state,
            &at(2, &[175.0, 175.0], &asleep),
            T0 + 2 * M,
        );
        assert_eq!(sleeps(&d), vec!["m-06", "m-05"]);
        assert_eq!(state.mode, Mode::Curtailing, "m-04 and m-03 still run");
        let asleep = [(8, 0.0), (7, 0.0), (6, 0.0), (5, 0.0)];
        let d = step(
            &rules,
            &mut state,
            &at(3, &[175.0, 175.0], &asleep),
            T0 + 3 * M,
        );
        assert_eq!(sleeps(&d), vec!["m-04", "m-03"]);
        let asleep: Vec<(usize, f64)> = (3..9).map(|j| (j, 0.0)).collect();
        let d = step(
            &rules,
            &mut state,
            &at(4, &[175.0, 175.0], &asleep),
            T0 + 4 * M,
        );
        assert!(sleeps(&d).is_empty() && wakes(&d).is_empty(), "{d:?}");
        assert_eq!(state.mode, Mode::Curtailed);
        assert_eq!(state.unprofitable.len(), 6);
        // The price falls to 145 twice: m-03..m-05 (170..150) earn again and are woken once the
        // cooldown has passed, most profitable first; m-06..m-08 stay asleep.
        let d = step(
            &rules,
            &mut state,
            &at(5, &[175.0, 145.0], &asleep),
            T0 + 5 * M,
        );
        assert!(wakes(&d).is_empty(), "one price under is not enough: {d:?}");
        let d = step(
            &rules,
            &mut state,
            &at(6, &[145.0, 145.0], &asleep),
            T0 + 6 * M,
        );
        assert_eq!(wakes(&d), vec!["m-03", "m-04"], "within the ramp");
        assert_eq!(
            state.unprofitable,
            ["m-06", "m-07", "m-08"].map(String::from).into()
        );
    }

    #[test]
    fn a_price_over_the_strike_for_n_intervals_curtails_and_lifts_the_same_way() {
        let rules = ControlRules {
            strike_price: Some(100.0),
            strike_intervals: 2,
            price_target_kw: 9.0,
            ramp_kw_per_min: 100.0,
            ..ControlRules::default()
        };
        let mut state = SiteControl::default();
        let at = |i: i64, prices: Vec<f64>| Inputs {
            prices,
            ..site(T0 + i * M)
        };
        step(&rules, &mut state, &at(0, vec![90.0, 120.0]), T0);
        assert_eq!(state.mode, Mode::Running, "one interval over is not enough");
        let d = step(&rules, &mut state, &at(1, vec![90.0, 120.0, 130.0]), T0 + M);
        assert_eq!(state.mode, Mode::Curtailing);
        assert_eq!(sleeps(&d).len(), 7, "30 kW down to 9 kW");
        assert!(d.iter().any(|d| d.rule == Rule::PriceStrike));
        step(
            &rules,
            &mut state,
            &at(2, vec![120.0, 130.0, 95.0]),
            T0 + 2 * M,
        );
        assert!(state.price_high, "one interval under is not enough");
        step(
            &rules,
            &mut state,
            &at(3, vec![130.0, 95.0, 99.0]),
            T0 + 3 * M,
        );
        assert!(!state.price_high);
    }

    #[test]
    fn overrides_force_a_target_hold_the_site_exclude_a_machine_and_pin_the_fans() {
        let rules = ControlRules::default();
        let mut state = SiteControl::default();
        let mut inputs = site(T0);
        step(&rules, &mut state, &inputs, T0);
        // A forced target of 24 kW with m-09 out of control: m-08 and m-07 go instead.
        inputs.forced_target_kw = Some(24.0);
        inputs.machines[9].controllable = false;
        inputs.fan_pin = Some(7);
        inputs.overrides = vec!["site:target:1".into()];
        let d = step(&rules, &mut state, &inputs, T0 + M);
        assert_eq!(sleeps(&d), vec!["m-08", "m-07"]);
        assert!(d.iter().all(|d| d.rule != Rule::GridCurtail));
        assert!(d.iter().any(|d| d.rule == Rule::OverrideTarget));
        assert!(
            d.iter()
                .any(|d| d.action == Action::FanLevel { level: 7 } && d.rule == Rule::OverrideFan)
        );
        obey(&mut inputs, &d);
        // Held: a lower target sheds nothing more, and says so once.
        inputs.forced_target_kw = Some(12.0);
        inputs.hold = true;
        let fresh = |inputs: &mut Inputs, t: i64| {
            inputs.sensors_us = Some(t);
            inputs.meters_us = Some(t);
        };
        fresh(&mut inputs, T0 + 2 * M);
        let d = step(&rules, &mut state, &inputs, T0 + 2 * M);
        assert!(sleeps(&d).is_empty(), "{d:?}");
        assert!(d.iter().any(|d| d.rule == Rule::OverrideHold), "{d:?}");
        fresh(&mut inputs, T0 + 3 * M);
        let d = step(&rules, &mut state, &inputs, T0 + 3 * M);
        assert!(d.is_empty(), "{d:?}");
        // An emergency still sleeps everything, held or not, and fans go to 9 over the pin.
        inputs.hottest_c = Some(41.0);
        fresh(&mut inputs, T0 + 4 * M);
        let d = step(&rules, &mut state, &inputs, T0 + 4 * M);
        assert!(sleeps(&d).contains(&"m-09".to_string()));
        assert!(d.iter().any(|d| d.action == Action::FanLevel { level: 9 }));
    }

    #[test]
    fn the_state_survives_a_json_round_trip() {
        let mut state = SiteControl::default();
        let mut inputs = site(T0);
        inputs.grid = Some(GridEvent {
            event_id: "dr-3".into(),
            target_kw: 10.0,
            deadline_us: T0 + M,
        });
        step(&ControlRules::default(), &mut state, &inputs, T0);
        let back: SiteControl =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn fans_go_up_at_once_but_down_only_after_the_dwell() {
        let rules = ControlRules::default();
        let mut state = SiteControl::default();
        let at = |t: i64, c: f64| Inputs {
            hottest_c: Some(c),
            ..site(t)
        };
        let fans = |d: &[Decision]| {
            d.iter().find_map(|d| match d.action {
                Action::FanLevel { level } => Some(level),
                _ => None,
            })
        };
        assert_eq!(fans(&step(&rules, &mut state, &at(T0, 30.0), T0)), Some(6));
        // A noisy low reading 10 s later: no step down yet.
        let t = T0 + 10_000_000;
        assert_eq!(fans(&step(&rules, &mut state, &at(t, 21.0), t)), None);
        // A hot one: up at once.
        let t = T0 + 20_000_000;
        assert_eq!(fans(&step(&rules, &mut state, &at(t, 32.0), t)), Some(7));
        // Cool for good: down once the dwell has passed since that change.
        let t = T0 + 20_000_000 + rules.fan_dwell_us - 1;
        assert_eq!(fans(&step(&rules, &mut state, &at(t, 21.0), t)), None);
        let t = T0 + 20_000_000 + rules.fan_dwell_us;
        assert_eq!(fans(&step(&rules, &mut state, &at(t, 21.0), t)), Some(2));
    }
}
