//! Errors of the pipelines crate, each saying what the runtime should do about it.

/// A boxed error from a dependency, kept as the source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// JetStream failed (consumer, publish, dead-letter).
    #[error(transparent)]
    Bus(#[from] adit_bus::Error),
    /// A table or epoch-record operation failed.
    #[error(transparent)]
    Sink(#[from] adit_sinks::Error),
    /// A stream's state could not be read.
    #[error("stream {stream}: {source}")]
    Stream {
        /// The stream.
        stream: String,
        /// What the server said.
        #[source]
        source: BoxError,
    },
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
    /// A result could not be encoded as JSON.
    #[error("encoding a result: {0}")]
    Encode(#[source] serde_json::Error),
    /// A consumer task ended.
    #[error("the consumers of {input:?} ended")]
    InputEnded {
        /// The inputs of the instance.
        input: Vec<String>,
    },
    /// The pipeline's declaration or its output does not hold together (a bug).
    #[error("pipeline {pipeline}: {reason}")]
    Spec {
        /// The pipeline.
        pipeline: String,
        /// What is wrong.
        reason: String,
    },
    /// A restart cannot find what it needs to resume.
    #[error("pipeline {instance} cannot resume: {reason}")]
    Recovery {
        /// The instance.
        instance: String,
        /// What is missing and what to do.
        reason: String,
    },
    /// The state in an epoch record does not fit this version's state type.
    #[error("pipeline {instance}: its saved state does not match this version of adit: {source}")]
    State {
        /// The instance.
        instance: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The pipeline's state cannot be written as JSON (a bug in the pipeline's state type, e.g.
    /// a map whose keys are not text).
    #[error("pipeline {instance}: its state cannot be snapshotted: {source}")]
    Snapshot {
        /// The instance.
        instance: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A pipeline task panicked (a bug); the process must exit non-zero.
    #[error("pipeline task panicked: {0}")]
    Panicked(String),
}

/// What the runtime does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again after a backoff, from the last commit (the position has not moved).
    Retry,
    /// Give up: the pipeline stops and the process exits non-zero with the message.
    Stop,
}

impl Error {
    /// How the runtime should react. Bad messages never reach here: they are dead-lettered
    /// during decoding, so every error left is about our own infrastructure or a bug.
    pub fn disposition(&self) -> Disposition {
        use adit_sinks::Error as Sink;
        match self {
            Self::Bus(adit_bus::Error::MissingStream { .. }) => Disposition::Stop,
            Self::Sink(Sink::SchemaMismatch { .. } | Sink::CheckpointFormat { .. }) => {
                Disposition::Stop
            }
            Self::Bus(_)
            | Self::Sink(_)
            | Self::Stream { .. }
            | Self::Query { .. }
            | Self::InputEnded { .. } => Disposition::Retry,
            Self::Schema(_)
            | Self::Encode(_)
            | Self::Spec { .. }
            | Self::Recovery { .. }
            | Self::State { .. }
            | Self::Snapshot { .. }
            | Self::Panicked(_) => Disposition::Stop,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
