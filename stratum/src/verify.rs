//! RandomX verification off the async runtime: a fixed set of threads, each with its own
//! light-mode hashers (the library's VM is not `Send`), fed through one queue.
//!
//! Each thread keeps hashers for the last two seeds it saw, so the epoch change (current and
//! next seed both in use for a while) does not rebuild a cache per share.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::randomx::RandomXHasher;

/// One hashing request.
struct Task {
    /// RandomX seed (key) for the blob.
    seed: [u8; 32],
    /// The hashing blob.
    blob: Vec<u8>,
    /// Where the hash goes.
    reply: oneshot::Sender<Result<[u8; 32]>>,
}

/// A pool of verification threads.
#[derive(Clone)]
pub struct Verifier {
    /// The queue every thread takes from.
    tx: mpsc::Sender<Task>,
}

impl Verifier {
    /// Starts `threads` verification threads (at least one).
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("randomx-{i}"))
                .spawn(move || worker(rx))
                .ok();
        }
        Self { tx }
    }

    /// The RandomX hash of `blob` under `seed`.
    pub async fn hash(&self, seed: [u8; 32], blob: Vec<u8>) -> Result<[u8; 32]> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Task { seed, blob, reply })
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
        let result = hash_with(&mut hashers, &task.seed, &task.blob);
        let _ = task.reply.send(result);
    }
}

fn hash_with(hashers: &mut Vec<RandomXHasher>, seed: &[u8; 32], blob: &[u8]) -> Result<[u8; 32]> {
    if let Some(h) = hashers.iter().find(|h| h.seed() == seed) {
        return h.hash(blob);
    }
    if hashers.len() >= 2 {
        hashers.remove(0);
    }
    hashers.push(RandomXHasher::light(seed)?);
    hashers
        .last()
        .map_or(Err(Error::VerifierStopped), |h| h.hash(blob))
}
