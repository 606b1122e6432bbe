//! What a JSON-RPC call can fail at; each error names the peer (`node`, `wallet`) and the
//! method.

/// Why a call gave no result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client cannot be built (a bad URL, a zero timeout).
    #[error("{service} RPC: {reason}")]
    Config {
        /// The peer.
        service: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The peer could not be reached (connection refused, timeout, HTTP 5xx without an error
    /// object, 429) on any attempt. Counts toward opening the circuit breaker.
    #[error("cannot reach the {service} at {url} for {method} after {attempts} attempts: {reason}")]
    Unreachable {
        /// The peer.
        service: &'static str,
        /// The RPC method.
        method: &'static str,
        /// The endpoint.
        url: String,
        /// Attempts made, retries included.
        attempts: u32,
        /// The last attempt's failure with its causes.
        reason: String,
    },

    /// The circuit breaker is open: the peer failed repeatedly and calls fail fast, without
    /// reaching it, until the cool-down ends.
    #[error(
        "the {service} at {url} is unavailable: circuit breaker open after {failures} consecutive failed calls; {}",
        retry_hint(retry_in)
    )]
    Unavailable {
        /// The peer.
        service: &'static str,
        /// The endpoint.
        url: String,
        /// Consecutive unreachable calls that opened the breaker.
        failures: u32,
        /// Time until a trial call is let through; `None` while one is in flight.
        retry_in: Option<std::time::Duration>,
    },

    /// The peer answered with an error of its own (a refused block, a double spend, an
    /// unknown transaction); never retried.
    #[error("the {service} refused {method}: {message} (code {code})")]
    Rejected {
        /// The peer.
        service: &'static str,
        /// The RPC method.
        method: &'static str,
        /// Its error code (a JSON-RPC code, an HTTP status for a 4xx answer, 0 for a monerod
        /// `status` other than OK).
        code: i64,
        /// Its message.
        message: String,
    },

    /// The peer answered, but not with what the method returns.
    #[error("unexpected answer from the {service} to {method}: {reason}")]
    Response {
        /// The peer.
        service: &'static str,
        /// The RPC method.
        method: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

/// "next attempt in 1.5s" for an open breaker, or that a trial call is under way.
fn retry_hint(retry_in: &Option<std::time::Duration>) -> String {
    match retry_in {
        Some(wait) => format!("next attempt in {:.1}s", wait.as_secs_f64()),
        None => "a trial call is under way".into(),
    }
}

/// The result of a call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
