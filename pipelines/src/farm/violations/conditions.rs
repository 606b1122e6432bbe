//! What is wrong at one moment: each site's and pool's conditions (power against its
//! allocation, a missed curtailment deadline, temperatures and humidity against the site's
//! limits, devices silent or unregistered), each `None` when fine. [`super::Tracker`] turns
//! them into violations over time.

use adit_schemas::registry::{Record, RegistryView};
use adit_schemas::time::span_micros;
use adit_schemas::{EnergySource, SensorKind};

use super::{Condition, Key, Kind, Severity, SiteState, Violations, ViolationsState};
use crate::farm::readings::{Device, best_power};

impl Violations {
    /// A machine's best fresh power at `at_us`, watts.
    pub(super) fn power(&self, device: &Device, nominal_w: Option<f64>, at_us: i64) -> Option<f64> {
        best_power(
            device,
            nominal_w,
            at_us,
            span_micros(self.config.stale_after),
        )
    }

    /// A site's power at `at_us`, kW: its fresh main meters, else the sum over its machines.
    pub(super) fn site_power_kw(
        &self,
        view: &RegistryView,
        site_id: &str,
        site: &SiteState,
        at_us: i64,
    ) -> f64 {
        let main_meters: Vec<&str> = view
            .meters()
            .filter(|m| m.site == site_id && m.machine.is_none())
            .map(|m| m.id.as_str())
            .collect();
        let metered: Vec<f64> = main_meters
            .iter()
            .filter_map(|id| site.devices.machines.get(*id))
            .filter_map(|d| self.power(d, None, at_us))
            .collect();
        if !metered.is_empty() {
            return metered.iter().sum::<f64>() / 1000.0;
        }
        site.devices
            .machines
            .iter()
            .filter(|(id, _)| !main_meters.contains(&id.as_str()))
            .filter_map(|(id, d)| {
                let nominal = view.machine(site_id, id).map(|m| m.nominal_power_w);
                self.power(d, nominal, at_us)
            })
            .sum::<f64>()
            / 1000.0
    }

    /// Every condition of one site at `at_us`.
    pub(super) fn site_conditions(
        &self,
        state: &ViolationsState,
        site_id: &str,
        at_us: i64,
    ) -> Vec<(Key, Option<Condition>)> {
        let Some(site) = state.sites.get(site_id) else {
            return Vec::new();
        };
        let view = &state.registry;
        let key = |scope: &str, subject: &str, kind| Key {
            scope: scope.into(),
            site: site_id.into(),
            subject: subject.into(),
            kind,
        };
        let mut out = Vec::new();
        let limits = view.site(site_id);
        if let Some(limits) = limits {
            let kw = self.site_power_kw(view, site_id, site, at_us);
            out.push((
                key("site", site_id, Kind::PowerAllocation),
                allocation_condition(
                    kw,
                    limits.allocation_kw,
                    limits.warning_pct,
                    limits.critical_pct,
                ),
            ));
        }
        if limits.is_some() {
            // Evaluated with no curtailment as well, so a lifted one resolves.
            let missed = site.curtail.and_then(|(target_kw, deadline_us)| {
                let kw = self.site_power_kw(view, site_id, site, at_us);
                (at_us > deadline_us && kw > target_kw).then_some(Condition {
                    severity: Severity::Violation,
                    value: Some(kw),
                    limit: Some(target_kw),
                })
            });
            out.push((key("site", site_id, Kind::CurtailmentDeadline), missed));
        }
        let stale = span_micros(self.config.stale_after);
        for (id, sensor) in &site.devices.sensors {
            let value = sensor
                .value
                .filter(|f| at_us - f.ts_us <= stale)
                .map(|f| f.value);
            if let (Some(limits), Some(kind)) = (limits, sensor.sensor_kind) {
                for (kind, condition) in sensor_checks(kind, value, limits) {
                    out.push((key("sensor", id, kind), condition));
                }
            }
            let known = view.sensor(site_id, id).is_some();
            out.push((
                key("sensor", id, Kind::UnregisteredDevice),
                unregistered(known),
            ));
        }
        let meter_ids: Vec<&str> = view
            .meters()
            .filter(|m| m.site == site_id && m.machine.is_none())
            .map(|m| m.id.as_str())
            .collect();
        for id in site.devices.machines.keys() {
            let known = view.machine(site_id, id).is_some() || meter_ids.contains(&id.as_str());
            out.push((
                key("machine", id, Kind::UnregisteredDevice),
                unregistered(known),
            ));
        }
        out.extend(self.silences(state, site_id, site, at_us));
        out
    }

    /// Silence of every registered device of the site.
    pub(super) fn silences(
        &self,
        state: &ViolationsState,
        site_id: &str,
        site: &SiteState,
        at_us: i64,
    ) -> Vec<(Key, Option<Condition>)> {
        let view = &state.registry;
        let limit_us = span_micros(self.config.silent_after);
        let check = |scope: &str, id: &str, record_key: String, heard: Option<i64>| {
            let since = heard.unwrap_or(i64::MIN).max(
                state
                    .registered_us
                    .get(&record_key)
                    .copied()
                    .unwrap_or(i64::MIN),
            );
            let silent_us = at_us.saturating_sub(since);
            (
                Key {
                    scope: scope.into(),
                    site: site_id.into(),
                    subject: id.into(),
                    kind: Kind::SilentDevice,
                },
                (since > i64::MIN && silent_us > limit_us).then(|| Condition {
                    severity: Severity::Warning,
                    value: Some(silent_us as f64 / 1e6),
                    limit: Some(limit_us as f64 / 1e6),
                }),
            )
        };
        let mut out = Vec::new();
        for r in view.records.values() {
            match r {
                Record::Machine(m) if m.site == site_id => {
                    // A machine that reports its status is heard when its own API answers
                    // (its meter may read on while the miner is gone); else by any reading.
                    let heard = site
                        .devices
                        .machines
                        .get(&m.id)
                        .map(|d| d.status_us.unwrap_or(d.heard_us));
                    out.push(check("machine", &m.id, r.key(), heard));
                }
                Record::Sensor(s) if s.site == site_id => {
                    let heard = site.devices.sensors.get(&s.id).map(|d| d.heard_us);
                    out.push(check("sensor", &s.id, r.key(), heard));
                }
                Record::Meter(m) if m.site == site_id => {
                    // A machine's meter reports under the machine; a main meter under itself.
                    let target = m.machine.as_deref().unwrap_or(&m.id);
                    let heard = site.devices.machines.get(target).and_then(|d| {
                        [EnergySource::Meter, EnergySource::Pdu]
                            .iter()
                            .filter_map(|s| d.power.get(s.as_str()).map(|f| f.ts_us))
                            .max()
                    });
                    out.push(check("meter", &m.id, r.key(), heard));
                }
                _ => {}
            }
        }
        out
    }

    /// Every pool's power against its allocation at `at_us`.
    pub(super) fn pool_conditions(
        &self,
        state: &ViolationsState,
        at_us: i64,
    ) -> Vec<(Key, Option<Condition>)> {
        let view = &state.registry;
        view.pools()
            .filter_map(|pool| {
                let allocation = pool.allocation_kw?;
                let kw: f64 = view
                    .machines()
                    .filter(|m| m.pool.as_deref() == Some(pool.id.as_str()))
                    .filter_map(|m| {
                        let device = state.sites.get(&m.site)?.devices.machines.get(&m.id)?;
                        self.power(device, Some(m.nominal_power_w), at_us)
                    })
                    .sum::<f64>()
                    / 1000.0;
                // Pools have no thresholds of their own: the registry's defaults apply.
                let site_defaults = adit_schemas::registry::Site::new("pool", allocation);
                Some((
                    Key {
                        scope: "pool".into(),
                        site: String::new(),
                        subject: pool.id.clone(),
                        kind: Kind::PowerAllocation,
                    },
                    allocation_condition(
                        kw,
                        allocation,
                        site_defaults.warning_pct,
                        site_defaults.critical_pct,
                    ),
                ))
            })
            .collect()
    }
}

/// What a sensor of `kind` reading `value` is checked for against its site's `limits`, each
/// with its condition now (`None`: fine).
fn sensor_checks(
    kind: SensorKind,
    value: Option<f64>,
    limits: &adit_schemas::registry::Site,
) -> Vec<(Kind, Option<Condition>)> {
    let condition = |severity, v, limit| Condition {
        severity,
        value: Some(v),
        limit: Some(limit),
    };
    match kind {
        SensorKind::Temperature => vec![
            (
                Kind::Temperature,
                value.and_then(|v| {
                    if v > limits.emergency_temp_c {
                        Some(condition(Severity::Emergency, v, limits.emergency_temp_c))
                    } else if v > limits.max_temp_c {
                        Some(condition(Severity::Critical, v, limits.max_temp_c))
                    } else {
                        None
                    }
                }),
            ),
            (
                Kind::LowTemperature,
                value
                    .filter(|v| *v < limits.min_temp_c)
                    .map(|v| condition(Severity::Warning, v, limits.min_temp_c)),
            ),
        ],
        SensorKind::Humidity => vec![(
            Kind::Humidity,
            value
                .filter(|v| *v > limits.max_humidity_pct)
                .map(|v| condition(Severity::Critical, v, limits.max_humidity_pct)),
        )],
        SensorKind::Fan => Vec::new(),
    }
}

fn unregistered(known: bool) -> Option<Condition> {
    (!known).then_some(Condition {
        severity: Severity::Warning,
        value: None,
        limit: None,
    })
}

/// Power `kw` against `allocation_kw` with the warning and critical percentages.
pub fn allocation_condition(
    kw: f64,
    allocation_kw: f64,
    warning_pct: f64,
    critical_pct: f64,
) -> Option<Condition> {
    let pct = kw / allocation_kw * 100.0;
    let (severity, limit) = if pct > 100.0 {
        (Severity::Violation, allocation_kw)
    } else if pct >= critical_pct {
        (Severity::Critical, allocation_kw * critical_pct / 100.0)
    } else if pct >= warning_pct {
        (Severity::Warning, allocation_kw * warning_pct / 100.0)
    } else {
        return None;
    };
    Some(Condition {
        severity,
        value: Some(kw),
        limit: Some(limit),
    })
}
