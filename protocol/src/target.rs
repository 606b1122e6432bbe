//! Share difficulty ↔ the `target` string XMRig reads, and the share check itself.
//!
//! XMRig accepts two encodings of a target, both little-endian hex:
//! - the compact 4-byte form, `floor((2^32 - 1) / difficulty)`, e.g. difficulty 10 000 ↔
//!   `"b88d0600"`; the miner turns it back into `floor((2^32 - 1) / target)`, which is exact only
//!   for small difficulties (always up to 65 535, sometimes above);
//! - the 8-byte form, `floor((2^64 - 1) / difficulty)`, exact up to 2^32 - 1 and within one part in
//!   `2^64 / difficulty` above that.
//!
//! **Rule** ([`encode_target`]): send the compact form when it names exactly the difficulty we
//! validate against, the 8-byte form otherwise. A miner therefore works at exactly our difficulty
//! up to 2^32 - 1, and never below it beyond that (both encodings round the target down, so the
//! miner's difficulty is never lower than ours and it never submits a share we would refuse).

use crate::error::{Error, Result};

/// `2^32 - 1`, the numerator of the compact form.
const MAX32: u64 = u32::MAX as u64;

/// Encodes `difficulty` in the form the module's rule picks: compact when exact, else 8 bytes.
pub fn encode_target(difficulty: u64) -> Result<String> {
    if difficulty == 0 {
        return Err(Error::ZeroDifficulty);
    }
    if difficulty <= MAX32 && MAX32 / (MAX32 / difficulty) == difficulty {
        encode_target32(difficulty)
    } else {
        encode_target64(difficulty)
    }
}

/// Encodes `difficulty` in the compact 4-byte form, `floor((2^32 - 1) / difficulty)` as
/// little-endian hex (8 characters). Refuses 0 and difficulties above 2^32 - 1, whose compact
/// target would be 0.
pub fn encode_target32(difficulty: u64) -> Result<String> {
    if difficulty == 0 {
        return Err(Error::ZeroDifficulty);
    }
    let target = u32::try_from(MAX32 / difficulty).unwrap_or(u32::MAX);
    if target == 0 {
        return Err(Error::InvalidTarget {
            target: format!("difficulty {difficulty}"),
            reason: "difficulties above 2^32 - 1 have no compact target",
        });
    }
    Ok(hex::encode(target.to_le_bytes()))
}

/// Encodes `difficulty` in the 8-byte form, `floor((2^64 - 1) / difficulty)` as little-endian
/// hex (16 characters).
pub fn encode_target64(difficulty: u64) -> Result<String> {
    if difficulty == 0 {
        return Err(Error::ZeroDifficulty);
    }
    Ok(hex::encode((u64::MAX / difficulty).to_le_bytes()))
}

/// The difficulty a miner works at for `target` (8 or 16 hex characters), as XMRig computes it:
/// `floor((2^32 - 1) / t)` for the compact form, `floor((2^64 - 1) / t)` for the 8-byte one.
pub fn decode_target(target: &str) -> Result<u64> {
    let invalid = |reason| Error::InvalidTarget {
        target: target.to_owned(),
        reason,
    };
    match target.len() {
        8 => {
            let mut bytes = [0u8; 4];
            hex::decode_to_slice(target, &mut bytes).map_err(|_| invalid("not hex"))?;
            match u64::from(u32::from_le_bytes(bytes)) {
                0 => Err(invalid("target is zero")),
                t => Ok(MAX32 / t),
            }
        }
        16 => {
            let mut bytes = [0u8; 8];
            hex::decode_to_slice(target, &mut bytes).map_err(|_| invalid("not hex"))?;
            match u64::from_le_bytes(bytes) {
                0 => Err(invalid("target is zero")),
                t => Ok(u64::MAX / t),
            }
        }
        _ => Err(invalid("expected 8 or 16 hex characters")),
    }
}

/// Whether a proof-of-work `hash`, read as a little-endian 256-bit integer, satisfies
/// `hash × difficulty < 2^256` (Monero's `check_hash`). Difficulty 0 accepts every hash.
pub fn meets_difficulty(hash: &[u8; 32], difficulty: u64) -> bool {
    // Multiply limb by limb, least significant first; the product fits in 256 bits iff nothing
    // carries out of the top limb.
    let mut carry: u128 = 0;
    for limb in hash.chunks_exact(8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(limb);
        let product = u128::from(u64::from_le_bytes(bytes)) * u128::from(difficulty) + carry;
        carry = product >> 64;
    }
    carry == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_both_ways() {
        let cases: &[(u64, &str)] = &[
            (1, "ffffffff"),
            (2, "ffffff7f"),
            (10_000, "b88d0600"),
            (65_535, "01000100"),
            // 300 000 has no exact compact form (it would read back as 300 010).
            (300_000, "6d5ec28eec370000"),
            // 2^32 - 1 happens to be exact in the compact form; 2^32 is not.
            (4_294_967_295, "01000000"),
            (4_294_967_296, "ffffffff00000000"),
            (8_589_934_592, "ffffff7f00000000"),
            (5_000_000_000, "cefee6db00000000"),
        ];
        for &(difficulty, target) in cases {
            assert_eq!(encode_target(difficulty).unwrap(), target, "{difficulty}");
        }
        assert_eq!(decode_target("b88d0600").unwrap(), 10_000);
        assert_eq!(decode_target("B88D0600").unwrap(), 10_000);
        assert_eq!(decode_target("cb10c7bab88d0600").unwrap(), 10_000);
        assert_eq!(decode_target("ffffffff").unwrap(), 1);
        assert_eq!(decode_target("ffffffffffffffff").unwrap(), 1);
        // 2^33 in the 8-byte form reads back 4 higher: the miner is slightly stricter than us.
        assert_eq!(decode_target("ffffff7f00000000").unwrap(), 8_589_934_596);
        assert_eq!(encode_target32(10_000).unwrap(), "b88d0600");
        assert_eq!(encode_target64(10_000).unwrap(), "cb10c7bab88d0600");
        assert_eq!(encode_target32(300_000).unwrap(), "ec370000");
    }

    #[test]
    fn refuses_zero_and_malformed_targets() {
        assert!(matches!(encode_target(0), Err(Error::ZeroDifficulty)));
        assert!(matches!(encode_target32(0), Err(Error::ZeroDifficulty)));
        assert!(matches!(encode_target64(0), Err(Error::ZeroDifficulty)));
        assert!(matches!(
            encode_target32(1 << 32),
            Err(Error::InvalidTarget { .. })
        ));
        for bad in [
            "",
            "b88d06",
            "b88d06000",
            "zz8d0600",
            "00000000",
            "0000000000000000",
        ] {
            assert!(
                matches!(decode_target(bad), Err(Error::InvalidTarget { .. })),
                "{bad:?}"
            );
        }
    }

    /// Every difficulty up to 70 000, then a geometric sweep to `u64::MAX`.
    fn difficulties() -> impl Iterator<Item = u64> {
        let sweep = std::iter::successors(Some(70_001u64), |d| d.checked_add(d / 7 + 1));
        let edges = [MAX32 - 1, MAX32, MAX32 + 1, 1 << 40, u64::MAX - 1, u64::MAX];
        (1..=70_000).chain(sweep).chain(edges)
    }

    #[test]
    fn round_trip_is_exact_below_2_pow_32_and_never_easier_above() {
        let mut compact = 0;
        for difficulty in difficulties() {
            let target = encode_target(difficulty).unwrap();
            let back = decode_target(&target).unwrap();
            if target.len() == 8 {
                compact += 1;
            }
            if difficulty <= 65_535 {
                assert_eq!(target.len(), 8, "{difficulty} should be compact");
            }
            if difficulty <= MAX32 {
                assert_eq!(back, difficulty, "{difficulty} -> {target}");
            } else {
                assert_eq!(target.len(), 16);
                assert!(back >= difficulty, "{difficulty} -> {target} -> {back}");
                // The error is below one part in 2^64 / difficulty.
                let slack = difficulty / (u64::MAX / difficulty);
                assert!(back - difficulty <= slack, "{difficulty} -> {back}");
            }
            // Whatever the form, the miner never works below our difficulty.
            let back32 = encode_target32(difficulty).map(|t| decode_target(&t).unwrap());
            if let Ok(back32) = back32 {
                assert!(back32 >= difficulty);
            }
        }
        assert!(compact > 65_535);
    }

    /// `floor((2^256 - 1) / d)` as little-endian bytes, by long division over 32-bit digits.
    fn max_hash_for(difficulty: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut rem: u128 = 0;
        for i in (0..8).rev() {
            let cur = (rem << 32) | 0xffff_ffff;
            let q = cur / u128::from(difficulty);
            rem = cur % u128::from(difficulty);
            out[i * 4..i * 4 + 4].copy_from_slice(&u32::try_from(q).unwrap().to_le_bytes());
        }
        out
    }

    /// Adds one to a little-endian 256-bit number (which must not be all ones).
    fn plus_one(mut n: [u8; 32]) -> [u8; 32] {
        for byte in &mut n {
            let (next, overflow) = byte.overflowing_add(1);
            *byte = next;
            if !overflow {
                break;
            }
        }
        n
    }

    #[test]
    fn meets_difficulty_edges() {
        let zero = [0u8; 32];
        let max = [0xffu8; 32];
        assert!(meets_difficulty(&zero, u64::MAX));
        assert!(meets_difficulty(&max, 0));
        assert!(meets_difficulty(&max, 1));
        assert!(!meets_difficulty(&max, 2));

        // Only the most significant byte set: 0x01 << 248, times 255 fits, times 256 does not.
        let mut top = [0u8; 32];
        top[31] = 1;
        assert!(meets_difficulty(&top, 255));
        assert!(!meets_difficulty(&top, 256));

        // The largest hash that passes, and the next one up, for a spread of difficulties.
        for difficulty in [2, 3, 7, 100, 10_000, 1 << 32, 123_456_789_012, u64::MAX] {
            let limit = max_hash_for(difficulty);
            assert!(meets_difficulty(&limit, difficulty), "{difficulty}");
            assert!(
                !meets_difficulty(&plus_one(limit), difficulty),
                "{difficulty}"
            );
            assert!(
                meets_difficulty(&plus_one(limit), difficulty - 1),
                "{difficulty}"
            );
        }
    }

    #[test]
    fn a_share_the_miner_accepts_passes_our_check() {
        // XMRig submits when the top 64 bits of the hash are below the 64-bit target; any such
        // hash must pass `meets_difficulty` at the difficulty we encoded.
        for difficulty in [1, 100, 10_000, 300_000, 1 << 33, u64::MAX / 3] {
            let target = encode_target(difficulty).unwrap();
            let miner_difficulty = decode_target(&target).unwrap();
            let target64 = u64::MAX / miner_difficulty;
            let mut hash = [0xffu8; 32];
            hash[24..].copy_from_slice(&(target64 - 1).to_le_bytes());
            assert!(meets_difficulty(&hash, difficulty), "{difficulty}");
        }
    }
}
