//! OpenSY's node over JSON-RPC (Bitcoin Core's dialect, through the shared `rpc` transport:
//! timeouts, retries on transport errors only, the circuit breaker): templates with long poll,
//! block submission with the node's BIP22 answer, block ids and headers by height, the chain's
//! state and address checks.

use bitcoin::BlockHash;
use serde::Deserialize;
use serde_json::{Value, json};

use super::template::GbtReply;
use crate::error::{Error, Result};
use adit_jsonrpc::BreakerState;
use adit_jsonrpc::{Dialect, JsonRpc, RpcAuth, RpcConfig};

/// A client of an OpenSY node's RPC; cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenSyRpc {
    /// The transport.
    rpc: JsonRpc,
}

/// The node's answer to a submitted block (BIP22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// `null`: the block was accepted.
    Accepted,
    /// A reason: `duplicate`, `inconclusive`, `high-hash-randomx`, `bad-txnmrklroot`, …
    Refused(String),
}

/// A block header as `getblockheader` gives it, the fields adit uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HeaderInfo {
    /// The block id, in the RPC's hex.
    pub hash: String,
    /// Its height.
    pub height: u64,
    /// How many blocks confirm it (1 for the tip; -1 when it is not on the main chain).
    pub confirmations: i64,
    /// Its time.
    pub time: u64,
    /// Its nonce.
    pub nonce: u32,
    /// Its compact target, in hex.
    pub bits: String,
    /// The previous block's id (absent for genesis).
    #[serde(default)]
    pub previousblockhash: Option<String>,
}

/// `getblockchaininfo`, the fields adit uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChainInfo {
    /// `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub chain: String,
    /// Blocks on the main chain after genesis (the tip's height).
    pub blocks: u64,
    /// The tip's id.
    pub bestblockhash: String,
    /// Whether the node is still catching up.
    #[serde(default)]
    pub initialblockdownload: bool,
}

impl OpenSyRpc {
    /// A client for the node at `url` (e.g. `http://127.0.0.1:19642`) with `auth`.
    pub fn new(url: &str, auth: RpcAuth, config: RpcConfig) -> Result<Self> {
        Ok(Self {
            rpc: JsonRpc::new("node", url, Dialect::Bitcoin, auth, config)?,
        })
    }

    /// A client of the same node for long polls: calls may take `timeout`, are not retried,
    /// and have a breaker of their own.
    pub fn patient(&self, timeout: std::time::Duration) -> Result<Self> {
        Ok(Self {
            rpc: self.rpc.patient(timeout)?,
        })
    }

    /// The endpoint calls go to.
    pub fn endpoint(&self) -> &str {
        self.rpc.endpoint()
    }

    /// The circuit breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.rpc.breaker_state()
    }

    /// A template (`{"rules":["segwit"]}`, which the node requires); with `longpollid`, the
    /// node answers once the template would change.
    pub async fn get_block_template(&self, longpollid: Option<&str>) -> Result<GbtReply> {
        let mut request = json!({"rules": ["segwit"]});
        if let Some(id) = longpollid {
            request["longpollid"] = json!(id);
        }
        Ok(self.rpc.call("getblocktemplate", json!([request])).await?)
    }

    /// Submits a whole block (hex) and returns the node's BIP22 answer.
    pub async fn submit_block(&self, block_hex: &str) -> Result<Submitted> {
        let answer: Value = self.rpc.call("submitblock", json!([block_hex])).await?;
        match answer {
            Value::Null => Ok(Submitted::Accepted),
            Value::String(reason) => Ok(Submitted::Refused(reason)),
            other => Err(Error::NodeResponse {
                method: "submitblock",
                reason: format!("neither null nor a reason: {other}"),
            }),
        }
    }

    /// The id of the main-chain block at `height`.
    pub async fn get_block_hash(&self, height: u64) -> Result<BlockHash> {
        let hex: String = self.rpc.call("getblockhash", json!([height])).await?;
        hex.parse().map_err(|e| Error::NodeResponse {
            method: "getblockhash",
            reason: format!("{hex:?}: {e}"),
        })
    }

    /// The header of block `hash`.
    pub async fn get_block_header(&self, hash: &BlockHash) -> Result<HeaderInfo> {
        Ok(self
            .rpc
            .call("getblockheader", json!([hash.to_string(), true]))
            .await?)
    }

    /// The chain's state.
    pub async fn get_blockchain_info(&self) -> Result<ChainInfo> {
        Ok(self.rpc.call("getblockchaininfo", json!([])).await?)
    }

    /// Whether the node takes `address` as one of its network's.
    pub async fn validate_address(&self, address: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct Valid {
            isvalid: bool,
        }
        let v: Valid = self.rpc.call("validateaddress", json!([address])).await?;
        Ok(v.isvalid)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A node that answers every request with `status` and `body`, recording what it was sent.
    async fn node(
        status: u16,
        body: &'static str,
    ) -> (String, tokio::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0; 16 * 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let _ = tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (url, rx)
    }

    fn config() -> RpcConfig {
        RpcConfig {
            timeout: Duration::from_secs(5),
            retries: 0,
            ..RpcConfig::default()
        }
    }

    #[tokio::test]
    async fn a_null_result_is_an_accepted_block_and_a_string_its_refusal() {
        let (url, mut sent) = node(200, r#"{"result":null,"error":null,"id":"0"}"#).await;
        let auth = RpcAuth::Basic {
            user: "u".into(),
            password: "p".into(),
        };
        let rpc = OpenSyRpc::new(&url, auth, config()).unwrap();
        assert_eq!(rpc.submit_block("00").await.unwrap(), Submitted::Accepted);
        let request = sent.recv().await.unwrap();
        assert!(request.contains("\"submitblock\""), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: basic dtpw"),
            "basic auth u:p: {request}"
        );
        let (url, _) = node(
            200,
            r#"{"result":"high-hash-randomx","error":null,"id":"0"}"#,
        )
        .await;
        let rpc = OpenSyRpc::new(&url, RpcAuth::None, config()).unwrap();
        assert_eq!(
            rpc.submit_block("00").await.unwrap(),
            Submitted::Refused("high-hash-randomx".into())
        );
    }

    #[tokio::test]
    async fn an_error_in_an_http_500_is_the_node_s_answer_not_an_outage() {
        // Bitcoin Core's legacy answer to a refused call.
        let (url, _) = node(
            500,
            r#"{"result":null,"error":{"code":-8,"message":"getblocktemplate must be called with the segwit rule set"},"id":"0"}"#,
        )
        .await;
        let rpc = OpenSyRpc::new(&url, RpcAuth::None, config()).unwrap();
        match rpc.get_block_template(None).await {
            Err(Error::NodeRejected { code, message, .. }) => {
                assert_eq!(code, -8);
                assert!(message.contains("segwit"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(rpc.breaker_state(), BreakerState::Closed { .. }));
        // A 500 without an error object is an outage.
        let (url, _) = node(500, "oops").await;
        let rpc = OpenSyRpc::new(&url, RpcAuth::None, config()).unwrap();
        assert!(matches!(
            rpc.get_blockchain_info().await,
            Err(Error::NodeUnreachable { .. })
        ));
    }

    #[tokio::test]
    async fn the_cookie_is_read_for_each_call() {
        let dir = tempfile::tempdir().unwrap();
        let cookie = dir.path().join(".cookie");
        std::fs::write(&cookie, "__cookie__:abc\n").unwrap();
        let (url, mut sent) =
            node(200, r#"{"result":{"isvalid":true},"error":null,"id":"0"}"#).await;
        let rpc = OpenSyRpc::new(&url, RpcAuth::Cookie(cookie.clone()), config()).unwrap();
        assert!(rpc.validate_address("rsyl1x").await.unwrap());
        let request = sent.recv().await.unwrap().to_ascii_lowercase();
        // base64("__cookie__:abc")
        assert!(request.contains("basic x19jb29rawvfxzphymm="), "{request}");
        std::fs::remove_file(&cookie).unwrap();
        assert!(matches!(
            rpc.validate_address("rsyl1x").await,
            Err(Error::NodeUnreachable { .. })
        ));
    }
}
