//! monero-wallet-rpc: checks addresses, builds and signs transactions without sending them
//! (`do_not_relay`), so a wallet that crashes after `transfer` cannot have sent something the
//! payer has not recorded, and sends them once they are recorded (`relay_tx`).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use adit_jsonrpc::{Dialect, JsonRpc, RpcAuth};

use crate::error::Result;

/// A signed transaction the wallet built and did not send.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// Its hash (hex).
    pub tx_hash: String,
    /// The whole signed transaction (hex), as the node takes it.
    pub tx_blob: String,
    /// The wallet's record of it (hex), as `relay_tx` takes it.
    pub tx_metadata: String,
    /// Its network fee, atomic units.
    pub fee: u64,
}

/// A transaction the wallet sent, as `get_transfers` tells it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Outgoing {
    /// Its hash (hex).
    pub txid: String,
    /// What it sent, atomic units (the fee not counted).
    pub amount: u64,
    /// Its fee, atomic units.
    #[serde(default)]
    pub fee: u64,
    /// The block it is in (0 while it waits in the node's pool).
    #[serde(default)]
    pub height: u64,
    /// When the wallet saw it (Unix seconds).
    #[serde(default)]
    pub timestamp: i64,
}

/// A reserve proof and the wallet's own check of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserve {
    /// The account's address, which a checker names.
    pub address: String,
    /// The proof.
    pub signature: String,
    /// Whether it checks.
    pub good: bool,
    /// Unspent atomic units it proves (total − spent).
    pub proven: u64,
}

/// What the wallet makes of a miner's login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// Not an address this wallet can pay (its balance waits).
    Invalid,
    /// A standard address or subaddress.
    Plain,
    /// An integrated address: it carries a payment id, and a transaction carries at most one
    /// payment id, so the wallet refuses a transfer to two of them.
    Integrated,
}

/// A monero-wallet-rpc with one wallet open.
#[derive(Debug, Clone)]
pub struct Wallet {
    rpc: JsonRpc,
    /// The account paid from.
    account_index: u32,
    /// Transaction priority (0 default .. 4 highest).
    priority: u32,
}

impl Wallet {
    /// A client of the wallet RPC at `url` (e.g. `http://127.0.0.1:18083`).
    pub fn new(url: &str, timeout: Duration, account_index: u32, priority: u32) -> Result<Self> {
        Ok(Self {
            rpc: crate::rpc::client("wallet", url, Dialect::Monero, RpcAuth::None, timeout)?,
            account_index,
            priority,
        })
    }

    /// What `address` is to the wallet: not an address it can pay, a plain (or sub-) address,
    /// or an integrated address (one with a payment id).
    pub async fn address_kind(&self, address: &str) -> Result<AddressKind> {
        #[derive(Deserialize)]
        struct Valid {
            valid: bool,
            #[serde(default)]
            integrated: bool,
        }
        let reply: Valid = self
            .rpc
            .call("validate_address", json!({"address": address}))
            .await?;
        Ok(match (reply.valid, reply.integrated) {
            (false, _) => AddressKind::Invalid,
            (true, false) => AddressKind::Plain,
            (true, true) => AddressKind::Integrated,
        })
    }

    /// The amount the wallet received in its account from the coinbase transaction `txid`;
    /// `None` when the wallet holds no coinbase output of it (the block paid someone else).
    pub async fn coinbase_received(&self, txid: &str) -> Result<Option<u64>> {
        #[derive(Deserialize)]
        struct Entry {
            amount: u64,
            #[serde(rename = "type")]
            kind: String,
        }
        #[derive(Deserialize)]
        struct Reply {
            #[serde(default)]
            transfers: Vec<Entry>,
            transfer: Option<Entry>,
        }
        let reply = self
            .rpc
            .call::<Reply>(
                "get_transfer_by_txid",
                json!({"txid": txid, "account_index": self.account_index}),
            )
            .await
            .map_err(crate::Error::from);
        let reply = match reply {
            Ok(reply) => reply,
            // -8: the wallet has no transfer with this id.
            Err(crate::Error::Refused { code: -8, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let entries = if reply.transfers.is_empty() {
            reply.transfer.into_iter().collect()
        } else {
            reply.transfers
        };
        let received = entries
            .iter()
            .filter(|e| e.kind == "block")
            .try_fold(0u64, |sum, e| sum.checked_add(e.amount));
        Ok(received.filter(|r| *r > 0))
    }

    /// Brings the wallet up to date with the chain and the node's pool, so it does not spend
    /// an output a relayed payment already spends.
    pub async fn refresh(&self) -> Result<()> {
        let _: serde_json::Value = self.rpc.call("refresh", json!({})).await?;
        Ok(())
    }

    /// Builds and signs one transaction paying each `(address, amount)`, without sending it.
    pub async fn build(&self, destinations: &[(String, u64)]) -> Result<Built> {
        #[derive(Deserialize)]
        struct Transfer {
            tx_hash: String,
            tx_blob: String,
            tx_metadata: String,
            fee: u64,
        }
        let destinations: Vec<_> = destinations
            .iter()
            .map(|(address, amount)| json!({"address": address, "amount": amount}))
            .collect();
        let reply: Transfer = self
            .rpc
            .call(
                "transfer",
                json!({
                    "destinations": destinations,
                    "account_index": self.account_index,
                    "priority": self.priority,
                    "do_not_relay": true,
                    "get_tx_hex": true,
                    "get_tx_metadata": true,
                }),
            )
            .await?;
        Ok(Built {
            tx_hash: reply.tx_hash,
            tx_blob: reply.tx_blob,
            tx_metadata: reply.tx_metadata,
            fee: reply.fee,
        })
    }

    /// Every transaction the wallet sent from its account, in a block or waiting in the
    /// node's pool (`get_transfers` `out` and `pending`).
    pub async fn outgoing(&self) -> Result<Vec<Outgoing>> {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(default)]
            out: Vec<Outgoing>,
            #[serde(default)]
            pending: Vec<Outgoing>,
        }
        let reply: Reply = self
            .rpc
            .call(
                "get_transfers",
                json!({"out": true, "pending": true, "account_index": self.account_index}),
            )
            .await?;
        Ok(reply.out.into_iter().chain(reply.pending).collect())
    }

    /// A proof that transaction `txid` paid `address` (`get_tx_proof`), which the recipient
    /// checks with its own wallet (`check_tx_proof` with the same txid, address and an empty
    /// message): it shows the amount received.
    pub async fn tx_proof(&self, txid: &str, address: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Reply {
            signature: String,
        }
        let reply: Reply = self
            .rpc
            .call("get_tx_proof", json!({"txid": txid, "address": address}))
            .await?;
        Ok(reply.signature)
    }

    /// A proof that the account holds at least `amount` unspent (`get_reserve_proof`), signed
    /// over `message`, and what the wallet's own check of it finds; anyone checks it with
    /// `check_reserve_proof` and the account's address.
    pub async fn reserve_proof(&self, amount: u64, message: &str) -> Result<Reserve> {
        #[derive(Deserialize)]
        struct Proof {
            signature: String,
        }
        #[derive(Deserialize)]
        struct Address {
            address: String,
        }
        #[derive(Deserialize)]
        struct Checked {
            good: bool,
            #[serde(default)]
            total: u64,
            #[serde(default)]
            spent: u64,
        }
        let proof: Proof = self
            .rpc
            .call(
                "get_reserve_proof",
                json!({"all": false, "account_index": self.account_index, "amount": amount, "message": message}),
            )
            .await?;
        let address: Address = self
            .rpc
            .call("get_address", json!({"account_index": self.account_index}))
            .await?;
        let checked: Checked = self
            .rpc
            .call(
                "check_reserve_proof",
                json!({"address": address.address, "message": message, "signature": proof.signature}),
            )
            .await?;
        Ok(Reserve {
            address: address.address,
            signature: proof.signature,
            good: checked.good,
            proven: checked.total.saturating_sub(checked.spent),
        })
    }

    /// Has the wallet send a transaction it built (`tx_metadata` from [`Built`]); from then on
    /// it counts the transaction's inputs as spent.
    pub async fn relay(&self, tx_metadata: &str) -> Result<()> {
        let _: serde_json::Value = self
            .rpc
            .call("relay_tx", json!({"hex": tx_metadata}))
            .await?;
        Ok(())
    }
}
