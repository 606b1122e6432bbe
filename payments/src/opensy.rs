//! OpenSY (SYL): the node's own wallet pays, through Bitcoin Core's PSBT calls, and the node
//! says where a payment is. Every amount crosses the RPC as a decimal string made from integer
//! units and is read back from the transactions' own bytes, never from the floats the RPC
//! prints, so money stays exact.
//!
//! Building a payment (`walletcreatefundedpsbt` with its inputs locked, `walletprocesspsbt`,
//! `finalizepsbt`) sends nothing; the signed transaction is checked to pay each destination
//! exactly what was asked before the payer records it. Sending it is `sendrawtransaction`,
//! which the node answers with the same id however often it is sent: while it waits in the
//! mempool it is taken again, and once mined the node says its outputs are already in the
//! UTXO set (-27), which is a payment made, not a refusal.

use std::time::Duration;

use adit_jsonrpc::{Dialect, JsonRpc, RpcAuth};
use async_trait::async_trait;
use base64::Engine as _;
use bitcoin::consensus::Decodable;
use bitcoin::{Block, Psbt, Transaction};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::coin::Coin;
use crate::daemon::{BlockSeen, Held, Relay};
use crate::error::{Error, Result};
use crate::wallet::{AddressKind, Built, Reserve};

/// Units in one SYL.
pub const UNITS_PER_SYL: u64 = 100_000_000;

/// Bitcoin Core's "not found" (a transaction not in the mempool or not the wallet's, a block
/// it does not know).
const NOT_FOUND: i64 = -5;
/// `sendrawtransaction`: the transaction's outputs are already in the UTXO set (it is mined).
const ALREADY_MINED: i64 = -27;
/// `sendrawtransaction`: the inputs are missing or spent, or the mempool refused it.
const REFUSED: [i64; 2] = [-25, -26];

/// An OpenSY node with its wallet loaded.
#[derive(Debug, Clone)]
pub struct OpenSy {
    /// The node (`/`).
    node: JsonRpc,
    /// Its wallet (`/wallet/<name>`).
    wallet: JsonRpc,
    /// The fee rate in units per virtual byte; `None` leaves it to the wallet's estimate (a
    /// regtest node has none unless it runs with `-fallbackfee`).
    fee_rate: Option<u64>,
}

impl OpenSy {
    /// A client of the node at `node_url` and its wallet `wallet` (`""`: the node's only
    /// wallet), both with `auth`.
    pub fn new(
        node_url: &str,
        wallet: &str,
        auth: RpcAuth,
        timeout: Duration,
        fee_rate: Option<u64>,
    ) -> Result<Self> {
        let node = crate::rpc::client("node", node_url, Dialect::Bitcoin, auth.clone(), timeout)?;
        let wallet_url = wallet_url(node_url, wallet)?;
        Ok(Self {
            node,
            wallet: crate::rpc::client("wallet", &wallet_url, Dialect::Bitcoin, auth, timeout)?,
            fee_rate,
        })
    }

    /// The wallet's transaction `txid`: its confirmations, the block height it is in, and its
    /// bytes; `None` when it is not the wallet's.
    async fn wallet_tx(&self, txid: &str) -> Result<Option<WalletTx>> {
        match self.wallet.call("gettransaction", json!([txid])).await {
            Ok(tx) => Ok(Some(tx)),
            Err(adit_jsonrpc::Error::Rejected {
                code: NOT_FOUND, ..
            }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the node's mempool holds `txid`.
    async fn in_mempool(&self, txid: &str) -> Result<bool> {
        match self
            .node
            .call::<Value>("getmempoolentry", json!([txid]))
            .await
        {
            Ok(_) => Ok(true),
            Err(adit_jsonrpc::Error::Rejected {
                code: NOT_FOUND, ..
            }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The script an address pays, as the node reads it; `None` when it is not an address of
    /// the node's network.
    async fn script_of(&self, address: &str) -> Result<Option<bitcoin::ScriptBuf>> {
        #[derive(Deserialize)]
        struct Valid {
            isvalid: bool,
            #[serde(default, rename = "scriptPubKey")]
            script: String,
        }
        let v: Valid = self.node.call("validateaddress", json!([address])).await?;
        if !v.isvalid {
            return Ok(None);
        }
        let bytes = hex::decode(&v.script).map_err(|e| protocol("validateaddress", e))?;
        Ok(Some(bitcoin::ScriptBuf::from_bytes(bytes)))
    }
}

/// What `gettransaction` says, the fields read.
#[derive(Debug, Deserialize)]
struct WalletTx {
    /// Blocks on top and including its own; 0 in the mempool; negative when conflicted.
    confirmations: i64,
    /// The height of its block, when mined.
    #[serde(default)]
    blockheight: Option<u64>,
    /// The whole transaction.
    hex: String,
    /// Its outputs (and inputs) that are the wallet's.
    #[serde(default)]
    details: Vec<Detail>,
}

/// One of a wallet transaction's entries that is the wallet's.
#[derive(Debug, Deserialize)]
struct Detail {
    /// `receive`, `send`, `generate` (a mature coinbase), `immature`, `orphan`.
    category: String,
    /// Which output.
    vout: usize,
}

#[async_trait]
impl Coin for OpenSy {
    /// Blocks on the chain, genesis included, so a payment in the tip has one confirmation.
    async fn height(&self) -> Result<u64> {
        let tip: u64 = self.node.call("getblockcount", json!([])).await?;
        Ok(tip.saturating_add(1))
    }

    async fn held(&self, tx_hash: &str) -> Result<Held> {
        if let Some(tx) = self.wallet_tx(tx_hash).await?
            && tx.confirmations > 0
        {
            let height = tx.blockheight.ok_or_else(|| Error::Protocol {
                service: "wallet",
                method: "gettransaction".into(),
                reason: format!("{tx_hash} is confirmed without a block height"),
            })?;
            return Ok(Held::InBlock(height));
        }
        Ok(if self.in_mempool(tx_hash).await? {
            Held::InPool
        } else {
            Held::Nowhere
        })
    }

    async fn relay_signed(&self, tx_blob: &str) -> Result<Relay> {
        match self
            .node
            .call::<String>("sendrawtransaction", json!([tx_blob]))
            .await
        {
            Ok(_) => Ok(Relay::Accepted),
            Err(adit_jsonrpc::Error::Rejected {
                code: ALREADY_MINED,
                ..
            }) => Ok(Relay::Accepted),
            Err(adit_jsonrpc::Error::Rejected { code, message, .. }) if REFUSED.contains(&code) => {
                Ok(Relay::Refused(message))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn block(&self, hash: &str) -> Result<Option<BlockSeen>> {
        #[derive(Deserialize)]
        struct Header {
            height: u64,
            confirmations: i64,
        }
        let header: Header = match self.node.call("getblockheader", json!([hash, true])).await {
            Ok(h) => h,
            Err(adit_jsonrpc::Error::Rejected {
                code: NOT_FOUND, ..
            }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let hex: String = self.node.call("getblock", json!([hash, 0])).await?;
        let bytes = hex::decode(&hex).map_err(|e| protocol("getblock", e))?;
        let block =
            Block::consensus_decode(&mut bytes.as_slice()).map_err(|e| protocol("getblock", e))?;
        let coinbase = block
            .txdata
            .first()
            .ok_or_else(|| protocol("getblock", "a block without transactions"))?;
        Ok(Some(BlockSeen {
            height: header.height,
            depth: u64::try_from(header.confirmations.saturating_sub(1)).unwrap_or(0),
            orphan: header.confirmations < 0,
            reward: paid(coinbase.output.iter())?,
            miner_tx_hash: coinbase.compute_txid().to_string(),
        }))
    }

    /// The node's wallet follows the node's chain and mempool itself.
    async fn refresh(&self) -> Result<()> {
        Ok(())
    }

    async fn build(&self, destinations: &[(String, u64)]) -> Result<Built> {
        let mut outputs = Vec::with_capacity(destinations.len());
        let mut wanted = Vec::with_capacity(destinations.len());
        for (address, amount) in destinations {
            let script = self
                .script_of(address)
                .await?
                .ok_or_else(|| Error::Refused {
                    service: "node",
                    method: "validateaddress".into(),
                    code: 0,
                    message: format!("{address} is not an address of this network"),
                })?;
            wanted.push((script, *amount));
            outputs.push(json!({ address.as_str(): syl(*amount) }));
        }
        let mut options = json!({"lockUnspents": true});
        if let Some(rate) = self.fee_rate {
            options["fee_rate"] = json!(rate);
        }
        #[derive(Deserialize)]
        struct Funded {
            psbt: String,
        }
        let funded: Funded = self
            .wallet
            .call("walletcreatefundedpsbt", json!([[], outputs, 0, options]))
            .await?;
        let built = self.finish(&funded.psbt, &wanted).await;
        if built.is_err() {
            self.unlock(&funded.psbt).await;
        }
        built
    }

    async fn send_recorded(&self, tx_blob: &str, _tx_metadata: &str) -> Result<()> {
        match self.relay_signed(tx_blob).await? {
            Relay::Accepted => Ok(()),
            Relay::Refused(message) => Err(Error::Refused {
                service: "node",
                method: "sendrawtransaction".into(),
                code: 0,
                message,
            }),
        }
    }

    async fn coinbase_received(&self, txid: &str) -> Result<Option<u64>> {
        self.coinbase_paid_in(txid).await
    }

    async fn address_kind(&self, address: &str) -> Result<AddressKind> {
        Ok(match self.script_of(address).await? {
            Some(_) => AddressKind::Plain,
            None => AddressKind::Invalid,
        })
    }

    /// A Bitcoin-style chain has no sender's payment proof: the recipient sees the payment
    /// on its own node by the txid the payments table records.
    async fn payment_proof(&self, _tx_hash: &str, _address: &str) -> Result<Option<String>> {
        Ok(None)
    }

    /// Nor a reserve proof in the node's wallet (BIP 127 is not in it).
    fn proves_reserve(&self) -> bool {
        false
    }

    async fn reserve_proof(&self, _amount: u64, _message: &str) -> Result<Reserve> {
        Err(Error::Books {
            reason: "OpenSY's wallet makes no reserve proof".into(),
        })
    }
}

impl OpenSy {
    /// Signs and finalizes the funded PSBT `psbt`, checks the transaction pays each of
    /// `wanted` exactly, and returns it unsent.
    async fn finish(&self, psbt: &str, wanted: &[(bitcoin::ScriptBuf, u64)]) -> Result<Built> {
        #[derive(Deserialize)]
        struct Signed {
            psbt: String,
            complete: bool,
        }
        let signed: Signed = self
            .wallet
            .call("walletprocesspsbt", json!([psbt, true, "ALL"]))
            .await?;
        if !signed.complete {
            return Err(Error::Refused {
                service: "wallet",
                method: "walletprocesspsbt".into(),
                code: 0,
                message: "the wallet could not sign every input".into(),
            });
        }
        #[derive(Deserialize)]
        struct Final {
            #[serde(default)]
            hex: Option<String>,
            complete: bool,
        }
        let done: Final = self
            .wallet
            .call("finalizepsbt", json!([signed.psbt]))
            .await?;
        let hex = match (done.complete, done.hex) {
            (true, Some(hex)) => hex,
            _ => {
                return Err(protocol(
                    "finalizepsbt",
                    "a signed PSBT that is not complete",
                ));
            }
        };
        let fee = psbt_fee(&signed.psbt)?;
        let tx = decode_tx(&hex).map_err(|e| protocol("finalizepsbt", e))?;
        check_pays(&tx, wanted)?;
        Ok(Built {
            tx_hash: tx.compute_txid().to_string(),
            tx_blob: hex.clone(),
            // The signed transaction is all the node needs to send it again.
            tx_metadata: hex,
            fee,
        })
    }

    /// Gives back the inputs a PSBT that will not be sent locked (best effort: the node also
    /// forgets its locks when it restarts).
    async fn unlock(&self, psbt: &str) {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(psbt) else {
            return;
        };
        let Ok(psbt) = Psbt::deserialize(&bytes) else {
            return;
        };
        let inputs: Vec<Value> = psbt
            .unsigned_tx
            .input
            .iter()
            .map(|i| json!({"txid": i.previous_output.txid.to_string(), "vout": i.previous_output.vout}))
            .collect();
        if let Err(e) = self
            .wallet
            .call::<Value>("lockunspent", json!([true, inputs]))
            .await
        {
            tracing::warn!(error = %e, "cannot unlock the inputs of a payment that was not built");
        }
    }

    /// What the wallet received in coinbase `txid`, read from the transaction's bytes.
    async fn coinbase_paid_in(&self, txid: &str) -> Result<Option<u64>> {
        let Some(tx) = self.wallet_tx(txid).await? else {
            return Ok(None);
        };
        let whole = decode_tx(&tx.hex).map_err(|e| protocol("gettransaction", e))?;
        if !whole.is_coinbase() {
            return Ok(None);
        }
        // The wallet lists the outputs that are its own; their values are read from the
        // transaction's bytes, not from the floats beside them.
        let mut received = 0u64;
        for detail in &tx.details {
            if !matches!(detail.category.as_str(), "generate" | "immature") {
                continue;
            }
            let out = whole
                .output
                .get(detail.vout)
                .ok_or_else(|| protocol("gettransaction", format!("no output {}", detail.vout)))?;
            received = received
                .checked_add(out.value.to_sat())
                .ok_or_else(|| protocol("gettransaction", "outputs over 2^64 units"))?;
        }
        Ok((received > 0).then_some(received))
    }
}

/// The wallet's endpoint on the node: `/wallet/<name>`, the name percent-encoded as one path
/// segment; the node's own URL for `""`.
fn wallet_url(node_url: &str, wallet: &str) -> Result<String> {
    let mut url = reqwest::Url::parse(node_url).map_err(|e| {
        Error::Config(adit_config::Invalid::new(
            "payments.node",
            format!("{node_url:?}: {e}"),
        ))
    })?;
    if !wallet.is_empty() {
        url.path_segments_mut()
            .map_err(|()| {
                Error::Config(adit_config::Invalid::new(
                    "payments.node",
                    format!("{node_url:?} cannot have a path"),
                ))
            })?
            .pop_if_empty()
            .extend(["wallet", wallet]);
    }
    Ok(url.to_string())
}

/// `units` as the decimal string the RPC takes ("1.5" for 150 000 000).
pub fn syl(units: u64) -> String {
    let whole = units / UNITS_PER_SYL;
    let frac = units % UNITS_PER_SYL;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:08}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The fee of a signed PSBT (base64): what its inputs spend less what its outputs pay.
fn psbt_fee(base64_psbt: &str) -> Result<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_psbt)
        .map_err(|e| protocol("walletprocesspsbt", e))?;
    let psbt = Psbt::deserialize(&bytes).map_err(|e| protocol("walletprocesspsbt", e))?;
    let fee = psbt.fee().map_err(|e| protocol("walletprocesspsbt", e))?;
    Ok(fee.to_sat())
}

/// A whole transaction from its hex.
fn decode_tx(hex: &str) -> std::result::Result<Transaction, String> {
    let bytes = hex::decode(hex).map_err(|e| e.to_string())?;
    let mut reader = bytes.as_slice();
    let tx = Transaction::consensus_decode(&mut reader).map_err(|e| e.to_string())?;
    if !reader.is_empty() {
        return Err("bytes after the transaction".into());
    }
    Ok(tx)
}

/// The sum of `outputs`, exact.
fn paid<'a>(mut outputs: impl Iterator<Item = &'a bitcoin::TxOut>) -> Result<u64> {
    outputs.try_fold(0u64, |sum, o| {
        sum.checked_add(o.value.to_sat())
            .ok_or_else(|| protocol("getblock", "outputs over 2^64 units"))
    })
}

/// Refuses a transaction that does not pay each wanted script exactly its amount, or that has
/// outputs besides those and at most one change.
fn check_pays(tx: &Transaction, wanted: &[(bitcoin::ScriptBuf, u64)]) -> Result<()> {
    let mut rest: Vec<&bitcoin::TxOut> = tx.output.iter().collect();
    for (script, amount) in wanted {
        let Some(at) = rest
            .iter()
            .position(|o| &o.script_pubkey == script && o.value.to_sat() == *amount)
        else {
            return Err(protocol(
                "finalizepsbt",
                format!("the signed transaction does not pay {amount} units to {script}"),
            ));
        };
        rest.remove(at);
    }
    if rest.len() > 1 {
        return Err(protocol(
            "finalizepsbt",
            format!(
                "the signed transaction has {} outputs besides the payments and change",
                rest.len() - 1
            ),
        ));
    }
    Ok(())
}

/// The node or wallet answered `method` with something that cannot be read.
fn protocol(method: &str, e: impl std::fmt::Display) -> Error {
    Error::Protocol {
        service: "node",
        method: method.to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_cross_the_rpc_as_exact_decimals() {
        assert_eq!(syl(150_000_000), "1.5");
        assert_eq!(syl(1), "0.00000001");
        assert_eq!(syl(0), "0");
        assert_eq!(syl(5_000_000_000), "50");
        assert_eq!(syl(u64::MAX), "184467440737.09551615");
        for units in [1u64, 10, 123_456_789, 99_999_999, 100_000_001] {
            let text = syl(units);
            let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
            let back = whole.parse::<u64>().unwrap() * UNITS_PER_SYL
                + format!("{frac:0<8}").parse::<u64>().unwrap();
            assert_eq!(back, units, "{text}");
        }
    }

    #[test]
    fn the_wallet_is_a_path_segment_of_the_node() {
        assert_eq!(
            wallet_url("http://127.0.0.1:19642", "pool").unwrap(),
            "http://127.0.0.1:19642/wallet/pool"
        );
        assert_eq!(
            wallet_url("http://127.0.0.1:19642/", "a b/../c").unwrap(),
            "http://127.0.0.1:19642/wallet/a%20b%2F..%2Fc"
        );
        assert_eq!(
            wallet_url("http://127.0.0.1:19642", "").unwrap(),
            "http://127.0.0.1:19642/"
        );
    }
}
