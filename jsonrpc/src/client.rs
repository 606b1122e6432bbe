//! The client: timeouts per attempt, retries with exponential backoff only when the peer could
//! not be reached (connection refused, timeout, HTTP 5xx without a JSON-RPC error in it, 429),
//! and a circuit breaker ([`crate::breaker`]) that fails fast while the peer is down. An answer
//! from the peer, an error such as a refused block included, is final.
//!
//! Two dialects: monero's (`/json_rpc`, a `status` inside results, and monerod's plain JSON
//! endpoints such as `/get_height`) and Bitcoin Core's, which OpenSY's node and wallet speak
//! (HTTP basic auth from a user and password or the node's cookie file, a `null` result for
//! success, HTTP 500 or 404 carrying the error object).

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

/// How a peer speaks JSON-RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// monerod and monero-wallet-rpc: calls at `<base>/json_rpc`; a result may carry a
    /// `status` other than `OK`.
    Monero,
    /// Bitcoin Core (and OpenSY): calls at the URL as given (`/wallet/<name>` for a wallet);
    /// `null` is a result.
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

/// A JSON-RPC client of one peer; cheap to clone (clones share the connection pool and the
/// circuit breaker).
#[derive(Debug, Clone)]
pub struct JsonRpc {
    /// The shared state.
    inner: Arc<RpcInner>,
}

/// What the clones of a [`JsonRpc`] share.
#[derive(Debug)]
struct RpcInner {
    /// What the peer is (`node`, `wallet`), in errors and metrics.
    service: &'static str,
    /// The HTTP client (a connection pool).
    http: reqwest::Client,
    /// Where calls go.
    endpoint: reqwest::Url,
    /// The URL as given, under which monerod's plain endpoints are.
    base: reqwest::Url,
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
    /// A client of `service` (`node`, `wallet`: it names the peer in errors and metrics) at
    /// `base_url` (http or https); no request is made.
    pub fn new(
        service: &'static str,
        base_url: &str,
        dialect: Dialect,
        auth: RpcAuth,
        config: RpcConfig,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::Config { service, reason };
        let base = reqwest::Url::parse(base_url)
            .map_err(|err| invalid(format!("{service} URL {base_url:?} is invalid: {err}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "{service} URL {base_url:?} is not http or https"
            )));
        }
        if config.timeout.is_zero() {
            return Err(invalid("the RPC timeout must be positive".into()));
        }
        let mut endpoint = base.clone();
        if dialect == Dialect::Monero {
            endpoint.set_path(&format!(
                "{}/json_rpc",
                endpoint.path().trim_end_matches('/')
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .build()
            .map_err(|err| {
                invalid(format!(
                    "cannot build the HTTP client: {}",
                    error_chain(&err)
                ))
            })?;
        Ok(Self {
            inner: Arc::new(RpcInner {
                service,
                http,
                endpoint,
                base,
                dialect,
                auth,
                config,
                breaker: Mutex::new(BreakerState::default()),
            }),
        })
    }

    /// A client of the same peer whose calls may take `timeout` and are never retried, with a
    /// connection pool and breaker of its own: for a call the peer answers only once something
    /// changes (a template long poll), which must not hold up or trip the other calls.
    pub fn patient(&self, timeout: Duration) -> Result<Self> {
        let inner = &*self.inner;
        let config = RpcConfig {
            timeout,
            retries: 0,
            ..inner.config
        };
        Self::new(
            inner.service,
            inner.base.as_str(),
            inner.dialect,
            inner.auth.clone(),
            config,
        )
    }

    /// The endpoint calls go to.
    pub fn endpoint(&self) -> &str {
        self.inner.endpoint.as_str()
    }

    /// The circuit breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        *self.inner.lock_breaker()
    }

    /// One JSON-RPC call through the breaker, with retries; `result` decoded as `R`.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<R> {
        let body = json!({"jsonrpc": "2.0", "id": "0", "method": method, "params": params});
        let endpoint = self.inner.endpoint.clone();
        self.through_breaker(method, endpoint, body, Shape::Envelope)
            .await
    }

    /// One call of monerod's plain JSON endpoint `/path` (`get_height`, `get_transactions`,
    /// `send_raw_transaction`): `body` posted as it is, the whole answer decoded as `R`.
    pub async fn call_plain<R: DeserializeOwned>(
        &self,
        path: &'static str,
        body: Value,
    ) -> Result<R> {
        let mut url = self.inner.base.clone();
        url.set_path(&format!("{}/{path}", url.path().trim_end_matches('/')));
        self.through_breaker(path, url, body, Shape::Plain).await
    }

    /// A call admitted by the breaker, attempted with retries, its outcome fed back to the
    /// breaker and counted, its answer decoded as `R`.
    async fn through_breaker<R: DeserializeOwned>(
        &self,
        method: &'static str,
        url: reqwest::Url,
        body: Value,
        shape: Shape,
    ) -> Result<R> {
        let inner = &*self.inner;
        let service = inner.service;
        let admission = {
            let mut state = inner.lock_breaker();
            let (next, admission) = admit_call(*state, Instant::now());
            *state = next;
            admission
        };
        if let Admission::Rejected { failures, retry_in } = admission {
            metrics::counter!("adit_rpc_errors_total", "service" => service, "method" => method, "kind" => "breaker_open").increment(1);
            return Err(Error::Unavailable {
                service,
                url: url.to_string(),
                failures,
                retry_in,
            });
        }
        let mut guard = CallGuard {
            inner,
            finished: false,
        };
        let outcome = inner.call_with_retries(method, &url, &body, shape).await;
        guard.finish(match &outcome {
            Err(Error::Unreachable { .. }) => CallOutcome::Unreachable,
            Ok(_) | Err(_) => CallOutcome::Reached,
        });
        if let Err(e) = &outcome {
            let kind = match e {
                Error::Unreachable { .. } => "unreachable",
                Error::Rejected { .. } => "rejected",
                _ => "other",
            };
            metrics::counter!("adit_rpc_errors_total", "service" => service, "method" => method, "kind" => kind).increment(1);
        }
        let result = outcome?;
        serde_json::from_value(result).map_err(|err| Error::Response {
            service,
            method,
            reason: format!("unexpected result: {err}"),
        })
    }
}

/// What a call's answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A JSON-RPC envelope: `result` or `error`.
    Envelope,
    /// monerod's plain endpoints: the answer is the result.
    Plain,
}

impl RpcInner {
    /// The breaker, even if a panicking thread poisoned the lock (its state is always valid).
    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attempts the call until the node answers or the retries run out; the `result` member of
    /// the answer, or the node's error.
    async fn call_with_retries(
        &self,
        method: &'static str,
        url: &reqwest::Url,
        body: &Value,
        shape: Shape,
    ) -> Result<Value> {
        let attempts = self.config.retries.saturating_add(1);
        let mut backoff = Backoff::new(self.config.backoff, self.config.max_backoff).waits();
        let mut attempt = 1;
        loop {
            match self.attempt(method, url, body, shape).await {
                Ok(answer) => return answer,
                Err(reason) if attempt >= attempts => {
                    return Err(Error::Unreachable {
                        service: self.service,
                        method,
                        url: url.to_string(),
                        attempts,
                        reason,
                    });
                }
                Err(reason) => {
                    tracing::debug!(service = self.service, method, attempt, %reason, "RPC attempt failed; retrying");
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
        url: &reqwest::Url,
        body: &Value,
        shape: Shape,
    ) -> std::result::Result<Result<Value>, String> {
        let service = self.service;
        let mut request = self
            .http
            .post(url.clone())
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
                return Ok(Err(Error::Response {
                    service,
                    method,
                    reason: format!("the answer is over {MAX_ANSWER} bytes"),
                }));
            }
            bytes.extend_from_slice(&chunk);
        }
        // Bitcoin Core answers a refused call with HTTP 500 (404 for an unknown method) and
        // the error object in the body: that is the node's answer, not an outage.
        if let Some(error) = error_object(&bytes) {
            return Ok(Err(error.into_error(service, method)));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(format!("HTTP {status}"));
        }
        if !status.is_success() {
            return Ok(Err(Error::Rejected {
                service,
                method,
                code: i64::from(status.as_u16()),
                message: format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            }));
        }
        Ok(match shape {
            Shape::Envelope => parse_answer(self.dialect, service, method, &bytes),
            Shape::Plain => serde_json::from_slice(&bytes).map_err(|err| Error::Response {
                service,
                method,
                reason: format!("not JSON: {err}"),
            }),
        })
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
                tracing::info!(service = self.inner.service, url = %self.inner.endpoint, "reachable again; circuit breaker closed");
            }
            (
                BreakerState::Closed { .. } | BreakerState::HalfOpen { .. },
                BreakerState::Open { failures, .. },
            ) => {
                tracing::warn!(service = self.inner.service, url = %self.inner.endpoint, failures, "unreachable; circuit breaker open");
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
    fn into_error(self, service: &'static str, method: &'static str) -> Error {
        Error::Rejected {
            service,
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
fn parse_answer(
    dialect: Dialect,
    service: &'static str,
    method: &'static str,
    body: &[u8],
) -> Result<Value> {
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

    let answer: Answer = serde_json::from_slice(body).map_err(|err| Error::Response {
        service,
        method,
        reason: format!("not a JSON-RPC response: {err}"),
    })?;
    match (answer.error, answer.result, dialect) {
        (Some(error), _, _) => Err(error.into_error(service, method)),
        (None, Some(Value::Null), Dialect::Monero) | (None, None, _) => Err(Error::Response {
            service,
            method,
            reason: "neither a result nor an error".into(),
        }),
        (None, Some(result), Dialect::Monero) => {
            match result.get("status").and_then(Value::as_str) {
                None | Some("OK") => Ok(result),
                Some(status) => Err(Error::Rejected {
                    service,
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
            parse_answer(Dialect::Bitcoin, "node", "submitblock", null).unwrap(),
            Value::Null
        );
        assert!(matches!(
            parse_answer(Dialect::Monero, "node", "submit_block", null),
            Err(Error::Response { .. })
        ));
        let busy = br#"{"result":{"status":"BUSY"}}"#;
        assert!(matches!(
            parse_answer(Dialect::Monero, "node", "get_info", busy),
            Err(Error::Rejected { .. })
        ));
        assert!(parse_answer(Dialect::Bitcoin, "node", "getblockchaininfo", busy).is_ok());
        let failed =
            br#"{"result":null,"error":{"code":-25,"message":"bad-txns-inputs-missingorspent"}}"#;
        assert!(error_object(failed).is_some());
        assert!(error_object(null).is_none());
    }

    proptest::proptest! {
        /// A node's answer is outside bytes: any body is a result or an error, never a panic.
        #[test]
        fn any_answer_is_a_result_or_an_error(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_answer(Dialect::Monero, "node", "m", &body);
            let _ = parse_answer(Dialect::Bitcoin, "node", "m", &body);
            let _ = error_object(&body);
        }
    }
}
