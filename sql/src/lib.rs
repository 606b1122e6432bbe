//! adit's read-only SQL, shared by the HTTP API and the pipelines that evaluate SQL (alert
//! rules, compliance).
//!
//! A [`Catalog`] keeps every Delta table under the table root open and brings each one up to
//! date incrementally (at most once per refresh interval), so a query does not re-read any log;
//! an [`SqlEngine`] runs one statement in a session of its own over the catalog's snapshots,
//! read-only, with time, memory and row limits.

pub mod admission;
pub mod bounded;
pub mod catalog;
pub mod cluster;
mod delta_scan;
mod distinct;
pub mod engine;
pub mod error;
mod executor;
pub mod fresh;
pub mod json;
mod local_files;
mod page_index;
pub mod params;
pub mod plan_size;
mod pool;
mod runs;
mod summaries;
pub mod syntax;

pub use catalog::Catalog;
pub use cluster::QueryEngine;
pub use engine::{
    Description, Planned, QueryResult, SessionSetup, SqlEngine, SqlLimits, StatementOptions,
};
pub use error::{Result, SqlError};
pub use params::Params;
