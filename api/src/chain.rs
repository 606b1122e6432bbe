//! The chain's height, for the confirmations the pool views show: monerod's
//! `get_block_count`, asked with a short timeout so a slow node never slows a view.

use serde_json::Value;

use crate::error::{QueryError, Result};

/// Where the chain's height comes from: monerod's `get_block_count`.
#[derive(Debug, Clone)]
pub struct ChainTip {
    /// `<node>/json_rpc`.
    url: String,
    /// With a short timeout: a slow node leaves confirmations out, it does not slow the view.
    http: reqwest::Client,
}

impl ChainTip {
    /// The tip of the monerod at `node` (e.g. `http://127.0.0.1:18081`).
    pub fn new(node: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        Ok(Self {
            url: format!("{}/json_rpc", node.trim_end_matches('/')),
            http,
        })
    }

    /// The height of the top block, or `None` (logged) when the node does not say.
    pub(crate) async fn top(&self) -> Option<i64> {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": "0", "method": "get_block_count"});
        let reply: Value = match self.http.post(&self.url).json(&body).send().await {
            Ok(r) => r.json().await.ok()?,
            Err(e) => {
                tracing::debug!(error = %e, "no chain height for confirmations");
                return None;
            }
        };
        reply["result"]["count"]
            .as_i64()
            .map(|count| count.saturating_sub(1))
    }
}
