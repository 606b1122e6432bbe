//! Payments: each miner whose confirmed balance (confirmed payouts − payments) reaches the
//! pool's threshold is paid through the chain's wallet ([`coin`]: `monero-wallet-rpc` and
//! monerod, or OpenSY's node and its wallet, [`opensy`]), several miners per transaction.
//!
//! Exactly once across crashes: the wallet builds and signs a transaction without sending it;
//! the signed transaction is recorded in the `payments` table before it is sent, and a recorded
//! transaction the node ([`daemon`]) does not hold is sent again, byte for byte, after a
//! restart. A transaction is only given up (`failed`) when the
//! node refuses it and holds neither it nor a block with it, and a failed transaction is never
//! sent again. Nothing on the bus is taken on trust: before a block's payouts count, the node
//! must show the block on its main chain, deep enough, and the pool's wallet must hold its
//! coinbase, at least what the block's payouts share ([`audit`]). The payer runs under a lease, so one process pays at a time. This crate does not
//! compute payouts (the `pplns` pipeline does) and does not decide when a block is confirmed
//! (the pool's maturity tracker does).

pub mod audit;
pub mod coin;
pub mod config;
pub mod daemon;
pub mod error;
pub mod hold;
pub mod ledger;
pub mod opensy;
pub mod payer;
pub mod reconcile;
pub mod reserve;
mod rpc;
pub mod wallet;

pub use config::PaymentsConfig;
pub use error::{Error, Result};
pub use payer::run;
