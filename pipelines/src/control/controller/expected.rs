//! What a machine will draw once the commands still in flight have taken effect: the load the
//! controller sheds and wakes against, so a lagging machine is not answered by shedding or
//! waking another.

use super::inputs::{ControlRules, MachineInput};
use super::state::SiteControl;

/// What `m` will draw once the commands still in flight have taken effect, W: commanded off
/// and still running, nothing; commanded on and not running yet, its nameplate power (under
/// its target); under a new target, the target; otherwise what it draws. A command is in
/// flight until the machine was measured `command_timeout` after it (or, with no fresh
/// reading, until the clock says so), or its actuator reported it failed: the load is measured,
/// not assumed, once a command had its time, and a reading that lags — a busy host, a slow
/// poll — is not taken for a machine that ignored its command.
pub(super) fn expected_w(
    rules: &ControlRules,
    state: &SiteControl,
    failed: &[String],
    m: &MachineInput,
    now_us: i64,
) -> f64 {
    let Some(c) = state
        .machines
        .get(&m.id)
        .filter(|_| !failed.contains(&m.id))
    else {
        return m.power_w;
    };
    let measured_us = m.power_us.unwrap_or(now_us);
    let recent = |t: i64| measured_us - t < rules.command_timeout_us;
    let target = c.target_w.map_or(m.nominal_w, |t| t.min(m.nominal_w));
    let waking = recent(c.since_us) && c.on && !m.running();
    let retargeted = m.running() && c.target_since_us.is_some_and(recent);
    if recent(c.since_us) && !c.on && m.running() {
        0.0
    } else if waking || retargeted {
        target
    } else {
        m.power_w
    }
}
