//! The runtime: settings, what every pipeline shares (bus, tables, config), and the
//! supervisor that runs every instance of the pipelines it is given until shutdown. It never
//! names a pipeline and imports none: [`run_all`] takes the list ([`crate::catalog::all`]).

pub mod context;
pub mod cpu;
mod inputs;
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod runnable;
pub mod runner;
pub mod supervisor;
pub mod timer;

pub use context::{PipelineContext, RuntimeConfig};
pub use supervisor::{backoff, run_all, supervise};
