//! The HTTP JSON-RPC that monero-wallet-rpc and monerod both speak: `POST /json_rpc` with
//! `{"jsonrpc":"2.0","method",...}`, and monerod's plain JSON endpoints (`/get_height`...).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The largest reply read from the node or the wallet: far above any answer adit asks for (a
/// block template, a transfer's metadata), so only a broken or hostile peer reaches it.
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// A client of one service.
#[derive(Debug, Clone)]
pub(crate) struct JsonRpc {
    /// `wallet` or `node`, for errors.
    service: &'static str,
    /// Base URL, e.g. `http://127.0.0.1:18083`.
    base: reqwest::Url,
    /// The HTTP client (with the timeout).
    http: reqwest::Client,
}

impl JsonRpc {
    /// A client of `service` at `base`, every call bounded by `timeout`.
    pub(crate) fn new(service: &'static str, base: &str, timeout: Duration) -> Result<Self> {
        let config = |reason: String| {
            Error::Config(adit_config::Invalid::new(
                format!("payments.{service}"),
                reason,
            ))
        };
        let base = reqwest::Url::parse(base).map_err(|e| config(format!("{base:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(config(format!("{base} is not http or https")));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            service,
            base,
            http,
        })
    }

    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}/{path}",
            self.base.path().trim_end_matches('/')
        ));
        url
    }

    async fn post(&self, path: &str, method: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        let unreachable = |source| Error::Unreachable {
            service: self.service,
            url: url.to_string(),
            source,
        };
        let response = self
            .http
            .post(url.clone())
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = adit_egress::read_capped(response, MAX_REPLY_BYTES)
            .await
            .map_err(unreachable)?;
        if body.truncated {
            return Err(Error::Protocol {
                service: self.service,
                method: method.to_string(),
                reason: format!("HTTP {status}, a reply over {MAX_REPLY_BYTES} bytes"),
            });
        }
        let text = String::from_utf8_lossy(&body.bytes);
        serde_json::from_str(&text).map_err(|e| Error::Protocol {
            service: self.service,
            method: method.to_string(),
            reason: format!(
                "HTTP {status}, not JSON ({e}): {}",
                text.chars().take(200).collect::<String>()
            ),
        })
    }

    /// Calls JSON-RPC `method` with `params`.
    pub(crate) async fn call<R: DeserializeOwned>(&self, method: &str, params: Value) -> Result<R> {
        let body = json!({"jsonrpc": "2.0", "id": "0", "method": method, "params": params});
        let reply = self.post("json_rpc", method, &body).await?;
        if let Some(error) = reply.get("error") {
            return Err(Error::Refused {
                service: self.service,
                method: method.to_string(),
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
                    .to_string(),
            });
        }
        self.decode(method, reply.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Posts `body` to monerod's plain endpoint `/path`.
    pub(crate) async fn other<R: DeserializeOwned>(&self, path: &str, body: Value) -> Result<R> {
        let reply = self.post(path, path, &body).await?;
        self.decode(path, reply)
    }

    fn decode<R: DeserializeOwned>(&self, method: &str, value: Value) -> Result<R> {
        serde_json::from_value(value).map_err(|e| Error::Protocol {
            service: self.service,
            method: method.to_string(),
            reason: e.to_string(),
        })
    }
}
