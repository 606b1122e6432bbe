//! The simulated node's wallet and mempool calls, answered as the real node answers them
//! (`stratum/tests/data/opensy_regtest_wallet.json` holds its answers): `getnewaddress`,
//! `walletcreatefundedpsbt`, `walletprocesspsbt`, `finalizepsbt`, `lockunspent`,
//! `gettransaction`, `getmempoolentry`. Amounts are read exactly from decimal strings (or numbers, as the RPC
//! allows) and printed as the RPC prints them.

use base64::Engine as _;
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, Denomination, Transaction, TxOut, Txid};
use serde_json::{Value, json};

use super::chain::Chain;
use super::fault::RpcFault;
use super::ledger::{COINBASE_MATURITY, coins};
use super::wallet::{FALLBACK_FEE_RATE, wallet_address};
use crate::opensy::{Network, script_for};

type Answer = std::result::Result<Value, RpcFault>;

/// Answers wallet or mempool call `method`, or says there is no such method.
pub(super) fn call(chain: &mut Chain, method: &str, param: &dyn Fn(usize) -> Value) -> Answer {
    match method {
        "getnewaddress" => Ok(json!(wallet_address())),
        "walletcreatefundedpsbt" => fund(chain, &param(1), &param(3)),
        "walletprocesspsbt" => {
            let mut psbt = read_psbt(&param(0))?;
            let complete = chain
                .wallet
                .sign(&mut psbt)
                .map_err(|(code, message)| RpcFault(code, message))?;
            let mut out = json!({"psbt": write_psbt(&psbt), "complete": complete});
            if complete {
                out["hex"] = json!(encode_tx(psbt.extract_tx_unchecked_fee_rate()));
            }
            Ok(out)
        }
        "finalizepsbt" => {
            let psbt = read_psbt(&param(0))?;
            if psbt.inputs.iter().all(|i| i.final_script_witness.is_some()) {
                let tx = psbt.extract_tx_unchecked_fee_rate();
                Ok(json!({"hex": encode_tx(tx), "complete": true}))
            } else {
                Ok(json!({"psbt": write_psbt(&psbt), "complete": false}))
            }
        }
        "gettransaction" => transaction(chain, &txid(&param(0))?),
        "lockunspent" => {
            let unlock = param(0)
                .as_bool()
                .ok_or(RpcFault(-1, "unlock must be a boolean".into()))?;
            let points = param(1)
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let vout = p["vout"].as_u64().and_then(|v| u32::try_from(v).ok());
                    match (txid(&p["txid"]), vout) {
                        (Ok(txid), Some(vout)) => Ok(bitcoin::OutPoint::new(txid, vout)),
                        _ => Err(RpcFault(
                            -8,
                            "Invalid parameter, expected txid and vout".into(),
                        )),
                    }
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            chain.wallet.lock(&points, !unlock);
            Ok(json!(true))
        }
        "getmempoolentry" => {
            let txid = txid(&param(0))?;
            let (tx, fee) = chain
                .mempool
                .iter()
                .find(|(t, _)| t.compute_txid() == txid)
                .ok_or(RpcFault(-5, "Transaction not in mempool".into()))?;
            Ok(json!({
                "vsize": tx.vsize(),
                "weight": tx.weight().to_wu(),
                "height": chain.tip().0,
                "wtxid": tx.compute_wtxid().to_string(),
                "fees": {"base": coins(*fee), "modified": coins(*fee)},
                "depends": [],
                "spentby": [],
            }))
        }
        _ => Err(RpcFault(-32601, "Method not found".into())),
    }
}

/// `walletcreatefundedpsbt [] outputs locktime options`.
fn fund(chain: &mut Chain, outputs: &Value, options: &Value) -> Answer {
    let pairs: Vec<(&String, &Value)> = match outputs {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|o| o.iter())
            .collect(),
        Value::Object(o) => o.iter().collect(),
        _ => {
            return Err(RpcFault(
                -8,
                "Invalid parameter, outputs must be given".into(),
            ));
        }
    };
    let mut outs = Vec::with_capacity(pairs.len());
    for (address, amount) in pairs {
        let script = script_for(address, Network::Regtest)
            .map_err(|e| RpcFault(-5, format!("Invalid address: {e}")))?;
        outs.push(TxOut {
            value: amount_of(amount)?,
            script_pubkey: script,
        });
    }
    if outs.is_empty() {
        return Err(RpcFault(
            -8,
            "Invalid parameter, outputs must be given".into(),
        ));
    }
    let fee_rate = match options.get("fee_rate") {
        None | Some(Value::Null) => FALLBACK_FEE_RATE,
        Some(rate) => rate.as_u64().filter(|r| *r > 0).ok_or(RpcFault(
            -3,
            "Invalid fee_rate (must be a whole number of units per vbyte here)".into(),
        ))?,
    };
    let lock = options.get("lockUnspents").and_then(Value::as_bool) == Some(true);
    let view = chain.mempool_view();
    let height = chain.tip().0 + 1;
    let (psbt, fee, change) = chain
        .wallet
        .fund(&view, height, outs, fee_rate, lock)
        .map_err(|(code, message)| RpcFault(code, message))?;
    Ok(json!({"psbt": write_psbt(&psbt), "fee": coins(fee), "changepos": change}))
}

/// `gettransaction txid`: a transaction that pays or spends the wallet's script, where it is,
/// its bytes, and its entries that are the wallet's (`details`).
fn transaction(chain: &Chain, txid: &Txid) -> Answer {
    let not_ours = || RpcFault(-5, "Invalid or non-wallet transaction id".into());
    let (tx, mined) = chain.find(txid).ok_or_else(not_ours)?;
    let script = chain.wallet.script();
    let spends_ours = tx.input.iter().any(|i| {
        chain
            .find(&i.previous_output.txid)
            .and_then(|(prev, _)| prev.output.get(i.previous_output.vout as usize).cloned())
            .is_some_and(|o| o.script_pubkey == script)
    });
    let pays_ours = tx.output.iter().any(|o| o.script_pubkey == script);
    if !spends_ours && !pays_ours {
        return Err(not_ours());
    }
    let confirmations = mined.map_or(0, |(height, _)| chain.tip().0 + 1 - height);
    let mut details = Vec::new();
    for (vout, out) in tx.output.iter().enumerate() {
        let category = match (out.script_pubkey == script, tx.is_coinbase()) {
            (true, true) if confirmations < COINBASE_MATURITY => "immature",
            (true, true) => "generate",
            (true, false) if spends_ours => continue, // change
            (true, false) => "receive",
            (false, _) if spends_ours => "send",
            (false, _) => continue,
        };
        let sign = if category == "send" { -1.0 } else { 1.0 };
        details.push(json!({
            "address": address_of(out),
            "category": category,
            "amount": sign * coins(out.value.to_sat()),
            "vout": vout,
        }));
    }
    let mut out = json!({
        "txid": txid.to_string(),
        "wtxid": tx.compute_wtxid().to_string(),
        "confirmations": confirmations,
        "details": details,
        "hex": encode_tx(tx),
    });
    if let Some((height, block)) = mined {
        out["blockhash"] = json!(block.to_string());
        out["blockheight"] = json!(height);
    }
    Ok(out)
}

/// The address an output pays, when it is a SegWit one.
fn address_of(out: &TxOut) -> Value {
    match bitcoin::WitnessProgram::new(
        out.script_pubkey
            .witness_version()
            .unwrap_or(bitcoin::WitnessVersion::V0),
        out.script_pubkey.as_bytes().get(2..).unwrap_or_default(),
    ) {
        Ok(program) if out.script_pubkey.is_witness_program() => {
            json!(Network::Regtest.segwit_address(&program))
        }
        _ => Value::Null,
    }
}

/// An amount as the RPC takes it: a decimal string or a number of whole coins, exact.
fn amount_of(value: &Value) -> std::result::Result<Amount, RpcFault> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(RpcFault(-3, "Amount is not a number or string".into())),
    };
    Amount::from_str_in(&text, Denomination::Bitcoin)
        .ok()
        .filter(|a| *a > Amount::ZERO)
        .ok_or(RpcFault(-3, "Invalid amount".into()))
}

/// A txid parameter.
fn txid(value: &Value) -> std::result::Result<Txid, RpcFault> {
    value.as_str().and_then(|s| s.parse().ok()).ok_or(RpcFault(
        -8,
        "txid must be of length 64 (not valid hex)".into(),
    ))
}

/// A base64 PSBT parameter.
fn read_psbt(value: &Value) -> std::result::Result<Psbt, RpcFault> {
    value
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|bytes| Psbt::deserialize(&bytes).ok())
        .ok_or(RpcFault(-22, "TX decode failed".into()))
}

fn write_psbt(psbt: &Psbt) -> String {
    base64::engine::general_purpose::STANDARD.encode(psbt.serialize())
}

fn encode_tx(tx: Transaction) -> String {
    bitcoin::consensus::encode::serialize_hex(&tx)
}
