//! Credentials as config holds them (`[pool.rpc]`, `[payments.rpc]`): a user and password, or
//! the node's cookie file.

use adit_config::{Checked, check};
use serde::Deserialize;

use crate::RpcAuth;

/// How adit proves itself to a node's (or its wallet's) RPC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Credentials {
    /// The RPC user (`-rpcuser`, or a `-rpcauth` entry's).
    pub user: String,
    /// Its password.
    pub password: String,
    /// The node's cookie file (`<datadir>/regtest/.cookie`), read again for every call.
    pub cookie: Option<std::path::PathBuf>,
}

impl Credentials {
    /// The transport's form of these credentials.
    pub fn to_rpc(&self) -> RpcAuth {
        match (&self.cookie, self.user.is_empty()) {
            (Some(path), _) => RpcAuth::Cookie(path.clone()),
            (None, false) => RpcAuth::Basic {
                user: self.user.clone(),
                password: self.password.clone(),
            },
            (None, true) => RpcAuth::None,
        }
    }

    /// Refuses a user with a cookie file, and a password without a user; keys relative to the
    /// section.
    pub fn validate(&self) -> Checked {
        check(
            self.cookie.is_none() || self.user.is_empty(),
            "user",
            "set a user and password or a cookie file, not both",
        )?;
        check(
            !self.user.is_empty() || self.password.is_empty(),
            "password",
            "a password needs its user",
        )
    }
}
