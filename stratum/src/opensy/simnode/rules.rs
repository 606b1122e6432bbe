//! The checks the real node makes on a submitted block, after decoding it, in its order:
//! structure (`CheckBlock`), then, after the proof of work, the context and connecting it
//! (`ContextualCheckBlockHeader`, `ContextualCheckBlock`, `ConnectBlock`).

use bitcoin::{Block, Transaction, Weight};

use super::chain::Chain;
use super::ledger::{Utxos, apply, check_spend};
use super::{MAX_FUTURE, MAX_WEIGHT, subsidy};
use crate::opensy::template::height_push;

/// The structural checks (`CheckBlock`): the first failure's reason.
pub(super) fn structure(block: &Block) -> Option<&'static str> {
    if !block.check_merkle_root() {
        return Some("bad-txnmrklroot");
    }
    let coinbase = block.txdata.first()?;
    if !coinbase.is_coinbase() {
        return Some("bad-cb-missing");
    }
    if block.txdata[1..].iter().any(|t| t.is_coinbase()) {
        return Some("bad-cb-multiple");
    }
    if !(2..=100).contains(&coinbase.input[0].script_sig.len()) {
        return Some("bad-cb-length");
    }
    None
}

/// The checks after the proof of work, against the chain (`ContextualCheckBlockHeader`,
/// `ContextualCheckBlock`, `ConnectBlock`): the unspent outputs after the block, or the first
/// failure's reason.
pub(super) fn context(
    chain: &Chain,
    block: &Block,
    height: u64,
) -> std::result::Result<Utxos, String> {
    let header = &block.header;
    if header.time <= chain.median_time_past(header.prev_blockhash) {
        return Err("time-too-old".into());
    }
    if u64::from(header.time) > now_secs() + MAX_FUTURE {
        return Err("time-too-new".into());
    }
    let coinbase = &block.txdata[0];
    if !coinbase.input[0]
        .script_sig
        .as_bytes()
        .starts_with(height_push(height).as_bytes())
    {
        return Err("bad-cb-height".into());
    }
    if let Some(reason) = witness(block) {
        return Err(reason.into());
    }
    if block.weight() > Weight::from_wu(MAX_WEIGHT) {
        return Err("bad-blk-weight".into());
    }
    let mut utxos = chain.utxos_along(header.prev_blockhash);
    let mut fees = 0u64;
    for tx in &block.txdata[1..] {
        fees = fees.saturating_add(check_spend(tx, &utxos, height)?);
        apply(&mut utxos, tx, height);
    }
    let paid = coinbase
        .output
        .iter()
        .try_fold(0u64, |sum, o| sum.checked_add(o.value.to_sat()));
    if paid.is_none_or(|paid| paid > subsidy(height).saturating_add(fees)) {
        return Err("bad-cb-amount".into());
    }
    apply(&mut utxos, coinbase, height);
    Ok(utxos)
}

/// A coinbase standing in for the block's own where only its (zero) wtxid counts.
pub(super) fn placeholder_coinbase() -> Transaction {
    Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: Vec::new(),
    }
}

/// BIP141's commitment rules: with a commitment output, the coinbase's witness is one 32-byte
/// value and the commitment matches; without one, no transaction carries a witness.
fn witness(block: &Block) -> Option<&'static str> {
    const MAGIC: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    let coinbase = &block.txdata[0];
    let has_commitment = coinbase
        .output
        .iter()
        .any(|o| o.script_pubkey.len() >= 38 && o.script_pubkey.as_bytes()[..6] == MAGIC);
    if has_commitment {
        let witness = &coinbase.input[0].witness;
        if witness.len() != 1 || witness.iter().next().map(<[u8]>::len) != Some(32) {
            return Some("bad-witness-nonce-size");
        }
        if !block.check_witness_commitment() {
            return Some("bad-witness-merkle-match");
        }
    } else if block
        .txdata
        .iter()
        .any(|t| t.input.iter().any(|i| !i.witness.is_empty()))
    {
        return Some("unexpected-witness");
    }
    None
}

/// Seconds since the Unix epoch by this machine's clock.
pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
