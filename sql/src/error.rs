//! Why a statement was refused or stopped, sorted into the caller's fault and ours.

use datafusion::error::DataFusionError;

/// Everything running a statement can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// There was no statement.
    #[error("no SQL given")]
    Empty,
    /// The statement would change something or read outside the tables.
    #[error("read-only API: {0}")]
    ReadOnly(String),
    /// The statement's text is over the size or nesting limits, checked before planning.
    #[error("{0}")]
    TooComplex(String),
    /// The statement does not parse, plan or evaluate (syntax, unknown table or column, a bad
    /// cast…).
    #[error("{0}")]
    InvalidSql(String),
    /// The statement ran longer than its time limit.
    #[error("query exceeded the time limit of {limit_ms} ms")]
    Timeout {
        /// The limit.
        limit_ms: u64,
    },
    /// The statement needed more memory than its limit.
    #[error("query exceeded the memory limit of {limit_bytes} bytes: {detail}")]
    MemoryLimit {
        /// The limit.
        limit_bytes: usize,
        /// DataFusion's account.
        detail: String,
    },
    /// The result has more rows than the row limit.
    #[error("result exceeds the row limit of {limit} rows; add a LIMIT or aggregate")]
    RowLimit {
        /// The limit.
        limit: usize,
    },
    /// A table could not be found, opened or brought up to date.
    #[error(transparent)]
    Storage(#[from] adit_sinks::Error),
    /// The table root could not be listed.
    #[error("listing the tables under {root}: {source}")]
    Listing {
        /// The table root.
        root: String,
        /// What the object store said.
        #[source]
        source: object_store::Error,
    },
    /// The Ballista cluster could not be reached or dropped the statement (not the statement's
    /// fault).
    #[error("query cluster: {0}")]
    Cluster(String),
    /// DataFusion failed on our side (not because of the statement).
    #[error("query engine: {0}")]
    Engine(#[source] DataFusionError),
}

/// Result with [`SqlError`].
pub type Result<T, E = SqlError> = std::result::Result<T, E>;
