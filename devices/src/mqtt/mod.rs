//! MQTT ingest for sensors that push: subscribe to a broker and turn each message into a
//! [`SensorReading`](adit_schemas::SensorReading).
//!
//! Layers, from the bottom, a module each:
//! - `topic`: topic patterns and templates: an MQTT filter with `+` wildcards, and `{n}`
//!   placeholders that take the n-th wildcard's value. Pure.
//! - `map`: [`map_message`]: ([`TopicMap`]s, topic, payload, received) → reading, refusal or
//!   nothing. Pure: the whole decoding and validation order is this one function, tested
//!   without a broker.
//! - `client`: [`subscribe`], the connection. Subscribes with QoS 1 to every pattern after each
//!   (clean session) connect, hands every outcome to a channel, reconnects with capped
//!   exponential backoff, and stops on shutdown or when the receiver is gone;
//!   [`spawn_publisher`] and [`publish_reading`], the pushing side, for the simulator and tests.
//!
//! Delivery is at least once between broker and client only within one session: a message is
//! acknowledged to the broker when it is read, and the session is clean, so messages published
//! while the client is disconnected are not delivered. Duplicates (QoS 1 redelivery) keep their
//! payload `ts`, so the reading's dedupe id drops them downstream.

mod client;
mod map;
mod topic;

pub use client::{MqttError, client_options, publish_reading, spawn_publisher, subscribe};
pub use map::{MappedError, TopicMap, map_message};
