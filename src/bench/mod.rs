//! `adit bench`: measurements always beside a baseline taken in the same run.

mod children;
mod cluster;
mod idle;
mod ingest;
mod pool;
mod procfs;
mod servers;
mod split;

pub use cluster::{ClusterBench, cluster};
pub use idle::idle_clients;
pub use ingest::ingest;
pub use pool::{PoolBench, pool};
pub use servers::pool_server;
pub use split::split_bench;

/// The middle value of `values` (the mean of the two middle ones when even; NaN when empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
