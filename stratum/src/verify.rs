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
use crate::randomx::RandomXHasher;

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

/// A pool of verification threads.
#[derive(Clone)]
pub struct Verifier {
    /// The queue every thread takes from.
    tx: mpsc::Sender<Task>,
    /// How many threads there are.
    threads: usize,
}

impl Verifier {
    /// Starts `threads` verification threads (at least one).
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = threads.max(1);
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("randomx-{i}"))
                .spawn(move || worker(rx))
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

fn worker(rx: Arc<Mutex<mpsc::Receiver<Task>>>) {
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
                let _ = reply.send(hash_with(&mut hashers, &seed, &blob));
            }
            Task::Warm {
                seed,
                barrier,
                done,
            } => {
                if let Err(e) = hasher_for(&mut hashers, &seed) {
                    tracing::error!(error = %e, "cannot build a RandomX cache");
                }
                if barrier.wait().is_leader()
                    && let Some(tx) = done.lock().ok().and_then(|mut d| d.take())
                {
                    let _ = tx.send(());
                }
            }
        }
    }
}

/// The thread's hasher for `seed`, built if missing (keeping the two most recent seeds).
fn hasher_for<'a>(
    hashers: &'a mut Vec<RandomXHasher>,
    seed: &[u8; 32],
) -> Result<&'a RandomXHasher> {
    if let Some(i) = hashers.iter().position(|h| h.seed() == seed) {
        return Ok(&hashers[i]);
    }
    if hashers.len() >= 2 {
        hashers.remove(0);
    }
    hashers.push(RandomXHasher::light(seed)?);
    hashers.last().ok_or(Error::VerifierStopped)
}

fn hash_with(hashers: &mut Vec<RandomXHasher>, seed: &[u8; 32], blob: &[u8]) -> Result<[u8; 32]> {
    hasher_for(hashers, seed)?.hash(blob)
}
