//! JSON-RPC to a node, whichever chain's: timeouts per attempt, retries with exponential
//! backoff only when the node could not be reached (connection refused, timeout, HTTP 5xx
//! without a JSON-RPC error in it, 429), and a circuit breaker (the `breaker` module) that
//! fails fast while the node is down. An answer from the node, an error such as a refused
//! block included, is final.
//!
//! Two dialects: monerod's (`/json_rpc`, a `status` inside results) and Bitcoin Core's, which
//! OpenSY's node speaks (HTTP basic auth from a user and password or the node's cookie file, a
//! `null` result for success, HTTP 500 or 404 carrying the error object).

use adit_retry::Backoff;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::breaker::{
    Admission, BreakerConfig, BreakerState, CallOutcome, admit_call, record_call,
};
use crate::error::{Error, Result};

/// Timeouts, retries and the circuit breaker of a node's RPC client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcConfig {
    /// Deadline of one attempt, connection included.
    pub timeout: Duration,
    /// Further attempts after the first when the node cannot be reached.
    pub retries: u32,
    /// Wait before the first retry; it doubles for each further one.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// When calls start failing fast.
    pub breaker: BreakerConfig,
}

impl Default for RpcConfig {
    /// 10 s per attempt, 2 retries after 100 ms and 200 ms, and the default breaker.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            breaker: BreakerConfig::default(),
        }
    }
}

/// How a node speaks JSON-RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// monerod: calls at `<base>/json_rpc`; a result may carry a `status` other than `OK`.
    Monero,
    /// Bitcoin Core (and OpenSY): calls at the URL as given; `null` is a result.
    Bitcoin,
}

/// How calls prove who makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcAuth {
    /// No credentials (monerod without `--rpc-login`).
    None,
    /// HTTP basic auth with a user and password (`-rpcuser`/`-rpcpassword`, `-rpcauth`).
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// The node's cookie file (`<datadir>/<network>/.cookie`, `__cookie__:<password>`),
    /// read again for every attempt since the node writes a new one when it restarts.
    Cookie(PathBuf),
}

/// A JSON-RPC client of one node; cheap to clone (clones share the connection pool and the
/// circuit breaker).
#[derive(Debug, Clone)]
pub(crate) struct JsonRpc {
    /// The shared state.
    inner: Arc<RpcInner>,
}

/// What the clones of a [`JsonRpc`] share.
#[derive(Debug)]
struct RpcInner {
    /// The HTTP client (a connection pool).
    http: reqwest::Client,
    /// Where calls go.
    endpoint: reqwest::Url,
    /// How the node speaks.
    dialect: Dialect,
    /// Credentials.
    auth: RpcAuth,
    /// Timeouts, retries, breaker settings.
    config: RpcConfig,
    /// The breaker; locked only to step it, never across an await.
    breaker: Mutex<BreakerState>,
}

/// The largest answer read from a node (a template with a full block of transactions, in hex,
/// is a few MB).
const MAX_ANSWER: usize = 32 << 20;

impl JsonRpc {
    /// A client for the node at `base_url` (http or https); no request is made.
    pub(crate) fn new(
        base_url: &str,
        dialect: Dialect,
        auth: RpcAuth,
        config: RpcConfig,
    ) -> Result<Self> {
        let base = reqwest::Url::parse(base_url).map_err(|err| Error::NodeConfig {
            reason: format!("node URL {base_url:?} is invalid: {err}"),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::NodeConfig {
                reason: format!("node URL {base_url:?} is not http or https"),
            });
        }
        if config.timeout.is_zero() {
            return Err(Error::NodeConfig {
                reason: "the RPC timeout must be positive".into(),
            });
        }
        let mut endpoint = base;
        if dialect == Dialect::Monero {
            endpoint.set_path(&format!(
                "{}/json_rpc",
                endpoint.path().trim_end_matches('/')
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .build()
            .map_err(|err| Error::NodeConfig {
                reason: format!("cannot build the HTTP client: {}", error_chain(&err)),
            })?;
        Ok(Self {
            inner: Arc::new(RpcInner {
                http,
                endpoint,
                dialect,
                auth,
                config,
                breaker: Mutex::new(BreakerState::default()),
            }),
        })
    }

    /// The endpoint calls go to.
    pub(crate) fn endpoint(&self) -> &str {
        self.inner.endpoint.as_str()
    }

    /// The circuit breaker's current state.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        *self.inner.lock_breaker()
    }

    /// One JSON-RPC call through the breaker, with retries; `result` decoded as `R`.
    pub(crate) async fn call<R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<R> {
        let inner = &*self.inner;
        let admission = {
            let mut state = inner.lock_breaker();
            let (next, admission) = admit_call(*state, Instant::now());
            *state = next;
            admission
        };
        if let Admission::Rejected { failures, retry_in } = admission {
            metrics::counter!("adit_pool_node_rpc_errors_total", "method" => method, "kind" => "breaker_open").increment(1);
            return Err(Error::NodeUnavailable {
                url: inner.endpoint.to_string(),
                failures,
                retry_in,
            });
        }
        let mut guard = CallGuard {
            inner,
            finished: false,
        };
        let outcome = inner.call_with_retries(method, &params).await;
        guard.finish(match &outcome {
            Err(Error::NodeUnreachable { .. }) => CallOutcome::Unreachable,
            Ok(_) | Err(_) => CallOutcome::Reached,
        });
        if let Err(e) = &outcome {
            let kind = match e {
                Error::NodeUnreachable { .. } => "unreachable",
                Error::NodeRejected { .. } => "rejected",
                _ => "other",
            };
            metrics::counter!("adit_pool_node_rpc_errors_total", "method" => method, "kind" => kind).increment(1);
        }
        let result = outcome?;
        serde_json::from_value(result).map_err(|err| Error::NodeResponse {
            method,
            reason: format!("unexpected result: {err}"),
        })
    }
}

impl RpcInner {
    /// The breaker, even if a panicking thread poisoned the lock (its state is always valid).
    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attempts the call until the node answers or the retries run out; the `result` member of
    /// the answer, or the node's error.
    async fn call_with_retries(&self, method: &'static str, params: &Value) -> Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": "0", "method": method, "params": params});
        let attempts = self.config.retries.saturating_add(1);
        let mut backoff = Backoff::new(self.config.backoff, self.config.max_backoff).waits();
        let mut attempt = 1;
        loop {
            match self.attempt(method, &body).await {
                Ok(answer) => return answer,
                Err(reason) if attempt >= attempts => {
                    return Err(Error::NodeUnreachable {
                        method,
                        url: self.endpoint.to_string(),
                        attempts,
                        reason,
                    });
                }
                Err(reason) => {
                    tracing::debug!(method, attempt, %reason, "node RPC attempt failed; retrying");
                    tokio::time::sleep(backoff.next_wait()).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt: `Err(reason)` when the node could not be reached (worth retrying), else the
    /// node's answer.
    async fn attempt(
        &self,
        method: &'static str,
        body: &Value,
    ) -> std::result::Result<Result<Value>, String> {
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .timeout(self.config.timeout)
            .json(body);
        match &self.auth {
            RpcAuth::None => {}
            RpcAuth::Basic { user, password } => {
                request = request.basic_auth(user, Some(password));
            }
            RpcAuth::Cookie(path) => {
                let (user, password) = read_cookie(path)?;
                request = request.basic_auth(user, Some(password));
            }
        }
        let mut response = request.send().await.map_err(|err| error_chain(&err))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| error_chain(&err))? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Ok(Err(Error::NodeResponse {
                    method,
                    reason: format!("the answer is over {MAX_ANSWER} bytes"),
                }));
            }
            bytes.extend_from_slice(&chunk);
        }
        // Bitcoin Core answers a refused call with HTTP 500 (404 for an unknown method) and
        // the error object in the body: that is the node's answer, not an outage.
        if let Some(error) = error_object(&bytes) {
            return Ok(Err(error.into_error(method)));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(format!("HTTP {status}"));
        }
        if !status.is_success() {
            return Ok(Err(Error::NodeRejected {
                method,
                code: i64::from(status.as_u16()),
                message: format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            }));
        }
        Ok(parse_answer(self.dialect, method, &bytes))
    }
}

/// The user and password in a node's cookie file (`user:password` on one line); a file that
/// cannot be read is an outage (the node may be writing it as it starts).
fn read_cookie(path: &std::path::Path) -> std::result::Result<(String, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the cookie file {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or_default();
    line.split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .ok_or_else(|| format!("the cookie file {} is not user:password", path.display()))
}

/// Reports an admitted call's outcome to the breaker, or [`CallOutcome::Abandoned`] if the call's
/// future is dropped first.
struct CallGuard<'a> {
    /// The client whose breaker this is.
    inner: &'a RpcInner,
    /// Set once the outcome was recorded.
    finished: bool,
}

impl CallGuard<'_> {
    /// Records how the call ended.
    fn finish(&mut self, outcome: CallOutcome) {
        self.finished = true;
        let mut state = self.inner.lock_breaker();
        let before = *state;
        *state = record_call(&self.inner.config.breaker, before, outcome, Instant::now());
        match (before, *state) {
            (
                BreakerState::Open { .. } | BreakerState::HalfOpen { .. },
                BreakerState::Closed { .. },
            ) => {
                tracing::info!(url = %self.inner.endpoint, "node reachable again; circuit breaker closed");
            }
            (
                BreakerState::Closed { .. } | BreakerState::HalfOpen { .. },
                BreakerState::Open { failures, .. },
            ) => {
                tracing::warn!(url = %self.inner.endpoint, failures, "node unreachable; circuit breaker open");
            }
            _ => {}
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(CallOutcome::Abandoned);
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, serde::Deserialize)]
struct RpcError {
    /// The error code (monerod's and Bitcoin Core's are negative).
    code: i64,
    /// What the node said.
    message: String,
}

impl RpcError {
    fn into_error(self, method: &'static str) -> Error {
        Error::NodeRejected {
            method,
            code: self.code,
            message: self.message,
        }
    }
}

/// The error object of an answer, when `body` is one that carries it.
fn error_object(body: &[u8]) -> Option<RpcError> {
    #[derive(serde::Deserialize)]
    struct Failed {
        error: RpcError,
    }
    serde_json::from_slice::<Failed>(body).ok().map(|f| f.error)
}

/// A JSON-RPC answer: its `result` (after checking a monerod `status` in it) or the node's
/// error. A `null` result is Bitcoin Core's success (`submitblock`).
fn parse_answer(dialect: Dialect, method: &'static str, body: &[u8]) -> Result<Value> {
    /// A JSON-RPC response; `result` is absent, `null` or a value.
    #[derive(serde::Deserialize)]
    struct Answer {
        /// The result, on success (`Some(Null)` for `null`).
        #[serde(default, deserialize_with = "present")]
        result: Option<Value>,
        /// The error, on failure.
        #[serde(default)]
        error: Option<RpcError>,
    }
    /// A present member, `null` included.
    fn present<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Value>, D::Error> {
        <Value as serde::Deserialize>::deserialize(d).map(Some)
    }

    let answer: Answer = serde_json::from_slice(body).map_err(|err| Error::NodeResponse {
        method,
        reason: format!("not a JSON-RPC response: {err}"),
    })?;
    match (answer.error, answer.result, dialect) {
        (Some(error), _, _) => Err(error.into_error(method)),
        (None, Some(Value::Null), Dialect::Monero) | (None, None, _) => Err(Error::NodeResponse {
            method,
            reason: "neither a result nor an error".into(),
        }),
        (None, Some(result), Dialect::Monero) => {
            match result.get("status").and_then(Value::as_str) {
                None | Some("OK") => Ok(result),
                Some(status) => Err(Error::NodeRejected {
                    method,
                    code: 0,
                    message: format!("status {status}"),
                }),
            }
        }
        (None, Some(result), Dialect::Bitcoin) => Ok(result),
    }
}

/// An error and its causes on one line ("error sending request: …: connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_result_is_bitcoin_s_success_and_not_monero_s() {
        let null = br#"{"result":null,"error":null,"id":"0"}"#;
        assert_eq!(
            parse_answer(Dialect::Bitcoin, "submitblock", null).unwrap(),
            Value::Null
        );
        assert!(matches!(
            parse_answer(Dialect::Monero, "submit_block", null),
            Err(Error::NodeResponse { .. })
        ));
        let busy = br#"{"result":{"status":"BUSY"}}"#;
        assert!(matches!(
            parse_answer(Dialect::Monero, "get_info", busy),
            Err(Error::NodeRejected { .. })
        ));
        assert!(parse_answer(Dialect::Bitcoin, "getblockchaininfo", busy).is_ok());
        let failed =
            br#"{"result":null,"error":{"code":-25,"message":"bad-txns-inputs-missingorspent"}}"#;
        assert!(error_object(failed).is_some());
        assert!(error_object(null).is_none());
    }

    proptest::proptest! {
        /// A node's answer is outside bytes: any body is a result or an error, never a panic.
        #[test]
        fn any_answer_is_a_result_or_an_error(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_answer(Dialect::Monero, "m", &body);
            let _ = parse_answer(Dialect::Bitcoin, "m", &body);
            let _ = error_object(&body);
        }
    }
}
