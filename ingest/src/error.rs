//! Errors of the ingest crate.

/// What can go wrong talking to JetStream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect to the NATS server.
    #[error("connecting to NATS at {url}: {message}")]
    Connect {
        /// The server URL.
        url: String,
        /// What the client said.
        message: String,
    },
    /// A stream or bucket could not be created or updated.
    #[error("setting up {name}: {message}")]
    Setup {
        /// The stream or bucket.
        name: String,
        /// What the server said.
        message: String,
    },
    /// A publish failed after its retries.
    #[error("publishing to {subject}: {message}")]
    Publish {
        /// The subject.
        subject: String,
        /// What the server said.
        message: String,
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
    /// A consumer could not be created or read.
    #[error("consumer {consumer} on {stream}: {message}")]
    Consumer {
        /// The stream.
        stream: String,
        /// The durable consumer name.
        consumer: String,
        /// What went wrong.
        message: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
