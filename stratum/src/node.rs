//! The node the pool mines on, behind one type: monerod over JSON-RPC ([`MoneroRpc`]), the
//! built-in simulated chain ([`SimChain`]) or an OpenSY node ([`OpenSyNode`], real or
//! simulated), plus [`watch_tip`], which notices new blocks by polling (and, on OpenSY, at once
//! through the node's template long poll).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::chain::{BlockHeader, NodeInfo, Template, Tip};
use crate::error::Result;
use crate::jobs::{BLOB_ID_BYTES, Work};
use crate::monerod::MoneroRpc;
use crate::opensy::OpenSyNode;
use crate::simchain::SimChain;

/// The node the pool mines on: monerod or the simulated chain, with the same methods. Cheap to
/// clone; clones share the client or the chain.
#[derive(Debug, Clone)]
pub enum Node {
    /// A real monerod over JSON-RPC.
    Monerod(MoneroRpc),
    /// The built-in simulated chain (`--node sim`).
    Sim(SimChain),
    /// An OpenSY node over JSON-RPC (`chain = "opensy"`).
    OpenSy(OpenSyNode),
}

impl Node {
    /// Whether the node can be reached, as far as the client knows: a monerod whose circuit
    /// breaker is open or on trial (its last calls could not reach it) cannot; its reason
    /// names how many calls in a row failed. `/ready` reports it.
    pub fn reachable(&self) -> std::result::Result<(), String> {
        match self {
            Node::Monerod(rpc) => match rpc.breaker_state() {
                crate::BreakerState::Open { failures, .. }
                | crate::BreakerState::HalfOpen { failures, .. } => Err(format!(
                    "monerod unreachable: {failures} calls in a row failed (circuit breaker open)"
                )),
                crate::BreakerState::Closed { .. } => Ok(()),
            },
            Node::OpenSy(node) => match node.rpc.breaker_state() {
                crate::BreakerState::Open { failures, .. }
                | crate::BreakerState::HalfOpen { failures, .. } => Err(format!(
                    "the OpenSY node is unreachable: {failures} calls in a row failed (circuit breaker open)"
                )),
                crate::BreakerState::Closed { .. } => Ok(()),
            },
            Node::Sim(_) => Ok(()),
        }
    }

    /// Work on the node's current template, paying `wallet`.
    pub async fn work(&self, wallet: &str) -> Result<Work> {
        match self {
            Node::OpenSy(node) => node.work(wallet).await,
            Node::Monerod(rpc) => {
                let template = rpc.get_block_template(wallet, BLOB_ID_BYTES).await?;
                let subsidy = rpc.emission(template.height.saturating_sub(1)).await?;
                Work::from_template(&template, subsidy)
            }
            Node::Sim(sim) => {
                // The simulated chain's blocks carry no transactions: the reward is all subsidy.
                let template = sim.get_block_template(wallet, BLOB_ID_BYTES)?;
                Work::from_template(&template, template.expected_reward)
            }
        }
    }

    /// A Monero-format template paying `wallet_address` with `reserve_size` reserved bytes (at
    /// most 255); an OpenSY node's templates are read through [`Node::work`].
    pub async fn get_block_template(
        &self,
        wallet_address: &str,
        reserve_size: usize,
    ) -> Result<Template> {
        match self {
            Node::Monerod(rpc) => rpc.get_block_template(wallet_address, reserve_size).await,
            Node::Sim(sim) => sim.get_block_template(wallet_address, reserve_size),
            Node::OpenSy(_) => Err(crate::Error::NodeConfig {
                reason: "an OpenSY node has no Monero-format template; use Node::work".into(),
            }),
        }
    }

    /// Submits a complete block (hex); the node's refusal is [`Error::NodeRejected`].
    pub async fn submit_block(&self, block_blob_hex: &str) -> Result<()> {
        match self {
            Node::Monerod(rpc) => rpc.submit_block(block_blob_hex).await,
            Node::Sim(sim) => sim.submit_block(block_blob_hex).await,
            Node::OpenSy(node) => node.submit_block(block_blob_hex).await,
        }
    }

    /// The header of the chain tip.
    pub async fn get_last_block_header(&self) -> Result<BlockHeader> {
        match self {
            Node::Monerod(rpc) => rpc.get_last_block_header().await,
            Node::Sim(sim) => Ok(sim.get_last_block_header()),
            Node::OpenSy(node) => node.last_block_header().await,
        }
    }

    /// The header of the main-chain block at `height`.
    pub async fn get_block_header_by_height(&self, height: u64) -> Result<BlockHeader> {
        match self {
            Node::Monerod(rpc) => rpc.get_block_header_by_height(height).await,
            Node::Sim(sim) => sim.get_block_header_by_height(height),
            Node::OpenSy(node) => node.block_header_by_height(height).await,
        }
    }

    /// The node's state.
    pub async fn get_info(&self) -> Result<NodeInfo> {
        match self {
            Node::Monerod(rpc) => rpc.get_info().await,
            Node::Sim(sim) => Ok(sim.get_info()),
            Node::OpenSy(node) => node.info().await,
        }
    }

    /// The chain tip.
    pub async fn tip(&self) -> Result<Tip> {
        let header = self.get_last_block_header().await?;
        Ok(Tip {
            height: header.height,
            hash: header.hash,
        })
    }
}

/// Polls `node` for its tip every `interval` and publishes it on `tip` whenever it changes (the
/// first successful poll publishes too), until `shutdown` is cancelled or every receiver is gone.
///
/// A failed poll is logged (once per outage, not once per poll) and the loop carries on; the
/// channel keeps the last known tip meanwhile. Polls that fall behind are delayed, not bunched.
/// On an OpenSY node a template long poll runs beside the polling, and each of its answers
/// polls the tip at once.
pub async fn watch_tip(
    node: Node,
    interval: Duration,
    tip: watch::Sender<Option<Tip>>,
    shutdown: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let long_poll = shutdown.child_token();
    let _stop_long_poll = long_poll.clone().drop_guard();
    if let Node::OpenSy(opensy) = &node {
        match opensy.rpc.patient(crate::opensy::node::LONG_POLL_TIMEOUT) {
            Ok(rpc) => {
                tokio::spawn(crate::opensy::node::long_poll(
                    rpc,
                    changed.clone(),
                    interval,
                    long_poll,
                ));
            }
            Err(e) => tracing::warn!(error = %e, "no template long poll; the pool polls its tip"),
        }
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tip.closed() => return,
            _ = ticks.tick() => {}
            () = changed.notified() => {}
        }
        let polled = tokio::select! {
            () = shutdown.cancelled() => return,
            polled = node.tip() => polled,
        };
        match polled {
            Ok(new) => {
                if failing {
                    tracing::info!(height = new.height, "node tip polling recovered");
                    failing = false;
                }
                tip.send_if_modified(|current| {
                    let changed = *current != Some(new);
                    if changed {
                        tracing::debug!(height = new.height, hash = %hex::encode(new.hash), "new chain tip");
                        *current = Some(new);
                    }
                    changed
                });
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(error = %err, "cannot poll the node's tip; keeping the last one");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simchain::SimConfig;

    #[tokio::test(start_paused = true)]
    async fn watch_tip_publishes_changes_and_stops_on_cancel() {
        let sim = SimChain::new(SimConfig {
            difficulty: 1,
            ..SimConfig::default()
        })
        .unwrap();
        let node = Node::Sim(sim.clone());
        let (tx, mut rx) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch_tip(
            node.clone(),
            Duration::from_secs(1),
            tx,
            shutdown.clone(),
        ));

        rx.changed().await.unwrap();
        let genesis = rx.borrow_and_update().unwrap();
        assert_eq!(genesis.height, 0);

        // Difficulty 1: the template itself, nonce zero, is a block.
        let template = node.get_block_template("any", 8).await.unwrap();
        node.submit_block(&hex::encode(&template.blocktemplate_blob))
            .await
            .unwrap();
        rx.changed().await.unwrap();
        let tip = rx.borrow_and_update().unwrap();
        assert_eq!(tip.height, 1);
        assert_eq!(tip, node.tip().await.unwrap());
        assert_ne!(tip.hash, genesis.hash);

        shutdown.cancel();
        task.await.unwrap();
    }
}
