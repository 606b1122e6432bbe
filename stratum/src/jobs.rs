//! Jobs: the work the pool mines on, and the per-miner jobs cut from it.
//!
//! Every job gets a blob of its own: its [`BlobId`] (the pool process's random 64-bit instance
//! and the job's number) is written into the template's reserved space, and the job id is that
//! same value in hex. So a job id names exactly one hashing blob, no two jobs (of one miner, of
//! two miners, before and after a restart) share one, and a share's identity — the job id and
//! the nonce — is the identity of what was hashed: a solution found on one job is the wrong hash
//! under any other, and its job's nonce set refuses it twice (issue 56). A miner's last few jobs
//! stay valid until the chain moves on.

use std::collections::VecDeque;
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
    /// The template's hashing blob with an all-zero blob id ([`Work::base_of`]): each job keeps
    /// only where its own differs from this ([`JobBlob`]).
    pub base: HashingBlob,
}

impl Work {
    /// The work a Monero (or simulated-chain) template gives: its height, difficulty, seeds,
    /// reward and parsed blob, with `subsidy` (capped at the reward). monerod does not say a
    /// template's fees, so its caller passes the previous block's emission
    /// ([`crate::monerod::MoneroRpc::emission`]): on the tail emission that is the subsidy
    /// exactly, before it a few millionths above it.
    pub fn from_template(t: &crate::chain::Template, subsidy: u64) -> Result<Self> {
        let template = Box::new(MoneroTemplate {
            template: t.block_template()?,
            difficulty: t.difficulty,
        });
        Ok(Self {
            height: t.height,
            network_difficulty: t.difficulty,
            seed_hash: t.seed_hash,
            next_seed_hash: t.next_seed_hash,
            reward: t.expected_reward,
            subsidy: subsidy.min(t.expected_reward),
            base: Self::base_of(template.as_ref())?,
            template,
        })
    }

    /// The hashing blob every job of `template` is cut against: its blob id all zeros.
    pub fn base_of(template: &dyn ChainTemplate) -> Result<HashingBlob> {
        Ok(template
            .with_extra_nonce(&[0; BLOB_ID_BYTES])?
            .into_hashing())
    }
}

/// Jobs a miner keeps valid: its newest and the three before it, so a share found just as a new
/// job arrives (same height) still counts.
pub const JOBS_KEPT: usize = 4;

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

/// One job handed to one miner. Every logged-in miner holds a few of these, idle or not, so
/// none keeps anything on the heap until its first share: the id is its blob id
/// ([`BlobId::job_id`] gives the text), the blob is where it differs from its work's base
/// ([`JobBlob`]), and the nonce list starts empty.
#[derive(Debug)]
pub struct JobRecord {
    /// The work it was cut from.
    pub work: Arc<Work>,
    /// The miner's hashing blob (the template with the job's blob id, hashed down).
    pub blob: JobBlob,
    /// The value the blob was cut with, to cut the block again if a share is one.
    pub blob_id: BlobId,
    /// Share difficulty of the job.
    pub difficulty: u64,
    /// Nonces already submitted for it (duplicate detection).
    pub nonces: Nonces,
}

impl JobRecord {
    /// The job's hashing blob with a submitted nonce (bytes in blob order), to verify a share.
    pub fn hashing_blob_with_nonce(&self, nonce: [u8; 4]) -> Vec<u8> {
        let base = &self.work.base;
        let mut blob = self.blob.rebuild(base.hashing_blob());
        let at = base.nonce_offset();
        blob[at..at + 4].copy_from_slice(&nonce);
        blob
    }
}

/// The most bytes a job's blob may differ from its work's base in and still be kept inline: a
/// merkle root (Monero's and OpenSY's headers change only there when the blob id changes).
const PATCH_MAX: usize = 32;

/// A job's hashing blob, kept as where it differs from its work's base blob
/// ([`Work::base`]): for Monero and OpenSY that is the 32-byte merkle root, held inline. A
/// template whose jobs differ in more bytes keeps the whole blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobBlob {
    /// `bytes[..len]` replace the base's bytes from `at`.
    Patch {
        /// Where the differing bytes start.
        at: u16,
        /// How many differ.
        len: u8,
        /// Them.
        bytes: [u8; PATCH_MAX],
    },
    /// The whole hashing blob.
    Whole(Box<[u8]>),
}

impl JobBlob {
    /// `blob` kept against `base` (same length, as every job of one template has).
    pub fn against(base: &[u8], blob: &[u8]) -> Self {
        if base.len() != blob.len() {
            return Self::Whole(blob.into());
        }
        let differs = |(a, b): (&u8, &u8)| a != b;
        let pairs = || base.iter().zip(blob);
        let Some(first) = pairs().position(differs) else {
            return Self::Patch {
                at: 0,
                len: 0,
                bytes: [0; PATCH_MAX],
            };
        };
        let last = blob.len() - 1 - pairs().rev().position(differs).unwrap_or(0);
        let len = last + 1 - first;
        match (u16::try_from(first), u8::try_from(len)) {
            (Ok(at), Ok(n)) if len <= PATCH_MAX => {
                let mut bytes = [0; PATCH_MAX];
                bytes[..len].copy_from_slice(&blob[first..=last]);
                Self::Patch { at, len: n, bytes }
            }
            _ => Self::Whole(blob.into()),
        }
    }

    /// The blob, from the `base` it was kept against.
    pub fn rebuild(&self, base: &[u8]) -> Vec<u8> {
        match self {
            Self::Patch { at, len, bytes } => {
                let (at, len) = (usize::from(*at), usize::from(*len));
                let mut blob = base.to_vec();
                blob[at..at + len].copy_from_slice(&bytes[..len]);
                blob
            }
            Self::Whole(whole) => whole.to_vec(),
        }
    }
}

/// The nonces already submitted for one job, sorted: one pointer and nothing on the heap until
/// the first (an idle miner holds four jobs' worth), 4 bytes each after it.
// Boxed on purpose: 8 bytes inline instead of a `Vec`'s 24, in each of every miner's jobs.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub struct Nonces(Option<Box<Vec<[u8; 4]>>>);

impl Nonces {
    /// Records `nonce`; false when it was already there (a duplicate share).
    pub fn insert(&mut self, nonce: [u8; 4]) -> bool {
        let list = self.0.get_or_insert_default();
        match list.binary_search(&nonce) {
            Ok(_) => false,
            Err(at) => {
                list.insert(at, nonce);
                true
            }
        }
    }
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
            blob: JobBlob::against(work.base.hashing_blob(), blob.hashing_blob()),
            blob_id,
            difficulty,
            nonces: Nonces::default(),
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
    use proptest::prelude::*;

    use super::*;
    use crate::blob::BlockTemplate;

    /// Work on monerod's template at height 301 (captured from `monerod --regtest`).
    fn monero_work() -> Arc<Work> {
        let captured: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/regtest_template_h301.json")).unwrap();
        let r = &captured["result"];
        let template = Box::new(MoneroTemplate {
            template: BlockTemplate::from_hex(
                r["blocktemplate_blob"].as_str().unwrap(),
                r["reserved_offset"].as_u64().unwrap() as usize,
                BLOB_ID_BYTES,
            )
            .unwrap(),
            difficulty: 1_000_000,
        });
        Arc::new(Work {
            height: 301,
            network_difficulty: 1_000_000,
            seed_hash: [0; 32],
            next_seed_hash: None,
            reward: 1,
            subsidy: 1,
            base: Work::base_of(template.as_ref()).unwrap(),
            template,
        })
    }

    #[test]
    fn a_jobs_blob_is_the_one_cut_for_its_id_and_holds_only_the_merkle_root() {
        let work = monero_work();
        let factory = JobFactory::new(0x5eed);
        for difficulty in [1, 5_000] {
            let (job, record) = factory.job(&work, difficulty).unwrap();
            assert!(
                matches!(record.blob, JobBlob::Patch { len: ..=32, .. }),
                "{:?}",
                record.blob
            );
            let cut = work.template.with_extra_nonce(&record.blob_id.0).unwrap();
            assert_eq!(job.blob, hex::encode(cut.hashing_blob()));
            for nonce in [[0; 4], [1, 2, 3, 4], [0xff; 4]] {
                assert_eq!(
                    record.hashing_blob_with_nonce(nonce),
                    cut.hashing_blob_with_nonce(nonce)
                );
            }
        }
    }

    #[test]
    fn a_nonce_is_taken_once_per_job() {
        let mut nonces = Nonces::default();
        for (nonce, fresh) in [
            ([3; 4], true),
            ([1; 4], true),
            ([3; 4], false),
            ([2; 4], true),
        ] {
            assert_eq!(nonces.insert(nonce), fresh, "{nonce:?}");
        }
        assert!(!nonces.insert([1; 4]) && !nonces.insert([2; 4]));
    }

    #[test]
    fn a_job_an_idle_miner_holds_is_80_bytes_inline_and_nothing_on_the_heap() {
        // Every logged-in miner holds JOBS_KEPT of these: 100 000 miners, 32 MB.
        assert!(
            size_of::<JobRecord>() <= 80,
            "{} bytes",
            size_of::<JobRecord>()
        );
        let nonces = Nonces::default();
        assert!(nonces.0.is_none());
    }

    proptest! {
        /// Whatever a job's blob changes of its base (a span, scattered bytes, its length),
        /// the blob kept gives back exactly that blob.
        #[test]
        fn a_kept_blob_rebuilds_exactly(
            base in proptest::collection::vec(any::<u8>(), 1..300),
            at in any::<prop::sample::Index>(),
            span in proptest::collection::vec(any::<u8>(), 0..48),
            scattered in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            longer in proptest::collection::vec(any::<u8>(), 0..2),
        ) {
            let mut blob = base.clone();
            let at = at.index(blob.len());
            let end = (at + span.len()).min(blob.len());
            blob[at..end].copy_from_slice(&span[..end - at]);
            for (i, byte) in scattered {
                let i = i.index(blob.len());
                blob[i] = byte;
            }
            blob.extend(longer);
            let kept = JobBlob::against(&base, &blob);
            prop_assert_eq!(kept.rebuild(&base), blob.clone());
            let differing = base.iter().zip(&blob).filter(|(a, b)| a != b).count();
            if blob.len() == base.len() && end - at >= differing && end - at <= PATCH_MAX
                && base.iter().zip(&blob).enumerate().all(|(i, (a, b))| a == b || (at..end).contains(&i)) {
                prop_assert!(matches!(kept, JobBlob::Patch { .. }), "a span of {} kept whole", end - at);
            }
        }
    }

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
