//! adit's computations and the runtime that drives them.
//!
//! A pipeline ([`Pipeline`]) declares its inputs (streams, with subject filters that may be
//! partitioned by site or pool), its output tables, its timers and its state, and a
//! deterministic step. The runtime runs each registered pipeline instance under a lease in NATS
//! KV (other processes stand by), reads micro-batches, steps, records each epoch beside the
//! tables, commits rows with the epoch in one Delta commit per table before it acknowledges or
//! publishes anything (DESIGN.md §4), and replays recorded epochs after a crash. Landing
//! pipelines (`telemetry`, `grid`, `shares`) store events as they arrive; `energy` integrates
//! power into energy per machine and site per minute under per-machine watermarks. This crate
//! never talks HTTP and never defines wire formats.

pub mod anomalies;
pub mod curtail;
pub mod curtailment;
pub mod detect;
pub mod energy;
pub mod energy_periods;
pub mod error;
pub mod farm_readings;
pub mod fresh;
pub mod hashrate;
pub mod landing;
pub mod lease;
pub mod metrics;
pub mod pipeline;
pub mod pplns;
pub mod progress;
pub mod registry;
pub mod registry_log;
pub mod runner;
pub mod runtime;
mod serde_pairs;
pub mod split;
pub mod timer;
pub mod violations;
pub mod watermark;

pub use error::{Error, Result};
pub use pipeline::{
    OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput, StreamInput,
};
pub use runtime::{InvalidConfig, PipelineContext, PipelinesConfig, run_all};
