//! The coordinator's RandomX threads: every share a worker sends is hashed again here, off the
//! async runtime, one VM per thread (light by default; fast mode shares a dataset, for
//! coordinators that check many shares).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use adit_protocol::RandomXHasher;
use tokio::sync::oneshot;

use crate::config::HashMode;
use crate::error::{Error, Result};
use crate::vms::Vms;

/// One hash to compute.
struct Task {
    /// The seed key.
    seed: Vec<u8>,
    /// The blob.
    blob: Vec<u8>,
    /// Where the answer goes.
    reply: oneshot::Sender<Result<[u8; 32]>>,
}

/// A pool of hashing threads.
#[derive(Clone, Debug)]
pub(crate) struct Hashers {
    /// Tasks for the threads.
    tx: mpsc::Sender<Task>,
}

impl Hashers {
    /// Starts `threads` hashing threads (at least one) in `mode`.
    pub(crate) fn start(threads: usize, mode: HashMode) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let vms = Arc::new(Vms::new(mode));
        for n in 0..threads.max(1) {
            let (rx, vms) = (Arc::clone(&rx), Arc::clone(&vms));
            std::thread::Builder::new()
                .name(format!("coopmine-rx-{n}"))
                .spawn(move || run(&rx, &vms))
                .map_err(|e| Error::io("starting a RandomX thread", e))?;
        }
        Ok(Self { tx })
    }

    /// The RandomX hash of `blob` under `seed`.
    pub(crate) async fn hash(&self, seed: Vec<u8>, blob: Vec<u8>) -> Result<[u8; 32]> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Task { seed, blob, reply })
            .map_err(|_| Error::HasherStopped)?;
        answer.await.map_err(|_| Error::HasherStopped)?
    }
}

/// One thread: takes tasks until every sender is gone.
fn run(rx: &Mutex<mpsc::Receiver<Task>>, vms: &Vms) {
    let mut hasher: Option<RandomXHasher> = None;
    loop {
        let task = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(task) = task else { return };
        let hashed = vms
            .ready(&mut hasher, &task.seed)
            .and_then(|()| match &hasher {
                Some(vm) => Ok(vm.hash(&task.blob)?),
                None => Err(Error::HasherStopped),
            });
        if task.reply.send(hashed).is_err() {
            tracing::debug!("a share's hash was computed after its caller gave up");
        }
    }
}
