//! The simulated OpenSY node's coins: the unspent outputs along a branch of blocks, and the
//! rules the real node applies to a transaction spending them, in its order
//! (`Consensus::CheckTxInputs`, then the scripts): every input unspent
//! (`bad-txns-inputs-missingorspent`), a coinbase's output only 100 blocks on
//! (`bad-txns-premature-spend-of-coinbase`), no more paid than spent (`bad-txns-in-belowout`),
//! and each input's signature. The sim verifies P2WPKH spends (what the node's wallet and
//! adit's payer make) with the real sighash and secp256k1; any other script it refuses rather
//! than takes unchecked.

use std::collections::{HashMap, HashSet};

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::SighashCache;
use bitcoin::{Amount, CompressedPublicKey, OutPoint, ScriptBuf, Transaction, TxOut};

/// Blocks a coinbase's outputs wait before they can be spent.
pub const COINBASE_MATURITY: u64 = 100;

/// An unspent output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// What it pays, to which script.
    pub out: TxOut,
    /// The height of the block that made it (the next block's for one in the mempool).
    pub height: u64,
    /// Whether a coinbase made it.
    pub coinbase: bool,
}

/// The unspent outputs.
pub type Utxos = HashMap<OutPoint, Coin>;

/// Applies `tx`, made at `height`: its inputs spent, its spendable outputs added.
pub fn apply(utxos: &mut Utxos, tx: &Transaction, height: u64) {
    let coinbase = tx.is_coinbase();
    if !coinbase {
        for input in &tx.input {
            utxos.remove(&input.previous_output);
        }
    }
    let txid = tx.compute_txid();
    for (vout, out) in tx.output.iter().enumerate() {
        if out.script_pubkey.is_op_return() {
            continue;
        }
        utxos.insert(
            OutPoint::new(txid, vout as u32),
            Coin {
                out: out.clone(),
                height,
                coinbase,
            },
        );
    }
}

/// Checks a non-coinbase `tx` spent at `height` against `utxos`; its fee, or the node's reason
/// for refusing it.
pub fn check_spend(
    tx: &Transaction,
    utxos: &Utxos,
    height: u64,
) -> std::result::Result<u64, String> {
    if tx.input.is_empty() {
        return Err("bad-txns-vin-empty".into());
    }
    if tx.output.is_empty() {
        return Err("bad-txns-vout-empty".into());
    }
    let mut seen = HashSet::new();
    if !tx.input.iter().all(|i| seen.insert(i.previous_output)) {
        return Err("bad-txns-inputs-duplicate".into());
    }
    let mut spent = Vec::with_capacity(tx.input.len());
    for input in &tx.input {
        let coin = utxos
            .get(&input.previous_output)
            .ok_or("bad-txns-inputs-missingorspent")?;
        if coin.coinbase && height.saturating_sub(coin.height) < COINBASE_MATURITY {
            return Err("bad-txns-premature-spend-of-coinbase".into());
        }
        spent.push(coin.out.clone());
    }
    let value_in = sum(spent.iter()).ok_or("bad-txns-inputvalues-outofrange")?;
    let value_out = sum(tx.output.iter()).ok_or("bad-txns-txouttotal-toolarge")?;
    if value_in < value_out {
        return Err("bad-txns-in-belowout".into());
    }
    for (index, out) in spent.iter().enumerate() {
        verify_input(tx, index, out)?;
    }
    Ok(value_in - value_out)
}

/// The sum of `outputs`, if it does not overflow.
fn sum<'a>(mut outputs: impl Iterator<Item = &'a TxOut>) -> Option<u64> {
    outputs.try_fold(0u64, |acc, o| acc.checked_add(o.value.to_sat()))
}

/// Verifies input `index` of `tx`, which spends `spent`: a P2WPKH witness of a signature over
/// BIP143's sighash and the key whose hash the output names.
fn verify_input(tx: &Transaction, index: usize, spent: &TxOut) -> std::result::Result<(), String> {
    const FAILED: &str = "mandatory-script-verify-flag-failed";
    if !spent.script_pubkey.is_p2wpkh() {
        return Err(format!(
            "{FAILED} (the simulated node verifies P2WPKH spends only)"
        ));
    }
    let witness = &tx.input[index].witness;
    let (Some(sig), Some(key), 2) = (witness.nth(0), witness.nth(1), witness.len()) else {
        return Err(format!("{FAILED} (Witness program hash mismatch)"));
    };
    let key = CompressedPublicKey::from_slice(key)
        .map_err(|_| format!("{FAILED} (Witness program hash mismatch)"))?;
    if ScriptBuf::new_p2wpkh(&key.wpubkey_hash()) != spent.script_pubkey {
        return Err(format!("{FAILED} (Witness program hash mismatch)"));
    }
    let sig = bitcoin::ecdsa::Signature::from_slice(sig)
        .map_err(|_| format!("{FAILED} (Non-canonical DER signature)"))?;
    let sighash = SighashCache::new(tx)
        .p2wpkh_signature_hash(index, &spent.script_pubkey, spent.value, sig.sighash_type)
        .map_err(|e| format!("{FAILED} ({e})"))?;
    let message = Message::from_digest(sighash.to_raw_hash().to_byte_array());
    Secp256k1::verification_only()
        .verify_ecdsa(&message, &sig.signature, &key.0)
        .map_err(|_| format!("{FAILED} (Script failed an OP_CHECKSIG operation)"))
}

/// The value of `units` as the RPC prints it (a float of whole coins; never read back).
pub fn coins(units: u64) -> f64 {
    Amount::from_sat(units).to_btc()
}
