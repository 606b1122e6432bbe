//! What the controller knows of what mining earns: each pool's latest terms (`network`) and
//! each coin's latest price, and the breakeven they give a machine.

use std::collections::BTreeMap;

use adit_schemas::market::breakeven_per_mwh;
use adit_schemas::registry::{Machine, RegistryView};
use adit_schemas::{AnyEvent, CoinPrice, NetworkState};
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

    /// The energy price above which `m` mines at a loss, per MWh: its customer's strike, else
    /// its model's, else what its nameplate hashrate earns at its pool's latest terms and its
    /// coin's latest price per MWh of its nameplate power; none when that is not known.
    pub(super) fn breakeven(
        &self,
        config: &CurtailmentConfig,
        view: &RegistryView,
        m: &Machine,
    ) -> Option<f64> {
        let strike = m
            .customer
            .as_ref()
            .and_then(|c| config.strike_by_customer.get(c))
            .or_else(|| config.strike_by_model.get(&m.model));
        if let Some(price) = strike {
            return Some(*price);
        }
        let pool = view.pool(m.pool.as_deref()?)?;
        let coin = self.coins.get(pool.coin.as_deref()?)?;
        let network = self.networks.get(&pool.id)?;
        breakeven_per_mwh(m.nominal_hashrate_hs, m.nominal_power_w, network, coin)
    }
}
