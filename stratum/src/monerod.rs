//! monerod's JSON-RPC client: templates, block submission and headers.
//!
//! Timeouts, retries and the circuit breaker are the `rpc` module's, shared with OpenSY's
//! client.
//!
//! **Difficulties wider than 64 bits** (monerod's `wide_difficulty`) are kept whole in
//! `wide_difficulty` and saturated to `u64::MAX` in `difficulty`. A saturated network difficulty
//! is lower than the real one, so the pool submits every real block (and at worst a few
//! candidates the node refuses) rather than missing one.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::chain::{BlockHeader, NodeInfo, Template};
use crate::error::{Error, Result};
use adit_jsonrpc::BreakerState;
use adit_jsonrpc::{Dialect, JsonRpc, RpcAuth, RpcConfig};

/// A client for monerod's JSON-RPC; cheap to clone (clones share the connection pool and the
/// circuit breaker).
#[derive(Debug, Clone)]
pub struct MoneroRpc {
    /// The transport.
    rpc: JsonRpc,
}

impl MoneroRpc {
    /// A client for the node at `base_url` (e.g. `http://127.0.0.1:18081`); no request is made.
    pub fn new(base_url: &str, config: RpcConfig) -> Result<Self> {
        Ok(Self {
            rpc: JsonRpc::new("node", base_url, Dialect::Monero, RpcAuth::None, config)?,
        })
    }

    /// The JSON-RPC endpoint calls go to.
    pub fn endpoint(&self) -> &str {
        self.rpc.endpoint()
    }

    /// The circuit breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.rpc.breaker_state()
    }

    /// A template paying `wallet_address`, with `reserve_size` bytes (at most 255) reserved in
    /// the miner transaction's extra for extra nonces. The template is checked to parse.
    pub async fn get_block_template(
        &self,
        wallet_address: &str,
        reserve_size: usize,
    ) -> Result<Template> {
        const METHOD: &str = "get_block_template";
        let raw: RawTemplate = self
            .rpc
            .call(
                METHOD,
                json!({"wallet_address": wallet_address, "reserve_size": reserve_size}),
            )
            .await?;
        let wide_difficulty = wide_difficulty(
            METHOD,
            raw.difficulty,
            raw.difficulty_top64,
            raw.wide_difficulty.as_deref(),
        )?;
        let template = Template {
            blocktemplate_blob: hex::decode(&raw.blocktemplate_blob).map_err(|err| {
                Error::NodeResponse {
                    method: METHOD,
                    reason: format!("blocktemplate_blob is not hex: {err}"),
                }
            })?,
            reserved_offset: usize::try_from(raw.reserved_offset).map_err(|_| {
                Error::NodeResponse {
                    method: METHOD,
                    reason: format!("reserved_offset {} is out of range", raw.reserved_offset),
                }
            })?,
            reserve_size,
            height: raw.height,
            difficulty: saturate(wide_difficulty),
            wide_difficulty,
            seed_hash: hash32(METHOD, "seed_hash", &raw.seed_hash)?,
            next_seed_hash: match raw.next_seed_hash.as_str() {
                "" => None,
                hex => Some(hash32(METHOD, "next_seed_hash", hex)?),
            },
            prev_hash: hash32(METHOD, "prev_hash", &raw.prev_hash)?,
            expected_reward: raw.expected_reward,
        };
        if reserve_size > 0 {
            template
                .block_template()
                .map_err(|err| Error::NodeResponse {
                    method: METHOD,
                    reason: format!("the template does not parse: {err}"),
                })?;
        }
        Ok(template)
    }

    /// Submits a complete block (hex). The node's refusal is [`Error::NodeRejected`] with its
    /// code and message (monerod: -6 "Wrong block blob", -7 "Block not accepted").
    pub async fn submit_block(&self, block_blob_hex: &str) -> Result<()> {
        let _: Value = self
            .rpc
            .call("submit_block", json!([block_blob_hex]))
            .await?;
        Ok(())
    }

    /// The header of the chain tip.
    pub async fn get_last_block_header(&self) -> Result<BlockHeader> {
        const METHOD: &str = "get_last_block_header";
        let raw: HeaderResult = self.rpc.call(METHOD, json!({})).await?;
        raw.block_header.parse(METHOD)
    }

    /// The header of the main-chain block at `height`.
    pub async fn get_block_header_by_height(&self, height: u64) -> Result<BlockHeader> {
        const METHOD: &str = "get_block_header_by_height";
        let raw: HeaderResult = self.rpc.call(METHOD, json!({ "height": height })).await?;
        raw.block_header.parse(METHOD)
    }

    /// The emission of the main-chain block at `height`: its coinbase without the fees
    /// (`get_coinbase_tx_sum` over that one block), saturated to `u64::MAX`.
    pub async fn emission(&self, height: u64) -> Result<u64> {
        const METHOD: &str = "get_coinbase_tx_sum";
        let raw: CoinbaseSum = self
            .rpc
            .call(METHOD, json!({ "height": height, "count": 1 }))
            .await?;
        Ok(if raw.emission_amount_top64 == 0 {
            raw.emission_amount
        } else {
            u64::MAX
        })
    }

    /// The node's state.
    pub async fn get_info(&self) -> Result<NodeInfo> {
        const METHOD: &str = "get_info";
        let raw: RawInfo = self.rpc.call(METHOD, json!({})).await?;
        let wide = wide_difficulty(
            METHOD,
            raw.difficulty,
            raw.difficulty_top64,
            raw.wide_difficulty.as_deref(),
        )?;
        Ok(NodeInfo {
            height: raw.height,
            target_height: raw.target_height,
            top_block_hash: hash32(METHOD, "top_block_hash", &raw.top_block_hash)?,
            difficulty: saturate(wide),
            synchronized: raw.synchronized,
            busy_syncing: raw.busy_syncing,
            offline: raw.offline,
            nettype: raw.nettype,
            version: raw.version,
        })
    }
}
/// A 32-byte hash from the node's hex.
fn hash32(method: &'static str, field: &str, hex: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).map_err(|err| Error::NodeResponse {
        method,
        reason: format!("{field} {hex:?} is not a 32-byte hex hash: {err}"),
    })?;
    Ok(out)
}

/// The full difficulty from monerod's fields: `wide_difficulty` ("0x…") when present, else
/// `difficulty_top64 << 64 | difficulty`.
fn wide_difficulty(method: &'static str, low: u64, top64: u64, wide: Option<&str>) -> Result<u128> {
    match wide {
        Some(wide) => {
            let digits = wide
                .strip_prefix("0x")
                .or_else(|| wide.strip_prefix("0X"))
                .unwrap_or(wide);
            u128::from_str_radix(digits, 16).map_err(|err| Error::NodeResponse {
                method,
                reason: format!("wide_difficulty {wide:?} is not a 128-bit hex number: {err}"),
            })
        }
        None => Ok(u128::from(top64) << 64 | u128::from(low)),
    }
}

/// A wide difficulty as a `u64`, saturated (see the module docs).
fn saturate(wide: u128) -> u64 {
    u64::try_from(wide).unwrap_or(u64::MAX)
}

/// monerod's `get_block_template` result, the fields we use.
#[derive(Deserialize)]
struct RawTemplate {
    /// The block template, hex.
    blocktemplate_blob: String,
    /// Offset of the reserved space.
    reserved_offset: u64,
    /// Low 64 bits of the difficulty.
    difficulty: u64,
    /// High 64 bits of the difficulty.
    #[serde(default)]
    difficulty_top64: u64,
    /// The whole difficulty, "0x…" (newer monerod).
    #[serde(default)]
    wide_difficulty: Option<String>,
    /// The template's height.
    height: u64,
    /// RandomX seed hash, hex.
    seed_hash: String,
    /// The next epoch's seed hash, hex, or "".
    #[serde(default)]
    next_seed_hash: String,
    /// The tip's id, hex.
    prev_hash: String,
    /// The reward, atomic units.
    expected_reward: u64,
}

/// The `result` of `get_coinbase_tx_sum`, the fields we use.
#[derive(Deserialize)]
struct CoinbaseSum {
    /// Low 64 bits of the blocks' emission.
    emission_amount: u64,
    /// High 64 bits of it.
    #[serde(default)]
    emission_amount_top64: u64,
}

/// The `result` of monerod's header methods.
#[derive(Deserialize)]
struct HeaderResult {
    /// The header.
    block_header: RawHeader,
}

/// monerod's `block_header` object, the fields we use.
#[derive(Deserialize)]
struct RawHeader {
    /// Height.
    height: u64,
    /// Block id, hex.
    hash: String,
    /// Previous block id, hex.
    prev_hash: String,
    /// Timestamp.
    timestamp: u64,
    /// Nonce.
    nonce: u32,
    /// Reward.
    reward: u64,
    /// Low 64 bits of the difficulty.
    difficulty: u64,
    /// High 64 bits of the difficulty.
    #[serde(default)]
    difficulty_top64: u64,
    /// The whole difficulty, "0x…".
    #[serde(default)]
    wide_difficulty: Option<String>,
    /// Off the main chain.
    orphan_status: bool,
    /// Blocks on top.
    depth: u64,
}

impl RawHeader {
    /// The header with hashes decoded.
    fn parse(self, method: &'static str) -> Result<BlockHeader> {
        let wide = wide_difficulty(
            method,
            self.difficulty,
            self.difficulty_top64,
            self.wide_difficulty.as_deref(),
        )?;
        Ok(BlockHeader {
            height: self.height,
            hash: hash32(method, "hash", &self.hash)?,
            prev_hash: hash32(method, "prev_hash", &self.prev_hash)?,
            timestamp: self.timestamp,
            nonce: self.nonce,
            reward: self.reward,
            difficulty: saturate(wide),
            orphan_status: self.orphan_status,
            depth: self.depth,
        })
    }
}

/// monerod's `get_info` result, the fields we use.
#[derive(Deserialize)]
struct RawInfo {
    /// Chain length.
    height: u64,
    /// Sync target.
    #[serde(default)]
    target_height: u64,
    /// Tip id, hex.
    top_block_hash: String,
    /// Low 64 bits of the difficulty.
    difficulty: u64,
    /// High 64 bits of the difficulty.
    #[serde(default)]
    difficulty_top64: u64,
    /// The whole difficulty, "0x…".
    #[serde(default)]
    wide_difficulty: Option<String>,
    /// Synchronised.
    #[serde(default)]
    synchronized: bool,
    /// Busy syncing.
    #[serde(default)]
    busy_syncing: bool,
    /// Offline.
    #[serde(default)]
    offline: bool,
    /// Network type.
    #[serde(default)]
    nettype: String,
    /// Version.
    #[serde(default)]
    version: String,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use adit_jsonrpc::BreakerConfig;

    /// The captured `get_block_template` answer of `monerod --regtest --fixed-difficulty 100`.
    const CAPTURED_TEMPLATE: &str = include_str!("../tests/data/regtest_template_h1.json");

    /// A one-connection-per-request HTTP server that answers the n-th request with
    /// `answers[n]` (status, body), repeating the last; returns its URL and a request counter.
    async fn fake_node(answers: Vec<(u16, String)>) -> (String, Arc<Mutex<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(Mutex::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let n = {
                    let mut count = seen.lock().unwrap();
                    *count += 1;
                    *count - 1
                };
                let (status, body) = answers[n.min(answers.len() - 1)].clone();
                tokio::spawn(async move {
                    // Read the request head and its body.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let read = socket.read(&mut buf).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..read]);
                        let text = String::from_utf8_lossy(&request).to_lowercase();
                        if let Some(head_end) = text.find("\r\n\r\n") {
                            let length = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= head_end + 4 + length {
                                break;
                            }
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (url, count)
    }

    fn fast_config(retries: u32, failure_threshold: u32) -> RpcConfig {
        RpcConfig {
            timeout: Duration::from_secs(5),
            retries,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            breaker: BreakerConfig {
                failure_threshold,
                cool_down: Duration::from_secs(60),
            },
        }
    }

    #[tokio::test]
    async fn parses_a_captured_template() {
        let (url, _) = fake_node(vec![(200, CAPTURED_TEMPLATE.to_string())]).await;
        let rpc = MoneroRpc::new(&url, fast_config(0, 1)).unwrap();
        let template = rpc.get_block_template("addr", 8).await.unwrap();
        assert_eq!(template.height, 1);
        assert_eq!(template.difficulty, 100);
        assert_eq!(template.wide_difficulty, 100);
        assert_eq!(template.reserved_offset, 126);
        assert_eq!(template.reserve_size, 8);
        assert_eq!(template.expected_reward, 35_184_338_534_400);
        assert_eq!(template.next_seed_hash, None);
        assert_eq!(
            hex::encode(template.prev_hash),
            "418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3"
        );
        assert_eq!(template.seed_hash, template.prev_hash);
        let captured: Value = serde_json::from_str(CAPTURED_TEMPLATE).unwrap();
        assert_eq!(
            hex::encode(template.block_template().unwrap().hashing_blob()),
            captured["result"]["blockhashing_blob"].as_str().unwrap()
        );
    }

    #[tokio::test]
    async fn node_errors_are_final_and_transport_errors_are_retried() {
        // A JSON-RPC error: one request, the node's code and message, breaker still closed.
        let refusal =
            r#"{"error":{"code":-6,"message":"Wrong block blob"},"id":"0","jsonrpc":"2.0"}"#;
        let (url, count) = fake_node(vec![(200, refusal.into())]).await;
        let rpc = MoneroRpc::new(&url, fast_config(3, 1)).unwrap();
        let err = rpc.submit_block("00").await.unwrap_err();
        assert!(
            matches!(&err, Error::NodeRejected { method: "submit_block", code: -6, message } if message == "Wrong block blob"),
            "{err}"
        );
        assert_eq!(*count.lock().unwrap(), 1);
        assert_eq!(rpc.breaker_state(), BreakerState::Closed { failures: 0 });

        // Two 503s, then an answer: three requests, success.
        let ok = r#"{"id":"0","jsonrpc":"2.0","result":{"status":"OK","untrusted":false}}"#;
        let (url, count) = fake_node(vec![
            (503, String::new()),
            (503, String::new()),
            (200, ok.into()),
        ])
        .await;
        let rpc = MoneroRpc::new(&url, fast_config(2, 1)).unwrap();
        rpc.submit_block("00").await.unwrap();
        assert_eq!(*count.lock().unwrap(), 3);

        // A status other than OK is the node's answer too.
        let busy = r#"{"id":"0","jsonrpc":"2.0","result":{"status":"BUSY"}}"#;
        let (url, _) = fake_node(vec![(200, busy.into())]).await;
        let rpc = MoneroRpc::new(&url, fast_config(2, 1)).unwrap();
        assert!(matches!(
            rpc.submit_block("00").await,
            Err(Error::NodeRejected { code: 0, .. })
        ));

        // Something that is not JSON-RPC: a clear error, no retry.
        let (url, count) = fake_node(vec![(200, "<html>".into())]).await;
        let rpc = MoneroRpc::new(&url, fast_config(2, 1)).unwrap();
        assert!(matches!(
            rpc.get_info().await,
            Err(Error::NodeResponse {
                method: "get_info",
                ..
            })
        ));
        assert_eq!(*count.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn the_breaker_opens_on_a_failing_node_and_fails_fast() {
        let (url, count) = fake_node(vec![(500, String::new())]).await;
        let rpc = MoneroRpc::new(&url, fast_config(1, 2)).unwrap();
        for _ in 0..2 {
            let err = rpc.get_info().await.unwrap_err();
            assert!(
                matches!(&err, Error::NodeUnreachable { attempts: 2, reason, .. } if reason.contains("500")),
                "{err}"
            );
        }
        assert_eq!(*count.lock().unwrap(), 4);
        let err = rpc.get_info().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::NodeUnavailable {
                    failures: 2,
                    retry_in: Some(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("circuit breaker open"), "{err}");
        // Failing fast: the node saw nothing more.
        assert_eq!(*count.lock().unwrap(), 4);
    }

    #[test]
    fn refuses_bad_urls_and_joins_the_endpoint() {
        for bad in ["not a url", "ftp://host/", "127.0.0.1:18081"] {
            assert!(
                matches!(
                    MoneroRpc::new(bad, RpcConfig::default()),
                    Err(Error::NodeConfig { .. })
                ),
                "{bad}"
            );
        }
        for (base, endpoint) in [
            ("http://127.0.0.1:18081", "http://127.0.0.1:18081/json_rpc"),
            ("http://node:18081/", "http://node:18081/json_rpc"),
            ("https://node/monero/", "https://node/monero/json_rpc"),
        ] {
            assert_eq!(
                MoneroRpc::new(base, RpcConfig::default())
                    .unwrap()
                    .endpoint(),
                endpoint
            );
        }
    }

    #[test]
    fn wide_difficulties_saturate() {
        assert_eq!(wide_difficulty("m", 100, 0, Some("0x64")).unwrap(), 100);
        assert_eq!(wide_difficulty("m", 5, 1, None).unwrap(), (1u128 << 64) + 5);
        let wide = wide_difficulty("m", 0, 0, Some("0x1000000000000000a")).unwrap();
        assert_eq!(wide, (1u128 << 64) + 10);
        assert_eq!(saturate(wide), u64::MAX);
        assert_eq!(saturate(u128::from(u64::MAX)), u64::MAX);
        assert!(matches!(
            wide_difficulty("m", 0, 0, Some("0xzz")),
            Err(Error::NodeResponse { .. })
        ));
    }
}
