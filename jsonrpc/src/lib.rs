//! JSON-RPC to a node or a wallet, whichever chain's: the pool's node clients (monerod,
//! OpenSY's node) and the payer's (monero-wallet-rpc, monerod, OpenSY's wallet) all speak
//! through one [`JsonRpc`]: two dialects, credentials, answers bounded before they are read,
//! retries with backoff only when the peer could not be reached, and a circuit [`breaker`]
//! that fails fast while it is down. An answer from the peer, an error included, is final.

pub mod breaker;
mod client;
mod credentials;
mod error;

pub use breaker::{Admission, BreakerConfig, BreakerState, CallOutcome, admit_call, record_call};
pub use client::{Dialect, JsonRpc, RpcAuth, RpcConfig};
pub use credentials::Credentials;
pub use error::{Error, Result};
