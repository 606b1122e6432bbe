//! What a mined coin is worth: the chain's terms as a pool mines them (`mining.network.<pool>`,
//! one [`NetworkState`] per new height, landed in `network`) and the coin's market price
//! (`grid.coin.<coin>`, one [`CoinPrice`] per feed reading or post, landed in `coin_prices`).
//!
//! Together they price a machine's work: a hash is worth `reward ÷ network_difficulty` atomic
//! units in expectation (every difficulty here is Monero-style, expected hashes), and a coin
//! of `10^decimals` units is worth `price`. The profit of each machine per settlement interval
//! and the controller's breakeven prices are computed from these two and the meters.

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::{f64_field, i64_field, ts_field, utf8};
use crate::record::Event;
use crate::time::micros;
use crate::validate::{Invalid, ValidationPolicy, check_range, check_text, check_token};

/// Most decimals a coin's price may say it has (atomic units per coin up to 10¹⁸).
pub const MAX_DECIMALS: u8 = 18;
/// Highest price believed for one coin.
pub const MAX_COIN_PRICE: f64 = 1e9;

/// The terms a pool mines on at one height: what a block needs and what it pays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkState {
    /// The pool.
    pub pool: String,
    /// The height its template builds.
    pub height: u64,
    /// The network difficulty of that height (expected hashes per block).
    pub network_difficulty: u64,
    /// The template's whole reward, subsidy and fees, atomic units.
    pub reward: u64,
    /// Its subsidy, without the fees.
    pub subsidy: u64,
    /// The pool's fee, basis points (`pipelines.pplns`): its miners are owed the expected
    /// value of their hashes less this share.
    #[serde(default)]
    pub fee_bps: u64,
    /// When the pool took the template.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl NetworkState {
    /// Atomic units one hash earns its miner in expectation, after the pool's fee.
    pub fn units_per_hash(&self) -> f64 {
        let kept = 1.0 - self.fee_bps.min(10_000) as f64 / 10_000.0;
        self.reward as f64 / self.network_difficulty.max(1) as f64 * kept
    }
}

impl Event for NetworkState {
    fn dedupe_id(&self) -> String {
        format!("network:{}:{}:{}", self.pool, self.height, micros(self.ts))
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        for (name, value) in [
            ("height", self.height),
            ("network_difficulty", self.network_difficulty),
            ("reward", self.reward),
            ("subsidy", self.subsidy),
        ] {
            if value > i64::MAX as u64 {
                return Err(Invalid::new(format!("{name} must fit in i64")));
            }
        }
        if self.network_difficulty == 0 {
            return Err(Invalid::new("network_difficulty must be above 0"));
        }
        if self.subsidy > self.reward {
            return Err(Invalid::new("subsidy must be at most the reward"));
        }
        if self.fee_bps >= 10_000 {
            return Err(Invalid::new("fee_bps must be under 10000"));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("pool"),
            i64_field("height"),
            i64_field("network_difficulty"),
            i64_field("reward"),
            i64_field("subsidy"),
            Field::new("fee_bps", arrow::datatypes::DataType::Int64, true),
            ts_field("ts"),
        ]
    }
}

/// A coin's market price at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoinPrice {
    /// The coin, as pools name it in the registry (`XMR`; a subject token).
    pub coin: String,
    /// Price of one whole coin, in the operator's currency (the one energy prices are in).
    pub price: f64,
    /// Atomic units in one coin, as a power of ten (12 for Monero, 8 for a Bitcoin-like chain).
    pub decimals: u8,
    /// Where the price came from (a feed's host, `api`).
    pub source: String,
    /// When it was quoted.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl CoinPrice {
    /// The price of one atomic unit.
    pub fn per_unit(&self) -> f64 {
        self.price / 10f64.powi(i32::from(self.decimals))
    }
}

impl Event for CoinPrice {
    fn dedupe_id(&self) -> String {
        format!("coin:{}:{}", self.coin, micros(self.ts))
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_token("coin", &self.coin)?;
        check_range("price", self.price, 0.0, MAX_COIN_PRICE)?;
        if self.decimals > MAX_DECIMALS {
            return Err(Invalid::new(format!(
                "decimals must be at most {MAX_DECIMALS}"
            )));
        }
        check_text("source", &self.source, 200)?;
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("coin"),
            f64_field("price"),
            i64_field("decimals"),
            utf8("source"),
            ts_field("ts"),
        ]
    }
}

/// What one machine's hashes are worth per MWh it draws, at the chain's terms and the coin's
/// price: the energy price above which it mines at a loss.
///
/// `hashrate_hs × 3600 × units_per_hash × price_per_unit` a hour (after the pool's fee), over
/// `power_w / 10⁶` MWh a hour. `None` when the power is not positive.
pub fn breakeven_per_mwh(
    hashrate_hs: f64,
    power_w: f64,
    network: &NetworkState,
    coin: &CoinPrice,
) -> Option<f64> {
    (power_w > 0.0)
        .then(|| hashrate_hs * 3600.0 * network.units_per_hash() * coin.per_unit() * 1e6 / power_w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_machine_breaks_even_where_its_hour_of_hashes_pays_its_hour_of_power() {
        let network = NetworkState {
            pool: "p".into(),
            height: 10,
            network_difficulty: 300_000_000_000,
            reward: 600_000_000_000,
            subsidy: 600_000_000_000,
            fee_bps: 0,
            ts: at(),
        };
        let coin = CoinPrice {
            coin: "XMR".into(),
            price: 150.0,
            decimals: 12,
            source: "test".into(),
            ts: at(),
        };
        // 100 kH/s at 2 units a hash is 7.2e8 units (7.2e-4 XMR, $0.108) an hour; 1 kW is
        // 0.001 MWh an hour: $108 per MWh.
        let b = breakeven_per_mwh(100_000.0, 1000.0, &network, &coin).unwrap();
        assert!((b - 108.0).abs() < 1e-9, "{b}");
        assert_eq!(breakeven_per_mwh(1.0, 0.0, &network, &coin), None);
        // A 2 % pool fee: the miner is owed 98 % of that.
        let fee = NetworkState {
            fee_bps: 200,
            ..network
        };
        let b = breakeven_per_mwh(100_000.0, 1000.0, &fee, &coin).unwrap();
        assert!((b - 105.84).abs() < 1e-9, "{b}");
    }

    #[test]
    fn prices_and_terms_out_of_range_are_refused() {
        let policy = ValidationPolicy::default();
        let coin = CoinPrice {
            coin: "XMR".into(),
            price: 150.0,
            decimals: 12,
            source: "feed".into(),
            ts: at(),
        };
        assert!(coin.check_values(&policy, at()).is_ok());
        for bad in [
            CoinPrice {
                price: f64::NAN,
                ..coin.clone()
            },
            CoinPrice {
                price: -1.0,
                ..coin.clone()
            },
            CoinPrice {
                decimals: 19,
                ..coin.clone()
            },
            CoinPrice {
                coin: "X.R".into(),
                ..coin.clone()
            },
        ] {
            assert!(bad.check_values(&policy, at()).is_err(), "{bad:?}");
        }
        let network = NetworkState {
            pool: "p".into(),
            height: 1,
            network_difficulty: 0,
            reward: 1,
            subsidy: 1,
            fee_bps: 0,
            ts: at(),
        };
        assert!(network.check_values(&policy, at()).is_err());
        let more_subsidy = NetworkState {
            network_difficulty: 1,
            subsidy: 2,
            ..network.clone()
        };
        assert!(more_subsidy.check_values(&policy, at()).is_err());
        let all_fee = NetworkState {
            network_difficulty: 1,
            fee_bps: 10_000,
            ..network
        };
        assert!(all_fee.check_values(&policy, at()).is_err());
    }
}
