//! What the device families' fakes answer from: the simulated farm's devices per site
//! ([`SiteLayout`]) and its latest readings ([`Latest`]), together a [`Sim`]. The simulator
//! (`simulate::devices`) keeps them and serves every family's fake over them; each fake
//! (`Family::fake`, beside its poller in `adapters::poll::family`) reads them. This module names
//! neither side, so both depend on it without a circle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use adit_devices::http_json::{DrMessage, DrMode, PriceMessage};
use adit_schemas::{AnyEvent, GridSignalKind, MinerStatus, SensorKind};
use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;

/// A fake's routes over the simulated farm, served under `/<family name>/`.
pub(crate) type Routes = axum::Router<Arc<Sim>>;

/// A fake's refusal: an error status with a line saying why.
pub(crate) type Refusal = (StatusCode, String);

/// A fake's answer: the device's JSON, or a [`Refusal`].
pub(crate) type Reply = Result<Json<Value>, Refusal>;

/// What one site has, fixed at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct SiteLayout {
    /// Machines read by the site's IotaWatt (the input is the machine's id).
    pub(crate) metered: Vec<String>,
    /// Machines on the site's PDU, by outlet.
    pub(crate) outlets: Vec<(u32, String)>,
    /// Temperature and humidity sensors (the RoomAlert label is the sensor's id).
    pub(crate) sensors: Vec<(String, SensorKind)>,
}

/// A sensor's latest value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SensorValue {
    /// What it measures.
    pub(crate) kind: SensorKind,
    /// The value.
    pub(crate) value: f64,
    /// The (simulated) time of the reading.
    pub(crate) ts: DateTime<Utc>,
}

/// Each device's latest reading: what the fakes answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latest {
    /// Each machine's status, by (site, machine).
    pub(crate) miners: HashMap<(String, String), MinerStatus>,
    /// Each machine's power, watts, by (site, machine).
    pub(crate) power_w: HashMap<(String, String), f64>,
    /// Each sensor's value, by (site, sensor).
    pub(crate) sensors: BTreeMap<(String, String), SensorValue>,
    /// The latest demand-response message per site.
    pub(crate) signals: HashMap<String, DrMessage>,
    /// The latest price per site.
    pub(crate) prices: HashMap<String, PriceMessage>,
    /// The (simulated) time of the last tick.
    pub(crate) at: Option<DateTime<Utc>>,
}

impl Latest {
    /// Takes in one tick's events.
    pub(crate) fn apply(&mut self, events: &[AnyEvent]) {
        for event in events {
            match event {
                AnyEvent::Energy(e) => {
                    self.power_w
                        .insert((e.site.clone(), e.machine.clone()), e.power_w);
                    self.at = Some(e.ts);
                }
                AnyEvent::Miner(s) => {
                    self.miners
                        .insert((s.site.clone(), s.machine.clone()), s.clone());
                }
                AnyEvent::Sensor(s) => {
                    self.sensors.insert(
                        (s.site.clone(), s.sensor.clone()),
                        SensorValue {
                            kind: s.kind,
                            value: s.value,
                            ts: s.ts,
                        },
                    );
                }
                AnyEvent::Grid(g) => match (g.kind, g.target_kw, g.deadline, g.price_per_mwh) {
                    (GridSignalKind::Curtail, Some(target_kw), Some(deadline), _) => {
                        self.signals.insert(
                            g.site.clone(),
                            DrMessage {
                                event_id: g.event_id.clone(),
                                mode: DrMode::Curtail,
                                target_kw: Some(target_kw),
                                deadline: Some(deadline),
                                issued: g.ts,
                            },
                        );
                    }
                    (GridSignalKind::Normal, ..) => {
                        self.signals.insert(
                            g.site.clone(),
                            DrMessage {
                                event_id: g.event_id.clone(),
                                mode: DrMode::Normal,
                                target_kw: None,
                                deadline: None,
                                issued: g.ts,
                            },
                        );
                    }
                    (GridSignalKind::Price, _, _, Some(price_per_mwh)) => {
                        self.prices.insert(
                            g.site.clone(),
                            PriceMessage {
                                interval_start: g.ts,
                                interval_id: g.event_id.clone(),
                                price_per_mwh,
                            },
                        );
                    }
                    _ => tracing::debug!(?g, "simulated grid signal without its figures"),
                },
                _ => {}
            }
        }
    }
}

/// The simulated farm as its fakes see it.
#[derive(Debug)]
pub(crate) struct Sim {
    /// Each site's devices.
    pub(crate) layout: BTreeMap<String, SiteLayout>,
    /// The farm's latest readings.
    pub(crate) latest: watch::Receiver<Latest>,
    /// When the devices started (simulated): the time of an answer before any reading.
    pub(crate) started: DateTime<Utc>,
}

impl Sim {
    /// `site`'s devices, or a 404 naming it.
    pub(crate) fn site(&self, site: &str) -> Result<&SiteLayout, Refusal> {
        self.layout
            .get(site)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no simulated site {site:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{Farm, SimConfig};

    #[test]
    fn grid_signals_become_the_feeds_messages() {
        let mut farm = Farm::new(SimConfig {
            sites: 1,
            grid_every: 1,
            ..SimConfig::default()
        });
        let mut latest = Latest::default();
        let t0 = Utc::now();
        // Signals go curtail, normal, price: n = ticks / grid_every, kind by n % 3.
        latest.apply(&farm.tick(t0));
        let dr = latest.signals.get("site-01").unwrap();
        assert_eq!(dr.mode, DrMode::Curtail);
        assert!(dr.target_kw.is_some() && dr.deadline.is_some());
        assert!(latest.prices.is_empty());
        latest.apply(&farm.tick(t0 + chrono::Duration::seconds(1)));
        let dr = latest.signals.get("site-01").unwrap();
        assert_eq!((dr.mode, dr.target_kw), (DrMode::Normal, None));
        latest.apply(&farm.tick(t0 + chrono::Duration::seconds(2)));
        let price = latest.prices.get("site-01").unwrap();
        assert!(price.price_per_mwh > 0.0);
        assert_eq!(price.interval_start, t0 + chrono::Duration::seconds(2));
    }
}
