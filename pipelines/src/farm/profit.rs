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
    /// Their expected value after the pool's fee, atomic units.
    units: i64,
    /// The pool's fee on them, atomic units.
    #[serde(default)]
    fee_units: i64,
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
    /// Takes one share, with its pool's fee in basis points, into its machine's interval;
    /// `closed` is each site's time before which its minutes are final.
    pub fn take_share(
        &mut self,
        view: &RegistryView,
        who: &Identities,
        (share, fee_bps): (&Share, u64),
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
        let priced = share
            .network_difficulty
            .zip(share.reward)
            .and_then(|(nd, reward)| {
                let whole = pps::credit(share.difficulty, nd, reward, 0).ok()?;
                let owed = pps::credit(share.difficulty, nd, reward, fee_bps).ok()?;
                Some((owed, whole - owed))
            });
        match priced {
            Some((owed, fee)) => {
                earned.units = earned.units.saturating_add(owed as i64);
                earned.fee_units = earned.fee_units.saturating_add(fee as i64);
            }
            None => earned.unpriced += 1,
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
            pool_fee_units: Some(earned.fee_units),
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
    use adit_schemas::registry::{ChangeOp, Machine, MinesAs, Pool, Record, RegistryEntry, Site};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    const MINUTE: i64 = 60_000_000;
    const T0: i64 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % MINUTE;

    /// Site s1 settling every minute; m0 and m1 mine as w0 and w1 at pool p.
    fn view() -> RegistryView {
        let mut view = RegistryView::default();
        let site = Site {
            settlement_minutes: 1,
            ..Site::new("s1", 100.0)
        };
        let pool = Pool {
            id: "p".into(),
            name: String::new(),
            allocation_kw: None,
            coin: Some("XMR".into()),
            operator: None,
            location: None,
        };
        let mut records = vec![Record::Site(site), Record::Pool(pool)];
        for i in 0..2 {
            records.push(Record::Machine(Machine {
                pool: Some("p".into()),
                mines_as: Some(MinesAs {
                    miner: "login".into(),
                    worker: Some(format!("w{i}")),
                }),
                ..Machine::new(&format!("m{i}"), "s1", "S19", 1e14, 3000.0)
            }));
        }
        for record in records {
            view.apply(&RegistryEntry {
                key: record.key(),
                op: ChangeOp::Put,
                by: "test".into(),
                at: Utc::now(),
                record: Some(record),
            });
        }
        view
    }

    fn share(worker: &str, t: i64, difficulty: u64, priced: bool, accepted: bool) -> Share {
        Share {
            pool: "p".into(),
            miner: "login".into(),
            worker: worker.into(),
            job_id: "j".into(),
            nonce: "n".into(),
            difficulty,
            height: 1,
            accepted,
            reason: (!accepted).then(|| "low difficulty".into()),
            ts: Utc.timestamp_micros(t).unwrap(),
            network_difficulty: priced.then_some(1_000_003),
            reward: priced.then_some(600_000_000_000),
            subsidy: priced.then_some(600_000_000_000),
            team: None,
        }
    }

    fn period(machine: &str, start: i64) -> EnergyPeriod {
        EnergyPeriod {
            scope: "machine".into(),
            site: Some("s1".into()),
            subject: machine.into(),
            period_start: Utc.timestamp_micros(start).unwrap(),
            period_end: Utc.timestamp_micros(start + MINUTE).unwrap(),
            energy_wh: 50.0,
            avg_power_w: 3000.0,
            peak_power_w: 3000.0,
            minutes: 1,
            machines: 1,
            quality: 1.0,
            measured_share: 1.0,
            sources: "meter".into(),
            hashrate_ths: None,
            efficiency_j_th: None,
            date: Utc.timestamp_micros(start).unwrap().date_naive(),
        }
    }

    proptest! {
        /// Nothing is dropped in silence: whatever order shares arrive in and whenever the
        /// site's minutes close, every accepted share of a machine is counted once, in its own
        /// interval's row, or said late (its interval had closed), or counted among those of
        /// an interval without energy; its value to the miner is exactly
        /// ⌊d × reward × (10 000 − fee) ÷ (nd × 10 000)⌋ and the pool's fee the rest of
        /// ⌊d × reward ÷ nd⌋; no other share is counted.
        #[test]
        fn every_share_of_a_machine_is_priced_once_or_said_late(
            shares in prop::collection::vec(
                (0..3usize, 0..(5 * MINUTE), 1..5_000_000u64, any::<bool>(), prop::bool::weighted(0.9)),
                0..60,
            ),
            closes in prop::collection::vec(0..7i64, 1..6),
            energy_for in prop::collection::vec(any::<bool>(), 10),
            fee_bps in 0..2_000u64,
        ) {
            let view = view();
            let who = identities(&view);
            let energy_for = &energy_for;
            let mut profit = Profit::default();
            let mut closed = BTreeMap::new();
            let mut closes = closes;
            closes.sort_unstable();
            let per_close = shares.len() / closes.len() + 1;
            let (mut late, mut orphaned) = (0i64, 0i64);
            // What each machine's interval was given: (shares, units, fee units, unpriced).
            let mut given: BTreeMap<(usize, i64), (i64, i64, i64, i64)> = BTreeMap::new();
            let mut rows: Vec<MachineProfit> = Vec::new();
            let mut chunks = shares.chunks(per_close);
            for close_at in &closes {
                for &(w, t, d, priced, accepted) in chunks.next().unwrap_or_default() {
                    let worker = ["w0", "w1", "stranger"][w];
                    let s = share(worker, T0 + t, d, priced, accepted);
                    match profit.take_share(&view, &who, (&s, fee_bps), &closed) {
                        Taken::Late => late += 1,
                        Taken::Counted => {
                            let start = T0 + t - t % MINUTE;
                            let e = given.entry((w, start)).or_default();
                            e.0 += 1;
                            if priced {
                                let whole = u128::from(d) * 600_000_000_000;
                                let owed = whole * u128::from(10_000 - fee_bps) / (1_000_003 * 10_000);
                                e.1 += owed as i64;
                                e.2 += (whole / 1_000_003 - owed) as i64;
                            } else {
                                e.3 += 1;
                            }
                        }
                        Taken::NotOurs => prop_assert!(w == 2 || !accepted),
                    }
                }
                // The site's minutes close up to `close_at` minutes: each machine's intervals
                // before it settle, some of them with no energy row.
                let until = T0 + close_at * MINUTE;
                let was = closed.insert("s1".to_string(), until).unwrap_or(T0);
                let settled: Vec<EnergyPeriod> = (0..2)
                    .flat_map(|m| {
                        (was.max(T0)..until)
                            .step_by(MINUTE as usize)
                            .filter(move |start| energy_for[(m * 5 + ((start - T0) / MINUTE) as usize) % 10])
                            .map(move |start| period(&format!("m{m}"), start))
                    })
                    .collect();
                let settled: Vec<&EnergyPeriod> = settled.iter().collect();
                let (r, o) = profit.rows(&view, &settled, &closed);
                rows.extend(r);
                orphaned += o;
            }
            let open: i64 = profit.earned.values().map(|e| e.shares).sum();
            let ours = shares.iter().filter(|(w, .., accepted)| *w < 2 && *accepted).count();
            let counted: i64 = rows.iter().map(|r| r.shares).sum();
            prop_assert_eq!(counted + late + orphaned + open, ours as i64);
            let mut keys = std::collections::BTreeSet::new();
            for row in &rows {
                prop_assert!(keys.insert((row.machine.clone(), row.period_start)), "one row per interval");
                let w = usize::from(row.machine == "m1");
                let want = given.remove(&(w, row.period_start.timestamp_micros())).unwrap_or_default();
                prop_assert_eq!(
                    (row.shares, row.revenue_units, row.pool_fee_units, row.unpriced_shares),
                    (want.0, want.1, Some(want.2), want.3)
                );
            }
            // What no row took is what was counted without energy, or is still open.
            let rest: i64 = given.values().map(|g| g.0).sum();
            prop_assert_eq!(rest, orphaned + open);
        }

        /// The mean in force equals the mean of the price at each microsecond, computed one
        /// step at a time (an oracle too slow for the pipeline, simple enough to trust).
        #[test]
        fn the_mean_in_force_is_the_mean_of_each_instants_price(
            mut points in prop::collection::vec((0..200i64, -100.0..100.0f64), 0..8),
            start in -20..200i64,
            len in 0..120i64,
            before in prop::option::of(-100.0..100.0f64),
        ) {
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            let end = start + len;
            let at = |t: i64| points.iter().rev().find(|p| p.0 <= t).map(|p| p.1).or(before);
            let each: Option<Vec<f64>> = (start..end).map(at).collect();
            let oracle = each.filter(|v| !v.is_empty()).map(|v| v.iter().sum::<f64>() / v.len() as f64);
            let got = mean_in_force(&points, start, end, before);
            match (got, oracle) {
                (Some(g), Some(o)) => prop_assert!((g - o).abs() < 1e-9, "{} ≠ {}", g, o),
                (g, o) => prop_assert_eq!(g, o),
            }
        }
    }

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
