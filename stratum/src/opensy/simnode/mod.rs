//! The simulated OpenSY node: an HTTP JSON-RPC server with the calls adit's backend makes and
//! the checks the real node makes on a submitted block, in the node's order
//! (`docs/src/pool/opensy-protocol.md`), so CI proves every byte adit writes without a real node:
//! 1. the block decodes (`Block decode failed`, RPC error −22); a known id is `duplicate`;
//! 2. structure: `bad-txnmrklroot`, `bad-cb-missing`, `bad-cb-multiple`, `bad-cb-length`;
//! 3. the header: an unknown parent is `prev-blk-not-found`; `bad-diffbits` (regtest does not
//!    retarget: the bits must be the chain's), `high-hash-randomx` (stock RandomX over the 80
//!    bytes keyed by the key block's id, `LE256(hash) ≤ target`), `time-too-old` (not after the
//!    median of the last 11), `time-too-new` (over 2 h ahead);
//! 4. the context: `bad-cb-height` (BIP34), `bad-witness-nonce-size`,
//!    `bad-witness-merkle-match`, `unexpected-witness`, `bad-blk-weight`;
//! 5. connecting it: each transaction's inputs unspent and mature, its signatures valid
//!    ([`ledger`]), and `bad-cb-amount` above the subsidy (10 000 SYL halving every
//!    150 blocks, regtest's) plus the fees.
//!
//! It keeps the unspent outputs of its main chain and a mempool: `sendrawtransaction` takes a
//! transaction by the same rules (and the same id again while it waits; -27 once it is mined),
//! and `getblocktemplate` offers the mempool's transactions with their fees. Its wallet
//! ([`wallet`], at `/wallet/adit`) holds one key and answers the PSBT calls a payer
//! makes.
//!
//! A valid block on the tip extends the chain (`null`); one on another block is kept as a side
//! block (`inconclusive`). `invalidateblock` takes a block and its descendants off the chain,
//! as the real node's does, which is how tests make a reorganisation. The chain starts at the
//! real regtest genesis header (id `67fb15…cd50`), so the first 64 blocks' RandomX key is the
//! real one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash;
use bitcoin::{Block, BlockHash, CompactTarget, Target};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::chain::{Chain, Known};
use self::fault::RpcFault;
use self::rules::{context, now_secs, placeholder_coinbase, structure};
use super::template::{GbtReply, OpenSyTemplate, decode_block};
use super::{Network, REGTEST_LIMIT_BITS};

mod chain;
mod fault;
pub mod ledger;
mod rpc;
mod rules;
pub mod wallet;
mod wallet_rpc;

use crate::error::{Error, Result};
use crate::hash_thread::HashThread;
pub use wallet::wallet_address;

/// Satoshi-like units in one SYL.
pub const COIN: u64 = 100_000_000;

/// Regtest's halving interval.
const HALVING: u64 = 150;

/// The largest block weight the node takes.
const MAX_WEIGHT: u64 = 4_000_000;

/// How far ahead of the node's clock a block's time may be.
const MAX_FUTURE: u64 = 2 * 60 * 60;

/// The largest request body the sim reads (a block of the largest weight, in hex).
const MAX_REQUEST: usize = 16 << 20;

/// How long a long poll waits for a new tip before answering with the same template.
const LONG_POLL: Duration = Duration::from_secs(30);

/// The subsidy of a block at `height` on regtest: 10 000 SYL, halving every 150 blocks.
pub fn subsidy(height: u64) -> u64 {
    match height / HALVING {
        halvings @ 0..64 => (10_000 * COIN) >> halvings,
        _ => 0,
    }
}

/// The address a pool on the simulated node pays when it names none: a regtest P2WPKH of a
/// key nobody holds.
pub fn unowned_address() -> String {
    let program = bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V0, &[0x5a; 20])
        .expect("20 bytes are a v0 program");
    Network::Regtest.segwit_address(&program)
}

/// The simulated node's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimNodeConfig {
    /// The compact target of every block (regtest's limit unless a test wants harder blocks).
    pub bits: u32,
}

impl Default for SimNodeConfig {
    fn default() -> Self {
        Self {
            bits: REGTEST_LIMIT_BITS,
        }
    }
}

impl SimNodeConfig {
    /// Blocks about `difficulty` hashes apart (`pool.sim_difficulty`): the compact form of
    /// `⌊(2^256 − 1) / difficulty⌋`, never easier than regtest's limit.
    pub fn with_difficulty(difficulty: u64) -> Self {
        let divisor = u128::from(difficulty.max(1));
        let mut quotient = [0u8; 32];
        let mut remainder: u128 = 0;
        for byte in &mut quotient {
            let value = remainder * 256 + 0xff;
            *byte = (value / divisor) as u8;
            remainder = value % divisor;
        }
        let target = Target::from_be_bytes(quotient).min(Target::from_compact(
            CompactTarget::from_consensus(REGTEST_LIMIT_BITS),
        ));
        Self {
            bits: target.to_compact_lossy().to_consensus(),
        }
    }
}

/// The running simulated node. Dropping it does not stop the server: cancel its token.
#[derive(Debug, Clone)]
pub struct SimNode {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SimNodeConfig,
    chain: Mutex<Chain>,
    /// The tip's height, for long polls.
    tip: watch::Sender<u64>,
    hasher: HashThread,
}

impl SimNode {
    /// Starts the node on `listen` (port 0 for a free one) until `shutdown`.
    pub async fn start(
        listen: SocketAddr,
        config: SimNodeConfig,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let sim = |reason: String| Error::SimChain { reason };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| sim(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| sim(format!("no local address: {e}")))?;
        let inner = Arc::new(Inner {
            config,
            chain: Mutex::new(Chain::genesis()),
            tip: watch::channel(0).0,
            hasher: HashThread::spawn("adit-sim-opensy-randomx")?,
        });
        let app = Router::new()
            .route("/", axum::routing::post(rpc::rpc))
            .route("/wallet/{name}", axum::routing::post(rpc::wallet_rpc))
            .layer(DefaultBodyLimit::max(MAX_REQUEST))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the simulated OpenSY node stopped");
            }
        });
        tracing::info!(%addr, "simulated OpenSY node (regtest) listening");
        Ok(Self { addr, inner })
    }

    /// A node at regtest's target on a free loopback port, until `shutdown`.
    pub async fn on_loopback(shutdown: CancellationToken) -> Result<Self> {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start(listen, SimNodeConfig::default(), shutdown).await
    }

    /// The node's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The wallet's address, where a pool on this node is paid.
    pub fn wallet_address(&self) -> String {
        wallet_address()
    }

    /// The tip's height.
    pub fn height(&self) -> u64 {
        self.inner.lock().tip().0
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn target(&self) -> Target {
        Target::from_compact(CompactTarget::from_consensus(self.config.bits))
    }

    /// `getblocktemplate`'s answer on the tip.
    fn template(&self) -> Value {
        let chain = self.lock();
        let (tip_height, tip) = chain.tip();
        let height = tip_height + 1;
        let mtp = chain.median_time_past(tip);
        let now = now_secs().max(u64::from(mtp) + 1);
        // The witness root is over the coinbase's zero wtxid and the mempool's wtxids.
        let mut txdata = vec![placeholder_coinbase()];
        txdata.extend(chain.mempool.iter().map(|(tx, _)| tx.clone()));
        let fees: u64 = chain.mempool.iter().map(|(_, fee)| fee).sum();
        let witness_root = Block {
            header: chain.known[&tip].block.header,
            txdata,
        }
        .witness_root()
        .unwrap_or_else(bitcoin::WitnessMerkleNode::all_zeros);
        let commitment = Block::compute_witness_commitment(&witness_root, &[0; 32]);
        let mut script = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
        script.extend_from_slice(commitment.as_byte_array());
        let transactions: Vec<Value> = chain
            .mempool
            .iter()
            .map(|(tx, fee)| {
                json!({
                    "data": encode::serialize_hex(tx),
                    "txid": tx.compute_txid().to_string(),
                    "hash": tx.compute_wtxid().to_string(),
                    "depends": [],
                    "fee": fee,
                    "weight": tx.weight().to_wu(),
                })
            })
            .collect();
        json!({
            "version": 0x2000_0000,
            "rules": ["csv", "!segwit", "taproot"],
            "previousblockhash": tip.to_string(),
            "transactions": transactions,
            "coinbasevalue": subsidy(height) + fees,
            "longpollid": format!("{tip}{}", chain.mempool_changes),
            "target": format!("{:064x}", U256Hex(self.target())),
            "mintime": mtp + 1,
            "mutable": ["time", "transactions", "prevblock"],
            "noncerange": "00000000ffffffff",
            "sigoplimit": 80_000,
            "sizelimit": MAX_WEIGHT,
            "weightlimit": MAX_WEIGHT,
            "curtime": now,
            "bits": format!("{:08x}", self.config.bits),
            "height": height,
            "default_witness_commitment": hex::encode(script),
        })
    }

    /// `submitblock`: the node's BIP22 answer (`None` for accepted), or an RPC error.
    async fn submit(&self, hex_block: &str) -> std::result::Result<Option<String>, RpcFault> {
        let block = hex::decode(hex_block)
            .ok()
            .and_then(|bytes| decode_block(&bytes).ok())
            .ok_or(RpcFault(-22, "Block decode failed".into()))?;
        let id = block.block_hash();
        let (height, key) = {
            let chain = self.lock();
            if let Some(known) = chain.known.get(&id) {
                let answer = if known.invalid {
                    "duplicate-invalid"
                } else {
                    "duplicate"
                };
                return Ok(Some(answer.into()));
            }
            if let Some(reason) = structure(&block) {
                return Ok(Some(reason.into()));
            }
            let Some(parent) = chain.known.get(&block.header.prev_blockhash) else {
                return Ok(Some("prev-blk-not-found".into()));
            };
            let height = parent.height + 1;
            if block.header.bits.to_consensus() != self.config.bits {
                return Ok(Some("bad-diffbits".into()));
            }
            // The key block is the main chain's at the key height below the parent's branch;
            // a side branch shorter than a key interval shares it.
            (height, chain.key(height.min(chain.main.len() as u64)))
        };
        let header = encode::serialize(&block.header);
        let pow = self
            .hasher
            .hash(key, header)
            .await
            .map_err(|e| RpcFault(-1, e.to_string()))?;
        if Target::from_le_bytes(pow) > self.target() {
            return Ok(Some("high-hash-randomx".into()));
        }
        let mut chain = self.lock();
        if chain.known.contains_key(&id) {
            return Ok(Some("duplicate".into()));
        }
        let utxos = match context(&chain, &block, height) {
            Ok(utxos) => utxos,
            Err(reason) => return Ok(Some(reason)),
        };
        let on_tip = block.header.prev_blockhash == chain.tip().1;
        chain.known.insert(
            id,
            Known {
                block,
                height,
                invalid: false,
            },
        );
        if !on_tip {
            return Ok(Some("inconclusive".into()));
        }
        chain.main.push(id);
        chain.utxos = utxos;
        chain.revalidate();
        drop(chain);
        self.tip.send_replace(height);
        tracing::debug!(height, %id, "simulated OpenSY node: block accepted");
        Ok(None)
    }

    /// `generatetoaddress`: `n` blocks on the tip paying `payout`, mined here as the real
    /// node's own miner does (each with the mempool's transactions); their ids.
    async fn generate(
        &self,
        n: u64,
        payout: &bitcoin::ScriptBuf,
    ) -> std::result::Result<Vec<String>, RpcFault> {
        let fault = |e: &dyn std::fmt::Display| RpcFault(-1, e.to_string());
        let mut ids = Vec::new();
        for i in 0..n {
            let reply: GbtReply = serde_json::from_value(self.template()).map_err(|e| fault(&e))?;
            let template = OpenSyTemplate::new(&reply, payout.clone(), Network::Regtest)
                .map_err(|e| fault(&e))?;
            let job = template
                .with_extra_nonce(&i.to_le_bytes())
                .map_err(|e| fault(&e))?;
            let mut block = decode_block(job.block_blob()).map_err(|e| fault(&e))?;
            let key = self.lock().key(template.height);
            loop {
                let header = encode::serialize(&block.header);
                let pow = self.hasher.hash(key, header).await.map_err(|e| fault(&e))?;
                if Target::from_le_bytes(pow) <= self.target() {
                    break;
                }
                block.header.nonce = block
                    .header
                    .nonce
                    .checked_add(1)
                    .ok_or_else(|| fault(&"no nonce solves the block"))?;
            }
            let id = block.block_hash();
            if let Some(reason) = self.submit(&encode::serialize_hex(&block)).await? {
                return Err(fault(&format!(
                    "the generated block {id} was refused: {reason}"
                )));
            }
            ids.push(id.to_string());
        }
        Ok(ids)
    }

    /// `invalidateblock`: `id` and every block after it leave the main chain.
    fn invalidate(&self, id: &BlockHash) -> std::result::Result<(), RpcFault> {
        let mut chain = self.lock();
        let height = match chain.known.get_mut(id) {
            Some(k) if k.height == 0 => {
                return Err(RpcFault(-8, "Invalidating the genesis block".into()));
            }
            Some(k) => {
                k.invalid = true;
                k.height
            }
            None => return Err(RpcFault(-5, "Block not found".into())),
        };
        if chain.main.get(height as usize) == Some(id) {
            let gone = chain.main.split_off(height as usize);
            // The disconnected blocks' transactions go back to the mempool, before the ones
            // already there, as the real node's do.
            let mut returned = Vec::new();
            for id in gone {
                if let Some(k) = chain.known.get_mut(&id) {
                    k.invalid = true;
                    returned.extend(k.block.txdata.iter().skip(1).map(|t| (t.clone(), 0)));
                }
            }
            returned.append(&mut chain.mempool);
            chain.mempool = returned;
            let tip_id = chain.tip().1;
            chain.utxos = ledger::Utxos::new();
            chain.utxos = chain.utxos_along(tip_id);
            chain.revalidate();
            let tip = chain.tip().0;
            drop(chain);
            self.tip.send_replace(tip);
        }
        Ok(())
    }

    /// `getblockheader`'s verbose answer.
    fn header(&self, id: &BlockHash) -> std::result::Result<Value, RpcFault> {
        let chain = self.lock();
        let known = chain
            .known
            .get(id)
            .ok_or(RpcFault(-5, "Block not found".into()))?;
        let on_main = chain.main.get(known.height as usize) == Some(id);
        let confirmations = if on_main {
            chain.main.len() as i64 - known.height as i64
        } else {
            -1
        };
        let h = &known.block.header;
        let mut out = json!({
            "hash": id.to_string(),
            "confirmations": confirmations,
            "height": known.height,
            "version": h.version.to_consensus(),
            "merkleroot": h.merkle_root.to_string(),
            "time": h.time,
            "mediantime": chain.median_time_past(*id),
            "nonce": h.nonce,
            "bits": format!("{:08x}", h.bits.to_consensus()),
            "nTx": known.block.txdata.len(),
        });
        if known.height > 0 {
            out["previousblockhash"] = json!(h.prev_blockhash.to_string());
        }
        if on_main && let Some(next) = chain.main.get(known.height as usize + 1) {
            out["nextblockhash"] = json!(next.to_string());
        }
        Ok(out)
    }
}

/// A target as 64 hex digits, most significant first.
struct U256Hex(Target);

impl std::fmt::LowerHex for U256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.to_be_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difficulty_gives_bits_whose_target_is_about_its_inverse() {
        assert_eq!(SimNodeConfig::with_difficulty(1).bits, REGTEST_LIMIT_BITS);
        assert_eq!(SimNodeConfig::with_difficulty(2).bits, REGTEST_LIMIT_BITS);
        // 2^256 / 65536 = 2^240: 0x1f010000 (a mantissa's top bit would read as a sign).
        assert_eq!(SimNodeConfig::with_difficulty(65_536).bits, 0x1f00_ffff);
        for d in [3_u64, 5_000, 1 << 20, 1 << 40] {
            let bits = SimNodeConfig::with_difficulty(d).bits;
            let target = crate::opensy::target(bits, Network::Regtest.pow_limit()).unwrap();
            let t = target
                .to_be_bytes()
                .iter()
                .fold(0f64, |acc, b| acc * 256.0 + f64::from(*b));
            let back = 2f64.powi(256) / t;
            assert!(
                (back / d as f64 - 1.0).abs() < 1e-3,
                "{d}: {bits:#x} reads {back}"
            );
        }
    }

    #[test]
    fn the_subsidy_halves_every_150_blocks() {
        assert_eq!(subsidy(1), 10_000 * COIN);
        assert_eq!(subsidy(149), 10_000 * COIN);
        assert_eq!(subsidy(150), 5_000 * COIN);
        assert_eq!(subsidy(150 * 64), 0);
    }
}
