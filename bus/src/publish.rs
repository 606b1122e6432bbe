//! Publishing events to JetStream with their dedupe ids, retrying through outages.

use std::str::FromStr;
use std::time::Duration;

use adit_schemas::{AnyEvent, SCHEMA_VERSION, names};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde::Serialize;

use adit_retry::Backoff;
use backon::{ExponentialBuilder, Retryable};

use crate::error::{BoxError, Error, Result};

/// How many times a publish is retried before it is reported as failed.
const MAX_ATTEMPTS: usize = 60;
/// Publishes in flight at once when publishing many.
const WINDOW: usize = 512;

/// Publishes events; a retried publish carries the same `Nats-Msg-Id` and is stored once.
#[derive(Clone)]
pub struct Publisher {
    /// The JetStream context publishes go through.
    js: jetstream::Context,
}

/// One message ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Subject.
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub id: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub payload: Bytes,
}

impl Outgoing {
    /// The one way a refused message becomes a dead letter: on `dlq.<source>` (a stream's
    /// name, or a part that reads outside bytes itself, like the device adapters), its id
    /// `dlq:<source>:<key>` (the key names the refused message, so a refusal repeated after a
    /// redelivery is stored once), `reason` and whatever says where it came from in headers.
    pub fn dead_letter(
        source: &str,
        key: &str,
        reason: &str,
        origin: Vec<(&'static str, String)>,
        payload: Bytes,
    ) -> Self {
        let mut headers = vec![(names::HEADER_DLQ_REASON, reason.to_string())];
        headers.extend(origin);
        Self {
            subject: names::dlq_subject(source),
            id: format!("dlq:{}:{key}", source.to_ascii_lowercase()),
            headers,
            payload,
        }
    }

    /// A message with no extra headers.
    pub fn new(subject: String, id: String, payload: impl Into<Bytes>) -> Self {
        Self {
            subject,
            id,
            headers: Vec::new(),
            payload: payload.into(),
        }
    }

    /// A result row as a JSON message.
    pub fn json<T: Serialize>(subject: String, id: String, row: &T) -> Result<Self> {
        match serde_json::to_vec(row) {
            Ok(body) => Ok(Self::new(subject, id, body)),
            Err(source) => Err(Error::Encode { subject, source }),
        }
    }

    /// The message for an event.
    pub fn event(event: &AnyEvent) -> Self {
        let (subject, id, body) = event.to_message();
        Self::new(subject, id, body)
    }

    /// The message with its headers. Values are escaped ([`names::message_id`],
    /// [`names::header_text`]) and then built through async-nats's fallible parser, so text from
    /// outside can never reach the panicking conversion (issue 22).
    pub fn build_message(&self) -> Result<PublishMessage> {
        let invalid =
            |header: &str, e: async_nats::header::ParseHeaderValueError| Error::InvalidHeader {
                subject: self.subject.clone(),
                header: header.to_string(),
                reason: e.to_string(),
            };
        let mut headers = HeaderMap::new();
        headers.insert(
            names::HEADER_SCHEMA_VERSION,
            HeaderValue::from(SCHEMA_VERSION as usize),
        );
        for (k, v) in &self.headers {
            let value = HeaderValue::from_str(&names::header_text(v)).map_err(|e| invalid(k, e))?;
            headers.insert(*k, value);
        }
        let id = HeaderValue::from_str(&names::message_id(&self.id))
            .map_err(|e| invalid("Nats-Msg-Id", e))?;
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        Ok(PublishMessage::build()
            .payload(self.payload.clone())
            .headers(headers))
    }
}

impl Publisher {
    /// A publisher over `js`.
    pub fn new(js: jetstream::Context) -> Self {
        Self { js }
    }

    /// The JetStream context it publishes through.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes one event and waits for the stream to store it; returns its stream sequence.
    pub async fn publish(&self, event: &AnyEvent) -> Result<u64> {
        self.publish_one(&Outgoing::event(event)).await
    }

    /// Publishes one message, retrying until stored; returns its stream sequence.
    pub async fn publish_one(&self, msg: &Outgoing) -> Result<u64> {
        // A message that cannot be built is refused at once: retrying would not change it.
        let built = msg.build_message()?;
        let attempt = || async {
            let ack = self.send(&msg.subject, built.clone()).await?;
            ack.await.map_err(BoxError::from)
        };
        attempt
            .retry(retry_policy())
            .sleep(tokio::time::sleep)
            .notify(|e, after| {
                tracing::debug!(subject = %msg.subject, error = %e, ?after, "publish retry");
            })
            .await
            .map(|ack| ack.sequence)
            .map_err(|source| Error::Publish {
                subject: msg.subject.clone(),
                source,
            })
    }

    async fn send(&self, subject: &str, msg: PublishMessage) -> Result<PublishAckFuture, BoxError> {
        Ok(self.js.send_publish(subject.to_string(), msg).await?)
    }

    /// Publishes many messages with up to 512 in flight, retrying any that fail;
    /// returns how many were stored (duplicates included, as the server acks them too).
    pub async fn publish_all(&self, msgs: Vec<Outgoing>) -> Result<usize> {
        let mut in_flight = FuturesOrdered::new();
        let mut done = 0;
        for msg in msgs {
            if in_flight.len() >= WINDOW
                && let Some(r) = in_flight.next().await
            {
                r?;
                done += 1;
            }
            let this = self.clone();
            let built = msg.build_message()?;
            in_flight.push_back(async move {
                let first = match this.send(&msg.subject, built).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if first {
                    Ok(())
                } else {
                    this.publish_one(&msg).await.map(|_| ())
                }
            });
        }
        while let Some(r) = in_flight.next().await {
            r?;
            done += 1;
        }
        Ok(done)
    }
}

/// How a failed publish is retried: 100 ms doubling to 2 s, with jitter, 60 times (about two
/// minutes, long enough to ride out a NATS restart).
fn retry_policy() -> ExponentialBuilder {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(2))
        .with_jitter()
        .builder()
        .with_max_times(MAX_ATTEMPTS)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_result_row_is_its_json_under_its_subject_and_dedupe_id() {
        let row = serde_json::json!({"miner": "4A…", "amount": 12_345_u64});
        let msg = Outgoing::json("results.payout.p1".into(), "payout:7\n".into(), &row).unwrap();
        assert_eq!(msg.subject, "results.payout.p1");
        assert_eq!(msg.id, "payout:7\n");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&msg.payload).unwrap(),
            row
        );
        // The line break in the id is escaped on the way out, never refused or sent raw.
        assert!(msg.build_message().is_ok());
    }

    #[test]
    fn a_row_json_cannot_hold_is_refused_naming_its_subject() {
        let row: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        let err = Outgoing::json("results.x".into(), "id".into(), &row).unwrap_err();
        assert!(
            matches!(&err, Error::Encode { subject, .. } if subject == "results.x"),
            "{err}"
        );
    }
}
