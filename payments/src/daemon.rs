//! monerod, for what only the node can say about a payment: whether it holds a transaction (in
//! its pool or in a block, how deep), and to relay a signed transaction with its verdict.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use adit_jsonrpc::{Dialect, JsonRpc, RpcAuth};

use crate::error::Result;

/// Where the node has a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Neither in its pool nor in a block.
    Nowhere,
    /// In its pool.
    InPool,
    /// In the block at this height.
    InBlock(u64),
}

/// What the node said to a transaction sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// It took it.
    Accepted,
    /// It refused it, with the reason (double spend, fee too low...).
    Refused(String),
}

/// What the node says of a block, by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSeen {
    /// Its height.
    pub height: u64,
    /// Blocks on top of it on the chain it is on.
    pub depth: u64,
    /// Whether it is off the main chain.
    pub orphan: bool,
    /// The coinbase's total (reward and fees), atomic units.
    pub reward: u64,
    /// The hash of its coinbase transaction.
    pub miner_tx_hash: String,
}

/// A monerod's RPC.
#[derive(Debug, Clone)]
pub struct Daemon {
    rpc: JsonRpc,
}

impl Daemon {
    /// A client of monerod at `url` (e.g. `http://127.0.0.1:18081`).
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        Ok(Self {
            rpc: crate::rpc::client("node", url, Dialect::Monero, RpcAuth::None, timeout)?,
        })
    }

    /// The chain's height (blocks, so the top block is at `height - 1`).
    pub async fn height(&self) -> Result<u64> {
        #[derive(Deserialize)]
        struct Height {
            height: u64,
        }
        let reply: Height = self.rpc.call_plain("get_height", json!({})).await?;
        Ok(reply.height)
    }

    /// What the node knows of the block `hash`; `None` when it does not know it.
    pub async fn block(&self, hash: &str) -> Result<Option<BlockSeen>> {
        #[derive(Deserialize)]
        struct Header {
            height: u64,
            depth: u64,
            orphan_status: bool,
            reward: u64,
            #[serde(default)]
            miner_tx_hash: String,
        }
        #[derive(Deserialize)]
        struct Reply {
            block_header: Header,
        }
        match self
            .rpc
            .call::<Reply>("get_block_header_by_hash", json!({"hash": hash}))
            .await
            .map_err(crate::Error::from)
        {
            Ok(Reply { block_header: h }) => Ok(Some(BlockSeen {
                height: h.height,
                depth: h.depth,
                orphan: h.orphan_status,
                reward: h.reward,
                miner_tx_hash: h.miner_tx_hash,
            })),
            // monerod answers a hash it does not hold (or that is not one) with an error.
            Err(crate::Error::Refused { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where the node has transaction `tx_hash`.
    pub async fn held(&self, tx_hash: &str) -> Result<Held> {
        #[derive(Deserialize)]
        struct Tx {
            #[serde(default)]
            in_pool: bool,
            #[serde(default)]
            block_height: u64,
        }
        #[derive(Deserialize)]
        struct Txs {
            #[serde(default)]
            txs: Vec<Tx>,
        }
        let reply: Txs = self
            .rpc
            .call_plain("get_transactions", json!({"txs_hashes": [tx_hash]}))
            .await?;
        Ok(match reply.txs.first() {
            None => Held::Nowhere,
            Some(tx) if tx.in_pool => Held::InPool,
            Some(tx) => Held::InBlock(tx.block_height),
        })
    }

    /// Sends the signed transaction `tx_blob` (hex) to the node, which relays it if it takes it.
    pub async fn relay(&self, tx_blob: &str) -> Result<Relay> {
        #[derive(Deserialize)]
        struct Sent {
            status: String,
            #[serde(default)]
            reason: String,
            #[serde(flatten)]
            flags: serde_json::Map<String, serde_json::Value>,
        }
        let reply: Sent = self
            .rpc
            .call_plain(
                "send_raw_transaction",
                json!({"tx_as_hex": tx_blob, "do_not_relay": false}),
            )
            .await?;
        if reply.status == "OK" {
            return Ok(Relay::Accepted);
        }
        if reply.status != "Failed" {
            // BUSY (the node is syncing) and the like: not a verdict on the transaction.
            return Err(crate::Error::Protocol {
                service: "node",
                method: "send_raw_transaction".into(),
                reason: format!("status {}", reply.status),
            });
        }
        let mut why: Vec<String> = reply
            .flags
            .iter()
            .filter(|(_, v)| v.as_bool() == Some(true))
            .map(|(k, _)| k.clone())
            .collect();
        if !reply.reason.is_empty() {
            why.push(reply.reason);
        }
        Ok(Relay::Refused(if why.is_empty() {
            "refused without a reason".into()
        } else {
            why.join(", ")
        }))
    }
}
