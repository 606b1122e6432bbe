//! RandomX verification off the async runtime: a fixed set of threads, each with its own
//! light-mode hashers (the library's VM is not `Send`), fed through one queue.
//!
//! Each thread keeps hashers for the last two seeds it saw, so the epoch change (current and
//! next seed both in use for a while) does not rebuild a cache per share.

use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::randomx::{RandomXHasher, SharedDataset};

/// Work for a verification thread.
enum Task {
    /// Hash one blob.
    Hash {
        /// RandomX seed (key) for the blob.
        seed: [u8; 32],
        /// The hashing blob.
        blob: Vec<u8>,
        /// Where the hash goes.
        reply: oneshot::Sender<Result<[u8; 32]>>,
    },
    /// Build the hasher for a seed. One such task goes to every thread: each waits at the
    /// barrier after taking one, so no thread can take two.
    Warm {
        /// The seed to prepare.
        seed: [u8; 32],
        /// Where the threads meet.
        barrier: Arc<Barrier>,
        /// Told once every thread is ready.
        done: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    },
}

/// Which RandomX mode the threads verify in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RandomXMode {
    /// A 256 MiB cache per seed per thread; slower hashes, quick to start.
    #[default]
    Light,
    /// One ~2 GiB dataset per seed shared by all threads; ~5x faster hashes, ~1 minute to build.
    Fast,
}

/// Datasets shared by the threads in fast mode (the two most recent seeds).
type Datasets = Arc<Mutex<Vec<SharedDataset>>>;

/// A pool of verification threads.
#[derive(Clone)]
pub struct Verifier {
    /// The queue every thread takes from.
    tx: mpsc::Sender<Task>,
    /// How many threads there are.
    threads: usize,
}

impl Verifier {
    /// Starts `threads` verification threads (at least one) hashing in `mode`.
    pub fn new(threads: usize, mode: RandomXMode) -> Self {
        let datasets: Option<Datasets> = (mode == RandomXMode::Fast).then(Datasets::default);
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = threads.max(1);
        for i in 0..threads {
            let (rx, datasets) = (rx.clone(), datasets.clone());
            std::thread::Builder::new()
                .name(format!("randomx-{i}"))
                .spawn(move || worker(rx, datasets))
                .ok();
        }
        Self { tx, threads }
    }

    /// Builds every thread's hasher for `seed` (the current one at start, the next one before
    /// an epoch change) and returns when all are ready, so no share waits for a cache.
    pub async fn prepare(&self, seed: [u8; 32]) -> Result<()> {
        let (done_tx, done_rx) = oneshot::channel();
        let barrier = Arc::new(Barrier::new(self.threads));
        let done = Arc::new(Mutex::new(Some(done_tx)));
        for _ in 0..self.threads {
            self.tx
                .send(Task::Warm {
                    seed,
                    barrier: barrier.clone(),
                    done: done.clone(),
                })
                .map_err(|_| Error::VerifierStopped)?;
        }
        done_rx.await.map_err(|_| Error::VerifierStopped)
    }

    /// The RandomX hash of `blob` under `seed`.
    pub async fn hash(&self, seed: [u8; 32], blob: Vec<u8>) -> Result<[u8; 32]> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Task::Hash { seed, blob, reply })
            .map_err(|_| Error::VerifierStopped)?;
        let started = Instant::now();
        let hash = rx.await.map_err(|_| Error::VerifierStopped)?;
        metrics::histogram!("adit_pool_verify_seconds").record(started.elapsed().as_secs_f64());
        hash
    }
}

fn worker(rx: Arc<Mutex<mpsc::Receiver<Task>>>, datasets: Option<Datasets>) {
    let mut hashers: Vec<RandomXHasher> = Vec::with_capacity(2);
    loop {
        let task = match rx.lock() {
            Ok(guard) => match guard.recv() {
                Ok(task) => task,
                Err(_) => return,
            },
            Err(_) => return,
        };
        match task {
            Task::Hash { seed, blob, reply } => {
                let hash = hash_with(&mut hashers, datasets.as_ref(), &seed, &blob);
                if reply.send(hash).is_err() {
                    // The asker dropped its receiver only if its connection closed: nobody
                    // is waiting for this hash, and no share depends on it.
                    tracing::debug!("a hash for a connection that has closed");
                }
            }
            Task::Warm {
                seed,
                barrier,
                done,
            } => {
                if let Err(e) = hasher_for(&mut hashers, datasets.as_ref(), &seed) {
                    tracing::error!(error = %e, "cannot build a RandomX cache");
                }
                if barrier.wait().is_leader()
                    && let Some(tx) = done.lock().ok().and_then(|mut d| d.take())
                    && tx.send(()).is_err()
                {
                    // A readiness signal; a waiter that gave up loses nothing.
                    tracing::debug!("RandomX cache ready, and nobody waits for it");
                }
            }
        }
    }
}

/// The thread's hasher for `seed`, built if missing (keeping the two most recent seeds).
fn hasher_for<'a>(
    hashers: &'a mut Vec<RandomXHasher>,
    datasets: Option<&Datasets>,
    seed: &[u8; 32],
) -> Result<&'a RandomXHasher> {
    if let Some(i) = hashers.iter().position(|h| h.seed() == seed) {
        return Ok(&hashers[i]);
    }
    if hashers.len() >= 2 {
        hashers.remove(0);
    }
    let hasher = match datasets {
        None => RandomXHasher::light(seed)?,
        Some(datasets) => RandomXHasher::fast(&dataset_for(datasets, seed)?)?,
    };
    hashers.push(hasher);
    hashers.last().ok_or(Error::VerifierStopped)
}

/// The shared dataset for `seed`, built by the first thread that needs it (the others wait).
fn dataset_for(datasets: &Datasets, seed: &[u8; 32]) -> Result<SharedDataset> {
    let mut guard = datasets.lock().map_err(|_| Error::VerifierStopped)?;
    if let Some(d) = guard.iter().find(|d| d.seed() == seed) {
        return Ok(d.clone());
    }
    tracing::info!(seed = %hex::encode(seed), "building the RandomX dataset (fast mode)");
    let built = SharedDataset::build(seed)?;
    if guard.len() >= 2 {
        guard.remove(0);
    }
    guard.push(built.clone());
    Ok(built)
}

fn hash_with(
    hashers: &mut Vec<RandomXHasher>,
    datasets: Option<&Datasets>,
    seed: &[u8; 32],
    blob: &[u8],
) -> Result<[u8; 32]> {
    Ok(hasher_for(hashers, datasets, seed)?.hash(blob)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RandomX's own test vector: key "test key 000", input "This is a test".
    const KEY: &[u8] = b"test key 000";
    const WANT: &str = "639183aae1bf4c9a35884cb46b09cad9175f04efd7684e7262a0ac1c2f0b4e3f";

    /// The verifier takes 32-byte seed hashes: the test key, zero-padded. Padding changes the
    /// key, so the threads are compared with a direct hash under the same padded key, and the
    /// library with RandomX's vector under the bare key.
    fn seed() -> [u8; 32] {
        let mut s = [0u8; 32];
        s[..KEY.len()].copy_from_slice(KEY);
        s
    }

    #[tokio::test]
    async fn light_and_fast_threads_agree_with_a_direct_hash() {
        let want = RandomXHasher::light(&seed())
            .unwrap()
            .hash(b"This is a test")
            .unwrap();
        let light = Verifier::new(2, RandomXMode::Light);
        light.prepare(seed()).await.unwrap();
        assert_eq!(
            light
                .hash(seed(), b"This is a test".to_vec())
                .await
                .unwrap(),
            want
        );
        let fast = Verifier::new(2, RandomXMode::Fast);
        fast.prepare(seed()).await.unwrap();
        assert_eq!(
            fast.hash(seed(), b"This is a test".to_vec()).await.unwrap(),
            want
        );
        let direct = RandomXHasher::light(KEY)
            .unwrap()
            .hash(b"This is a test")
            .unwrap();
        assert_eq!(
            hex::encode(direct),
            WANT,
            "the library itself matches RandomX's vector"
        );
    }
}
