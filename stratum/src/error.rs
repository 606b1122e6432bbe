//! The pool's error type: what the pool's layers can refuse or fail at (templates, the
//! node, the simulated chain), with the protocol layer's errors carried whole.

use adit_protocol::Id;

/// What went wrong in the Stratum core.
///
/// Protocol-level variants carry the request [`Id`] where one was readable, so the connection
/// layer can answer the miner with a `{code, message}` error instead of just dropping it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A task of the pool kept failing and was given up on (its supervisor's account).
    #[error("pool task failed: {0}")]
    TaskFailed(String),

    /// The bans bucket could not be read or written.
    #[error("bans: {0}")]
    Bans(String),

    /// The Stratum protocol layer refused something (a bad line, target or message).
    #[error(transparent)]
    Protocol(#[from] adit_protocol::Error),

    /// A block template that cannot be parsed or whose reserved space is not where it should be.
    #[error("invalid block template at byte {offset}: {reason}")]
    InvalidTemplate {
        /// Byte offset into the template blob where parsing failed.
        offset: usize,
        /// What was wrong there.
        reason: String,
    },

    /// An extra nonce larger than the template's reserved space.
    #[error("extra nonce of {len} bytes does not fit the {reserved} reserved bytes")]
    ExtraNonceTooLong {
        /// Length of the extra nonce.
        len: usize,
        /// Size of the reserved space.
        reserved: usize,
    },

    /// The RandomX verification threads are gone (the pool is shutting down).
    #[error("the RandomX verification threads have stopped")]
    VerifierStopped,

    /// The pool's block history could not be read from the MINING stream (at start, to find the
    /// blocks still waiting for confirmation).
    #[error("reading {pool}'s blocks from the MINING stream: {source}")]
    BlockHistory {
        /// The pool.
        pool: String,
        /// What JetStream said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The node client's settings are unusable (a bad URL, an HTTP client that cannot be built).
    #[error("invalid node configuration: {reason}")]
    NodeConfig {
        /// What is wrong.
        reason: String,
    },

    /// The node could not be reached (connection refused, timeout, HTTP 5xx) on any attempt.
    /// Counts toward opening the circuit breaker.
    #[error("cannot reach the node at {url} for {method} after {attempts} attempts: {reason}")]
    NodeUnreachable {
        /// The RPC method.
        method: &'static str,
        /// The endpoint.
        url: String,
        /// Attempts made, retries included.
        attempts: u32,
        /// The last attempt's failure with its causes.
        reason: String,
    },

    /// The circuit breaker is open: the node failed repeatedly and calls fail fast, without
    /// reaching it, until the cool-down ends.
    #[error(
        "the node at {url} is unavailable: circuit breaker open after {failures} consecutive failed calls; {}",
        retry_hint(retry_in)
    )]
    NodeUnavailable {
        /// The endpoint.
        url: String,
        /// Consecutive unreachable calls that opened the breaker.
        failures: u32,
        /// Time until a trial call is let through; `None` while one is in flight.
        retry_in: Option<std::time::Duration>,
    },

    /// The node answered with an error of its own, for example a rejected block (monerod: -6
    /// "Wrong block blob", -7 "Block not accepted"); never retried.
    #[error("the node refused {method}: {message} (code {code})")]
    NodeRejected {
        /// The RPC method.
        method: &'static str,
        /// The node's error code (a JSON-RPC code, an HTTP status for a 4xx answer, 0 for a
        /// `status` other than OK).
        code: i64,
        /// The node's message.
        message: String,
    },

    /// The node answered, but not with what the method returns.
    #[error("unexpected answer from the node to {method}: {reason}")]
    NodeResponse {
        /// The RPC method.
        method: &'static str,
        /// What was wrong with it.
        reason: String,
    },

    /// The simulated chain cannot work (its hashing thread is gone or did not start).
    #[error("simulated chain: {reason}")]
    SimChain {
        /// What failed.
        reason: String,
    },
}

impl Error {
    /// The id of the request this error answers, when it has one the server can reply to.
    pub fn request_id(&self) -> Option<&Id> {
        match self {
            Error::Protocol(e) => e.request_id(),
            Error::InvalidTemplate { .. }
            | Error::ExtraNonceTooLong { .. }
            | Error::VerifierStopped
            | Error::NodeConfig { .. }
            | Error::BlockHistory { .. }
            | Error::NodeUnreachable { .. }
            | Error::NodeUnavailable { .. }
            | Error::NodeRejected { .. }
            | Error::NodeResponse { .. }
            | Error::SimChain { .. }
            | Error::TaskFailed(_)
            | Error::Bans(_) => None,
        }
    }
}

impl From<adit_jsonrpc::Error> for Error {
    /// The node client's errors, under the names the pool's layers match on.
    fn from(e: adit_jsonrpc::Error) -> Self {
        use adit_jsonrpc::Error as Rpc;
        match e {
            Rpc::Config { reason, .. } => Error::NodeConfig { reason },
            Rpc::Unreachable {
                method,
                url,
                attempts,
                reason,
                ..
            } => Error::NodeUnreachable {
                method,
                url,
                attempts,
                reason,
            },
            Rpc::Unavailable {
                url,
                failures,
                retry_in,
                ..
            } => Error::NodeUnavailable {
                url,
                failures,
                retry_in,
            },
            Rpc::Rejected {
                method,
                code,
                message,
                ..
            } => Error::NodeRejected {
                method,
                code,
                message,
            },
            Rpc::Response { method, reason, .. } => Error::NodeResponse { method, reason },
        }
    }
}

/// "next attempt in 1.5s" for an open breaker, or that a trial call is under way.
fn retry_hint(retry_in: &Option<std::time::Duration>) -> String {
    match retry_in {
        Some(wait) => format!("next attempt in {:.1}s", wait.as_secs_f64()),
        None => "a trial call is under way".into(),
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
