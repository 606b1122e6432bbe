//! Publishing result rows to `results.*` subjects for live subscribers.

use std::str::FromStr;

use async_nats::jetstream;
use serde::Serialize;

use crate::error::{Error, Result};

/// Publishes result rows; each carries a dedupe id derived from its inputs, so a replayed batch
/// publishes nothing new.
#[derive(Clone)]
pub struct ResultPublisher {
    /// JetStream context.
    js: jetstream::Context,
}

impl ResultPublisher {
    /// A publisher over `js`.
    pub fn new(js: jetstream::Context) -> Self {
        Self { js }
    }

    /// Publishes `(subject, dedupe id, row)` triples and waits until all are stored.
    pub async fn publish<T: Serialize>(&self, rows: &[(String, String, T)]) -> Result<()> {
        let mut encoded = Vec::with_capacity(rows.len());
        for (subject, id, row) in rows {
            let payload = serde_json::to_vec(row).map_err(|source| Error::Encode {
                subject: subject.clone(),
                source,
            })?;
            encoded.push((subject.clone(), id.clone(), payload));
        }
        self.publish_raw(&encoded).await
    }

    /// Publishes `(subject, dedupe id, JSON body)` triples and waits until all are stored.
    pub async fn publish_raw(&self, rows: &[(String, String, Vec<u8>)]) -> Result<()> {
        let mut acks = Vec::with_capacity(rows.len());
        for (subject, id, payload) in rows {
            // Escaped, then parsed fallibly: an id can never reach async-nats's panicking
            // conversion (issue 22).
            let id = async_nats::HeaderValue::from_str(&adit_schemas::names::message_id(id))
                .map_err(|e| Error::Publish {
                    subject: subject.clone(),
                    source: Box::new(e),
                })?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload.clone().into())
                .headers(headers);
            let ack = self
                .js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| Error::Publish {
                    subject: subject.clone(),
                    source: Box::new(e),
                })?;
            acks.push((subject, ack));
        }
        for (subject, ack) in acks {
            ack.await.map_err(|e| Error::Publish {
                subject: subject.clone(),
                source: Box::new(e),
            })?;
        }
        Ok(())
    }
}
