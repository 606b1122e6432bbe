//! The simulated farm as real devices on real sockets, for the adapters to read: a cgminer API
//! server per machine (`miners.rs`), and one HTTP server (`http.rs`) answering as each site's
//! IotaWatt, PDU, RoomAlert, demand-response feed and price feed (optionally, humidity pushed
//! to an MQTT broker, `mqtt.rs`).
//!
//! A background task ticks the [`Farm`] every `config.interval` (with `run`'s clock: `speed`,
//! `backfill`, faults) and keeps each device's latest reading; the servers answer from it. It
//! publishes nothing to NATS: the `adapters` role does, from what it reads here. The HTTP
//! devices are the device families' fakes (`Family::fake`, each beside its poller in
//! `adapters::poll::family`), served under the family's name, per site `<site>`:
//!
//! - `/iotawatt/<site>/query?select=[time.iso,<machine>.watts,…]`: the metered machines (even
//!   positions in the site), one input per machine, named by the machine's id;
//! - `/pdu/<site>`: the other machines, outlet = the machine's position in the site (from 1);
//! - `/roomalert/<site>/getData.json`: the site's temperature and humidity sensors, labelled
//!   by the sensor's id;
//! - `/grid/<site>/signal`: the latest curtail or normal message for the site (before any, a
//!   `normal` with event id [`INITIAL_EVENT_ID`](crate::adapters::poll::INITIAL_EVENT_ID));
//! - `/grid/<site>/price`: the latest price for the site (before any,
//!   [`INITIAL_PRICE_PER_MWH`](crate::adapters::poll::INITIAL_PRICE_PER_MWH) with interval id
//!   [`INITIAL_PRICE_ID`](crate::adapters::poll::INITIAL_PRICE_ID));
//!
//! and the sites' fan relays, `POST /fans/<site>/level`.
//!
//! [`Devices::records`] are the farm's registry records with adapters pointing at all of
//! these, and a meter per machine; registering them makes the adapters poll every device.
//! Test hooks stop a miner's server, make it answer replies cut in half, and restart it.

mod http;
mod miners;
mod mqtt;

pub use mqtt::MQTT_TOPIC_PREFIX;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use adit_bus::registry::{Registry, RegistryError};
use adit_devices::mqtt::{MqttError, TopicMap};
use adit_schemas::SensorKind;
use adit_schemas::registry::{Adapter, AdapterKind, Meter, Record};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Farm;
use super::clock::Clock;
use crate::adapters::poll::{GridFeed, GridFeedKind};
use crate::fake::{Latest, Sim, SiteLayout};
use miners::{MinerMode, Miners};

/// The simulated farm's devices, serving until the `shutdown` given to [`Devices::start`].
pub struct Devices {
    /// `http://host:port` of the HTTP server.
    base: String,
    /// The farm's registry records, without adapters.
    records: Vec<Record>,
    /// Each site's HTTP devices, and the farm's latest readings.
    sim: Arc<Sim>,
    /// Each machine's API server.
    miners: Miners,
    /// The MQTT broker humidity is published to, once [`Devices::publish_mqtt`] was called.
    mqtt: Option<String>,
    /// Stops every server and task (a child of the caller's token).
    stop: CancellationToken,
    /// Every server and task, to wait for at the end.
    tasks: TaskTracker,
}

/// An address to reach a server bound to `addr`: loopback when it is bound to every address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// A listener per machine of `farm` (with its site and id, and the address it is reached at)
/// and the HTTP devices' listener, each on a free port of `host`.
type Bound = (
    Vec<((String, String), SocketAddr, TcpListener)>,
    TcpListener,
);

/// Binds the listeners [`Bound`] names.
async fn bind(host: &str, farm: &Farm) -> Result<Bound, std::io::Error> {
    let mut miners = Vec::new();
    for (site, machine, _) in farm.machine_meters() {
        let listener = TcpListener::bind((host, 0)).await?;
        let addr = reachable(listener.local_addr()?);
        miners.push(((site.to_string(), machine.to_string()), addr, listener));
    }
    let listener = TcpListener::bind((host, 0)).await?;
    Ok((miners, listener))
}

/// Each site's HTTP devices: which machines its IotaWatt reads and which are on its PDU (by
/// position in the site), and its sensors from `records`.
fn layout(farm: &Farm, records: &[Record]) -> BTreeMap<String, SiteLayout> {
    let mut layout: BTreeMap<String, SiteLayout> = BTreeMap::new();
    let mut position: HashMap<String, u32> = HashMap::new();
    for (site, machine, metered) in farm.machine_meters() {
        let n = position.entry(site.to_string()).or_default();
        *n += 1;
        let entry = layout.entry(site.to_string()).or_default();
        if metered {
            entry.metered.push(machine.to_string());
        } else {
            entry.outlets.push((*n, machine.to_string()));
        }
    }
    for record in records {
        if let Record::Sensor(s) = record {
            layout
                .entry(s.site.clone())
                .or_default()
                .sensors
                .push((s.id.clone(), s.kind));
        }
    }
    layout
}

impl Devices {
    /// Starts the farm's devices on `host` (an address the adapters can reach; each server on
    /// a free port): a cgminer API server per machine and the HTTP server, with the farm's
    /// first reading already taken, and the task ticking the farm every `config.interval`.
    /// Everything stops when `shutdown` is cancelled.
    pub async fn start(
        mut farm: Farm,
        host: &str,
        shutdown: CancellationToken,
    ) -> Result<Devices, std::io::Error> {
        let config = farm.config().clone();
        let clock = Clock::new(config.backfill, config.speed);
        let started = clock.now();
        let mut first = Latest::default();
        first.apply(&farm.tick(started));
        let (latest_tx, latest) = watch::channel(first);
        let records = farm.records();
        let sim = Arc::new(Sim {
            layout: layout(&farm, &records),
            latest,
            started,
        });

        let stop = shutdown.child_token();
        let tasks = TaskTracker::new();
        let (miners, listener) = bind(host, &farm).await?;
        let base = format!("http://{}", reachable(listener.local_addr()?));
        let controls = farm.controls();
        let shared = miners::Shared {
            latest: sim.latest.clone(),
            booted: Instant::now(),
            controls: controls.clone(),
            clock,
        };
        let miners = Miners::start(miners, shared, &stop, &tasks);
        let app = http::router(sim.clone(), controls, clock);
        let http_stop = stop.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(http_stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "simulated HTTP devices stopped");
            }
        });
        tasks.spawn(tick_loop(farm, clock, latest_tx, stop.clone()));
        tracing::info!(
            http = %base,
            miners = miners.len(),
            "simulated devices serving"
        );
        Ok(Devices {
            base,
            records,
            sim,
            miners,
            mqtt: None,
            stop,
            tasks,
        })
    }

    /// The HTTP server's base URL, `http://host:port`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Where `machine`'s cgminer API answers (or would, while stopped).
    pub fn miner_address(&self, site: &str, machine: &str) -> Option<SocketAddr> {
        self.miners.address(site, machine)
    }

    /// The farm's registry records with every device's adapter: each machine `cgminer` at its
    /// server, a meter `meter-<machine>` per machine (`iotawatt` with the machine's id as the
    /// input for metered machines, `pdu` with its outlet for the others), each sensor
    /// `roomalert` labelled by its id, or, for humidity once [`Devices::publish_mqtt`] was
    /// called, `mqtt` at its topic. Sites come first and meters after their machines, so
    /// they can be registered in order.
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.records.len() + self.miners.len());
        let mut meters = Vec::new();
        for record in &self.records {
            let mut record = record.clone();
            match &mut record {
                Record::Machine(m) => {
                    if let Some(addr) = self.miners.address(&m.site, &m.id) {
                        m.adapter = Adapter {
                            kind: AdapterKind::Cgminer,
                            address: Some(addr.to_string()),
                            channel: None,
                        };
                    }
                    if let Some((adapter, outlet)) = self.meter_adapter(&m.site, &m.id) {
                        if let Some(outlet) = outlet {
                            m.pdu = Some(format!("pdu-{}", m.site));
                            m.outlet = Some(outlet);
                        }
                        meters.push(Record::Meter(Meter {
                            id: format!("meter-{}", m.id),
                            site: m.site.clone(),
                            machine: Some(m.id.clone()),
                            adapter,
                        }));
                    }
                }
                Record::Sensor(s) => {
                    s.adapter = if s.kind == SensorKind::Humidity && self.mqtt.is_some() {
                        Adapter {
                            kind: AdapterKind::Mqtt,
                            address: Some(mqtt::topic(&s.site, &s.id)),
                            channel: None,
                        }
                    } else {
                        Adapter {
                            kind: AdapterKind::Roomalert,
                            address: Some(format!(
                                "{}/roomalert/{}/getData.json",
                                self.base, s.site
                            )),
                            channel: Some(s.id.clone()),
                        }
                    };
                }
                Record::Site(site) => {
                    site.fan_relay = Some(format!("{}/fans/{}", self.base, site.id));
                }
                Record::Pool(_) | Record::Meter(_) => {}
            }
            out.push(record);
        }
        out.extend(meters);
        out
    }

    /// The adapter of `machine`'s meter, and its PDU outlet when it is on the PDU.
    fn meter_adapter(&self, site: &str, machine: &str) -> Option<(Adapter, Option<u32>)> {
        let layout = self.sim.layout.get(site)?;
        if layout.metered.iter().any(|m| m == machine) {
            return Some((
                Adapter {
                    kind: AdapterKind::Iotawatt,
                    address: Some(format!("{}/iotawatt/{site}", self.base)),
                    channel: Some(machine.to_string()),
                },
                None,
            ));
        }
        let (outlet, _) = layout.outlets.iter().find(|(_, m)| m == machine)?;
        Some((
            Adapter {
                kind: AdapterKind::Pdu,
                address: Some(format!("{}/pdu/{site}", self.base)),
                channel: Some(outlet.to_string()),
            },
            Some(*outlet),
        ))
    }

    /// Each site's demand-response and price feed, for `[adapters] grid`.
    pub fn grid_feeds(&self) -> Vec<GridFeed> {
        self.sim
            .layout
            .keys()
            .flat_map(|site| {
                [
                    (GridFeedKind::Signal, "signal"),
                    (GridFeedKind::Price, "price"),
                ]
                .map(|(kind, path)| GridFeed {
                    site: site.clone(),
                    kind,
                    url: format!("{}/grid/{site}/{path}", self.base),
                    map: None,
                })
            })
            .collect()
    }

    /// Registers [`Devices::records`] through `registry` as `by` (sites first, meters after
    /// their machines); records already there as they are do not change. Returns how many
    /// changed.
    pub async fn register(&self, registry: &Registry, by: &str) -> Result<usize, RegistryError> {
        registry.put_all(self.records(), by).await
    }

    /// Publishes each humidity sensor's readings, every tick, with QoS 1 as JSON
    /// `{"value":…,"ts":…}` on `adit-sim/<site>/<sensor>` at the broker `url`
    /// (`mqtt://host[:port]`), from now until shutdown. From then on, [`Devices::records`] give
    /// those sensors an `mqtt` adapter, and [`Devices::mqtt_maps`] is the subscriber's mapping
    /// for them.
    pub fn publish_mqtt(&mut self, url: &str) -> Result<(), MqttError> {
        let client_id = format!("adit-sim-devices-{}", self.base.replace([':', '/'], "-"));
        mqtt::publish(
            url,
            &client_id,
            self.sim.latest.clone(),
            &self.stop,
            &self.tasks,
        )?;
        self.mqtt = Some(url.to_string());
        Ok(())
    }

    /// The topic map reading what [`Devices::publish_mqtt`] publishes (site and sensor from
    /// the topic, the value at `/value`, the time at `ts`); empty before it was called.
    pub fn mqtt_maps(&self) -> Vec<TopicMap> {
        if self.mqtt.is_none() {
            return Vec::new();
        }
        vec![mqtt::topic_map()]
    }

    /// Stops `machine`'s API server: its port refuses connections until
    /// [`Devices::restart_machine`]. (Its meter keeps reading.)
    pub async fn stop_machine(&self, site: &str, machine: &str) -> Result<(), std::io::Error> {
        self.miners.set_mode(site, machine, MinerMode::Silent).await
    }

    /// Makes `machine`'s API answer every request with the first half of its reply (a reply
    /// cut off), until [`Devices::restart_machine`].
    pub async fn garble(&self, site: &str, machine: &str) -> Result<(), std::io::Error> {
        self.miners
            .set_mode(site, machine, MinerMode::Garbled)
            .await
    }

    /// Makes `machine`'s API answer as cgminer again, on the same port.
    pub async fn restart_machine(&self, site: &str, machine: &str) -> Result<(), std::io::Error> {
        self.miners
            .set_mode(site, machine, MinerMode::Answering)
            .await
    }

    /// Waits until every server and task has stopped, after the `shutdown` given to
    /// [`Devices::start`] (or a failed start) was cancelled.
    pub async fn stopped(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Ticks `farm` every `config.interval` on `clock` into `latest`, until `stop`.
async fn tick_loop(
    mut farm: Farm,
    clock: Clock,
    latest: watch::Sender<Latest>,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval(farm.config().interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: `start` took that reading.
    interval.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        let events = farm.tick(clock.now());
        latest.send_modify(|l| l.apply(&events));
    }
}

/// The small farm the devices' tests run: 2 sites of 4 machines, a grid signal every tick.
#[cfg(test)]
fn test_config() -> super::SimConfig {
    super::SimConfig {
        sites: 2,
        machines_per_site: 4,
        grid_every: 1,
        interval: std::time::Duration::from_secs(3600),
        ..super::SimConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_point_every_device_at_its_server_in_registration_order() {
        let shutdown = CancellationToken::new();
        let mut devices = Devices::start(Farm::new(test_config()), "127.0.0.1", shutdown.clone())
            .await
            .unwrap();
        let before = devices.records();
        devices.publish_mqtt("mqtt://127.0.0.1:1").unwrap();
        let records = devices.records();
        for r in &records {
            r.validate().unwrap_or_else(|e| panic!("{r:?}: {e}"));
            for (_, key) in r.references() {
                let at = records.iter().position(|x| x.key() == key).unwrap();
                let me = records.iter().position(|x| x.key() == r.key()).unwrap();
                assert!(at < me, "{key} comes after {}", r.key());
            }
        }
        let meters: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::Meter(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(meters.len(), 8);
        let m1 = meters.iter().find(|m| m.id == "meter-m-001").unwrap();
        assert_eq!(m1.adapter.kind, AdapterKind::Iotawatt);
        assert_eq!(m1.adapter.channel.as_deref(), Some("m-001"));
        let m2 = meters.iter().find(|m| m.id == "meter-m-002").unwrap();
        assert_eq!(m2.adapter.kind, AdapterKind::Pdu);
        assert_eq!(m2.adapter.channel.as_deref(), Some("2"));
        let adapter_of = |records: &[Record], id: &str| {
            records
                .iter()
                .find_map(|r| match r {
                    Record::Sensor(s) if s.id == id && s.site == "site-01" => {
                        Some(s.adapter.clone())
                    }
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(adapter_of(&before, "hum-01").kind, AdapterKind::Roomalert);
        let hum = adapter_of(&records, "hum-01");
        assert_eq!(
            (hum.kind, hum.address.as_deref()),
            (AdapterKind::Mqtt, Some("adit-sim/site-01/hum-01"))
        );
        assert_eq!(adapter_of(&records, "temp-01").kind, AdapterKind::Roomalert);
        let maps = devices.mqtt_maps();
        assert!(maps.iter().all(|m| m.validate().is_ok()));
        assert_eq!(devices.grid_feeds().len(), 4);
        shutdown.cancel();
        devices.stopped().await;
    }
}
