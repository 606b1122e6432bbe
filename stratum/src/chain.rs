//! What the pool knows of the chain, whichever node tells it: a block template, a block
//! header, the node's state and the chain tip. Shared by monerod's client, the simulated chain
//! and the job manager; no I/O.

use crate::blob::BlockTemplate;
use crate::error::Result;

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
