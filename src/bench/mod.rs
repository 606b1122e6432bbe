//! `adit bench`: measurements always beside a baseline taken in the same run.

mod cluster;
mod ingest;
mod pool;
mod split;

pub use cluster::{ClusterBench, cluster};
pub use ingest::ingest;
pub use pool::{PoolBench, idle_clients, pool};
pub use split::split_bench;
