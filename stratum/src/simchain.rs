//! The simulated chain behind `--node sim`: a deterministic stand-in for monerod whose templates
//! are byte-for-byte in monerod's format, so any RandomX miner (and the pool's own verifier) can
//! mine them, and which accepts a block iff it builds on the tip and meets the chain's difficulty.
//!
//! **Templates** are rebuilt per height from the template monerod v0.18 returned for height 1 of a
//! regtest chain (`tests/data/regtest_template_h1.json`): the header keeps its versions, the
//! timestamp is the captured one plus 120 s per height, `prev_id` is the tip; the miner
//! transaction keeps its output (amount, one-time key and view tag — the sim has no wallet, so
//! every block pays the same key and the wallet address is ignored) and transaction public key,
//! with the height and unlock time (height + 60) of the new block, and an extra nonce field of
//! `reserve_size` zeroes written as monerod writes it (tag 2, one length byte; at most 255). With
//! the captured height, tip and timestamp this reproduces monerod's blob exactly (a unit test
//! checks it). The difficulty and the RandomX seed are fixed by [`SimConfig`]; the chain starts
//! at regtest's genesis block.
//!
//! **Hashing:** `submit_block` recomputes the block's RandomX hash on a dedicated thread that owns
//! one light-mode [`RandomXHasher`] (the library's VM is not `Send`), built on the first
//! submission and reused after that, since building one takes about a second and 256 MiB. The
//! thread ends when the last clone of the chain is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::blob::{Reader, block_id, hashing_blob, write_varint};
use crate::chain::{BlockHeader, NodeInfo, Template};
use crate::error::{Error, Result};
use crate::hash_thread::HashThread;
use crate::target::meets_difficulty;

/// monerod's `get_block_template` answer at height 1 of a regtest chain: the sim's blueprint.
const CAPTURED_TEMPLATE: &str = include_str!("../tests/data/regtest_template_h1.json");

/// Seconds between the timestamps of consecutive blocks (Monero's target block time).
const BLOCK_TIME: u64 = 120;

/// Blocks before a coinbase output unlocks (`CRYPTONOTE_MINED_MONEY_UNLOCK_WINDOW`).
const UNLOCK_WINDOW: u64 = 60;

/// The largest reserve monerod grants (`TX_EXTRA_NONCE_MAX_COUNT`).
const MAX_RESERVE_SIZE: usize = 255;

/// monerod's error code for a blob it cannot parse.
const WRONG_BLOCK_BLOB: i64 = -6;

/// monerod's error code for a block it parsed but did not add to the chain.
const BLOCK_NOT_ACCEPTED: i64 = -7;

/// The regtest genesis block as monerod reports it: reward, nonce, difficulty.
const GENESIS_REWARD: u64 = 17_592_186_044_415;
/// The regtest genesis block's nonce.
const GENESIS_NONCE: u32 = 10_000;

/// The simulated chain's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// The network difficulty of every block (at least 1).
    pub difficulty: u64,
    /// The RandomX seed hash of every block.
    pub seed_hash: [u8; 32],
}

impl Default for SimConfig {
    /// Difficulty 1000 (a block every few seconds for one light-mode CPU thread) and the seed
    /// of regtest's first epoch, the genesis block's id.
    fn default() -> Self {
        Self {
            difficulty: 1000,
            seed_hash: REGTEST_GENESIS,
        }
    }
}

/// The id of monerod's regtest (and mainnet) genesis block.
const REGTEST_GENESIS: [u8; 32] = [
    0x41, 0x80, 0x15, 0xbb, 0x9a, 0xe9, 0x82, 0xa1, 0x97, 0x5d, 0xa7, 0xd7, 0x92, 0x77, 0xc2, 0x70,
    0x57, 0x27, 0xa5, 0x68, 0x94, 0xba, 0x0f, 0xb2, 0x46, 0xad, 0xaa, 0xbb, 0x1f, 0x46, 0x32, 0xe3,
];

/// A deterministic simulated Monero chain; cheap to clone (clones share the chain).
#[derive(Debug, Clone)]
pub struct SimChain {
    /// The shared chain.
    inner: Arc<SimInner>,
}

/// What the clones of a [`SimChain`] share.
#[derive(Debug)]
struct SimInner {
    /// Difficulty and seed.
    config: SimConfig,
    /// What every template is built from.
    blueprint: Blueprint,
    /// The blocks so far; locked only briefly, never across an await.
    chain: Mutex<Chain>,
    /// Where submitted blocks are hashed.
    hasher: HashThread,
}

/// The accepted blocks.
#[derive(Debug)]
struct Chain {
    /// Headers by height, genesis first.
    blocks: Vec<SimBlock>,
    /// Height by block id.
    by_id: HashMap<[u8; 32], u64>,
}

/// What the sim remembers of an accepted block.
#[derive(Debug, Clone, Copy)]
struct SimBlock {
    /// Block id.
    hash: [u8; 32],
    /// Previous block's id.
    prev_hash: [u8; 32],
    /// Header timestamp.
    timestamp: u64,
    /// Header nonce.
    nonce: u32,
    /// Coinbase reward.
    reward: u64,
    /// Difficulty it was mined at.
    difficulty: u64,
}

impl Chain {
    /// A chain of just the regtest genesis block.
    fn genesis() -> Self {
        Self {
            blocks: vec![SimBlock {
                hash: REGTEST_GENESIS,
                prev_hash: [0; 32],
                timestamp: 0,
                nonce: GENESIS_NONCE,
                reward: GENESIS_REWARD,
                difficulty: 1,
            }],
            by_id: HashMap::from([(REGTEST_GENESIS, 0)]),
        }
    }

    /// Height and block of the tip.
    fn tip(&self) -> (u64, &SimBlock) {
        let height = self.blocks.len() - 1;
        (height as u64, &self.blocks[height])
    }

    /// The header of the block at `height`, if there is one.
    fn header(&self, height: u64) -> Option<BlockHeader> {
        let block = self.blocks.get(usize::try_from(height).ok()?)?;
        Some(self.header_of(height, block))
    }

    /// Appends a block no miner found, its id derived from its parent, height and `salt`.
    fn push_synthetic(&mut self, reward: u64, salt: u8) {
        let (height, tip) = self.tip();
        let (prev_hash, timestamp) = (tip.hash, tip.timestamp + 120);
        let height = height + 1;
        let mut seed = prev_hash.to_vec();
        seed.extend_from_slice(&height.to_le_bytes());
        seed.push(salt);
        let hash = crate::blob::cn_fast_hash(&seed);
        self.blocks.push(SimBlock {
            hash,
            prev_hash,
            timestamp,
            nonce: 0,
            reward,
            difficulty: 1,
        });
        self.by_id.insert(hash, height);
    }

    /// The tip's header.
    fn tip_header(&self) -> BlockHeader {
        let (height, block) = self.tip();
        self.header_of(height, block)
    }

    /// The header of `block`, which is at `height`.
    fn header_of(&self, height: u64, block: &SimBlock) -> BlockHeader {
        BlockHeader {
            height,
            hash: block.hash,
            prev_hash: block.prev_hash,
            timestamp: block.timestamp,
            nonce: block.nonce,
            reward: block.reward,
            difficulty: block.difficulty,
            orphan_status: false,
            depth: self.tip().0 - height,
        }
    }
}

impl SimChain {
    /// A chain at its genesis block. Starts the hashing thread.
    pub fn new(config: SimConfig) -> Result<Self> {
        if config.difficulty == 0 {
            return Err(adit_protocol::Error::ZeroDifficulty.into());
        }
        Ok(Self {
            inner: Arc::new(SimInner {
                config,
                blueprint: Blueprint::captured()?,
                chain: Mutex::new(Chain::genesis()),
                hasher: HashThread::spawn("adit-simchain-randomx")?,
            }),
        })
    }

    /// The chain's settings.
    pub fn config(&self) -> SimConfig {
        self.inner.config
    }

    /// A template for the next block. `wallet_address` is ignored (see the module docs);
    /// `reserve_size` above 255 is refused as monerod refuses it, and 0 gives no reserved space
    /// and a `reserved_offset` of 0, as monerod does.
    pub fn get_block_template(
        &self,
        wallet_address: &str,
        reserve_size: usize,
    ) -> Result<Template> {
        let _ = wallet_address;
        if reserve_size > MAX_RESERVE_SIZE {
            return Err(Error::NodeRejected {
                method: "get_block_template",
                code: -3,
                message: "Too big reserved size, maximum 255".into(),
            });
        }
        let (height, prev_hash) = {
            let chain = self.lock();
            let (height, tip) = chain.tip();
            (height + 1, tip.hash)
        };
        let (blob, reserved_offset) = self.inner.blueprint.build(height, &prev_hash, reserve_size);
        Ok(Template {
            blocktemplate_blob: blob,
            reserved_offset,
            reserve_size,
            height,
            difficulty: self.inner.config.difficulty,
            wide_difficulty: u128::from(self.inner.config.difficulty),
            seed_hash: self.inner.config.seed_hash,
            next_seed_hash: None,
            prev_hash,
            expected_reward: self.inner.blueprint.amount,
        })
    }

    /// Accepts a block (hex) iff it parses, builds on the tip and its RandomX hash meets the
    /// difficulty; the tip then advances. A block already in the chain is accepted again without
    /// change, as monerod does. Refusals carry monerod's codes: -6 for a blob that does not
    /// parse, -7 (with the reason) for a stale block or too little work.
    pub async fn submit_block(&self, block_blob_hex: &str) -> Result<()> {
        let block = Submitted::parse(block_blob_hex)?;
        {
            let chain = self.lock();
            if chain.by_id.contains_key(&block.id) {
                return Ok(());
            }
            check_builds_on_tip(&chain, &block)?;
        }
        let pow = self
            .inner
            .hasher
            .hash(self.inner.config.seed_hash, block.hashing.clone())
            .await?;
        let difficulty = self.inner.config.difficulty;
        if !meets_difficulty(&pow, difficulty) {
            return Err(not_accepted(format!(
                "its proof of work {} does not meet difficulty {difficulty}",
                hex::encode(pow)
            )));
        }
        let mut chain = self.lock();
        if chain.by_id.contains_key(&block.id) {
            return Ok(());
        }
        // Another block may have been accepted while this one was hashed.
        check_builds_on_tip(&chain, &block)?;
        let height = chain.blocks.len() as u64;
        chain.blocks.push(SimBlock {
            hash: block.id,
            prev_hash: block.prev_id,
            timestamp: block.timestamp,
            nonce: block.nonce,
            reward: self.inner.blueprint.amount,
            difficulty,
        });
        chain.by_id.insert(block.id, height);
        Ok(())
    }

    /// Appends `n` blocks no miner found, as `generateblocks` does on regtest: buries the
    /// blocks below so they can be confirmed.
    pub fn advance(&self, n: u64) {
        let reward = self.inner.blueprint.amount;
        let mut chain = self.lock();
        for _ in 0..n {
            chain.push_synthetic(reward, 0);
        }
    }

    /// Replaces the main chain from `height` up with other blocks, one more than it had, as a
    /// reorg to a longer fork does: the blocks replaced are orphaned.
    pub fn reorg_from(&self, height: u64) -> Result<()> {
        let reward = self.inner.blueprint.amount;
        let mut chain = self.lock();
        let tip = chain.tip().0;
        if height == 0 || height > tip {
            return Err(Error::SimChain {
                reason: format!("cannot reorg from height {height}: the chain is 1..={tip}"),
            });
        }
        let replaced: Vec<[u8; 32]> = chain
            .blocks
            .drain(height as usize..)
            .map(|b| b.hash)
            .collect();
        for hash in &replaced {
            chain.by_id.remove(hash);
        }
        for _ in 0..=replaced.len() {
            chain.push_synthetic(reward, 1);
        }
        Ok(())
    }

    /// The tip's header.
    pub fn get_last_block_header(&self) -> BlockHeader {
        self.lock().tip_header()
    }

    /// The header of the block at `height`; a height above the tip is refused as monerod
    /// refuses it (code -2).
    pub fn get_block_header_by_height(&self, height: u64) -> Result<BlockHeader> {
        let chain = self.lock();
        chain.header(height).ok_or_else(|| Error::NodeRejected {
            method: "get_block_header_by_height",
            code: -2,
            message: format!(
                "Requested block height: {height} greater than current top block height: {}",
                chain.tip().0
            ),
        })
    }

    /// The chain's state, shaped like monerod's (offline, synchronised, nettype "sim").
    pub fn get_info(&self) -> NodeInfo {
        let chain = self.lock();
        let (height, tip) = chain.tip();
        NodeInfo {
            height: height + 1,
            target_height: 0,
            top_block_hash: tip.hash,
            difficulty: self.inner.config.difficulty,
            synchronized: true,
            busy_syncing: false,
            offline: true,
            nettype: "sim".into(),
            version: concat!("adit-sim ", env!("CARGO_PKG_VERSION")).into(),
        }
    }

    /// The chain, even if a panicking thread poisoned the lock (it is only pushed to whole).
    fn lock(&self) -> MutexGuard<'_, Chain> {
        self.inner
            .chain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// monerod's "Block not accepted", with the sim's reason.
fn not_accepted(reason: String) -> Error {
    Error::NodeRejected {
        method: "submit_block",
        code: BLOCK_NOT_ACCEPTED,
        message: format!("Block not accepted: {reason}"),
    }
}

/// Refuses a block whose previous id is not the tip.
fn check_builds_on_tip(chain: &Chain, block: &Submitted) -> Result<()> {
    let (height, tip) = chain.tip();
    if block.prev_id == tip.hash {
        return Ok(());
    }
    Err(not_accepted(format!(
        "it builds on {}, not on the tip {} at height {height}",
        hex::encode(block.prev_id),
        hex::encode(tip.hash)
    )))
}

/// A submitted block, parsed.
struct Submitted {
    /// Its hashing blob.
    hashing: Vec<u8>,
    /// Its id.
    id: [u8; 32],
    /// The id it builds on.
    prev_id: [u8; 32],
    /// Its timestamp.
    timestamp: u64,
    /// Its nonce (little-endian, as Monero reads it).
    nonce: u32,
}

impl Submitted {
    /// Parses a block blob (hex); anything unparsable is monerod's "Wrong block blob".
    fn parse(block_blob_hex: &str) -> Result<Self> {
        let wrong = || Error::NodeRejected {
            method: "submit_block",
            code: WRONG_BLOCK_BLOB,
            message: "Wrong block blob".into(),
        };
        let blob = hex::decode(block_blob_hex).map_err(|_| wrong())?;
        let hashing = hashing_blob(&blob).map_err(|_| wrong())?;
        let mut r = Reader::new(&hashing);
        r.varint("field").ok(); // major version
        r.varint("field").ok(); // minor version
        let timestamp = r.varint("field").ok().ok_or_else(wrong)?;
        let prev_id = r.array::<32>("field").ok().ok_or_else(wrong)?;
        let nonce = u32::from_le_bytes(r.array::<4>("field").ok().ok_or_else(wrong)?);
        Ok(Self {
            id: block_id(&hashing),
            hashing,
            prev_id,
            timestamp,
            nonce,
        })
    }
}

/// The fields of the captured template that every sim template reuses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blueprint {
    /// Header major version (hard fork).
    major: u64,
    /// Header minor version (vote).
    minor: u64,
    /// Timestamp of the block at height 1.
    timestamp: u64,
    /// The coinbase output's amount.
    amount: u64,
    /// The coinbase output's one-time key.
    output_key: [u8; 32],
    /// The coinbase output's view tag.
    view_tag: u8,
    /// The miner transaction's public key (extra field tag 1).
    tx_pubkey: [u8; 32],
}

impl Blueprint {
    /// Reads the blueprint from the captured template.
    fn captured() -> Result<Self> {
        let bad = |reason: &str| Error::SimChain {
            reason: format!("the captured regtest template is unusable: {reason}"),
        };
        let answer: serde_json::Value =
            serde_json::from_str(CAPTURED_TEMPLATE).map_err(|_| bad("not JSON"))?;
        let blob = answer["result"]["blocktemplate_blob"]
            .as_str()
            .and_then(|hex| hex::decode(hex).ok())
            .ok_or_else(|| bad("no blocktemplate_blob"))?;
        Self::parse(&blob).ok_or_else(|| bad("not the expected single-output v2 coinbase"))
    }

    /// Parses a template blob of the captured shape: no transactions, a version 2 miner
    /// transaction with one tagged output and an extra of the public key and a nonce.
    fn parse(blob: &[u8]) -> Option<Self> {
        let mut r = Reader::new(blob);
        let major = r.varint("field").ok()?;
        let minor = r.varint("field").ok()?;
        let timestamp = r.varint("field").ok()?;
        r.array::<36>("field").ok()?; // prev_id, nonce
        (r.varint("field").ok()? == 2).then_some(())?; // tx version
        r.varint("field").ok()?; // unlock time
        (r.varint("field").ok()? == 1 && r.byte("field").ok()? == 0xff).then_some(())?; // one txin_gen
        r.varint("field").ok()?; // height
        (r.varint("field").ok()? == 1).then_some(())?; // one output
        let amount = r.varint("field").ok()?;
        (r.byte("field").ok()? == 0x03).then_some(())?; // txout_to_tagged_key
        let output_key = r.array::<32>("field").ok()?;
        let view_tag = r.byte("field").ok()?;
        let extra_len = usize::try_from(r.varint("field").ok()?).ok()?;
        let extra_end = r.pos.checked_add(extra_len)?;
        (r.byte("field").ok()? == 0x01).then_some(())?; // tx public key
        let tx_pubkey = r.array::<32>("field").ok()?;
        r.pos = extra_end;
        (r.byte("field").ok()? == 0 && r.varint("field").ok()? == 0 && r.pos == blob.len())
            .then_some(())?;
        Some(Self {
            major,
            minor,
            timestamp,
            amount,
            output_key,
            view_tag,
            tx_pubkey,
        })
    }

    /// The template blob for `height` on top of `prev_id`, with `reserve_size` (≤ 255) reserved
    /// bytes, and the reserved space's offset (0 when there is none, as monerod reports it).
    fn build(&self, height: u64, prev_id: &[u8; 32], reserve_size: usize) -> (Vec<u8>, usize) {
        let timestamp = self
            .timestamp
            .saturating_add(height.saturating_sub(1).saturating_mul(BLOCK_TIME));
        let mut out = Vec::with_capacity(128 + reserve_size);
        write_varint(&mut out, self.major);
        write_varint(&mut out, self.minor);
        write_varint(&mut out, timestamp);
        out.extend_from_slice(prev_id);
        out.extend_from_slice(&[0; 4]); // nonce
        write_varint(&mut out, 2); // tx version
        write_varint(&mut out, height.saturating_add(UNLOCK_WINDOW));
        write_varint(&mut out, 1); // inputs
        out.push(0xff); // txin_gen
        write_varint(&mut out, height);
        write_varint(&mut out, 1); // outputs
        write_varint(&mut out, self.amount);
        out.push(0x03); // txout_to_tagged_key
        out.extend_from_slice(&self.output_key);
        out.push(self.view_tag);
        let nonce_field = if reserve_size > 0 {
            2 + reserve_size
        } else {
            0
        };
        write_varint(&mut out, (1 + 32 + nonce_field) as u64);
        out.push(0x01);
        out.extend_from_slice(&self.tx_pubkey);
        let reserved_offset = if reserve_size > 0 {
            // monerod writes the nonce's length as one byte (TX_EXTRA_NONCE_MAX_COUNT is 255).
            out.push(0x02);
            out.push(reserve_size.min(MAX_RESERVE_SIZE) as u8);
            let offset = out.len();
            out.resize(offset + reserve_size, 0);
            offset
        } else {
            0
        };
        out.push(0); // RingCT type null
        write_varint(&mut out, 0); // no other transactions
        (out, reserved_offset)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::blob::BlockTemplate;
    use crate::randomx::RandomXHasher;

    fn captured() -> Value {
        serde_json::from_str::<Value>(CAPTURED_TEMPLATE).unwrap()["result"].clone()
    }

    #[test]
    fn reproduces_monerods_template_byte_for_byte() {
        let res = captured();
        let blueprint = Blueprint::captured().unwrap();
        let (blob, offset) = blueprint.build(1, &REGTEST_GENESIS, 8);
        assert_eq!(
            hex::encode(&blob),
            res["blocktemplate_blob"].as_str().unwrap()
        );
        assert_eq!(offset as u64, res["reserved_offset"].as_u64().unwrap());
        assert_eq!(blueprint.amount, res["expected_reward"].as_u64().unwrap());
        assert_eq!(
            hex::encode(REGTEST_GENESIS),
            res["prev_hash"].as_str().unwrap()
        );
        assert_eq!(
            SimConfig::default().seed_hash,
            REGTEST_GENESIS,
            "regtest's first seed is the genesis id"
        );
    }

    #[test]
    fn templates_parse_at_every_varint_width_and_reserve_size() {
        let blueprint = Blueprint::captured().unwrap();
        for height in [1, 67, 68, 127, 128, 16_383, 16_384, 1 << 35, u64::MAX - 60] {
            for reserve in [1, 4, 8, 16, 127, 128, 255] {
                let prev = [height as u8; 32];
                let (blob, offset) = blueprint.build(height, &prev, reserve);
                let template = BlockTemplate::new(blob.clone(), offset, reserve)
                    .unwrap_or_else(|err| panic!("height {height} reserve {reserve}: {err}"));
                assert_eq!(hashing_blob(&blob).unwrap(), template.hashing_blob());
                assert!(blob[offset..offset + reserve].iter().all(|&b| b == 0));
                // The height is in the coinbase input, right after the txin_gen tag.
                let mut r = Reader::new(&blob);
                for _ in 0..3 {
                    r.varint("field").ok();
                }
                assert_eq!(r.array::<32>("field").ok(), Some(prev));
                r.array::<4>("field").ok();
                assert_eq!(r.varint("field").ok(), Some(2));
                assert_eq!(r.varint("field").ok(), Some(height + UNLOCK_WINDOW));
                assert_eq!(
                    (r.varint("field").ok(), r.byte("field").ok()),
                    (Some(1), Some(0xff))
                );
                assert_eq!(r.varint("field").ok(), Some(height));
            }
        }
        let (blob, offset) = blueprint.build(5, &[0; 32], 0);
        assert_eq!(offset, 0);
        assert!(hashing_blob(&blob).is_ok());
    }

    #[test]
    fn refuses_what_monerod_refuses() {
        let sim = SimChain::new(SimConfig::default()).unwrap();
        assert!(matches!(
            sim.get_block_template("a", 256),
            Err(Error::NodeRejected { code: -3, .. })
        ));
        let template = sim.get_block_template("a", 0).unwrap();
        assert_eq!(template.reserved_offset, 0);
        assert!(matches!(
            sim.get_block_header_by_height(1),
            Err(Error::NodeRejected { code: -2, .. })
        ));
        assert!(matches!(
            SimChain::new(SimConfig {
                difficulty: 0,
                ..SimConfig::default()
            }),
            Err(Error::Protocol(adit_protocol::Error::ZeroDifficulty))
        ));
        let info = sim.get_info();
        assert_eq!((info.height, info.top_block_hash), (1, REGTEST_GENESIS));
        let genesis = sim.get_last_block_header();
        assert_eq!((genesis.height, genesis.hash), (0, REGTEST_GENESIS));
    }

    #[tokio::test]
    async fn garbage_is_a_wrong_block_blob() {
        let sim = SimChain::new(SimConfig::default()).unwrap();
        for garbage in ["", "zz", "00", "1010"] {
            assert!(
                matches!(
                    sim.submit_block(garbage).await,
                    Err(Error::NodeRejected { code: -6, .. })
                ),
                "{garbage:?}"
            );
        }
    }

    /// Mines the template for `extra_nonce`: the first nonce whose hash meets `difficulty` and the
    /// first whose hash does not, as full block blobs (hex).
    fn mine(template: &Template, extra_nonce: u32, difficulty: u64) -> (String, String) {
        let hasher = RandomXHasher::light(&template.seed_hash).unwrap();
        let miner = template
            .block_template()
            .unwrap()
            .for_miner(extra_nonce)
            .unwrap();
        let (mut good, mut bad) = (None, None);
        for nonce in 0u32.. {
            let nonce = nonce.to_le_bytes();
            let hash = hasher.hash(&miner.hashing_blob_with_nonce(nonce)).unwrap();
            let slot = if meets_difficulty(&hash, difficulty) {
                &mut good
            } else {
                &mut bad
            };
            slot.get_or_insert_with(|| hex::encode(miner.block_blob_with_nonce(nonce)));
            if let (Some(good), Some(bad)) = (&good, &bad) {
                return (good.clone(), bad.clone());
            }
        }
        unreachable!("2^32 nonces without both outcomes at difficulty {difficulty}")
    }

    #[tokio::test]
    async fn accepts_mined_blocks_and_refuses_low_work_and_stale_ones() {
        let sim = SimChain::new(SimConfig {
            difficulty: 8,
            ..SimConfig::default()
        })
        .unwrap();
        let template = sim.get_block_template("ignored", 8).unwrap();
        assert_eq!((template.height, template.difficulty), (1, 8));
        assert_eq!(template.prev_hash, REGTEST_GENESIS);
        let (good, bad) = mine(&template, 7, 8);

        // Too little work.
        let err = sim.submit_block(&bad).await.unwrap_err();
        assert!(
            matches!(&err, Error::NodeRejected { code: -7, message, .. } if message.contains("does not meet difficulty 8")),
            "{err}"
        );
        assert_eq!(sim.get_last_block_header().height, 0);

        // A block on some other parent: refused before it is even hashed.
        let mut orphan = hex::decode(&good).unwrap();
        orphan[10] ^= 1; // inside prev_id, which starts after the 1 + 1 + 5 bytes of varints
        let err = sim.submit_block(&hex::encode(&orphan)).await.unwrap_err();
        assert!(
            matches!(&err, Error::NodeRejected { code: -7, message, .. } if message.contains("not on the tip")),
            "{err}"
        );

        // Enough work on the tip: accepted, the tip advances.
        sim.submit_block(&good).await.unwrap();
        let tip = sim.get_last_block_header();
        let hashing = hashing_blob(&hex::decode(&good).unwrap()).unwrap();
        assert_eq!(tip.height, 1);
        assert_eq!(tip.hash, block_id(&hashing));
        assert_eq!(tip.prev_hash, REGTEST_GENESIS);
        assert_eq!((tip.difficulty, tip.depth), (8, 0));
        assert_eq!(sim.get_block_header_by_height(0).unwrap().depth, 1);
        assert_eq!(sim.get_info().height, 2);
        // The same block again is fine, as with monerod, and changes nothing.
        sim.submit_block(&good).await.unwrap();
        assert_eq!(sim.get_last_block_header(), tip);

        // Another block for the old tip is stale now, however much work it has.
        let (other, _) = mine(&template, 8, 8);
        assert!(matches!(
            sim.submit_block(&other).await,
            Err(Error::NodeRejected { code: -7, .. })
        ));

        // The next template builds on the new tip and is deterministic.
        let next = sim.get_block_template("ignored", 8).unwrap();
        assert_eq!((next.height, next.prev_hash), (2, tip.hash));
        assert_eq!(next, sim.get_block_template("other", 8).unwrap());
        let (good, _) = mine(&next, 1, 8);
        sim.submit_block(&good).await.unwrap();
        assert_eq!(sim.get_last_block_header().height, 2);
    }
}
