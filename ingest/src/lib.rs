//! Everything between the outside world and JetStream.
//!
//! Creates the streams and KV buckets of DESIGN.md §3 from config; publishes events with a
//! `Nats-Msg-Id` dedupe key; reads streams through durable pull consumers that yield
//! micro-batches with their stream-sequence range, sending what cannot be decoded to the
//! dead-letter stream; and brings data in over HTTP and from the farm simulator. It never
//! writes tables or computes results: that is `sinks` and `pipelines`.

pub mod actuators;
pub mod adapters;
pub mod consumer;
pub mod decode;
pub mod error;
pub mod http;
pub mod publish;
pub mod registry;
pub mod setup;
pub mod simulate;

pub use consumer::{Acker, BatchConsumer, ConsumerConfig, RawBatch, RawMessage};
pub use decode::{DecodedBatch, Rejected, decode_batch};
pub use error::{Error, Result};
pub use publish::Publisher;
pub use setup::{NatsAuth, StreamSettings, connect, connect_with, ensure_buckets, ensure_streams};
