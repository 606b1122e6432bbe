//! A site's machines priced (issue 60): over the last hours, per machine, what its shares were
//! worth, what its energy cost, the margin and the energy price it breaks even at, summed
//! from `machine_profit` (one row per machine per settlement interval, with every input).
//! Revenue, cost and margin are each summed over the intervals where they are known (a coin
//! or energy price was in force throughout), and each says over how many: an interval without
//! a price is left out of a sum, never counted as 0.

use std::collections::BTreeMap;

use adit_sql::Params;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use adit_schemas::market::breakeven_per_mwh;
use adit_schemas::registry::Record;
use adit_schemas::{CoinPrice, NetworkState};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Role};
use crate::error::Result;
use crate::view_sql::{only_count, rows, tables};
use crate::state::AppState;

/// Hours shown when the request does not say.
const DEFAULT_HOURS: i64 = 24;
/// Most hours shown (31 days).
const MAX_HOURS: i64 = 744;

/// The profit view: read access.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(Role::Read, OpenApiRouter::new().routes(routes!(site_profit)))
}

/// One machine over the hours shown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MachineMargin {
    /// The machine.
    pub machine: String,
    /// Settlement intervals settled.
    pub intervals: i64,
    /// Of those, the intervals whose revenue is known (a coin price in force throughout).
    pub priced: i64,
    /// Of those, the intervals whose energy cost is known.
    pub costed: i64,
    /// Of those, the intervals whose margin is known (both).
    pub margined: i64,
    /// Accepted shares.
    pub shares: i64,
    /// Their expected value, atomic units.
    pub revenue_units: i64,
    /// Their worth in the operator's currency, over the priced intervals.
    pub revenue: Option<f64>,
    /// Energy, kWh, over every interval.
    pub energy_kwh: f64,
    /// Its cost, over the costed intervals.
    pub energy_cost: Option<f64>,
    /// revenue − energy_cost, over the intervals where both are known.
    pub margin: Option<f64>,
    /// The energy price at which the priced intervals' margin is 0, per MWh: their revenue
    /// over their energy.
    pub breakeven_per_mwh: Option<f64>,
    /// The latest interval's breakeven, per MWh.
    pub last_breakeven_per_mwh: Option<f64>,
    /// Its breakeven now, per MWh: its nameplate hashrate at its pool's latest terms and its
    /// coin's latest price, per MWh of its nameplate power (what the controller sheds by,
    /// unless a strike is set for its model or customer).
    pub breakeven_now_per_mwh: Option<f64>,
}

/// A site's machines over the hours shown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProfitView {
    /// The site.
    pub site: String,
    /// Hours back from now.
    pub hours: i64,
    /// By machine, least margin first.
    pub machines: Vec<MachineMargin>,
    /// Σ margin of the machines whose margin is known.
    pub margin: f64,
    /// The site's latest energy price, per MWh, and when it was issued.
    pub energy_price_per_mwh: Option<f64>,
    /// When that price was issued (RFC 3339).
    pub energy_price_at: Option<String>,
}

/// Revenue, energy cost, margin and breakeven of each of the site's machines.
#[utoipa::path(get, path = "/api/v1/sites/{site}/profit", tag = "farm",
    params(("site" = String, Path, description = "Site id"),
           ("hours" = Option<i64>, Query, description = "Hours back from now (default 24, at most 744)")),
    responses((status = 200, body = ProfitView), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn site_profit(
    State(state): State<AppState>,
    Path(site): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<ProfitView>> {
    let hours = hours(&query)?;
    let mut view = ProfitView {
        site: site.clone(),
        hours,
        machines: Vec::new(),
        margin: 0.0,
        energy_price_per_mwh: None,
        energy_price_at: None,
    };
    let have = tables(&state).await?;
    if have.contains("grid_signals") {
        let mut params = Params::new();
        let sql = format!(
            "SELECT price_per_mwh, to_char(ts, '%Y-%m-%dT%H:%M:%S%.3fZ') AS at FROM grid_signals
             WHERE site = {s} AND kind = 'price' ORDER BY ts DESC LIMIT 1",
            s = params.text(&site)
        );
        if let Some(r) = rows(&state, &sql, &params).await?.first() {
            view.energy_price_per_mwh = r.get("price_per_mwh").and_then(Value::as_f64);
            view.energy_price_at = r.get("at").and_then(Value::as_str).map(str::to_string);
        }
    }
    if !have.contains("machine_profit") {
        return Ok(Json(view));
    }
    let now = breakevens_now(&state, &have, &site).await?;
    let mut params = Params::new();
    // `hours` is a checked integer, written into the statement as one.
    let sql = format!(
        "WITH recent AS (
           SELECT * FROM machine_profit
           WHERE site = {s} AND period_end >= now() - INTERVAL '{hours} hours'),
         last AS (
           SELECT machine, breakeven_per_mwh,
                  row_number() OVER (PARTITION BY machine ORDER BY period_start DESC) AS n
           FROM recent)
         SELECT r.machine, count(*) AS intervals, sum(r.shares) AS shares,
                sum(r.revenue_units) AS revenue_units,
                sum(r.revenue) AS revenue, count(r.revenue) AS priced,
                sum(CASE WHEN r.revenue IS NOT NULL THEN r.energy_wh END) AS priced_wh,
                sum(r.energy_wh) AS energy_wh,
                sum(r.energy_cost) AS energy_cost, count(r.energy_cost) AS costed,
                sum(r.margin) AS margin, count(r.margin) AS margined,
                max(l.breakeven_per_mwh) AS last_breakeven
         FROM recent r LEFT JOIN last l ON l.machine = r.machine AND l.n = 1
         GROUP BY r.machine",
        s = params.text(&site)
    );
    for r in rows(&state, &sql, &params).await? {
        let mut m = margin_of(&r);
        m.breakeven_now_per_mwh = now.get(&m.machine).copied();
        view.machines.push(m);
    }
    view.machines.sort_by(|a, b| {
        let m = |x: &MachineMargin| x.margin.unwrap_or(f64::INFINITY);
        m(a).total_cmp(&m(b)).then_with(|| a.machine.cmp(&b.machine))
    });
    view.margin = view.machines.iter().filter_map(|m| m.margin).sum();
    Ok(Json(view))
}

/// Each of the site's machines' breakeven now, by machine: from the registry (its pool, the
/// pool's coin, its nameplate) and the latest `network` and `coin_prices` rows. Empty without
/// the registry or those tables.
async fn breakevens_now(
    state: &AppState,
    have: &std::collections::BTreeSet<String>,
    site: &str,
) -> Result<BTreeMap<String, f64>> {
    let Some(registry) = state.registry.as_ref() else {
        return Ok(BTreeMap::new());
    };
    if !have.contains("network") || !have.contains("coin_prices") {
        return Ok(BTreeMap::new());
    }
    let snapshot = registry.snapshot().await?;
    let records: Vec<Record> = snapshot.into_iter().map(|(_, v)| v.record).collect();
    let latest = |table: &str, key: &str| {
        format!(
            "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY ts DESC) AS n
             FROM {table}) WHERE n = 1"
        )
    };
    let no = Params::new();
    let terms = rows(state, &latest("network", "pool"), &no).await?;
    let coins = rows(state, &latest("coin_prices", "coin"), &no).await?;
    let coin_of = |pool: &str| {
        records.iter().find_map(|r| match r {
            Record::Pool(p) if p.id == pool => p.coin.clone(),
            _ => None,
        })
    };
    let mut out = BTreeMap::new();
    for record in &records {
        let Record::Machine(m) = record else { continue };
        if m.site != site {
            continue;
        }
        let Some(pool) = m.pool.as_deref() else { continue };
        let (Some(coin), Some(terms)) = (
            coin_of(pool),
            terms.iter().find(|r| r.get("pool").and_then(Value::as_str) == Some(pool)),
        ) else {
            continue;
        };
        let Some(quote) = coins
            .iter()
            .find(|r| r.get("coin").and_then(Value::as_str) == Some(coin.as_str()))
        else {
            continue;
        };
        let int = |r: &Map<String, Value>, k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
        let network = NetworkState {
            pool: pool.to_string(),
            height: int(terms, "height"),
            network_difficulty: int(terms, "network_difficulty"),
            reward: int(terms, "reward"),
            subsidy: int(terms, "subsidy"),
            fee_bps: int(terms, "fee_bps"),
            ts: chrono::Utc::now(),
        };
        let price = CoinPrice {
            coin: coin.clone(),
            price: quote.get("price").and_then(Value::as_f64).unwrap_or(0.0),
            decimals: u8::try_from(int(quote, "decimals")).unwrap_or(0),
            source: String::new(),
            ts: chrono::Utc::now(),
        };
        if let Some(b) =
            breakeven_per_mwh(m.nominal_hashrate_hs, m.nominal_power_w, &network, &price)
        {
            out.insert(m.id.clone(), b);
        }
    }
    Ok(out)
}

/// One machine's sums; a sum over no known interval is none.
fn margin_of(r: &Map<String, Value>) -> MachineMargin {
    let int = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
    let float = |k: &str| r.get(k).and_then(Value::as_f64);
    let (priced, costed, margined) = (int("priced"), int("costed"), int("margined"));
    let revenue = float("revenue").filter(|_| priced > 0);
    let priced_wh = float("priced_wh").unwrap_or(0.0);
    MachineMargin {
        machine: r
            .get("machine")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        intervals: int("intervals"),
        priced,
        costed,
        margined,
        shares: int("shares"),
        revenue_units: int("revenue_units"),
        revenue,
        energy_kwh: float("energy_wh").unwrap_or(0.0) / 1000.0,
        energy_cost: float("energy_cost").filter(|_| costed > 0),
        margin: float("margin").filter(|_| margined > 0),
        breakeven_per_mwh: revenue
            .filter(|_| priced_wh > 0.0)
            .map(|r| r / (priced_wh / 1e6)),
        last_breakeven_per_mwh: float("last_breakeven"),
        breakeven_now_per_mwh: None,
    }
}

/// `hours` from the query string: 1 to [`MAX_HOURS`], [`DEFAULT_HOURS`] when absent.
fn hours(query: &BTreeMap<String, String>) -> Result<i64> {
    only_count(query, "hours", DEFAULT_HOURS, MAX_HOURS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sums_are_over_the_intervals_where_they_are_known_and_say_how_many() {
        let row = |priced: i64, margined: i64| {
            json!({"machine": "m-1", "intervals": 4, "shares": 10, "revenue_units": 5,
                   "revenue": if priced > 0 { json!(3.0) } else { json!(null) },
                   "priced": priced, "priced_wh": 1500.0, "energy_wh": 2000.0,
                   "energy_cost": 1.0, "costed": 4,
                   "margin": if margined > 0 { json!(1.75) } else { json!(null) },
                   "margined": margined, "last_breakeven": 1500.0})
            .as_object()
            .cloned()
            .unwrap()
        };
        let some = margin_of(&row(3, 3));
        assert_eq!((some.priced, some.costed, some.margined), (3, 4, 3));
        assert_eq!(some.margin, Some(1.75));
        assert_eq!(some.breakeven_per_mwh, Some(2000.0), "3.0 over 1.5 kWh");
        assert_eq!(some.energy_kwh, 2.0);
        let none = margin_of(&row(0, 0));
        assert_eq!((none.revenue, none.margin, none.breakeven_per_mwh), (None, None, None));
        assert_eq!(none.energy_cost, Some(1.0));
        let mut bad = BTreeMap::new();
        bad.insert("hours".to_string(), "0".to_string());
        assert!(hours(&bad).is_err());
        bad.insert("hours".to_string(), "745".to_string());
        assert!(hours(&bad).is_err());
        assert_eq!(hours(&BTreeMap::new()).unwrap(), DEFAULT_HOURS);
    }
}
