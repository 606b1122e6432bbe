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
//!
//! The folders say what each pipeline serves: `runtime/` drives any pipeline (leases,
//! consumers, epochs, commits, replay) and names none but through `catalog`, the list of
//! pipelines; `pool/` is the pool's money (PPLNS with its pure `split`, hashrate); `farm/` is
//! the farm's readings, energy, violations, anomalies (with their pure `detector`) and
//! registry changes; `control/` is curtailment (the pure `controller` and the pipeline that
//! drives it). `landing` stores every stream's events as they arrive.

pub mod catalog;
pub mod control;
pub mod error;
pub mod farm;
pub mod fresh;
pub mod inputs;
pub mod landing;
pub mod latest;
pub mod pool;
pub mod runtime;
mod serde_pairs;
pub mod watermark;

pub use catalog::PipelinesConfig;
pub use error::{Error, Result};
pub use runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput, StreamInput,
};
pub use runtime::{PipelineContext, RuntimeConfig, run_all};
