//! What the payer needs of a chain's wallet and node, whichever chain it pays on: the node's
//! height and where it holds a transaction, a block as the node shows it, a signed transaction
//! built and not sent, sending it (through the wallet, or straight to the node), what the
//! wallet received from a coinbase and whether it can pay an address; and the proofs a miner or
//! an auditor checks with their own wallet (a payment's, the reserve's) where the chain has them. [`Monero`] is
//! monero-wallet-rpc and monerod; [`crate::opensy::OpenSy`] is OpenSY's node and its wallet.

use async_trait::async_trait;

use crate::daemon::{BlockSeen, Daemon, Held, Relay};
use crate::error::Result;
use crate::wallet::{AddressKind, Built, Reserve, Wallet};

/// A chain's wallet and node, as the payer uses them.
#[async_trait]
pub trait Coin: Send + Sync {
    /// The node's height.
    async fn height(&self) -> Result<u64>;
    /// Where the node has transaction `tx_hash`.
    async fn held(&self, tx_hash: &str) -> Result<Held>;
    /// The node's verdict on a signed transaction sent straight to it.
    async fn relay_signed(&self, tx_blob: &str) -> Result<Relay>;
    /// Block `hash` as the node shows it, if it knows it.
    async fn block(&self, hash: &str) -> Result<Option<BlockSeen>>;
    /// Brings the wallet up to the node's tip.
    async fn refresh(&self) -> Result<()>;
    /// Builds and signs a transaction paying `destinations` (address, atomic units), and does
    /// not send it.
    async fn build(&self, destinations: &[(String, u64)]) -> Result<Built>;
    /// Sends a recorded transaction [`Coin::build`] made (its signed bytes and the wallet's
    /// record of it) through the wallet, so it counts its inputs spent; a refusal is
    /// [`crate::Error::Refused`].
    async fn send_recorded(&self, tx_blob: &str, tx_metadata: &str) -> Result<()>;
    /// What the wallet received from coinbase `txid`, if it holds it.
    async fn coinbase_received(&self, txid: &str) -> Result<Option<u64>>;
    /// Whether the wallet can pay `address`, and how.
    async fn address_kind(&self, address: &str) -> Result<AddressKind>;
    /// A proof the recipient checks with its own wallet that `tx_hash` paid `address`; `None`
    /// where the chain has no such proof.
    async fn payment_proof(&self, tx_hash: &str, address: &str) -> Result<Option<String>>;
    /// Whether the chain's wallet makes reserve proofs.
    fn proves_reserve(&self) -> bool;
    /// A proof signed over `message` that the wallet holds at least `amount` (above 0), with
    /// the wallet's own check of it.
    async fn reserve_proof(&self, amount: u64, message: &str) -> Result<Reserve>;
}

/// Monero: monero-wallet-rpc with one wallet open, and monerod.
#[derive(Debug, Clone)]
pub struct Monero {
    /// The wallet.
    pub wallet: Wallet,
    /// The node.
    pub daemon: Daemon,
}

#[async_trait]
impl Coin for Monero {
    async fn height(&self) -> Result<u64> {
        self.daemon.height().await
    }

    async fn held(&self, tx_hash: &str) -> Result<Held> {
        self.daemon.held(tx_hash).await
    }

    async fn relay_signed(&self, tx_blob: &str) -> Result<Relay> {
        self.daemon.relay(tx_blob).await
    }

    async fn block(&self, hash: &str) -> Result<Option<BlockSeen>> {
        self.daemon.block(hash).await
    }

    async fn refresh(&self) -> Result<()> {
        self.wallet.refresh().await
    }

    async fn build(&self, destinations: &[(String, u64)]) -> Result<Built> {
        self.wallet.build(destinations).await
    }

    async fn send_recorded(&self, _tx_blob: &str, tx_metadata: &str) -> Result<()> {
        self.wallet.relay(tx_metadata).await
    }

    async fn coinbase_received(&self, txid: &str) -> Result<Option<u64>> {
        self.wallet.coinbase_received(txid).await
    }

    async fn address_kind(&self, address: &str) -> Result<AddressKind> {
        self.wallet.address_kind(address).await
    }

    async fn payment_proof(&self, tx_hash: &str, address: &str) -> Result<Option<String>> {
        self.wallet.tx_proof(tx_hash, address).await.map(Some)
    }

    fn proves_reserve(&self) -> bool {
        true
    }

    async fn reserve_proof(&self, amount: u64, message: &str) -> Result<Reserve> {
        self.wallet.reserve_proof(amount, message).await
    }
}
