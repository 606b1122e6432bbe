//! What the controller knows of what mining earns: each pool's latest terms (`network`) and
//! each coin's latest price, and the breakeven they give a machine.

use std::collections::BTreeMap;

use adit_schemas::market::breakeven_per_mwh;
use adit_schemas::registry::{Machine, RegistryView};
use adit_schemas::time::span_micros;
use adit_schemas::{AnyEvent, CoinPrice, NetworkState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::CurtailmentConfig;

/// The latest terms per pool and price per coin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Market {
    /// Pool → the terms it mines on.
    networks: BTreeMap<String, NetworkState>,
    /// Coin → its price.
    coins: BTreeMap<String, CoinPrice>,
}

impl Market {
    /// Takes a pool's terms or a coin's price, unless a later one is known.
    pub(super) fn take(&mut self, event: &AnyEvent) {
        match event {
            AnyEvent::Network(n) if self.networks.get(&n.pool).is_none_or(|was| was.ts <= n.ts) => {
                self.networks.insert(n.pool.clone(), n.clone());
            }
            AnyEvent::CoinPrice(c) if self.coins.get(&c.coin).is_none_or(|was| was.ts <= c.ts) => {
                self.coins.insert(c.coin.clone(), c.clone());
            }
            _ => {}
        }
    }

    /// The energy price above which `m` mines at a loss at `at_us`, per MWh: its customer's
    /// strike, else its model's, else what its nameplate hashrate earns at its pool's latest
    /// terms and its coin's latest price per MWh of its nameplate power; none when that is not
    /// known, or the terms or the price are older than `market_stale`.
    pub(super) fn breakeven(
        &self,
        config: &CurtailmentConfig,
        view: &RegistryView,
        m: &Machine,
        at_us: i64,
    ) -> Option<f64> {
        let strike = m
            .customer
            .as_ref()
            .and_then(|c| config.strike_by_customer.get(c))
            .or_else(|| config.strike_by_model.get(&m.model));
        if let Some(price) = strike {
            return Some(*price);
        }
        let fresh =
            |ts: DateTime<Utc>| at_us - ts.timestamp_micros() <= span_micros(config.market_stale);
        let pool = view.pool(m.pool.as_deref()?)?;
        let coin = self
            .coins
            .get(pool.coin.as_deref()?)
            .filter(|c| fresh(c.ts))?;
        let network = self.networks.get(&pool.id).filter(|n| fresh(n.ts))?;
        breakeven_per_mwh(m.nominal_hashrate_hs, m.nominal_power_w, network, coin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::registry::{ChangeOp, MinesAs, Pool, Record, RegistryEntry, Site};
    use chrono::TimeZone;

    #[test]
    fn a_strike_stands_over_the_market_and_stale_terms_or_prices_price_nothing() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        let mut view = RegistryView::default();
        let machine = Machine {
            pool: Some("p".into()),
            mines_as: Some(MinesAs {
                miner: "login".into(),
                worker: None,
            }),
            customer: Some("acme".into()),
            ..Machine::new("m1", "s1", "S19", 60e12, 3000.0)
        };
        for record in [
            Record::Site(Site::new("s1", 100.0)),
            Record::Pool(Pool {
                id: "p".into(),
                name: String::new(),
                allocation_kw: None,
                coin: Some("XMR".into()),
                operator: None,
                location: None,
            }),
            Record::Machine(machine.clone()),
        ] {
            view.apply(&RegistryEntry {
                key: record.key(),
                op: ChangeOp::Put,
                by: "test".into(),
                at: t0,
                record: Some(record),
            });
        }
        let mut market = Market::default();
        market.take(&AnyEvent::Network(NetworkState {
            pool: "p".into(),
            height: 1,
            network_difficulty: 9_000_000_000_000_000_000,
            reward: 100_000_000_000,
            subsidy: 100_000_000_000,
            fee_bps: 0,
            ts: t0,
        }));
        market.take(&AnyEvent::CoinPrice(CoinPrice {
            coin: "XMR".into(),
            price: 100.0,
            decimals: 12,
            source: "test".into(),
            ts: t0,
        }));
        let config = CurtailmentConfig::default();
        let at = |minutes: i64| (t0 + chrono::Duration::minutes(minutes)).timestamp_micros();
        let b = market.breakeven(&config, &view, &machine, at(10)).unwrap();
        assert!((b - 80.0).abs() < 1e-9, "{b}");
        assert_eq!(
            market.breakeven(&config, &view, &machine, at(61)),
            None,
            "an hour old"
        );
        let by_model = CurtailmentConfig {
            strike_by_model: [("S19".to_string(), 95.0)].into(),
            ..config.clone()
        };
        assert_eq!(
            market.breakeven(&by_model, &view, &machine, at(61)),
            Some(95.0)
        );
        let by_customer = CurtailmentConfig {
            strike_by_customer: [("acme".to_string(), 70.0)].into(),
            ..by_model
        };
        assert_eq!(
            market.breakeven(&by_customer, &view, &machine, at(10)),
            Some(70.0)
        );
        // An older quote arriving late does not replace the newer.
        market.take(&AnyEvent::CoinPrice(CoinPrice {
            coin: "XMR".into(),
            price: 1.0,
            decimals: 12,
            source: "test".into(),
            ts: t0 - chrono::Duration::minutes(5),
        }));
        let again = market.breakeven(&config, &view, &machine, at(10)).unwrap();
        assert!((again - 80.0).abs() < 1e-9, "{again}");
    }
}
