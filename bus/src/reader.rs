//! The one place a stream is read outside the pipelines' batches ([`crate::BatchConsumer`]):
//! an [`ordered`] consumer from a position, which keeps no state on the server (the live feed,
//! the fresh tails, a pool's block history, the last grid signal), and a [`durable`] one acked
//! message by message (the actuators' commands, the notifier's alerts).

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream::Stream};

use crate::error::{Error, Result};

/// An ordered consumer of `filter` (one subject filter; empty: the whole stream) on `stream`,
/// from `start`.
pub async fn ordered(
    stream: &Stream,
    filter: &str,
    start: DeliverPolicy,
) -> Result<Consumer<pull::OrderedConfig>> {
    stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_string(),
            deliver_policy: start,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Consumer {
            stream: stream.cached_info().config.name.clone(),
            consumer: format!("ordered on {filter}"),
            source: Box::new(e),
        })
}

/// [`ordered`] on the stream named `stream`.
pub async fn ordered_in(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    start: DeliverPolicy,
) -> Result<Consumer<pull::OrderedConfig>> {
    let handle = js.get_stream(stream).await.map_err(|e| Error::Consumer {
        stream: stream.to_string(),
        consumer: format!("ordered on {filter}"),
        source: Box::new(e),
    })?;
    ordered(&handle, filter, start).await
}

/// How a [`durable`] consumer reads.
#[derive(Debug, Clone)]
pub struct Durable {
    /// Its name, which keeps its position on the server across restarts.
    pub name: String,
    /// One subject filter.
    pub filter: String,
    /// Where a consumer created anew starts.
    pub start: DeliverPolicy,
    /// How long a message handed out waits for its ack before it is delivered again.
    pub ack_wait: Duration,
    /// How many messages may wait for their acks at once (0: the server's default).
    pub max_ack_pending: i64,
}

/// The durable consumer `durable.name` on the stream named `stream`, created if missing, each
/// message acked on its own.
pub async fn durable(
    js: &jetstream::Context,
    stream: &str,
    durable: Durable,
) -> Result<Consumer<pull::Config>> {
    let failed = |source: crate::error::BoxError| Error::Consumer {
        stream: stream.to_string(),
        consumer: durable.name.clone(),
        source,
    };
    let handle = js
        .get_stream(stream)
        .await
        .map_err(|e| failed(Box::new(e)))?;
    let mut config = pull::Config {
        durable_name: Some(durable.name.clone()),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: durable.start,
        ack_wait: durable.ack_wait,
        filter_subject: durable.filter.clone(),
        ..Default::default()
    };
    if durable.max_ack_pending > 0 {
        config.max_ack_pending = durable.max_ack_pending;
    }
    handle
        .get_or_create_consumer(&durable.name, config)
        .await
        .map_err(|e| failed(Box::new(e)))
}
