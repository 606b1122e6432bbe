//! The pool's live figures for Prometheus, under the names pool dashboards already use
//! (`pool_total_hashrate`, `pool_shares_per_second`, `miner_hashrate`…) beside adit's own;
//! `pool_active_miners` and `pool_blocks_found_total` are kept by the server.
//!
//! Hashrate is accepted share difficulty per second over the last five minutes, so it falls to
//! zero once miners are gone. Per-miner series are opt-in and bounded: only the first
//! `per_miner` miners seen get series of their own; every other miner counts under
//! `miner="other"`, so a pool with a million wallets cannot blow up the scrape.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use adit_schemas::{AnyEvent, Share};
use tokio::time::Instant;

/// Window of the hashrate and share-rate estimates.
const WINDOW: Duration = Duration::from_secs(300);
/// Label of the miners beyond the per-miner cap.
const OTHER: &str = "other";

/// Accepted share difficulty over a sliding window.
#[derive(Debug, Default)]
struct Window {
    shares: VecDeque<(Instant, u64)>,
    work: u128,
}

impl Window {
    fn push(&mut self, at: Instant, difficulty: u64) {
        self.shares.push_back((at, difficulty));
        self.work += u128::from(difficulty);
    }

    fn evict(&mut self, now: Instant) {
        while let Some(&(at, difficulty)) = self.shares.front() {
            if now.duration_since(at) <= WINDOW {
                break;
            }
            self.shares.pop_front();
            self.work -= u128::from(difficulty);
        }
    }
}

/// The pool's figures, fed every share and block event.
#[derive(Debug)]
pub struct PoolStats {
    started: Instant,
    per_miner: usize,
    pool: Window,
    miners: HashMap<String, Window>,
}

impl PoolStats {
    /// Figures from `started`, with series for at most `per_miner` miners (0: none).
    pub fn new(started: Instant, per_miner: usize) -> Self {
        Self {
            started,
            per_miner,
            pool: Window::default(),
            miners: HashMap::new(),
        }
    }

    /// The label a miner's series go under.
    fn label(&mut self, miner: &str) -> Option<String> {
        if self.per_miner == 0 {
            return None;
        }
        if self.miners.contains_key(miner) || self.miners.len() < self.per_miner {
            self.miners.entry(miner.to_string()).or_default();
            return Some(miner.to_string());
        }
        Some(OTHER.to_string())
    }

    /// Counts one event seen at `now`.
    pub fn observe(&mut self, now: Instant, event: &AnyEvent) {
        if let AnyEvent::Share(share) = event {
            self.share(now, share);
        }
    }

    fn share(&mut self, now: Instant, share: &Share) {
        if share.accepted {
            self.pool.push(now, share.difficulty);
        }
        let Some(label) = self.label(&share.miner) else {
            return;
        };
        metrics::counter!("miner_shares_submitted_total", "miner" => label.clone()).increment(1);
        if share.accepted {
            metrics::counter!("miner_shares_accepted_total", "miner" => label.clone()).increment(1);
            if let Some(window) = self.miners.get_mut(&label) {
                window.push(now, share.difficulty);
            }
        } else {
            metrics::counter!("miner_shares_rejected_total", "miner" => label).increment(1);
        }
    }

    /// Brings every gauge up to date at `now`; returns the pool hashrate (H/s).
    pub fn export(&mut self, now: Instant) -> f64 {
        self.pool.evict(now);
        let span = now
            .duration_since(self.started)
            .min(WINDOW)
            .as_secs_f64()
            .max(1.0);
        let hashrate = self.pool.work as f64 / span;
        metrics::gauge!("adit_pool_hashrate").set(hashrate);
        metrics::gauge!("pool_total_hashrate").set(hashrate);
        metrics::gauge!("pool_shares_per_second").set(self.pool.shares.len() as f64 / span);
        metrics::gauge!("pool_uptime_seconds").set(now.duration_since(self.started).as_secs_f64());
        for (miner, window) in &mut self.miners {
            window.evict(now);
            let online = !window.shares.is_empty();
            metrics::gauge!("miner_hashrate", "miner" => miner.clone())
                .set(window.work as f64 / span);
            metrics::gauge!("miner_online", "miner" => miner.clone())
                .set(f64::from(u8::from(online)));
        }
        hashrate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(miner: &str, difficulty: u64, accepted: bool) -> AnyEvent {
        AnyEvent::Share(Share {
            pool: "p".into(),
            miner: miner.into(),
            worker: "w".into(),
            job_id: "j".into(),
            nonce: "00".into(),
            difficulty,
            height: 1,
            accepted,
            reason: (!accepted).then(|| "stale".into()),
            ts: chrono::Utc::now(),
            network_difficulty: None,
            reward: None,
            subsidy: None,
            team: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_hashrate_falls_to_zero_once_miners_are_gone() {
        let t0 = Instant::now();
        let mut stats = PoolStats::new(t0, 10);
        for _ in 0..30 {
            stats.observe(t0, &share("a", 1_000, true));
        }
        stats.observe(t0, &share("a", 1_000, false));
        let later = t0 + Duration::from_secs(300);
        assert_eq!(stats.export(later), 30_000.0 / 300.0);
        assert_eq!(stats.export(later + Duration::from_secs(1)), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn per_miner_series_are_capped() {
        let t0 = Instant::now();
        let mut stats = PoolStats::new(t0, 2);
        for m in ["a", "b", "c", "d", "a"] {
            stats.observe(t0, &share(m, 10, true));
        }
        let mut tracked: Vec<&String> = stats.miners.keys().collect();
        tracked.sort();
        assert_eq!(tracked, ["a", "b"], "c and d count as other");
        let mut none = PoolStats::new(t0, 0);
        none.observe(t0, &share("a", 10, true));
        assert!(none.miners.is_empty(), "per-miner series are opt-in");
    }
}
