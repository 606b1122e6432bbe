//! A dedicated thread that owns one light-mode RandomX hasher, for the simulated nodes: the
//! library's VM is not `Send`, and building one takes about a second and 256 MiB, so it is
//! built on the first request, rekeyed when the seed changes, and reused. The thread ends when
//! the last handle is dropped.

use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::randomx::RandomXHasher;

/// A dedicated thread that owns a light-mode RandomX hasher (see the module docs).
#[derive(Debug)]
pub(crate) struct HashThread {
    /// Hash requests; the thread exits when this is dropped.
    jobs: mpsc::Sender<HashJob>,
}

/// One hash to compute.
#[derive(Debug)]
struct HashJob {
    /// The RandomX seed.
    seed: [u8; 32],
    /// The hashing blob.
    blob: Vec<u8>,
    /// Where the hash goes.
    reply: oneshot::Sender<Result<[u8; 32]>>,
}

impl HashThread {
    /// Starts the thread; its hasher is built on the first request.
    pub(crate) fn spawn(name: &str) -> Result<Self> {
        let (jobs, requests) = mpsc::channel::<HashJob>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut hasher = None;
                for job in requests {
                    if job
                        .reply
                        .send(hash_with(&mut hasher, &job.seed, &job.blob))
                        .is_err()
                    {
                        // A dropped receiver is a submitter that went away: nothing waits.
                        tracing::debug!("a hash nobody waits for any more");
                    }
                }
            })
            .map_err(|err| Error::SimChain {
                reason: format!("cannot start the hashing thread: {err}"),
            })?;
        Ok(Self { jobs })
    }

    /// The RandomX hash of `blob` under `seed`.
    pub(crate) async fn hash(&self, seed: [u8; 32], blob: Vec<u8>) -> Result<[u8; 32]> {
        let gone = || Error::SimChain {
            reason: "the hashing thread has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(HashJob { seed, blob, reply })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Hashes with the thread's hasher, building it or rekeying it for `seed` first.
fn hash_with(hasher: &mut Option<RandomXHasher>, seed: &[u8], blob: &[u8]) -> Result<[u8; 32]> {
    Ok(adit_protocol::hash_with(hasher, seed, blob)?)
}
