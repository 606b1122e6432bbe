//! Block maturity: a block the node accepted is `pending` until the node shows it at its height
//! `confirmations` deep (then `confirmed`), or shows another block there (then `orphaned`, and
//! its payouts are void). Each change is published as the block's event with its new status,
//! so the `blocks` table holds one row per status a block went through.
//!
//! [`judge`] is pure. [`run`] checks the pending blocks on every new tip (and every 30 s); after
//! a restart, [`pending_from_stream`] finds the blocks still pending in the MINING stream.

use std::collections::BTreeMap;
use std::time::Duration;

use adit_schemas::{AnyEvent, Block, BlockStatus, EventKind, names};
use async_nats::jetstream;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::chain::{BlockHeader, Tip};
use crate::error::{Error, Result};
use crate::node::Node;

/// How often pending blocks are checked even without a new tip.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// The new status of the block `hash`, given the main chain's header at its height (`None`
/// when the chain is not that high, e.g. during a reorg), or `None` while it stays pending.
pub fn judge(
    hash: &str,
    on_chain: Option<&BlockHeader>,
    confirmations: u64,
) -> Option<BlockStatus> {
    let header = on_chain?;
    if !hex::encode(header.hash).eq_ignore_ascii_case(hash) {
        return Some(BlockStatus::Orphaned);
    }
    (header.depth >= confirmations).then_some(BlockStatus::Confirmed)
}

/// The main chain's header at `height`, `None` when the chain is not that high, or the error
/// when the node could not say.
async fn header_at(node: &Node, height: u64) -> Result<Option<BlockHeader>> {
    match node.get_block_header_by_height(height).await {
        Ok(header) => Ok(Some(header)),
        Err(Error::NodeRejected { code: -2, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks every pending block once; returns the blocks whose status changed, with it.
pub async fn check(node: &Node, pending: &mut Vec<Block>, confirmations: u64) -> Vec<Block> {
    let mut changed = Vec::new();
    let mut still = Vec::with_capacity(pending.len());
    for block in pending.drain(..) {
        let status = match header_at(node, block.height).await {
            Ok(header) => judge(&block.hash, header.as_ref(), confirmations),
            Err(e) => {
                tracing::debug!(height = block.height, error = %e, "maturity check deferred");
                None
            }
        };
        match status {
            Some(status) => changed.push(Block {
                status,
                error: None,
                ts: chrono::Utc::now(),
                ..block
            }),
            None => still.push(block),
        }
    }
    *pending = still;
    changed
}

/// Follows `pending` blocks (and those `accepted` sends) until `stop`, publishing each status
/// change through `events`.
pub async fn run(
    node: Node,
    confirmations: u64,
    mut pending: Vec<Block>,
    mut accepted: mpsc::Receiver<Block>,
    events: mpsc::Sender<AnyEvent>,
    mut tip: watch::Receiver<Option<Tip>>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            block = accepted.recv() => match block {
                Some(block) => {
                    pending.push(block);
                    continue;
                }
                None => return,
            },
            changed = tip.changed() => if changed.is_err() { return },
            _ = every.tick() => {}
        }
        metrics::gauge!("adit_pool_blocks_pending").set(pending.len() as f64);
        for block in check(&node, &mut pending, confirmations).await {
            tracing::info!(height = block.height, hash = %block.hash, status = ?block.status, "block status changed");
            if let Err(lost) = events.send(AnyEvent::Block(block)).await {
                tracing::error!(event = ?lost.0, "block status not recorded: the publisher has stopped");
                return;
            }
        }
    }
}

/// The blocks of `pool` whose last recorded status in the MINING stream is `submitted`.
pub async fn pending_from_stream(js: &jetstream::Context, pool: &str) -> Result<Vec<Block>> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| Error::BlockHistory {
        pool: pool.to_string(),
        source: e,
    };
    let consumer = adit_bus::reader::ordered_in(
        js,
        names::STREAM_MINING,
        &EventKind::Block.filter(Some(pool)),
        jetstream::consumer::DeliverPolicy::All,
    )
    .await
    .map_err(|e| failed(e.into()))?;
    let mut latest: BTreeMap<String, Block> = BTreeMap::new();
    let mut messages = consumer.messages().await.map_err(|e| failed(e.into()))?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let Ok(Some(message)) = next else { break };
        let message = message.map_err(|e| failed(e.into()))?;
        let pending_after = message.info().map(|i| i.pending).unwrap_or(0);
        match serde_json::from_slice::<Block>(&message.payload) {
            Ok(block) => {
                latest.insert(block.hash.clone(), block);
            }
            Err(e) => tracing::warn!(error = %e, "an unreadable block event in the MINING stream"),
        }
        if pending_after == 0 {
            break;
        }
    }
    Ok(latest
        .into_values()
        .filter(|b| b.status == BlockStatus::Submitted)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(hash: [u8; 32], depth: u64) -> BlockHeader {
        BlockHeader {
            height: 10,
            hash,
            prev_hash: [0; 32],
            timestamp: 0,
            nonce: 0,
            reward: 1,
            difficulty: 1,
            orphan_status: false,
            depth,
        }
    }

    fn ours(sim: &crate::simchain::SimChain, height: u64) -> Block {
        let header = sim.get_block_header_by_height(height).unwrap();
        Block {
            pool: "p".into(),
            height,
            hash: hex::encode(header.hash),
            miner: "m".into(),
            worker: "w".into(),
            job_id: "j".into(),
            nonce: "00".into(),
            reward: header.reward,
            network_difficulty: 1,
            status: BlockStatus::Submitted,
            error: None,
            ts: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn on_the_simulated_chain_blocks_are_confirmed_when_buried_and_orphaned_by_a_reorg() {
        let sim = crate::simchain::SimChain::new(crate::simchain::SimConfig::default()).unwrap();
        let node = Node::Sim(sim.clone());
        sim.advance(5);
        let mut pending = vec![ours(&sim, 3), ours(&sim, 5)];
        assert!(
            check(&node, &mut pending, 3).await.is_empty(),
            "2 and 0 deep"
        );
        sim.advance(1);
        let changed = check(&node, &mut pending, 3).await;
        assert_eq!(changed.len(), 1);
        assert_eq!(
            (changed[0].height, changed[0].status),
            (3, BlockStatus::Confirmed)
        );
        assert_eq!(pending.len(), 1);
        sim.reorg_from(5).unwrap();
        sim.advance(3);
        let changed = check(&node, &mut pending, 3).await;
        assert_eq!(
            (changed[0].height, changed[0].status),
            (5, BlockStatus::Orphaned)
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn a_block_is_pending_then_confirmed_or_orphaned() {
        let ours = hex::encode([7u8; 32]);
        assert_eq!(judge(&ours, None, 60), None, "the chain is not that high");
        assert_eq!(judge(&ours, Some(&header([7; 32], 59)), 60), None);
        assert_eq!(
            judge(&ours, Some(&header([7; 32], 60)), 60),
            Some(BlockStatus::Confirmed)
        );
        assert_eq!(
            judge(&ours.to_uppercase(), Some(&header([7; 32], 60)), 60),
            Some(BlockStatus::Confirmed)
        );
        assert_eq!(
            judge(&ours, Some(&header([8; 32], 0)), 60),
            Some(BlockStatus::Orphaned)
        );
    }
}
