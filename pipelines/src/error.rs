//! Errors of the pipelines crate, each saying what the runtime should do about it.

/// What can go wrong running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// JetStream failed (consumer, publish, dead-letter).
    #[error(transparent)]
    Bus(#[from] adit_ingest::Error),
    /// A table operation failed.
    #[error(transparent)]
    Sink(#[from] adit_sinks::Error),
    /// A DataFusion query inside a step failed.
    #[error("pipeline {pipeline}: query failed: {source}")]
    Query {
        /// The pipeline.
        pipeline: String,
        /// What DataFusion said.
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    /// Rows could not be encoded.
    #[error(transparent)]
    Schema(#[from] adit_schemas::Error),
    /// A pipeline task panicked (a bug); the process must exit non-zero.
    #[error("pipeline task panicked: {0}")]
    Panicked(String),
}

/// What the runtime does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try the same batch again after a backoff (the position has not moved).
    Retry,
    /// Give up: the pipeline stops and the process exits non-zero.
    Stop,
}

impl Error {
    /// How the runtime should react. Bad messages never reach here: they are dead-lettered
    /// during decoding, so every error left is about our own infrastructure.
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::Bus(_) | Self::Sink(_) | Self::Query { .. } => Disposition::Retry,
            Self::Schema(_) | Self::Panicked(_) => Disposition::Stop,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
