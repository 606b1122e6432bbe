//! The operators' commands (an override that asks for a sleep, wake, reboot or outlet switch)
//! and an admin's mode write, carried out at the step after they were heard: a command becomes
//! a decision row and, unless the site's emergency refuses it, a command; a mode write becomes
//! the site's mode, which the controller's step then starts from, and a decision row
//! (rule `operator`, action `mode`) from the mode before to the mode written.

use adit_schemas::control::{CommandAction, DecisionRow};
use adit_schemas::overrides::OverrideKind;
use adit_schemas::time::from_micros;

use super::rows::{Produced, command, mode_name};
use super::site::SiteState;
use crate::control::controller::{Mode, SiteControl};
use crate::error::Result;

/// What the last part of an operator's decision's id starts with (a controller's is a number).
const OPERATOR_ID: &str = "op";

/// Whether `row` is an operator's command or mode write carried out, not the controller's own
/// decision (it is not recomputed by replaying the step).
pub(super) fn is_operators(row: &DecisionRow) -> bool {
    row.id
        .rsplit(':')
        .next()
        .is_some_and(|last| last.starts_with(OPERATOR_ID))
}

/// Carries out the operators' commands waiting at `site`: each is a decision row (rule
/// `operator`, or `operator_refused` for one that would power a machine up during an
/// emergency) and, unless refused, a command. A `wake` ends the machine's `sleep`.
pub(super) fn commands(
    site_id: &str,
    site: &mut SiteState,
    load_kw: f64,
    at_us: i64,
    dry_run: bool,
    out: &mut Produced,
) -> Result<()> {
    let at = from_micros(at_us);
    for (j, o) in std::mem::take(&mut site.operator).into_iter().enumerate() {
        let mode = site.control.mode;
        let state_json = serde_json::to_string(&site.control).map_err(crate::Error::Encode)?;
        let row = |action: &str, machine: Option<String>, to: Mode, rule: &str| DecisionRow {
            id: format!("{site_id}:{at_us}:{OPERATOR_ID}{j}"),
            site: site_id.to_string(),
            ts: at,
            step: format!("{site_id}:{at_us}"),
            from_mode: mode_name(mode),
            to_mode: mode_name(to),
            rule: rule.into(),
            action: action.into(),
            machine,
            fan_level: None,
            power_target_w: None,
            target_kw: None,
            load_kw,
            dry_run,
            inputs: serde_json::json!({ "override": &o, "mode": mode_name(mode) }).to_string(),
            state: state_json.clone(),
            date: at.date_naive(),
        };
        if let (OverrideKind::Mode, Some(written)) = (o.kind, o.mode) {
            out.decisions.push(row("mode", None, written, "operator"));
            write_mode(&mut site.control, written, at_us);
            continue;
        }
        let (Some(machine), Some(action)) = (o.machine.clone(), action_of(o.kind)) else {
            continue;
        };
        let powers_down = action == CommandAction::Sleep
            || (action == CommandAction::Outlet && o.value == Some(0.0));
        let refused = mode == Mode::Emergency && !powers_down;
        if o.kind == OverrideKind::Wake && !refused {
            site.overrides.retain(|_, held| {
                !(held.kind == OverrideKind::Sleep && held.machine.as_ref() == Some(&machine))
            });
        }
        let rule = if refused {
            "operator_refused"
        } else {
            "operator"
        };
        let row = row(action.as_str(), Some(machine.clone()), mode, rule);
        if !refused {
            site.failed.remove(&machine);
            // The controller counts it as it counts its own commands: in flight until
            // `command_timeout`, so it is neither woken nor shed again meanwhile.
            site.control.command(&machine, !powers_down, at_us);
            out.commands.push(command(&row, &machine, action, o.value));
        }
        out.decisions.push(row);
    }
    Ok(())
}

/// Writes `mode` as the site's mode at `at_us`. An emergency written starts its cooldown then
/// (every machine sleeps until it has passed and the site is cool); any other mode ends the
/// emergency in force, so the step judges the temperature afresh.
fn write_mode(control: &mut SiteControl, mode: Mode, at_us: i64) {
    control.emergency_since_us = (mode == Mode::Emergency).then_some(at_us);
    control.mode = mode;
}

/// The command an operator's override asks for (none for one that steers the controller).
fn action_of(kind: OverrideKind) -> Option<CommandAction> {
    Some(match kind {
        OverrideKind::Sleep => CommandAction::Sleep,
        OverrideKind::Wake => CommandAction::Wake,
        OverrideKind::Reboot => CommandAction::Reboot,
        OverrideKind::Outlet => CommandAction::Outlet,
        OverrideKind::OutletCycle => CommandAction::OutletCycle,
        _ => return None,
    })
}
