//! Errors of the schemas crate.

/// What can go wrong turning records into Arrow or back.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rows could not be encoded into the Arrow schema.
    #[error("encoding {kind} rows into Arrow failed: {source}")]
    Arrow {
        /// Which record type was being encoded.
        kind: &'static str,
        /// The underlying Arrow error.
        source: arrow::error::ArrowError,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
