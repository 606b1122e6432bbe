//! The risk a pool takes when it pays per share (PPS, FPPS; issue 59): it pays every share its
//! expected value from its own balance and keeps the blocks, so its balance rises and falls
//! with its luck. Per UTC day: what it credited, what those shares were expected to find
//! (before the fee), what its blocks found, its luck (found ÷ expected), its net (found −
//! credited) and that net carried over the days; beside each day, the reserve proofs of that
//! day (the wallet's proven balance against what every pool owed).

use std::collections::BTreeMap;

use adit_sql::Params;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Role};
use crate::error::Result;
use crate::view_sql::{only_count, rows, tables};
use crate::state::AppState;

/// Days shown when the request does not say.
const DEFAULT_DAYS: i64 = 30;
/// Most days shown.
const MAX_DAYS: i64 = 366;

/// The risk view: read access.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(Role::Read, OpenApiRouter::new().routes(routes!(pool_risk)))
}

/// One day of a pool's per-share payments.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RiskDay {
    /// The UTC day.
    pub day: String,
    /// Shares credited.
    pub shares: i64,
    /// Σ credits, atomic units.
    pub credited: i64,
    /// What those shares were expected to find: Σ difficulty × base ÷ network difficulty,
    /// before the fee.
    pub expected: f64,
    /// Blocks of a per-share scheme found (not orphaned).
    pub blocks: i64,
    /// Σ their rewards, atomic units.
    pub found: i64,
    /// found ÷ expected (none on a day nothing was expected).
    pub luck: Option<f64>,
    /// found − credited.
    pub net: i64,
    /// The net of every day shown up to this one.
    pub carried: i64,
    /// The smallest balance a reserve proof showed that day (none when none was made).
    pub reserve_proven: Option<i64>,
    /// The most that every pool owed at a reserve proof that day.
    pub reserve_owed: Option<i64>,
    /// Whether every reserve proof of the day was good.
    pub reserve_good: Option<bool>,
}

/// A pool's risk over the days shown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RiskView {
    /// The pool.
    pub pool: String,
    /// Oldest day first.
    pub days: Vec<RiskDay>,
    /// found ÷ expected over all the days shown.
    pub luck: Option<f64>,
    /// The net over all the days shown.
    pub net: i64,
}

/// The pool's luck and reserve per day, for the days a per-share scheme paid.
#[utoipa::path(get, path = "/api/v1/pools/{pool}/risk", tag = "pool",
    params(("pool" = String, Path, description = "Pool id"),
           ("days" = Option<i64>, Query, description = "Days back from today (default 30, at most 366)")),
    responses((status = 200, body = RiskView), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn pool_risk(
    State(state): State<AppState>,
    Path(pool): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<RiskView>> {
    let days = days(&query)?;
    let have = tables(&state).await?;
    let mut view = RiskView {
        pool: pool.clone(),
        days: Vec::new(),
        luck: None,
        net: 0,
    };
    if !have.contains("share_credits") {
        return Ok(Json(view));
    }
    let mut params = Params::new();
    let (p, n) = (params.text(&pool), params.int(days));
    let mut sources = vec![format!(
        "SELECT date AS day, count(*) AS shares, sum(amount) AS credited,
                sum(CAST(difficulty AS DOUBLE) * CAST(base AS DOUBLE)
                    / CAST(network_difficulty AS DOUBLE)) AS expected,
                0 AS blocks, 0 AS found
         FROM share_credits WHERE pool = {p} AND date >= current_date - CAST({n} AS INT)
         GROUP BY date"
    )];
    if have.contains("block_rewards") && have.contains("blocks") {
        sources.push(format!(
            "SELECT date AS day, 0 AS shares, 0 AS credited, 0.0 AS expected,
                    count(*) AS blocks, sum(reward) AS found
             FROM block_rewards WHERE pool = {p} AND scheme IN ('pps', 'fpps')
               AND date >= current_date - CAST({n} AS INT)
               AND hash NOT IN (SELECT hash FROM blocks WHERE pool = {p} AND status = 'orphaned')
             GROUP BY date"
        ));
    }
    let per_day = rows(
        &state,
        &format!(
            "SELECT CAST(day AS VARCHAR) AS day, sum(shares) AS shares, sum(credited) AS credited,
                    sum(expected) AS expected, sum(blocks) AS blocks, sum(found) AS found
             FROM ({}) GROUP BY day ORDER BY day",
            sources.join(" UNION ALL ")
        ),
        &params,
    )
    .await?;
    let reserve = reserve_by_day(&state, &have, days).await?;
    let (mut expected, mut found) = (0.0, 0i64);
    for r in &per_day {
        let int = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
        let day = r.get("day").and_then(Value::as_str).unwrap_or("").to_string();
        let day_expected = r.get("expected").and_then(Value::as_f64).unwrap_or(0.0);
        let (credited, day_found) = (int("credited"), int("found"));
        view.net += day_found - credited;
        expected += day_expected;
        found += day_found;
        let proof = reserve.get(&day);
        view.days.push(RiskDay {
            shares: int("shares"),
            credited,
            expected: day_expected,
            blocks: int("blocks"),
            found: day_found,
            luck: luck(day_found, day_expected),
            net: day_found - credited,
            carried: view.net,
            reserve_proven: proof.and_then(|p| p.get("proven")).and_then(Value::as_i64),
            reserve_owed: proof.and_then(|p| p.get("owed")).and_then(Value::as_i64),
            reserve_good: proof.and_then(|p| p.get("good")).and_then(Value::as_bool),
            day,
        });
    }
    view.luck = luck(found, expected);
    Ok(Json(view))
}

/// found ÷ expected, when something was expected.
fn luck(found: i64, expected: f64) -> Option<f64> {
    (expected > 0.0).then(|| found as f64 / expected)
}

/// `days` from the query string: 1 to [`MAX_DAYS`], [`DEFAULT_DAYS`] when absent.
fn days(query: &BTreeMap<String, String>) -> Result<i64> {
    only_count(query, "days", DEFAULT_DAYS, MAX_DAYS)
}

/// The reserve proofs of each of the last `days` days, by day: the smallest balance proven,
/// the most owed, and whether all were good.
async fn reserve_by_day(
    state: &AppState,
    have: &std::collections::BTreeSet<String>,
    days: i64,
) -> Result<BTreeMap<String, Map<String, Value>>> {
    if !have.contains("reserve_proofs") {
        return Ok(BTreeMap::new());
    }
    let mut params = Params::new();
    let n = params.int(days);
    let proofs = rows(
        state,
        &format!(
            "SELECT CAST(date AS VARCHAR) AS day, min(proven) AS proven, max(owed) AS owed,
                    bool_and(good) AS good
             FROM reserve_proofs WHERE date >= current_date - CAST({n} AS INT) GROUP BY date"
        ),
        &params,
    )
    .await?;
    Ok(proofs
        .into_iter()
        .filter_map(|r| {
            let day = r.get("day").and_then(Value::as_str)?.to_string();
            Some((day, r))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_bounded_and_nothing_else_is_taken() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(days(&q(&[])).unwrap(), DEFAULT_DAYS);
        assert_eq!(days(&q(&[("days", "7")])).unwrap(), 7);
        for bad in ["0", "367", "-1", "x", ""] {
            assert!(days(&q(&[("days", bad)])).is_err(), "{bad}");
        }
        assert!(days(&q(&[("limit", "5")])).is_err());
    }

    #[test]
    fn luck_is_found_over_expected() {
        assert_eq!(luck(150, 100.0), Some(1.5));
        assert_eq!(luck(0, 0.0), None);
    }
}
