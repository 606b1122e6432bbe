//! RandomX hashing for one seed in light mode: a thin wrapper over `randomx-rs` that owns the
//! cache built from the seed key and a VM over it.
//!
//! **Large pages** (`pool.server.huge_pages`, `worker.huge_pages`): a process that asks for
//! them ([`use_large_pages`], once at start) builds every cache (256 MiB) and dataset (2 GiB)
//! with `FLAG_LARGE_PAGES` where the OS grants them (fewer TLB misses: more hashes per
//! second); where it does not (no `vm.nr_hugepages` reserved, no privilege), the first
//! refusal is logged once, saying how to grant them, and hashing goes on with normal pages.
//! [`large_pages`] says what the last allocation got. A VM's 2 MiB scratchpad stays in normal
//! pages: `randomx-rs` does not report a VM it could not allocate (it hands back a null VM
//! that crashes the first hash), so only the allocations whose failure it reports ask.
//!
//! Building the cache takes a noticeable fraction of a second and 256 MiB, so a hasher is made
//! once per seed and reused. The library's VM is neither `Send` nor `Sync`: a hasher is built and
//! used on one thread, which is how the pool's dedicated verification threads will hold them.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use randomx_rs::{RandomXCache, RandomXDataset, RandomXError, RandomXFlag, RandomXVM};

use crate::error::{Error, Result};

/// Whether this process asks for large pages.
static LARGE_PAGES: AtomicBool = AtomicBool::new(false);
/// What the last allocation that asked for them got: 0 not asked, 1 granted, 2 refused.
static GRANTED: AtomicU8 = AtomicU8::new(0);
/// Whether the refusal was logged.
static REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);

/// Asks for large pages for every RandomX allocation of this process from now on (or stops).
pub fn use_large_pages(on: bool) {
    LARGE_PAGES.store(on, Ordering::Relaxed);
    if on {
        tracing::info!("RandomX: large pages asked for; used where the OS grants them");
    }
}

/// Whether the last allocation that asked for large pages got them (none: none asked).
pub fn large_pages() -> Option<bool> {
    match GRANTED.load(Ordering::Relaxed) {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

/// Makes a RandomX object with `flags`, and with large pages first where this process asks
/// for them, falling back to normal pages (logged once) where the OS refuses.
fn with_pages<T>(
    flags: RandomXFlag,
    make: impl Fn(RandomXFlag) -> std::result::Result<T, RandomXError>,
) -> std::result::Result<T, RandomXError> {
    if !LARGE_PAGES.load(Ordering::Relaxed) {
        return make(flags);
    }
    match make(flags | RandomXFlag::FLAG_LARGE_PAGES) {
        Ok(made) => {
            GRANTED.store(1, Ordering::Relaxed);
            Ok(made)
        }
        Err(e) => {
            GRANTED.store(2, Ordering::Relaxed);
            if !REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    error = %e,
                    "RandomX: large pages asked for but not granted by the OS; hashing with normal \
                     pages. Reserve them (sysctl vm.nr_hugepages=1280 for a dataset and a few \
                     caches) and let this user lock memory (ulimit -l) to use them"
                );
            }
            make(flags)
        }
    }
}

/// A light-mode RandomX VM keyed with one seed.
#[derive(Debug)]
pub struct RandomXHasher {
    /// The seed key the cache was built from (the block's seed hash for Monero).
    seed: Vec<u8>,
    /// The flags the cache and the VM were built with, reused when the seed changes.
    flags: RandomXFlag,
    /// The VM, which holds the cache.
    vm: RandomXVM,
}

impl RandomXHasher {
    /// A light-mode hasher for `seed`, with the flags the library recommends for this CPU
    /// (JIT and hardware AES where available).
    pub fn light(seed: &[u8]) -> Result<Self> {
        let flags = RandomXFlag::get_recommended_flags();
        let cache = new_cache(flags, seed)?;
        let vm = RandomXVM::new(flags, Some(cache), None).map_err(|source| Error::RandomX {
            action: "create a VM",
            source,
        })?;
        Ok(Self {
            seed: seed.to_vec(),
            flags,
            vm,
        })
    }

    /// The seed key this hasher uses.
    pub fn seed(&self) -> &[u8] {
        &self.seed
    }

    /// Rekeys the VM with a new seed (a new cache, the same VM); a no-op for the current seed.
    pub fn set_seed(&mut self, seed: &[u8]) -> Result<()> {
        if seed == self.seed.as_slice() {
            return Ok(());
        }
        let cache = new_cache(self.flags, seed)?;
        self.vm
            .reinit_cache(cache)
            .map_err(|source| Error::RandomX {
                action: "rekey the VM",
                source,
            })?;
        self.seed = seed.to_vec();
        Ok(())
    }

    /// The RandomX hash of `blob` under this hasher's seed. Refuses an empty blob.
    pub fn hash(&self, blob: &[u8]) -> Result<[u8; 32]> {
        let hash = self
            .vm
            .calculate_hash(blob)
            .map_err(|source| Error::RandomX {
                action: "hash",
                source,
            })?;
        let mut out = [0u8; 32];
        if hash.len() != out.len() {
            return Err(Error::RandomX {
                action: "hash",
                source: randomx_rs::RandomXError::Other(format!(
                    "hash of {} bytes, expected 32",
                    hash.len()
                )),
            });
        }
        out.copy_from_slice(&hash);
        Ok(out)
    }
}

/// Hashes `blob` under `seed` with the light-mode hasher in `slot`, building it on first use and
/// rekeying it when the seed changes (how a thread that owns one VM hashes for many jobs).
pub fn hash_with(slot: &mut Option<RandomXHasher>, seed: &[u8], blob: &[u8]) -> Result<[u8; 32]> {
    match slot {
        Some(hasher) => {
            hasher.set_seed(seed)?;
            hasher.hash(blob)
        }
        None => slot.insert(RandomXHasher::light(seed)?).hash(blob),
    }
}

/// A cache initialised with `seed`.
/// A RandomX dataset (fast mode, ~2 GiB) for one seed, shared by the verification threads.
#[derive(Clone)]
pub struct SharedDataset {
    /// The seed it was built from.
    seed: Vec<u8>,
    /// The dataset.
    dataset: RandomXDataset,
}

// SAFETY: RandomX documents the dataset as read-only once `randomx_init_dataset` has returned
// and meant to be shared by VMs on many threads; `randomx-rs` holds it behind an `Arc` and frees
// it with `randomx_release_dataset` when the last clone drops, on whatever thread that is. We
// never call the one mutating function (`init`) after construction.
unsafe impl Send for SharedDataset {}
// SAFETY: see `Send`: after initialisation the dataset is only read.
unsafe impl Sync for SharedDataset {}

impl std::fmt::Debug for SharedDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDataset")
            .field("seed", &hex::encode(&self.seed))
            .finish()
    }
}

impl SharedDataset {
    /// Builds the dataset for `seed` on the calling thread (tens of seconds, ~2 GiB).
    pub fn build(seed: &[u8]) -> Result<Self> {
        let flags = RandomXFlag::get_recommended_flags() | RandomXFlag::FLAG_FULL_MEM;
        let cache = new_cache(flags, seed)?;
        let dataset =
            with_pages(flags, |f| RandomXDataset::new(f, cache.clone(), 0)).map_err(|source| {
                Error::RandomX {
                    action: "build a dataset",
                    source,
                }
            })?;
        Ok(Self {
            seed: seed.to_vec(),
            dataset,
        })
    }

    /// The seed it was built from.
    pub fn seed(&self) -> &[u8] {
        &self.seed
    }
}

impl RandomXHasher {
    /// A fast-mode hasher over a shared dataset (about 5x the light-mode rate per thread).
    pub fn fast(dataset: &SharedDataset) -> Result<Self> {
        let flags = RandomXFlag::get_recommended_flags() | RandomXFlag::FLAG_FULL_MEM;
        let vm = with_pages(flags, |f| {
            RandomXVM::new(f, None, Some(dataset.dataset.clone()))
        })
        .map_err(|source| Error::RandomX {
            action: "create a fast VM",
            source,
        })?;
        Ok(Self {
            seed: dataset.seed.clone(),
            flags,
            vm,
        })
    }
}

fn new_cache(flags: RandomXFlag, seed: &[u8]) -> Result<RandomXCache> {
    with_pages(flags, |f| RandomXCache::new(f, seed)).map_err(|source| Error::RandomX {
        action: "build a cache",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Huge pages reserved on this host (`/proc/sys/vm/nr_hugepages`), 0 when unknown.
    fn reserved_huge_pages() -> u64 {
        std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn asking_for_large_pages_hashes_the_same_and_says_what_the_os_granted() {
        use_large_pages(true);
        let hasher = RandomXHasher::light(b"test key 000").unwrap();
        let hash = hasher.hash(b"This is a test").unwrap();
        use_large_pages(false);
        assert_eq!(
            hex::encode(hash),
            "639183aae1bf4c9a35884cb46b09cad9175f04efd7684e7262a0ac1c2f0b4e3f"
        );
        let granted = large_pages().expect("asked, so answered");
        if reserved_huge_pages() == 0 {
            assert!(!granted, "granted large pages with none reserved");
        }
    }

    /// RandomX's own test vectors (tevador/RandomX, src/tests/tests.cpp): key, input (text, or
    /// hex for the Monero block hashing blob), expected hash.
    const VECTORS: [(&str, &str, &str); 5] = [
        (
            "test key 000",
            "This is a test",
            "639183aae1bf4c9a35884cb46b09cad9175f04efd7684e7262a0ac1c2f0b4e3f",
        ),
        (
            "test key 000",
            "Lorem ipsum dolor sit amet",
            "300a0adb47603dedb42228ccb2b211104f4da45af709cd7547cd049e9489c969",
        ),
        (
            "test key 000",
            "sed do eiusmod tempor incididunt ut labore et dolore magna aliqua",
            "c36d4ed4191e617309867ed66a443be4075014e2b061bcdaf9ce7b721d2b77a8",
        ),
        (
            "test key 001",
            "sed do eiusmod tempor incididunt ut labore et dolore magna aliqua",
            "e9ff4503201c0c2cca26d285c93ae883f9b1d30c9eb240b820756f2d5a7905fc",
        ),
        (
            "test key 001",
            "hex:0b0b98bea7e805e0010a2126d287a2a0cc833d312cb786385a7c2f9de69d25537f584a9bc9977b00000000666fd8753bf61a8631f12984e3fd44f4014eca629276817b56f32e9b68bd82f416",
            "c56414121acda1713c2f2a819d8ae38aed7c80c35c2a769298d34f03833cd5f1",
        ),
    ];

    fn input(spec: &str) -> Vec<u8> {
        match spec.strip_prefix("hex:") {
            Some(hex) => hex::decode(hex).unwrap(),
            None => spec.as_bytes().to_vec(),
        }
    }

    #[test]
    fn matches_randomx_test_vectors_and_rekeys() {
        let mut hasher = RandomXHasher::light(b"test key 000").unwrap();
        for (key, data, expected) in VECTORS {
            hasher.set_seed(key.as_bytes()).unwrap();
            assert_eq!(hasher.seed(), key.as_bytes());
            assert_eq!(
                hex::encode(hasher.hash(&input(data)).unwrap()),
                expected,
                "{data}"
            );
        }
        // And back to the first key.
        hasher.set_seed(b"test key 000").unwrap();
        let (_, data, expected) = VECTORS[0];
        assert_eq!(hex::encode(hasher.hash(&input(data)).unwrap()), expected);
    }

    #[test]
    fn refuses_empty_input_and_seed() {
        let hasher = RandomXHasher::light(b"test key 000").unwrap();
        assert!(matches!(hasher.hash(b""), Err(Error::RandomX { .. })));
        assert!(matches!(
            RandomXHasher::light(b""),
            Err(Error::RandomX { .. })
        ));
    }
}
