//! Jobs: the work the pool mines on, and the per-miner jobs cut from it.
//!
//! Each miner gets its own blob (a unique extra nonce written into the template's reserved
//! space, so no two miners repeat work) and job ids that are never reused (a per-process random
//! prefix and a counter). A miner's last few jobs stay valid until the chain moves on.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::blob::{BlockTemplate, HashingBlob};
use crate::codec::Job;
use crate::error::Result;
use crate::target::encode_target;

/// A block template the pool currently mines on.
#[derive(Debug)]
pub struct Work {
    /// Chain height the template builds.
    pub height: u64,
    /// Network difficulty of that height.
    pub network_difficulty: u64,
    /// RandomX seed hash for that height.
    pub seed_hash: [u8; 32],
    /// Seed hash of the next epoch, when the node announces it.
    pub next_seed_hash: Option<[u8; 32]>,
    /// Block reward in atomic units.
    pub reward: u64,
    /// The template.
    pub template: BlockTemplate,
}

/// One job handed to one miner.
#[derive(Debug)]
pub struct JobRecord {
    /// Its id.
    pub job_id: String,
    /// The work it was cut from.
    pub work: Arc<Work>,
    /// The miner's hashing blob (the template with its extra nonce, hashed down).
    pub blob: HashingBlob,
    /// The extra nonce the blob was cut with, to cut the block again if a share is one.
    pub extra_nonce: u32,
    /// Share difficulty of the job.
    pub difficulty: u64,
    /// Nonces already submitted for it (duplicate detection).
    pub nonces: HashSet<[u8; 4]>,
}

/// Hands out unique job ids and extra nonces for the whole pool.
#[derive(Debug)]
pub struct JobFactory {
    /// Random per-process prefix, so ids are not reused across restarts.
    prefix: u32,
    /// Next job number.
    next_job: AtomicU64,
    /// Next extra nonce.
    next_extra: AtomicU32,
}

impl JobFactory {
    /// A factory whose job ids start with `prefix`.
    pub fn new(prefix: u32) -> Self {
        Self {
            prefix,
            next_job: AtomicU64::new(1),
            next_extra: AtomicU32::new(1),
        }
    }

    /// A fresh extra nonce for a new miner session.
    pub fn extra_nonce(&self) -> u32 {
        self.next_extra.fetch_add(1, Ordering::Relaxed)
    }

    /// Cuts a job for a miner with `extra_nonce` at `difficulty` (capped at the network
    /// difficulty) from `work`; returns the notification to send and the record to keep.
    pub fn job(
        &self,
        work: &Arc<Work>,
        extra_nonce: u32,
        difficulty: u64,
    ) -> Result<(Job, JobRecord)> {
        let difficulty = difficulty.clamp(1, work.network_difficulty.max(1));
        let job_id = format!(
            "{:08x}{:012x}",
            self.prefix,
            self.next_job.fetch_add(1, Ordering::Relaxed)
        );
        let blob = work.template.for_miner(extra_nonce)?;
        let job = Job {
            blob: hex::encode(blob.hashing_blob()),
            job_id: job_id.clone(),
            target: encode_target(difficulty)?,
            algo: "rx/0".into(),
            height: work.height,
            seed_hash: hex::encode(work.seed_hash),
            next_seed_hash: work.next_seed_hash.map(hex::encode),
        };
        let record = JobRecord {
            job_id,
            work: work.clone(),
            blob: blob.into_hashing(),
            extra_nonce,
            difficulty,
            nonces: HashSet::new(),
        };
        Ok((job, record))
    }
}

/// A miner's recent jobs, newest last, bounded.
#[derive(Debug)]
pub struct RecentJobs {
    /// The jobs.
    jobs: VecDeque<JobRecord>,
    /// How many are kept.
    cap: usize,
}

impl RecentJobs {
    /// Keeps up to `cap` jobs.
    pub fn new(cap: usize) -> Self {
        Self {
            jobs: VecDeque::with_capacity(cap),
            cap: cap.max(1),
        }
    }

    /// Adds a job, forgetting the oldest beyond the cap.
    pub fn push(&mut self, job: JobRecord) {
        if self.jobs.len() == self.cap {
            self.jobs.pop_front();
        }
        self.jobs.push_back(job);
    }

    /// The difficulty and height of job `job_id`, if it is among the recent ones: what a share
    /// for it was judged against.
    pub fn judged_against(&self, job_id: &str) -> Option<(u64, u64)> {
        self.jobs
            .iter()
            .find(|j| j.job_id == job_id)
            .map(|j| (j.difficulty, j.work.height))
    }

    /// The job `job_id`, if it is among the recent ones.
    pub fn get_mut(&mut self, job_id: &str) -> Option<&mut JobRecord> {
        self.jobs.iter_mut().find(|j| j.job_id == job_id)
    }
}
