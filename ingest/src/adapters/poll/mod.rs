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
//! (no good reading for `stale_after`). Each device family is one file in `family/`,
//! implementing `device.rs`'s two traits: `Family` (which registry records make its devices,
//! and the fake the simulator serves for them) and `Device` (how one is read, and what it is
//! reported as when it turns stale). The loop in [`run`] only moves devices' results to
//! JetStream.
//!
//! Faults: a device that does not answer backs off (interval·2ⁿ up to `max_backoff`) and is
//! logged once when it starts failing, once when it turns stale and once when it recovers; a
//! miner that turns stale gets one [`MinerStatus`] with state `offline`. A device that answers
//! garbage (not JSON, cut off, a value out of range) is dead-lettered to `dlq.adapters` with
//! the reason ([`adit_schemas::names::HEADER_DLQ_REASON`]), the device ([`HEADER_DLQ_DEVICE`],
//! [`HEADER_DLQ_ADAPTER`]) and the start of its reply as the payload, counts as a failure, and
//! is polled again after its backoff. Metrics: `adit_adapter_polls_total{kind,outcome}`,
//! `adit_adapter_stale_devices{kind}`, `adit_adapter_mqtt_messages_total{outcome}`.

pub(crate) mod config;
mod device;
mod family;
pub mod probe;
mod schedule;

pub use config::{AdaptersConfig, GridFeed, GridFeedKind, MqttConfig};
use device::{Ctx, Device, DeviceKey, Failure, Family, Targets, targets};
pub(crate) use family::fakes;
pub use family::{INITIAL_EVENT_ID, INITIAL_PRICE_ID, INITIAL_PRICE_PER_MWH};
use schedule::{Change, Scheduler, Timing};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adit_schemas::registry::RegistryView;
use adit_schemas::{AnyEvent, SensorReading};
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use adit_bus::publish::{Outgoing, Publisher};
use adit_bus::registry::{Registry, RegistryError};
use adit_devices::DeviceError;
use adit_devices::mqtt::{self, MappedError, MqttError};

/// The stream name the adapters' dead letters are filed under: `dlq.adapters`.
pub const DLQ_SOURCE: &str = "adapters";
/// Header of a dead letter naming the device's address (`host:port`, URL or MQTT topic).
pub const HEADER_DLQ_DEVICE: &str = "Adit-Dlq-Device";
/// Header of a dead letter naming the adapter kind (`cgminer`, `iotawatt`, …, `mqtt`).
pub const HEADER_DLQ_ADAPTER: &str = "Adit-Dlq-Adapter";

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
    /// The config cannot work (it names the key). Permanent.
    #[error(transparent)]
    Config(#[from] adit_config::Invalid),
    /// A subscription to the bus was refused.
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The HTTP client could not be built. Permanent.
    #[error("building the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// A purpose's client could not be made (its rules, or the client). Permanent.
    #[error(transparent)]
    Client(#[from] adit_egress::ClientError),
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
// Outcomes: pure.
// ---------------------------------------------------------------------------------------------

/// The dead letter for a device's unusable reply.
fn dead_letter(
    family: &str,
    address: &str,
    reason: &str,
    payload: Bytes,
    at: DateTime<Utc>,
) -> Outgoing {
    let key = format!(
        "{family}:{address}:{}",
        at.timestamp_nanos_opt().unwrap_or(i64::MAX)
    );
    Outgoing::dead_letter(
        DLQ_SOURCE,
        &key,
        reason,
        vec![
            (HEADER_DLQ_DEVICE, address.to_string()),
            (HEADER_DLQ_ADAPTER, family.to_string()),
        ],
        payload,
    )
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
// Polling.
// ---------------------------------------------------------------------------------------------

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
    device: Arc<dyn Device>,
) -> Result<Option<Report>, AdaptersError> {
    // The semaphore is never closed; a closed one would mean the role is stopping.
    let Ok(_permit) = ctx.permits.acquire().await else {
        return Ok(None);
    };
    let at = poll_time();
    let polled = device.poll(&ctx, &key, at).await;
    let family = key.family;
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

/// Publishes what a device that turned stale is reported as (a miner's `offline` status).
async fn stale_task(ctx: Arc<Ctx>, event: AnyEvent) -> Result<Option<Report>, AdaptersError> {
    ctx.publisher.publish(&event).await?;
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
    config.validate()?;
    let outbound = |purpose| egress.outbound(purpose, "adapters", Some(config.timeout));
    let devices = outbound(adit_egress::Purpose::Devices)?;
    let feeds = outbound(adit_egress::Purpose::Feeds)?;
    let mqtt = config.mqtt.clone();
    let vens = config.openadr.clone();
    let vens3 = config.openadr3.clone();
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
    });
    let polls = poll_loop(ctx, registry, shutdown.clone());
    let pushes = async {
        match &mqtt {
            Some(mqtt) => run_mqtt(mqtt, &publisher, shutdown.clone()).await,
            None => Ok(()),
        }
    };
    let utilities = crate::adapters::openadr::run(&vens, &egress, shared.clone(), shutdown.clone());
    let utilities3 = crate::adapters::openadr3::run(&vens3, &egress, shared, shutdown.clone());
    tokio::try_join!(polls, pushes, utilities, utilities3).map(|_| ())
}

/// The poll loop's state.
struct Poller {
    /// Shared with the poll tasks.
    ctx: Arc<Ctx>,
    /// When each device is due, and its health.
    scheduler: Scheduler,
    /// The device families, made once (a family may remember what its devices said).
    families: Vec<Box<dyn Family>>,
    /// Every device to poll, with what it is read for.
    targets: BTreeMap<DeviceKey, Arc<dyn Device>>,
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
        families: family::all(),
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
        let Targets { devices, skipped } = targets(&self.families, view, &self.ctx.config);
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
            if let Some(device) = self.targets.get(&key) {
                self.tasks
                    .spawn(poll_task(Arc::clone(&self.ctx), key, Arc::clone(device)));
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
            let event = self
                .targets
                .get(&key)
                .and_then(|d| d.when_stale(poll_time()));
            if let Some(event) = event {
                self.tasks.spawn(stale_task(Arc::clone(&self.ctx), event));
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
        for family in &self.families {
            metrics::gauge!("adit_adapter_stale_devices", "kind" => family.name())
                .set(self.scheduler.stale(family.name()) as f64);
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
    use adit_schemas::names;
    use chrono::TimeZone;

    const S: Duration = Duration::from_secs(1);

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0)
            .single()
            .expect("valid time")
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
