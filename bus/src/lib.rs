//! adit's bus: everything that talks to NATS JetStream and its KV buckets, and nothing about
//! where the data comes from.
//!
//! Creates the streams and KV buckets of DESIGN.md §3 from config; publishes events with a
//! `Nats-Msg-Id` dedupe key through the one [`Publisher`]; reads streams through durable pull
//! consumers that yield micro-batches with their stream-sequence range, sending what cannot be
//! decoded to the dead-letter stream; and reads and changes the registry bucket. Every crate
//! that publishes or consumes depends on this one; device adapters, HTTP push and the
//! simulator live in `ingest`, tables in `sinks`, results in `pipelines`.

pub mod consumer;
pub mod decode;
pub mod error;
pub mod lease;
pub mod publish;
pub mod pull;
pub mod reader;
pub mod registry;
pub mod setup;

pub use consumer::{Acker, BatchConsumer, ConsumerConfig, RawBatch, RawMessage, SchemaVersion};
pub use decode::{DecodedBatch, Rejected, decode_batch};
pub use error::{Error, Result};
pub use lease::Lease;
pub use publish::Publisher;
pub use setup::{
    NatsAuth, StreamSettings, close, connect, connect_with, ensure_buckets, ensure_streams,
};
