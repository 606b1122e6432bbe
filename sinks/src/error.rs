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
    /// Publishing a result failed.
    #[error("publishing to {subject}: {message}")]
    Publish {
        /// The subject.
        subject: String,
        /// What the server said.
        message: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
