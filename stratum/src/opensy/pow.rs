//! OpenSY's proof of work as its node judges it (`docs/src/pool/opensy-protocol.md`, which
//! cites the node's source): a Bitcoin header whose RandomX hash, keyed by an earlier block's
//! id, must not exceed the target its `bits` encode. Pure; checked against vectors from the
//! node's own tests and chain parameters.

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target};

/// Blocks between two RandomX keys (`nRandomXKeyBlockInterval`).
pub const KEY_BLOCK_INTERVAL: u64 = 32;

/// The regtest target limit, `bits` 0x207fffff (`powLimitRandomX`): no block may ask for less work.
pub const REGTEST_LIMIT_BITS: u32 = 0x207f_ffff;

/// Height of the block whose id keys RandomX for a block at `height`: the start of the interval
/// before the one `height` is in, and the genesis block for the first two intervals.
pub fn key_height(height: u64) -> u64 {
    (height / KEY_BLOCK_INTERVAL * KEY_BLOCK_INTERVAL).saturating_sub(KEY_BLOCK_INTERVAL)
}

/// The RandomX key a key block's id gives: its bytes in internal order (the reverse of the hex
/// the node's RPC shows).
pub fn key_bytes(key_block: &BlockHash) -> [u8; 32] {
    key_block.to_byte_array()
}

/// A block id's bytes in the order the node's RPC hex writes them (the reverse of the
/// internal order), as the pool records and compares ids.
pub fn rpc_order(id: &BlockHash) -> [u8; 32] {
    let mut bytes = id.to_byte_array();
    bytes.reverse();
    bytes
}

/// Why the node refuses a header's proof of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PowRefusal {
    /// `bits` encode a negative, overflowing or zero target, or one above the chain's limit.
    #[error("bad-diffbits: bits {0:#010x} are not a target this chain allows")]
    BadBits(u32),
    /// The RandomX hash, read as a little-endian number, is above the target
    /// (`high-hash-randomx`).
    #[error("high-hash-randomx")]
    HighHash,
}

/// The target `bits` encode, when the node would take it: not negative, not overflowing, not
/// zero and not above `limit` (Bitcoin Core's `SetCompact` and `CheckProofOfWork`).
pub fn target(bits: u32, limit: Target) -> Result<Target, PowRefusal> {
    let size = bits >> 24;
    let word = bits & 0x007f_ffff;
    let negative = word != 0 && bits & 0x0080_0000 != 0;
    let overflow =
        word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
    if negative || overflow {
        return Err(PowRefusal::BadBits(bits));
    }
    let target = Target::from_compact(CompactTarget::from_consensus(bits));
    if target == Target::ZERO || target > limit {
        return Err(PowRefusal::BadBits(bits));
    }
    Ok(target)
}

/// Whether `pow_hash` (RandomX over the 80-byte header) meets `bits` under `limit`: a hash
/// equal to the target passes, as the node's `UintToArith256(hash) > target` refuses only above.
pub fn check(pow_hash: [u8; 32], bits: u32, limit: Target) -> Result<(), PowRefusal> {
    let target = target(bits, limit)?;
    if Target::from_le_bytes(pow_hash) > target {
        return Err(PowRefusal::HighHash);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::block::{Header, Version};
    use bitcoin::{BlockHash, TxMerkleNode};
    use std::str::FromStr;

    fn regtest_limit() -> Target {
        Target::from_compact(CompactTarget::from_consensus(REGTEST_LIMIT_BITS))
    }

    #[test]
    fn the_key_block_is_the_node_s() {
        // The node's src/test/randomx_tests.cpp, and the first two intervals on genesis.
        for (height, key) in [
            (0, 0),
            (31, 0),
            (32, 0),
            (63, 0),
            (64, 32),
            (95, 32),
            (96, 64),
        ] {
            assert_eq!(key_height(height), key, "height {height}");
        }
    }

    #[test]
    fn the_regtest_genesis_header_is_the_node_s() {
        // src/kernel/chainparams.cpp: CreateGenesisBlock(1733616003, 2, 0x207fffff, 1, …) and
        // its asserted merkle root and id.
        let header = Header {
            version: Version::ONE,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::from_str(
                "56f65e913353861d32d297c6bc87bbe81242b764d18b8634d75c5a0159c8859e",
            )
            .unwrap(),
            time: 1_733_616_003,
            bits: CompactTarget::from_consensus(REGTEST_LIMIT_BITS),
            nonce: 2,
        };
        assert_eq!(
            header.block_hash().to_string(),
            "67fb155259a269da63429b2d84149027fc4a9a366236bc849fddff3a2554cd50"
        );
        assert_eq!(bitcoin::consensus::serialize(&header).len(), 80);
        let key = key_bytes(&header.block_hash());
        assert_eq!(key[31], 0x67, "internal order is the RPC hex reversed");
    }

    #[test]
    fn a_hash_at_the_target_passes_and_one_above_is_refused() {
        let limit = regtest_limit();
        let at = limit.to_le_bytes();
        assert_eq!(check(at, REGTEST_LIMIT_BITS, limit), Ok(()));
        let mut above = at;
        above[0] = 0x01; // the limit 7fffff00…00 plus one
        assert_eq!(
            check(above, REGTEST_LIMIT_BITS, limit),
            Err(PowRefusal::HighHash)
        );
        assert_eq!(check([0; 32], REGTEST_LIMIT_BITS, limit), Ok(()));
    }

    proptest::proptest! {
        /// `bits` come from the node's template and a miner's block: any value is judged,
        /// never a panic, and a target taken is within the limit.
        #[test]
        fn any_bits_and_hash_are_judged(bits: u32, hash: [u8; 32]) {
            let limit = regtest_limit();
            if let Ok(target) = target(bits, limit) {
                proptest::prop_assert!(target <= limit && target != Target::ZERO);
            }
            let _ = check(hash, bits, limit);
        }
    }

    #[test]
    fn bits_the_node_would_not_take_are_refused() {
        let limit = regtest_limit();
        for bits in [
            0x2100_ffff,
            0x0000_0000,
            0x207f_ffff + 0x0080_0000,
            0x2300_0100,
            0x0100_0000,
            0xff00_0000,
        ] {
            assert_eq!(
                check([0; 32], bits, limit),
                Err(PowRefusal::BadBits(bits)),
                "{bits:#010x}"
            );
        }
        // A harder target than the limit is fine.
        assert_eq!(check([0; 32], 0x1e00_ffff, limit), Ok(()));
    }
}
