//! The fans: a level from the temperature bands with hysteresis and a dwell, 9 in failsafe and
//! emergency, or an operator's pin.

use super::decision::{Action, Rule};
use super::inputs::{ControlRules, Inputs};
use super::state::{Mode, SiteControl};

/// The fans' new level and why, if it changes: 9 in failsafe and emergency (the rule in force),
/// an operator's pin, else the temperature band (up at once, down after the dwell).
pub(super) fn fans(
    rules: &ControlRules,
    state: &mut SiteControl,
    inputs: &Inputs,
    now_us: i64,
    mode: Mode,
    rule: Rule,
) -> Option<(Action, Rule)> {
    let forced = matches!(mode, Mode::Failsafe | Mode::Emergency);
    let level = match (forced, inputs.fan_pin) {
        (true, _) => 9,
        (false, Some(pin)) => pin.clamp(1, 9),
        (false, None) => fan_level(
            rules,
            state.fan_level.max(1),
            inputs.hottest_c.unwrap_or(f64::MIN),
        ),
    };
    let dwelt = state
        .fan_changed_us
        .is_none_or(|t| now_us - t >= rules.fan_dwell_us);
    let banded = !forced && inputs.fan_pin.is_none();
    if level == state.fan_level || (level < state.fan_level && !dwelt && banded) {
        return None;
    }
    state.fan_level = level;
    state.fan_changed_us = Some(now_us);
    let why = if forced {
        rule
    } else if inputs.fan_pin.is_some() {
        Rule::OverrideFan
    } else {
        Rule::FanBand
    };
    Some((Action::FanLevel { level }, why))
}

/// The fan level for `hottest`, stepping down only `hysteresis` under a band's bound.
fn fan_level(rules: &ControlRules, current: u8, hottest: f64) -> u8 {
    let level_for = |t: f64| {
        rules
            .fan_bands_c
            .iter()
            .position(|bound| t < *bound)
            .map_or(9, |i| (i + 1) as u8)
    };
    let up = level_for(hottest);
    if up >= current {
        up
    } else {
        level_for(hottest + rules.fan_hysteresis_c).max(up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_step_down_only_a_hysteresis_below_a_band() {
        let rules = ControlRules::default();
        assert_eq!(fan_level(&rules, 1, 19.0), 1);
        assert_eq!(fan_level(&rules, 1, 35.5), 9);
        assert_eq!(
            fan_level(&rules, 9, 34.5),
            9,
            "within 1 °C of the 35 °C bound"
        );
        assert_eq!(fan_level(&rules, 9, 33.9), 8);
        assert_eq!(fan_level(&rules, 5, 21.0), 2, "far below: straight down");
    }
}
