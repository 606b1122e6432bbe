//! What the farm pipelines know of each device of a site from its readings: the latest power
//! figure per source (meter, PDU, firmware), whether a machine says it is mining, when its own
//! API last answered, and each sensor's latest value. Shared by `violations` and `curtailment`,
//! so both read a machine's power the same way (meter > PDU > firmware > estimate).

use std::collections::BTreeMap;

use adit_schemas::{AnyEvent, EnergySource, MinerState, SensorKind};
use serde::{Deserialize, Serialize};

/// A power figure with its time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// When, µs.
    pub ts_us: i64,
    /// The value.
    pub value: f64,
}

/// What is known of one device heard at a site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Last time anything was heard from it.
    pub heard_us: i64,
    /// Power by source (meter, pdu, firmware).
    pub power: BTreeMap<String, Figure>,
    /// Whether it last said it was mining.
    pub mining: bool,
    /// Last sensor value (sensors).
    pub value: Option<Figure>,
    /// What the sensor measures.
    pub sensor_kind: Option<SensorKind>,
    /// Last time the machine's own API answered (a status that is not `offline`).
    #[serde(default)]
    pub status_us: Option<i64>,
}

/// The devices heard at one site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteDevices {
    /// Machines (and site meters) by id.
    pub machines: BTreeMap<String, Device>,
    /// Sensors by id.
    pub sensors: BTreeMap<String, Device>,
}

impl SiteDevices {
    /// Applies one reading taken at `ts_us` (older than what is known of its device: ignored).
    pub fn apply(&mut self, ts_us: i64, reading: &Reading) {
        let device = match reading {
            Reading::Power { machine, .. } | Reading::Miner { machine, .. } => {
                self.machines.entry(machine.clone()).or_default()
            }
            Reading::Sensor { sensor, .. } => self.sensors.entry(sensor.clone()).or_default(),
        };
        if ts_us < device.heard_us {
            return; // older than what is known: landed, not current
        }
        // An adapter's `offline` report says the device was not heard.
        if let Reading::Miner { online: false, .. } = reading {
            device.mining = false;
            return;
        }
        device.heard_us = ts_us;
        match reading {
            Reading::Power {
                source, power_w, ..
            } => {
                device.power.insert(
                    source.as_str().to_string(),
                    Figure {
                        ts_us,
                        value: *power_w,
                    },
                );
            }
            Reading::Miner {
                power_w, mining, ..
            } => {
                device.mining = *mining;
                device.status_us = Some(ts_us);
                if let Some(p) = power_w {
                    device.power.insert(
                        EnergySource::Firmware.as_str().to_string(),
                        Figure { ts_us, value: *p },
                    );
                }
            }
            Reading::Sensor { kind, value, .. } => {
                device.sensor_kind = Some(*kind);
                device.value = Some(Figure {
                    ts_us,
                    value: *value,
                });
            }
        }
    }
}

/// A machine's best fresh power at `at_us`, watts: meter, else PDU, else firmware, else (a
/// machine heard within `stale_us` saying it mines) `nominal_w`.
pub fn best_power(
    device: &Device,
    nominal_w: Option<f64>,
    at_us: i64,
    stale_us: i64,
) -> Option<f64> {
    best_power_figure(device, nominal_w, at_us, stale_us).map(|f| f.value)
}

/// [`best_power`] with when it was taken, µs (for `nominal_w`: when the machine last said it
/// mines).
pub fn best_power_figure(
    device: &Device,
    nominal_w: Option<f64>,
    at_us: i64,
    stale_us: i64,
) -> Option<Figure> {
    let fresh = |f: &Figure| at_us - f.ts_us <= stale_us;
    for source in [
        EnergySource::Meter,
        EnergySource::Pdu,
        EnergySource::Firmware,
    ] {
        if let Some(f) = device.power.get(source.as_str()).filter(|f| fresh(f)) {
            return Some(*f);
        }
    }
    let heard = at_us - device.heard_us <= stale_us;
    nominal_w
        .filter(|_| device.mining && heard)
        .map(|value| Figure {
            ts_us: device.heard_us,
            value,
        })
}

/// A reading, reduced to what the farm pipelines need.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // the fields are the events' own
pub enum Reading {
    /// A meter's, PDU's or firmware's power figure.
    Power {
        site: String,
        machine: String,
        source: EnergySource,
        power_w: f64,
    },
    /// A miner's status.
    Miner {
        site: String,
        machine: String,
        power_w: Option<f64>,
        mining: bool,
        online: bool,
    },
    /// A sensor's value.
    Sensor {
        site: String,
        sensor: String,
        kind: SensorKind,
        value: f64,
    },
}

impl Reading {
    /// The site it was taken at.
    pub fn site(&self) -> &str {
        match self {
            Self::Power { site, .. } | Self::Miner { site, .. } | Self::Sensor { site, .. } => site,
        }
    }
}

/// The readings of a decoded event, keyed for ordering.
pub fn reading_of(event: &AnyEvent) -> Option<(i64, Reading)> {
    Some(match event {
        AnyEvent::Energy(e) => (
            e.ts.timestamp_micros(),
            Reading::Power {
                site: e.site.clone(),
                machine: e.machine.clone(),
                source: e.source,
                power_w: e.power_w,
            },
        ),
        AnyEvent::Miner(m) => (
            m.ts.timestamp_micros(),
            Reading::Miner {
                site: m.site.clone(),
                machine: m.machine.clone(),
                power_w: m.power_w,
                mining: m.state == MinerState::Mining,
                online: m.state != MinerState::Offline,
            },
        ),
        AnyEvent::Sensor(s) => (
            s.ts.timestamp_micros(),
            Reading::Sensor {
                site: s.site.clone(),
                sensor: s.sensor.clone(),
                kind: s.kind,
                value: s.value,
            },
        ),
        _ => return None,
    })
}
