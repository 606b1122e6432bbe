//! The cooperative mining cluster (DESIGN.md §7): a coordinator that mines upstream as one
//! Stratum miner and serves workers over gRPC with mutual TLS, giving each its own slice of the
//! nonce space, checking every share with RandomX before forwarding it, failing over between
//! pools, and publishing shares, hashrate and upstream changes to the bus; the worker that
//! hashes for it; and `adit certs`. It speaks Stratum through `adit-protocol` only, not the pool.

pub mod blocks;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod coordinator;
mod error;
mod hasher;
pub mod miner;
pub mod mtls;
mod rest;
mod serve;
mod service;
pub mod upstream;
mod vms;
pub mod worker;

/// The gRPC messages and service generated from `proto/coopmine.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("adit.coopmine.v1");
}

pub use config::{ClusterConfig, HashMode, WorkerConfig};
pub use coordinator::MetricsRender;
pub use error::{Error, Result};
pub use serve::{Bound, run as run_coordinator};
pub use worker::run as run_worker;
