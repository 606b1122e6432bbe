//! Gathering a step's inputs: what the controller of one site sees at a boundary, from the
//! registry and what the site's devices and the grid said, with the operators' overrides applied.

use adit_schemas::SensorKind;
use adit_schemas::overrides::{Override, OverrideKind};
use adit_schemas::registry::{Machine, Record, RegistryView};
use adit_schemas::time::from_micros;

use super::site::SiteState;
use crate::control::controller::{ControlRules, GridEvent, Inputs, MachineInput};
use crate::farm::readings::best_power_figure;

/// What the controller of `site_id` sees at `at_us` under `rules`, each machine with its
/// `breakeven`; `None` for a site the registry does not know (nothing to control).
pub(super) fn inputs(
    rules: &ControlRules,
    view: &RegistryView,
    site_id: &str,
    site: &SiteState,
    at_us: i64,
    breakeven: &dyn Fn(&Machine) -> Option<f64>,
) -> Option<Inputs> {
    let limits = view.site(site_id)?;
    let stale = rules.meter_stale_us;
    let mut machines = Vec::new();
    let mut temperature_sensors = Vec::new();
    for record in view.records.values() {
        match record {
            Record::Machine(m) if m.site == site_id => {
                let device = site.devices.machines.get(&m.id);
                let power = device
                    .and_then(|d| best_power_figure(d, Some(m.nominal_power_w), at_us, stale));
                let th = m.nominal_hashrate_hs / 1e12;
                machines.push(MachineInput {
                    controllable: true,
                    breakeven_per_mwh: breakeven(m),
                    min_target_w: m.power_target_min_w,
                    id: m.id.clone(),
                    power_w: power.map_or(0.0, |f| f.value),
                    power_us: power.map(|f| f.ts_us),
                    nominal_w: m.nominal_power_w,
                    efficiency_j_th: if th > 0.0 {
                        m.nominal_power_w / th
                    } else {
                        f64::MAX
                    },
                });
            }
            Record::Sensor(s) if s.site == site_id && s.kind == SensorKind::Temperature => {
                temperature_sensors.push(site.devices.sensors.get(&s.id));
            }
            _ => {}
        }
    }
    let sensor_stale = rules.sensor_stale_us;
    let hottest_c = temperature_sensors
        .iter()
        .flatten()
        .filter_map(|d| d.value)
        .filter(|f| at_us - f.ts_us <= sensor_stale)
        .map(|f| f.value)
        .reduce(f64::max);
    // The oldest sensor decides: one gone silent is a blind spot (never heard: blind).
    let sensors_us = if temperature_sensors.is_empty() {
        Some(at_us)
    } else {
        temperature_sensors
            .iter()
            .map(|d| d.and_then(|d| d.value).map(|f| f.ts_us))
            .collect::<Option<Vec<i64>>>()
            .and_then(|v| v.into_iter().min())
    };
    let meters_us = site
        .devices
        .machines
        .values()
        .flat_map(|d| d.power.values().map(|f| f.ts_us))
        .max();
    let mut inputs = Inputs {
        allocation_kw: limits.allocation_kw,
        emergency_temp_c: limits.emergency_temp_c,
        grid: site.grid.clone(),
        signal_us: site.signal_us,
        prices: site.prices.clone(),
        hottest_c,
        sensors_us,
        meters_us,
        machines,
        failed: site.failed.iter().cloned().collect(),
        forced_target_kw: None,
        hold: false,
        fan_pin: None,
        overrides: Vec::new(),
    };
    let at = from_micros(at_us);
    let active: Vec<&Override> = site.overrides.values().filter(|o| o.active(at)).collect();
    apply_overrides(&mut inputs, &active, at_us);
    Some(inputs)
}

/// Applies the overrides in force to what the controller sees.
fn apply_overrides(inputs: &mut Inputs, overrides: &[&Override], at_us: i64) {
    for o in overrides {
        match o.kind {
            OverrideKind::FanLevel => inputs.fan_pin = o.value.map(|v| v as u8),
            OverrideKind::ExcludeMachine | OverrideKind::Sleep => {
                for m in &mut inputs.machines {
                    if Some(&m.id) == o.machine.as_ref() {
                        m.controllable = false;
                    }
                }
            }
            OverrideKind::Grid => {
                inputs.grid = o.value.map(|target_kw| GridEvent {
                    event_id: o.id.clone(),
                    target_kw,
                    deadline_us: o.expires.timestamp_micros(),
                });
                inputs.signal_us = Some(at_us);
            }
            OverrideKind::Temperature => {
                inputs.hottest_c = o.value;
                inputs.sensors_us = Some(at_us);
            }
            OverrideKind::Target => inputs.forced_target_kw = o.value,
            OverrideKind::Hold => inputs.hold = true,
            OverrideKind::Cancel
            | OverrideKind::Wake
            | OverrideKind::Reboot
            | OverrideKind::Outlet
            | OverrideKind::OutletCycle
            | OverrideKind::Mode => {}
        }
        inputs.overrides.push(o.id.clone());
    }
}
