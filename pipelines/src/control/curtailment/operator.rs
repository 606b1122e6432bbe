//! The operators' commands (an override that asks for a sleep, wake, reboot or outlet switch),
//! carried out at the step after they were heard: each becomes a decision row and, unless the
//! site's emergency refuses it, a command.

use adit_schemas::control::{CommandAction, DecisionRow};
use adit_schemas::overrides::OverrideKind;
use adit_schemas::time::from_micros;

use super::rows::{Produced, command, mode_name};
use super::site::SiteState;
use crate::control::controller::Mode;
use crate::error::Result;

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
    let mode = site.control.mode;
    let state_json = serde_json::to_string(&site.control).map_err(crate::Error::Encode)?;
    let at = from_micros(at_us);
    for (j, o) in std::mem::take(&mut site.operator).into_iter().enumerate() {
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
        let inputs = serde_json::json!({ "override": &o, "mode": mode_name(mode) });
        let row = DecisionRow {
            id: format!("{site_id}:{at_us}:op{j}"),
            site: site_id.to_string(),
            ts: at,
            step: format!("{site_id}:{at_us}"),
            from_mode: mode_name(mode),
            to_mode: mode_name(mode),
            rule: if refused {
                "operator_refused"
            } else {
                "operator"
            }
            .into(),
            action: action.as_str().into(),
            machine: Some(machine.clone()),
            fan_level: None,
            power_target_w: None,
            target_kw: None,
            load_kw,
            dry_run,
            inputs: inputs.to_string(),
            state: state_json.clone(),
            date: at.date_naive(),
        };
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
