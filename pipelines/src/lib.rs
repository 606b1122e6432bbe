//! adit's computations and the runtime that drives them.
//!
//! A pipeline reads micro-batches from JetStream (or, for derived figures, from tables that
//! other pipelines land), computes its rows, and commits them with its position in one Delta
//! commit before it acknowledges anything (DESIGN.md §4). Landing pipelines (`telemetry`,
//! `grid`, `shares`) store events as they arrive; `energy` integrates power into energy per
//! machine and site per minute. This crate never talks HTTP and never defines wire formats.

pub mod energy;
pub mod error;
pub mod landing;
pub mod metrics;
pub mod runtime;

pub use error::{Error, Result};
pub use runtime::{PipelineContext, PipelinesConfig, run_all};
