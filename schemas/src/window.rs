//! A block's published window (PPLNS, or SOLO's one finding share): what a miner needs to recompute its own payout without
//! taking the pool's word for it (issue 59).
//!
//! When the PPLNS pipeline splits a block it commits to everything the split read: the block
//! (pool, height, hash, reward, network difficulty), the rules (factor, fee, what an unfilled
//! window does, the scheme) and every share it counted, newest first (stream sequence, miner, difficulty).
//! The commitment, [`window_hash`], is kept in the block's `block_rewards` row. The pool's
//! public view ([`PublishedWindow`]) lists the same shares from the `shares` table, its
//! miners by [`miner_id`] only (a hash of pool and login: a miner finds itself, no one reads
//! another's address), in the order the split pays them (by login), with each one's payout.
//! A verifier recomputes the hash and the split from the view alone.
//!
//! The hash is SHA-256 over a fixed byte layout, so any implementation (the CLI, the miner's
//! web page) computes the same: the tag `adit-pplns-window-v1`, then each text field as its
//! UTF-8 length (u32, big-endian) and bytes, each number as a u64 big-endian, in the order of
//! [`WindowHeader`]'s fields, then for each share `seq`, the 16 bytes of its miner id, and
//! `difficulty`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The tag a window hash starts with; a new layout gets a new tag.
const WINDOW_TAG: &[u8] = b"adit-pplns-window-v1";
/// The tag a miner id starts with.
const MINER_TAG: &[u8] = b"adit-miner-id-v1";
/// Bytes of a miner id (hex: twice as many characters).
pub const MINER_ID_BYTES: usize = 16;

/// A miner's public id in `pool`: the first 16 bytes of SHA-256 over the tag, the pool and the
/// login (each length-prefixed), as 32 hex characters.
pub fn miner_id(pool: &str, miner: &str) -> String {
    hex::encode(miner_id_bytes(pool, miner))
}

/// [`miner_id`] as bytes.
pub fn miner_id_bytes(pool: &str, miner: &str) -> [u8; MINER_ID_BYTES] {
    let mut h = Sha256::new();
    h.update(MINER_TAG);
    text(&mut h, pool);
    text(&mut h, miner);
    let digest = h.finalize();
    let mut id = [0u8; MINER_ID_BYTES];
    id.copy_from_slice(&digest[..MINER_ID_BYTES]);
    id
}

/// What a block's split read besides its shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowHeader {
    /// The pool.
    pub pool: String,
    /// Block height.
    pub height: u64,
    /// Block hash (hex).
    pub hash: String,
    /// Reward R, atomic units.
    pub reward: u64,
    /// Network difficulty of the block.
    pub network_difficulty: u64,
    /// The window factor, as the split read it (`2`, `1.5`).
    pub factor: String,
    /// The fee, basis points.
    pub fee_bps: u64,
    /// What an unfilled window does: `pool` or `scale`.
    pub unfilled: String,
    /// How the block was paid: `pplns`, or `solo` (the window is the finding share).
    pub scheme: String,
}

/// One share the split counted, as published: `[seq, miner, difficulty]`, where `miner` is an
/// index into [`PublishedWindow::miners`].
pub type PublishedShare = [u64; 3];

/// A block's window as the pool publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedWindow {
    /// The block and the rules.
    #[serde(flatten)]
    pub header: WindowHeader,
    /// The pool's fee taken, atomic units.
    pub fee: u64,
    /// Σ payouts.
    pub paid: u64,
    /// What an unfilled window left with the pool.
    pub remainder: u64,
    /// The commitment the split recorded ([`window_hash`]), hex.
    pub window_hash: String,
    /// Every miner paid, by [`miner_id`], in the order the split pays them.
    pub miners: Vec<String>,
    /// Each miner's payout, atomic units, in the order of `miners`.
    pub payouts: Vec<u64>,
    /// The shares counted, newest first (the one that found the block first).
    pub shares: Vec<PublishedShare>,
}

/// The commitment to a split: the hash of `header` and `shares` (newest first, each as
/// `(seq, miner id bytes, difficulty)`), hex.
pub fn window_hash(
    header: &WindowHeader,
    shares: impl IntoIterator<Item = (u64, [u8; MINER_ID_BYTES], u64)>,
) -> String {
    let mut h = Sha256::new();
    h.update(WINDOW_TAG);
    text(&mut h, &header.pool);
    h.update(header.height.to_be_bytes());
    text(&mut h, &header.hash);
    h.update(header.reward.to_be_bytes());
    h.update(header.network_difficulty.to_be_bytes());
    text(&mut h, &header.factor);
    h.update(header.fee_bps.to_be_bytes());
    text(&mut h, &header.unfilled);
    text(&mut h, &header.scheme);
    for (seq, miner, difficulty) in shares {
        h.update(seq.to_be_bytes());
        h.update(miner);
        h.update(difficulty.to_be_bytes());
    }
    hex::encode(h.finalize())
}

/// A published miner id as bytes; `None` when it is not 32 hex characters.
pub fn parse_miner_id(id: &str) -> Option<[u8; MINER_ID_BYTES]> {
    let mut out = [0u8; MINER_ID_BYTES];
    hex::decode_to_slice(id, &mut out).ok().map(|()| out)
}

/// Feeds `s` to the hash as its length (u32, big-endian) and bytes.
fn text(h: &mut Sha256, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> WindowHeader {
        WindowHeader {
            pool: "main".into(),
            height: 7,
            hash: "ab".repeat(32),
            reward: 600_000_000_000,
            network_difficulty: 1_000,
            factor: "2".into(),
            fee_bps: 100,
            unfilled: "pool".into(),
            scheme: "pplns".into(),
        }
    }

    /// Known answers, computed apart with Python's hashlib from the layout in the module header,
    /// so another implementation (the web page's) can be checked against them.
    #[test]
    fn ids_and_hashes_have_known_values() {
        assert_eq!(
            miner_id("main", "alice"),
            "31ae6b93f93e3add8778bbc62fc4a449"
        );
        let (a, b) = (
            miner_id_bytes("main", "alice"),
            miner_id_bytes("main", "bob"),
        );
        let shares = [(9u64, b, 120u64), (4, a, 50)];
        assert_eq!(
            window_hash(&header(), shares),
            "159070b17ca5df0ebfb21401f2d2e30d1340923a33b798b8deb15424570720ab"
        );
    }

    #[test]
    fn every_field_and_share_moves_the_hash() {
        let (a, b) = (
            miner_id_bytes("main", "alice"),
            miner_id_bytes("main", "bob"),
        );
        let base = window_hash(&header(), [(2, a, 10), (1, b, 20)]);
        let mut changed = Vec::new();
        for edit in 0..9 {
            let mut h = header();
            match edit {
                0 => h.pool.push('x'),
                1 => h.height += 1,
                2 => h.hash.push('0'),
                3 => h.reward -= 1,
                4 => h.network_difficulty += 1,
                5 => h.factor = "2.5".into(),
                6 => h.fee_bps = 0,
                7 => h.scheme = "solo".into(),
                _ => h.unfilled = "scale".into(),
            }
            changed.push(window_hash(&h, [(2, a, 10), (1, b, 20)]));
        }
        changed.push(window_hash(&header(), [(2, a, 10), (1, b, 21)]));
        changed.push(window_hash(&header(), [(2, b, 10), (1, b, 20)]));
        changed.push(window_hash(&header(), [(3, a, 10), (1, b, 20)]));
        changed.push(window_hash(&header(), [(1, b, 20), (2, a, 10)]));
        changed.push(window_hash(&header(), [(2, a, 10)]));
        for c in &changed {
            assert_ne!(*c, base);
        }
        // Text fields are length-prefixed: moving a byte from one to the next is seen.
        let mut h = header();
        h.factor = "2p".into();
        h.unfilled = "ool".into();
        assert_ne!(
            window_hash(&h, [(2, a, 10)]),
            window_hash(&header(), [(2, a, 10)])
        );
    }

    #[test]
    fn published_ids_parse_back_and_bad_ones_do_not() {
        let id = miner_id("main", "bob");
        assert_eq!(parse_miner_id(&id), Some(miner_id_bytes("main", "bob")));
        assert!(parse_miner_id(&"zz".repeat(16)).is_none());
        assert!(parse_miner_id("ab").is_none());
        assert!(parse_miner_id(&format!("{id}00")).is_none());
    }
}
