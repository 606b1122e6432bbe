//! Jobs: the work the pool mines on, and the per-miner jobs cut from it.
//!
//! Every job gets a blob of its own: its [`BlobId`] (the pool process's random 64-bit instance
//! and the job's number) is written into the template's reserved space, and the job id is that
//! same value in hex. So a job id names exactly one hashing blob, no two jobs (of one miner, of
//! two miners, before and after a restart) share one, and a share's identity — the job id and
//! the nonce — is the identity of what was hashed: a solution found on one job is the wrong hash
//! under any other, and its job's nonce set refuses it twice (issue 56). A miner's last few jobs
//! stay valid until the chain moves on.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::blob::HashingBlob;
use crate::chain::{ChainTemplate, MoneroTemplate};
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
    /// Block reward in atomic units: subsidy and fees.
    pub reward: u64,
    /// The block's subsidy, without the fees (at most `reward`; see [`Work::from_template`]).
    pub subsidy: u64,
    /// The template, whichever chain's.
    pub template: Box<dyn ChainTemplate>,
}

impl Work {
    /// The work a Monero (or simulated-chain) template gives: its height, difficulty, seeds,
    /// reward and parsed blob, with `subsidy` (capped at the reward). monerod does not say a
    /// template's fees, so its caller passes the previous block's emission
    /// ([`crate::monerod::MoneroRpc::emission`]): on the tail emission that is the subsidy
    /// exactly, before it a few millionths above it.
    pub fn from_template(t: &crate::chain::Template, subsidy: u64) -> Result<Self> {
        Ok(Self {
            height: t.height,
            network_difficulty: t.difficulty,
            seed_hash: t.seed_hash,
            next_seed_hash: t.next_seed_hash,
            reward: t.expected_reward,
            subsidy: subsidy.min(t.expected_reward),
            template: Box::new(MoneroTemplate {
                template: t.block_template()?,
                difficulty: t.difficulty,
            }),
        })
    }
}

/// Bytes of the template's reserved space a job's [`BlobId`] fills (the pool asks the node for
/// exactly this many).
pub const BLOB_ID_BYTES: usize = 16;

/// What makes a job's blob unique: the pool process's random instance (8 bytes) and the job's
/// number in that process (8 bytes), big-endian. Written at the start of the reserved space and,
/// in hex, the job's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId(pub [u8; BLOB_ID_BYTES]);

impl BlobId {
    /// The id of job number `job` of pool instance `instance`.
    pub fn new(instance: u64, job: u64) -> Self {
        let mut bytes = [0; BLOB_ID_BYTES];
        bytes[..8].copy_from_slice(&instance.to_be_bytes());
        bytes[8..].copy_from_slice(&job.to_be_bytes());
        Self(bytes)
    }

    /// The job id miners are sent: the id in hex (32 characters).
    pub fn job_id(&self) -> String {
        hex::encode(self.0)
    }

    /// The id a job id names, if it is one: exactly as [`BlobId::job_id`] writes it (32
    /// lowercase hex digits), so one job has one id, as it had when ids were compared as text.
    pub fn from_job_id(job_id: &str) -> Option<Self> {
        if job_id.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut bytes = [0; BLOB_ID_BYTES];
        hex::decode_to_slice(job_id, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

/// One job handed to one miner. Its id is its blob id in hex ([`BlobId::job_id`]), not kept as
/// text: every logged-in miner holds a few of these, idle or not.
#[derive(Debug)]
pub struct JobRecord {
    /// The work it was cut from.
    pub work: Arc<Work>,
    /// The miner's hashing blob (the template with the job's blob id, hashed down).
    pub blob: HashingBlob,
    /// The value the blob was cut with, to cut the block again if a share is one.
    pub blob_id: BlobId,
    /// Share difficulty of the job.
    pub difficulty: u64,
    /// Nonces already submitted for it (duplicate detection).
    pub nonces: HashSet<[u8; 4]>,
}

/// Hands out the pool's blob ids: one instance per process, a number per job.
#[derive(Debug)]
pub struct JobFactory {
    /// This process's instance: random, so a restarted pool (or a second pool on the same
    /// wallet and template) never cuts a blob an earlier one did (a repeat is a 1 in 2^64 chance
    /// per pair of processes).
    instance: u64,
    /// Next job number.
    next_job: AtomicU64,
}

impl JobFactory {
    /// A factory for pool instance `instance`; [`JobFactory::random`] for a running pool.
    pub fn new(instance: u64) -> Self {
        Self {
            instance,
            next_job: AtomicU64::new(1),
        }
    }

    /// A factory with a random instance.
    pub fn random() -> Self {
        Self::new(rand::random())
    }

    /// Cuts a job at `difficulty` (capped at the network difficulty) from `work`, with a blob
    /// of its own; returns the notification to send and the record to keep.
    pub fn job(&self, work: &Arc<Work>, difficulty: u64) -> Result<(Job, JobRecord)> {
        let difficulty = difficulty.clamp(1, work.network_difficulty.max(1));
        let blob_id = BlobId::new(self.instance, self.next_job.fetch_add(1, Ordering::Relaxed));
        let blob = work.template.with_extra_nonce(&blob_id.0)?;
        let job = Job {
            blob: hex::encode(blob.hashing_blob()),
            job_id: blob_id.job_id(),
            target: encode_target(difficulty)?,
            algo: work.template.algo().into(),
            nonce_offset: work.template.job_nonce_offset(),
            height: work.height,
            seed_hash: hex::encode(work.seed_hash),
            next_seed_hash: work.next_seed_hash.map(hex::encode),
        };
        let record = JobRecord {
            work: work.clone(),
            blob: blob.into_hashing(),
            blob_id,
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
        let id = BlobId::from_job_id(job_id)?;
        self.jobs
            .iter()
            .find(|j| j.blob_id == id)
            .map(|j| (j.difficulty, j.work.height))
    }

    /// The job `job_id`, if it is among the recent ones.
    pub fn get_mut(&mut self, job_id: &str) -> Option<&mut JobRecord> {
        let id = BlobId::from_job_id(job_id)?;
        self.jobs.iter_mut().find(|j| j.blob_id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_names_its_blob_id_written_one_way_only() {
        let id = BlobId::new(0x0123_4567_89ab_cdef, 42);
        assert_eq!(BlobId::from_job_id(&id.job_id()), Some(id));
        assert_eq!(id.job_id().len(), 32);
        for other in [
            id.job_id().to_uppercase(),
            id.job_id()[..31].to_string(),
            format!("{}0", id.job_id()),
            "zz".repeat(16),
            String::new(),
        ] {
            assert_eq!(BlobId::from_job_id(&other), None, "{other:?}");
        }
    }
}
