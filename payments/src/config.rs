//! Payment settings (`[payments]`), checked after every override.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use adit_config::{Checked, Invalid};
use adit_jsonrpc::Credentials;
use adit_schemas::chain::Chain;

/// Monero's limit on outputs per transaction is 16; one is the change.
pub const MAX_DESTINATIONS: usize = 15;

/// One pool's own payment rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolPayments {
    /// Smallest balance paid, atomic units.
    pub threshold: Option<u64>,
}

/// `[payments]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// The chain paid on: `monero` (monero-wallet-rpc and monerod) or `opensy` (the node's own
    /// wallet, through PSBTs).
    pub chain: Chain,
    /// Monero: monero-wallet-rpc's base URL (run it with `--disable-rpc-login` on loopback).
    /// Not used for OpenSY, whose wallet is the node's (`wallet`).
    pub wallet_rpc: String,
    /// The node's base URL: it relays the payments and says where they are (monerod's, or
    /// OpenSY's node's RPC, e.g. `http://127.0.0.1:19642` on regtest). `sim` on OpenSY: the
    /// simulated node the pool role starts in the same process (`pool.node = "sim"`), paying
    /// from its wallet.
    pub node: String,
    /// OpenSY: the node's wallet paid from (`-wallet=<name>`, reached at `/wallet/<name>`);
    /// empty for a node with one wallet loaded.
    pub wallet: String,
    /// OpenSY: the node's RPC credentials (a user and password, or its cookie file).
    pub rpc: Credentials,
    /// OpenSY: the fee rate in units per virtual byte; unset leaves it to the wallet's
    /// estimate, which a regtest node only has with `-fallbackfee`.
    pub fee_rate: Option<u64>,
    /// How often balances are checked and paid.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Smallest balance paid, atomic units, for pools not listed in `pools` (default 0.1 XMR,
    /// or 0.1 SYL).
    pub threshold: Option<u64>,
    /// Most miners paid in one transaction (1 to 15).
    pub max_destinations: usize,
    /// Blocks on top of a payment's before it is `confirmed`.
    pub confirmations: u64,
    /// Blocks the node must show on top of a found block before the payer pays from it,
    /// whatever the bus says of the block (default: the coinbase lock, 60 on Monero and 100 on
    /// OpenSY).
    pub block_confirmations: Option<u64>,
    /// The wallet account paid from.
    pub account_index: u32,
    /// Transaction priority, 0 (the wallet's default) to 4.
    pub priority: u32,
    /// Longest a wallet or node call may take (building a transaction can take seconds).
    #[serde(with = "humantime_serde")]
    pub rpc_timeout: Duration,
    /// Per-pool rules, by pool id.
    pub pools: BTreeMap<String, PoolPayments>,
    /// How often the payer proves that the wallet holds what the pools owe (a reserve proof in
    /// the `reserve_proofs` table, public at `/api/v1/public/reserve`); `0s` never does. Where
    /// the chain has no reserve proof (OpenSY), nothing is made.
    #[serde(with = "humantime_serde")]
    pub reserve_every: Duration,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            chain: Chain::Monero,
            wallet_rpc: "http://127.0.0.1:18083".into(),
            node: "http://127.0.0.1:18081".into(),
            wallet: String::new(),
            rpc: Credentials::default(),
            fee_rate: None,
            interval: Duration::from_secs(600),
            threshold: None,
            max_destinations: MAX_DESTINATIONS,
            confirmations: 10,
            block_confirmations: None,
            account_index: 0,
            priority: 0,
            rpc_timeout: Duration::from_secs(60),
            pools: BTreeMap::new(),
            reserve_every: Duration::from_secs(3600),
        }
    }
}

impl PaymentsConfig {
    /// The threshold in force for `pool`.
    pub fn threshold(&self, pool: &str) -> u64 {
        self.pools
            .get(pool)
            .and_then(|p| p.threshold)
            .or(self.threshold)
            .unwrap_or(match self.chain {
                Chain::Monero => 100_000_000_000, // 0.1 XMR
                Chain::OpenSy => 10_000_000,      // 0.1 SYL
            })
    }

    /// Blocks on top of a found block before it is paid from.
    pub fn block_confirmations(&self) -> u64 {
        self.block_confirmations.unwrap_or(match self.chain {
            Chain::Monero => 60,
            Chain::OpenSy => 100,
        })
    }

    /// Refuses values the payer cannot work with, naming the key; the key is the full one
    /// (`payments.threshold`), so the caller adds no prefix.
    pub fn validate(&self) -> Checked {
        let bad = |key: &str, reason: String| Err(Invalid::new(format!("payments.{key}"), reason));
        for (key, url) in [("wallet_rpc", &self.wallet_rpc), ("node", &self.node)] {
            if key == "node" && url == "sim" && self.chain == Chain::OpenSy {
                continue; // the simulated OpenSY node of the pool role in the same process
            }
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(_) => return bad(key, format!("{url:?} is not an http or https URL")),
                Err(e) => return bad(key, format!("{url:?}: {e}")),
            }
        }
        if self.interval < Duration::from_secs(1) {
            return bad("interval", "must be at least 1s".into());
        }
        if self.rpc_timeout.is_zero() {
            return bad("rpc_timeout", "must be positive".into());
        }
        if let Some(t) = self.threshold
            && (t == 0 || t > i64::MAX as u64)
        {
            return bad("threshold", format!("{t} must be 1..2^63 atomic units"));
        }
        if !(1..=MAX_DESTINATIONS).contains(&self.max_destinations) {
            return bad(
                "max_destinations",
                format!("{} must be 1..={MAX_DESTINATIONS}", self.max_destinations),
            );
        }
        if self.confirmations == 0 {
            return bad("confirmations", "must be at least 1".into());
        }
        if !(1..=100_000).contains(&self.block_confirmations()) {
            return bad(
                "block_confirmations",
                format!("{} must be 1..=100000", self.block_confirmations()),
            );
        }
        if !self
            .wallet
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            || self.wallet.len() > 64
            || self.wallet.starts_with('.')
        {
            return bad(
                "wallet",
                format!(
                    "{:?}: a wallet name is up to 64 of A-Z a-z 0-9 _ - ., not starting with a dot",
                    self.wallet
                ),
            );
        }
        if self.fee_rate == Some(0) {
            return bad(
                "fee_rate",
                "must be at least 1 unit per virtual byte".into(),
            );
        }
        self.rpc.validate().map_err(|e| e.under("payments.rpc"))?;
        if self.priority > 4 {
            return bad("priority", format!("{} must be 0..=4", self.priority));
        }
        for (pool, rules) in &self.pools {
            if !adit_schemas::names::is_token(pool) {
                return bad(
                    &format!("pools.{pool}"),
                    "a pool id is 1-64 of A-Z a-z 0-9 _ -".into(),
                );
            }
            if let Some(t) = rules.threshold
                && (t == 0 || t > i64::MAX as u64)
            {
                return bad(
                    &format!("pools.{pool}.threshold"),
                    format!("{t} must be 1..2^63 atomic units"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(toml_text: &str) -> String {
        let c: PaymentsConfig = toml::from_str(toml_text).unwrap();
        match c.validate() {
            Err(e) => e.key,
            Ok(()) => panic!("{toml_text}: accepted"),
        }
    }

    #[test]
    fn every_bad_value_is_refused_by_its_key() {
        assert!(PaymentsConfig::default().validate().is_ok());
        assert_eq!(key("threshold = 0"), "payments.threshold");
        assert_eq!(key("max_destinations = 16"), "payments.max_destinations");
        assert_eq!(key("max_destinations = 0"), "payments.max_destinations");
        assert_eq!(key("interval = \"10ms\""), "payments.interval");
        assert_eq!(key("wallet_rpc = \"ftp://x\""), "payments.wallet_rpc");
        assert_eq!(key("node = \"not a url\""), "payments.node");
        assert_eq!(key("priority = 9"), "payments.priority");
        assert_eq!(key("wallet = \"../x\""), "payments.wallet");
        assert_eq!(key("wallet = \"..\""), "payments.wallet");
        assert_eq!(key("wallet = \"a/b\""), "payments.wallet");
        assert_eq!(key("fee_rate = 0"), "payments.fee_rate");
        assert_eq!(key("[rpc]\npassword = \"p\""), "payments.rpc.password");
        assert_eq!(
            key("block_confirmations = 0"),
            "payments.block_confirmations"
        );
        assert_eq!(
            key("[pools.p1]\nthreshold = 0"),
            "payments.pools.p1.threshold"
        );
        assert_eq!(key("[pools.\"a b\"]\nthreshold = 5"), "payments.pools.a b");
        // A negative threshold never gets this far: it is not a u64.
        assert!(toml::from_str::<PaymentsConfig>("threshold = -1").is_err());
    }

    #[test]
    fn a_pools_threshold_overrides_the_default() {
        let c: PaymentsConfig = toml::from_str("threshold = 7\n[pools.p1]\nthreshold = 9").unwrap();
        assert_eq!((c.threshold("p1"), c.threshold("p2")), (9, 7));
        let syl: PaymentsConfig = toml::from_str("chain = \"opensy\"").unwrap();
        assert_eq!(
            (syl.threshold("p"), syl.block_confirmations()),
            (10_000_000, 100)
        );
        let xmr = PaymentsConfig::default();
        assert_eq!(
            (xmr.threshold("p"), xmr.block_confirmations()),
            (100_000_000_000, 60)
        );
    }
}
