//! The coordinator's state, without I/O: workers and their slices of the nonce space, the recent
//! jobs, and the order a share is judged in (worker, job, slice, duplicate, hash, target). The
//! caller hashes between [`Cluster::check`] and [`Cluster::judge`], off the async runtime.
//!
//! Slices follow xmrig-proxy's nonce splitting: a worker's slice is the top byte of the 32-bit
//! nonce, so one upstream login serves up to 256 workers, each with 2^24 nonces per job, and no
//! two workers can ever hash the same (job, nonce). A slice freed during a job (its worker was
//! dropped) is handed out again only from the next job on, since its old holder may have hashed
//! any part of it for the current one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use adit_protocol::{Job, decode_target, encode_target, job_nonce_offset, meets_difficulty};
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// Slices per job: the values of the nonce's top byte.
pub const SLICES: usize = 256;

/// Nonces in one slice.
const SLICE_WIDTH: u32 = 1 << 24;

/// What the cluster's judgement of shares depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// The internal share difficulty workers mine at (capped by the upstream's).
    pub share_difficulty: u64,
    /// A worker not heard from for this long is dropped and its slice freed.
    pub dead_after: Duration,
    /// Score added per refused share.
    pub penalty: u32,
    /// Score at which a worker is banned.
    pub ban_score: u32,
    /// Jobs kept for late shares.
    pub jobs_kept: usize,
    /// Window over which a worker's hashrate is measured from its shares.
    pub hashrate_window: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            share_difficulty: 5_000,
            dead_after: Duration::from_secs(30),
            penalty: 10,
            ban_score: 100,
            jobs_kept: 4,
            hashrate_window: Duration::from_secs(120),
        }
    }
}

/// One job as the cluster hands it out.
#[derive(Debug, Clone)]
pub struct ClusterJob {
    /// The coordinator's job id (unique for the process: a sequence).
    pub id: String,
    /// The upstream's job id, echoed when forwarding.
    pub upstream_job_id: String,
    /// The upstream connection it came from (its generation): shares of an older connection
    /// cannot be forwarded.
    pub upstream_generation: u64,
    /// The upstream's URL.
    pub upstream: String,
    /// Hashing blob.
    pub blob: Vec<u8>,
    /// RandomX seed.
    pub seed: Vec<u8>,
    /// Chain height.
    pub height: u64,
    /// The upstream's share difficulty.
    pub upstream_difficulty: u64,
    /// The internal difficulty for this job.
    pub share_difficulty: u64,
    /// Where the nonce sits in the blob.
    pub nonce_offset: usize,
    /// Which slice each worker was given for this job.
    given: HashMap<String, u8>,
    /// Nonces already submitted for this job.
    seen: HashSet<u32>,
}

/// A worker's work for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The coordinator's job id.
    pub job_id: String,
    /// Hashing blob, hex.
    pub blob: String,
    /// Seed, hex.
    pub seed_hash: String,
    /// Height.
    pub height: u64,
    /// The internal target (Stratum hex) and its difficulty.
    pub target: String,
    /// Internal difficulty.
    pub difficulty: u64,
    /// First nonce of the slice.
    pub nonce_start: u32,
    /// Last nonce of the slice (inclusive).
    pub nonce_end: u32,
    /// Nonce offset in the blob.
    pub nonce_offset: u32,
}

/// One worker as the coordinator knows it.
#[derive(Debug, Clone)]
pub struct WorkerState {
    /// Its id (certificate common name).
    pub id: String,
    /// Threads it says it runs.
    pub threads: u32,
    /// Its slice while online.
    pub slice: Option<u8>,
    /// Last time it was heard from.
    last_seen: Instant,
    /// The same, on the wall clock, for people.
    pub last_seen_at: DateTime<Utc>,
    /// Hashrate it reports.
    pub reported_hashrate: f64,
    /// Hashes it reports having computed since it started.
    pub hashes_total: u64,
    /// Valid shares.
    pub valid: u64,
    /// Refused shares.
    pub invalid: u64,
    /// Shares forwarded upstream.
    pub forwarded: u64,
    /// Ban score.
    pub score: u32,
    /// Banned: refused until the coordinator restarts.
    pub banned: bool,
    /// (when, difficulty) of recent valid shares, for the measured hashrate.
    credits: VecDeque<(Instant, u64)>,
    /// When it (re)registered, the start of its measuring window.
    since: Instant,
}

/// Why a share was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// The worker is not registered (or was dropped).
    UnknownWorker,
    /// The worker is banned.
    Banned,
    /// No job of that id is kept.
    UnknownJob,
    /// The worker was never given that job.
    JobNotGiven,
    /// The nonce is not 8 hex characters.
    MalformedNonce,
    /// The result is not 64 hex characters.
    MalformedResult,
    /// The nonce lies outside the worker's slice for that job.
    OutsideSlice,
    /// The (job, nonce) was submitted before.
    Duplicate,
    /// The claimed hash is not the RandomX hash of the blob with that nonce.
    ForgedHash,
    /// The hash does not meet the internal target.
    LowDifficulty,
}

impl Reject {
    /// The reason as workers and tables see it.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::UnknownWorker => "unknown worker",
            Reject::Banned => "banned",
            Reject::UnknownJob => "unknown or stale job",
            Reject::JobNotGiven => "job not given to this worker",
            Reject::MalformedNonce => "malformed nonce",
            Reject::MalformedResult => "malformed result",
            Reject::OutsideSlice => "nonce outside the worker's slice",
            Reject::Duplicate => "duplicate share",
            Reject::ForgedHash => "hash does not match",
            Reject::LowDifficulty => "low difficulty share",
        }
    }
}

/// A share that passed the checks that need no hashing.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The worker.
    pub worker: String,
    /// The coordinator's job id.
    pub job_id: String,
    /// The nonce.
    pub nonce: u32,
    /// The blob with the nonce written in, to hash.
    pub blob: Vec<u8>,
    /// The seed to hash with.
    pub seed: Vec<u8>,
    /// The hash the worker claims.
    pub claimed: [u8; 32],
    /// Internal difficulty.
    pub share_difficulty: u64,
    /// Upstream difficulty.
    pub upstream_difficulty: u64,
    /// Upstream job id and connection generation, for forwarding.
    pub upstream_job_id: String,
    /// Generation of the upstream connection the job came from.
    pub upstream_generation: u64,
    /// Upstream URL.
    pub upstream: String,
}

/// A share found valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    /// Whether it meets the upstream target too, and so goes to the pool.
    pub forward: bool,
}

/// Counters for the whole cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Valid shares.
    pub valid: u64,
    /// Refused shares.
    pub invalid: u64,
    /// Forwarded shares.
    pub forwarded: u64,
    /// Forwarded and accepted upstream.
    pub accepted_upstream: u64,
    /// Forwarded and refused upstream.
    pub rejected_upstream: u64,
    /// Forwarded shares that met the network difficulty as the upstream said (blocks).
    pub blocks: u64,
}

/// The whole state.
#[derive(Debug)]
pub struct Cluster {
    /// The rules.
    rules: Rules,
    /// Workers by id, online or not.
    workers: HashMap<String, WorkerState>,
    /// Which worker holds each slice.
    slices: Vec<Option<String>>,
    /// Slices freed during the current job, not to be handed out until the next.
    dirty: Vec<bool>,
    /// Recent jobs, newest last.
    jobs: VecDeque<ClusterJob>,
    /// This process's mark on its job ids (its start, in hex milliseconds), so ids never repeat
    /// across a restart.
    epoch: String,
    /// The next job's sequence number.
    next_job: u64,
    /// Counters.
    pub totals: Totals,
}

impl Cluster {
    /// An empty cluster.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            workers: HashMap::new(),
            slices: vec![None; SLICES],
            dirty: vec![false; SLICES],
            jobs: VecDeque::new(),
            epoch: format!(
                "{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            ),
            next_job: 1,
            totals: Totals::default(),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Registers `id` (or re-registers it), giving it a slice. A worker already online keeps
    /// its slice; a banned one is refused, as is any past the 256 slices.
    pub fn register(&mut self, id: &str, threads: u32, now: Instant) -> Result<u8> {
        if let Some(worker) = self.workers.get_mut(id) {
            if worker.banned {
                return Err(Error::Banned { worker: id.into() });
            }
            worker.threads = threads;
            worker.last_seen = now;
            worker.last_seen_at = Utc::now();
            if let Some(slice) = worker.slice {
                return Ok(slice);
            }
        }
        let free = (0..SLICES)
            .find(|&i| self.slices[i].is_none() && !self.dirty[i])
            .ok_or(Error::ClusterFull { slices: SLICES })?;
        let slice = u8::try_from(free).map_err(|_| Error::ClusterFull { slices: SLICES })?;
        self.slices[free] = Some(id.to_owned());
        let worker = self
            .workers
            .entry(id.to_owned())
            .or_insert_with(|| WorkerState {
                id: id.to_owned(),
                threads,
                slice: None,
                last_seen: now,
                last_seen_at: Utc::now(),
                reported_hashrate: 0.0,
                hashes_total: 0,
                valid: 0,
                invalid: 0,
                forwarded: 0,
                score: 0,
                banned: false,
                credits: VecDeque::new(),
                since: now,
            });
        worker.slice = Some(slice);
        worker.since = now;
        worker.credits.clear();
        Ok(slice)
    }

    /// Records a heartbeat with the worker's hashrate and hash count; false when the worker is
    /// not online (it should register again).
    pub fn heartbeat(&mut self, id: &str, hashrate: f64, hashes: u64, now: Instant) -> bool {
        match self.workers.get_mut(id) {
            Some(worker) if worker.slice.is_some() && !worker.banned => {
                worker.last_seen = now;
                worker.hashes_total = hashes;
                worker.last_seen_at = Utc::now();
                worker.reported_hashrate = if hashrate.is_finite() && hashrate >= 0.0 {
                    hashrate
                } else {
                    0.0
                };
                true
            }
            _ => false,
        }
    }

    /// Drops every online worker not heard from within `dead_after`, freeing its slice;
    /// returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let dead_after = self.rules.dead_after;
        let mut dropped = Vec::new();
        for worker in self.workers.values_mut() {
            if worker.slice.is_some() && now.duration_since(worker.last_seen) > dead_after {
                dropped.push(worker.id.clone());
            }
        }
        for id in &dropped {
            self.take_offline(id);
        }
        dropped
    }

    /// Frees `id`'s slice.
    fn take_offline(&mut self, id: &str) {
        if let Some(worker) = self.workers.get_mut(id) {
            if let Some(slice) = worker.slice.take() {
                self.slices[usize::from(slice)] = None;
                self.dirty[usize::from(slice)] = true;
            }
            worker.reported_hashrate = 0.0;
        }
    }

    /// Takes a new job from the upstream; returns its id. Keeps the last `jobs_kept`.
    pub fn new_job(&mut self, job: &Job, upstream: &str, generation: u64) -> Result<String> {
        let bad = |what: &str| Error::UpstreamJob {
            reason: format!("{what} in job {}", job.job_id),
        };
        let blob = hex::decode(&job.blob).map_err(|_| bad("blob is not hex"))?;
        let seed = hex::decode(&job.seed_hash).map_err(|_| bad("seed_hash is not hex"))?;
        let offset = job_nonce_offset(job.nonce_offset, &blob)?;
        let upstream_difficulty = decode_target(&job.target)?;
        let id = format!("{}-{}", self.epoch, self.next_job);
        self.dirty.fill(false);
        self.next_job += 1;
        self.jobs.push_back(ClusterJob {
            id: id.clone(),
            upstream_job_id: job.job_id.clone(),
            upstream_generation: generation,
            upstream: upstream.to_owned(),
            blob,
            seed,
            height: job.height,
            upstream_difficulty,
            share_difficulty: self.rules.share_difficulty.min(upstream_difficulty),
            nonce_offset: offset,
            given: HashMap::new(),
            seen: HashSet::new(),
        });
        while self.jobs.len() > self.rules.jobs_kept.max(1) {
            self.jobs.pop_front();
        }
        Ok(id)
    }

    /// The current job, if any.
    pub fn current_job(&self) -> Option<&ClusterJob> {
        self.jobs.back()
    }

    /// The jobs kept, newest last.
    pub fn jobs(&self) -> impl Iterator<Item = &ClusterJob> {
        self.jobs.iter()
    }

    /// The current job for `id`, within its slice; records the slice it was given. `None`
    /// when there is no job or the worker is not online.
    pub fn assign(&mut self, id: &str) -> Option<Assignment> {
        let slice = self.workers.get(id).filter(|w| !w.banned)?.slice?;
        let job = self.jobs.back_mut()?;
        job.given.insert(id.to_owned(), slice);
        let start = u32::from(slice) * SLICE_WIDTH;
        Some(Assignment {
            job_id: job.id.clone(),
            blob: hex::encode(&job.blob),
            seed_hash: hex::encode(&job.seed),
            height: job.height,
            target: encode_target(job.share_difficulty).ok()?,
            difficulty: job.share_difficulty,
            nonce_start: start,
            nonce_end: start + (SLICE_WIDTH - 1),
            nonce_offset: u32::try_from(job.nonce_offset).ok()?,
        })
    }

    /// The checks that need no hashing, in order: worker, job, slice, nonce format, duplicate,
    /// result format. A refusal is scored against the worker.
    pub fn check(
        &mut self,
        id: &str,
        job_id: &str,
        nonce: &str,
        result: &str,
    ) -> std::result::Result<Pending, Reject> {
        let refused = self.pre_check(id, job_id, nonce, result);
        if let Err(reject) = &refused {
            self.refuse(id, reject);
        }
        refused
    }

    /// [`Cluster::check`] without the scoring.
    fn pre_check(
        &mut self,
        id: &str,
        job_id: &str,
        nonce: &str,
        result: &str,
    ) -> std::result::Result<Pending, Reject> {
        let worker = self.workers.get(id).ok_or(Reject::UnknownWorker)?;
        if worker.banned {
            return Err(Reject::Banned);
        }
        if worker.slice.is_none() {
            return Err(Reject::UnknownWorker);
        }
        let job = self
            .jobs
            .iter_mut()
            .find(|j| j.id == job_id)
            .ok_or(Reject::UnknownJob)?;
        let slice = *job.given.get(id).ok_or(Reject::JobNotGiven)?;
        let nonce = adit_protocol::parse_nonce(nonce).map_err(|_| Reject::MalformedNonce)?;
        if nonce >> 24 != u32::from(slice) {
            return Err(Reject::OutsideSlice);
        }
        let mut claimed = [0u8; 32];
        hex::decode_to_slice(result, &mut claimed).map_err(|_| Reject::MalformedResult)?;
        if !job.seen.insert(nonce) {
            return Err(Reject::Duplicate);
        }
        let mut blob = job.blob.clone();
        adit_protocol::put_nonce(&mut blob, job.nonce_offset, nonce);
        Ok(Pending {
            worker: id.to_owned(),
            job_id: job.id.clone(),
            nonce,
            blob,
            seed: job.seed.clone(),
            claimed,
            share_difficulty: job.share_difficulty,
            upstream_difficulty: job.upstream_difficulty,
            upstream_job_id: job.upstream_job_id.clone(),
            upstream_generation: job.upstream_generation,
            upstream: job.upstream.clone(),
        })
    }

    /// Judges a checked share by its recomputed `hash`; a valid one is credited to the worker.
    pub fn judge(
        &mut self,
        pending: &Pending,
        hash: &[u8; 32],
        now: Instant,
    ) -> std::result::Result<Valid, Reject> {
        let verdict = if *hash != pending.claimed {
            Err(Reject::ForgedHash)
        } else if !meets_difficulty(hash, pending.share_difficulty) {
            Err(Reject::LowDifficulty)
        } else {
            Ok(Valid {
                forward: meets_difficulty(hash, pending.upstream_difficulty),
            })
        };
        match &verdict {
            Err(reject) => self.refuse(&pending.worker, reject),
            Ok(valid) => {
                self.totals.valid += 1;
                if valid.forward {
                    self.totals.forwarded += 1;
                }
                if let Some(worker) = self.workers.get_mut(&pending.worker) {
                    worker.valid += 1;
                    worker.forwarded += u64::from(valid.forward);
                    worker.credits.push_back((now, pending.share_difficulty));
                }
            }
        }
        verdict
    }

    /// Records the upstream's verdict on a forwarded share.
    pub fn upstream_verdict(&mut self, accepted: bool) {
        if accepted {
            self.totals.accepted_upstream += 1;
        } else {
            self.totals.rejected_upstream += 1;
        }
    }

    /// Counts a refusal against `id`; bans it at the ban score (freeing its slice).
    fn refuse(&mut self, id: &str, reject: &Reject) {
        self.totals.invalid += 1;
        let ban_score = self.rules.ban_score;
        let penalty = self.rules.penalty;
        let Some(worker) = self.workers.get_mut(id) else {
            return;
        };
        worker.invalid += 1;
        // Refusals a worker cannot help (a job that went stale in flight, being dropped) do
        // not count toward a ban.
        if matches!(
            reject,
            Reject::Banned | Reject::UnknownWorker | Reject::UnknownJob
        ) {
            return;
        }
        worker.score = worker.score.saturating_add(penalty);
        if worker.score >= ban_score && !worker.banned {
            worker.banned = true;
            tracing::warn!(
                worker = id,
                score = worker.score,
                "worker banned for bad shares"
            );
            self.take_offline(id);
        }
    }

    /// A worker's measured hashrate: difficulty credited over the window, per second.
    pub fn measured_hashrate(&mut self, id: &str, now: Instant) -> f64 {
        let window = self.rules.hashrate_window;
        let Some(worker) = self.workers.get_mut(id) else {
            return 0.0;
        };
        while worker
            .credits
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > window)
        {
            worker.credits.pop_front();
        }
        let span = now.duration_since(worker.since).min(window).as_secs_f64();
        if span < 1.0 {
            return 0.0;
        }
        let work: u64 = worker.credits.iter().map(|(_, d)| d).sum();
        work as f64 / span
    }

    /// Every worker, online or not.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerState> {
        self.workers.values()
    }

    /// One worker.
    pub fn worker(&self, id: &str) -> Option<&WorkerState> {
        self.workers.get(id)
    }

    /// Workers online (holding a slice).
    pub fn online(&self) -> usize {
        self.slices.iter().filter(|s| s.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOB: &str = "1010dbcd88d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3000000002cfaa296f21dda6a68dda5ec811797223469c6fe0cc3e5a42fced6ecd73ba3b801";

    fn job(id: &str, difficulty: u64) -> Job {
        Job {
            blob: BLOB.into(),
            job_id: id.into(),
            target: encode_target(difficulty).unwrap(),
            algo: "rx/0".into(),
            nonce_offset: None,
            height: 10,
            seed_hash: "00".repeat(32),
            next_seed_hash: None,
        }
    }

    #[test]
    fn slices_are_disjoint_and_reused_after_expiry() {
        let mut c = Cluster::new(Rules::default());
        let t0 = Instant::now();
        assert_eq!(c.register("a", 1, t0).unwrap(), 0);
        assert_eq!(c.register("b", 1, t0).unwrap(), 1);
        assert_eq!(
            c.register("a", 2, t0).unwrap(),
            0,
            "re-registering keeps the slice"
        );
        c.new_job(&job("u1", 100_000), "p", 1).unwrap();
        let a = c.assign("a").unwrap();
        let b = c.assign("b").unwrap();
        assert!(a.nonce_end < b.nonce_start);
        assert_eq!(
            (a.nonce_start, a.nonce_end, b.nonce_start),
            (0, 0x00ff_ffff, 0x0100_0000)
        );
        assert_eq!(a.difficulty, 5_000);
        // b keeps beating, a goes silent and is dropped. a may have hashed any of slice 0 for
        // this job, so a newcomer gets a clean slice now, and slice 0 from the next job on.
        let later = t0 + Duration::from_secs(31);
        assert!(c.heartbeat("b", 10.0, 100, later));
        assert_eq!(c.expire(later), vec!["a".to_string()]);
        assert!(!c.heartbeat("a", 10.0, 100, later));
        assert_eq!(c.register("c", 1, later).unwrap(), 2);
        c.new_job(&job("u2", 100_000), "p", 1).unwrap();
        assert_eq!(c.register("d", 1, later).unwrap(), 0);
        assert_eq!(c.online(), 3);
    }

    #[test]
    fn refuses_in_order_and_bans() {
        let mut c = Cluster::new(Rules {
            ban_score: 30,
            ..Rules::default()
        });
        let now = Instant::now();
        c.register("a", 1, now).unwrap();
        c.register("b", 1, now).unwrap();
        let id = c.new_job(&job("u1", 100_000), "p", 1).unwrap();
        let result = "00".repeat(32);
        assert_eq!(
            c.check("zz", &id, "00000000", &result).unwrap_err(),
            Reject::UnknownWorker
        );
        assert_eq!(
            c.check("a", &id, "00000000", &result).unwrap_err(),
            Reject::JobNotGiven
        );
        c.assign("a").unwrap();
        c.assign("b").unwrap();
        assert_eq!(
            c.check("a", "999", "00000000", &result).unwrap_err(),
            Reject::UnknownJob
        );
        assert_eq!(
            c.worker("a").unwrap().score,
            10,
            "a stale job costs nothing"
        );
        // Slice 1 is b's: nonce 0x01000000 is "00000001" in blob order.
        assert_eq!(
            c.check("a", &id, "00000001", &result).unwrap_err(),
            Reject::OutsideSlice
        );
        let pending = c.check("b", &id, "05000001", &result).unwrap();
        assert_eq!(pending.nonce, 0x0100_0005);
        assert_eq!(
            c.check("b", &id, "05000001", &result).unwrap_err(),
            Reject::Duplicate
        );
        // A forged hash.
        assert_eq!(
            c.judge(&pending, &[1; 32], now).unwrap_err(),
            Reject::ForgedHash
        );
        // a has 20 after two scored refusals; a third bans it.
        assert!(!c.worker("a").unwrap().banned);
        let _ = c.check("a", &id, "zz", &result);
        assert!(c.worker("a").unwrap().banned);
        assert!(c.assign("a").is_none());
        assert!(matches!(c.register("a", 1, now), Err(Error::Banned { .. })));
        assert_eq!(c.totals.invalid, 7);
    }

    #[test]
    fn credits_valid_shares_and_forwards_what_meets_upstream() {
        let mut c = Cluster::new(Rules::default());
        let t0 = Instant::now();
        c.register("a", 1, t0).unwrap();
        let id = c.new_job(&job("u1", 10_000), "p", 1).unwrap();
        c.assign("a").unwrap();
        // A hash meeting any difficulty: 1, little-endian.
        let mut easy = [0u8; 32];
        easy[0] = 1;
        let pending = c.check("a", &id, "01000000", &hex::encode(easy)).unwrap();
        let valid = c.judge(&pending, &easy, t0).unwrap();
        assert!(valid.forward);
        // A hash meeting 5000 but not 10000.
        let mut mid = [0xffu8; 32];
        mid[24..].copy_from_slice(&(u64::MAX / 7_000).to_le_bytes());
        let pending = c.check("a", &id, "02000000", &hex::encode(mid)).unwrap();
        assert_eq!(
            c.judge(&pending, &mid, t0).unwrap(),
            Valid { forward: false }
        );
        assert_eq!((c.totals.valid, c.totals.forwarded), (2, 1));
        let rate = c.measured_hashrate("a", t0 + Duration::from_secs(10));
        assert!((rate - 1_000.0).abs() < 1e-9, "{rate}");
    }
}
