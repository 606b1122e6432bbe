//! The protocol layer's one error type: what the codec, targets, RandomX, TLS and the client can
//! refuse or fail at, with the context a caller needs to answer a miner or log the cause.

use crate::id::Id;

/// What went wrong in the Stratum protocol layer.
///
/// Message-level variants carry the request [`Id`] where one was readable, so a server can
/// answer the miner with a `{code, message}` error instead of just dropping it.
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

    /// The RandomX library refused an operation (allocation, empty key or input).
    #[error("RandomX failed to {action}")]
    RandomX {
        /// What we were doing.
        action: &'static str,
        /// The library's error.
        #[source]
        source: randomx_rs::RandomXError,
    },

    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {reason}")]
    Tls {
        /// What went wrong.
        reason: String,
    },

    /// The client could not reach or talk to the pool.
    #[error("stratum client: {reason}")]
    Client {
        /// What went wrong.
        reason: String,
    },

    /// The pool answered a request with an error object.
    #[error("the pool refused {method}: {message} (code {code})")]
    Refused {
        /// The request's method.
        method: &'static str,
        /// The pool's error code.
        code: i64,
        /// The pool's message.
        message: String,
    },
}

impl Error {
    /// The id of the request this error answers, when it has one a server can reply to.
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
            | Error::RandomX { .. }
            | Error::Tls { .. }
            | Error::Client { .. }
            | Error::Refused { .. } => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
