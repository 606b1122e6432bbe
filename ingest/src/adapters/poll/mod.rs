//! The `adapters` role: reads the farm's devices named in the registry on a schedule (and,
//! when configured, subscribes to MQTT and polls the grid feeds), and publishes what they
//! report as events through the normal [`Publisher`] with their dedupe ids.
//!
//! What is polled, from the registry (re-read every `registry_refresh`, so a device added,
//! moved or removed takes effect without a restart):
//! - machines with a `cgminer` adapter → [`MinerStatus`], plus an [`EnergyReading`] (source
//!   `firmware`) when the miner reports its power;
//! - meters with an `iotawatt` adapter → [`EnergyReading`] (source `meter`) for the meter's
//!   machine, or for the meter itself when it is a site's main meter; one `/query` request
//!   reads every input registered at one IotaWatt;
//! - meters with a `pdu` adapter → [`EnergyReading`] (source `pdu`), one request per PDU;
//! - sensors with a `roomalert` adapter → [`SensorReading`] (temperature or humidity, by the
//!   sensor's kind; the channel is the monitor's sensor label, the sensor's id by default).
//!
//! Every reading's `ts` is the poll's time, truncated to the millisecond, so its dedupe id is
//! new for each poll and the same for a retried publish.
//!
//! Layers: `config.rs` holds `[adapters]` and its checks; the scheduler (`schedule.rs`) is pure (given instants in, due devices and state changes out):
//! when each device is due, its exponential backoff after failures, and when it turns *stale*
//! (no good reading for `stale_after`). One function per device family fetches and parses;
//! the loop in [`run`] only moves results between them and JetStream.
//!
//! Faults: a device that does not answer backs off (interval·2ⁿ up to `max_backoff`) and is
//! logged once when it starts failing, once when it turns stale and once when it recovers; a
//! miner that turns stale gets one [`MinerStatus`] with state `offline`. A device that answers
//! garbage (not JSON, cut off, a value out of range) is dead-lettered to `dlq.adapters` with
//! the reason ([`names::HEADER_DLQ_REASON`]), the device ([`HEADER_DLQ_DEVICE`],
//! [`HEADER_DLQ_ADAPTER`]) and the start of its reply as the payload, counts as a failure, and
//! is polled again after its backoff. Metrics: `adit_adapter_polls_total{kind,outcome}`,
//! `adit_adapter_stale_devices{kind}`, `adit_adapter_mqtt_messages_total{outcome}`.

pub(crate) mod config;
mod schedule;

use super::http_url;
pub use config::{AdaptersConfig, GridFeed, GridFeedKind, MqttConfig};
use schedule::{Change, Scheduler, Timing};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use adit_schemas::registry::{AdapterKind, RegistryView};
use adit_schemas::{
    AnyEvent, EnergyReading, EnergySource, Event as _, GridSignal, GridSignalKind, MinerState,
    MinerStatus, SensorKind, SensorReading, names,
};
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use reqwest::Url;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::DeviceError;
use super::cgminer::{self, MinerReport};
use super::feed_map::{self, Asks, FeedMap, Mapped};
use super::http_json::{
    RoomAlertSensor, parse_dr_signal, parse_iotawatt, parse_pdu, parse_price_signal,
    parse_roomalert,
};
use super::mqtt::{self, MappedError, MqttError};
use adit_bus::publish::{Outgoing, Publisher};
use adit_bus::registry::{Registry, RegistryError};

/// The stream name the adapters' dead letters are filed under: `dlq.adapters`.
pub const DLQ_SOURCE: &str = "adapters";
/// Header of a dead letter naming the device's address (`host:port`, URL or MQTT topic).
pub const HEADER_DLQ_DEVICE: &str = "Adit-Dlq-Device";
/// Header of a dead letter naming the adapter kind (`cgminer`, `iotawatt`, …, `mqtt`).
pub const HEADER_DLQ_ADAPTER: &str = "Adit-Dlq-Adapter";

/// Bytes of a refused HTTP reply kept as the dead letter's payload.
const DLQ_BODY_BYTES: usize = 4096;
/// MQTT outcomes waiting to be published.
const MQTT_QUEUE: usize = 1024;
/// MQTT outcomes published together at most.
const MQTT_BATCH: usize = 256;
/// How long the poll loop sleeps when nothing is scheduled (a registry read wakes it sooner).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// What stops the `adapters` role. A device's failure never does: it is logged and retried.
#[derive(Debug, thiserror::Error)]
pub enum AdaptersError {
    /// The config cannot work (the message names the key). Permanent.
    #[error("{0}")]
    Config(String),
    /// The HTTP client could not be built. Permanent.
    #[error("building the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// A publish failed after its retries: JetStream is unreachable.
    #[error(transparent)]
    Publish(#[from] adit_bus::Error),
    /// The MQTT subscription stopped for good (a refused subscription, a bad map).
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// A poll task panicked.
    #[error("an adapter task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The registry reader stopped while the poll loop ran.
    #[error("the registry reader stopped unexpectedly")]
    ReaderStopped,
}

// ---------------------------------------------------------------------------------------------
// Devices and what they are read for.
// ---------------------------------------------------------------------------------------------

/// A family of devices, read alike: the `kind` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Family {
    /// Miners over the cgminer API.
    Cgminer,
    /// IotaWatt power monitors.
    Iotawatt,
    /// RoomAlert-style environment monitors.
    Roomalert,
    /// PDUs.
    Pdu,
    /// Grid signal and price feeds.
    Grid,
}

impl Family {
    const ALL: [Family; 5] = [
        Self::Cgminer,
        Self::Iotawatt,
        Self::Roomalert,
        Self::Pdu,
        Self::Grid,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Cgminer => "cgminer",
            Self::Iotawatt => "iotawatt",
            Self::Roomalert => "roomalert",
            Self::Pdu => "pdu",
            Self::Grid => "grid",
        }
    }
}

/// One polled device: a miner (one machine), an HTTP device (all its channels), a grid feed.
///
/// A changed address is a new key, so the device starts afresh there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct DeviceKey {
    /// How it is read.
    family: Family,
    /// `host:port` or URL.
    address: String,
    /// Whose device it is when the address alone does not say (`site/machine` of a miner,
    /// `site kind` of a grid feed); empty for HTTP devices shared by several records.
    owner: String,
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family.name(), self.address)?;
        if !self.owner.is_empty() {
            write!(f, " ({})", self.owner)?;
        }
        Ok(())
    }
}

/// A meter channel: which input or outlet gives which machine's power.
#[derive(Debug, Clone, PartialEq)]
struct MeterChannel {
    /// The site.
    site: String,
    /// The reading's machine: the meter's machine, or the meter's id for a main meter.
    machine: String,
    /// The meter's id, for messages.
    meter: String,
    /// The IotaWatt input or PDU outlet.
    channel: String,
}

/// A sensor at an environment monitor.
#[derive(Debug, Clone, PartialEq)]
struct SensorChannel {
    /// The site.
    site: String,
    /// The sensor's id.
    sensor: String,
    /// Temperature or humidity.
    kind: SensorKind,
    /// The monitor's label for it.
    label: String,
}

/// What to read at a device and what the readings are for.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A miner: its status (and power) for one machine.
    Miner {
        /// The machine's site.
        site: String,
        /// The machine.
        machine: String,
    },
    /// An IotaWatt: power per input.
    Iotawatt {
        /// Its base URL.
        url: Url,
        /// The inputs registered as meters.
        channels: Vec<MeterChannel>,
    },
    /// An environment monitor.
    Roomalert {
        /// Its `/getData.json` URL.
        url: Url,
        /// The sensors registered at it.
        sensors: Vec<SensorChannel>,
    },
    /// A PDU: power per outlet.
    Pdu {
        /// Its JSON URL.
        url: Url,
        /// The outlets registered as meters.
        outlets: Vec<MeterChannel>,
    },
    /// A grid feed.
    Grid {
        /// The site.
        site: String,
        /// Its message shape.
        kind: GridFeedKind,
        /// Its URL.
        url: Url,
        /// How to read it when it is in its own shape.
        map: Option<Box<FeedMap>>,
    },
}

/// Every device to poll, and the records that name a device this role cannot read.
#[derive(Debug, Default)]
struct Targets {
    /// By device.
    devices: BTreeMap<DeviceKey, Target>,
    /// Why a record was left out, one line each.
    skipped: Vec<String>,
}

/// The devices `view` and the grid feeds name.
fn targets(view: &RegistryView, grid: &[GridFeed]) -> Targets {
    let mut out = Targets::default();
    for m in view.machines() {
        let who = format!("machine {}/{}", m.site, m.id);
        match (m.adapter.kind, &m.adapter.address) {
            (AdapterKind::Cgminer, Some(address)) => {
                out.devices.insert(
                    DeviceKey {
                        family: Family::Cgminer,
                        address: address.clone(),
                        owner: format!("{}/{}", m.site, m.id),
                    },
                    Target::Miner {
                        site: m.site.clone(),
                        machine: m.id.clone(),
                    },
                );
            }
            (AdapterKind::Cgminer, None) => out
                .skipped
                .push(format!("{who}: its cgminer adapter needs an address")),
            (AdapterKind::Push | AdapterKind::Mqtt, _) => {}
            (kind, _) => out.skipped.push(unreadable(&who, kind)),
        }
    }
    for meter in view.meters() {
        let who = format!("meter {}/{}", meter.site, meter.id);
        let family = match meter.adapter.kind {
            AdapterKind::Iotawatt => Family::Iotawatt,
            AdapterKind::Pdu => Family::Pdu,
            AdapterKind::Push | AdapterKind::Mqtt => continue,
            kind => {
                out.skipped.push(unreadable(&who, kind));
                continue;
            }
        };
        let (Some(address), Some(channel)) = (&meter.adapter.address, &meter.adapter.channel)
        else {
            out.skipped
                .push(format!("{who}: its adapter needs an address and a channel"));
            continue;
        };
        let url = match http_url(address) {
            Ok(url) => url,
            Err(reason) => {
                out.skipped.push(format!("{who}: {address:?}: {reason}"));
                continue;
            }
        };
        let entry = MeterChannel {
            site: meter.site.clone(),
            machine: meter.machine.clone().unwrap_or_else(|| meter.id.clone()),
            meter: meter.id.clone(),
            channel: channel.clone(),
        };
        let key = DeviceKey {
            family,
            address: url.to_string(),
            owner: String::new(),
        };
        let target = out.devices.entry(key).or_insert_with(|| match family {
            Family::Pdu => Target::Pdu {
                url,
                outlets: Vec::new(),
            },
            _ => Target::Iotawatt {
                url,
                channels: Vec::new(),
            },
        });
        if let Target::Pdu { outlets: list, .. } | Target::Iotawatt { channels: list, .. } = target
        {
            list.push(entry);
        }
    }
    for sensor in view.sensors() {
        let who = format!("sensor {}/{}", sensor.site, sensor.id);
        match sensor.adapter.kind {
            AdapterKind::Roomalert => {}
            AdapterKind::Push | AdapterKind::Mqtt => continue,
            kind => {
                out.skipped.push(unreadable(&who, kind));
                continue;
            }
        }
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
        let entry = SensorChannel {
            site: sensor.site.clone(),
            sensor: sensor.id.clone(),
            kind: sensor.kind,
            label: sensor
                .adapter
                .channel
                .clone()
                .unwrap_or_else(|| sensor.id.clone()),
        };
        let key = DeviceKey {
            family: Family::Roomalert,
            address: url.to_string(),
            owner: String::new(),
        };
        let target = out.devices.entry(key).or_insert_with(|| Target::Roomalert {
            url,
            sensors: Vec::new(),
        });
        if let Target::Roomalert { sensors, .. } = target {
            sensors.push(entry);
        }
    }
    for feed in grid {
        let Ok(url) = http_url(&feed.url) else {
            out.skipped
                .push(format!("grid feed {:?}: not an http(s) URL", feed.url));
            continue;
        };
        out.devices.insert(
            DeviceKey {
                family: Family::Grid,
                address: url.to_string(),
                owner: format!("{} {}", feed.site, feed.kind.name()),
            },
            Target::Grid {
                site: feed.site.clone(),
                kind: feed.kind,
                url,
                map: feed.map.clone().map(Box::new),
            },
        );
    }
    out
}

fn unreadable(who: &str, kind: AdapterKind) -> String {
    let how = match kind {
        AdapterKind::Cgminer => "cgminer (only machines are read over the cgminer API)",
        AdapterKind::Iotawatt => "iotawatt (only meters are read from an IotaWatt)",
        AdapterKind::Pdu => "pdu (only meters are read from a PDU)",
        AdapterKind::Roomalert => "roomalert (only sensors are read from a RoomAlert)",
        AdapterKind::Push | AdapterKind::Mqtt => "push",
    };
    format!("{who}: its adapter is {how}; not polled")
}

// ---------------------------------------------------------------------------------------------
// Readings: pure.
// ---------------------------------------------------------------------------------------------

/// What a good poll gave.
#[derive(Debug, Default, PartialEq)]
struct Polled {
    /// Events to publish.
    events: Vec<AnyEvent>,
    /// Registered channels the reply lacked, described.
    missing: Vec<String>,
}

/// Why a poll gave nothing.
#[derive(Debug)]
struct Failure {
    /// What went wrong.
    error: DeviceError,
    /// The start of the reply, when there was one (for the dead letter).
    body: Option<Bytes>,
}

impl Failure {
    fn bare(error: DeviceError) -> Self {
        Self { error, body: None }
    }

    fn with_body(error: DeviceError, body: &[u8]) -> Self {
        let end = body.len().min(DLQ_BODY_BYTES);
        Self {
            error,
            body: Some(Bytes::copy_from_slice(&body[..end])),
        }
    }
}

/// The miner's status, and its power as a firmware reading when it reports one.
fn miner_events(site: &str, machine: &str, report: &MinerReport, at: DateTime<Utc>) -> Polled {
    let mut events = vec![AnyEvent::Miner(MinerStatus {
        site: site.into(),
        machine: machine.into(),
        ts: at,
        hashrate_hs: report.hashrate_hs,
        temp_c: report.temp_c,
        fan_rpm: report.fan_rpm,
        power_w: report.power_w,
        state: report.state,
    })];
    if let Some(power_w) = report.power_w {
        events.push(AnyEvent::Energy(EnergyReading {
            site: site.into(),
            machine: machine.into(),
            ts: at,
            power_w,
            energy_wh: None,
            source: EnergySource::Firmware,
        }));
    }
    Polled {
        events,
        missing: Vec::new(),
    }
}

/// What a miner that turned stale is reported as.
fn offline_status(site: &str, machine: &str, at: DateTime<Utc>) -> MinerStatus {
    MinerStatus {
        site: site.into(),
        machine: machine.into(),
        ts: at,
        hashrate_hs: 0.0,
        temp_c: None,
        fan_rpm: None,
        power_w: None,
        state: MinerState::Offline,
    }
}

/// One energy reading per registered channel that `values` (channel → watts) has.
fn meter_events(
    channels: &[MeterChannel],
    values: &[(String, f64)],
    source: EnergySource,
    at: DateTime<Utc>,
) -> Polled {
    let mut out = Polled::default();
    for c in channels {
        match values.iter().find(|(name, _)| *name == c.channel) {
            Some((_, power_w)) => out.events.push(AnyEvent::Energy(EnergyReading {
                site: c.site.clone(),
                machine: c.machine.clone(),
                ts: at,
                power_w: *power_w,
                energy_wh: None,
                source,
            })),
            None => out.missing.push(format!(
                "meter {}/{} (channel {:?})",
                c.site, c.meter, c.channel
            )),
        }
    }
    out
}

/// One sensor reading per registered sensor whose label and figure the monitor reports.
fn roomalert_events(
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

/// The `/query` URL reading `columns` (IotaWatt inputs or outputs) averaged over the last
/// `interval` from the IotaWatt at `base`.
fn iotawatt_query_url(base: &Url, columns: &[String], interval: Duration) -> Url {
    let mut url = base.clone();
    let path = url.path().trim_end_matches('/').to_string();
    if path.ends_with("/query") {
        url.set_path(&path);
    } else {
        url.set_path(&format!("{path}/query"));
    }
    let select: Vec<String> = std::iter::once("time.iso".to_string())
        .chain(columns.iter().map(|c| format!("{c}.watts")))
        .collect();
    url.set_query(Some(&format!(
        "select=[{}]&begin=s-{}s&end=s&group=all&format=json",
        select.join(","),
        interval.as_secs().max(1)
    )));
    url
}

/// The dead letter for a device's unusable reply.
fn dead_letter(
    family: &str,
    address: &str,
    reason: &str,
    payload: Bytes,
    at: DateTime<Utc>,
) -> Outgoing {
    Outgoing {
        subject: names::dlq_subject(DLQ_SOURCE),
        id: format!(
            "dlq:{DLQ_SOURCE}:{family}:{address}:{}",
            at.timestamp_nanos_opt().unwrap_or(i64::MAX)
        ),
        headers: vec![
            (names::HEADER_DLQ_REASON, reason.to_string()),
            (HEADER_DLQ_DEVICE, address.to_string()),
            (HEADER_DLQ_ADAPTER, family.to_string()),
        ],
        payload,
    }
}

/// How a failed poll is counted.
fn failure_outcome(error: &DeviceError) -> &'static str {
    match error {
        DeviceError::Connect { .. } | DeviceError::Timeout { .. } | DeviceError::Io { .. } => {
            "unreachable"
        }
        DeviceError::TooLarge { .. } => "too_large",
        DeviceError::Garbage { .. } | DeviceError::OutOfRange { .. } => "garbage",
    }
}

/// The dead letter's reason and payload for `failure`, if it is one to dead-letter: a reply
/// that is garbage or out of range.
fn dead_letter_parts(failure: &Failure) -> Option<(String, Bytes)> {
    match &failure.error {
        DeviceError::Garbage { reason, excerpt } => Some((
            reason.clone(),
            failure
                .body
                .clone()
                .unwrap_or_else(|| Bytes::from(excerpt.clone())),
        )),
        e @ DeviceError::OutOfRange { .. } => {
            Some((e.to_string(), failure.body.clone().unwrap_or_default()))
        }
        DeviceError::Connect { .. }
        | DeviceError::Timeout { .. }
        | DeviceError::Io { .. }
        | DeviceError::TooLarge { .. } => None,
    }
}

/// The poll's time: now, to the millisecond.
fn poll_time() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

// ---------------------------------------------------------------------------------------------
// Polling: one function per family.
// ---------------------------------------------------------------------------------------------

/// What every poll needs.
struct Ctx {
    /// The config.
    config: AdaptersConfig,
    /// Devices' HTTP client and TCP guard (`egress.devices`).
    devices: adit_egress::Outbound,
    /// Grid feeds' HTTP client (`egress.feeds`).
    feeds: adit_egress::Outbound,
    /// Where events and dead letters go.
    publisher: Publisher,
    /// Bounds the polls under way.
    permits: Semaphore,
    /// The last signal published per grid feed: an unchanged signal is published again only
    /// as a confirmation, every `grid_confirm`.
    grid_seen: Mutex<HashMap<DeviceKey, Said>>,
}

/// GETs `url` through `out` (whose egress policy it must pass) and reads its body, under the
/// poll timeout and the reply size limit. An error status is the device not answering (it is
/// not dead-lettered).
async fn fetch(ctx: &Ctx, out: &adit_egress::Outbound, url: &Url) -> Result<Vec<u8>, DeviceError> {
    let addr = url.as_str();
    let limit = ctx.config.max_reply_bytes;
    out.guard.check(url).map_err(|e| DeviceError::Connect {
        addr: addr.to_string(),
        source: std::io::Error::other(e),
    })?;
    let exchange = async {
        let mut response = out
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| http_error(addr, ctx.config.timeout, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(DeviceError::Io {
                addr: addr.to_string(),
                source: std::io::Error::other(format!("HTTP status {status}")),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http_error(addr, ctx.config.timeout, e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(DeviceError::TooLarge {
                    addr: addr.to_string(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(ctx.config.timeout, exchange)
        .await
        .map_err(|_| DeviceError::Timeout {
            addr: addr.to_string(),
            after: ctx.config.timeout,
        })?
}

fn http_error(addr: &str, timeout: Duration, e: reqwest::Error) -> DeviceError {
    if e.is_timeout() {
        DeviceError::Timeout {
            addr: addr.to_string(),
            after: timeout,
        }
    } else if e.is_connect() {
        DeviceError::Connect {
            addr: addr.to_string(),
            source: std::io::Error::other(adit_egress::describe(e)),
        }
    } else {
        DeviceError::Io {
            addr: addr.to_string(),
            source: std::io::Error::other(e),
        }
    }
}

async fn poll_miner(
    ctx: &Ctx,
    address: &str,
    site: &str,
    machine: &str,
    at: DateTime<Utc>,
) -> Result<Polled, Failure> {
    let reply = cgminer::query(
        &ctx.devices.guard,
        address,
        cgminer::REPORT_COMMAND,
        ctx.config.timeout,
        ctx.config.max_reply_bytes,
    )
    .await
    .map_err(Failure::bare)?;
    let report = cgminer::parse_report(&reply)
        .map_err(|e| Failure::with_body(e, reply.to_string().as_bytes()))?;
    Ok(miner_events(site, machine, &report, at))
}

async fn poll_iotawatt(
    ctx: &Ctx,
    url: &Url,
    channels: &[MeterChannel],
    at: DateTime<Utc>,
) -> Result<Polled, Failure> {
    let mut columns: Vec<String> = Vec::new();
    for c in channels {
        if !columns.contains(&c.channel) {
            columns.push(c.channel.clone());
        }
    }
    let query = iotawatt_query_url(url, &columns, ctx.config.interval);
    let body = fetch(ctx, &ctx.devices, &query)
        .await
        .map_err(Failure::bare)?;
    let values = parse_iotawatt(&body, &columns).map_err(|e| Failure::with_body(e, &body))?;
    Ok(meter_events(channels, &values, EnergySource::Meter, at))
}

async fn poll_roomalert(
    ctx: &Ctx,
    url: &Url,
    sensors: &[SensorChannel],
    at: DateTime<Utc>,
) -> Result<Polled, Failure> {
    let body = fetch(ctx, &ctx.devices, url).await.map_err(Failure::bare)?;
    let found = parse_roomalert(&body).map_err(|e| Failure::with_body(e, &body))?;
    Ok(roomalert_events(sensors, &found, at))
}

async fn poll_pdu(
    ctx: &Ctx,
    url: &Url,
    outlets: &[MeterChannel],
    at: DateTime<Utc>,
) -> Result<Polled, Failure> {
    let body = fetch(ctx, &ctx.devices, url).await.map_err(Failure::bare)?;
    let values = parse_pdu(&body, &ctx.config.pdu).map_err(|e| Failure::with_body(e, &body))?;
    Ok(meter_events(outlets, &values, EnergySource::Pdu, at))
}

async fn poll_grid(
    ctx: &Ctx,
    key: &DeviceKey,
    site: &str,
    kind: GridFeedKind,
    url: &Url,
    map: Option<&FeedMap>,
) -> Result<Polled, Failure> {
    let body = fetch(ctx, &ctx.feeds, url).await.map_err(Failure::bare)?;
    let price = kind == GridFeedKind::Price;
    // What identifies the feed's current message: its own id and time (adit's shape), or
    // what it says (a mapped feed, which may repeat the same words on every poll).
    let (signal, id) = match map {
        None => {
            let signal = if price {
                parse_price_signal(&body, site)
            } else {
                parse_dr_signal(&body, site)
            }
            .map_err(|e| Failure::with_body(e, &body))?;
            let id = signal.dedupe_id();
            (signal, id)
        }
        Some(map) => {
            let mapped =
                feed_map::read(map, price, &body).map_err(|e| Failure::with_body(e, &body))?;
            let id = mapped.made_id();
            (mapped_signal(site, map, mapped, Utc::now()), id)
        }
    };
    let now = Instant::now();
    let mut seen = ctx.grid_seen.lock().unwrap_or_else(PoisonError::into_inner);
    let signal = match seen.get_mut(key) {
        Some(said) if said.id == id => {
            // Only a curtailment is confirmed: the controller's staleness rule is about the
            // curtailment in force, and a `normal` confirmed from one feed would end a
            // curtailment another feed of the site still asks for.
            if said.signal.kind != GridSignalKind::Curtail
                || now.duration_since(said.at) < ctx.config.grid_confirm
            {
                return Ok(Polled::default());
            }
            said.at = now;
            said.signal.ts = Utc::now();
            // Past its deadline the target is due now: a confirmation never says it was due
            // before it was sent (validation refuses that).
            said.signal.deadline = said.signal.deadline.map(|d| d.max(said.signal.ts));
            said.signal.clone()
        }
        _ => {
            seen.insert(
                key.clone(),
                Said {
                    id,
                    signal: signal.clone(),
                    at: now,
                },
            );
            signal
        }
    };
    Ok(Polled {
        events: vec![AnyEvent::Grid(signal)],
        missing: Vec::new(),
    })
}

/// What a grid feed last said: the signal as first published (its event id and deadline
/// stay), and when it was last published.
#[derive(Debug)]
struct Said {
    /// What identifies the feed's message (its id, or what a mapped feed says).
    id: String,
    /// The signal published for it.
    signal: GridSignal,
    /// When it was last published (first seen or confirmed).
    at: Instant,
}

/// The grid signal a mapped feed's reading stands for, first seen `now`: a curtailment
/// without a deadline of its own is due `map.lead` after it was first seen; a reading
/// without an event id of its own gets one made from what it says and when it was first
/// seen, so a feed that says `CURTAIL` again after a `NORMAL` starts a new event.
fn mapped_signal(site: &str, map: &FeedMap, mapped: Mapped, now: DateTime<Utc>) -> GridSignal {
    let event_id = mapped
        .event_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", mapped.made_id(), now.format("%Y%m%dT%H%M%S%.3fZ")));
    let lead = chrono::Duration::from_std(map.lead).unwrap_or_default();
    let (kind, deadline) = match mapped.asks {
        None => (GridSignalKind::Price, None),
        Some(Asks::Normal) => (GridSignalKind::Normal, None),
        Some(Asks::Curtail) => (
            GridSignalKind::Curtail,
            Some(mapped.deadline.unwrap_or(now + lead)),
        ),
    };
    GridSignal {
        site: site.to_string(),
        event_id,
        kind,
        target_kw: mapped.target_kw,
        deadline,
        price_per_mwh: mapped.price_per_mwh,
        ts: now,
    }
}

/// What one poll task tells the loop.
#[derive(Debug)]
struct Report {
    /// The device.
    key: DeviceKey,
    /// Good (with the channels its reply lacked), or why not.
    outcome: Result<Vec<String>, DeviceError>,
}

/// Polls one device and publishes what it gave (events, or a dead letter).
async fn poll_task(
    ctx: Arc<Ctx>,
    key: DeviceKey,
    target: Target,
) -> Result<Option<Report>, AdaptersError> {
    // The semaphore is never closed; a closed one would mean the role is stopping.
    let Ok(_permit) = ctx.permits.acquire().await else {
        return Ok(None);
    };
    let at = poll_time();
    let polled = match &target {
        Target::Miner { site, machine } => poll_miner(&ctx, &key.address, site, machine, at).await,
        Target::Iotawatt { url, channels } => poll_iotawatt(&ctx, url, channels, at).await,
        Target::Roomalert { url, sensors } => poll_roomalert(&ctx, url, sensors, at).await,
        Target::Pdu { url, outlets } => poll_pdu(&ctx, url, outlets, at).await,
        Target::Grid {
            site,
            kind,
            url,
            map,
        } => poll_grid(&ctx, &key, site, *kind, url, map.as_deref()).await,
    };
    let family = key.family.name();
    let (outgoing, outcome, label) = match polled {
        Ok(polled) => {
            let label = if polled.missing.is_empty() {
                "ok"
            } else {
                "partial"
            };
            let msgs = polled.events.iter().map(Outgoing::event).collect();
            (msgs, Ok(polled.missing), label)
        }
        Err(failure) => {
            let msgs = match dead_letter_parts(&failure) {
                Some((reason, payload)) => {
                    vec![dead_letter(family, &key.address, &reason, payload, at)]
                }
                None => Vec::new(),
            };
            let label = failure_outcome(&failure.error);
            (msgs, Err(failure.error), label)
        }
    };
    metrics::counter!("adit_adapter_polls_total", "kind" => family, "outcome" => label)
        .increment(1);
    if !outgoing.is_empty() {
        ctx.publisher.publish_all(outgoing).await?;
    }
    Ok(Some(Report { key, outcome }))
}

/// Publishes the `offline` status of a miner that turned stale.
async fn offline_task(
    ctx: Arc<Ctx>,
    site: String,
    machine: String,
) -> Result<Option<Report>, AdaptersError> {
    let status = offline_status(&site, &machine, poll_time());
    ctx.publisher.publish(&AnyEvent::Miner(status)).await?;
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// The role.
// ---------------------------------------------------------------------------------------------

/// Runs the `adapters` role until `shutdown`: polls every device in `registry` whose adapter
/// is polled, the grid feeds, and (when configured) the MQTT broker, publishing through
/// `publisher`.
///
/// Returns an error only for what a restart will not fix by itself: a bad config, a publish
/// that failed after its retries, a refused MQTT subscription. Devices that fail and a
/// registry that cannot be read are logged and retried.
pub async fn run(
    config: AdaptersConfig,
    egress: adit_egress::EgressConfig,
    registry: Registry,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> Result<(), AdaptersError> {
    config.validate().map_err(AdaptersError::Config)?;
    let outbound = |purpose| {
        let builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("adit-adapters/", env!("CARGO_PKG_VERSION")));
        let guard = egress.guard(purpose).map_err(AdaptersError::Config)?;
        adit_egress::Outbound::new(guard, builder).map_err(AdaptersError::HttpClient)
    };
    let devices = outbound(adit_egress::Purpose::Devices)?;
    let feeds = outbound(adit_egress::Purpose::Feeds)?;
    let mqtt = config.mqtt.clone();
    let vens = config.openadr.clone();
    let shared = crate::adapters::openadr::Shared {
        timeout: config.timeout,
        max_reply_bytes: config.max_reply_bytes,
        confirm: config.grid_confirm,
        publisher: publisher.clone(),
    };
    let ctx = Arc::new(Ctx {
        permits: Semaphore::new(config.concurrency),
        config,
        devices,
        feeds,
        publisher: publisher.clone(),
        grid_seen: Mutex::new(HashMap::new()),
    });
    let polls = poll_loop(ctx, registry, shutdown.clone());
    let pushes = async {
        match &mqtt {
            Some(mqtt) => run_mqtt(mqtt, &publisher, shutdown.clone()).await,
            None => Ok(()),
        }
    };
    let utilities = crate::adapters::openadr::run(&vens, &egress, shared, shutdown.clone());
    tokio::try_join!(polls, pushes, utilities).map(|_| ())
}

/// The poll loop's state.
struct Poller {
    /// Shared with the poll tasks.
    ctx: Arc<Ctx>,
    /// When each device is due, and its health.
    scheduler: Scheduler,
    /// What each device is read for.
    targets: BTreeMap<DeviceKey, Target>,
    /// The registry as last read (a new view only rebuilds the targets when it differs).
    view: Option<RegistryView>,
    /// The last registry read failed (logged once until it works again).
    registry_failing: bool,
    /// Poll and publish tasks under way.
    tasks: JoinSet<Result<Option<Report>, AdaptersError>>,
}

async fn poll_loop(
    ctx: Arc<Ctx>,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), AdaptersError> {
    let timing = Timing {
        interval: ctx.config.interval,
        max_backoff: ctx.config.max_backoff,
        stale_after: ctx.config.stale_after,
    };
    let drain = ctx.config.timeout;
    // Read on a task of its own, so a slow registry never holds up polls.
    let (views_tx, mut views) = mpsc::channel(1);
    let mut reader = tokio::spawn(read_registry(
        registry,
        ctx.config.registry_refresh,
        views_tx,
        shutdown.clone(),
    ));
    let mut poller = Poller {
        ctx,
        scheduler: Scheduler::new(timing),
        targets: BTreeMap::new(),
        view: None,
        registry_failing: false,
        tasks: JoinSet::new(),
    };
    let stopped = loop {
        let now = Instant::now();
        poller.dispatch(now);
        poller.expire(now);
        let wake = poller.scheduler.next_wake().unwrap_or(now + IDLE_WAKE);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            Some(read) = views.recv() => poller.registry_read(read, Instant::now()),
            // The reader ends only at shutdown (handled above); a panic there is raised here,
            // so the role restarts instead of polling a registry it no longer reads.
            joined = &mut reader => match joined {
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => break Err(AdaptersError::ReaderStopped),
            },
            Some(joined) = poller.tasks.join_next() => {
                let mut settled = poller.settle(joined);
                while settled.is_ok()
                    && let Some(joined) = poller.tasks.try_join_next()
                {
                    settled = poller.settle(joined);
                }
                if let Err(e) = settled {
                    break Err(e);
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    };
    // Let polls under way publish what they read, for at most one poll timeout.
    let finished = tokio::time::timeout(drain, async {
        while poller.tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        poller.tasks.abort_all();
    }
    reader.abort();
    stopped
}

/// Reads the registry every `refresh` and sends each outcome, until `shutdown` or until the
/// loop is gone.
async fn read_registry(
    registry: Registry,
    refresh: Duration,
    views: mpsc::Sender<Result<RegistryView, RegistryError>>,
    shutdown: CancellationToken,
) {
    loop {
        let read = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            read = registry.view() => read,
        };
        if views.send(read).await.is_err() {
            return;
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(refresh) => {}
        }
    }
}

impl Poller {
    /// Applies a registry read: new targets when it changed.
    fn registry_read(&mut self, read: Result<RegistryView, RegistryError>, now: Instant) {
        let view = match read {
            Ok(view) => {
                if self.registry_failing {
                    tracing::info!("registry readable again");
                    self.registry_failing = false;
                }
                view
            }
            Err(error) => {
                if !self.registry_failing {
                    tracing::warn!(%error, "reading the registry failed; polling the devices last read");
                    self.registry_failing = true;
                }
                // Grid feeds come from config: poll them even before the registry is read.
                if self.view.is_none() {
                    let empty = RegistryView::default();
                    self.apply(&empty, now);
                    self.view = Some(empty);
                }
                return;
            }
        };
        if self.view.as_ref() != Some(&view) {
            self.apply(&view, now);
            self.view = Some(view);
        }
    }

    fn apply(&mut self, view: &RegistryView, now: Instant) {
        let Targets { devices, skipped } = targets(view, &self.ctx.config.grid);
        for reason in &skipped {
            tracing::warn!(%reason, "registry record not polled");
        }
        let added = devices
            .keys()
            .filter(|k| !self.targets.contains_key(*k))
            .count();
        let removed = self
            .targets
            .keys()
            .filter(|k| !devices.contains_key(*k))
            .count();
        tracing::info!(
            devices = devices.len(),
            added,
            removed,
            skipped = skipped.len(),
            "adapters: devices from the registry"
        );
        self.scheduler.sync(devices.keys(), now);
        self.targets = devices;
        self.set_stale_gauges();
    }

    /// Starts a poll of every device due at `now`.
    fn dispatch(&mut self, now: Instant) {
        for key in self.scheduler.take_due(now) {
            if let Some(target) = self.targets.get(&key) {
                self.tasks
                    .spawn(poll_task(Arc::clone(&self.ctx), key, target.clone()));
            }
        }
    }

    /// Marks the devices that turn stale at `now`; a miner's is reported offline.
    fn expire(&mut self, now: Instant) {
        let stale = self.scheduler.expire(now);
        if stale.is_empty() {
            return;
        }
        let after = self.ctx.config.stale_after;
        for key in stale {
            tracing::warn!(device = %key, after = ?after, "device stale: no good reading");
            if let Some(Target::Miner { site, machine }) = self.targets.get(&key) {
                self.tasks.spawn(offline_task(
                    Arc::clone(&self.ctx),
                    site.clone(),
                    machine.clone(),
                ));
            }
        }
        self.set_stale_gauges();
    }

    /// Applies one finished task's report.
    /// Takes a finished poll's outcome. A poll that panicked (a bug) panics the loop, so the
    /// role's supervisor restarts the adapters, counted and shown by `/ready`.
    fn settle(
        &mut self,
        joined: Result<Result<Option<Report>, AdaptersError>, tokio::task::JoinError>,
    ) -> Result<(), AdaptersError> {
        let joined = match joined {
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            joined => joined,
        };
        let Some(Report { key, outcome }) = joined.map_err(AdaptersError::Task)?? else {
            return Ok(());
        };
        let now = Instant::now();
        match outcome {
            Ok(missing) => {
                for change in self.scheduler.succeeded(&key, now, missing) {
                    log_change(&key, &change);
                    if matches!(change, Change::Recovered { was_stale: true }) {
                        self.set_stale_gauges();
                    }
                }
            }
            Err(error) => {
                if self.scheduler.failed(&key, now, &error.to_string()) {
                    tracing::warn!(device = %key, %error, "device failing; backing off");
                } else {
                    tracing::debug!(device = %key, %error, "device still failing");
                }
            }
        }
        Ok(())
    }

    fn set_stale_gauges(&self) {
        for family in Family::ALL {
            metrics::gauge!("adit_adapter_stale_devices", "kind" => family.name())
                .set(self.scheduler.stale(family) as f64);
        }
    }
}

fn log_change(key: &DeviceKey, change: &Change) {
    match change {
        Change::Recovered { was_stale } => {
            tracing::info!(device = %key, was_stale, "device answering again");
        }
        Change::Missing(missing) if missing.is_empty() => {
            tracing::info!(device = %key, "device reports every registered channel again");
        }
        Change::Missing(missing) => {
            tracing::warn!(device = %key, missing = %missing.join(", "), "device's reply lacks registered channels");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT.
// ---------------------------------------------------------------------------------------------

/// Subscribes to the broker and publishes each reading, dead-lettering refused messages, until
/// `shutdown`.
async fn run_mqtt(
    config: &MqttConfig,
    publisher: &Publisher,
    shutdown: CancellationToken,
) -> Result<(), AdaptersError> {
    let (tx, mut rx) = mpsc::channel(MQTT_QUEUE);
    let subscriber = async {
        mqtt::subscribe(
            &config.url,
            &config.client_id,
            config.maps.clone(),
            tx,
            shutdown,
        )
        .await
        .map_err(AdaptersError::from)
    };
    let forward = async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![mqtt_outgoing(first)];
            while batch.len() < MQTT_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(mqtt_outgoing(next)),
                    Err(_) => break,
                }
            }
            publisher.publish_all(batch).await?;
        }
        Ok::<(), AdaptersError>(())
    };
    tokio::try_join!(subscriber, forward).map(|_| ())
}

/// The message for one MQTT outcome: the reading, or a dead letter.
fn mqtt_outgoing(outcome: Result<SensorReading, MappedError>) -> Outgoing {
    match outcome {
        Ok(reading) => {
            metrics::counter!("adit_adapter_mqtt_messages_total", "outcome" => "ok").increment(1);
            Outgoing::event(&AnyEvent::Sensor(reading))
        }
        Err(refused) => {
            metrics::counter!("adit_adapter_mqtt_messages_total", "outcome" => "garbage")
                .increment(1);
            dead_letter(
                "mqtt",
                &refused.topic,
                &refused.reason,
                Bytes::from(refused.excerpt),
                Utc::now(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::registry::{Adapter, Machine, Meter, Record, Sensor, Site};
    use chrono::TimeZone;

    const S: Duration = Duration::from_secs(1);

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0)
            .single()
            .expect("valid time")
    }

    fn adapter(kind: AdapterKind, address: &str, channel: Option<&str>) -> Adapter {
        Adapter {
            kind,
            address: Some(address.into()),
            channel: channel.map(str::to_string),
        }
    }

    fn machine(id: &str, adapter: Adapter) -> Machine {
        Machine {
            id: id.into(),
            site: "s1".into(),
            pool: None,
            model: "S9".into(),
            rack: None,
            pdu: None,
            outlet: None,
            nominal_hashrate_hs: 13.5e12,
            nominal_power_w: 1350.0,
            adapter,
        }
    }

    fn meter(id: &str, machine: Option<&str>, adapter: Adapter) -> Meter {
        Meter {
            id: id.into(),
            site: "s1".into(),
            machine: machine.map(str::to_string),
            adapter,
        }
    }

    fn view(records: Vec<Record>) -> RegistryView {
        RegistryView {
            records: records.into_iter().map(|r| (r.key(), r)).collect(),
        }
    }

    #[test]
    fn devices_come_from_the_registry_grouped_by_url() {
        let iw = "http://10.0.0.5";
        let v = view(vec![
            Record::Site(Site::new("s1", 100.0)),
            Record::Machine(machine(
                "m1",
                adapter(AdapterKind::Cgminer, "10.0.0.7:4028", None),
            )),
            Record::Machine(machine("m2", Adapter::default())),
            Record::Machine(machine(
                "m3",
                adapter(AdapterKind::Pdu, "http://pdu", Some("1")),
            )),
            Record::Meter(meter(
                "sub1",
                Some("m1"),
                adapter(AdapterKind::Iotawatt, iw, Some("Input_1")),
            )),
            Record::Meter(meter(
                "main",
                None,
                adapter(AdapterKind::Iotawatt, iw, Some("Main")),
            )),
            Record::Meter(meter(
                "o2",
                Some("m2"),
                adapter(AdapterKind::Pdu, "http://pdu/api", Some("2")),
            )),
            Record::Sensor(Sensor {
                id: "t1".into(),
                site: "s1".into(),
                kind: SensorKind::Temperature,
                adapter: adapter(AdapterKind::Roomalert, "http://ra", None),
            }),
        ]);
        let grid = [GridFeed {
            site: "s1".into(),
            kind: GridFeedKind::Price,
            url: "http://grid/price".into(),
            map: None,
        }];
        let t = targets(&v, &grid);
        let families: Vec<(Family, &str)> = t
            .devices
            .keys()
            .map(|k| (k.family, k.address.as_str()))
            .collect();
        assert_eq!(
            families,
            [
                (Family::Cgminer, "10.0.0.7:4028"),
                (Family::Iotawatt, "http://10.0.0.5/"),
                (Family::Roomalert, "http://ra/getData.json"),
                (Family::Pdu, "http://pdu/api"),
                (Family::Grid, "http://grid/price"),
            ]
        );
        let iotawatt = t
            .devices
            .values()
            .find_map(|t| match t {
                Target::Iotawatt { channels, .. } => Some(channels),
                _ => None,
            })
            .expect("one IotaWatt");
        let read: Vec<(&str, &str)> = iotawatt
            .iter()
            .map(|c| (c.machine.as_str(), c.channel.as_str()))
            .collect();
        assert_eq!(read, [("main", "Main"), ("m1", "Input_1")]);
        assert_eq!(t.skipped.len(), 1, "{:?}", t.skipped);
        assert!(t.skipped[0].contains("machine s1/m3"), "{:?}", t.skipped);
        let roomalert_label = t.devices.values().find_map(|t| match t {
            Target::Roomalert { sensors, .. } => Some(sensors[0].label.clone()),
            _ => None,
        });
        assert_eq!(roomalert_label.as_deref(), Some("t1"));
    }

    #[test]
    fn miners_give_status_and_firmware_power() {
        let report = MinerReport {
            hashrate_hs: 13.5e12,
            temp_c: Some(74.75),
            fan_rpm: Some(6000.0),
            power_w: Some(1350.0),
            state: MinerState::Mining,
        };
        let polled = miner_events("s1", "m1", &report, at());
        match polled.events.as_slice() {
            [AnyEvent::Miner(status), AnyEvent::Energy(energy)] => {
                assert_eq!(status.hashrate_hs, 13.5e12);
                assert_eq!(status.state, MinerState::Mining);
                assert_eq!(status.ts, at());
                assert_eq!(energy.source, EnergySource::Firmware);
                assert_eq!(energy.power_w, 1350.0);
                assert_eq!(
                    (energy.site.as_str(), energy.machine.as_str()),
                    ("s1", "m1")
                );
            }
            other => panic!("expected status and energy, got {other:?}"),
        }
        let quiet = MinerReport {
            power_w: None,
            ..report
        };
        assert_eq!(miner_events("s1", "m1", &quiet, at()).events.len(), 1);
        let offline = offline_status("s1", "m1", at());
        assert_eq!(
            (offline.state, offline.hashrate_hs),
            (MinerState::Offline, 0.0)
        );
    }

    #[test]
    fn meter_channels_map_to_machines_and_report_what_is_missing() {
        let channel = |machine: &str, meter: &str, channel: &str| MeterChannel {
            site: "s1".into(),
            machine: machine.into(),
            meter: meter.into(),
            channel: channel.into(),
        };
        let channels = [
            channel("m1", "sub1", "Input_1"),
            channel("main", "main", "Main"),
            channel("m2", "sub2", "Input_9"),
        ];
        let values = [
            ("Input_1".to_string(), 1400.5),
            ("Main".to_string(), 5000.0),
        ];
        let polled = meter_events(&channels, &values, EnergySource::Meter, at());
        let got: Vec<(&str, f64, EnergySource)> = polled
            .events
            .iter()
            .map(|e| match e {
                AnyEvent::Energy(r) => (r.machine.as_str(), r.power_w, r.source),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("m1", 1400.5, EnergySource::Meter),
                ("main", 5000.0, EnergySource::Meter)
            ]
        );
        assert_eq!(polled.missing, ["meter s1/sub2 (channel \"Input_9\")"]);
    }

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
        let polled = roomalert_events(
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
    fn the_iotawatt_query_selects_every_column() {
        let base = Url::parse("http://10.0.0.5").expect("url");
        let cols = ["Input_1".to_string(), "Main".to_string()];
        let url = iotawatt_query_url(&base, &cols, 10 * S);
        assert_eq!(
            url.as_str(),
            "http://10.0.0.5/query?select=[time.iso,Input_1.watts,Main.watts]&begin=s-10s&end=s&group=all&format=json"
        );
        let given = Url::parse("http://iw.local/query/").expect("url");
        assert!(
            iotawatt_query_url(&given, &cols, Duration::from_millis(200))
                .as_str()
                .starts_with("http://iw.local/query?select=")
        );
    }

    #[test]
    fn garbage_is_dead_lettered_and_silence_is_not() {
        let cut = Failure::with_body(
            DeviceError::garbage("the reply ends early", b"{\"outlets\":["),
            b"{\"outlets\":[",
        );
        let (reason, payload) = dead_letter_parts(&cut).expect("dead-lettered");
        assert_eq!(reason, "the reply ends early");
        assert_eq!(&payload[..], b"{\"outlets\":[");
        let hot = Failure::bare(DeviceError::OutOfRange {
            field: "Probe.tc".into(),
            value: 400.0,
        });
        assert!(
            dead_letter_parts(&hot)
                .expect("dead-lettered")
                .0
                .contains("Probe.tc")
        );
        let silent = Failure::bare(DeviceError::Timeout {
            addr: "a".into(),
            after: S,
        });
        assert!(dead_letter_parts(&silent).is_none());
        assert_eq!(failure_outcome(&silent.error), "unreachable");

        let msg = dead_letter("pdu", "http://pdu/", "bad\nline", payload, at());
        assert_eq!(msg.subject, "dlq.adapters");
        // The reason travels as given; the line break is escaped as the message is built.
        assert!(
            msg.headers
                .contains(&(names::HEADER_DLQ_REASON, "bad\nline".into()))
        );
        assert!(msg.build_message().is_ok());
        assert_eq!(names::header_text("bad\nline"), "bad%0Aline");
        assert!(
            msg.headers
                .contains(&(HEADER_DLQ_DEVICE, "http://pdu/".into()))
        );
    }
}
