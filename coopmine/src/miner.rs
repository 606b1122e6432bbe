//! The worker's hashing threads: each of N threads walks every N-th nonce of the worker's slice
//! of the current job (thread t takes start+t, start+t+N, …), so the threads never overlap and
//! the slice is never left. A new job reaches every thread at its next hash. Found shares go to
//! the async side through a channel; every range hashed can be journalled for audits.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use adit_protocol::{RandomXHasher, meets_difficulty, put_nonce};
use tokio::sync::mpsc;

use crate::config::HashMode;
use crate::error::{Error, Result};
use crate::vms::Vms;

/// Hashes per journal line: a killed worker loses at most this many from its journal.
const JOURNAL_EVERY: u64 = 64;

/// One job for this worker.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    /// The coordinator's job id.
    pub job_id: String,
    /// Hashing blob.
    pub blob: Vec<u8>,
    /// Seed.
    pub seed: Vec<u8>,
    /// Internal difficulty.
    pub difficulty: u64,
    /// Slice start.
    pub start: u32,
    /// Slice end (inclusive).
    pub end: u32,
    /// Nonce offset.
    pub offset: usize,
}

/// A share found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Job id.
    pub job_id: String,
    /// Nonce.
    pub nonce: u32,
    /// Its hash.
    pub hash: [u8; 32],
}

/// What the threads share.
struct Shared {
    /// The current unit, `None` while idle.
    current: RwLock<Option<Arc<Unit>>>,
    /// Bumped on every change of `current`.
    generation: AtomicU64,
    /// Hashes computed.
    hashes: AtomicU64,
    /// Set to end the threads.
    stop: AtomicBool,
    /// The VMs' mode and, in fast mode, the dataset they share.
    vms: Vms,
    /// Where found shares go.
    found: mpsc::UnboundedSender<Found>,
    /// The nonce journal.
    journal: Option<Mutex<std::fs::File>>,
}

/// The hashing threads.
pub(crate) struct Miner {
    /// Shared with the threads.
    shared: Arc<Shared>,
    /// Threads.
    threads: usize,
    /// Their handles, joined by [`Miner::stop`].
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Miner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miner")
            .field("threads", &self.threads)
            .finish()
    }
}

impl Miner {
    /// Starts `threads` idle threads; found shares arrive on the returned receiver.
    pub(crate) fn start(
        threads: usize,
        mode: HashMode,
        journal: Option<PathBuf>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Found>)> {
        let journal = journal
            .map(|path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map(Mutex::new)
                    .map_err(|e| {
                        Error::io(format!("opening worker.nonce_log {}", path.display()), e)
                    })
            })
            .transpose()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            hashes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            vms: Vms::new(mode),
            found: tx,
            journal,
        });
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("coopmine-hash-{t}"))
                .spawn(move || hash_loop(t, threads, &shared))
                .map_err(|e| Error::io("starting a hashing thread", e))?;
            handles.push(handle);
        }
        Ok((
            Self {
                shared,
                threads,
                handles,
            },
            rx,
        ))
    }

    /// Switches every thread to `unit` (or to idle with `None`).
    pub(crate) fn set(&self, unit: Option<Unit>) {
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = unit.map(Arc::new);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Hashes computed so far.
    pub(crate) fn hashes(&self) -> u64 {
        self.shared.hashes.load(Ordering::Relaxed)
    }

    /// Stops the threads and waits for them (each finishes its hash and its journal line).
    pub(crate) fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        for handle in self.handles.drain(..) {
            if handle.join().is_err() {
                tracing::error!("a hashing thread panicked");
            }
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// One thread: hashes its share of each unit until the unit changes or is done.
fn hash_loop(t: usize, threads: usize, shared: &Shared) {
    let mut vm: Option<RandomXHasher> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let generation = shared.generation.load(Ordering::SeqCst);
        let unit = shared
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(unit) = unit else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        if let Err(e) = shared.vms.ready(&mut vm, &unit.seed) {
            tracing::error!(error = %e, "RandomX could not be prepared; idling until the next job");
            wait_for_change(shared, generation);
            continue;
        }
        let Some(hasher) = vm.as_ref() else { continue };
        hash_unit(t, threads, &unit, hasher, shared, generation);
        wait_for_change(shared, generation);
    }
}

/// Hashes thread `t`'s nonces of `unit` until done or the generation moves on; journals the
/// range covered.
fn hash_unit(
    t: usize,
    threads: usize,
    unit: &Unit,
    hasher: &RandomXHasher,
    shared: &Shared,
    generation: u64,
) {
    let stride = threads as u64;
    let mut nonce = u64::from(unit.start) + t as u64;
    // The part of the range hashed since the journal's last line.
    let mut first = nonce;
    let mut last = None;
    let mut blob = unit.blob.clone();
    while nonce <= u64::from(unit.end) && shared.generation.load(Ordering::Relaxed) == generation {
        let n = u32::try_from(nonce).unwrap_or(u32::MAX);
        put_nonce(&mut blob, unit.offset, n);
        match hasher.hash(&blob) {
            Ok(hash) => {
                shared.hashes.fetch_add(1, Ordering::Relaxed);
                if meets_difficulty(&hash, unit.difficulty) {
                    let found = Found {
                        job_id: unit.job_id.clone(),
                        nonce: n,
                        hash,
                    };
                    if shared.found.send(found).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "hashing failed");
                break;
            }
        }
        last = Some(nonce);
        nonce += stride;
        if (nonce - first) / stride >= JOURNAL_EVERY {
            journal(shared, &unit.job_id, first, last.take(), stride);
            first = nonce;
        }
    }
    journal(shared, &unit.job_id, first, last, stride);
}

/// Appends `job first last stride` to the nonce journal, when there is one and `last` is set.
fn journal(shared: &Shared, job_id: &str, first: u64, last: Option<u64>, stride: u64) {
    let (Some(journal), Some(last)) = (&shared.journal, last) else {
        return;
    };
    let mut file = journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(e) = writeln!(file, "{job_id} {first} {last} {stride}") {
        tracing::error!(error = %e, "writing the nonce journal failed");
    }
}

/// Sleeps until the unit changes or the miner stops.
fn wait_for_change(shared: &Shared, generation: u64) {
    while shared.generation.load(Ordering::SeqCst) == generation
        && !shared.stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Hashes per second of `threads` threads in `mode` hashing `blob` under `seed` alone, with no
/// coordinator: the baseline the cluster's benchmark compares with. The dataset or cache is
/// built before the clock starts.
pub fn standalone_hashrate(
    threads: usize,
    mode: HashMode,
    seed: &[u8],
    blob: &[u8],
    duration: Duration,
) -> Result<f64> {
    let offset = adit_protocol::nonce_offset(blob)?;
    let (miner, _found) = Miner::start(threads, mode, None)?;
    miner.set(Some(Unit {
        job_id: "standalone".into(),
        blob: blob.to_vec(),
        seed: seed.to_vec(),
        difficulty: u64::MAX,
        start: 0,
        end: u32::MAX,
        offset,
    }));
    while miner.hashes() < threads as u64 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (before, started) = (miner.hashes(), std::time::Instant::now());
    std::thread::sleep(duration);
    let rate = (miner.hashes() - before) as f64 / started.elapsed().as_secs_f64();
    miner.stop();
    Ok(rate)
}
