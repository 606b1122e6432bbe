//! The coordinator: the cluster state behind a lock, share judging with the RandomX threads,
//! forwarding and publishing. [`crate::serve::run`] starts it with the upstream task and the
//! two servers (gRPC for workers, REST for people), which call into it and are never named here.
//!
//! A share is acknowledged to its worker only once it is safe: a share that meets the upstream
//! target is forwarded first and answered with the pool's verdict (the pool holds what earns
//! money, and a share forwarded late is worth nothing), and every share is published to the bus
//! (JetStream-acknowledged) before its answer, so a coordinator restart loses no share a worker
//! was told about.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use adit_bus::publish::Publisher;
use adit_schemas::{AnyEvent, ClusterShare, ClusterUpstream, HashrateSample};
use chrono::Utc;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::cluster::{Cluster, Pending, Reject};
use crate::config::ClusterConfig;
use crate::error::Result;
use crate::hasher::Hashers;
use crate::upstream::{Forward, UpstreamEvent};

/// Shares kept for `/api/shares`.
const RECENT_SHARES: usize = 500;

/// How long a worker waits for the upstream's verdict on a forwarded share.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Renders the process's Prometheus metrics, when a recorder is installed.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The upstream as the coordinator last heard of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamStatus {
    /// Logged in now.
    pub connected: bool,
    /// The pool (the last one tried when not connected).
    pub url: String,
    /// Connection number.
    pub generation: u64,
    /// Why the last connection ended or attempt failed.
    pub last_error: Option<String>,
}

/// What a worker is told about its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareOutcome {
    /// Valid, and accepted upstream if forwarded.
    pub accepted: bool,
    /// Why not.
    pub reason: String,
    /// Whether it went upstream.
    pub forwarded: bool,
}

/// Cluster figures.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Cluster id.
    pub cluster: String,
    /// Workers known.
    pub workers_total: usize,
    /// Workers online.
    pub workers_online: usize,
    /// Measured hashrate (from valid shares), H/s.
    pub hashrate_hs: f64,
    /// Reported hashrate, H/s.
    pub reported_hashrate_hs: f64,
    /// Share counters.
    pub shares_valid: u64,
    /// Refused shares.
    pub shares_invalid: u64,
    /// Forwarded shares.
    pub shares_forwarded: u64,
    /// Accepted upstream.
    pub shares_accepted_upstream: u64,
    /// Refused upstream.
    pub shares_rejected_upstream: u64,
    /// Blocks the pool found from shares it forwarded (counted where the pool's blocks can be
    /// followed on NATS: `crate::blocks`).
    pub blocks_found: u64,
    /// The upstream.
    pub upstream: UpstreamStatus,
}

/// One worker's figures.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    /// Id.
    pub worker: String,
    /// Online (holding a slice).
    pub online: bool,
    /// Its slice.
    pub slice: Option<u8>,
    /// Threads.
    pub threads: u32,
    /// Measured hashrate, H/s.
    pub hashrate_hs: f64,
    /// Reported hashrate, H/s.
    pub reported_hashrate_hs: f64,
    /// Hashes it reports having computed since it started.
    pub hashes_total: u64,
    /// Valid shares.
    pub shares_valid: u64,
    /// Refused shares.
    pub shares_invalid: u64,
    /// Forwarded shares.
    pub shares_forwarded: u64,
    /// Blocks the pool found from its shares.
    pub blocks_found: u64,
    /// Ban score.
    pub score: u32,
    /// Banned.
    pub banned: bool,
    /// Last heard from.
    pub last_seen: chrono::DateTime<Utc>,
}

/// A job as `/api/jobs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// The coordinator's id.
    pub job_id: String,
    /// The upstream's id.
    pub upstream_job_id: String,
    /// The pool.
    pub upstream: String,
    /// Height.
    pub height: u64,
    /// Upstream difficulty.
    pub upstream_difficulty: u64,
    /// Internal difficulty.
    pub share_difficulty: u64,
}

/// Everything the servers share.
pub struct Coordinator {
    /// Settings.
    config: ClusterConfig,
    /// The cluster state.
    cluster: Mutex<Cluster>,
    /// Bumped on every new job and every slice change; job streams wake on it.
    changes: watch::Sender<u64>,
    /// The upstream's status.
    upstream: watch::Sender<UpstreamStatus>,
    /// Shares for the upstream task.
    forwards: mpsc::Sender<Forward>,
    /// RandomX threads.
    hashers: Hashers,
    /// The bus, when there is one.
    publisher: Option<Publisher>,
    /// Live updates for `/api/live`.
    live: broadcast::Sender<serde_json::Value>,
    /// The last shares.
    recent: Mutex<VecDeque<ClusterShare>>,
    /// The blocks its forwarded shares became.
    pub(crate) blocks: crate::blocks::Blocks,
    /// Prometheus text.
    pub(crate) metrics: Option<MetricsRender>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("cluster", &self.config.id)
            .finish()
    }
}

impl Coordinator {
    /// The cluster state.
    fn state(&self) -> MutexGuard<'_, Cluster> {
        self.cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Change notifications for job streams.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Live updates.
    pub fn subscribe_live(&self) -> broadcast::Receiver<serde_json::Value> {
        self.live.subscribe()
    }

    /// Sends a live update (no subscriber is not an error).
    fn announce(&self, event: serde_json::Value) {
        if self.live.send(event).is_err() {
            tracing::trace!("no live subscriber");
        }
    }

    /// Registers (or re-registers) `worker`.
    pub fn register(&self, worker: &str, threads: u32) -> Result<u8> {
        let slice = self.state().register(worker, threads, Instant::now())?;
        tracing::info!(worker, slice, threads, "worker registered");
        self.changes.send_modify(|n| *n += 1);
        self.announce(serde_json::json!({"type": "worker", "worker": worker, "state": "online", "slice": slice}));
        self.update_gauges();
        Ok(slice)
    }

    /// A heartbeat; publishes the reported hashrate. False: register again.
    pub async fn heartbeat(&self, worker: &str, hashrate: f64, hashes: u64) -> bool {
        let known = self
            .state()
            .heartbeat(worker, hashrate, hashes, Instant::now());
        if known && let Some(publisher) = &self.publisher {
            let sample = HashrateSample {
                cluster: self.config.id.clone(),
                worker: worker.to_owned(),
                ts: Utc::now(),
                hashrate_hs: if hashrate.is_finite() {
                    hashrate.max(0.0)
                } else {
                    0.0
                },
            };
            if let Err(e) = publisher.publish(&AnyEvent::Hashrate(sample)).await {
                tracing::error!(worker, error = %e, "publishing a hashrate sample failed");
            }
        }
        known
    }

    /// The current job for `worker` in its slice.
    pub fn assign(&self, worker: &str) -> Option<crate::cluster::Assignment> {
        self.state().assign(worker)
    }

    /// Judges a share and answers it: checks, RandomX, forwarding, publishing.
    pub async fn submit(
        &self,
        worker: &str,
        job_id: &str,
        nonce: &str,
        result: &str,
    ) -> ShareOutcome {
        let checked = self.state().check(worker, job_id, nonce, result);
        let (pending, difficulty) = match checked {
            Ok(pending) => {
                let d = pending.share_difficulty;
                (pending, d)
            }
            Err(reject) => {
                return self.refused(worker, job_id, nonce, 0, &reject).await;
            }
        };
        let hash = match self
            .hashers
            .hash(pending.seed.clone(), pending.blob.clone())
            .await
        {
            Ok(hash) => hash,
            Err(e) => {
                tracing::error!(error = %e, "a share could not be hashed");
                return ShareOutcome {
                    accepted: false,
                    reason: format!("coordinator error: {e}"),
                    forwarded: false,
                };
            }
        };
        let judged = self.state().judge(&pending, &hash, Instant::now());
        let valid = match judged {
            Ok(valid) => valid,
            Err(reject) => {
                return self
                    .refused(worker, job_id, nonce, difficulty, &reject)
                    .await;
            }
        };
        let verdict = if valid.forward {
            self.blocks.forwarded(
                &pending.upstream_job_id,
                &adit_protocol::nonce_hex(pending.nonce),
                worker,
            );
            Some(self.forward(&pending).await)
        } else {
            None
        };
        let accepted = verdict.as_ref().is_none_or(Result::is_ok);
        let share = ClusterShare {
            cluster: self.config.id.clone(),
            worker: worker.to_owned(),
            job_id: job_id.to_owned(),
            nonce: nonce.to_owned(),
            difficulty,
            valid: true,
            reason: None,
            forwarded: valid.forward,
            upstream_verdict: verdict.as_ref().map(|v| match v {
                Ok(()) => "accepted".to_owned(),
                Err(reason) => reason.clone(),
            }),
            upstream: valid.forward.then(|| pending.upstream.clone()),
            ts: Utc::now(),
        };
        self.record(share).await;
        ShareOutcome {
            accepted,
            reason: match verdict {
                Some(Err(reason)) => format!("upstream refused: {reason}"),
                _ => String::new(),
            },
            forwarded: valid.forward,
        }
    }

    /// Sends a share upstream and waits for the verdict.
    async fn forward(&self, pending: &Pending) -> std::result::Result<(), String> {
        let (reply, verdict) = oneshot::channel();
        let share = Forward {
            generation: pending.upstream_generation,
            job_id: pending.upstream_job_id.clone(),
            nonce: adit_protocol::nonce_hex(pending.nonce),
            result: hex::encode(pending.claimed),
            reply,
        };
        if self.forwards.send(share).await.is_err() {
            return Err("the upstream task has stopped".into());
        }
        let answer = match tokio::time::timeout(FORWARD_TIMEOUT, verdict).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("the upstream connection ended before answering".into()),
            Err(_) => Err(format!("no upstream verdict within {FORWARD_TIMEOUT:?}")),
        };
        self.state().upstream_verdict(answer.is_ok());
        let status = if answer.is_ok() {
            "upstream_accepted"
        } else {
            "upstream_rejected"
        };
        metrics::counter!("coopmine_shares_total", "status" => status).increment(1);
        answer
    }

    /// Records a refused share and answers it.
    async fn refused(
        &self,
        worker: &str,
        job_id: &str,
        nonce: &str,
        difficulty: u64,
        reject: &Reject,
    ) -> ShareOutcome {
        tracing::debug!(
            worker,
            job_id,
            nonce,
            reason = reject.reason(),
            "share refused"
        );
        let share = ClusterShare {
            cluster: self.config.id.clone(),
            worker: worker.to_owned(),
            job_id: clipped(job_id, 64),
            nonce: clipped(nonce, 16),
            difficulty,
            valid: false,
            reason: Some(reject.reason().to_owned()),
            forwarded: false,
            upstream_verdict: None,
            upstream: None,
            ts: Utc::now(),
        };
        self.record(share).await;
        self.update_gauges();
        ShareOutcome {
            accepted: false,
            reason: reject.reason().to_owned(),
            forwarded: false,
        }
    }

    /// Publishes a share, keeps it for the API and announces it.
    async fn record(&self, share: ClusterShare) {
        let status = if share.valid { "valid" } else { "invalid" };
        metrics::counter!("coopmine_shares_total", "status" => status).increment(1);
        if share.forwarded {
            metrics::counter!("coopmine_shares_total", "status" => "forwarded").increment(1);
        }
        if let Some(publisher) = &self.publisher
            && let Err(e) = publisher
                .publish(&AnyEvent::ClusterShare(share.clone()))
                .await
        {
            tracing::error!(worker = %share.worker, error = %e, "publishing a cluster share failed");
            metrics::counter!("coopmine_publish_failures_total").increment(1);
        }
        if let Ok(value) = serde_json::to_value(&share) {
            self.announce(serde_json::json!({"type": "share", "share": value}));
        }
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.push_back(share);
        while recent.len() > RECENT_SHARES {
            recent.pop_front();
        }
    }

    /// Refreshes the gauges.
    fn update_gauges(&self) {
        let stats = self.stats();
        metrics::gauge!("coopmine_workers_total").set(stats.workers_total as f64);
        metrics::gauge!("coopmine_workers_online").set(stats.workers_online as f64);
        metrics::gauge!("coopmine_hashrate_total").set(stats.hashrate_hs);
        metrics::gauge!("coopmine_upstream_connected")
            .set(f64::from(u8::from(stats.upstream.connected)));
    }

    /// The NATS client of its bus, when it has one (to follow the pool's blocks).
    pub(crate) fn publisher_client(&self) -> Option<async_nats::Client> {
        self.publisher.as_ref().map(|p| p.jetstream().client())
    }

    /// The cluster's figures.
    pub fn stats(&self) -> Stats {
        let now = Instant::now();
        let upstream = self.upstream.borrow().clone();
        let mut state = self.state();
        let ids: Vec<String> = state.workers().map(|w| w.id.clone()).collect();
        let hashrate: f64 = ids.iter().map(|id| state.measured_hashrate(id, now)).sum();
        let reported: f64 = state
            .workers()
            .filter(|w| w.slice.is_some())
            .map(|w| w.reported_hashrate)
            .sum();
        Stats {
            cluster: self.config.id.clone(),
            workers_total: ids.len(),
            workers_online: state.online(),
            hashrate_hs: hashrate,
            reported_hashrate_hs: reported,
            shares_valid: state.totals.valid,
            shares_invalid: state.totals.invalid,
            shares_forwarded: state.totals.forwarded,
            shares_accepted_upstream: state.totals.accepted_upstream,
            shares_rejected_upstream: state.totals.rejected_upstream,
            blocks_found: self.blocks.total(),
            upstream,
        }
    }

    /// Every worker's figures, by id.
    pub fn workers(&self) -> Vec<WorkerView> {
        let now = Instant::now();
        let mut state = self.state();
        let mut ids: Vec<String> = state.workers().map(|w| w.id.clone()).collect();
        ids.sort();
        ids.iter()
            .filter_map(|id| view(&mut state, id, now, &self.blocks))
            .collect()
    }

    /// One worker's figures.
    pub fn worker(&self, id: &str) -> Option<WorkerView> {
        view(&mut self.state(), id, Instant::now(), &self.blocks)
    }

    /// The jobs kept, newest first.
    pub fn jobs(&self) -> Vec<JobView> {
        let state = self.state();
        let mut jobs: Vec<JobView> = state
            .jobs()
            .map(|j| JobView {
                job_id: j.id.clone(),
                upstream_job_id: j.upstream_job_id.clone(),
                upstream: j.upstream.clone(),
                height: j.height,
                upstream_difficulty: j.upstream_difficulty,
                share_difficulty: j.share_difficulty,
            })
            .collect();
        jobs.reverse();
        jobs
    }

    /// The last shares, newest first.
    pub fn recent_shares(&self, limit: usize) -> Vec<ClusterShare> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.iter().rev().take(limit).cloned().collect()
    }

    /// Takes what the upstream task reports.
    pub(crate) async fn on_upstream(&self, event: UpstreamEvent) {
        match event {
            UpstreamEvent::Connected { url, generation } => {
                self.upstream.send_replace(UpstreamStatus {
                    connected: true,
                    url: url.clone(),
                    generation,
                    last_error: None,
                });
                self.publish_upstream(&url, "connected", None).await;
            }
            UpstreamEvent::Job {
                job,
                url,
                generation,
            } => {
                let made = self.state().new_job(&job, &url, generation);
                match made {
                    Ok(id) => {
                        tracing::info!(job = %id, upstream_job = %job.job_id, height = job.height, "new job");
                        self.changes.send_modify(|n| *n += 1);
                        self.announce(serde_json::json!({"type": "job", "job_id": id, "height": job.height, "upstream": url}));
                    }
                    Err(e) => tracing::error!(error = %e, "the upstream's job is unusable"),
                }
            }
            UpstreamEvent::Down {
                url,
                reason,
                was_connected,
            } => {
                self.upstream.send_modify(|s| {
                    s.connected = false;
                    s.url.clone_from(&url);
                    s.last_error = Some(reason.clone());
                });
                let state = if was_connected {
                    "disconnected"
                } else {
                    "failed"
                };
                self.publish_upstream(&url, state, Some(reason)).await;
            }
        }
        self.update_gauges();
    }

    /// Publishes a change of the upstream connection.
    async fn publish_upstream(&self, url: &str, state: &str, reason: Option<String>) {
        self.announce(serde_json::json!({"type": "upstream", "upstream": url, "state": state, "reason": reason}));
        let Some(publisher) = &self.publisher else {
            return;
        };
        let event = ClusterUpstream {
            cluster: self.config.id.clone(),
            upstream: url.to_owned(),
            state: state.to_owned(),
            reason,
            ts: Utc::now(),
        };
        if let Err(e) = publisher.publish(&AnyEvent::ClusterUpstream(event)).await {
            tracing::error!(error = %e, "publishing an upstream change failed");
        }
    }

    /// Drops silent workers.
    pub(crate) fn expire(&self) {
        let dropped = self.state().expire(Instant::now());
        if dropped.is_empty() {
            return;
        }
        for worker in &dropped {
            tracing::warn!(
                worker,
                "worker missed its heartbeats and was dropped; its slice is free"
            );
            self.announce(
                serde_json::json!({"type": "worker", "worker": worker, "state": "dropped"}),
            );
        }
        self.changes.send_modify(|n| *n += 1);
        self.update_gauges();
    }
}

/// At most `max` characters of what a worker sent, `-` for nothing (the row needs a value).
fn clipped(sent: &str, max: usize) -> String {
    if sent.is_empty() {
        return "-".to_owned();
    }
    sent.chars().take(max).collect()
}

/// A worker's view, from the state.
fn view(
    state: &mut Cluster,
    id: &str,
    now: Instant,
    blocks: &crate::blocks::Blocks,
) -> Option<WorkerView> {
    let hashrate = state.measured_hashrate(id, now);
    let w = state.worker(id)?;
    Some(WorkerView {
        worker: w.id.clone(),
        online: w.slice.is_some(),
        slice: w.slice,
        threads: w.threads,
        hashrate_hs: hashrate,
        reported_hashrate_hs: w.reported_hashrate,
        hashes_total: w.hashes_total,
        shares_valid: w.valid,
        shares_invalid: w.invalid,
        shares_forwarded: w.forwarded,
        blocks_found: blocks.of(&w.id),
        score: w.score,
        banned: w.banned,
        last_seen: w.last_seen_at,
    })
}

impl Coordinator {
    /// A coordinator over `config`, judging shares with `hashers` and forwarding those that
    /// meet the upstream's target through `forwards`; its gauges are set at once.
    pub(crate) fn new(
        config: ClusterConfig,
        hashers: Hashers,
        forwards: mpsc::Sender<Forward>,
        publisher: Option<Publisher>,
        metrics: Option<MetricsRender>,
    ) -> Self {
        let coordinator = Coordinator {
            hashers,
            cluster: Mutex::new(Cluster::new(config.rules())),
            config,
            changes: watch::channel(0).0,
            upstream: watch::channel(UpstreamStatus::default()).0,
            forwards,
            publisher,
            live: broadcast::channel(1024).0,
            recent: Mutex::new(VecDeque::new()),
            blocks: crate::blocks::Blocks::default(),
            metrics,
        };
        coordinator.update_gauges();
        coordinator
    }
}
