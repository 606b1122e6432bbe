//! The payer's JSON-RPC clients: `adit-jsonrpc`'s, built once per wallet or node and never
//! retried within a call (the next round is the retry, and it starts by asking the node what
//! happened), with their errors in the payer's terms.

use std::time::Duration;

use adit_jsonrpc::{Dialect, JsonRpc, RpcAuth, RpcConfig};

use crate::error::{Error, Result};

/// A client of `service` (`wallet` or `node`) at `url`, each call bounded by `timeout`.
pub(crate) fn client(
    service: &'static str,
    url: &str,
    dialect: Dialect,
    auth: RpcAuth,
    timeout: Duration,
) -> Result<JsonRpc> {
    let config = RpcConfig {
        timeout,
        retries: 0,
        ..RpcConfig::default()
    };
    Ok(JsonRpc::new(service, url, dialect, auth, config)?)
}

impl From<adit_jsonrpc::Error> for Error {
    fn from(e: adit_jsonrpc::Error) -> Self {
        use adit_jsonrpc::Error as Rpc;
        match e {
            Rpc::Config { service, reason } => {
                let key = if service == "wallet" {
                    "wallet_rpc"
                } else {
                    "node"
                };
                Error::Config(adit_config::Invalid::new(format!("payments.{key}"), reason))
            }
            e @ (Rpc::Unreachable { .. } | Rpc::Unavailable { .. }) => Error::Unreachable {
                reason: e.to_string(),
            },
            Rpc::Rejected {
                service,
                method,
                code,
                message,
            } => Error::Refused {
                service,
                method: method.to_string(),
                code,
                message,
            },
            Rpc::Response {
                service,
                method,
                reason,
            } => Error::Protocol {
                service,
                method: method.to_string(),
                reason,
            },
        }
    }
}
