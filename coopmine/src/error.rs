//! The cluster's error type: what the coordinator, the worker and the certificate tool can fail
//! at, with what a caller needs to act on it.

/// What went wrong in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The protocol layer (Stratum client, targets, TLS, RandomX) failed.
    #[error(transparent)]
    Protocol(#[from] adit_protocol::Error),

    /// A setting is unusable; names the full key (`cluster.rest.listen`).
    #[error(transparent)]
    Config(#[from] adit_config::Invalid),

    /// Every slice of the nonce space is taken.
    #[error("the cluster is full: all {slices} nonce slices are taken")]
    ClusterFull {
        /// Slices per job.
        slices: usize,
    },

    /// The worker was banned for bad shares.
    #[error("worker {worker} is banned for bad shares")]
    Banned {
        /// The worker.
        worker: String,
    },

    /// The upstream sent a job the cluster cannot use.
    #[error("unusable upstream job: {reason}")]
    UpstreamJob {
        /// Why.
        reason: String,
    },

    /// The RandomX hashing threads are gone.
    #[error("the RandomX hashing threads have stopped")]
    HasherStopped,

    /// A socket, file or server failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// gRPC transport or call failure (the worker's side).
    #[error("gRPC: {0}")]
    Grpc(String),

    /// Making a certificate failed.
    #[error("certificate: {0}")]
    Certificate(String),

    /// Publishing to the bus failed.
    #[error("publishing to NATS: {0}")]
    Publish(String),
}

impl Error {
    /// An I/O error with what we were doing.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
