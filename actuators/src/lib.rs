//! The `actuators` role: carries out the controller's commands (`control.<site>.<target>`) on
//! the devices the registry names, and reports every attempt (`control.outcome.<site>`).
//!
//! One durable consumer (`actuators`) reads the CONTROL stream. Commands go to `concurrency`
//! workers by their (site, target), so the commands of one device are carried out in the
//! order they were decided, and different devices at once. Each command gets up to
//! `attempts` tries, `retry_after` doubling between them, each under `timeout`; every try
//! is published as a [`CommandOutcome`] (acked or failed, with the device's reply) before
//! the command is acknowledged, so a crash repeats a command rather than losing it (sleep and
//! wake are idempotent; an outlet cycle ends on, however often it is repeated). A command
//! older than `expire_after` is refused, not obeyed late.
//! A message that is not a valid command goes to `dlq.control` with its reason; operators'
//! notes and outcomes, which share the stream, are passed over.

pub mod config;
pub mod drivers;

use adit_retry::Backoff;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use adit_schemas::control::{Command, CommandOutcome, OutcomeStatus};
use adit_schemas::registry::RegistryView;
use adit_schemas::{AnyEvent, Event, EventKind, ValidationPolicy, names};
use async_nats::jetstream::{self, AckKind, consumer::DeliverPolicy};
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{RwLock, mpsc};
use tokio_util::sync::CancellationToken;

pub use config::ActuatorsConfig;
pub use drivers::Driver;

use adit_bus::publish::{Outgoing, Publisher};
use adit_bus::reader;
use adit_bus::registry::Registry;

/// The durable consumer's name.
pub const DURABLE: &str = "actuators";
/// How often the registry is read again.
const REGISTRY_REFRESH: Duration = Duration::from_secs(5);

/// Why the role stopped.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorsError {
    /// A config value cannot work.
    #[error("invalid config: {0}")]
    Config(#[from] adit_config::Invalid),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(#[from] adit_egress::ClientError),
    /// The CONTROL stream or its consumer could not be used.
    #[error("CONTROL stream: {0}")]
    Stream(String),
    /// A worker or the registry refresher stopped while the role ran.
    #[error("an actuators task stopped unexpectedly")]
    TaskStopped,
}

/// What the workers share.
struct Ctx {
    config: ActuatorsConfig,
    http: adit_egress::Outbound,
    publisher: Publisher,
    view: RwLock<RegistryView>,
    registry: Registry,
}

/// Runs the role until `shutdown`.
pub async fn run(
    config: ActuatorsConfig,
    egress: adit_egress::EgressConfig,
    registry: Registry,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> Result<(), ActuatorsError> {
    config.validate()?;
    let http = egress.outbound(adit_egress::Purpose::Devices, "actuators", None)?;
    let js = publisher.jetstream().clone();
    let view = registry.view().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "registry unreadable at start; retrying");
        RegistryView::default()
    });
    let ctx = Arc::new(Ctx {
        http,
        publisher,
        view: RwLock::new(view),
        registry,
        config,
    });
    let mut refresher = tokio::spawn(refresh_registry(Arc::clone(&ctx), shutdown.clone()));
    let mut senders = Vec::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.config.concurrency {
        let (tx, rx) = mpsc::channel::<jetstream::Message>(16);
        senders.push(tx);
        workers.spawn(worker(Arc::clone(&ctx), rx));
    }
    // A worker or the refresher that dies ends the role (never a role half alive, its commands
    // unread or read with a stale view); a panic is raised again once the rest stopped, so
    // the role's supervisor restarts it.
    let mut panicked = None;
    let result = tokio::select! {
        r = dispatch(&js, &ctx, &senders, &shutdown) => r,
        Some(joined) = workers.join_next() => stopped(joined, &mut panicked, &shutdown),
        joined = &mut refresher => stopped(joined, &mut panicked, &shutdown),
    };
    drop(senders);
    while let Some(joined) = workers.join_next().await {
        keep_panic(joined, &mut panicked);
    }
    refresher.abort();
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
    result
}

/// What a task of the role that stopped means: its panic is kept in `panicked`; stopping
/// before shutdown is an error.
fn stopped(
    joined: Result<(), tokio::task::JoinError>,
    panicked: &mut Option<Box<dyn std::any::Any + Send>>,
    shutdown: &CancellationToken,
) -> Result<(), ActuatorsError> {
    if keep_panic(joined, panicked) || !shutdown.is_cancelled() {
        return Err(ActuatorsError::TaskStopped);
    }
    Ok(())
}

/// Keeps the first panic of a joined task in `panicked`; whether this one panicked.
fn keep_panic(
    joined: Result<(), tokio::task::JoinError>,
    panicked: &mut Option<Box<dyn std::any::Any + Send>>,
) -> bool {
    match joined {
        Err(e) if e.is_panic() => {
            panicked.get_or_insert(e.into_panic());
            true
        }
        _ => false,
    }
}

/// Reads commands and hands each to the worker of its device, until `shutdown`.
async fn dispatch(
    js: &jetstream::Context,
    ctx: &Ctx,
    senders: &[mpsc::Sender<jetstream::Message>],
    shutdown: &CancellationToken,
) -> Result<(), ActuatorsError> {
    let stream_err = |e: &dyn std::fmt::Display| ActuatorsError::Stream(e.to_string());
    let mut delays = Backoff::new(Duration::from_millis(200), Duration::from_secs(10)).waits();
    loop {
        let consumer = reader::durable(
            js,
            names::STREAM_CONTROL,
            reader::Durable {
                name: DURABLE.into(),
                filter: "control.>".into(),
                start: DeliverPolicy::All,
                ack_wait: ack_wait(&ctx.config),
                max_ack_pending: (senders.len() * 16) as i64,
            },
        )
        .await
        .map_err(|e| stream_err(&e))?;
        let mut messages = consumer.messages().await.map_err(|e| stream_err(&e))?;
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let i = shard(message.subject.as_str(), senders.len());
                    if senders[i].send(message).await.is_err() {
                        return Ok(()); // the workers are gone: shutting down
                    }
                    delays.reset();
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "actuators: consumer error; re-reading");
                    break;
                }
                None => break,
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(delays.next_wait()) => {}
        }
    }
}

/// Long enough for every attempt of a command, with its waits (an outlet cycle's off time
/// included).
fn ack_wait(config: &ActuatorsConfig) -> Duration {
    let waits: Duration = (0..config.attempts)
        .map(|i| config.retry_after * 2u32.saturating_pow(i))
        .sum();
    let cycles = if config.pdus.is_empty() {
        Duration::ZERO
    } else {
        adit_devices::pdu_snmp::MAX_CYCLE_OFF * config.attempts
    };
    (config.timeout * 2 * config.attempts + cycles + waits + Duration::from_secs(30))
        .max(Duration::from_secs(60))
}

/// The worker of a subject: one per device, the same every time.
fn shard(subject: &str, n: usize) -> usize {
    let mut h = DefaultHasher::new();
    subject.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

async fn refresh_registry(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REGISTRY_REFRESH) => {}
        }
        match ctx.registry.view().await {
            Ok(view) => *ctx.view.write().await = view,
            Err(e) => {
                tracing::warn!(error = %e, "actuators: registry unreadable; keeping the last view")
            }
        }
    }
}

/// Carries out the commands of its devices one after another.
async fn worker(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<jetstream::Message>) {
    while let Some(message) = rx.recv().await {
        let handled = handle(&ctx, &message).await;
        let ack = match handled {
            Ok(()) => message.ack().await,
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "actuators: outcome not stored; the command will be redelivered");
                message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await
            }
        };
        if let Err(e) = ack {
            tracing::warn!(subject = %message.subject, error = %e, "actuators: ack failed; the command will be redelivered");
        }
    }
}

/// One message: a command carried out, or a dead letter, or (another kind) nothing.
async fn handle(ctx: &Ctx, message: &jetstream::Message) -> adit_bus::Result<()> {
    if EventKind::from_subject(message.subject.as_str()) != Some(EventKind::Command) {
        return Ok(());
    }
    let policy = ValidationPolicy::default();
    let command = match EventKind::Command.decode(&message.payload, &policy, Utc::now()) {
        Ok(AnyEvent::Command(c)) => c,
        Ok(_) => return Ok(()),
        Err(invalid) => {
            return dead_letter(ctx, message, &invalid.reason).await;
        }
    };
    if !command.is_on(message.subject.as_str()) {
        let reason = format!(
            "command for {}.{} on subject {}",
            command.site, command.target, message.subject
        );
        return dead_letter(ctx, message, &reason).await;
    }
    for outcome in carry_out(ctx, &command).await {
        ctx.publisher
            .publish(&AnyEvent::CommandOutcome(outcome))
            .await?;
    }
    Ok(())
}

async fn dead_letter(
    ctx: &Ctx,
    message: &jetstream::Message,
    reason: &str,
) -> adit_bus::Result<()> {
    tracing::warn!(subject = %message.subject, %reason, "actuators: refused a command");
    let key = message
        .info()
        .map(|i| i.stream_sequence.to_string())
        .unwrap_or_else(|_| message.subject.to_string());
    ctx.publisher
        .publish_one(&Outgoing::dead_letter(
            names::STREAM_CONTROL,
            &key,
            reason,
            vec![(names::HEADER_DLQ_SUBJECT, message.subject.to_string())],
            message.payload.clone(),
        ))
        .await
        .map(|_| ())
}

/// Tries `command` until it is acked or out of attempts; the outcome of every try.
async fn carry_out(ctx: &Ctx, command: &Command) -> Vec<CommandOutcome> {
    let outcome = |status, attempt: u32, reply: String, actuator: &str| CommandOutcome {
        id: command.id.clone(),
        site: command.site.clone(),
        target: command.target.clone(),
        action: command.action,
        status,
        attempt: i64::from(attempt),
        reply,
        actuator: actuator.to_string(),
        ts: Utc::now(),
    };
    let age = Utc::now() - command.ts;
    if age.to_std().is_ok_and(|age| age > ctx.config.expire_after) {
        let reply = format!(
            "expired: decided {}s ago, more than actuators.expire_after",
            age.num_seconds()
        );
        metrics::counter!("adit_actuator_commands_total", "actuator" => "none", "status" => "expired").increment(1);
        return vec![outcome(OutcomeStatus::Failed, 1, reply, "none")];
    }
    let driver = {
        let view = ctx.view.read().await;
        drivers::route(&view, command, &ctx.config)
    };
    let driver = match driver {
        Ok(d) => d,
        Err(why) => {
            metrics::counter!("adit_actuator_commands_total", "actuator" => "none", "status" => "failed").increment(1);
            return vec![outcome(OutcomeStatus::Failed, 1, why, "none")];
        }
    };
    let mut out = Vec::new();
    let mut wait = ctx.config.retry_after;
    for attempt in 1..=ctx.config.attempts {
        let result = drivers::attempt(&driver, command, &ctx.http, ctx.config.timeout).await;
        let (status, reply, label) = match result {
            Ok(reply) => (OutcomeStatus::Acked, reply, "acked"),
            Err(why) => (OutcomeStatus::Failed, why, "failed"),
        };
        metrics::counter!("adit_actuator_commands_total", "actuator" => driver.name(), "status" => label).increment(1);
        out.push(outcome(status, attempt, reply, driver.name()));
        if status == OutcomeStatus::Acked {
            break;
        }
        if attempt < ctx.config.attempts {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    if out
        .last()
        .is_some_and(|o| o.status == OutcomeStatus::Failed)
    {
        tracing::warn!(site = %command.site, target = %command.target, action = command.action.as_str(), reply = %out.last().map(|o| o.reply.as_str()).unwrap_or_default(), "actuators: command failed after every attempt");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_always_goes_to_the_same_worker() {
        let a = shard("control.s1.m-1", 32);
        assert_eq!(a, shard("control.s1.m-1", 32));
        assert!(a < 32);
        assert_eq!(shard("control.s1.m-1", 1), 0);
    }

    #[test]
    fn the_ack_wait_covers_every_attempt() {
        let config = ActuatorsConfig {
            timeout: Duration::from_secs(30),
            attempts: 5,
            retry_after: Duration::from_secs(10),
            ..Default::default()
        };
        // 5 × 30 s + (10+20+40+80+160) s of waits, and a margin.
        assert!(ack_wait(&config) >= Duration::from_secs(150 + 310));
    }
}
