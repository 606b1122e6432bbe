//! What the device tests share (adapters, actuators, the simulated farm): reading a stream
//! back from its start, picking events and headers, and an egress policy that lets loopback
//! devices be reached.

use std::time::Duration;

use adit_schemas::{AnyEvent, EventKind, MinerStatus, ValidationPolicy};
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use chrono::Utc;
use futures::StreamExt;

/// How long any one expected message may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// Everything stored on one stream, from the start, as it arrives.
pub struct Tail {
    /// JetStream, to re-create the consumer.
    js: jetstream::Context,
    /// The stream.
    stream: String,
    /// An ephemeral consumer's messages, from the stream's first.
    messages: pull::Stream,
    /// What arrived so far, in stream order.
    pub seen: Vec<async_nats::Message>,
    /// The stream sequence after the last message seen.
    next_seq: u64,
    /// Transient read errors so far.
    errors: u32,
}

/// An ephemeral consumer of `stream` from sequence `from`.
async fn consume(js: &jetstream::Context, stream: &str, from: u64) -> pull::Stream {
    let deliver_policy = if from <= 1 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: from,
        }
    };
    js.get_stream(stream)
        .await
        .expect("stream")
        .create_consumer(pull::Config {
            deliver_policy,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer")
        .messages()
        .await
        .expect("messages")
}

impl Tail {
    /// Reads `stream` from its first message.
    pub async fn open(js: &jetstream::Context, stream: &str) -> Self {
        Self {
            js: js.clone(),
            stream: stream.to_string(),
            messages: consume(js, stream, 1).await,
            seen: Vec::new(),
            next_seq: 1,
            errors: 0,
        }
    }

    /// Reads until `done` holds for the events so far; fails naming `what` after [`WAIT`].
    pub async fn until(&mut self, what: &str, done: impl Fn(&[AnyEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.events()) {
            self.next(deadline, what).await;
        }
    }

    /// Reads until `done` holds for the raw messages so far.
    pub async fn until_raw(&mut self, what: &str, done: impl Fn(&[async_nats::Message]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.seen) {
            self.next(deadline, what).await;
        }
    }

    /// Waits (until `deadline`) for the next message, re-creating the consumer after a read
    /// error; `what` names the wait in a failure.
    pub async fn next(&mut self, deadline: tokio::time::Instant, what: &str) {
        // Waits in slices: a pull that went quiet (missed heartbeats on a busy machine) is
        // replaced by a new consumer after the last message seen.
        let slice = (tokio::time::Instant::now() + Duration::from_secs(5)).min(deadline);
        match tokio::time::timeout_at(slice, self.messages.next()).await {
            Ok(Some(Ok(m))) => self.keep(m),
            Ok(Some(Err(e))) => {
                self.errors += 1;
                assert!(self.errors < 50, "{what}: reading the stream: {e}");
                self.messages = consume(&self.js, &self.stream, self.next_seq).await;
            }
            Ok(None) => panic!("{what}: the stream ended"),
            Err(_) if slice < deadline => {
                self.messages = consume(&self.js, &self.stream, self.next_seq).await;
            }
            Err(_) => panic!(
                "{what}: not within {WAIT:?}; saw {} messages: {:#?}",
                self.seen.len(),
                self.seen.iter().map(|m| &m.subject).collect::<Vec<_>>()
            ),
        }
    }

    fn keep(&mut self, m: jetstream::Message) {
        if let Ok(info) = m.info() {
            self.next_seq = info.stream_sequence + 1;
        }
        self.seen.push(m.split().0);
    }

    /// Reads whatever arrives within `period`.
    pub async fn drain_for(&mut self, period: Duration) {
        let until = tokio::time::Instant::now() + period;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, self.messages.next()).await {
            self.keep(m);
        }
    }

    /// The messages so far as events (each decodes and validates).
    pub fn events(&self) -> Vec<AnyEvent> {
        self.seen
            .iter()
            .map(|m| {
                let kind = EventKind::from_subject(&m.subject).expect("an event subject");
                kind.decode(&m.payload, &ValidationPolicy::default(), Utc::now())
                    .unwrap_or_else(|e| panic!("{}: {e}", m.subject))
            })
            .collect()
    }
}

/// The miner statuses among `events` of `machine`.
pub fn statuses<'a>(events: &'a [AnyEvent], machine: &str) -> Vec<&'a MinerStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Miner(s) if s.machine == machine => Some(s),
            _ => None,
        })
        .collect()
}

/// The value of header `name` of `m`, if it has one.
pub fn header<'a>(m: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str())
}

/// Egress rules that let the tests' devices and feeds on loopback be reached.
pub fn loopback_egress() -> adit_egress::EgressConfig {
    adit_egress::EgressConfig {
        devices: vec!["private".into(), "loopback".into()],
        feeds: vec!["public".into(), "loopback".into()],
        notify: vec!["public".into()],
    }
}
