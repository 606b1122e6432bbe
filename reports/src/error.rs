//! The reports crate's errors.

/// What computing, storing or rendering a report can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something that cannot be reported (unknown site, future day…).
    #[error("{0}")]
    Invalid(String),
    /// A query over the tables failed.
    #[error("query failed: {0}")]
    Sql(#[from] adit_sql::SqlError),
    /// The registry could not be read.
    #[error("registry: {0}")]
    Registry(String),
    /// The report table could not be written.
    #[error("compliance_daily: {0}")]
    Table(#[from] adit_sinks::Error),
    /// Encoding a row or a rendering failed.
    #[error("encoding: {0}")]
    Encode(String),
    /// Writing a report file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
