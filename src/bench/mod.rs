//! `adit bench`: measurements always beside a baseline taken in the same run.

mod ingest;
mod pool;

pub use ingest::ingest;
pub use pool::{idle_clients, pool};
