//! Durable pull consumers that hand out micro-batches with their stream-sequence range.
//!
//! The position is owned by whoever commits the batch (the pipeline's Delta commit), not by
//! the consumer: [`BatchConsumer::start`] takes the last committed sequence and re-creates the
//! durable consumer just after it, and a message at or below a sequence already handed out is
//! skipped. After any error the consumer is re-created from the last sequence it handed out,
//! so a NATS restart or a deleted consumer costs a pause, never a message.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use bytes::Bytes;
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::pull::{Delivered, Pull};

/// Which stream to read and how to batch it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConsumerConfig {
    /// Stream to read.
    pub stream: String,
    /// Durable consumer name (one per pipeline and stream).
    pub durable: String,
    /// Subject filter (wildcards allowed); empty reads the whole stream. One filter, not a
    /// list: nats-server 2.9 (Debian's) knows only the single-filter form.
    pub filter_subject: String,
    /// A batch closes at this many messages...
    pub max_rows: usize,
    /// ...or this long after its first message, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// A consumer that hands out nothing new for this long while the server says messages
    /// wait for it is stuck (acks lost to a leader change leave it at its ack-pending limit,
    /// redelivering what it already gave): it is re-created after the last message handed out.
    #[serde(with = "humantime_serde", default = "default_stall_after")]
    pub stall_after: Duration,
}

/// [`ConsumerConfig::stall_after`] unless set: half the ack wait, so a stuck consumer is
/// re-created before its first redelivery.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// A gap longer than this is read again by a new consumer rather than message by message.
const MAX_DIRECT_READS: u64 = 10_000;

/// A batch drawn from a backlog closes early (see [`closes_early`]) only once it holds this
/// fraction of [`ConsumerConfig::max_rows`] (never when `max_rows` is smaller): a trickle's
/// small bursts still wait for `max_wait`, so a steady stream does not turn into one commit
/// per burst.
const EARLY_CLOSE_FRACTION: usize = 16;

fn default_stall_after() -> Duration {
    STALL_AFTER
}

/// One message as taken from the stream.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Its stream sequence.
    pub seq: u64,
    /// The subject it was published on (shared with the message it came in, not copied).
    pub subject: async_nats::Subject,
    /// The `Adit-Schema-Version` header, if any, read where the message came in (a string
    /// per message was an allocation on the landing's hottest path).
    pub schema_version: Option<SchemaVersion>,
    /// Its body.
    pub payload: Bytes,
}

/// The `Adit-Schema-Version` header of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaVersion {
    /// A version number.
    Number(u32),
    /// A value that is no version number, kept as it was for the dead letter's reason.
    Unreadable(Box<str>),
}

impl SchemaVersion {
    /// The header value `value`, read.
    pub fn read(value: &str) -> Self {
        value
            .parse()
            .map_or_else(|_| Self::Unreadable(value.into()), Self::Number)
    }

    /// Whether a reader that knows versions up to `newest` can read it.
    pub fn readable_up_to(&self, newest: u32) -> bool {
        matches!(self, Self::Number(v) if *v <= newest)
    }
}

impl std::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(v) => write!(f, "\"{v}\""),
            Self::Unreadable(raw) => write!(f, "{raw:?}"),
        }
    }
}

impl RawMessage {
    /// Message `message`, stored at stream sequence `seq`.
    pub fn new(seq: u64, message: &async_nats::Message) -> Self {
        Self {
            seq,
            subject: message.subject.clone(),
            schema_version: schema_version(message.headers.as_ref()),
            payload: message.payload.clone(),
        }
    }
}

/// A micro-batch: messages with stream sequences in `lo..=hi`.
pub struct RawBatch {
    /// Lowest sequence in the batch.
    pub lo: u64,
    /// Highest sequence in the batch.
    pub hi: u64,
    /// The messages, in stream order.
    pub messages: Vec<RawMessage>,
    /// The last message's reply subject, acked (ack-all) once the batch is committed.
    last: Option<async_nats::Subject>,
    /// The client that acks it, given once the batch is complete (a client clone per message
    /// is what [`crate::pull`] exists to avoid).
    client: Option<async_nats::Client>,
}

impl RawBatch {
    /// A batch of `messages` not tied to a consumer (for replay and tests); acking it is a no-op.
    pub fn from_messages(messages: Vec<RawMessage>) -> Self {
        Self {
            lo: messages.first().map_or(0, |m| m.seq),
            hi: messages.last().map_or(0, |m| m.seq),
            messages,
            last: None,
            client: None,
        }
    }

    /// Whether the batch holds no messages.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Acknowledges every message up to `hi`. Call only after the batch is committed; an ack
    /// that fails is harmless (the commit owns the position), so it is only logged.
    pub async fn ack(self) {
        self.into_parts().1.ack().await;
    }

    /// The messages, and what acknowledges them all once they are committed.
    pub fn into_parts(self) -> (Vec<RawMessage>, Acker) {
        let last = self.last.zip(self.client);
        (self.messages, Acker { last })
    }
}

/// Acknowledges a batch (ack-all up to its last message) after its commit.
pub struct Acker {
    /// The batch's last message's reply subject and the client to ack it on, if it came
    /// from a consumer.
    last: Option<(async_nats::Subject, async_nats::Client)>,
}

impl Acker {
    /// Acknowledges. A failed ack is harmless (the commit owns the position): only logged.
    pub async fn ack(self) {
        if let Some((reply, client)) = self.last
            && let Err(e) = crate::pull::ack(&client, reply).await
        {
            tracing::debug!(error = %e, "ack failed; the commit already holds the position");
        }
    }
}

/// A durable pull consumer yielding [`RawBatch`]es.
pub struct BatchConsumer {
    /// JetStream context the consumer lives in.
    js: jetstream::Context,
    /// What to read and how to batch.
    config: ConsumerConfig,
    /// Highest sequence handed out so far (or committed, at start).
    last_seq: u64,
    /// The live message flow; `None` after an error until re-created.
    messages: Option<Pull>,
    /// Whether the next message is the first since the consumer was (re-)created, and so may
    /// legitimately skip sequences that no longer exist.
    fresh: bool,
    /// When a new message was last handed out (or the consumer last checked or re-created).
    progressed: Instant,
    /// Why the consumer was found stuck, until it next hands out a message.
    stuck: Option<String>,
    /// Whether the last batch was cut from a backlog's tail with more of it left (see
    /// [`closes_early`]): the next one, the rest of that backlog, closes at its end whatever
    /// its size.
    in_tail: bool,
}

impl BatchConsumer {
    /// Starts reading `config.stream` just after sequence `after` (0 = from the beginning).
    pub async fn start(js: jetstream::Context, config: ConsumerConfig, after: u64) -> Result<Self> {
        let mut this = Self {
            js,
            config,
            last_seq: after,
            messages: None,
            fresh: true,
            progressed: Instant::now(),
            stuck: None,
            in_tail: false,
        };
        this.reopen().await?;
        Ok(this)
    }

    /// Whether `seq` jumps over sequences the consumer has not seen. Only a whole-stream
    /// consumer can tell (a filtered one skips other subjects), and only after its first
    /// message (the stream may have dropped old messages before it).
    fn skips(&self, seq: u64) -> bool {
        is_gap(
            !self.config.filter_subject.is_empty(),
            self.fresh,
            self.last_seq,
            seq,
        )
    }

    /// Highest stream sequence handed out.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Why the consumer is stuck (messages wait on the server and none came for
    /// [`ConsumerConfig::stall_after`]), from that check until it hands out a message again;
    /// `None` while it moves or has nothing to read.
    pub fn stuck(&self) -> Option<&str> {
        self.stuck.as_deref()
    }

    fn error(&self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Consumer {
            stream: self.config.stream.clone(),
            consumer: self.config.durable.clone(),
            source: Box::new(source),
        }
    }

    /// (Re-)creates the durable consumer at `last_seq + 1` and opens its message stream.
    async fn reopen(&mut self) -> Result<()> {
        let stream = self.js.get_stream(&self.config.stream).await.map_err(|e| {
            use async_nats::jetstream::context::GetStreamErrorKind;
            match e.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Error::MissingStream {
                        stream: self.config.stream.clone(),
                    }
                }
                _ => self.error(e),
            }
        })?;
        // The durable's start position cannot be changed in place: delete, then create. A
        // consumer that is not there yet is the normal case, so the outcome is only logged.
        if let Err(e) = stream.delete_consumer(&self.config.durable).await {
            tracing::trace!(consumer = %self.config.durable, error = %e, "no consumer to delete");
        }
        let deliver_policy = if self.last_seq == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: self.last_seq + 1,
            }
        };
        stream
            .create_consumer(pull::Config {
                durable_name: Some(self.config.durable.clone()),
                deliver_policy,
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: (self.config.max_rows * 4).max(1024) as i64,
                filter_subject: self.config.filter_subject.clone(),
                // As many replicas as its stream (the default): a consumer on one node would
                // die with it, and be noticed only by missed heartbeats (measured on a
                // three-node cluster: 28 s of stall per node kill, against 3–7 s).
                ..Default::default()
            })
            .await
            .map_err(|e| self.error(e))?;
        let messages = Pull::start(
            self.js.client(),
            &self.config.stream,
            &self.config.durable,
            self.config.max_rows.clamp(1, 10_000),
        )
        .await
        .map_err(|e| self.error(e))?;
        self.messages = Some(messages);
        self.fresh = true;
        self.progressed = Instant::now();
        Ok(())
    }

    /// Drops the live consumer (it is re-created at `last_seq + 1` on the next read), counted
    /// by `reason`.
    fn recreate(&mut self, reason: &'static str) {
        self.messages = None;
        metrics::counter!("adit_consumer_recreated_total", "stream" => self.config.stream.clone(), "reason" => reason)
            .increment(1);
    }

    /// After [`ConsumerConfig::stall_after`] without a new message, asks the server whether
    /// messages wait for this consumer; if so it is stuck, and is re-created.
    async fn check_stalled(&mut self) {
        if self.messages.is_none() || self.progressed.elapsed() < self.config.stall_after {
            return;
        }
        self.progressed = Instant::now();
        let waiting = match self.js.get_stream(&self.config.stream).await {
            Ok(stream) => {
                // The stream's leader knows its last sequence; the consumer's own count can
                // come from a replica that stopped catching up (seen on a three-node cluster
                // after a leader was killed): a whole-stream consumer behind the last sequence
                // has messages waiting whatever its count says.
                let behind = if self.config.filter_subject.is_empty() {
                    let last = stream.cached_info().state.last_sequence;
                    last.saturating_sub(self.last_seq)
                } else {
                    0
                };
                match stream.consumer_info(&self.config.durable).await {
                    Ok(info) => Some((
                        info.num_pending.max(behind),
                        info.num_ack_pending,
                        info.num_redelivered,
                    )),
                    Err(e) => {
                        tracing::debug!(error = %e, consumer = %self.config.durable, "consumer info unavailable");
                        (behind > 0).then_some((behind, 0, 0))
                    }
                }
            }
            Err(_) => None,
        };
        if let Some((pending, ack_pending, redelivered)) = waiting
            && pending > 0
        {
            tracing::warn!(
                stream = %self.config.stream,
                consumer = %self.config.durable,
                pending,
                ack_pending,
                redelivered,
                stalled_for = ?self.config.stall_after,
                "consumer stuck: messages wait but none was delivered; re-creating it"
            );
            self.stuck = Some(format!(
                "{pending} messages of {} wait and none came for {:?} ({ack_pending} unacknowledged, {redelivered} redelivered); re-created",
                self.config.stream, self.config.stall_after
            ));
            self.recreate("stalled");
        }
    }

    /// Adds `raw`, come at `now`, to `batch` as the next message handed out (`reply`: the
    /// consumer's, which acknowledges everything up to it); the first one starts the batch's
    /// `max_wait`. The caller's clock read is used: one per message on the landing's hottest
    /// path.
    fn hand_out(
        &mut self,
        batch: &mut RawBatch,
        raw: RawMessage,
        reply: Option<async_nats::Subject>,
        now: Instant,
        deadline: &mut Instant,
    ) {
        self.fresh = false;
        self.progressed = now;
        self.stuck = None;
        if batch.messages.is_empty() {
            batch.lo = raw.seq;
            *deadline = now + self.config.max_wait;
        }
        batch.hi = raw.seq;
        self.last_seq = raw.seq;
        batch.messages.push(raw);
        if reply.is_some() {
            batch.last = reply;
        }
    }

    /// Messages `from..to` read one by one with direct gets, in order, up to the first that
    /// cannot be read (a replica not caught up, an error) or [`MAX_DIRECT_READS`].
    async fn read_directly(&self, from: u64, to: u64) -> Vec<RawMessage> {
        let mut out = Vec::new();
        if to - from > MAX_DIRECT_READS {
            return out;
        }
        let Ok(stream) = self.js.get_stream_no_info(&self.config.stream).await else {
            return out;
        };
        for seq in from..to {
            match stream.direct_get(seq).await {
                Ok(m) if m.sequence == seq => out.push(RawMessage {
                    seq: m.sequence,
                    subject: m.subject,
                    schema_version: schema_version(Some(&m.headers)),
                    payload: m.payload,
                }),
                Ok(other) => {
                    tracing::debug!(
                        seq,
                        got = other.sequence,
                        "direct get answered another message; re-creating the consumer instead"
                    );
                    break;
                }
                Err(e) => {
                    tracing::debug!(seq, error = %e, "direct get failed; re-creating the consumer instead");
                    break;
                }
            }
        }
        out
    }

    /// Waits up to `idle` for the first message, then fills a batch until `max_rows` or
    /// `max_wait`. Returns an empty batch when nothing arrived within `idle`. Errors from the
    /// server are retried here (re-creating the consumer); they never surface as lost messages.
    pub async fn next_batch(&mut self, idle: Duration) -> RawBatch {
        let mut batch = RawBatch {
            lo: 0,
            hi: 0,
            messages: Vec::new(),
            last: None,
            client: None,
        };
        let mut deadline = Instant::now() + idle;
        // What the stream held after the batch's first message when it was sent (`None`
        // until it comes, or when it came by a direct read, which does not say).
        let mut first_pending: Option<u64> = None;
        while batch.messages.len() < self.config.max_rows {
            let Some(messages) = self.messages.as_mut() else {
                if let Err(e) = self.reopen().await {
                    tracing::warn!(error = %e, "consumer unavailable, retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                continue;
            };
            // What the inbox holds already is taken without a timer; only an empty inbox is
            // waited on, up to the batch's deadline.
            let next = match messages.try_next(Instant::now()) {
                Some(next) => next,
                None => match tokio::time::timeout_at(deadline, messages.next()).await {
                    Err(_elapsed) => {
                        self.check_stalled().await;
                        break;
                    }
                    Ok(next) => next,
                },
            };
            let Delivered {
                message,
                seq,
                pending,
                at,
            } = match next {
                Ok(delivered) => delivered,
                Err(e) => {
                    tracing::warn!(error = %e, stream = %self.config.stream, "consumer error, re-creating");
                    self.recreate("error");
                    continue;
                }
            };
            if seq <= self.last_seq {
                // A redelivery of something already handed out: acks were lost.
                self.check_stalled().await;
                continue;
            }
            if self.skips(seq) {
                // Messages the server counts as delivered were lost on the way (a connection
                // dropped with them in flight, a leader moved); they would only come back after
                // the ack wait, behind newer ones. Read them directly from a replica (no meta
                // leader needed); what cannot be read so is read again by a new consumer from
                // just after the last one handed out.
                let wanted = seq - self.last_seq - 1;
                let found = self.read_directly(self.last_seq + 1, seq).await;
                tracing::warn!(stream = %self.config.stream, expected = self.last_seq + 1, got = seq, read_directly = found.len(), "gap in delivery");
                let complete = found.len() as u64 == wanted;
                let now = Instant::now();
                first_pending.get_or_insert(0);
                for raw in found {
                    self.hand_out(&mut batch, raw, None, now, &mut deadline);
                }
                if !complete {
                    self.recreate("gap");
                    continue;
                }
                metrics::counter!("adit_consumer_gaps_filled_total", "stream" => self.config.stream.clone())
                    .increment(1);
            }
            let raw = RawMessage::new(seq, &message);
            self.hand_out(&mut batch, raw, message.reply, at, &mut deadline);
            let first = *first_pending.get_or_insert(pending);
            let held = batch.messages.len();
            if closes_early(held, first, pending, self.config.max_rows, self.in_tail) {
                self.in_tail = pending > 0;
                return self.closed(batch);
            }
        }
        self.in_tail = false;
        self.closed(batch)
    }

    /// `batch`, given the client that acknowledges it when it holds a consumer's messages.
    fn closed(&self, mut batch: RawBatch) -> RawBatch {
        if batch.last.is_some() {
            batch.client = Some(self.js.client());
        }
        batch
    }
}

/// The schema version header's name, made once at compile time (a name given as text is
/// parsed and checked again on every lookup).
const SCHEMA_VERSION: async_nats::HeaderName =
    async_nats::HeaderName::from_static(adit_schemas::names::HEADER_SCHEMA_VERSION);

/// The `Adit-Schema-Version` header's value, if any.
fn schema_version(headers: Option<&async_nats::HeaderMap>) -> Option<SchemaVersion> {
    headers
        .and_then(|h| h.get(SCHEMA_VERSION))
        .map(|v| SchemaVersion::read(v.as_str()))
}

/// Whether a batch of `held` messages closes before `max_rows` and `max_wait`, given what the
/// stream held after its first message (`first_pending`) and after its last (`pending`) when
/// they were sent, for batches of up to `max_rows`. Only a batch whose every message was
/// already stored when it began (drawn from a backlog, not waited for) closes early, and only
/// once it holds [`EARLY_CLOSE_FRACTION`] of `max_rows`:
/// - once what is left is less than what it holds: a backlog's tail is cut into batches that
///   halve, so the landing's last epoch, which nothing overlaps, is a small one, each processed
///   while the next, smaller one is read;
/// - at the backlog's end (`pending` 0): waiting `max_wait` for more would be idle time
///   between a drained backlog and its commit. The last piece of a tail cut so (`in_tail`)
///   closes there whatever its size.
fn closes_early(
    held: usize,
    first_pending: u64,
    pending: u64,
    max_rows: usize,
    in_tail: bool,
) -> bool {
    let early_from = max_rows / EARLY_CLOSE_FRACTION;
    let from_backlog = first_pending.saturating_add(1) >= held as u64;
    let big_enough = held >= early_from || (in_tail && pending == 0);
    early_from > 0 && from_backlog && big_enough && pending < held as u64
}

/// The gap rule of [`BatchConsumer`]: after `last`, `seq` skips sequences the consumer should
/// have seen.
fn is_gap(filtered: bool, fresh: bool, last: u64, seq: u64) -> bool {
    !filtered && !fresh && seq != last + 1
}

#[cfg(test)]
mod tests {
    use super::{closes_early, is_gap};

    #[test]
    fn only_a_batch_drawn_from_a_backlog_closes_early() {
        // A backlog of 200 000 read in batches of up to 50 000 (early from 3 125).
        let max = 50_000;
        let closes = |held, first, pending| closes_early(held, first, pending, max, false);
        assert!(!closes(49_999, 199_999, 150_000), "full batches fill");
        assert!(!closes(24_999, 49_999, 25_000), "more left than held");
        assert!(closes(25_000, 49_999, 24_999), "the tail halves");
        assert!(closes(3_125, 3_124, 0), "the backlog's end");
        assert!(!closes(3_000, 3_124, 124), "too small to close early");
        assert!(
            !closes(3_124, 3_123, 0),
            "a burst smaller than a sixteenth waits for max_wait"
        );
        assert!(
            closes_early(100, 99, 0, max, true),
            "the last piece of a tail closes at the backlog's end"
        );
        assert!(
            !closes_early(100, 199, 99, max, true),
            "a tail's small piece is not halved again"
        );
        assert!(
            !closes(4_000, 0, 0),
            "a trickle: the batch was waited for, not drawn from a backlog"
        );
        assert!(
            !closes_early(2, 0, 0, max, true),
            "nor after a tail: messages came after the batch began"
        );
        assert!(
            !closes(5_000, 4_000, 0),
            "messages came after the batch began: a live stream, not a backlog"
        );
        assert!(
            closes_early(1, 0, 0, 16, false),
            "the smallest max_rows that closes early"
        );
        for held in 1..=15 {
            assert!(
                !closes_early(held, 100, 0, 15, true),
                "max_rows 15 never closes early"
            );
        }
    }

    #[test]
    fn schema_versions_are_read_once_and_judged_by_number() {
        use super::SchemaVersion;
        assert_eq!(SchemaVersion::read("1"), SchemaVersion::Number(1));
        assert!(SchemaVersion::read("1").readable_up_to(1));
        assert!(!SchemaVersion::read("2").readable_up_to(1));
        for odd in ["", "one", "-1", " 1", "1\n", "99999999999"] {
            let read = SchemaVersion::read(odd);
            assert_eq!(read, SchemaVersion::Unreadable(odd.into()));
            assert!(!read.readable_up_to(u32::MAX));
            assert_eq!(read.to_string(), format!("{odd:?}"), "kept as it came");
        }
        assert_eq!(SchemaVersion::Number(99).to_string(), "\"99\"");
    }

    #[test]
    fn only_an_unexplained_jump_is_a_gap() {
        assert!(!is_gap(false, false, 7, 8), "the next sequence");
        assert!(
            is_gap(false, false, 7, 10),
            "8 and 9 went missing in flight"
        );
        assert!(
            !is_gap(false, true, 7, 10),
            "first message after (re-)creation: 8 and 9 no longer exist"
        );
        assert!(
            !is_gap(true, false, 7, 10),
            "a filtered consumer skips other subjects"
        );
    }
}
