//! The simulated OpenSY node's wallet (`/wallet/adit`): one key, whose P2WPKH address a pool on
//! the simulated node pays its coinbase to, and the PSBT calls a payer makes, as the real
//! node's wallet answers them (`stratum/tests/data/opensy_regtest_wallet.json`):
//! `walletcreatefundedpsbt` picks mature, unlocked coins and adds change (locking the coins it
//! took when asked), `walletprocesspsbt` signs and finalizes what is its own, `finalizepsbt`
//! extracts the transaction. Without a `fee_rate` it pays the fallback fee the real node was
//! run with (`-fallbackfee=0.0001`, 10 units per virtual byte).

use std::collections::HashSet;

use bitcoin::hashes::{Hash as _, sha256};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
    absolute::LockTime,
};

use super::ledger::{COINBASE_MATURITY, Utxos};
use crate::opensy::Network;

/// The wallet's name: its calls go to `/wallet/adit` (or `/`).
pub const WALLET_NAME: &str = "adit";

/// Units per virtual byte without a `fee_rate`: the real node's `-fallbackfee=0.0001`.
pub const FALLBACK_FEE_RATE: u64 = 10;

/// The smallest change output kept; less goes to the fee (P2WPKH's dust limit).
const DUST: u64 = 294;

/// The wallet's one key.
#[derive(Debug)]
pub struct SimWallet {
    secret: SecretKey,
    key: CompressedPublicKey,
    /// Coins `walletcreatefundedpsbt` locked.
    locked: HashSet<OutPoint>,
}

/// Why the wallet will not: the code and message the real wallet gives.
pub type Refusal = (i64, String);

impl Default for SimWallet {
    fn default() -> Self {
        let secret = SecretKey::from_slice(
            sha256::Hash::hash(b"adit simulated OpenSY wallet").as_byte_array(),
        )
        .expect("a SHA-256 is a valid key with overwhelming odds, and this one is");
        let key = CompressedPublicKey(secret.public_key(&Secp256k1::signing_only()));
        Self {
            secret,
            key,
            locked: HashSet::new(),
        }
    }
}

/// The simulated wallet's address, where a pool on the simulated node is paid.
pub fn wallet_address() -> String {
    let wallet = SimWallet::default();
    let script = wallet.script();
    let program =
        bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V0, &script.as_bytes()[2..])
            .expect("a P2WPKH script holds a v0 program");
    Network::Regtest.segwit_address(&program)
}

impl SimWallet {
    /// The script the wallet's outputs pay.
    pub fn script(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.key.wpubkey_hash())
    }

    /// The coins of `view` the wallet can spend in a block at `height`: its own, unlocked,
    /// and, for a coinbase's, 100 blocks deep.
    fn spendable(&self, view: &Utxos, height: u64) -> Vec<(OutPoint, TxOut)> {
        let script = self.script();
        let mut coins: Vec<_> = view
            .iter()
            .filter(|(point, coin)| {
                coin.out.script_pubkey == script
                    && !self.locked.contains(point)
                    && (!coin.coinbase || height.saturating_sub(coin.height) >= COINBASE_MATURITY)
            })
            .map(|(point, coin)| (*point, coin.out.clone()))
            .collect();
        // Largest first, then by outpoint, so the choice does not depend on hash order.
        coins.sort_by(|a, b| b.1.value.cmp(&a.1.value).then(a.0.cmp(&b.0)));
        coins
    }

    /// `walletcreatefundedpsbt`: a PSBT paying `outputs` from the wallet's coins in `view`
    /// (spent in a block at `height`), with change when it is worth keeping; its fee and the
    /// change's position (-1 for none).
    pub fn fund(
        &mut self,
        view: &Utxos,
        height: u64,
        outputs: Vec<TxOut>,
        fee_rate: u64,
        lock: bool,
    ) -> Result<(Psbt, u64, i64), Refusal> {
        let wanted = outputs
            .iter()
            .try_fold(0u64, |sum, o| sum.checked_add(o.value.to_sat()))
            .ok_or((-3, "Amount out of range".to_string()))?;
        let change_script = self.script();
        let mut taken = Vec::new();
        let mut total = 0u64;
        for coin in self.spendable(view, height) {
            total = total.saturating_add(coin.1.value.to_sat());
            taken.push(coin);
            let fee_with_change = fee_rate * vsize(taken.len(), &outputs, Some(&change_script));
            let fee_alone = fee_rate * vsize(taken.len(), &outputs, None);
            let change = total.checked_sub(wanted + fee_with_change);
            let (outs, fee, position) = match change {
                Some(change) if change >= DUST => {
                    let mut outs = outputs.clone();
                    outs.push(TxOut {
                        value: Amount::from_sat(change),
                        script_pubkey: change_script.clone(),
                    });
                    let position = outs.len() as i64 - 1;
                    (outs, fee_with_change, position)
                }
                _ if total >= wanted + fee_alone => (outputs.clone(), total - wanted, -1),
                _ => continue,
            };
            let tx = Transaction {
                version: Version::TWO,
                lock_time: LockTime::ZERO,
                input: taken
                    .iter()
                    .map(|(point, _)| TxIn {
                        previous_output: *point,
                        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                        ..TxIn::default()
                    })
                    .collect(),
                output: outs,
            };
            let mut psbt = Psbt::from_unsigned_tx(tx)
                .map_err(|e| (-4, format!("cannot make the PSBT: {e}")))?;
            for (input, (_, out)) in psbt.inputs.iter_mut().zip(&taken) {
                input.witness_utxo = Some(out.clone());
            }
            if lock {
                self.locked.extend(taken.iter().map(|(point, _)| *point));
            }
            return Ok((psbt, fee, position));
        }
        Err((-4, "Insufficient funds".into()))
    }

    /// `lockunspent`: locks `points` (or, with `locked` false, gives them back).
    pub fn lock(&mut self, points: &[OutPoint], locked: bool) {
        for point in points {
            if locked {
                self.locked.insert(*point);
            } else {
                self.locked.remove(point);
            }
        }
    }

    /// `walletprocesspsbt`: signs and finalizes every input that spends the wallet's script;
    /// whether every input is now final.
    pub fn sign(&self, psbt: &mut Psbt) -> Result<bool, Refusal> {
        let script = self.script();
        let secp = Secp256k1::signing_only();
        let unsigned = psbt.unsigned_tx.clone();
        let mut cache = SighashCache::new(&unsigned);
        for (index, input) in psbt.inputs.iter_mut().enumerate() {
            let Some(spent) = input.witness_utxo.clone() else {
                continue;
            };
            if spent.script_pubkey != script || input.final_script_witness.is_some() {
                continue;
            }
            let sighash = cache
                .p2wpkh_signature_hash(index, &script, spent.value, EcdsaSighashType::All)
                .map_err(|e| (-22, format!("cannot sign input {index}: {e}")))?;
            let message = Message::from_digest(sighash.to_raw_hash().to_byte_array());
            let signature = bitcoin::ecdsa::Signature {
                signature: secp.sign_ecdsa(&message, &self.secret),
                sighash_type: EcdsaSighashType::All,
            };
            input.final_script_witness = Some(Witness::p2wpkh(&signature, &self.key.0));
        }
        Ok(psbt.inputs.iter().all(|i| i.final_script_witness.is_some()))
    }
}

/// The virtual size of a transaction spending `inputs` P2WPKH coins to `outputs` (and a
/// `change` output), rounded up: what the fee rate is charged on.
fn vsize(inputs: usize, outputs: &[TxOut], change: Option<&ScriptBuf>) -> u64 {
    // Version, counts, lock time and the segwit marker: 10.5 vbytes; a P2WPKH input: 68.
    let output_bytes: usize = outputs
        .iter()
        .map(|o| &o.script_pubkey)
        .chain(change)
        .map(|s| 9 + s.len())
        .sum();
    (11 + 68 * inputs + output_bytes) as u64
}

#[cfg(test)]
mod tests {
    use super::super::ledger::{Coin, apply, check_spend};
    use super::*;

    /// A view holding `values` as the wallet's coinbases at height 1.
    fn view(wallet: &SimWallet, values: &[u64]) -> Utxos {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    OutPoint::new(bitcoin::Txid::from_byte_array([i as u8 + 1; 32]), 0),
                    Coin {
                        out: TxOut {
                            value: Amount::from_sat(*v),
                            script_pubkey: wallet.script(),
                        },
                        height: 1,
                        coinbase: true,
                    },
                )
            })
            .collect()
    }

    fn pay(units: u64) -> TxOut {
        TxOut {
            value: Amount::from_sat(units),
            script_pubkey: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([7; 20])),
        }
    }

    #[test]
    fn a_funded_signed_payment_passes_the_node_s_checks_and_pays_exactly() {
        let mut wallet = SimWallet::default();
        let coins = view(&wallet, &[50_000, 1_000_000]);
        let (mut psbt, fee, change_at) = wallet
            .fund(&coins, 101, vec![pay(400_000)], 10, true)
            .unwrap();
        assert!(wallet.sign(&mut psbt).unwrap());
        assert_eq!(psbt.fee().unwrap().to_sat(), fee);
        let tx = psbt.extract_tx_unchecked_fee_rate();
        assert_eq!(check_spend(&tx, &coins, 101), Ok(fee));
        assert_eq!(tx.output[0], pay(400_000));
        assert_eq!(change_at, 1);
        // The fee is the rate times the size, to within the estimate's rounding.
        let vsize = tx.vsize() as u64;
        assert!(
            (fee / 10).abs_diff(vsize) <= 2,
            "fee {fee} for {vsize} vbytes"
        );
        // Its coins are locked: funding again cannot take the same ones, until they are
        // given back.
        let again = wallet.fund(&coins, 101, vec![pay(400_000)], 10, true);
        assert_eq!(again.unwrap_err().1, "Insufficient funds");
        let taken: Vec<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
        wallet.lock(&taken, false);
        assert!(
            wallet
                .fund(&coins, 101, vec![pay(400_000)], 10, false)
                .is_ok()
        );
        // Spent, they are gone; a second spend of them is refused.
        let mut after = coins.clone();
        apply(&mut after, &tx, 101);
        assert_eq!(
            check_spend(&tx, &after, 102),
            Err("bad-txns-inputs-missingorspent".into())
        );
    }

    #[test]
    fn immature_coinbases_and_tampered_signatures_are_refused() {
        let mut wallet = SimWallet::default();
        let coins = view(&wallet, &[1_000_000]);
        assert_eq!(
            wallet
                .fund(&coins, 100, vec![pay(1_000)], 10, false)
                .unwrap_err()
                .1,
            "Insufficient funds",
            "a coinbase 99 deep is not spendable"
        );
        let (mut psbt, _, _) = wallet
            .fund(&coins, 101, vec![pay(1_000)], 10, false)
            .unwrap();
        wallet.sign(&mut psbt).unwrap();
        let tx = psbt.extract_tx_unchecked_fee_rate();
        assert_eq!(
            check_spend(&tx, &coins, 100),
            Err("bad-txns-premature-spend-of-coinbase".into())
        );
        let mut stolen = tx.clone();
        stolen.output[0].script_pubkey =
            ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([9; 20]));
        assert!(
            check_spend(&stolen, &coins, 101)
                .unwrap_err()
                .starts_with("mandatory-script-verify-flag-failed"),
            "a signature does not carry over to other outputs"
        );
        let mut greedy = tx.clone();
        greedy.output[0].value = Amount::from_sat(2_000_000);
        assert_eq!(
            check_spend(&greedy, &coins, 101),
            Err("bad-txns-in-belowout".into())
        );
    }
}
