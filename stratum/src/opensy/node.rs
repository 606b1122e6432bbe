//! OpenSY's node as the pool uses it (`Node::OpenSy`): work from `getblocktemplate` with the
//! RandomX key looked up by height, blocks submitted with the node's BIP22 answer, and headers
//! and the chain's state in the shapes the pool's other parts read. The network (and so the
//! address prefixes and the target limit) is the node's own, read once from
//! `getblockchaininfo`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use bitcoin::BlockHash;

use super::rpc::{HeaderInfo, OpenSyRpc, Submitted};
use super::{
    KEY_BLOCK_INTERVAL, Network, OpenSyTemplate, key_bytes, key_height, rpc_order, script_for,
};
use crate::chain::{BlockHeader, NodeInfo};
use crate::error::{Error, Result};
use crate::jobs::Work;

/// An OpenSY node and the network it reported.
#[derive(Debug, Clone)]
pub struct OpenSyNode {
    /// Its RPC.
    pub rpc: OpenSyRpc,
    /// Its network, once known.
    network: std::sync::Arc<OnceLock<Network>>,
}

impl OpenSyNode {
    /// The pool's view of the node behind `rpc`.
    pub fn new(rpc: OpenSyRpc) -> Self {
        Self {
            rpc,
            network: Default::default(),
        }
    }

    /// The node's network (asked once).
    pub async fn network(&self) -> Result<Network> {
        if let Some(n) = self.network.get() {
            return Ok(*n);
        }
        let info = self.rpc.get_blockchain_info().await?;
        let network = match info.chain.as_str() {
            "main" => Network::Main,
            "regtest" => Network::Regtest,
            "test" | "testnet4" | "signet" => Network::Test,
            other => {
                return Err(Error::NodeResponse {
                    method: "getblockchaininfo",
                    reason: format!("unknown chain {other:?}"),
                });
            }
        };
        Ok(*self.network.get_or_init(|| network))
    }

    /// Work on the node's template, paying `wallet`.
    pub async fn work(&self, wallet: &str) -> Result<Work> {
        let network = self.network().await?;
        let payout = script_for(wallet, network).map_err(|e| Error::NodeConfig {
            reason: format!("the pool's wallet {wallet:?}: {e}"),
        })?;
        let reply = self.rpc.get_block_template(None).await?;
        let template = OpenSyTemplate::new(&reply, payout, network)?;
        let height = template.height;
        let seed_hash = key_bytes(&self.rpc.get_block_hash(key_height(height)).await?);
        // The next block starts an interval: its key (the block that starts this one) is known.
        let next_seed_hash = if (height + 1) % KEY_BLOCK_INTERVAL == 0 {
            let next = key_bytes(&self.rpc.get_block_hash(key_height(height + 1)).await?);
            (next != seed_hash).then_some(next)
        } else {
            None
        };
        Ok(Work {
            height,
            network_difficulty: template.difficulty(),
            seed_hash,
            next_seed_hash,
            reward: template.coinbase_value,
            subsidy: template.subsidy,
            base: Work::base_of(&template)?,
            template: Box::new(template),
        })
    }

    /// Submits a block (hex); a refusal is [`Error::NodeRejected`] carrying the node's reason.
    /// `duplicate` means the node has it (an earlier attempt's answer was lost): accepted.
    pub async fn submit_block(&self, block_hex: &str) -> Result<()> {
        match self.rpc.submit_block(block_hex).await? {
            Submitted::Accepted => Ok(()),
            Submitted::Refused(reason) if reason == "duplicate" => Ok(()),
            Submitted::Refused(reason) => Err(Error::NodeRejected {
                method: "submitblock",
                code: 0,
                message: reason,
            }),
        }
    }

    /// The tip's header.
    pub async fn last_block_header(&self) -> Result<BlockHeader> {
        let info = self.rpc.get_blockchain_info().await?;
        let id = parse_id("getblockchaininfo", &info.bestblockhash)?;
        self.header(&id).await
    }

    /// The header of the main-chain block at `height`.
    pub async fn block_header_by_height(&self, height: u64) -> Result<BlockHeader> {
        let id = self.rpc.get_block_hash(height).await?;
        self.header(&id).await
    }

    /// The node's state, in monerod's convention (`height` is the tip's plus one).
    pub async fn info(&self) -> Result<NodeInfo> {
        let info = self.rpc.get_blockchain_info().await?;
        Ok(NodeInfo {
            height: info.blocks + 1,
            target_height: 0,
            top_block_hash: rpc_bytes("getblockchaininfo", &info.bestblockhash)?,
            difficulty: 0,
            synchronized: !info.initialblockdownload,
            busy_syncing: info.initialblockdownload,
            offline: false,
            nettype: info.chain,
            version: String::new(),
        })
    }

    async fn header(&self, id: &BlockHash) -> Result<BlockHeader> {
        let h: HeaderInfo = self.rpc.get_block_header(id).await?;
        Ok(BlockHeader {
            height: h.height,
            hash: rpc_bytes("getblockheader", &h.hash)?,
            prev_hash: match &h.previousblockhash {
                Some(prev) => rpc_bytes("getblockheader", prev)?,
                None => [0; 32],
            },
            timestamp: h.time,
            nonce: h.nonce,
            reward: 0,
            difficulty: 0,
            orphan_status: h.confirmations < 0,
            depth: u64::try_from(h.confirmations.saturating_sub(1)).unwrap_or(0),
        })
    }
}

/// The longest a template long poll may wait: the node answers one when its tip changes (or,
/// after a minute, when new transactions came), and otherwise not at all.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits on the node's template long poll and pokes `changed` whenever it answers with a new
/// template (a new tip, or new transactions), so the pool looks at the tip at once instead of at
/// its next poll. A failed or timed-out long poll is started again after `pause`; a node that
/// gives no long poll id leaves the pool to its polling alone. Ends when `stop` is cancelled.
pub async fn long_poll(
    rpc: OpenSyRpc,
    changed: Arc<Notify>,
    pause: Duration,
    stop: CancellationToken,
) {
    let mut id: Option<String> = None;
    loop {
        let answer = tokio::select! {
            () = stop.cancelled() => return,
            answer = rpc.get_block_template(id.as_deref()) => answer,
        };
        match answer {
            Ok(reply) => {
                if id.is_some() && reply.longpollid != id {
                    changed.notify_one();
                }
                let Some(next) = reply.longpollid else {
                    tracing::info!("the OpenSY node gives no long poll id; the pool polls its tip");
                    return;
                };
                id = Some(next);
            }
            Err(e) => {
                tracing::debug!(error = %e, "template long poll ended without an answer; starting it again");
                id = None;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// A block id from the RPC's hex.
fn parse_id(method: &'static str, hex: &str) -> Result<BlockHash> {
    hex.parse().map_err(|e| Error::NodeResponse {
        method,
        reason: format!("{hex:?} is not a block id: {e}"),
    })
}

/// A block id's bytes in the RPC's order (as the pool compares and shows ids).
fn rpc_bytes(method: &'static str, hex: &str) -> Result<[u8; 32]> {
    Ok(rpc_order(&parse_id(method, hex)?))
}
