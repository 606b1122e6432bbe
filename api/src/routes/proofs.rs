//! What a pool publishes so its miners need not take its word (issue 59), open to anyone
//! without a token: each block's PPLNS window ([`adit_schemas::window::PublishedWindow`]),
//! which `adit verify payout` and the miner's page check, and the payer's reserve proofs
//! ([`adit_schemas::results::ReserveProof`]), which anyone checks with `check_reserve_proof`.
//!
//! A window is read from three tables: the block's `block_rewards` row (the block, the rules
//! and the commitment the split recorded), the `shares` it counted (the pool's accepted shares
//! from its oldest counted sequence to the one that found the block) and its `payouts`. Miners
//! appear only by id ([`adit_schemas::window::miner_id`]), never by login. Being open, each
//! request takes one of the public slots (`query.concurrency.public`, shared with public
//! dashboards): a flood is answered 429 and never takes a reader's or the pipelines' place.

use std::collections::BTreeMap;

use adit_schemas::window::{PublishedWindow, WindowHeader, miner_id};
use adit_sql::Params;
use adit_sql::admission::Slot;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Access;
use crate::error::{QueryError, Result};
use crate::view_sql::{rows, tables};
use crate::state::AppState;

/// The published views: no token needed.
pub(crate) fn routes(_access: &Access) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(block_window))
        .routes(routes!(reserve))
}

/// Most reserve proofs listed.
const RESERVE_PROOFS: usize = 50;

/// The newest reserve proofs, newest first: what the pools owed, what the proof shows, whether
/// it is good, and the address, message and signature to check it with.
#[utoipa::path(get, path = "/api/v1/public/reserve", tag = "proofs",
    responses((status = 200, description = "The newest reserve proofs (the reserve_proofs table's rows)", body = [Object]),
              (status = 429, description = "The public slots are all taken")))]
pub async fn reserve(State(state): State<AppState>) -> Result<Json<Vec<Map<String, Value>>>> {
    let _slot = state.admission.admit(Slot::Public).await?;
    if !tables(&state).await?.contains("reserve_proofs") {
        return Ok(Json(Vec::new()));
    }
    Ok(Json(
        rows(
            &state,
            &format!(
                "SELECT to_char(ts, '%Y-%m-%dT%H:%M:%SZ') AS made_at, chain, address, owed, proven,
                        good, message, signature, error
                 FROM reserve_proofs ORDER BY ts DESC LIMIT {RESERVE_PROOFS}"
            ),
            &Params::new(),
        )
        .await?,
    ))
}

/// The PPLNS window of each block the pool split at `height` (more than one when the chain
/// reorganised): the block, the rules, the commitment, every share counted (newest first, as
/// `[seq, miner index, difficulty]`) and every miner's payout, miners by id in the order the
/// split pays them.
#[utoipa::path(get, path = "/api/v1/public/pools/{pool}/blocks/{height}/window", tag = "proofs",
    params(("pool" = String, Path, description = "Pool id"),
           ("height" = u64, Path, description = "Block height")),
    responses((status = 200, description = "The windows of the blocks split at this height (see adit_schemas::window::PublishedWindow)", body = [Object]),
              (status = 404, description = "No block split at this height, or its shares are not all landed yet"),
              (status = 429, description = "The public slots are all taken")))]
pub async fn block_window(
    State(state): State<AppState>,
    Path((pool, height)): Path<(String, u64)>,
) -> Result<Json<Vec<PublishedWindow>>> {
    if !adit_schemas::names::is_token(&pool) {
        return Err(QueryError::BadRequest(
            "a pool id is 1-64 of A-Z a-z 0-9 _ -".into(),
        ));
    }
    let _slot = state.admission.admit(Slot::Public).await?;
    let have = tables(&state).await?;
    if !["block_rewards", "shares", "payouts"]
        .iter()
        .all(|t| have.contains(*t))
    {
        return Err(QueryError::NotFound(format!(
            "pool {pool} has split no block"
        )));
    }
    let height = i64::try_from(height)
        .map_err(|_| QueryError::BadRequest(format!("height {height} is out of range")))?;
    let mut params = Params::new();
    let (p, h) = (params.text(&pool), params.int(height));
    let blocks = rows(
        &state,
        &format!(
            "SELECT hash, reward, network_difficulty, factor, fee_bps, unfilled,
                    coalesce(scheme, 'pplns') AS scheme, fee, paid, remainder, window_hash, shares,
                    first_seq, share_seq
             FROM block_rewards WHERE pool = {p} AND height = {h} AND window_hash IS NOT NULL
             ORDER BY block_seq"
        ),
        &params,
    )
    .await?;
    if blocks.is_empty() {
        return Err(QueryError::NotFound(format!(
            "pool {pool} split no block at height {height} (or split it before windows were published)"
        )));
    }
    let mut out = Vec::with_capacity(blocks.len());
    for block in &blocks {
        out.push(window(&state, &pool, height as u64, block).await?);
    }
    Ok(Json(out))
}

/// One block's published window, from its `block_rewards` row.
async fn window(
    state: &AppState,
    pool: &str,
    height: u64,
    block: &Map<String, Value>,
) -> Result<PublishedWindow> {
    let int = |k: &str| block.get(k).and_then(Value::as_i64).unwrap_or(0);
    let text = |k: &str| {
        block
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let hash = text("hash");
    // A block of a per-share scheme counted no share (its `first_seq` is null).
    let shares = match block.get("first_seq").and_then(Value::as_i64) {
        Some(first) => counted(state, pool, first, int("share_seq")).await?,
        None => Vec::new(),
    };
    if shares.len() as i64 != int("shares") {
        return Err(QueryError::NotFound(format!(
            "block {hash}: {} of its {} shares are landed; retry in a moment",
            shares.len(),
            int("shares")
        )));
    }
    let mut params = Params::new();
    let (p, hh) = (params.text(pool), params.text(&hash));
    let paid = rows(
        state,
        &format!("SELECT miner, amount FROM payouts WHERE pool = {p} AND hash = {hh}"),
        &params,
    )
    .await?;
    // Every miner paid or counted, by login: the order the split pays them.
    let mut by_login: BTreeMap<String, u64> = shares
        .iter()
        .map(|(_, miner, _)| (miner.clone(), 0))
        .collect();
    for r in &paid {
        let miner = r.get("miner").and_then(Value::as_str).unwrap_or("");
        let amount = r.get("amount").and_then(Value::as_i64).unwrap_or(0);
        by_login.insert(miner.to_string(), u64::try_from(amount).unwrap_or(0));
    }
    let index: BTreeMap<&str, u64> = by_login
        .keys()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i as u64))
        .collect();
    let unsigned = |k: &str| u64::try_from(int(k)).unwrap_or(0);
    Ok(PublishedWindow {
        header: WindowHeader {
            pool: pool.to_string(),
            height,
            hash,
            reward: unsigned("reward"),
            network_difficulty: unsigned("network_difficulty"),
            factor: text("factor"),
            fee_bps: unsigned("fee_bps"),
            unfilled: text("unfilled"),
            scheme: text("scheme"),
        },
        fee: unsigned("fee"),
        paid: unsigned("paid"),
        remainder: unsigned("remainder"),
        window_hash: text("window_hash"),
        shares: shares
            .iter()
            .map(|(seq, miner, d)| [*seq, index[miner.as_str()], *d])
            .collect(),
        miners: by_login.keys().map(|m| miner_id(pool, m)).collect(),
        payouts: by_login.into_values().collect(),
    })
}

/// `(seq, miner, difficulty)` of the pool's accepted shares from sequence `from` to `to`,
/// newest first.
async fn counted(
    state: &AppState,
    pool: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(u64, String, u64)>> {
    let mut params = Params::new();
    let p = params.text(pool);
    let (from, to) = (params.int(from), params.int(to));
    let counted = state
        .engine
        .query_with(
            &format!(
                "SELECT CAST(seq AS BIGINT) AS seq, CAST(miner AS VARCHAR) AS miner,
                        CAST(difficulty AS BIGINT) AS difficulty
                 FROM shares WHERE pool = {p} AND accepted AND seq BETWEEN {from} AND {to}
                 ORDER BY seq DESC"
            ),
            params.into_options(),
        )
        .await?;
    columns(&counted.batches)
}

/// `(seq, miner, difficulty)` of each row of the shares query.
fn columns(batches: &[RecordBatch]) -> Result<Vec<(u64, String, u64)>> {
    let internal = |e: arrow::error::ArrowError| QueryError::Internal(e.to_string());
    let mut out = Vec::new();
    for batch in batches {
        let seq = batch.column(0).as_primitive::<Int64Type>();
        let miner = arrow::compute::cast(batch.column(1), &DataType::Utf8).map_err(internal)?;
        let miner = miner.as_string::<i32>();
        let difficulty = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if seq.is_null(i) || miner.is_null(i) || difficulty.is_null(i) {
                continue;
            }
            out.push((
                u64::try_from(seq.value(i)).unwrap_or(0),
                miner.value(i).to_string(),
                u64::try_from(difficulty.value(i)).unwrap_or(0),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use adit_sql::admission::{Admission, ConcurrencyConfig};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    /// The published views take the public slots: with them all taken, a stranger's request
    /// is a 429 within `queue_wait`, and the readers' slots are untouched.
    #[tokio::test]
    async fn public_views_take_the_public_slots() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            adit_sinks::TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let engine = Arc::new(adit_sql::SqlEngine::new(
            Arc::new(adit_sql::Catalog::new(store, Duration::ZERO)),
            Default::default(),
        ));
        let admission = Arc::new(Admission::new(ConcurrencyConfig {
            public: 1,
            queue_wait: Duration::from_millis(100),
            ..Default::default()
        }));
        let state = AppState {
            admission: admission.clone(),
            ..AppState::bare(engine)
        };
        let tokens = crate::auth::Tokens::new("query", &[], None).unwrap();
        let ingest = OpenApiRouter::new().route("/ingest", axum::routing::post(|| async { "" }));
        let app = crate::server::router(state, tokens, Default::default(), ingest);
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let free = app.clone().oneshot(get("/api/v1/public/reserve")).await.unwrap();
        assert_eq!(free.status(), StatusCode::OK);
        let held = admission.admit(Slot::Public).await.unwrap();
        for uri in ["/api/v1/public/reserve", "/api/v1/public/pools/main/blocks/1/window"] {
            let busy = app.clone().oneshot(get(uri)).await.unwrap();
            assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS, "{uri}");
        }
        assert!(admission.admit(crate::auth::Role::Read).await.is_ok());
        drop(held);
    }
}
