//! The simulated farm as real devices on real sockets, for the adapters to read: a cgminer API
//! server per machine, and one HTTP server answering as each site's IotaWatt, PDU, RoomAlert,
//! demand-response feed and price feed (optionally, humidity pushed to an MQTT broker).
//!
//! A background task ticks the [`Farm`] every `config.interval` (with `run`'s clock: `speed`,
//! `backfill`, faults) and keeps each device's latest reading; the servers answer from it. It
//! publishes nothing to NATS: the `adapters` role does, from what it reads here. Paths of the
//! HTTP server, per site `<site>`:
//!
//! - `/iotawatt/<site>/query?select=[time.iso,<machine>.watts,…]`: the metered machines (even
//!   positions in the site), one input per machine, named by the machine's id;
//! - `/pdu/<site>`: the other machines, outlet = the machine's position in the site (from 1);
//! - `/roomalert/<site>/getData.json`: the site's temperature and humidity sensors, labelled
//!   by the sensor's id;
//! - `/grid/<site>/signal`: the latest curtail or normal message for the site (before any, a
//!   `normal` with event id [`INITIAL_EVENT_ID`]);
//! - `/grid/<site>/price`: the latest price for the site (before any, [`INITIAL_PRICE_PER_MWH`]
//!   with interval id [`INITIAL_PRICE_ID`]).
//!
//! [`Devices::records`] are the farm's registry records with adapters pointing at all of
//! these, and a meter per machine; registering them makes the adapters poll every device.
//! Test hooks stop a miner's server, make it answer replies cut in half, and restart it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adit_schemas::registry::{Adapter, AdapterKind, Meter, Record};
use adit_schemas::{AnyEvent, GridSignalKind, MinerState, MinerStatus, SensorKind};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::controls::Controls;
use super::{Farm, SimConfig};
use crate::adapters::poll::{GridFeed, GridFeedKind};
use adit_bus::registry::{Registry, RegistryError};
use adit_devices::cgminer::REPORT_COMMAND;

use crate::simulate::cgminer::{self, CgminerSnapshot};
use adit_devices::http_json::{
    DrMessage, DrMode, PriceMessage, RoomAlertSensor, dr_reply, iotawatt_reply, pdu_reply,
    price_reply, roomalert_reply,
};
use adit_devices::mqtt::{self, MqttError, TopicMap};

/// The event id of the demand-response feed's answer before the farm has issued a signal.
pub const INITIAL_EVENT_ID: &str = "sim-start";
/// The interval id of the price feed's answer before the farm has issued a price (not
/// [`INITIAL_EVENT_ID`]: both have the same time, and a grid signal's dedupe id is its site,
/// event id and time).
pub const INITIAL_PRICE_ID: &str = "sim-start-price";
/// The price feed's answer before the farm has issued a price, per MWh.
pub const INITIAL_PRICE_PER_MWH: f64 = 50.0;
/// The first level of the MQTT topics humidity is published on: `adit-sim/<site>/<sensor>`.
pub const MQTT_TOPIC_PREFIX: &str = "adit-sim";
/// The pool the simulated miners report mining on.
const POOL_URL: &str = "stratum+tcp://pool.adit-sim.invalid:3333";
/// How long a garbled miner waits for a request before giving up on the connection.
const GARBLED_EXCHANGE: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// The farm's layout and latest readings.
// ---------------------------------------------------------------------------------------------

/// What one site has, fixed at start.
#[derive(Debug, Clone, Default)]
struct SiteLayout {
    /// Machines read by the site's IotaWatt (the input is the machine's id).
    metered: Vec<String>,
    /// Machines on the site's PDU, by outlet.
    outlets: Vec<(u32, String)>,
    /// Temperature and humidity sensors (the RoomAlert label is the sensor's id).
    sensors: Vec<(String, SensorKind)>,
}

/// A sensor's latest value.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SensorValue {
    /// What it measures.
    kind: SensorKind,
    /// The value.
    value: f64,
    /// The (simulated) time of the reading.
    ts: DateTime<Utc>,
}

/// Each device's latest reading: what the servers answer.
#[derive(Debug, Clone, Default)]
struct Latest {
    /// Each machine's status, by (site, machine).
    miners: HashMap<(String, String), MinerStatus>,
    /// Each machine's power, watts, by (site, machine).
    power_w: HashMap<(String, String), f64>,
    /// Each sensor's value, by (site, sensor).
    sensors: BTreeMap<(String, String), SensorValue>,
    /// The latest demand-response message per site.
    signals: HashMap<String, DrMessage>,
    /// The latest price per site.
    prices: HashMap<String, PriceMessage>,
    /// The (simulated) time of the last tick.
    at: Option<DateTime<Utc>>,
}

impl Latest {
    /// Takes in one tick's events.
    fn apply(&mut self, events: &[AnyEvent]) {
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

    /// What `machine`'s API reports now.
    fn miner_snapshot(&self, key: &(String, String), elapsed_s: u64) -> CgminerSnapshot {
        let status = self.miners.get(key);
        CgminerSnapshot {
            hashrate_hs: status.map_or(0.0, |s| s.hashrate_hs),
            temps_c: status.and_then(|s| s.temp_c).into_iter().collect(),
            fans_rpm: status.and_then(|s| s.fan_rpm).into_iter().collect(),
            power_w: status.and_then(|s| s.power_w),
            state: status.map_or(MinerState::Idle, |s| s.state),
            elapsed_s,
            pool_url: POOL_URL.into(),
        }
    }
}

/// The simulated clock, as `run` keeps it: `backfill` in the past at start, `speed` times
/// faster than the wall clock.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Simulated time at start.
    origin: DateTime<Utc>,
    /// Wall-clock start.
    started: Instant,
    /// Simulated seconds per second.
    speed: f64,
}

impl Clock {
    fn new(config: &SimConfig) -> Self {
        let backfill = chrono::Duration::from_std(config.backfill).unwrap_or_default();
        Self {
            origin: Utc::now() - backfill,
            started: Instant::now(),
            speed: config.speed,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let simulated = self.started.elapsed().mul_f64(self.speed);
        self.origin + chrono::Duration::from_std(simulated).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Miners.
// ---------------------------------------------------------------------------------------------

/// How a simulated miner's API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MinerMode {
    /// As cgminer does, from the farm's latest status.
    Answering,
    /// Not at all: nothing listens on its port.
    Silent,
    /// With the first half of the reply, then the connection closes.
    Garbled,
}

/// A server answering on a miner's port.
struct Serving {
    /// Stops it.
    stop: CancellationToken,
    /// It, to wait until its port is free.
    task: JoinHandle<()>,
}

/// One simulated machine's API.
struct MinerServer {
    /// Where it answers (kept across stops, so the registry's address stays right).
    addr: SocketAddr,
    /// The server on it, if any (locked across a swap so two hooks do not race).
    serving: Mutex<Option<Serving>>,
}

/// What a miner's servers need.
#[derive(Clone)]
struct MinerCtx {
    /// (site, machine).
    key: (String, String),
    /// The farm's latest readings.
    latest: watch::Receiver<Latest>,
    /// When the devices started: the miner's uptime.
    booted: Instant,
    /// Where obeyed commands go.
    controls: Controls,
    /// The farm's clock (commands are timed on it).
    clock: Clock,
}

impl MinerCtx {
    /// Obeys `pause` (sleep) or `resume` (wake).
    fn control(&self, word: &str) -> Option<String> {
        let asleep = match word {
            "pause" => true,
            "resume" => false,
            _ => return None,
        };
        let (site, machine) = &self.key;
        self.controls
            .set_asleep(site, machine, asleep, self.clock.now());
        tracing::debug!(site, machine, word, "simulated miner obeys");
        Some(if asleep { "Paused" } else { "Resumed" }.into())
    }

    fn snapshot(&self) -> CgminerSnapshot {
        self.latest
            .borrow()
            .miner_snapshot(&self.key, self.booted.elapsed().as_secs())
    }
}

/// Starts the server for `mode` on `listener`, stopped by `parent` or by its own token.
fn spawn_miner(
    tasks: &TaskTracker,
    listener: TcpListener,
    ctx: MinerCtx,
    mode: MinerMode,
    parent: &CancellationToken,
) -> Serving {
    let stop = parent.child_token();
    let task = match mode {
        MinerMode::Garbled => tasks.spawn(serve_cut_replies(listener, ctx, stop.clone())),
        MinerMode::Answering | MinerMode::Silent => {
            let obeys = ctx.clone();
            tasks.spawn(cgminer::serve_controlled(
                listener,
                move || ctx.snapshot(),
                move |word| obeys.control(word),
                stop.clone(),
            ))
        }
    };
    Serving { stop, task }
}

/// A broken miner: reads each request, answers the first half of the real reply, closes.
async fn serve_cut_replies(listener: TcpListener, ctx: MinerCtx, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let mut stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "simulated garbled miner: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let reply = cgminer::reply_for(REPORT_COMMAND, &ctx.snapshot());
        let half = &reply.as_bytes()[..reply.len() / 2];
        let exchange = async {
            let mut request = [0u8; 1024];
            if stream.read(&mut request).await? == 0 {
                return Ok(());
            }
            stream.write_all(half).await?;
            stream.shutdown().await
        };
        match tokio::time::timeout(GARBLED_EXCHANGE, exchange).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "simulated garbled miner: exchange failed"),
            Err(_) => tracing::debug!("simulated garbled miner: no request"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP devices.
// ---------------------------------------------------------------------------------------------

/// What the HTTP handlers read.
struct Http {
    /// Each site's devices.
    layout: BTreeMap<String, SiteLayout>,
    /// The farm's latest readings.
    latest: watch::Receiver<Latest>,
    /// When the devices started (simulated): the time of the initial grid answers.
    started: DateTime<Utc>,
    /// Where the fan relays' orders go.
    controls: Controls,
    /// The farm's clock.
    clock: Clock,
}

/// A handler's answer: the device's JSON, or an error status with a line saying why.
type Reply = Result<Json<Value>, (StatusCode, String)>;

impl Http {
    fn site(&self, site: &str) -> Result<&SiteLayout, (StatusCode, String)> {
        self.layout
            .get(site)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no simulated site {site:?}")))
    }
}

fn router(http: Arc<Http>) -> axum::Router {
    axum::Router::new()
        .route("/iotawatt/{site}/query", get(iotawatt))
        .route("/pdu/{site}", get(pdu))
        .route("/roomalert/{site}/getData.json", get(roomalert))
        .route("/grid/{site}/signal", get(signal))
        .route("/grid/{site}/price", get(price))
        .route("/fans/{site}/level", post(fan_level))
        .with_state(http)
}

/// A fan relay: `POST /fans/<site>/level` with `{"level": 1..9}`.
async fn fan_level(
    State(http): State<Arc<Http>>,
    Path(site): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    http.site(&site)?;
    let level = body
        .get("level")
        .and_then(Value::as_u64)
        .filter(|l| (1..=9).contains(l))
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("level must be 1 to 9, not {}", body["level"]),
            )
        })?;
    http.controls.set_fans(&site, level as u8, http.clock.now());
    Ok(Json(json!({ "site": site, "level": level })))
}

/// IotaWatt's `/query`: one row, the time then the watts of each selected input.
async fn iotawatt(
    State(http): State<Arc<Http>>,
    Path(site): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let layout = http.site(&site)?;
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let select = query
        .get("select")
        .and_then(|s| s.strip_prefix('['))
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| bad("select=[…] missing".into()))?;
    let latest = http.latest.borrow();
    let mut values = Vec::new();
    for column in select.split(',').filter(|c| *c != "time.iso") {
        let input = column
            .strip_suffix(".watts")
            .ok_or_else(|| bad(format!("only .watts is simulated, not {column}")))?;
        if !layout.metered.iter().any(|m| m == input) {
            return Err(bad(format!("no input {input} at {site}")));
        }
        let watts = latest
            .power_w
            .get(&(site.clone(), input.to_string()))
            .copied()
            .ok_or_else(|| bad(format!("no reading of {input} yet")))?;
        values.push(watts);
    }
    Ok(Json(iotawatt_reply(
        latest.at.unwrap_or(http.started),
        &values,
    )))
}

/// The PDU: every outlet's power.
async fn pdu(State(http): State<Arc<Http>>, Path(site): Path<String>) -> Reply {
    let layout = http.site(&site)?;
    let latest = http.latest.borrow();
    let outlets: Vec<(u32, f64)> = layout
        .outlets
        .iter()
        .filter_map(|(outlet, machine)| {
            let watts = latest.power_w.get(&(site.clone(), machine.clone()))?;
            Some((*outlet, *watts))
        })
        .collect();
    Ok(Json(pdu_reply(&outlets)))
}

/// The RoomAlert: every sensor of the site, labelled by its id.
async fn roomalert(State(http): State<Arc<Http>>, Path(site): Path<String>) -> Reply {
    let layout = http.site(&site)?;
    let latest = http.latest.borrow();
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

/// The utility's demand-response message for the site.
async fn signal(State(http): State<Arc<Http>>, Path(site): Path<String>) -> Reply {
    http.site(&site)?;
    let msg = http.latest.borrow().signals.get(&site).cloned();
    let msg = msg.unwrap_or_else(|| DrMessage {
        event_id: INITIAL_EVENT_ID.into(),
        mode: DrMode::Normal,
        target_kw: None,
        deadline: None,
        issued: http.started,
    });
    Ok(Json(dr_reply(&msg)))
}

/// The market's price for the site.
async fn price(State(http): State<Arc<Http>>, Path(site): Path<String>) -> Reply {
    http.site(&site)?;
    let msg = http.latest.borrow().prices.get(&site).cloned();
    let msg = msg.unwrap_or_else(|| PriceMessage {
        interval_start: http.started,
        interval_id: INITIAL_PRICE_ID.into(),
        price_per_mwh: INITIAL_PRICE_PER_MWH,
    });
    Ok(Json(price_reply(&msg)))
}

// ---------------------------------------------------------------------------------------------
// The devices.
// ---------------------------------------------------------------------------------------------

/// The simulated farm's devices, serving until the `shutdown` given to [`Devices::start`].
pub struct Devices {
    /// `http://host:port` of the HTTP server.
    base: String,
    /// The farm's registry records, without adapters.
    records: Vec<Record>,
    /// Each site's HTTP devices.
    layout: BTreeMap<String, SiteLayout>,
    /// Each machine's API server, by (site, machine).
    miners: BTreeMap<(String, String), MinerServer>,
    /// The farm's latest readings.
    latest: watch::Receiver<Latest>,
    /// When the devices started: the miners' uptime.
    booted: Instant,
    /// Where obeyed commands go.
    controls: Controls,
    /// The farm's clock.
    clock: Clock,
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

fn not_found(site: &str, machine: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no simulated machine {site}/{machine}"),
    )
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
        let clock = Clock::new(&config);
        let started = clock.now();
        let mut first = Latest::default();
        first.apply(&farm.tick(started));
        let (latest_tx, latest) = watch::channel(first);

        let records = farm.records();
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
        for record in &records {
            if let Record::Sensor(s) = record {
                layout
                    .entry(s.site.clone())
                    .or_default()
                    .sensors
                    .push((s.id.clone(), s.kind));
            }
        }

        let stop = shutdown.child_token();
        let tasks = TaskTracker::new();
        let booted = Instant::now();
        let controls = farm.controls();
        let miner_ctx = |key| MinerCtx {
            key,
            latest: latest.clone(),
            booted,
            controls: controls.clone(),
            clock,
        };
        let bound = Self::bind_servers(host, &farm, miner_ctx, &stop, &tasks).await;
        let (miners, listener) = match bound {
            Ok(bound) => bound,
            Err(error) => {
                stop.cancel();
                return Err(error);
            }
        };
        let base = format!("http://{}", reachable(listener.local_addr()?));
        let http = Arc::new(Http {
            layout: layout.clone(),
            latest: latest.clone(),
            started,
            controls: controls.clone(),
            clock,
        });
        let http_stop = stop.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, router(http))
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
            layout,
            miners,
            latest,
            booted,
            controls,
            clock,
            mqtt: None,
            stop,
            tasks,
        })
    }

    /// Binds and starts a miner server per machine, and binds the HTTP listener.
    async fn bind_servers(
        host: &str,
        farm: &Farm,
        miner_ctx: impl Fn((String, String)) -> MinerCtx,
        stop: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<(BTreeMap<(String, String), MinerServer>, TcpListener), std::io::Error> {
        let mut miners = BTreeMap::new();
        for (site, machine, _) in farm.machine_meters() {
            let listener = TcpListener::bind((host, 0)).await?;
            let addr = reachable(listener.local_addr()?);
            let key = (site.to_string(), machine.to_string());
            let ctx = miner_ctx(key.clone());
            let serving = spawn_miner(tasks, listener, ctx, MinerMode::Answering, stop);
            miners.insert(
                key,
                MinerServer {
                    addr,
                    serving: Mutex::new(Some(serving)),
                },
            );
        }
        let listener = TcpListener::bind((host, 0)).await?;
        Ok((miners, listener))
    }

    /// The HTTP server's base URL, `http://host:port`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Where `machine`'s cgminer API answers (or would, while stopped).
    pub fn miner_address(&self, site: &str, machine: &str) -> Option<SocketAddr> {
        self.miners
            .get(&(site.to_string(), machine.to_string()))
            .map(|m| m.addr)
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
                    if let Some(miner) = self.miners.get(&(m.site.clone(), m.id.clone())) {
                        m.adapter = Adapter {
                            kind: AdapterKind::Cgminer,
                            address: Some(miner.addr.to_string()),
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
                            address: Some(mqtt_topic(&s.site, &s.id)),
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
        let layout = self.layout.get(site)?;
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
        self.layout
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

    /// Registers [`Devices::records`] through `registry` as `by`; returns how many changed.
    pub async fn register(&self, registry: &Registry, by: &str) -> Result<usize, RegistryError> {
        register_records(self.records(), registry, by).await
    }

    /// Publishes each humidity sensor's readings, every tick, with QoS 1 as JSON
    /// `{"value":…,"ts":…}` on `adit-sim/<site>/<sensor>` at the broker `url`
    /// (`mqtt://host[:port]`), from now until shutdown. From then on, [`Devices::records`] give
    /// those sensors an `mqtt` adapter, and [`Devices::mqtt_maps`] is the subscriber's mapping
    /// for them.
    pub fn publish_mqtt(&mut self, url: &str) -> Result<(), MqttError> {
        let client_id = format!("adit-sim-devices-{}", self.base.replace([':', '/'], "-"));
        let (client, driver) = mqtt::spawn_publisher(url, &client_id, self.stop.clone())?;
        self.tasks.spawn(async move {
            if let Err(error) = driver.await {
                tracing::error!(%error, "simulated MQTT publisher failed");
            }
        });
        let mut latest = self.latest.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    changed = latest.changed() => if changed.is_err() { break },
                }
                let readings: Vec<(String, Value)> = latest
                    .borrow_and_update()
                    .sensors
                    .iter()
                    .filter(|(_, v)| v.kind == SensorKind::Humidity)
                    .map(|((site, sensor), v)| {
                        let ts = v.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                        (
                            mqtt_topic(site, sensor),
                            json!({"value": v.value, "ts": ts}),
                        )
                    })
                    .collect();
                for (topic, payload) in readings {
                    if let Err(error) = mqtt::publish_reading(&client, &topic, &payload).await {
                        tracing::error!(%error, "simulated MQTT publishing stopped");
                        return;
                    }
                }
            }
        });
        self.mqtt = Some(url.to_string());
        Ok(())
    }

    /// The topic map reading what [`Devices::publish_mqtt`] publishes (site and sensor from
    /// the topic, the value at `/value`, the time at `ts`); empty before it was called.
    pub fn mqtt_maps(&self) -> Vec<TopicMap> {
        if self.mqtt.is_none() {
            return Vec::new();
        }
        vec![TopicMap {
            pattern: format!("{MQTT_TOPIC_PREFIX}/+/+"),
            site: "{1}".into(),
            sensor: "{2}".into(),
            kind: SensorKind::Humidity,
            value: Some("/value".into()),
        }]
    }

    /// Stops `machine`'s API server: its port refuses connections until
    /// [`Devices::restart_machine`]. (Its meter keeps reading.)
    pub async fn stop_machine(&self, site: &str, machine: &str) -> Result<(), std::io::Error> {
        self.set_miner(site, machine, MinerMode::Silent).await
    }

    /// Makes `machine`'s API answer every request with the first half of its reply (a reply
    /// cut off), until [`Devices::restart_machine`].
    pub async fn garble(&self, site: &str, machine: &str) -> Result<(), std::io::Error> {
        self.set_miner(site, machine, MinerMode::Garbled).await
    }

    /// Makes `machine`'s API answer as cgminer again, on the same port.
    pub async fn restart_machine(&self, site: &str, machine: &str) -> Result<(), std::io::Error> {
        self.set_miner(site, machine, MinerMode::Answering).await
    }

    async fn set_miner(
        &self,
        site: &str,
        machine: &str,
        mode: MinerMode,
    ) -> Result<(), std::io::Error> {
        let key = (site.to_string(), machine.to_string());
        let server = self
            .miners
            .get(&key)
            .ok_or_else(|| not_found(site, machine))?;
        let mut serving = server.serving.lock().await;
        if let Some(old) = serving.take() {
            old.stop.cancel();
            old.task.await.map_err(std::io::Error::other)?;
        }
        if mode == MinerMode::Silent {
            tracing::info!(site, machine, "simulated miner stopped");
            return Ok(());
        }
        let listener = TcpListener::bind(server.addr).await?;
        let ctx = MinerCtx {
            key,
            latest: self.latest.clone(),
            booted: self.booted,
            controls: self.controls.clone(),
            clock: self.clock,
        };
        *serving = Some(spawn_miner(&self.tasks, listener, ctx, mode, &self.stop));
        tracing::info!(site, machine, ?mode, "simulated miner serving");
        Ok(())
    }

    /// Waits until every server and task has stopped, after the `shutdown` given to
    /// [`Devices::start`] (or a failed start) was cancelled.
    pub async fn stopped(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The topic a simulated sensor's readings are published on.
fn mqtt_topic(site: &str, sensor: &str) -> String {
    format!("{MQTT_TOPIC_PREFIX}/{site}/{sensor}")
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

/// Registers `records` (sites first, meters after their machines) through `registry` as `by`;
/// records already there as they are do not change. Returns how many changed.
pub async fn register_records(
    records: Vec<Record>,
    registry: &Registry,
    by: &str,
) -> Result<usize, RegistryError> {
    registry.put_all(records, by).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_devices::http_json::{
        FieldMap, parse_dr_signal, parse_iotawatt, parse_pdu, parse_price_signal, parse_roomalert,
    };
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    fn config() -> SimConfig {
        SimConfig {
            sites: 2,
            machines_per_site: 4,
            grid_every: 1,
            interval: Duration::from_secs(3600),
            ..SimConfig::default()
        }
    }

    async fn get_body(app: &axum::Router, uri: &str) -> (StatusCode, Vec<u8>) {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    #[tokio::test]
    async fn records_point_every_device_at_its_server_in_registration_order() {
        let shutdown = CancellationToken::new();
        let mut devices = Devices::start(Farm::new(config()), "127.0.0.1", shutdown.clone())
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

    #[tokio::test]
    async fn the_http_devices_answer_what_the_parsers_read() {
        let mut farm = Farm::new(config());
        let mut latest = Latest::default();
        let now = Utc::now();
        let events = farm.tick(now);
        latest.apply(&events);
        let (_tx, rx) = watch::channel(latest);
        let mut layout = BTreeMap::new();
        layout.insert(
            "site-01".to_string(),
            SiteLayout {
                metered: vec!["m-001".into()],
                outlets: vec![(2, "m-002".into())],
                sensors: vec![
                    ("temp-01".into(), SensorKind::Temperature),
                    ("hum-01".into(), SensorKind::Humidity),
                ],
            },
        );
        let controls = Controls::default();
        let app = router(Arc::new(Http {
            layout,
            latest: rx,
            started: now,
            controls: controls.clone(),
            clock: Clock::new(&config()),
        }));
        let truth = |site: &str, machine: &str| {
            events
                .iter()
                .find_map(|e| match e {
                    AnyEvent::Energy(r) if r.site == site && r.machine == machine => {
                        Some(r.power_w)
                    }
                    _ => None,
                })
                .unwrap()
        };

        let (status, body) = get_body(
            &app,
            "/iotawatt/site-01/query?select=[time.iso,m-001.watts]&begin=s-1s&end=s&group=all&format=json",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let got = parse_iotawatt(&body, &["m-001".into()]).unwrap();
        assert_eq!(got, vec![("m-001".into(), truth("site-01", "m-001"))]);
        let (status, _) = get_body(&app, "/iotawatt/site-01/query?select=[m-002.watts]").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "m-002 is on the PDU");
        let (status, _) = get_body(&app, "/iotawatt/site-09/query?select=[m-001.watts]").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (_, body) = get_body(&app, "/pdu/site-01").await;
        let got = parse_pdu(&body, &FieldMap::default()).unwrap();
        assert_eq!(got, vec![("2".into(), truth("site-01", "m-002"))]);

        let (_, body) = get_body(&app, "/roomalert/site-01/getData.json").await;
        let got = parse_roomalert(&body).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].temp_c.is_some() && got[0].humidity_pct.is_none());
        assert!(got[1].humidity_pct.is_some() && got[1].temp_c.is_none());

        // grid_every = 1: the first tick curtailed one site; the other has had no signal, and
        // neither a price.
        let curtailed = events
            .iter()
            .find_map(|e| match e {
                AnyEvent::Grid(g) => Some(g.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(curtailed.kind, GridSignalKind::Curtail);
        let (_, body) = get_body(&app, "/grid/site-01/signal").await;
        let signal = parse_dr_signal(&body, "site-01").unwrap();
        if curtailed.site == "site-01" {
            assert_eq!(signal.kind, GridSignalKind::Curtail);
            assert_eq!(signal.event_id, curtailed.event_id);
            assert_eq!(signal.target_kw, curtailed.target_kw);
            assert_eq!(signal.deadline, curtailed.deadline);
        } else {
            assert_eq!(
                (signal.kind, signal.event_id.as_str()),
                (GridSignalKind::Normal, INITIAL_EVENT_ID)
            );
        }
        let (_, body) = get_body(&app, "/grid/site-01/price").await;
        let price = parse_price_signal(&body, "site-01").unwrap();
        assert_eq!(price.price_per_mwh, Some(INITIAL_PRICE_PER_MWH));
        assert_eq!(price.event_id, INITIAL_PRICE_ID);
    }

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

    #[test]
    fn a_miner_reports_its_latest_status() {
        let mut farm = Farm::new(config());
        let mut latest = Latest::default();
        let events = farm.tick(Utc::now());
        latest.apply(&events);
        let key = ("site-01".to_string(), "m-001".to_string());
        let snap = latest.miner_snapshot(&key, 60);
        let status = latest.miners.get(&key).unwrap();
        assert_eq!(snap.hashrate_hs, status.hashrate_hs);
        assert_eq!(snap.temps_c, vec![status.temp_c.unwrap()]);
        assert_eq!(snap.power_w, status.power_w);
        assert_eq!(snap.state, MinerState::Mining);
        let unknown = latest.miner_snapshot(&("x".into(), "y".into()), 0);
        assert_eq!(
            (unknown.hashrate_hs, unknown.state),
            (0.0, MinerState::Idle)
        );
    }
}
