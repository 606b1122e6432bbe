//! Where a pool stands (issue 61): its miners ranked by hashrate over a window (the
//! leaderboard pool sites show), and its hashrate beside the network's, hour by hour, with its
//! share of the network. Both are SQL over `hashrate_1m`, `network` and `shares` through the
//! same engine and limits as every view; a table not written yet reads as empty.
//!
//! - A miner's hashrate over the window: Σ of its accepted share difficulty in the window's
//!   minutes (`hashrate_1m`) over the window's seconds.
//! - The network's hashrate in an hour: Σ network difficulty of the heights the pool saw
//!   begin in that hour (`network`, one row per new height: the hashes each block took in
//!   expectation) over 3 600 s — measured from the chain's own pace, so right for any chain.

use std::collections::BTreeMap;

use adit_sql::Params;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Role};
use crate::error::{QueryError, Result};
use crate::view_sql::{rows, tables};
use crate::state::AppState;

pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(
        Role::Read,
        OpenApiRouter::new()
            .routes(routes!(leaderboard))
            .routes(routes!(network)),
    )
}

/// The windows a leaderboard is ranked over, in seconds.
const WINDOWS: [(&str, i64); 3] = [("1h", 3_600), ("24h", 86_400), ("7d", 604_800)];
/// Most miners a leaderboard lists.
const MAX_RANKED: usize = 100;
/// Most hours of the pool-beside-network series.
const MAX_HOURS: i64 = 24 * 30;

/// A whole number from 1 to `max` under `key`, `default` when absent.
pub(crate) fn count(query: &BTreeMap<String, String>, key: &str, default: i64, max: i64) -> Result<i64> {
    match query.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| QueryError::InvalidField {
                field: key.into(),
                reason: format!("must be a whole number from 1 to {max}"),
            }),
    }
}

/// The seconds of the ranking window `window` names (`1h`, `24h` — the default — or `7d`).
pub(crate) fn window_seconds(query: &BTreeMap<String, String>) -> Result<i64> {
    let window = query.get("window").map_or("24h", String::as_str);
    WINDOWS
        .iter()
        .find(|(name, _)| *name == window)
        .map(|(_, s)| *s)
        .ok_or_else(|| QueryError::InvalidField {
            field: "window".into(),
            reason: "must be 1h, 24h or 7d".into(),
        })
}

/// Refuses any parameter but `allowed`.
pub(crate) fn only(query: &BTreeMap<String, String>, allowed: &[&str]) -> Result<()> {
    match query.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(QueryError::InvalidField {
            field: k.clone(),
            reason: format!("unknown parameter; this view takes {}", allowed.join(", ")),
        }),
        None => Ok(()),
    }
}

/// The pool's miners ranked by hashrate over `window` (`1h`, `24h` — the default — or `7d`):
/// rank, miner, workers, accepted shares, hashrate (H/s) and share of the pool's hashrate.
#[utoipa::path(get, path = "/api/v1/pools/{pool}/leaderboard", tag = "pool",
    params(("pool" = String, Path), ("window" = Option<String>, Query, description = "1h, 24h or 7d"),
           ("limit" = Option<usize>, Query, description = "1 to 100, default 20")),
    responses((status = 200, description = "[{rank, miner, workers, shares, hashrate_hs, share}]"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn leaderboard(
    State(state): State<AppState>,
    Path(pool): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>> {
    only(&query, &["window", "limit"])?;
    let seconds = window_seconds(&query)?;
    let limit = count(&query, "limit", 20, MAX_RANKED as i64)?;
    if !tables(&state).await?.contains("hashrate_1m") {
        return Ok(Json(Vec::new()));
    }
    let mut params = Params::new();
    let sql = format!(
        "WITH m AS (SELECT miner, count(DISTINCT worker) AS workers, sum(shares) AS shares, \
                      sum(difficulty) / {seconds}.0 AS hashrate_hs \
                    FROM hashrate_1m WHERE pool = {} \
                      AND minute >= now() - INTERVAL '{seconds} seconds' GROUP BY miner) \
         SELECT CAST(row_number() OVER (ORDER BY hashrate_hs DESC, miner) AS BIGINT) AS rank, \
           miner, workers, shares, hashrate_hs, \
           hashrate_hs / nullif(sum(hashrate_hs) OVER (), 0) AS share \
         FROM m ORDER BY rank LIMIT {limit}",
        params.text(&pool)
    );
    Ok(Json(rows(&state, &sql, &params).await?))
}

/// The pool's hashrate beside the network's, per hour over the last `hours` (default 24, at
/// most 720), oldest first: hour, pool_hs, network_hs and the pool's share of the network;
/// an hour in which the pool saw no new height has no network figure.
#[utoipa::path(get, path = "/api/v1/pools/{pool}/network", tag = "pool",
    params(("pool" = String, Path), ("hours" = Option<i64>, Query, description = "1 to 720, default 24")),
    responses((status = 200, description = "[{hour, pool_hs, network_hs, share}]"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn network(
    State(state): State<AppState>,
    Path(pool): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>> {
    only(&query, &["hours"])?;
    let hours = count(&query, "hours", 24, MAX_HOURS)?;
    let have = tables(&state).await?;
    let mut params = Params::new();
    let pool = params.text(&pool);
    let since = format!("now() - INTERVAL '{hours} hours'");
    let ours = if have.contains("hashrate_1m") {
        format!(
            "SELECT date_trunc('hour', minute) AS hour, sum(difficulty) / 3600.0 AS hs \
             FROM hashrate_1m WHERE pool = {pool} AND minute >= {since} GROUP BY 1"
        )
    } else {
        "SELECT CAST(NULL AS TIMESTAMP) AS hour, CAST(NULL AS DOUBLE) AS hs WHERE false".into()
    };
    let theirs = if have.contains("network") {
        format!(
            "SELECT date_trunc('hour', ts) AS hour, \
               sum(CAST(network_difficulty AS DOUBLE)) / 3600.0 AS hs \
             FROM network WHERE pool = {pool} AND ts >= {since} GROUP BY 1"
        )
    } else {
        "SELECT CAST(NULL AS TIMESTAMP) AS hour, CAST(NULL AS DOUBLE) AS hs WHERE false".into()
    };
    let sql = format!(
        "WITH p AS ({ours}), n AS ({theirs}) \
         SELECT coalesce(p.hour, n.hour) AS hour, coalesce(p.hs, 0.0) AS pool_hs, \
           n.hs AS network_hs, coalesce(p.hs, 0.0) / nullif(n.hs, 0) AS share \
         FROM p FULL OUTER JOIN n ON p.hour = n.hour ORDER BY 1"
    );
    Ok(Json(rows(&state, &sql, &params).await?))
}
