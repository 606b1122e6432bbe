//! The `notify` role: reads every alert transition from `results.alert.>` (durable consumer
//! `notify`), groups and times them ([`dispatch`]), leaves out what a silence mutes, sends
//! through each receiver's channel ([`channels`]) with retries (doubling waits), falls back
//! to the receiver's `fallback` for critical notifications when every attempt failed, and
//! records every attempt on `results.notification.<receiver>` (landed in `notifications`).
//! [`Notifier::send_test`] sends an operator's test message through one receiver. A receiver
//! may have several channels: a notification goes out on each.
//! Silences are in the `adit_channels` KV bucket (`silence.<id>`), and so are the receivers and
//! the route managed over the API ([`managed`]); both are re-read every `reload`.
//! An optional heartbeat says the system is alive, with a one-line summary.

pub mod channels;
pub mod config;
pub mod dispatch;
pub mod managed;
pub mod workers;

use std::time::Duration;

use adit_bus::Publisher;
use adit_schemas::alerts::{AlertEvent, NotificationAttempt};
use adit_schemas::{AnyEvent, EventKind, ValidationPolicy, names};
use async_nats::jetstream::{self, consumer::DeliverPolicy, kv};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use config::NotifyConfig;
pub use dispatch::{Dispatcher, Notification, Silence};
pub use managed::{Managed, ManagedStore};

use crate::error::{AlertsError, Result};
use channels::Outgoing;
use config::Receiver;

/// The durable consumer's name.
pub const DURABLE: &str = "notify";
/// The key prefix of silences in the channels bucket.
pub const SILENCE_PREFIX: &str = "silence.";

/// The silences in the channels bucket.
#[derive(Clone)]
pub struct Silences {
    kv: kv::Store,
}

/// The channels bucket, where silences and the receivers and route managed over the API are.
async fn channels_bucket(js: &jetstream::Context) -> Result<kv::Store> {
    js.get_key_value(names::KV_CHANNELS)
        .await
        .map_err(AlertsError::kv)
}

impl Silences {
    /// Opens the bucket.
    pub async fn open(js: &jetstream::Context) -> Result<Self> {
        Ok(Self {
            kv: channels_bucket(js).await?,
        })
    }

    /// Stores a silence.
    pub async fn put(&self, silence: &Silence) -> Result<()> {
        let bytes = serde_json::to_vec(silence).map_err(|e| AlertsError::Kv(e.to_string()))?;
        self.kv
            .put(format!("{SILENCE_PREFIX}{}", silence.id), bytes.into())
            .await
            .map_err(AlertsError::kv)?;
        Ok(())
    }

    /// Every silence not yet ended at `now`.
    pub async fn active(&self, now: DateTime<Utc>) -> Result<Vec<Silence>> {
        let mut keys = self.kv.keys().await.map_err(AlertsError::kv)?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(AlertsError::kv)?;
            if !key.starts_with(SILENCE_PREFIX) {
                continue;
            }
            if let Some(bytes) = self.kv.get(&key).await.map_err(AlertsError::kv)?
                && let Ok(s) = serde_json::from_slice::<Silence>(&bytes)
                && s.ends > now
            {
                out.push(s);
            }
        }
        Ok(out)
    }
}

/// The receivers and the HTTP client that reaches them (under the egress policy for
/// notifications): what sends notifications, and operators' test messages.
pub struct Notifier {
    /// `[notify]`, as the config file says.
    pub config: NotifyConfig,
    /// Outbound HTTP under `[egress] notify`.
    pub http: adit_egress::Outbound,
    /// The receivers and route managed over the API, when NATS is at hand.
    pub managed: Option<ManagedStore>,
}

impl Notifier {
    /// Checks `config` and builds the client.
    pub fn new(config: NotifyConfig, egress: &adit_egress::EgressConfig) -> Result<Self> {
        config.validate()?;
        let http = egress.outbound(adit_egress::Purpose::Notify, "notify", None)?;
        Ok(Self {
            config,
            http,
            managed: None,
        })
    }

    /// With the receivers and route managed over the API.
    pub fn with_managed(self, managed: ManagedStore) -> Self {
        Self {
            managed: Some(managed),
            ..self
        }
    }

    /// The config in force: the file's with what is managed over the API laid over it.
    pub async fn effective(&self) -> Result<NotifyConfig> {
        match &self.managed {
            Some(store) => Ok(self.config.with(&store.read().await?)),
            None => Ok(self.config.clone()),
        }
    }

    /// Sends a test message through each channel of receiver `name`, once (no retries, no
    /// fallback), and records each attempt (group `test`) as every attempt is; the attempts,
    /// or `None` when there is no such receiver.
    pub async fn send_test(
        &self,
        publisher: &Publisher,
        name: &str,
        by: &str,
    ) -> Result<Option<Vec<NotificationAttempt>>> {
        let config = self.effective().await?;
        let Some(receiver) = config.receiver(name) else {
            return Ok(None);
        };
        let now = Utc::now();
        let summary = format!("adit test message to {name}, sent by {by}");
        let message = Outgoing {
            summary: summary.clone(),
            text: format!(
                "{summary} at {}.\nIf you read this, alerts reach you here.",
                now.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            json: json!({ "test": true, "receiver": name, "summary": summary }),
        };
        let mut records = Vec::new();
        for (n, channel) in receiver.all_channels().enumerate() {
            let result = channels::send(channel, &message, &self.http, config.timeout).await;
            let record = NotificationAttempt {
                id: format!("{name}:{}:test:{n}", now.timestamp_micros()),
                receiver: name.to_string(),
                channel: channel.kind().into(),
                group: "test".into(),
                status: if result.is_ok() { "sent" } else { "failed" }.into(),
                attempt: 1,
                summary: summary.clone(),
                alerts: 0,
                error: result.err(),
                ts: now,
            };
            publisher
                .publish(&AnyEvent::Notification(record.clone()))
                .await?;
            records.push(record);
        }
        Ok(Some(records))
    }
}

/// Runs the role until `shutdown`.
pub async fn run(
    file: NotifyConfig,
    egress: adit_egress::EgressConfig,
    silences: Silences,
    managed: ManagedStore,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> Result<()> {
    let notifier = Notifier::new(file, &egress)?.with_managed(managed);
    // The file's config was checked by `Notifier::new`; what the API manages was checked when
    // it was stored, but a later change of the file may not stand with it.
    let mut config = notifier.effective().await?;
    if let Err(reason) = config.validate() {
        tracing::warn!(%reason, "notify: the managed receivers or route do not stand with the config file; using the file's alone");
        config = notifier.config.clone();
    }
    if config.receivers.is_empty() {
        return Err(adit_config::Invalid::new(
            "notify.receivers",
            "the notify role needs at least one receiver (in the config file or added over the API)",
        )
        .into());
    }
    let http = notifier.http.clone();
    let js = publisher.jetstream().clone();
    let consumer = adit_bus::reader::durable(
        &js,
        names::STREAM_RESULTS,
        adit_bus::reader::Durable {
            name: DURABLE.into(),
            filter: EventKind::Alert.filter(None),
            start: DeliverPolicy::New,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 0,
        },
    )
    .await
    .map_err(AlertsError::kv)?;
    let mut messages = consumer.messages().await.map_err(AlertsError::kv)?;
    let mut dispatcher = Dispatcher::default();
    let mut active: Vec<Silence> = Vec::new();
    let mut next_reload = Utc::now();
    let mut next_heartbeat = config
        .heartbeat
        .as_ref()
        .map(|h| Utc::now() + chrono::Duration::from_std(h.every).unwrap_or_default());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            next = messages.next() => match next {
                Some(Ok(m)) => {
                    match EventKind::Alert.decode(&m.payload, &ValidationPolicy::default(), Utc::now()) {
                        Ok(AnyEvent::Alert(e)) => dispatcher.observe(&config.route, e, Utc::now()),
                        Ok(_) => {}
                        Err(invalid) => tracing::warn!(reason = %invalid.reason, "notify: unreadable alert skipped"),
                    }
                    if let Err(e) = m.ack().await {
                        tracing::warn!(error = %e, "notify: ack failed");
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "notify: consumer error"),
                None => return Err(AlertsError::Kv("the alert consumer ended".into())),
            },
            _ = tick.tick() => {
                let now = Utc::now();
                if now >= next_reload {
                    match silences.active(now).await {
                        Ok(s) => active = s,
                        Err(e) => tracing::warn!(error = %e, "notify: silences unreadable; keeping the last"),
                    }
                    reload(&notifier, &mut config).await;
                    next_reload = now + chrono::Duration::from_std(config.reload).unwrap_or_default();
                }
                for n in dispatcher.due(&config.route, &active, now) {
                    deliver(&config, &http, &publisher, &n, now).await?;
                }
                if let (Some(h), Some(at)) = (&config.heartbeat, next_heartbeat)
                    && now >= at
                {
                    heartbeat(&config, &http, &publisher, &h.receiver, dispatcher.firing(), now).await?;
                    next_heartbeat = Some(now + chrono::Duration::from_std(h.every).unwrap_or_default());
                }
            }
        }
    }
}

/// Takes the receivers and route managed over the API into `config` when they changed and
/// the result validates; otherwise keeps what is in force, saying why.
async fn reload(notifier: &Notifier, config: &mut NotifyConfig) {
    match notifier.effective().await {
        Ok(new) if new == *config => {}
        Ok(new) => match new.validate() {
            Ok(()) => {
                tracing::info!(
                    receivers = new.receivers.len(),
                    route = %new.route.receiver,
                    "notify: the receivers or the route changed"
                );
                *config = new;
            }
            Err(reason) => {
                tracing::warn!(%reason, "notify: the managed receivers or route do not validate; keeping the last");
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "notify: managed receivers unreadable; keeping the last")
        }
    }
}

fn outgoing(n: &Notification) -> Outgoing {
    let line = |a: &AlertEvent| {
        let summary = serde_json::from_str::<serde_json::Value>(&a.annotations)
            .ok()
            .and_then(|v| v["summary"].as_str().map(str::to_string))
            .unwrap_or_default();
        format!(
            "{} {} {} {}{}",
            a.state.to_uppercase(),
            a.severity,
            a.rule,
            a.labels,
            if summary.is_empty() {
                String::new()
            } else {
                format!(" — {summary}")
            }
        )
    };
    let lines: Vec<String> = n.firing.iter().chain(&n.resolved).map(line).collect();
    Outgoing {
        summary: n.summary(),
        text: format!("{}\n{}", n.summary(), lines.join("\n")),
        json: json!({
            "receiver": n.receiver,
            "group": n.group,
            "status": if n.firing.is_empty() { "resolved" } else { "firing" },
            "summary": n.summary(),
            "alerts": n.firing.iter().chain(&n.resolved).collect::<Vec<_>>(),
        }),
    }
}

/// Sends `n` to its receiver (and, when critical and every attempt failed, to the fallback),
/// recording every attempt.
async fn deliver(
    config: &NotifyConfig,
    http: &adit_egress::Outbound,
    publisher: &Publisher,
    n: &Notification,
    now: DateTime<Utc>,
) -> Result<()> {
    let alerts = (n.firing.len() + n.resolved.len()) as i64;
    if n.silenced {
        let record = NotificationAttempt {
            id: format!("{}:{}:0", n.receiver, now.timestamp_micros()),
            receiver: n.receiver.clone(),
            channel: config
                .receiver(&n.receiver)
                .map_or_else(|| "none".into(), Receiver::kinds),
            group: n.group.clone(),
            status: "silenced".into(),
            attempt: 0,
            summary: "silenced".into(),
            alerts,
            error: None,
            ts: now,
        };
        publisher.publish(&AnyEvent::Notification(record)).await?;
        return Ok(());
    }
    let message = outgoing(n);
    let mut receiver = n.receiver.clone();
    let mut tried = Vec::new();
    loop {
        tried.push(receiver.clone());
        if attempt_all(
            config, http, publisher, &receiver, &n.group, &message, alerts, now,
        )
        .await?
        {
            return Ok(());
        }
        let fallback = config.receiver(&receiver).and_then(|r| r.fallback.clone());
        match fallback {
            Some(f) if n.critical() && !tried.contains(&f) => {
                tracing::warn!(from = %receiver, to = %f, "notify: falling back");
                receiver = f;
            }
            _ => return Ok(()),
        }
    }
}

/// Every attempt at each channel of one receiver; whether one channel took it.
#[allow(clippy::too_many_arguments)]
async fn attempt_all(
    config: &NotifyConfig,
    http: &adit_egress::Outbound,
    publisher: &Publisher,
    receiver: &str,
    group: &str,
    message: &Outgoing,
    alerts: i64,
    now: DateTime<Utc>,
) -> Result<bool> {
    let Some(r) = config.receiver(receiver) else {
        tracing::warn!(%receiver, "notify: no such receiver");
        return Ok(false);
    };
    let mut taken = false;
    for (n, channel) in r.all_channels().enumerate() {
        let sent = attempt_channel(
            config,
            http,
            publisher,
            receiver,
            (n, channel),
            group,
            message,
            alerts,
            now,
        )
        .await?;
        taken |= sent;
    }
    Ok(taken)
}

/// Every attempt at one channel (the `n`th of `receiver`); whether one succeeded.
#[allow(clippy::too_many_arguments)]
async fn attempt_channel(
    config: &NotifyConfig,
    http: &adit_egress::Outbound,
    publisher: &Publisher,
    receiver: &str,
    (n, channel): (usize, &config::Channel),
    group: &str,
    message: &Outgoing,
    alerts: i64,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut wait = config.retry_after;
    for attempt in 1..=config.attempts {
        let result = channels::send(channel, message, http, config.timeout).await;
        let ok = result.is_ok();
        metrics::counter!("adit_notifications_total", "receiver" => receiver.to_string(), "status" => if ok { "sent" } else { "failed" }).increment(1);
        let record = NotificationAttempt {
            id: format!("{receiver}:{}:{n}:{attempt}", now.timestamp_micros()),
            receiver: receiver.to_string(),
            channel: channel.kind().into(),
            group: group.to_string(),
            status: if ok { "sent" } else { "failed" }.into(),
            attempt: i64::from(attempt),
            summary: message.summary.clone(),
            alerts,
            error: result.err(),
            ts: Utc::now(),
        };
        publisher.publish(&AnyEvent::Notification(record)).await?;
        if ok {
            return Ok(true);
        }
        if attempt < config.attempts {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Ok(false)
}

async fn heartbeat(
    config: &NotifyConfig,
    http: &adit_egress::Outbound,
    publisher: &Publisher,
    receiver: &str,
    (firing, critical): (usize, usize),
    now: DateTime<Utc>,
) -> Result<()> {
    let summary = format!(
        "adit alive at {}: {firing} alert(s) firing, {critical} critical",
        now.format("%Y-%m-%d %H:%M UTC")
    );
    let message = Outgoing {
        summary: summary.clone(),
        text: summary.clone(),
        json: json!({ "heartbeat": true, "summary": summary, "firing": firing, "critical": critical }),
    };
    attempt_all(
        config,
        http,
        publisher,
        receiver,
        "heartbeat",
        &message,
        0,
        now,
    )
    .await?;
    Ok(())
}
