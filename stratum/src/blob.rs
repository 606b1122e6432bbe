//! Monero block templates → per-miner blobs: write an extra nonce into the template's reserved
//! space, then recompute the hashing blob miners hash (header ‖ tree root of the transaction
//! hashes ‖ varint transaction count), following Monero's `get_block_hashing_blob`,
//! `calculate_transaction_hash` and `tree_hash`. No I/O.
//!
//! **Extra nonce layout:** [`BlockTemplate::for_miner`] writes a 4-byte counter, big-endian, at
//! the start of the reserved space (the rest of it stays as the node returned it, zeroes), so the
//! counter reads naturally in a hex dump of the blob.

use std::ops::Range;

use tiny_keccak::{Hasher, Keccak};

use crate::error::{Error, Result};

/// A hash as Monero writes it: 32 bytes.
type Hash = [u8; 32];

/// Monero's `cn_fast_hash`: the original Keccak-256 (not SHA3-256, whose padding differs).
pub fn cn_fast_hash(data: &[u8]) -> [u8; 32] {
    let mut keccak = Keccak::v256();
    keccak.update(data);
    let mut out = [0u8; 32];
    keccak.finalize(&mut out);
    out
}

/// `cn_fast_hash` of two hashes side by side, the tree's inner node.
fn hash_pair(left: &Hash, right: &Hash) -> Hash {
    let mut keccak = Keccak::v256();
    keccak.update(left);
    keccak.update(right);
    let mut out = [0u8; 32];
    keccak.finalize(&mut out);
    out
}

/// Monero's `tree_hash` (the block's merkle root) of transaction hashes, miner transaction first;
/// `None` for no hashes.
pub fn tree_hash(hashes: &[[u8; 32]]) -> Option<[u8; 32]> {
    match hashes {
        [] => None,
        [only] => Some(*only),
        [left, right] => Some(hash_pair(left, right)),
        _ => {
            // The largest power of two below the count (3 ≤ count): leaves past the first `2 * cnt - count`
            // are paired up first so the rest of the tree is perfect.
            let mut cnt = hashes.len().next_power_of_two() / 2;
            let direct = 2 * cnt - hashes.len();
            let mut level: Vec<Hash> = hashes[..direct].to_vec();
            level.extend(
                hashes[direct..]
                    .chunks_exact(2)
                    .map(|p| hash_pair(&p[0], &p[1])),
            );
            while cnt > 2 {
                cnt /= 2;
                for j in 0..cnt {
                    level[j] = hash_pair(&level[2 * j], &level[2 * j + 1]);
                }
            }
            Some(hash_pair(&level[0], &level[1]))
        }
    }
}

/// The block id of a hashing blob: `cn_fast_hash(varint(len) ‖ blob)`. (Monero special-cases one
/// historical mainnet block, 202612, which a pool never builds.)
pub fn block_id(hashing_blob: &[u8]) -> [u8; 32] {
    let mut data = Vec::with_capacity(hashing_blob.len() + 10);
    write_varint(&mut data, hashing_blob.len() as u64);
    data.extend_from_slice(hashing_blob);
    cn_fast_hash(&data)
}

/// The hashing blob of a complete block blob (header ‖ tree root ‖ varint transaction count).
pub fn hashing_blob(block_blob: &[u8]) -> Result<Vec<u8>> {
    Ok(Layout::parse(block_blob)?.hashing_blob(block_blob))
}

/// Appends `value` as a Monero varint (7 bits per byte, least significant first).
pub(crate) fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A cursor over a blob that reads Monero's binary serialisation.
pub(crate) struct Reader<'a> {
    /// The whole blob.
    data: &'a [u8],
    /// The next byte to read.
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// An error at the current position.
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::InvalidTemplate {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| self.error(format!("truncated {what}")))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// One byte.
    pub(crate) fn byte(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    /// A varint of at most 64 bits.
    pub(crate) fn varint(&mut self, what: &str) -> Result<u64> {
        let start = self.pos;
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(what)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                self.pos = start;
                return Err(self.error(format!("{what} overflows 64 bits")));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    self.pos = start;
                    return Err(self.error(format!("{what} is not in canonical form")));
                }
                return Ok(value);
            }
        }
        self.pos = start;
        Err(self.error(format!("{what} is longer than 10 bytes")))
    }

    /// A varint used as a count of items that each take at least `min_item_len` more bytes.
    fn count(&mut self, what: &str, min_item_len: usize) -> Result<usize> {
        let count = self.varint(what)?;
        let remaining = (self.data.len() - self.pos) as u64;
        if count.saturating_mul(min_item_len as u64) > remaining {
            return Err(self.error(format!("{what} {count} is more than the blob holds")));
        }
        Ok(count as usize)
    }
}

/// Where the parts of a block blob are.
#[derive(Debug, Clone)]
struct Layout {
    /// The block header: versions, timestamp, previous id, nonce.
    header: Range<usize>,
    /// Where the 4-byte nonce sits (the last 4 bytes of the header).
    nonce_offset: usize,
    /// The whole miner transaction.
    miner_tx: Range<usize>,
    /// The miner transaction's prefix (all of it for a version 1 transaction).
    miner_prefix: Range<usize>,
    /// The bytes of the miner transaction's `extra` field, where the reserved space must be.
    miner_extra: Range<usize>,
    /// The miner transaction's version (1, or 2 for RingCT).
    miner_version: u64,
    /// The hashes of the block's other transactions.
    tx_hashes: Vec<Hash>,
}

impl Layout {
    /// Parses a block blob as Monero serialises `block`.
    fn parse(blob: &[u8]) -> Result<Self> {
        let mut r = Reader::new(blob);
        r.varint("major version")?;
        r.varint("minor version")?;
        r.varint("timestamp")?;
        r.take(32, "previous block id")?;
        let nonce_offset = r.pos;
        r.take(4, "nonce")?;
        let header = 0..r.pos;

        let tx_start = r.pos;
        let miner_version = r.varint("miner tx version")?;
        if !(1..=2).contains(&miner_version) {
            return Err(r.error(format!("miner tx version {miner_version} is not 1 or 2")));
        }
        r.varint("unlock time")?;
        let inputs = r.count("input count", 2)?;
        if inputs != 1 {
            return Err(r.error(format!("miner tx has {inputs} inputs, expected 1")));
        }
        let tag = r.byte("input type")?;
        if tag != 0xff {
            return Err(r.error(format!("miner tx input type {tag:#04x} is not txin_gen")));
        }
        r.varint("block height")?;
        let outputs = r.count("output count", 34)?;
        for _ in 0..outputs {
            r.varint("output amount")?;
            match r.byte("output type")? {
                // txout_to_key: a one-time public key.
                0x02 => r.take(32, "output key")?,
                // txout_to_tagged_key: the key and a one-byte view tag.
                0x03 => r.take(33, "output key and view tag")?,
                other => return Err(r.error(format!("unsupported output type {other:#04x}"))),
            };
        }
        let extra_len = r.count("extra length", 1)?;
        let extra_start = r.pos;
        r.take(extra_len, "extra")?;
        let miner_extra = extra_start..r.pos;
        let miner_prefix = tx_start..r.pos;
        if miner_version >= 2 {
            let rct_type = r.byte("RingCT type")?;
            if rct_type != 0 {
                return Err(r.error(format!("miner tx RingCT type {rct_type} is not 0 (null)")));
            }
        }
        let miner_tx = tx_start..r.pos;

        let tx_count = r.count("transaction count", 32)?;
        let mut tx_hashes = Vec::with_capacity(tx_count);
        for _ in 0..tx_count {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(r.take(32, "transaction hash")?);
            tx_hashes.push(hash);
        }
        if r.pos != blob.len() {
            return Err(r.error(format!(
                "{} unexpected bytes after the block",
                blob.len() - r.pos
            )));
        }
        Ok(Self {
            header,
            nonce_offset,
            miner_tx,
            miner_prefix,
            miner_extra,
            miner_version,
            tx_hashes,
        })
    }

    /// The miner transaction's hash in `blob` (which has this layout): for version 2,
    /// `H(H(prefix) ‖ H(RingCT base) ‖ 0^32)`, the prunable part of a null-RingCT transaction
    /// counting as zeroes; for version 1, the hash of the whole transaction.
    fn miner_tx_hash(&self, blob: &[u8]) -> Hash {
        let tx = &blob[self.miner_tx.clone()];
        if self.miner_version == 1 {
            return cn_fast_hash(tx);
        }
        let mut parts = [0u8; 96];
        parts[..32].copy_from_slice(&cn_fast_hash(&blob[self.miner_prefix.clone()]));
        parts[32..64].copy_from_slice(&cn_fast_hash(
            &blob[self.miner_prefix.end..self.miner_tx.end],
        ));
        cn_fast_hash(&parts)
    }

    /// The hashing blob of `blob` (which has this layout).
    fn hashing_blob(&self, blob: &[u8]) -> Vec<u8> {
        let mut hashes = Vec::with_capacity(1 + self.tx_hashes.len());
        hashes.push(self.miner_tx_hash(blob));
        hashes.extend_from_slice(&self.tx_hashes);
        let root = tree_hash(&hashes).unwrap_or_default();
        let mut out = Vec::with_capacity(self.header.len() + 32 + 3);
        out.extend_from_slice(&blob[self.header.clone()]);
        out.extend_from_slice(&root);
        write_varint(&mut out, hashes.len() as u64);
        out
    }
}

/// A block template from monerod's `get_block_template`, parsed once so each miner's blob is
/// cheap to build.
#[derive(Debug, Clone)]
pub struct BlockTemplate {
    /// The template blob as the node returned it.
    blob: Vec<u8>,
    /// Where the parts of the blob are.
    layout: Layout,
    /// The reserved space for extra nonces, inside the miner transaction's extra.
    reserved: Range<usize>,
}

impl BlockTemplate {
    /// Parses `blocktemplate_blob` (hex) with the `reserved_offset` the node returned and the
    /// `reserve_size` that was asked for.
    pub fn from_hex(
        blocktemplate_blob: &str,
        reserved_offset: usize,
        reserve_size: usize,
    ) -> Result<Self> {
        let blob = hex::decode(blocktemplate_blob).map_err(|err| Error::InvalidTemplate {
            offset: 0,
            reason: format!("blocktemplate_blob is not hex: {err}"),
        })?;
        Self::new(blob, reserved_offset, reserve_size)
    }

    /// Parses a template blob; the reserved space must lie inside the miner transaction's extra.
    pub fn new(blob: Vec<u8>, reserved_offset: usize, reserve_size: usize) -> Result<Self> {
        let layout = Layout::parse(&blob)?;
        let reserved = reserved_offset..reserved_offset.saturating_add(reserve_size);
        if reserved.start < layout.miner_extra.start || reserved.end > layout.miner_extra.end {
            return Err(Error::InvalidTemplate {
                offset: reserved_offset,
                reason: format!(
                    "reserved space {reserved:?} is not inside the miner tx extra {:?}",
                    layout.miner_extra
                ),
            });
        }
        Ok(Self {
            blob,
            layout,
            reserved,
        })
    }

    /// The template blob as the node returned it.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// Size of the reserved space for extra nonces.
    pub fn reserve_size(&self) -> usize {
        self.reserved.len()
    }

    /// The hashing blob of the template as returned (what monerod calls `blockhashing_blob`).
    pub fn hashing_blob(&self) -> Vec<u8> {
        self.layout.hashing_blob(&self.blob)
    }

    /// The template with `extra_nonce` written at the start of the reserved space.
    pub fn with_extra_nonce(&self, extra_nonce: &[u8]) -> Result<MinerBlob> {
        if extra_nonce.len() > self.reserved.len() {
            return Err(Error::ExtraNonceTooLong {
                len: extra_nonce.len(),
                reserved: self.reserved.len(),
            });
        }
        let mut block = self.blob.clone();
        let start = self.reserved.start;
        block[start..start + extra_nonce.len()].copy_from_slice(extra_nonce);
        let hashing = self.layout.hashing_blob(&block);
        Ok(MinerBlob {
            block,
            hashing,
            nonce_offset: self.layout.nonce_offset,
        })
    }

    /// The template for one miner: `extra_nonce` as 4 big-endian bytes at the start of the
    /// reserved space (see the module docs).
    pub fn for_miner(&self, extra_nonce: u32) -> Result<MinerBlob> {
        self.with_extra_nonce(&extra_nonce.to_be_bytes())
    }
}

/// One miner's copy of a template: the block to submit and the blob to hash, both without the
/// nonce (zeroes from the template) until one is filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerBlob {
    /// The full block blob, with the miner's extra nonce.
    block: Vec<u8>,
    /// The hashing blob derived from `block`.
    hashing: Vec<u8>,
    /// Where the 4-byte nonce sits, the same offset in both blobs (it is in the header).
    nonce_offset: usize,
}

impl MinerBlob {
    /// A chain's block for one job: `block` to submit, `hashing` to hash, the nonce at
    /// `nonce_offset` in both.
    pub(crate) fn new(block: Vec<u8>, hashing: Vec<u8>, nonce_offset: usize) -> Self {
        Self {
            block,
            hashing,
            nonce_offset,
        }
    }

    /// The hashing blob, sent to the miner as the job's `blob`.
    pub fn hashing_blob(&self) -> &[u8] {
        &self.hashing
    }

    /// The full block blob.
    pub fn block_blob(&self) -> &[u8] {
        &self.block
    }

    /// Where the nonce sits in both blobs.
    pub fn nonce_offset(&self) -> usize {
        self.nonce_offset
    }

    /// The hashing blob with a submitted nonce (bytes in blob order), to verify a share.
    pub fn hashing_blob_with_nonce(&self, nonce: [u8; 4]) -> Vec<u8> {
        with_nonce(&self.hashing, self.nonce_offset, nonce)
    }

    /// The block blob with a submitted nonce, to send to the node's `submit_block`.
    pub fn block_blob_with_nonce(&self, nonce: [u8; 4]) -> Vec<u8> {
        with_nonce(&self.block, self.nonce_offset, nonce)
    }

    /// Only what verifying a share needs: the hashing blob and the nonce's place. A miner's
    /// job keeps this; its block blob (the whole template, every transaction hash) is cut
    /// again from the shared template only when a share is a block.
    pub fn into_hashing(self) -> HashingBlob {
        HashingBlob {
            hashing: self.hashing.into_boxed_slice(),
            nonce_offset: self.nonce_offset,
        }
    }
}

/// A miner's hashing blob without its block (see [`MinerBlob::into_hashing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashingBlob {
    hashing: Box<[u8]>,
    nonce_offset: usize,
}

impl HashingBlob {
    /// The hashing blob, sent to the miner as the job's `blob`.
    pub fn hashing_blob(&self) -> &[u8] {
        &self.hashing
    }

    /// Where the nonce sits in it.
    pub fn nonce_offset(&self) -> usize {
        self.nonce_offset
    }
}

/// A copy of `blob` with `nonce` at `offset`.
fn with_nonce(blob: &[u8], offset: usize, nonce: [u8; 4]) -> Vec<u8> {
    let mut out = blob.to_vec();
    out[offset..offset + 4].copy_from_slice(&nonce);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// monerod's `get_block_template` results, captured from `monerod --regtest --offline
    /// --fixed-difficulty 100`.
    const TEMPLATES: [&str; 2] = [
        include_str!("../tests/data/regtest_template_h1.json"),
        include_str!("../tests/data/regtest_template_h301.json"),
    ];

    fn unhex32(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// The `result` object of a captured JSON-RPC response.
    fn result(captured: &str) -> Value {
        let value: Value = serde_json::from_str(captured).unwrap();
        value["result"].clone()
    }

    fn template(captured: &str, reserve_size: usize) -> (BlockTemplate, Value) {
        let res = result(captured);
        let template = BlockTemplate::from_hex(
            res["blocktemplate_blob"].as_str().unwrap(),
            res["reserved_offset"].as_u64().unwrap() as usize,
            reserve_size,
        )
        .unwrap();
        (template, res)
    }

    #[test]
    fn keccak_is_the_original_not_sha3() {
        assert_eq!(
            hex::encode(cn_fast_hash(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        // The RingCT base of a coinbase transaction is the single byte 0 (type null).
        assert_eq!(
            hex::encode(cn_fast_hash(&[0])),
            "bc36789e7a1e281436464229828f817d6612f7b477d66591ff96a9e064bcc98a"
        );
    }

    #[test]
    fn tree_hash_matches_monero_vectors() {
        // Monero's tests/hash/tests-tree.txt: expected root, then the concatenated leaves.
        let vectors = include_str!("../tests/data/tree_hash_vectors.txt");
        let mut counts = Vec::new();
        for line in vectors.lines() {
            let (expected, leaves) = line.split_once(' ').unwrap();
            let leaves: Vec<Hash> = leaves
                .as_bytes()
                .chunks(64)
                .map(|chunk| unhex32(std::str::from_utf8(chunk).unwrap()))
                .collect();
            assert_eq!(
                tree_hash(&leaves),
                Some(unhex32(expected)),
                "{} leaves",
                leaves.len()
            );
            counts.push(leaves.len());
        }
        assert_eq!(counts, (1..=16).collect::<Vec<_>>());
        assert_eq!(tree_hash(&[]), None);
    }

    #[test]
    fn varints_round_trip_and_refuse_bad_encodings() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            let mut reader = Reader::new(&out);
            assert_eq!(reader.varint("v").unwrap(), value);
            assert_eq!(reader.pos, out.len());
        }
        let mut out = Vec::new();
        write_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        for bad in [
            &[0x80][..],                                                   // truncated
            &[0x80, 0x00],                                                 // not canonical
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // > 64 bits
            &[0xff; 11],                                                   // too long
        ] {
            assert!(Reader::new(bad).varint("v").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn block_ids_and_miner_tx_hashes_match_monerod() {
        // Blocks monerod mined (the v1 genesis block and two v16 blocks), with the hashes it
        // reported for them.
        let captured: Value =
            serde_json::from_str(include_str!("../tests/data/regtest_blocks.json")).unwrap();
        let blocks = captured["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 3);
        for block in blocks {
            let blob = hex::decode(block["blob"].as_str().unwrap()).unwrap();
            let layout = Layout::parse(&blob).unwrap();
            assert_eq!(
                hex::encode(layout.miner_tx_hash(&blob)),
                block["miner_tx_hash"].as_str().unwrap()
            );
            assert_eq!(
                hex::encode(block_id(&hashing_blob(&blob).unwrap())),
                block["hash"].as_str().unwrap()
            );
        }
    }

    #[test]
    fn a_block_built_here_was_accepted_by_monerod() {
        // A template with our extra nonce and a mined nonce, which monerod accepted through
        // submit_block; it reported the block hash recorded here.
        let mined: Value =
            serde_json::from_str(include_str!("../tests/data/mined_block.json")).unwrap();
        assert_eq!(mined["submit_block"]["status"], "OK");
        let tpl = &mined["template"];
        let template = BlockTemplate::from_hex(
            tpl["blocktemplate_blob"].as_str().unwrap(),
            tpl["reserved_offset"].as_u64().unwrap() as usize,
            mined["reserve_size"].as_u64().unwrap() as usize,
        )
        .unwrap();
        let extra_nonce = u32::try_from(mined["extra_nonce"].as_u64().unwrap()).unwrap();
        let miner = template.for_miner(extra_nonce).unwrap();
        let mut nonce = [0u8; 4];
        hex::decode_to_slice(mined["nonce"].as_str().unwrap(), &mut nonce).unwrap();
        let block = miner.block_blob_with_nonce(nonce);
        assert_eq!(hex::encode(&block), mined["block_blob"].as_str().unwrap());
        assert_eq!(
            hex::encode(block_id(&miner.hashing_blob_with_nonce(nonce))),
            mined["accepted_hash"].as_str().unwrap()
        );
    }

    #[test]
    fn hashing_blob_matches_monerod() {
        for (captured, reserve) in TEMPLATES.iter().zip([8, 16]) {
            let (template, res) = template(captured, reserve);
            assert_eq!(
                hex::encode(template.hashing_blob()),
                res["blockhashing_blob"].as_str().unwrap()
            );
            assert_eq!(
                hex::encode(hashing_blob(template.blob()).unwrap()),
                res["blockhashing_blob"].as_str().unwrap()
            );
            // An all-zero extra nonce is the template itself.
            let miner = template.for_miner(0).unwrap();
            assert_eq!(miner.block_blob(), template.blob());
            assert_eq!(miner.hashing_blob(), template.hashing_blob());
        }
    }

    #[test]
    fn an_extra_nonce_changes_only_the_reserved_bytes_and_the_merkle_root() {
        for (captured, reserve) in TEMPLATES.iter().zip([8, 16]) {
            let (template, res) = template(captured, reserve);
            let offset = res["reserved_offset"].as_u64().unwrap() as usize;
            let header_len = 39 + 4;
            let mut roots = std::collections::HashSet::new();
            for extra_nonce in [1u32, 2, 0x0102_0304, u32::MAX] {
                let miner = template.for_miner(extra_nonce).unwrap();
                let changed: Vec<usize> = (0..template.blob().len())
                    .filter(|&i| miner.block_blob()[i] != template.blob()[i])
                    .collect();
                assert!(!changed.is_empty());
                assert!(changed.iter().all(|i| (offset..offset + 4).contains(i)));
                assert_eq!(
                    &miner.block_blob()[offset..offset + 4],
                    extra_nonce.to_be_bytes()
                );

                let hashing = miner.hashing_blob();
                let original = template.hashing_blob();
                assert_eq!(hashing.len(), original.len());
                assert_eq!(hashing[..header_len], original[..header_len]);
                assert_ne!(
                    hashing[header_len..header_len + 32],
                    original[header_len..header_len + 32]
                );
                assert_eq!(hashing[header_len + 32..], original[header_len + 32..]);
                assert!(roots.insert(hashing[header_len..header_len + 32].to_vec()));
                // The hashing blob is exactly what the block blob hashes to.
                assert_eq!(hashing_blob(miner.block_blob()).unwrap(), hashing);
            }
        }
    }

    #[test]
    fn the_nonce_goes_into_both_blobs_at_the_same_place() {
        let (template, _) = template(TEMPLATES[0], 8);
        let miner = template.for_miner(7).unwrap();
        assert_eq!(miner.nonce_offset(), 39);
        let nonce = [0xde, 0xad, 0xbe, 0xef];
        let block = miner.block_blob_with_nonce(nonce);
        let hashing = miner.hashing_blob_with_nonce(nonce);
        assert_eq!(block[39..43], nonce);
        assert_eq!(hashing[39..43], nonce);
        // The nonce is in the header, not under the merkle root.
        assert_eq!(hashing_blob(&block).unwrap(), hashing);
    }

    #[test]
    fn refuses_bad_templates() {
        let (template, res) = template(TEMPLATES[0], 8);
        let blob = template.blob().to_vec();
        let offset = res["reserved_offset"].as_u64().unwrap() as usize;

        assert!(matches!(
            template.with_extra_nonce(&[0; 9]),
            Err(Error::ExtraNonceTooLong {
                len: 9,
                reserved: 8
            })
        ));
        // Reserved space outside the extra.
        for (offset, size) in [(offset, 9), (10, 4), (blob.len() - 2, 4), (usize::MAX, 8)] {
            assert!(
                matches!(
                    BlockTemplate::new(blob.clone(), offset, size),
                    Err(Error::InvalidTemplate { .. })
                ),
                "{offset} {size}"
            );
        }
        // Every truncation fails cleanly, as does trailing garbage.
        for len in 0..blob.len() {
            assert!(
                BlockTemplate::new(blob[..len].to_vec(), offset, 8).is_err(),
                "{len}"
            );
        }
        let mut long = blob.clone();
        long.push(0);
        assert!(BlockTemplate::new(long, offset, 8).is_err());
        // A huge transaction count is refused before any allocation.
        let mut huge = blob[..blob.len() - 1].to_vec();
        huge.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(BlockTemplate::new(huge, offset, 8).is_err());
        assert!(BlockTemplate::from_hex("zz", 0, 0).is_err());
    }

    #[test]
    fn tree_root_covers_other_transactions() {
        // Append two transaction hashes to the template: the count and the root change and the
        // hashing blob follows Monero's tree hash over all three.
        let (template, res) = template(TEMPLATES[0], 8);
        let offset = res["reserved_offset"].as_u64().unwrap() as usize;
        let mut blob = template.blob().to_vec();
        blob.pop();
        blob.push(2);
        let others = [[0x11u8; 32], [0x22u8; 32]];
        for hash in &others {
            blob.extend_from_slice(hash);
        }
        let with_txs = BlockTemplate::new(blob, offset, 8).unwrap();
        let hashing = with_txs.hashing_blob();
        let miner_hash = template.layout.miner_tx_hash(template.blob());
        let root = tree_hash(&[miner_hash, others[0], others[1]]).unwrap();
        assert_eq!(hashing[43..75], root);
        assert_eq!(hashing[75..], [3]);
    }

    #[test]
    fn the_block_monerod_accepted_meets_its_difficulty() {
        let mined: Value =
            serde_json::from_str(include_str!("../tests/data/mined_block.json")).unwrap();
        let seed = hex::decode(mined["template"]["seed_hash"].as_str().unwrap()).unwrap();
        let blob = hex::decode(mined["block_blob"].as_str().unwrap()).unwrap();
        let pow = adit_protocol::RandomXHasher::light(&seed)
            .unwrap()
            .hash(&hashing_blob(&blob).unwrap())
            .unwrap();
        assert_eq!(hex::encode(pow), mined["pow_hash"].as_str().unwrap());
        let difficulty = mined["template"]["difficulty"].as_u64().unwrap();
        assert!(adit_protocol::meets_difficulty(&pow, difficulty));
        // This hash happens to be good for exactly floor(2^256 / hash) = 168.
        assert!(adit_protocol::meets_difficulty(&pow, 168));
        assert!(!adit_protocol::meets_difficulty(&pow, 169));
    }

    #[test]
    fn reproduces_monerod_proof_of_work_for_its_blocks() {
        // Blocks mined by monerod --regtest --fixed-difficulty 100, with the pow_hash it reported.
        let captured: Value =
            serde_json::from_str(include_str!("../tests/data/regtest_blocks.json")).unwrap();
        let seed = hex::decode(captured["seed_hash"].as_str().unwrap()).unwrap();
        let hasher = adit_protocol::RandomXHasher::light(&seed).unwrap();
        let mut checked = 0;
        for block in captured["blocks"].as_array().unwrap() {
            if block["major_version"].as_u64().unwrap() < 12 {
                continue; // pre-RandomX (the genesis block)
            }
            let blob = hex::decode(block["blob"].as_str().unwrap()).unwrap();
            let pow = hasher.hash(&hashing_blob(&blob).unwrap()).unwrap();
            assert_eq!(hex::encode(pow), block["pow_hash"].as_str().unwrap());
            assert!(adit_protocol::meets_difficulty(
                &pow,
                block["difficulty"].as_u64().unwrap()
            ));
            checked += 1;
        }
        assert_eq!(checked, 2);
    }
}
