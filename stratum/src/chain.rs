//! What the pool knows of the chain, whichever node tells it: a block template, a block
//! header, the node's state and the chain tip, and [`ChainTemplate`], what every chain's
//! template gives the job manager. Shared by the nodes' clients, the simulated chain and the
//! job manager; no I/O.

use crate::blob::{BlockTemplate, MinerBlob};
use crate::error::Result;

/// What a chain's block template gives the job manager, whichever chain it is (Monero and the
/// simulated chain through [`MoneroTemplate`], OpenSY through
/// [`crate::opensy::OpenSyTemplate`]): a block per job, the rule that makes a share a block,
/// a block's id and what miners must understand to mine it. A third RandomX chain is one more
/// implementation.
pub trait ChainTemplate: std::fmt::Debug + Send + Sync {
    /// The block of one job: `extra_nonce` (the job's blob id) written where the chain keeps
    /// room for it, the hashing blob derived, the nonce zero.
    fn with_extra_nonce(&self, extra_nonce: &[u8]) -> Result<MinerBlob>;

    /// Whether a share whose RandomX hash is `pow_hash` is a block: exactly the node's rule.
    fn is_block(&self, pow_hash: &[u8; 32]) -> bool;

    /// The id of the block whose hashing blob (nonce in place) is `hashing_blob`, in the byte
    /// order of the node's RPC hex.
    fn block_id(&self, hashing_blob: &[u8]) -> [u8; 32];

    /// The Stratum algorithm of its jobs (a miner must announce it to be sent them).
    fn algo(&self) -> &'static str;

    /// Where the nonce sits in the hashing blob, when jobs must say so (a chain whose miners
    /// cannot find it themselves, as they do in Monero's header).
    fn job_nonce_offset(&self) -> Option<u32>;
}

/// A block template, with what the job manager needs to build miners' jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The block as the node built it, reserved space zeroed and nonce zero.
    pub blocktemplate_blob: Vec<u8>,
    /// Where the reserved space for extra nonces starts in the blob (0 when none was asked for).
    pub reserved_offset: usize,
    /// Size of the reserved space, as asked for.
    pub reserve_size: usize,
    /// Height of the block this template would be.
    pub height: u64,
    /// Network difficulty the block must meet, saturated to `u64::MAX` (see the module docs).
    pub difficulty: u64,
    /// The network difficulty in full.
    pub wide_difficulty: u128,
    /// RandomX seed (key) hash for this block.
    pub seed_hash: [u8; 32],
    /// The seed hash of the next RandomX epoch, once the node announces it, so its cache can be
    /// built before the switch.
    pub next_seed_hash: Option<[u8; 32]>,
    /// Id of the block this one builds on (the current tip).
    pub prev_hash: [u8; 32],
    /// The block reward in atomic units.
    pub expected_reward: u64,
}

impl Template {
    /// The parsed template the job manager derives miners' blobs from.
    pub fn block_template(&self) -> Result<BlockTemplate> {
        BlockTemplate::new(
            self.blocktemplate_blob.clone(),
            self.reserved_offset,
            self.reserve_size,
        )
    }
}

/// A Monero (or simulated-chain) template as the job manager uses it: the parsed template and
/// the network difficulty a block must meet.
#[derive(Debug, Clone)]
pub struct MoneroTemplate {
    /// The parsed template.
    pub template: BlockTemplate,
    /// The network difficulty (saturated, see [`Template::difficulty`]).
    pub difficulty: u64,
}

impl ChainTemplate for MoneroTemplate {
    fn with_extra_nonce(&self, extra_nonce: &[u8]) -> Result<MinerBlob> {
        self.template.with_extra_nonce(extra_nonce)
    }

    fn is_block(&self, pow_hash: &[u8; 32]) -> bool {
        adit_protocol::meets_difficulty(pow_hash, self.difficulty)
    }

    fn block_id(&self, hashing_blob: &[u8]) -> [u8; 32] {
        crate::blob::block_id(hashing_blob)
    }

    fn algo(&self) -> &'static str {
        adit_protocol::ALGO_MONERO
    }

    fn job_nonce_offset(&self) -> Option<u32> {
        None
    }
}

/// A block header as the node reports it, for the chain tip and for confirming found blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    /// Height of the block.
    pub height: u64,
    /// The block id.
    pub hash: [u8; 32],
    /// Id of the previous block (zeroes for the genesis block).
    pub prev_hash: [u8; 32],
    /// Block timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
    /// The block's nonce.
    pub nonce: u32,
    /// Coinbase reward in atomic units.
    pub reward: u64,
    /// Difficulty the block was mined at, saturated to `u64::MAX`.
    pub difficulty: u64,
    /// True when the block is not on the main chain.
    pub orphan_status: bool,
    /// Blocks on top of this one (0 for the tip), to count confirmations.
    pub depth: u64,
}

/// A summary of the node's state from `get_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Number of blocks in the chain, i.e. the tip's height + 1 (monerod's convention).
    pub height: u64,
    /// Height the node is syncing toward (0 when it has no peers ahead of it).
    pub target_height: u64,
    /// Id of the tip.
    pub top_block_hash: [u8; 32],
    /// Difficulty of the next block, saturated to `u64::MAX`.
    pub difficulty: u64,
    /// True once the node considers itself synchronised.
    pub synchronized: bool,
    /// True while the node is busy syncing and may refuse templates.
    pub busy_syncing: bool,
    /// True when the node runs without peers (`--offline`).
    pub offline: bool,
    /// The network: "mainnet", "testnet", "stagenet", "fakechain" (regtest), or "sim".
    pub nettype: String,
    /// The node's version string.
    pub version: String,
}

/// The chain tip: what [`watch_tip`] publishes when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tip {
    /// Height of the tip block.
    pub height: u64,
    /// Id of the tip block.
    pub hash: [u8; 32],
}
