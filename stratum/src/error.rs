//! The crate's one error type: everything the pure Stratum core can refuse, with the context a
//! caller needs to answer a miner or log the cause.

use crate::codec::Id;

/// What went wrong in the Stratum core.
///
/// Protocol-level variants carry the request [`Id`] where one was readable, so the connection
/// layer can answer the miner with a `{code, message}` error instead of just dropping it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A difficulty of zero has no target: every hash would be a share.
    #[error("difficulty must be at least 1")]
    ZeroDifficulty,

    /// A target string that is not 8 or 16 hex characters, or that is all zeroes.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        /// The target as received.
        target: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A line (or the unterminated tail of the buffer) is longer than the configured maximum;
    /// the connection should be closed.
    #[error("line of at least {len} bytes exceeds the limit of {max} bytes")]
    LineTooLong {
        /// Bytes seen so far in the offending line.
        len: usize,
        /// The configured maximum line length.
        max: usize,
    },

    /// The line is not a JSON-RPC message we can read at all (bad JSON, no method, wrong shape).
    #[error("invalid JSON-RPC message: {reason}")]
    InvalidMessage {
        /// The request id, if the line had a readable one.
        id: Option<Id>,
        /// Why the message was refused.
        reason: String,
    },

    /// A well-formed request for a method this dialect does not have.
    #[error("unknown method {method:?}")]
    UnknownMethod {
        /// The request id.
        id: Id,
        /// The method name as received.
        method: String,
    },

    /// A known method whose `params` do not have the expected shape.
    #[error("invalid params for {method}: {reason}")]
    InvalidParams {
        /// The request id.
        id: Id,
        /// The method whose params were wrong.
        method: &'static str,
        /// What serde said was wrong.
        reason: String,
    },

    /// A submitted nonce that is not exactly 8 hex characters.
    #[error("malformed nonce {nonce:?}: expected 8 hex characters")]
    MalformedNonce {
        /// The nonce as received.
        nonce: String,
    },

    /// A submitted result that is not exactly 64 hex characters.
    #[error("malformed result {result:?}: expected 64 hex characters")]
    MalformedResult {
        /// The result as received.
        result: String,
    },

    /// Serialising an outgoing message failed (it cannot for this crate's own types).
    #[error("failed to encode a Stratum message")]
    Encode(#[source] serde_json::Error),

    /// Invalid vardiff settings.
    #[error("invalid vardiff config: {reason}")]
    InvalidVardiffConfig {
        /// Which setting is wrong and why.
        reason: &'static str,
    },

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

    /// The RandomX library refused an operation (allocation, empty key or input).
    #[error("RandomX failed to {action}")]
    RandomX {
        /// What we were doing.
        action: &'static str,
        /// The library's error.
        #[source]
        source: randomx_rs::RandomXError,
    },

    /// The RandomX verification threads are gone (the pool is shutting down).
    #[error("the RandomX verification threads have stopped")]
    VerifierStopped,

    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {reason}")]
    Tls {
        /// What went wrong.
        reason: String,
    },

    /// The Stratum client could not talk to the pool.
    #[error("stratum client: {reason}")]
    Client {
        /// What went wrong.
        reason: String,
    },

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
            Error::InvalidMessage { id, .. } => id.as_ref(),
            Error::UnknownMethod { id, .. } | Error::InvalidParams { id, .. } => Some(id),
            Error::ZeroDifficulty
            | Error::InvalidTarget { .. }
            | Error::LineTooLong { .. }
            | Error::MalformedNonce { .. }
            | Error::MalformedResult { .. }
            | Error::Encode(_)
            | Error::InvalidVardiffConfig { .. }
            | Error::InvalidTemplate { .. }
            | Error::ExtraNonceTooLong { .. }
            | Error::RandomX { .. }
            | Error::VerifierStopped
            | Error::NodeConfig { .. }
            | Error::BlockHistory { .. }
            | Error::NodeUnreachable { .. }
            | Error::NodeUnavailable { .. }
            | Error::NodeRejected { .. }
            | Error::NodeResponse { .. }
            | Error::SimChain { .. }
            | Error::Client { .. }
            | Error::Tls { .. } => None,
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
