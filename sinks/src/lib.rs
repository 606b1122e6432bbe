//! Where adit's results go.
//!
//! Delta tables on an object store under one root URL (a local folder by default, or `s3://`,
//! `gs://`, `az://`…), written with the exactly-once commit of DESIGN.md §4 (data and the
//! pipeline's stream position in one Delta commit), compacted and vacuumed on a schedule. It does not compute anything, and it does not
//! talk to NATS: results are published through `adit_bus`.

pub mod at_rest;
pub mod checkpoint;
pub mod compact;
pub mod error;
pub mod exactly_once;
pub mod fresh;
pub mod store;
pub mod summary;

pub use at_rest::{AtRestKey, EncryptedStore};
pub use checkpoint::{EpochLog, EpochRecord, Snapshot};
pub use error::{Error, Result};
pub use exactly_once::{ExactlyOnceTable, Maintenance};
pub use fresh::{FreshRows, MemoryTables};
pub use store::TableStore;
