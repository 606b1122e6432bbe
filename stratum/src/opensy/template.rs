//! `getblocktemplate`'s reply → per-job OpenSY blocks. The reply is read and checked once
//! (every transaction decoded and its txid compared with the node's; the witness commitment
//! recomputed and compared with the node's `default_witness_commitment`); then each job costs
//! one coinbase, its txid and the merkle path of the first leaf:
//! - the coinbase's scriptSig is the BIP34 height, then the job's extra nonce (as the node's
//!   own miner writes `<height> OP_0`), 2–100 bytes as the node requires;
//! - its outputs pay `coinbasevalue` to the pool's script, then the witness commitment (with
//!   the 32-byte zero witness reserved value as the coinbase's witness);
//! - the 80-byte header (nonce at bytes 76–79, zero) starts the block, so a solved block is
//!   the job's block with the miner's nonce written in.
//!
//! Encoding is the `bitcoin` crate's. No I/O.

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::consensus::{Decodable, Encodable, encode};
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::transaction::{self, Transaction, TxIn, TxOut};
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Target, TxMerkleNode,
    Txid, VarInt, Witness, WitnessMerkleNode, Wtxid,
};
use serde::Deserialize;

use super::Network;
use crate::blob::MinerBlob;
use crate::chain::ChainTemplate;
use crate::error::{Error, Result};

/// Where the nonce sits in the header (and so in the block): bytes 76–79, little-endian.
pub const NONCE_OFFSET: usize = 76;

/// Longest scriptSig the node takes in a coinbase (`bad-cb-length` above).
const MAX_COINBASE_SCRIPT: usize = 100;

/// The fields of `getblocktemplate`'s reply adit uses (`docs/src/pool/opensy-protocol.md`).
#[derive(Debug, Clone, Deserialize)]
pub struct GbtReply {
    /// The block version, version bits included.
    pub version: i32,
    /// The tip's id, in the RPC's (reversed) hex.
    pub previousblockhash: String,
    /// The transactions to include after the coinbase, in order.
    pub transactions: Vec<GbtTransaction>,
    /// What the coinbase may pay: subsidy plus fees, in satoshi-like units.
    pub coinbasevalue: u64,
    /// The compact target, as 8 hex digits.
    pub bits: String,
    /// The node's time for the header.
    pub curtime: u32,
    /// Height of the block to build.
    pub height: u64,
    /// For long polling: the same id waits until the template would change.
    #[serde(default)]
    pub longpollid: Option<String>,
    /// The witness commitment output's script, in hex, when SegWit is active.
    #[serde(default)]
    pub default_witness_commitment: Option<String>,
}

/// One transaction of a template.
#[derive(Debug, Clone, Deserialize)]
pub struct GbtTransaction {
    /// The transaction, serialized with its witness, in hex.
    pub data: String,
    /// Its txid, in the RPC's hex.
    pub txid: String,
    /// Its fee, in satoshi-like units (the node gives it for every transaction).
    #[serde(default)]
    pub fee: Option<u64>,
}

/// A template ready to cut jobs from.
#[derive(Debug, Clone)]
pub struct OpenSyTemplate {
    /// Height of the block.
    pub height: u64,
    /// The block's header fields but the merkle root (which each job's coinbase changes) and
    /// the nonce (which the miner finds).
    version: Version,
    /// The tip the block builds on.
    pub prev_blockhash: BlockHash,
    time: u32,
    /// The compact target the block must meet.
    pub bits: CompactTarget,
    /// That target, checked against the network's limit.
    target: Target,
    /// What the coinbase pays.
    pub coinbase_value: u64,
    /// The subsidy: what the coinbase pays less its transactions' fees.
    pub subsidy: u64,
    /// The script the coinbase pays.
    payout: ScriptBuf,
    /// The witness commitment output's script (`OP_RETURN aa21a9ed…`), when SegWit is active.
    commitment: Option<ScriptBuf>,
    /// The merkle path of the coinbase: the sibling at each level, bottom up.
    path: Vec<sha256d::Hash>,
    /// The template's transactions, serialized as the block carries them.
    tail: Vec<u8>,
    /// How many transactions the block holds, coinbase included.
    count: usize,
    /// The node's long-poll id.
    pub longpollid: Option<String>,
}

impl OpenSyTemplate {
    /// Reads `reply` of a node on `network`, paying the coinbase to `payout`; every field is
    /// checked, since the reply comes from outside.
    pub fn new(reply: &GbtReply, payout: ScriptBuf, network: Network) -> Result<Self> {
        let bad = |reason: String| Error::NodeResponse {
            method: "getblocktemplate",
            reason,
        };
        let prev_blockhash = reply
            .previousblockhash
            .parse::<BlockHash>()
            .map_err(|e| bad(format!("previousblockhash: {e}")))?;
        let bits = parse_bits(&reply.bits).ok_or_else(|| bad(format!("bits {:?}", reply.bits)))?;
        let target = super::target(bits.to_consensus(), network.pow_limit())
            .map_err(|e| bad(e.to_string()))?;
        if reply.height == 0 || reply.height > i64::MAX as u64 {
            return Err(bad(format!("height {}", reply.height)));
        }
        let mut fees: u64 = 0;
        for (i, tx) in reply.transactions.iter().enumerate() {
            let fee = tx
                .fee
                .ok_or_else(|| bad(format!("transaction {i} has no fee")))?;
            fees = fees.saturating_add(fee);
        }
        let subsidy = reply.coinbasevalue.checked_sub(fees).ok_or_else(|| {
            bad(format!(
                "coinbasevalue {} is below the fees of its transactions ({fees})",
                reply.coinbasevalue
            ))
        })?;
        let mut tail = Vec::new();
        let mut txids = Vec::with_capacity(reply.transactions.len());
        let mut wtxids = Vec::with_capacity(reply.transactions.len() + 1);
        wtxids.push(Wtxid::all_zeros().to_raw_hash());
        for (i, tx) in reply.transactions.iter().enumerate() {
            let bytes = hex::decode(&tx.data)
                .map_err(|e| bad(format!("transaction {i}'s data is not hex: {e}")))?;
            let decoded: Transaction = encode::deserialize(&bytes)
                .map_err(|e| bad(format!("transaction {i} does not decode: {e}")))?;
            let txid = decoded.compute_txid();
            if txid.to_string() != tx.txid {
                return Err(bad(format!(
                    "transaction {i}'s txid is {txid}, the node says {}",
                    tx.txid
                )));
            }
            if decoded.is_coinbase() {
                return Err(bad(format!("transaction {i} is a coinbase")));
            }
            txids.push(txid.to_raw_hash());
            wtxids.push(decoded.compute_wtxid().to_raw_hash());
            tail.extend_from_slice(&bytes);
        }
        let commitment = match &reply.default_witness_commitment {
            None => None,
            Some(given) => {
                let ours = commitment_script(&wtxids);
                if hex::encode(ours.as_bytes()) != given.to_ascii_lowercase() {
                    return Err(bad(format!(
                        "default_witness_commitment {given} is not the commitment of its transactions ({})",
                        hex::encode(ours.as_bytes())
                    )));
                }
                Some(ours)
            }
        };
        Ok(Self {
            height: reply.height,
            version: Version::from_consensus(reply.version),
            prev_blockhash,
            time: reply.curtime,
            bits,
            target,
            coinbase_value: reply.coinbasevalue,
            subsidy,
            payout,
            commitment,
            path: coinbase_path(&txids),
            count: txids.len() + 1,
            tail,
            longpollid: reply.longpollid.clone(),
        })
    }

    /// The target as a Monero-style difficulty (`hash × D < 2^256`), saturated: what vardiff
    /// caps a miner's share difficulty at. Blocks are judged on the target itself.
    pub fn difficulty(&self) -> u64 {
        let t = self
            .target
            .to_be_bytes()
            .iter()
            .fold(0f64, |acc, b| acc * 256.0 + f64::from(*b));
        let d = (2f64.powi(256) / (t + 1.0)).floor();
        if d >= u64::MAX as f64 {
            u64::MAX
        } else {
            (d as u64).max(1)
        }
    }

    /// The coinbase paying the template's value with `extra_nonce` after the height.
    pub fn coinbase(&self, extra_nonce: &[u8]) -> Result<Transaction> {
        let too_long = || Error::ExtraNonceTooLong {
            len: extra_nonce.len(),
            reserved: MAX_COINBASE_SCRIPT.saturating_sub(height_push(self.height).len() + 2),
        };
        let push = PushBytesBuf::try_from(extra_nonce.to_vec()).map_err(|_| too_long())?;
        let script_sig = Builder::from(height_push(self.height).into_bytes())
            .push_slice(push)
            .into_script();
        if script_sig.len() > MAX_COINBASE_SCRIPT {
            return Err(too_long());
        }
        let mut input = TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::new(),
        };
        let mut output = vec![TxOut {
            value: Amount::from_sat(self.coinbase_value),
            script_pubkey: self.payout.clone(),
        }];
        if let Some(commitment) = &self.commitment {
            input.witness = Witness::from_slice(&[[0u8; 32]]);
            output.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment.clone(),
            });
        }
        Ok(Transaction {
            version: transaction::Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![input],
            output,
        })
    }

    /// The header over `coinbase`, nonce zero.
    pub fn header(&self, coinbase: &Transaction) -> Header {
        let merkle_root = self
            .path
            .iter()
            .fold(coinbase.compute_txid().to_raw_hash(), |node, sibling| {
                hash_pair(&node, sibling)
            });
        Header {
            version: self.version,
            prev_blockhash: self.prev_blockhash,
            merkle_root: TxMerkleNode::from_raw_hash(merkle_root),
            time: self.time,
            bits: self.bits,
            nonce: 0,
        }
    }

    /// One job's block: the coinbase with `extra_nonce`, the header miners hash (nonce at
    /// [`NONCE_OFFSET`]) and the whole block behind it.
    pub fn with_extra_nonce(&self, extra_nonce: &[u8]) -> Result<MinerBlob> {
        let coinbase = self.coinbase(extra_nonce)?;
        let header = self.header(&coinbase);
        let mut block = Vec::with_capacity(100 + self.tail.len());
        // Writing to a Vec cannot fail.
        let written = header
            .consensus_encode(&mut block)
            .and_then(|_| VarInt::from(self.count).consensus_encode(&mut block))
            .and_then(|_| coinbase.consensus_encode(&mut block));
        debug_assert!(written.is_ok());
        block.extend_from_slice(&self.tail);
        let hashing = block[..Header::SIZE].to_vec();
        Ok(MinerBlob::new(block, hashing, NONCE_OFFSET))
    }
}

impl ChainTemplate for OpenSyTemplate {
    fn with_extra_nonce(&self, extra_nonce: &[u8]) -> Result<MinerBlob> {
        OpenSyTemplate::with_extra_nonce(self, extra_nonce)
    }

    fn is_block(&self, pow_hash: &[u8; 32]) -> bool {
        Target::from_le_bytes(*pow_hash) <= self.target
    }

    fn block_id(&self, hashing_blob: &[u8]) -> [u8; 32] {
        super::rpc_order(&BlockHash::from_raw_hash(sha256d::Hash::hash(hashing_blob)))
    }

    fn algo(&self) -> &'static str {
        adit_protocol::ALGO_OPENSY
    }

    fn job_nonce_offset(&self) -> Option<u32> {
        Some(NONCE_OFFSET as u32)
    }
}

/// The compact target in `bits`' 8 hex digits.
fn parse_bits(bits: &str) -> Option<CompactTarget> {
    if bits.len() != 8 {
        return None;
    }
    u32::from_str_radix(bits, 16)
        .ok()
        .map(CompactTarget::from_consensus)
}

/// The BIP34 height push the node expects first in the coinbase's scriptSig (`CScript() <<
/// nHeight`: `OP_1`…`OP_16` for 1–16, a minimal number push otherwise).
pub fn height_push(height: u64) -> ScriptBuf {
    Builder::new().push_int(height as i64).into_script()
}

/// The witness commitment output's script for a block whose wtxids are `wtxids` (the
/// coinbase's as zeroes) and whose witness reserved value is 32 zero bytes.
fn commitment_script(wtxids: &[sha256d::Hash]) -> ScriptBuf {
    let root = bitcoin::merkle_tree::calculate_root(wtxids.iter().copied())
        .expect("the coinbase's leaf is always there");
    let commitment =
        Block::compute_witness_commitment(&WitnessMerkleNode::from_raw_hash(root), &[0; 32]);
    let mut script = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    script.extend_from_slice(commitment.as_byte_array());
    ScriptBuf::from_bytes(script)
}

/// SHA256d of two nodes side by side: the merkle tree's inner node.
fn hash_pair(left: &sha256d::Hash, right: &sha256d::Hash) -> sha256d::Hash {
    let mut data = [0u8; 64];
    data[..32].copy_from_slice(left.as_byte_array());
    data[32..].copy_from_slice(right.as_byte_array());
    sha256d::Hash::hash(&data)
}

/// The merkle path of the first leaf of a tree whose other leaves are `rest`: at each level
/// the first node's sibling (a level of odd length pairs its last node with itself, as
/// Bitcoin's tree does).
fn coinbase_path(rest: &[sha256d::Hash]) -> Vec<sha256d::Hash> {
    // The level's nodes after the first, whose value the path does not need.
    let mut level: Vec<sha256d::Hash> = rest.to_vec();
    let mut path = Vec::new();
    while !level.is_empty() {
        path.push(level[0]);
        // The next level after its first node: the pairs from the level's second pair on.
        level = level[1..]
            .chunks(2)
            .map(|pair| hash_pair(&pair[0], pair.get(1).unwrap_or(&pair[0])))
            .collect();
    }
    path
}

/// The txid of a block's coinbase, for tests and the simulated node.
pub fn coinbase_txid(block: &Block) -> Option<Txid> {
    block.txdata.first().map(Transaction::compute_txid)
}

/// Decodes a whole block, as `submitblock` receives it.
pub fn decode_block(bytes: &[u8]) -> std::result::Result<Block, encode::Error> {
    let mut reader = bytes;
    let block = Block::consensus_decode(&mut reader)?;
    if !reader.is_empty() {
        return Err(encode::Error::ParseFailed("data after the block"));
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A spend of `n`'s output with or without a witness.
    fn spend(n: u8, witness: bool) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(Txid::from_byte_array([n; 32]), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: if witness {
                    Witness::from_slice(&[vec![n; 72], vec![2; 33]])
                } else {
                    Witness::new()
                },
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1_000 + u64::from(n)),
                script_pubkey: ScriptBuf::from_bytes(vec![0x00, 0x14, n, n, n]),
            }],
        }
    }

    /// A reply as the node would give it for `txs`, with its witness commitment.
    fn reply(height: u64, txs: &[Transaction]) -> GbtReply {
        let mut wtxids = vec![Wtxid::all_zeros().to_raw_hash()];
        wtxids.extend(txs.iter().map(|t| t.compute_wtxid().to_raw_hash()));
        GbtReply {
            version: 0x2000_0000,
            previousblockhash: "67fb155259a269da63429b2d84149027fc4a9a366236bc849fddff3a2554cd50"
                .into(),
            transactions: txs
                .iter()
                .map(|t| GbtTransaction {
                    data: encode::serialize_hex(t),
                    txid: t.compute_txid().to_string(),
                    fee: Some(1_000),
                })
                .collect(),
            coinbasevalue: 10_000 * 100_000_000,
            bits: "207fffff".into(),
            curtime: 1_733_700_000,
            height,
            longpollid: Some("x".into()),
            default_witness_commitment: Some(hex::encode(commitment_script(&wtxids).as_bytes())),
        }
    }

    fn payout() -> ScriptBuf {
        ScriptBuf::from_bytes(vec![0x00, 0x14, 1, 2, 3])
    }

    #[test]
    fn a_job_s_block_is_a_valid_bitcoin_block_with_the_nonce_at_76() {
        let txs = [spend(1, true), spend(2, false), spend(3, true)];
        let template = OpenSyTemplate::new(&reply(200, &txs), payout(), Network::Regtest).unwrap();
        let job = template.with_extra_nonce(&[0xab; 16]).unwrap();
        let mut solved = job.block_blob_with_nonce(0x1234_5678_u32.to_le_bytes());
        let block = decode_block(&solved).unwrap();
        assert!(block.check_merkle_root(), "merkle root");
        assert!(block.check_witness_commitment(), "witness commitment");
        assert_eq!(block.header.nonce, 0x1234_5678);
        assert_eq!(block.txdata.len(), 4);
        assert_eq!(&block.txdata[1..], &txs);
        assert_eq!(
            job.hashing_blob_with_nonce(0x1234_5678_u32.to_le_bytes()),
            &solved[..80]
        );
        assert_eq!(
            block.bip34_block_height().unwrap(),
            200,
            "BIP34 height first in the scriptSig"
        );
        let script = block.txdata[0].input[0].script_sig.as_bytes();
        assert!(script.ends_with(&[0xab; 16]), "the extra nonce after it");
        assert_eq!(
            block.txdata[0].output[0].value.to_sat(),
            10_000 * 100_000_000
        );
        // A job keeps only (what differs of) its merkle root, bytes 36..68 of the header.
        let base = crate::jobs::Work::base_of(&template).unwrap();
        let kept = crate::jobs::JobBlob::against(base.hashing_blob(), job.hashing_blob());
        assert!(
            matches!(kept, crate::jobs::JobBlob::Patch { at, len, .. }
                if at >= 36 && usize::from(at) + usize::from(len) <= 68),
            "{kept:?}"
        );
        // The bytes miners hash are the header's, and nothing follows the block.
        solved.push(0);
        assert!(decode_block(&solved).is_err());
    }

    #[test]
    fn the_subsidy_is_the_coinbase_value_less_the_fees() {
        let txs = [spend(1, true), spend(2, false)];
        let template = OpenSyTemplate::new(&reply(9, &txs), payout(), Network::Regtest).unwrap();
        assert_eq!(template.coinbase_value, 10_000 * 100_000_000);
        assert_eq!(template.subsidy, 10_000 * 100_000_000 - 2 * 1_000);
        let empty = OpenSyTemplate::new(&reply(9, &[]), payout(), Network::Regtest).unwrap();
        assert_eq!(empty.subsidy, empty.coinbase_value);
    }

    #[test]
    fn a_block_is_judged_on_the_full_target_and_named_by_its_header_s_sha256d() {
        let template = OpenSyTemplate::new(&reply(3, &[]), payout(), Network::Regtest).unwrap();
        // bits 207fffff: 7fffff00…00, below the limit 7fff…ff.
        let target = Target::from_compact(CompactTarget::from_consensus(0x207f_ffff));
        assert!(target < Network::Regtest.pow_limit());
        assert!(template.is_block(&target.to_le_bytes()), "equal passes");
        let mut above = target.to_le_bytes();
        above[0] = 1;
        assert!(!template.is_block(&above), "one above is high-hash");
        let job = template.with_extra_nonce(&[1; 16]).unwrap();
        let solved = decode_block(&job.block_blob_with_nonce([5, 0, 0, 0])).unwrap();
        let id = template.block_id(&job.hashing_blob_with_nonce([5, 0, 0, 0]));
        assert_eq!(
            hex::encode(id),
            solved.block_hash().to_string(),
            "the RPC's hex"
        );
        assert_eq!(template.difficulty(), 2, "regtest's target is about 2^255");
        let mut easy = reply(3, &[]);
        easy.bits = "2100ffff".into();
        assert!(
            OpenSyTemplate::new(&easy, payout(), Network::Regtest).is_err(),
            "bits above the network's limit are the node's bad-diffbits"
        );
    }

    #[test]
    fn heights_1_to_16_are_written_as_small_number_opcodes_and_the_script_is_long_enough() {
        for height in [1, 16, 17, 127, 128, 255, 256, 65_535, 8_388_608] {
            let template =
                OpenSyTemplate::new(&reply(height, &[]), payout(), Network::Regtest).unwrap();
            let coinbase = template.coinbase(&[0; 16]).unwrap();
            let script = coinbase.input[0].script_sig.as_bytes();
            assert!(script.starts_with(height_push(height).as_bytes()));
            assert!((2..=100).contains(&script.len()));
        }
        assert_eq!(height_push(1).as_bytes(), [0x51]);
        assert_eq!(height_push(16).as_bytes(), [0x60]);
        assert_eq!(height_push(17).as_bytes(), [0x01, 17]);
        assert_eq!(height_push(128).as_bytes(), [0x02, 0x80, 0x00]);
    }

    #[test]
    fn a_reply_that_lies_is_refused() {
        let txs = [spend(1, true)];
        let mut wrong_txid = reply(5, &txs);
        wrong_txid.transactions[0].txid = spend(2, true).compute_txid().to_string();
        let mut wrong_commitment = reply(5, &txs);
        wrong_commitment.default_witness_commitment =
            reply(5, &[spend(2, true)]).default_witness_commitment;
        let mut bad_bits = reply(5, &txs);
        bad_bits.bits = "207fff".into();
        let mut not_hex = reply(5, &txs);
        not_hex.transactions[0].data.push('z');
        let mut zero_height = reply(5, &txs);
        zero_height.height = 0;
        let mut no_fee = reply(5, &txs);
        no_fee.transactions[0].fee = None;
        let mut fees_above_value = reply(5, &txs);
        fees_above_value.coinbasevalue = 999;
        for (what, r) in [
            ("fee", no_fee),
            ("fees", fees_above_value),
            ("txid", wrong_txid),
            ("commitment", wrong_commitment),
            ("bits", bad_bits),
            ("hex", not_hex),
            ("height", zero_height),
        ] {
            assert!(
                matches!(
                    OpenSyTemplate::new(&r, payout(), Network::Regtest),
                    Err(Error::NodeResponse { .. })
                ),
                "{what}"
            );
        }
        let template = OpenSyTemplate::new(&reply(5, &txs), payout(), Network::Regtest).unwrap();
        assert!(matches!(
            template.with_extra_nonce(&[0; 99]),
            Err(Error::ExtraNonceTooLong { .. })
        ));
    }

    proptest! {
        /// A node's reply is outside bytes: any hex, bits, height and transaction data is
        /// read or refused with a reason, never a panic, and what is read cuts jobs.
        #[test]
        fn any_reply_is_read_or_refused_without_a_panic(
            prev in "[0-9a-f]{0,66}",
            bits in "[0-9a-fA-F]{0,9}",
            height in any::<u64>(),
            value in any::<u64>(),
            data in prop::collection::vec("[0-9a-f]{0,300}", 0..3),
            commitment in prop::option::of("[0-9a-f]{0,80}"),
            extra in prop::collection::vec(any::<u8>(), 0..120),
        ) {
            let reply = GbtReply {
                version: 0x2000_0000,
                previousblockhash: prev,
                transactions: data
                    .into_iter()
                    .map(|data| GbtTransaction {
                        data,
                        txid: String::new(),
                        fee: Some(0),
                    })
                    .collect(),
                coinbasevalue: value,
                bits,
                curtime: 0,
                height,
                longpollid: None,
                default_witness_commitment: commitment,
            };
            if let Ok(template) = OpenSyTemplate::new(&reply, payout(), Network::Regtest) {
                let _ = template.with_extra_nonce(&extra);
                let _ = template.difficulty();
            }
        }

        /// The path of the first leaf gives the root the `bitcoin` crate computes over the
        /// whole tree, for any number of leaves.
        #[test]
        fn the_coinbase_path_gives_the_crate_s_root(leaves in prop::collection::vec(any::<[u8; 32]>(), 1..70)) {
            let hashes: Vec<sha256d::Hash> = leaves.iter().map(|b| sha256d::Hash::from_byte_array(*b)).collect();
            let whole = bitcoin::merkle_tree::calculate_root(hashes.iter().copied()).unwrap();
            let by_path = coinbase_path(&hashes[1..]).iter().fold(hashes[0], |n, s| hash_pair(&n, s));
            prop_assert_eq!(whole, by_path);
        }
    }
}
