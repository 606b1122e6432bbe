//! The simulated node's state: every block it knows, its main chain, the unspent outputs of
//! that chain, the mempool and the wallet, and what changes them (a transaction taken, a
//! branch replayed).

use std::collections::HashMap;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{Block, BlockHash, CompactTarget, OutPoint, Transaction, TxMerkleNode, Txid};

use super::fault::RpcFault;
use super::ledger::{Utxos, apply, check_spend};
use super::wallet::SimWallet;
use crate::opensy::{REGTEST_LIMIT_BITS, key_bytes, key_height};

/// A block the node knows.
#[derive(Debug, Clone)]
pub(super) struct Known {
    /// The block (genesis: its header and no transactions, which the sim does not have).
    pub(super) block: Block,
    /// Its height.
    pub(super) height: u64,
    /// Taken off the chain by `invalidateblock`.
    pub(super) invalid: bool,
}

/// The chain: every block known, the main chain by height, its unspent outputs, the
/// mempool and the wallet.
#[derive(Debug)]
pub(super) struct Chain {
    pub(super) known: HashMap<BlockHash, Known>,
    pub(super) main: Vec<BlockHash>,
    /// The main chain's unspent outputs.
    pub(super) utxos: Utxos,
    /// Transactions waiting for a block, in the order they came, with their fees.
    pub(super) mempool: Vec<(Transaction, u64)>,
    /// The node's wallet.
    pub(super) wallet: SimWallet,
    /// Counts changes to the mempool, for long poll ids.
    pub(super) mempool_changes: u64,
}

impl Chain {
    /// The chain at the real regtest genesis.
    pub(super) fn genesis() -> Self {
        let header = Header {
            version: Version::ONE,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: "56f65e913353861d32d297c6bc87bbe81242b764d18b8634d75c5a0159c8859e"
                .parse::<TxMerkleNode>()
                .expect("a constant merkle root"),
            time: 1_733_616_003,
            bits: CompactTarget::from_consensus(REGTEST_LIMIT_BITS),
            nonce: 2,
        };
        let id = header.block_hash();
        let block = Block {
            header,
            txdata: Vec::new(),
        };
        Self {
            known: HashMap::from([(
                id,
                Known {
                    block,
                    height: 0,
                    invalid: false,
                },
            )]),
            main: vec![id],
            utxos: Utxos::new(),
            mempool: Vec::new(),
            wallet: SimWallet::default(),
            mempool_changes: 0,
        }
    }

    /// The unspent outputs after the blocks from genesis to `tip`.
    pub(super) fn utxos_along(&self, tip: BlockHash) -> Utxos {
        if tip == self.tip().1 {
            return self.utxos.clone();
        }
        let mut branch = Vec::new();
        let mut id = tip;
        while let Some(k) = self.known.get(&id) {
            branch.push(k);
            if k.height == 0 {
                break;
            }
            id = k.block.header.prev_blockhash;
        }
        let mut utxos = Utxos::new();
        for k in branch.iter().rev() {
            for tx in &k.block.txdata {
                apply(&mut utxos, tx, k.height);
            }
        }
        utxos
    }

    /// The main chain's outputs with the mempool's transactions applied: what a new
    /// transaction may spend.
    pub(super) fn mempool_view(&self) -> Utxos {
        let height = self.tip().0 + 1;
        let mut view = self.utxos.clone();
        for (tx, _) in &self.mempool {
            apply(&mut view, tx, height);
        }
        view
    }

    /// Keeps the mempool's transactions that still pass on the tip, in order (a block took
    /// some, or a reorganisation put some back).
    pub(super) fn revalidate(&mut self) {
        let height = self.tip().0 + 1;
        let mut view = self.utxos.clone();
        let waiting = std::mem::take(&mut self.mempool);
        self.mempool_changes += 1;
        for (tx, _) in waiting {
            if let Ok(fee) = check_spend(&tx, &view, height) {
                apply(&mut view, &tx, height);
                self.mempool.push((tx, fee));
            }
        }
    }

    /// `sendrawtransaction`: takes `tx` into the mempool by the node's rules; its id.
    pub(super) fn accept(&mut self, tx: Transaction) -> std::result::Result<Txid, RpcFault> {
        let txid = tx.compute_txid();
        if self.mempool.iter().any(|(t, _)| t.compute_txid() == txid) {
            return Ok(txid);
        }
        if (0..tx.output.len()).any(|i| self.utxos.contains_key(&OutPoint::new(txid, i as u32))) {
            return Err(RpcFault(
                -27,
                "Transaction outputs already in utxo set".into(),
            ));
        }
        if tx.is_coinbase() {
            return Err(RpcFault(-26, "coinbase".into()));
        }
        let spent_in_mempool = |point: &OutPoint| {
            self.mempool
                .iter()
                .any(|(t, _)| t.input.iter().any(|i| i.previous_output == *point))
        };
        if tx
            .input
            .iter()
            .any(|i| spent_in_mempool(&i.previous_output))
        {
            return Err(RpcFault(-26, "txn-mempool-conflict".into()));
        }
        let fee = check_spend(&tx, &self.mempool_view(), self.tip().0 + 1).map_err(|reason| {
            let code = if reason == "bad-txns-inputs-missingorspent" {
                -25
            } else {
                -26
            };
            RpcFault(code, reason)
        })?;
        self.mempool.push((tx, fee));
        self.mempool_changes += 1;
        Ok(txid)
    }

    /// Transaction `txid` in the mempool or on the main chain, with its block's height and id
    /// when mined.
    pub(super) fn find(&self, txid: &Txid) -> Option<(Transaction, Option<(u64, BlockHash)>)> {
        if let Some((tx, _)) = self.mempool.iter().find(|(t, _)| t.compute_txid() == *txid) {
            return Some((tx.clone(), None));
        }
        self.main.iter().find_map(|id| {
            let k = &self.known[id];
            k.block
                .txdata
                .iter()
                .find(|t| t.compute_txid() == *txid)
                .map(|t| (t.clone(), Some((k.height, *id))))
        })
    }

    pub(super) fn tip(&self) -> (u64, BlockHash) {
        let id = *self.main.last().expect("genesis is always there");
        (self.main.len() as u64 - 1, id)
    }

    /// The median time of the 11 blocks up to `id` (fewer near genesis).
    pub(super) fn median_time_past(&self, mut id: BlockHash) -> u32 {
        let mut times = Vec::with_capacity(11);
        while times.len() < 11 {
            let Some(k) = self.known.get(&id) else { break };
            times.push(k.block.header.time);
            if k.height == 0 {
                break;
            }
            id = k.block.header.prev_blockhash;
        }
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    /// The main-chain block whose id keys RandomX at `height`.
    pub(super) fn key(&self, height: u64) -> [u8; 32] {
        key_bytes(&self.main[key_height(height) as usize])
    }
}
