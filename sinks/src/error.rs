//! Errors of the sinks crate.

/// What can go wrong writing results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The table root is not a usable URL or path.
    #[error("table root {root:?}: {message}")]
    Root {
        /// The configured root.
        root: String,
        /// Why it is unusable.
        message: String,
    },
    /// A Delta operation on a table failed.
    #[error("table {table}: {source}")]
    Delta {
        /// The table.
        table: String,
        /// What deltalake said.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// A file could not be read or sorted while compacting.
    #[error("table {table}: compaction: {reason}")]
    Compact {
        /// The table.
        table: String,
        /// What went wrong.
        reason: String,
    },
    /// Another writer committed to this table under the same application id since this one
    /// read it: this writer no longer owns the pipeline and must stop writing.
    #[error("table {table}: another writer committed as {app_id}; this one stops writing")]
    Fenced {
        /// The table.
        table: String,
        /// The application id both writers used.
        app_id: String,
    },
    /// The table exists with columns that are not the ones this version of adit writes.
    #[error(
        "table {table} lacks columns {missing}: it was written by another version of adit; move it aside (or migrate it) and restart"
    )]
    SchemaMismatch {
        /// The table.
        table: String,
        /// The columns adit needs that the table does not have.
        missing: String,
    },
    /// An epoch record could not be read, written or deleted.
    #[error("pipeline {instance}: {action}: {source}")]
    Checkpoint {
        /// The pipeline instance.
        instance: String,
        /// What was being done.
        action: &'static str,
        /// What the object store said.
        #[source]
        source: Box<object_store::Error>,
    },
    /// An epoch record is not valid JSON of the expected shape.
    #[error("pipeline {instance}: an epoch record is unreadable: {source}")]
    CheckpointFormat {
        /// The pipeline instance.
        instance: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
