//! Blocks the cluster found (issue 61): a share the coordinator forwarded that the pool turned
//! into a block. The coordinator cannot tell from a job (a pool's job carries the share target,
//! not the network's), so it remembers the last shares it forwarded (job and nonce, by worker)
//! and, where its pool is an adit pool on the same NATS, follows the pool's blocks
//! (`mining.block.*`): a block whose job and nonce it forwarded counts for the cluster and for
//! the worker that found it, once (`blocks_found` in the REST stats, `GetClusterStats`,
//! `GetWorkerStats`, and the `coopmine_blocks_found` gauge). With a foreign pool it stays 0.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use adit_schemas::{AnyEvent, BlockStatus, EventKind};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Forwarded shares remembered (a block is announced within seconds of its share).
const REMEMBERED: usize = 4096;

/// What the ledger holds.
#[derive(Debug, Default)]
struct Ledger {
    /// The last shares forwarded: (job, nonce) → worker, oldest first.
    forwarded: VecDeque<((String, String), String)>,
    /// The blocks counted, by (job, nonce).
    counted: BTreeSet<(String, String)>,
    /// Blocks by worker.
    by_worker: BTreeMap<String, u64>,
}

/// The cluster's blocks.
#[derive(Debug, Default, Clone)]
pub struct Blocks {
    ledger: Arc<Mutex<Ledger>>,
}

impl Blocks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that `worker`'s share (`job`, `nonce` as sent upstream) was forwarded.
    pub fn forwarded(&self, job: &str, nonce: &str, worker: &str) {
        let mut ledger = self.lock();
        ledger.forwarded.push_back((
            (job.to_owned(), nonce.to_ascii_lowercase()),
            worker.to_owned(),
        ));
        while ledger.forwarded.len() > REMEMBERED {
            ledger.forwarded.pop_front();
        }
    }

    /// Counts the pool's block of `job` and `nonce` if the cluster forwarded that share and it
    /// is not counted yet; the worker who found it.
    pub fn found(&self, job: &str, nonce: &str) -> Option<String> {
        let key = (job.to_owned(), nonce.to_ascii_lowercase());
        let mut ledger = self.lock();
        let worker = ledger
            .forwarded
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, w)| w.clone())?;
        if !ledger.counted.insert(key) {
            return None;
        }
        *ledger.by_worker.entry(worker.clone()).or_default() += 1;
        let total: u64 = ledger.by_worker.values().sum();
        metrics::gauge!("coopmine_blocks_found").set(total as f64);
        Some(worker)
    }

    /// Blocks found by the cluster.
    pub fn total(&self) -> u64 {
        self.lock().by_worker.values().sum()
    }

    /// Blocks found by `worker`.
    pub fn of(&self, worker: &str) -> u64 {
        self.lock().by_worker.get(worker).copied().unwrap_or(0)
    }
}

/// Follows the pool's blocks on `client` until `stop`, counting the cluster's in `blocks`.
pub async fn follow(client: async_nats::Client, blocks: Blocks, stop: CancellationToken) {
    let subject = EventKind::Block.filter(None);
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(%subject, error = %e, "cannot follow the pool's blocks; blocks_found stays 0");
            return;
        }
    };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            m = sub.next() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let Ok(AnyEvent::Block(block)) = EventKind::Block.decode(
            &message.payload,
            &adit_schemas::ValidationPolicy::default(),
            chrono::Utc::now(),
        ) else {
            continue;
        };
        if block.status != BlockStatus::Submitted {
            continue;
        }
        if let Some(worker) = blocks.found(&block.job_id, &block.nonce) {
            tracing::info!(worker, height = block.height, hash = %block.hash, "the cluster found a block");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_counts_once_for_the_worker_whose_share_it_was() {
        let blocks = Blocks::default();
        blocks.forwarded("j1", "0000AB12", "rig1");
        blocks.forwarded("j1", "0000ab13", "rig2");
        assert_eq!(blocks.found("j1", "0000ab12").as_deref(), Some("rig1"));
        assert_eq!(blocks.found("j1", "0000AB12"), None, "counted twice");
        assert_eq!(blocks.found("j2", "0000ab13"), None, "another job's nonce");
        assert_eq!(
            blocks.found("j1", "ffffffff"),
            None,
            "a share never forwarded"
        );
        assert_eq!(
            (blocks.total(), blocks.of("rig1"), blocks.of("rig2")),
            (1, 1, 0)
        );
    }

    #[test]
    fn only_the_last_shares_are_remembered() {
        let blocks = Blocks::default();
        blocks.forwarded("old", "00000001", "rig1");
        for n in 0..REMEMBERED {
            blocks.forwarded("j", &format!("{n:08x}"), "rig2");
        }
        assert_eq!(blocks.found("old", "00000001"), None);
        assert_eq!(blocks.found("j", "00000005").as_deref(), Some("rig2"));
    }
}
