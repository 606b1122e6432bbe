//! RoomAlert-style environment monitors: every sensor registered at one monitor (by its
//! label) is read with one `/getData.json` request, for its temperature or humidity. Its fake
//! answers with every sensor of the simulated site, labelled by the sensor's id.

use std::collections::BTreeMap;
use std::sync::Arc;

use adit_schemas::registry::{AdapterKind, RecordKind, RegistryView};
use adit_schemas::{AnyEvent, SensorKind, SensorReading};
use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde_json::{Map, Value, json};

use super::super::config::AdaptersConfig;
use super::super::device::{Ctx, Device, DeviceKey, Failure, Family, Polled, Targets, fetch};
use crate::fake::{Reply, Routes, Sim};
use adit_devices::http_json::{RoomAlertSensor, parse_roomalert};
use adit_devices::http_url;

/// The family's name.
const NAME: &str = "roomalert";

/// Environment monitors, read for their sensors.
pub(super) struct Roomalert;

impl Family for Roomalert {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Option<(AdapterKind, RecordKind)> {
        Some((AdapterKind::Roomalert, RecordKind::Sensor))
    }

    fn collect(&self, view: &RegistryView, _: &AdaptersConfig, out: &mut Targets) {
        let mut monitors: BTreeMap<DeviceKey, Monitor> = BTreeMap::new();
        for sensor in view
            .sensors()
            .filter(|s| s.adapter.kind == AdapterKind::Roomalert)
        {
            let who = format!("sensor {}/{}", sensor.site, sensor.id);
            if sensor.kind == SensorKind::Fan {
                out.skipped.push(format!(
                    "{who}: a RoomAlert reports temperature and humidity, not fan speed"
                ));
                continue;
            }
            let Some(address) = &sensor.adapter.address else {
                out.skipped
                    .push(format!("{who}: its adapter needs an address"));
                continue;
            };
            let mut url = match http_url(address) {
                Ok(url) => url,
                Err(reason) => {
                    out.skipped.push(format!("{who}: {address:?}: {reason}"));
                    continue;
                }
            };
            if url.path().is_empty() || url.path() == "/" {
                url.set_path("/getData.json");
            }
            let key = DeviceKey {
                family: NAME,
                address: url.to_string(),
                owner: String::new(),
            };
            let label = sensor
                .adapter
                .channel
                .clone()
                .unwrap_or_else(|| sensor.id.clone());
            monitors
                .entry(key)
                .or_insert_with(|| Monitor {
                    url,
                    sensors: Vec::new(),
                })
                .sensors
                .push(SensorChannel {
                    site: sensor.site.clone(),
                    sensor: sensor.id.clone(),
                    kind: sensor.kind,
                    label,
                });
        }
        for (key, monitor) in monitors {
            out.devices.insert(key, Arc::new(monitor));
        }
    }

    fn fake(&self) -> Option<Routes> {
        Some(Routes::new().route("/{site}/getData.json", get(fake_data)))
    }
}

/// A sensor at an environment monitor.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SensorChannel {
    /// The site.
    site: String,
    /// The sensor's id.
    sensor: String,
    /// Temperature or humidity.
    kind: SensorKind,
    /// The monitor's label for it.
    label: String,
}

/// One environment monitor.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Monitor {
    /// Its `/getData.json` URL.
    url: Url,
    /// The sensors registered at it.
    sensors: Vec<SensorChannel>,
}

#[async_trait]
impl Device for Monitor {
    async fn poll(&self, ctx: &Ctx, _: &DeviceKey, at: DateTime<Utc>) -> Result<Polled, Failure> {
        let body = fetch(ctx, &ctx.devices, &self.url)
            .await
            .map_err(Failure::bare)?;
        let found = parse_roomalert(&body).map_err(|e| Failure::with_body(e, &body))?;
        Ok(sensor_events(&self.sensors, &found, at))
    }
}

/// One sensor reading per registered sensor whose label and figure the monitor reports.
fn sensor_events(
    sensors: &[SensorChannel],
    found: &[RoomAlertSensor],
    at: DateTime<Utc>,
) -> Polled {
    let mut out = Polled::default();
    for s in sensors {
        let value = found
            .iter()
            .find(|f| f.label == s.label)
            .and_then(|f| match s.kind {
                SensorKind::Temperature => f.temp_c,
                SensorKind::Humidity => f.humidity_pct,
                SensorKind::Fan => None,
            });
        match value {
            Some(value) => out.events.push(AnyEvent::Sensor(SensorReading {
                site: s.site.clone(),
                sensor: s.sensor.clone(),
                kind: s.kind,
                value,
                ts: at,
            })),
            None => out.missing.push(format!(
                "sensor {}/{} (label {:?})",
                s.site, s.sensor, s.label
            )),
        }
    }
    out
}

/// The fake monitor's `/getData.json`: every sensor of the site, labelled by its id.
async fn fake_data(State(sim): State<Arc<Sim>>, Path(site): Path<String>) -> Reply {
    let layout = sim.site(&site)?;
    let latest = sim.latest.borrow();
    let sensors: Vec<RoomAlertSensor> = layout
        .sensors
        .iter()
        .filter_map(|(id, kind)| {
            let v = latest.sensors.get(&(site.clone(), id.clone()))?;
            Some(RoomAlertSensor {
                label: id.clone(),
                temp_c: (*kind == SensorKind::Temperature).then_some(v.value),
                humidity_pct: (*kind == SensorKind::Humidity).then_some(v.value),
            })
        })
        .collect();
    Ok(Json(roomalert_reply(&format!("adit-sim-{site}"), &sensors)))
}

/// What a RoomAlert named `name` answers to `/getData.json`: values as strings with two
/// decimals, temperature in both scales, as the device sends them.
fn roomalert_reply(name: &str, sensors: &[RoomAlertSensor]) -> Value {
    let fixed = |v: f64| format!("{v:.2}");
    let entries: Vec<Value> = sensors
        .iter()
        .map(|s| {
            let mut e = Map::new();
            e.insert("lab".into(), json!(s.label));
            if let Some(c) = s.temp_c {
                e.insert("tc".into(), json!(fixed(c)));
                e.insert("tf".into(), json!(fixed(c * 9.0 / 5.0 + 32.0)));
            }
            if let Some(h) = s.humidity_pct {
                e.insert("h".into(), json!(fixed(h)));
            }
            Value::Object(e)
        })
        .collect();
    json!({ "name": name, "serial": name, "scale": 0, "sensor": entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::poll::family::at;

    #[test]
    fn roomalert_sensors_take_the_figure_of_their_kind() {
        let sensor = |id: &str, kind: SensorKind, label: &str| SensorChannel {
            site: "s1".into(),
            sensor: id.into(),
            kind,
            label: label.into(),
        };
        let found = [RoomAlertSensor {
            label: "Ext Sensor 1".into(),
            temp_c: Some(22.5),
            humidity_pct: Some(41.0),
        }];
        let polled = sensor_events(
            &[
                sensor("t1", SensorKind::Temperature, "Ext Sensor 1"),
                sensor("h1", SensorKind::Humidity, "Ext Sensor 1"),
                sensor("t2", SensorKind::Temperature, "Ext Sensor 2"),
            ],
            &found,
            at(),
        );
        let got: Vec<(&str, SensorKind, f64)> = polled
            .events
            .iter()
            .map(|e| match e {
                AnyEvent::Sensor(r) => (r.sensor.as_str(), r.kind, r.value),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("t1", SensorKind::Temperature, 22.5),
                ("h1", SensorKind::Humidity, 41.0)
            ]
        );
        assert_eq!(polled.missing.len(), 1);
    }

    #[test]
    fn roomalert_replies_read_back() {
        let sensors = vec![
            RoomAlertSensor {
                label: "Internal Sensor".into(),
                temp_c: Some(24.5),
                humidity_pct: Some(40.25),
            },
            RoomAlertSensor {
                label: "Ext Sensor 1".into(),
                temp_c: Some(-3.75),
                humidity_pct: None,
            },
        ];
        let body = roomalert_reply("RA3E-1", &sensors).to_string();
        assert_eq!(parse_roomalert(body.as_bytes()).expect("parses"), sensors);
    }
}
