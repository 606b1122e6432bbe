//! Profit per machine per settlement interval (`machine_profit`), kept by the energy pipeline
//! beside the energy it settles: when a machine's `energy_settlement` row closes, its shares of
//! the same interval are priced and its energy costed.
//!
//! - **Whose shares**: a machine's registry record says whom it mines as (`mines_as`: its
//!   pool's login and worker, the worker defaulting to its id). Accepted shares naming that
//!   pool, login and worker are its own; other shares are not read.
//! - **Revenue**: each share's expected value at its own job's terms, ⌊d × reward ÷ nd⌋ atomic
//!   units (`pool::pps::credit` without a fee: what FPPS would pay before the pool's fee), so a
//!   machine earns for its work whether or not the pool found a block that interval. Priced at
//!   the pool's coin's price, time-weighted over the interval.
//! - **Energy cost**: the interval's energy at the site's energy price, time-weighted over the
//!   interval from the site's price signals, its tariff standing in before the first.
//! - **Breakeven**: the energy price at which the margin is 0.
//! - A share that arrives for an interval already closed is late (counted, never rewriting a
//!   committed row); shares of an interval in which the machine had no energy at all are
//!   logged and counted, not priced against nothing.

use std::collections::{BTreeMap, HashMap};

use adit_schemas::registry::RegistryView;
use adit_schemas::results::{EnergyPeriod, MachineProfit};
use adit_schemas::{CoinPrice, Share};
use serde::{Deserialize, Serialize};

use crate::farm::energy_periods::settlement_bounds;
use crate::pool::pps;

/// How long prices are kept behind the oldest open interval, µs (a day).
const KEEP_PRICES_US: i64 = 24 * 3_600_000_000;

/// What one machine's shares earned in one settlement interval so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Earned {
    /// End of the interval, µs.
    end_us: i64,
    /// Accepted shares.
    shares: i64,
    /// Their summed difficulty.
    work: i64,
    /// Their expected value, atomic units.
    units: i64,
    /// Shares that carried no price.
    unpriced: i64,
}

/// One coin's quote as kept: when, the price of a coin, its decimals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Quote {
    t: i64,
    price: f64,
    decimals: u8,
}

/// What a share was to the profit accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Counted in its machine's interval.
    Counted,
    /// Its machine's interval had already closed.
    Late,
    /// No machine mines as its login and worker (or it was rejected).
    NotOurs,
}

/// The profit accounts of the energy pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profit {
    /// (site, machine, interval start µs) → what its shares earned.
    #[serde(with = "crate::serde_pairs")]
    earned: BTreeMap<(String, String, i64), Earned>,
    /// Site → its energy prices, (issued µs, per MWh), in time order.
    site_prices: BTreeMap<String, Vec<(i64, f64)>>,
    /// Coin → its quotes, in time order.
    coin_prices: BTreeMap<String, Vec<Quote>>,
}

/// Who mines as whom: (pool, login, worker) → (site, machine).
pub type Identities = HashMap<(String, String, String), (String, String)>;

/// Every machine's mining identity in `view`.
pub fn identities(view: &RegistryView) -> Identities {
    view.machines()
        .filter_map(|m| {
            let (pool, miner, worker) = m.mining_identity()?;
            Some((
                (pool.to_string(), miner.to_string(), worker.to_string()),
                (m.site.clone(), m.id.clone()),
            ))
        })
        .collect()
}

impl Profit {
    /// Takes one share into its machine's interval; `closed` is each site's time before which
    /// its minutes are final.
    pub fn take_share(
        &mut self,
        view: &RegistryView,
        who: &Identities,
        share: &Share,
        closed: &BTreeMap<String, i64>,
    ) -> Taken {
        let key = (
            share.pool.clone(),
            share.miner.clone(),
            share.worker.clone(),
        );
        let (true, Some((site, machine))) = (share.accepted, who.get(&key)) else {
            return Taken::NotOurs;
        };
        let ts = share.ts.timestamp_micros();
        let (start, end) = settlement_bounds(view, site, ts);
        if closed.get(site).is_some_and(|c| *c >= end) {
            return Taken::Late;
        }
        let earned = self
            .earned
            .entry((site.clone(), machine.clone(), start))
            .or_default();
        earned.end_us = end;
        earned.shares += 1;
        earned.work = earned.work.saturating_add(share.difficulty as i64);
        match (share.network_difficulty, share.reward) {
            (Some(nd), Some(reward)) => match pps::credit(share.difficulty, nd, reward, 0) {
                Ok(units) => earned.units = earned.units.saturating_add(units as i64),
                Err(_) => earned.unpriced += 1,
            },
            _ => earned.unpriced += 1,
        }
        Taken::Counted
    }

    /// Takes a site's energy price, per MWh, issued at `t_us`.
    pub fn take_site_price(&mut self, site: &str, t_us: i64, price: f64) {
        let prices = self.site_prices.entry(site.to_string()).or_default();
        let at = prices.partition_point(|(t, _)| *t <= t_us);
        prices.insert(at, (t_us, price));
    }

    /// Takes a coin's quote.
    pub fn take_coin_price(&mut self, quote: &CoinPrice) {
        let t = quote.ts.timestamp_micros();
        let quotes = self.coin_prices.entry(quote.coin.clone()).or_default();
        let at = quotes.partition_point(|q| q.t <= t);
        quotes.insert(
            at,
            Quote {
                t,
                price: quote.price,
                decimals: quote.decimals,
            },
        );
    }

    /// The profit rows of the machines' settlement periods among `closed` (energy rows of
    /// every scope and kind may be passed; only machines' settlement rows are priced), and
    /// how many shares were left without energy in intervals now closed.
    pub fn rows(
        &mut self,
        view: &RegistryView,
        settled: &[&EnergyPeriod],
        closed: &BTreeMap<String, i64>,
    ) -> (Vec<MachineProfit>, i64) {
        let rows = settled
            .iter()
            .filter(|p| p.scope == "machine")
            .filter_map(|p| Some(self.row(view, p.site.as_deref()?, p)))
            .collect();
        let before = self.earned.len();
        let mut orphaned = 0;
        self.earned.retain(|(site, _, _), e| {
            let gone = closed.get(site).is_some_and(|c| *c >= e.end_us);
            if gone {
                orphaned += e.shares;
            }
            !gone
        });
        if self.earned.len() < before {
            self.prune_prices(closed);
        }
        (rows, orphaned)
    }

    /// One machine's row for the period `p` at `site`.
    fn row(&mut self, view: &RegistryView, site: &str, p: &EnergyPeriod) -> MachineProfit {
        let (start, end) = (
            p.period_start.timestamp_micros(),
            p.period_end.timestamp_micros(),
        );
        let earned = self
            .earned
            .remove(&(site.to_string(), p.subject.clone(), start))
            .unwrap_or_default();
        let machine = view.machine(site, &p.subject);
        let identity = machine.and_then(|m| m.mining_identity());
        let coin = identity
            .and_then(|(pool, _, _)| view.pool(pool))
            .and_then(|pool| pool.coin.clone());
        let quote = coin
            .as_ref()
            .and_then(|c| self.coin_prices.get(c))
            .and_then(|quotes| coin_in_force(quotes, start, end));
        let revenue = identity
            .and(quote)
            .map(|(price, decimals)| earned.units as f64 / 10f64.powi(decimals.into()) * price);
        let tariff = view.site(site).and_then(|s| s.tariff_per_mwh);
        let energy_price = mean_in_force(
            self.site_prices.get(site).map_or(&[][..], Vec::as_slice),
            start,
            end,
            tariff,
        );
        let mwh = p.energy_wh / 1e6;
        let energy_cost = energy_price.map(|price| mwh * price);
        MachineProfit {
            site: site.to_string(),
            machine: p.subject.clone(),
            pool: identity.map(|(pool, _, _)| pool.to_string()),
            miner: identity.map(|(_, miner, _)| miner.to_string()),
            worker: identity.map(|(_, _, worker)| worker.to_string()),
            period_start: p.period_start,
            period_end: p.period_end,
            shares: earned.shares,
            work: earned.work,
            revenue_units: earned.units,
            unpriced_shares: earned.unpriced,
            coin,
            coin_price: quote.map(|(price, _)| price),
            coin_decimals: quote.map(|(_, decimals)| i64::from(decimals)),
            revenue,
            energy_wh: p.energy_wh,
            energy_price_per_mwh: energy_price,
            energy_cost,
            margin: revenue.zip(energy_cost).map(|(r, c)| r - c),
            breakeven_per_mwh: revenue.filter(|_| mwh > 0.0).map(|r| r / mwh),
            date: p.date,
        }
    }

    /// Forgets prices older than a day before every site's oldest open interval (keeping the
    /// one in force then).
    fn prune_prices(&mut self, closed: &BTreeMap<String, i64>) {
        let Some(oldest) = closed.values().copied().filter(|c| *c > i64::MIN).min() else {
            return;
        };
        let horizon = oldest.saturating_sub(KEEP_PRICES_US);
        for prices in self.site_prices.values_mut() {
            let old = prices.partition_point(|(t, _)| *t < horizon);
            prices.drain(..old.saturating_sub(1));
        }
        for quotes in self.coin_prices.values_mut() {
            let old = quotes.partition_point(|q| q.t < horizon);
            quotes.drain(..old.saturating_sub(1));
        }
    }
}

/// The mean of a step function over `[start, end)`: each point's value holds from its time
/// until the next point's; `before` holds until the first point. `None` when some part of the
/// interval has no value, or the interval is empty.
pub fn mean_in_force(
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    before: Option<f64>,
) -> Option<f64> {
    if end <= start {
        return None;
    }
    let first = points.partition_point(|(t, _)| *t <= start);
    let mut value = first.checked_sub(1).map(|i| points[i].1).or(before)?;
    let (mut t, mut sum) = (start, 0.0);
    for &(at, next) in points[first..].iter().take_while(|(at, _)| *at < end) {
        sum += value * (at - t) as f64;
        (t, value) = (at, next);
    }
    sum += value * (end - t) as f64;
    Some(sum / (end - start) as f64)
}

/// A coin's mean price over `[start, end)` and its decimals (the latest quote's before the
/// end), when every instant of it has a quote in force.
fn coin_in_force(quotes: &[Quote], start: i64, end: i64) -> Option<(f64, u8)> {
    let points: Vec<(i64, f64)> = quotes.iter().map(|q| (q.t, q.price)).collect();
    let price = mean_in_force(&points, start, end, None)?;
    let last = quotes.iter().take_while(|q| q.t < end).last()?;
    Some((price, last.decimals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_in_force_is_weighted_by_how_long_it_held() {
        let points = [(0, 10.0), (30, 40.0), (90, 100.0)];
        // [0, 60): 10 for 30, 40 for 30.
        assert_eq!(mean_in_force(&points, 0, 60, None), Some(25.0));
        // [60, 120): 40 for 30, 100 for 30.
        assert_eq!(mean_in_force(&points, 60, 120, None), Some(70.0));
        // After the last point it holds on.
        assert_eq!(mean_in_force(&points, 200, 260, None), Some(100.0));
        // Before the first point: the fallback, or nothing.
        assert_eq!(mean_in_force(&points, -30, 30, Some(20.0)), Some(15.0));
        assert_eq!(mean_in_force(&points, -30, 30, None), None);
        assert_eq!(mean_in_force(&[], 0, 60, Some(7.0)), Some(7.0));
        assert_eq!(mean_in_force(&points, 60, 60, None), None);
    }
}
