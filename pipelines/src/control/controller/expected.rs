//! What a machine will draw once the commands still in flight have taken effect: the load the
//! controller sheds and wakes against, so a lagging machine is not answered by shedding or
//! waking another.

use super::inputs::{ControlRules, MachineInput};
use super::state::SiteControl;

/// What `m` will draw once the commands still in flight have taken effect, W: commanded off
/// within `command_timeout` and still running, nothing; commanded on and not running yet, its
/// nameplate power (under its target); under a target commanded within `command_timeout`,
/// the target; otherwise what it draws (the load is measured, not assumed, once a command
/// had its time, or its actuator reported it failed).
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
    let recent = |t: i64| now_us - t < rules.command_timeout_us;
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
