//! Errors of the bus crate.

/// Any error from the NATS client, kept whole so its cause chain survives.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong talking to JetStream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect to the NATS server.
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// What the client said.
        #[source]
        source: BoxError,
    },
    /// A stream or bucket could not be created or updated.
    #[error("setting up {name}: {source}")]
    Setup {
        /// The stream or bucket.
        name: String,
        /// What the server said.
        #[source]
        source: BoxError,
    },
    /// A publish failed after its retries.
    #[error("publishing to {subject}: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// What the server said on the last attempt.
        #[source]
        source: BoxError,
    },
    /// A message body could not be encoded as JSON.
    #[error("encoding a message for {subject}: {source}")]
    Encode {
        /// The subject.
        subject: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A header could not be built from its value (never expected: values are escaped first).
    #[error("publishing to {subject}: header {header}: {reason}")]
    InvalidHeader {
        /// The subject.
        subject: String,
        /// The header.
        header: String,
        /// Why its value was refused.
        reason: String,
    },
    /// The stream does not exist: adit's streams are created by `adit run`/`adit pipelines` at
    /// start (`ensure_streams`), so the bus is not the one this process set up.
    #[error(
        "stream {stream} does not exist on this NATS server; start adit with the same nats.url as the processes that set it up, or let it create its streams"
    )]
    MissingStream {
        /// The stream.
        stream: String,
    },
    /// The lease bucket could not be used.
    #[error("lease {key}: {source}")]
    Lease {
        /// The lease key.
        key: String,
        /// What the server said.
        #[source]
        source: BoxError,
    },
    /// This process no longer holds the lease; it goes back to standing by.
    #[error("lease {key} lost; standing by")]
    LeaseLost {
        /// The lease key.
        key: String,
    },
    /// A consumer could not be created or read.
    #[error("consumer {consumer} on {stream}: {source}")]
    Consumer {
        /// The stream.
        stream: String,
        /// The durable consumer name.
        consumer: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
