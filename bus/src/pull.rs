//! A JetStream pull consumer read straight off a core-NATS inbox.
//!
//! async-nats's pull stream wraps every message in a `jetstream::Message` that holds a clone of
//! the JetStream context (a client clone and drop per message: about 3.5 % of the landing's CPU
//! under `perf`, issue 29). [`Pull`] speaks the same protocol itself: pull requests to
//! `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>` with replies to an inbox of its own, a new
//! request once half of what was asked has come, the server's status messages read for what
//! they say (heartbeats, expired or terminated requests, a deleted consumer), and each message's
//! stream sequence read from its `$JS.ACK` reply subject. A consumer that stops answering (no
//! message and no heartbeat for two heartbeat periods) is an error: the caller re-creates it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{Client, Message, Statistics, StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

/// How often the server is asked to say it is there while it has nothing to send.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long one pull request waits on the server for messages.
const EXPIRES: Duration = Duration::from_secs(30);

/// Why a pull consumer cannot go on; the caller re-creates it.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Subscribing to the inbox or sending a pull request failed.
    #[error("pull request not sent: {0}")]
    Request(String),
    /// Neither a message nor a heartbeat came for two heartbeat periods.
    #[error("no message and no heartbeat for {0:?}")]
    MissingHeartbeat(Duration),
    /// The server ended the consumer's requests for good (deleted, push based, a limit).
    #[error("the server refused the consumer's requests: {status} {description}")]
    Refused {
        /// The status code.
        status: u16,
        /// What the server said.
        description: String,
    },
    /// The inbox's subscription ended (the client was closed).
    #[error("the inbox's subscription ended")]
    Closed,
}

/// One message of the stream, with its stream sequence.
pub struct Delivered {
    /// The message as it came (its reply subject acknowledges it).
    pub message: Message,
    /// Its stream sequence.
    pub seq: u64,
    /// How many messages the stream held for the consumer after this one when the server
    /// sent it (its `num_pending` then): 0 when it was the stream's last.
    pub pending: u64,
    /// When it was taken from the inbox.
    pub at: Instant,
}

/// A pull consumer's message flow on an inbox of its own.
pub struct Pull {
    /// The connection the requests go out on.
    client: Client,
    /// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
    next_subject: Subject,
    /// Where the server sends messages and statuses.
    inbox: Subject,
    /// The inbox's subscription.
    subscriber: Subscriber,
    /// The body of every pull request.
    request: Bytes,
    /// Messages asked for in one request.
    batch: usize,
    /// Messages asked for and not yet come.
    pending: usize,
    /// The client's counters (read for its connection count).
    statistics: Arc<Statistics>,
    /// The client's connection count when the last request went out: requests do not
    /// outlive the connection they came on.
    connects: u64,
    /// When the server last sent anything.
    heard: Instant,
}

impl Pull {
    /// Starts reading consumer `consumer` of stream `stream`, `batch` messages per request.
    pub async fn start(
        client: Client,
        stream: &str,
        consumer: &str,
        batch: usize,
    ) -> Result<Self, PullError> {
        let inbox = Subject::from(client.new_inbox());
        let subscriber = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| PullError::Request(e.to_string()))?;
        let batch = batch.max(1);
        let request = serde_json::json!({
            "batch": batch,
            "expires": EXPIRES.as_nanos() as u64,
            "idle_heartbeat": HEARTBEAT.as_nanos() as u64,
        });
        let statistics = client.statistics();
        Ok(Self {
            connects: connects(&statistics),
            statistics,
            client,
            next_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}").into(),
            inbox,
            subscriber,
            request: Bytes::from(request.to_string()),
            batch,
            pending: 0,
            heard: Instant::now(),
        })
    }

    /// The next message. Cancel safe: a message is taken from the inbox only when returned.
    pub async fn next(&mut self) -> Result<Delivered, PullError> {
        loop {
            if connects(&self.statistics) != self.connects {
                // Reconnected: the requests died with the old connection.
                self.pending = 0;
                self.heard = Instant::now();
            }
            self.request_more().await?;
            let silent_until = self.heard + 2 * HEARTBEAT;
            let message = match tokio::time::timeout_at(silent_until, self.subscriber.next()).await
            {
                Ok(Some(message)) => message,
                Ok(None) => return Err(PullError::Closed),
                Err(_silent) if connects(&self.statistics) != self.connects => continue,
                Err(_silent) => return Err(PullError::MissingHeartbeat(2 * HEARTBEAT)),
            };
            self.heard = Instant::now();
            if let Some(delivered) = self.read(message, self.heard)? {
                return Ok(delivered);
            }
        }
    }

    /// The next message if the inbox already holds one, taken at `at`, without waiting: no
    /// timer is armed and no request sent, so a batch drains what one socket read brought in
    /// at the cost of a channel poll per message (two timers per message were a tenth of the
    /// consumer task's CPU while it read a backlog). `None` when nothing is ready, or when
    /// [`Pull::next`] has something to do first: send the next request (half of what was asked
    /// has come) or notice a reconnection.
    pub fn try_next(&mut self, at: Instant) -> Option<Result<Delivered, PullError>> {
        loop {
            if self.pending <= self.batch / 2 || connects(&self.statistics) != self.connects {
                return None;
            }
            let Some(message) = self.subscriber.next().now_or_never()? else {
                return Some(Err(PullError::Closed));
            };
            self.heard = at;
            match self.read(message, at) {
                Ok(Some(delivered)) => return Some(Ok(delivered)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Sends a pull request once half of what was asked has come.
    async fn request_more(&mut self) -> Result<(), PullError> {
        if self.pending > self.batch / 2 {
            return Ok(());
        }
        self.client
            .publish_with_reply(
                self.next_subject.clone(),
                self.inbox.clone(),
                self.request.clone(),
            )
            .await
            .map_err(|e| PullError::Request(e.to_string()))?;
        self.pending += self.batch;
        self.connects = connects(&self.statistics);
        Ok(())
    }

    /// A stream message, come at `at`, or `None` for a status that leaves the consumer going.
    fn read(&mut self, message: Message, at: Instant) -> Result<Option<Delivered>, PullError> {
        match message.status {
            None | Some(StatusCode::OK) => {
                self.pending = self.pending.saturating_sub(1);
                match message.reply.as_deref().and_then(stream_position) {
                    Some((seq, pending)) => Ok(Some(Delivered {
                        message,
                        seq,
                        pending,
                        at,
                    })),
                    None => {
                        tracing::warn!(subject = %message.subject, "a message on the consumer's inbox without a JetStream reply subject; ignored");
                        Ok(None)
                    }
                }
            }
            Some(StatusCode::IDLE_HEARTBEAT) => Ok(None),
            Some(
                status @ (StatusCode::TIMEOUT
                | StatusCode::NOT_FOUND
                | StatusCode::REQUEST_TERMINATED),
            ) => {
                let description = message.description.as_deref().unwrap_or_default();
                if status == StatusCode::REQUEST_TERMINATED && ends_the_consumer(description) {
                    return Err(PullError::Refused {
                        status: status.as_u16(),
                        description: description.to_string(),
                    });
                }
                // The request is over; what it did not deliver is no longer coming.
                let undelivered = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pending-Messages"))
                    .and_then(|v| v.as_str().parse().ok())
                    .unwrap_or(self.batch);
                self.pending = self.pending.saturating_sub(undelivered);
                Ok(None)
            }
            Some(status) => Err(PullError::Refused {
                status: status.as_u16(),
                description: message.description.unwrap_or_default(),
            }),
        }
    }
}

/// Whether a terminated request's reason ends the consumer rather than that request.
fn ends_the_consumer(description: &str) -> bool {
    description == "Consumer Deleted"
        || description == "Consumer is push based"
        || description.starts_with("Exceeded MaxRequest")
}

/// How many times the client with `statistics` has connected.
fn connects(statistics: &Statistics) -> u64 {
    statistics.connects.load(Ordering::Relaxed)
}

/// The stream sequence and the pending count in a JetStream reply subject: `$JS.ACK.<stream>.
/// <consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or the form with a
/// domain and account hash after `$JS.ACK.` (ADR-15, 9 tokens or more there).
fn stream_position(reply: &str) -> Option<(u64, u64)> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    // One walk over the tokens, keeping the first nine: no allocation and no second pass on
    // the landing's hottest path.
    let mut kept = [""; 9];
    let mut count = 0;
    for token in rest.split('.') {
        if let Some(slot) = kept.get_mut(count) {
            *slot = token;
        }
        count += 1;
    }
    let first = match count {
        7 => 0,
        9.. => 2,
        _ => return None,
    };
    let seq = kept[first + 3].parse().ok()?;
    let pending = kept[first + 6].parse().ok()?;
    Some((seq, pending))
}

/// Acknowledges every message up to and including the one with reply subject `reply`
/// (the consumer's ack policy is `All`).
pub async fn ack(client: &Client, reply: Subject) -> Result<(), PullError> {
    client
        .publish(reply, Bytes::from_static(b"+ACK"))
        .await
        .map_err(|e| PullError::Request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::stream_position;

    #[test]
    fn the_stream_sequence_and_pending_count_are_read_from_either_reply_form() {
        assert_eq!(
            stream_position("$JS.ACK.telemetry.land.1.4711.12.1700000000000000000.3"),
            Some((4711, 3))
        );
        assert_eq!(
            stream_position("$JS.ACK.hub.ACCHASH.telemetry.land.2.4712.13.1700000000000000000.0"),
            Some((4712, 0))
        );
        assert_eq!(
            stream_position(
                "$JS.ACK.hub.ACCHASH.telemetry.land.2.4713.13.1700000000000000000.9.r4nd"
            ),
            Some((4713, 9))
        );
        for odd in [
            "",
            "$JS.ACK.",
            "_INBOX.abc",
            "$JS.ACK.telemetry.land.1.notanumber.12.1.3",
            "$JS.ACK.telemetry.land.1.4711.12.1",
            "$JS.ACK.a.b.c.d.e.f.g.h",
            "$JS.ACK.telemetry.land.1.-5.12.1.3",
            "$JS.ACK.telemetry.land.1.99999999999999999999999.12.1.3",
            "$JS.ACK.telemetry.land.1.4711.12.1.-3",
            "$JS.ACK.telemetry.land.1.4711.12.1.many",
            "$JS.ACK.hub.ACCHASH.telemetry.land.2.4713.13.1700000000000000000.",
        ] {
            assert_eq!(stream_position(odd), None, "{odd:?}");
        }
    }
}
