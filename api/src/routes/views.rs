//! REST views of the pool for front-ends (the questions pool sites ask most, in the shapes
//! miningcore and nodejs-pool front-ends expect): pool stats, blocks, payments, a miner, and
//! a miner's workers. Each view is SQL over the tables through the same engine and limits as
//! `/api/v1/sql`; a table that does not exist yet reads as empty, never as an error.
//!
//! Definitions (also in the book, docs/src/reference/http-api.md):
//! - hashrate: Σ accepted share difficulty over the last 10 minutes (1 h for `hashrate_1h_hs`)
//!   of `hashrate_1m`, divided by the window's seconds;
//! - online: an accepted share in the last 10 minutes;
//! - reported hashrate of a worker: what its own machines report on `telemetry.hashrate` with
//!   the worker's name as their cluster, Σ of each machine's mean over the last 10 minutes;
//! - effort of a block: Σ accepted share difficulty after the previous block's finding share
//!   up to its own, over its network difficulty (the pool's current effort: since the last
//!   block);
//! - a payout is `pending` until its block is `confirmed` (then it counts in the confirmed
//!   balance) or `orphaned` (then it is void); balance = confirmed payouts − payments.

use std::collections::{BTreeMap, BTreeSet};

use adit_sql::Params;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Role};
use crate::error::Result;
use crate::state::AppState;
use crate::view_sql::{Page, float, int, one, rows, tables};

/// How recent a share must be for its miner or worker to count as online.
const ONLINE_MINUTES: i64 = 10;
/// A pool at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolStats {
    /// Pool id.
    pub pool: String,
    /// Effective hashrate over the last 10 minutes, H/s.
    pub hashrate_hs: f64,
    /// Effective hashrate over the last hour, H/s.
    pub hashrate_1h_hs: f64,
    /// Miners with an accepted share in the last 10 minutes.
    pub miners_online: i64,
    /// Workers with an accepted share in the last 10 minutes.
    pub workers_online: i64,
    /// Accepted shares per second over the last 10 minutes.
    pub shares_per_second: f64,
    /// Height of the newest share's job.
    pub height: Option<i64>,
    /// Network difficulty at the newest block found.
    pub network_difficulty: Option<i64>,
    /// Blocks the node accepted.
    pub blocks_found: i64,
    /// The newest block.
    pub last_block: Option<BlockView>,
    /// Σ accepted share difficulty since the last block / its network difficulty.
    pub effort: Option<f64>,
    /// Fee of the last split, basis points.
    pub fee_bps: Option<i64>,
    /// PPLNS factor of the last split (W = factor × network difficulty).
    pub pplns_factor: Option<String>,
    /// W of the last split, in share difficulty.
    pub pplns_window_difficulty: Option<f64>,
    /// Atomic units paid to miners (payments not failed).
    pub total_paid: i64,
}

/// A block the pool found, at its newest status.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockView {
    /// Height.
    pub height: i64,
    /// Hash (hex).
    pub hash: String,
    /// Miner whose share found it.
    pub miner: String,
    /// Its worker.
    pub worker: String,
    /// `submitted` (pending), `confirmed`, `orphaned`, `rejected` or `unreachable`.
    pub status: String,
    /// Reward, atomic units.
    pub reward: i64,
    /// Network difficulty.
    pub network_difficulty: i64,
    /// Blocks on top of it on the node's main chain (its depth; null without a node, and for
    /// refused or orphaned blocks).
    pub confirmations: Option<i64>,
    /// When it was found (RFC 3339).
    pub found_at: String,
    /// Shares' work since the previous block / network difficulty (when split).
    pub effort: Option<f64>,
    /// Atomic units split over miners (when split).
    pub paid: Option<i64>,
    /// Miners paid (when split).
    pub miners: Option<i64>,
}

/// One payment to one miner, at its newest status.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    /// Transaction hash.
    pub tx_hash: String,
    /// Miner paid.
    pub miner: String,
    /// Atomic units.
    pub amount: i64,
    /// Network fee of the whole transaction (paid by the pool).
    pub tx_fee: i64,
    /// `created`, `relayed`, `confirmed` or `failed`.
    pub status: String,
    /// When it was built (RFC 3339).
    pub created_at: String,
    /// A proof the miner checks with its own wallet that this transaction paid it (Monero:
    /// `check_tx_proof` with `tx_hash`, the miner's address, an empty message and this).
    pub proof: Option<String>,
}

/// One miner's part of one block.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutView {
    /// Block height.
    pub height: i64,
    /// Block hash.
    pub hash: String,
    /// Atomic units.
    pub amount: i64,
    /// `pending`, `confirmed` or `orphaned` (void).
    pub status: String,
    /// When the block was found.
    pub found_at: String,
}

/// A miner of a pool.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinerView {
    /// Pool id.
    pub pool: String,
    /// The miner (its login, a wallet address).
    pub miner: String,
    /// Effective hashrate over the last 10 minutes, H/s.
    pub hashrate_hs: f64,
    /// Effective hashrate over the last hour, H/s.
    pub hashrate_1h_hs: f64,
    /// Workers with an accepted share in the last 10 minutes.
    pub workers_online: i64,
    /// Payouts of blocks not yet confirmed.
    pub pending_balance: i64,
    /// Confirmed payouts + share credits − payments (what the next payment pays).
    pub confirmed_balance: i64,
    /// Σ of the miner's share credits (PPS and FPPS pay each share as it comes).
    pub credited: i64,
    /// Payments not failed.
    pub total_paid: i64,
    /// Newest payouts first (at most 20).
    pub recent_payouts: Vec<PayoutView>,
    /// Newest payments first (at most 20).
    pub recent_payments: Vec<PaymentView>,
}

/// A worker of a miner.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    /// Worker name.
    pub worker: String,
    /// Effective hashrate over the last 10 minutes, H/s.
    pub hashrate_hs: f64,
    /// Effective hashrate over the last hour, H/s.
    pub hashrate_1h_hs: f64,
    /// Accepted shares in the last 24 hours.
    pub accepted_24h: i64,
    /// Rejected shares in the last 24 hours.
    pub rejected_24h: i64,
    /// Newest share (RFC 3339).
    pub last_share_at: Option<String>,
    /// Hashrate the worker's own machines report (`telemetry.hashrate` samples whose cluster
    /// is this worker's name, e.g. a CoopMine coordinator), H/s: Σ over its machines of each
    /// one's mean in the last 10 minutes; null when none report.
    pub reported_hs: Option<f64>,
    /// An accepted share in the last 10 minutes.
    pub online: bool,
}

/// Hashrate over the last 10 minutes and hour of the `hashrate_1m` rows matching `filter`
/// (whose placeholders `params` binds).
async fn hashrates(
    state: &AppState,
    have: &BTreeSet<String>,
    filter: &str,
    params: &Params,
) -> Result<(f64, f64)> {
    if !have.contains("hashrate_1m") {
        return Ok((0.0, 0.0));
    }
    let row = rows(
        state,
        &format!(
            "SELECT coalesce(sum(CASE WHEN minute > now() - INTERVAL '{ONLINE_MINUTES} minutes' THEN difficulty END), 0) / {} AS h10,
                    coalesce(sum(difficulty), 0) / 3600.0 AS h60
             FROM hashrate_1m WHERE {filter} AND minute > now() - INTERVAL '60 minutes'",
            ONLINE_MINUTES * 60
        ),
        params,
    )
    .await?;
    let get = |k: &str| row.first().and_then(|r| r.get(k)).map(float).unwrap_or(0.0);
    Ok((get("h10"), get("h60")))
}

/// Σ accepted difficulty of `pool` with `lo < seq <= hi` over `network_difficulty`.
async fn effort(
    state: &AppState,
    pool: &str,
    lo: Option<i64>,
    hi: Option<i64>,
    network_difficulty: i64,
) -> Result<Option<f64>> {
    if network_difficulty <= 0 {
        return Ok(None);
    }
    let mut range = String::new();
    if let Some(lo) = lo {
        range.push_str(&format!(" AND seq > {lo}"));
    }
    if let Some(hi) = hi {
        range.push_str(&format!(" AND seq <= {hi}"));
    }
    let mut params = Params::new();
    let work = one(
        state,
        &format!(
            "SELECT coalesce(sum(difficulty), 0) AS work FROM shares WHERE pool = {} AND accepted{range}",
            params.text(pool)
        ),
        &params,
        "work",
    )
    .await?;
    Ok(Some(float(&work) / network_difficulty as f64))
}

/// Blocks of `pool` at their newest status, newest first, with split facts and effort.
async fn blocks_of(
    state: &AppState,
    have: &BTreeSet<String>,
    pool: &str,
    page: &str,
) -> Result<Vec<BlockView>> {
    if !have.contains("blocks") {
        return Ok(Vec::new());
    }
    let split = have.contains("block_rewards");
    let joined = if split {
        "LEFT JOIN block_rewards r ON r.hash = b.hash"
    } else {
        ""
    };
    let facts = if split {
        "r.paid, r.miners, r.share_seq"
    } else {
        "NULL AS paid, NULL AS miners, NULL AS share_seq"
    };
    let mut params = Params::new();
    let sql = format!(
        "WITH latest AS (
           SELECT *, row_number() OVER (PARTITION BY hash ORDER BY seq DESC) AS n
           FROM blocks WHERE pool = {p}),
         found AS (
           SELECT hash, min(ts) AS first_ts FROM blocks WHERE pool = {p} GROUP BY hash)
         SELECT b.height, b.hash, b.miner, b.worker, b.status, b.reward, b.network_difficulty,
                to_char(f.first_ts, '%Y-%m-%dT%H:%M:%S%.3fZ') AS found_at, {facts}
         FROM latest b JOIN found f ON f.hash = b.hash {joined}
         WHERE b.n = 1 ORDER BY f.first_ts DESC, b.height DESC {page}",
        p = params.text(pool)
    );
    let mut out = Vec::new();
    let listed = rows(state, &sql, &params).await?;
    let top = match (&state.node, listed.is_empty()) {
        (Some(node), false) => node.top().await,
        _ => None,
    };
    // Effort needs the previous split's finding share: the split blocks by share sequence.
    let previous = if split {
        rows(
            state,
            "SELECT hash, lag(share_seq) OVER (ORDER BY share_seq) AS prev FROM block_rewards WHERE pool = $1",
            &params,
        )
        .await?
    } else {
        Vec::new()
    };
    for r in listed {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let opt = |k: &str| r.get(k).filter(|v| !v.is_null()).map(int);
        let (hash, nd) = (text("hash"), opt("network_difficulty").unwrap_or(0));
        let effort = match opt("share_seq") {
            Some(hi) if have.contains("shares") => {
                let lo = previous
                    .iter()
                    .find(|p| p.get("hash").and_then(Value::as_str) == Some(hash.as_str()))
                    .and_then(|p| p.get("prev"))
                    .filter(|v| !v.is_null())
                    .map(int);
                effort(state, pool, lo, Some(hi), nd).await?
            }
            _ => None,
        };
        let (height, status) = (opt("height").unwrap_or(0), text("status"));
        let on_chain = matches!(status.as_str(), "submitted" | "confirmed");
        out.push(BlockView {
            confirmations: top
                .filter(|_| on_chain)
                .map(|t| t.saturating_sub(height).max(0)),
            height,
            miner: text("miner"),
            worker: text("worker"),
            status,
            reward: opt("reward").unwrap_or(0),
            network_difficulty: nd,
            found_at: text("found_at"),
            effort,
            paid: opt("paid"),
            miners: opt("miners"),
            hash,
        });
    }
    Ok(out)
}

/// Payments of `pool` (of `miner` when given) at their newest status, newest first.
async fn payments_of(
    state: &AppState,
    have: &BTreeSet<String>,
    pool: &str,
    miner: Option<&str>,
    page: &str,
) -> Result<Vec<PaymentView>> {
    if !have.contains("payments") {
        return Ok(Vec::new());
    }
    let mut params = Params::new();
    let p = params.text(pool);
    let who = miner.map_or(String::new(), |m| {
        format!(" AND miner = {}", params.text(m))
    });
    // A table no payer of this version has opened yet has no proofs.
    let proof = if state.engine.catalog().has_column("payments", "proof").await? {
        "max(proof) OVER (PARTITION BY tx_hash, miner)"
    } else {
        "CAST(NULL AS VARCHAR)"
    };
    let sql = format!(
        "WITH latest AS (
           SELECT tx_hash, miner, amount, tx_fee, status, ts,
                  row_number() OVER (PARTITION BY tx_hash, miner ORDER BY
                    CASE status WHEN 'created' THEN 0 WHEN 'relayed' THEN 1 ELSE 2 END DESC, ts DESC) AS n,
                  min(ts) OVER (PARTITION BY tx_hash, miner) AS created,
                  {proof} AS proof
           FROM payments WHERE pool = {p}{who})
         SELECT tx_hash, miner, amount, tx_fee, status, proof,
                to_char(created, '%Y-%m-%dT%H:%M:%S%.3fZ') AS created_at
         FROM latest WHERE n = 1 ORDER BY created DESC, miner {page}"
    );
    Ok(rows(state, &sql, &params)
        .await?
        .into_iter()
        .map(|r| {
            let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            PaymentView {
                tx_hash: text("tx_hash"),
                miner: text("miner"),
                amount: r.get("amount").map(int).unwrap_or(0),
                tx_fee: r.get("tx_fee").map(int).unwrap_or(0),
                status: text("status"),
                created_at: text("created_at"),
                proof: r.get("proof").and_then(Value::as_str).map(String::from),
            }
        })
        .collect())
}

/// The pool views, for readers.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(
        Role::Read,
        OpenApiRouter::new()
            .routes(routes!(pool_stats))
            .routes(routes!(pool_blocks))
            .routes(routes!(pool_payments))
            .routes(routes!(miner))
            .routes(routes!(workers)),
    )
}

/// Pool stats.
#[utoipa::path(get, path = "/api/v1/pools/{pool}", tag = "pool",
    params(("pool" = String, Path, description = "Pool id")),
    responses((status = 200, body = PoolStats), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn pool_stats(
    State(state): State<AppState>,
    Path(pool): Path<String>,
) -> Result<Json<PoolStats>> {
    let have = tables(&state).await?;
    // Every statement below names the pool, and only the pool, as `p`.
    let mut params = Params::new();
    let p = params.text(&pool);
    let (hashrate_hs, hashrate_1h_hs) =
        hashrates(&state, &have, &format!("pool = {p}"), &params).await?;
    let mut stats = PoolStats {
        pool: pool.clone(),
        hashrate_hs,
        hashrate_1h_hs,
        miners_online: 0,
        workers_online: 0,
        shares_per_second: 0.0,
        height: None,
        network_difficulty: None,
        blocks_found: 0,
        last_block: None,
        effort: None,
        fee_bps: None,
        pplns_factor: None,
        pplns_window_difficulty: None,
        total_paid: 0,
    };
    if have.contains("shares") {
        let r = rows(
            &state,
            &format!(
                "SELECT count(DISTINCT miner) AS miners, count(DISTINCT miner || '.' || worker) AS workers,
                        count(*) AS shares, max(height) AS height
                 FROM shares WHERE pool = {p} AND accepted AND ts > now() - INTERVAL '{ONLINE_MINUTES} minutes'"
            ),
            &params,
        )
        .await?;
        if let Some(r) = r.first() {
            stats.miners_online = r.get("miners").map(int).unwrap_or(0);
            stats.workers_online = r.get("workers").map(int).unwrap_or(0);
            stats.shares_per_second =
                r.get("shares").map(float).unwrap_or(0.0) / (ONLINE_MINUTES * 60) as f64;
        }
        let height = one(
            &state,
            &format!("SELECT max(height) AS h FROM shares WHERE pool = {p}"),
            &params,
            "h",
        )
        .await?;
        stats.height = (!height.is_null()).then(|| int(&height));
    }
    if have.contains("blocks") {
        stats.blocks_found = int(&one(
            &state,
            &format!(
                "SELECT count(DISTINCT hash) AS n FROM blocks WHERE pool = {p} AND status NOT IN ('rejected', 'unreachable')"
            ),
            &params,
            "n",
        )
        .await?);
        stats.last_block = blocks_of(&state, &have, &pool, "LIMIT 1")
            .await?
            .into_iter()
            .next();
        stats.network_difficulty = stats.last_block.as_ref().map(|b| b.network_difficulty);
    }
    if have.contains("block_rewards") {
        let last = rows(
            &state,
            &format!(
                "SELECT share_seq, network_difficulty, fee_bps, factor, window_difficulty
                 FROM block_rewards WHERE pool = {p} ORDER BY share_seq DESC LIMIT 1"
            ),
            &params,
        )
        .await?;
        if let Some(r) = last.first() {
            stats.fee_bps = r.get("fee_bps").map(int);
            stats.pplns_factor = r.get("factor").and_then(Value::as_str).map(String::from);
            stats.pplns_window_difficulty = r.get("window_difficulty").map(float);
            if have.contains("shares") {
                let nd = r.get("network_difficulty").map(int).unwrap_or(0);
                let lo = r.get("share_seq").map(int);
                stats.effort = effort(&state, &pool, lo, None, nd).await?;
            }
        }
    }
    if have.contains("payments") {
        stats.total_paid = int(&one(
            &state,
            &format!(
                "SELECT coalesce(sum(CASE WHEN status = 'created' THEN amount WHEN status = 'failed' THEN -amount ELSE 0 END), 0) AS paid
                 FROM payments WHERE pool = {p}"
            ),
            &params,
            "paid",
        )
        .await?);
    }
    Ok(Json(stats))
}

/// Blocks found, newest first.
#[utoipa::path(get, path = "/api/v1/pools/{pool}/blocks", tag = "pool",
    params(("pool" = String, Path, description = "Pool id"), Page),
    responses((status = 200, body = [BlockView]), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn pool_blocks(
    State(state): State<AppState>,
    Path(pool): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<BlockView>>> {
    let page = Page::parse(&query)?;
    let have = tables(&state).await?;
    Ok(Json(blocks_of(&state, &have, &pool, &page.sql()).await?))
}

/// Payments, newest first.
#[utoipa::path(get, path = "/api/v1/pools/{pool}/payments", tag = "pool",
    params(("pool" = String, Path, description = "Pool id"), Page),
    responses((status = 200, body = [PaymentView]), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn pool_payments(
    State(state): State<AppState>,
    Path(pool): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<PaymentView>>> {
    let page = Page::parse(&query)?;
    let have = tables(&state).await?;
    Ok(Json(
        payments_of(&state, &have, &pool, None, &page.sql()).await?,
    ))
}

/// A miner: hashrate, balances, recent payouts and payments.
#[utoipa::path(get, path = "/api/v1/pools/{pool}/miners/{miner}", tag = "pool",
    params(("pool" = String, Path, description = "Pool id"),
           ("miner" = String, Path, description = "The miner's login (wallet address)")),
    responses((status = 200, body = MinerView), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn miner(
    State(state): State<AppState>,
    Path((pool, miner)): Path<(String, String)>,
) -> Result<Json<MinerView>> {
    let have = tables(&state).await?;
    // Every statement below names the pool and the miner, and only them, as `p` and `m`.
    let mut params = Params::new();
    let (p, m) = (params.text(&pool), params.text(&miner));
    let (hashrate_hs, hashrate_1h_hs) = hashrates(
        &state,
        &have,
        &format!("pool = {p} AND miner = {m}"),
        &params,
    )
    .await?;
    let mut view = MinerView {
        pool: pool.clone(),
        miner: miner.clone(),
        hashrate_hs,
        hashrate_1h_hs,
        workers_online: 0,
        pending_balance: 0,
        confirmed_balance: 0,
        credited: 0,
        total_paid: 0,
        recent_payouts: Vec::new(),
        recent_payments: payments_of(&state, &have, &pool, Some(&miner), "LIMIT 20").await?,
    };
    if have.contains("shares") {
        view.workers_online = int(&one(
            &state,
            &format!(
                "SELECT count(DISTINCT worker) AS n FROM shares WHERE pool = {p} AND miner = {m}
                 AND accepted AND ts > now() - INTERVAL '{ONLINE_MINUTES} minutes'"
            ),
            &params,
            "n",
        )
        .await?);
    }
    if have.contains("payouts") && have.contains("blocks") {
        let payouts = rows(
            &state,
            &format!(
                "WITH status AS (
                   SELECT hash, CASE WHEN bool_or(status = 'orphaned') THEN 'orphaned'
                                     WHEN bool_or(status = 'confirmed') THEN 'confirmed'
                                     ELSE 'pending' END AS status
                   FROM blocks WHERE pool = {p} GROUP BY hash)
                 SELECT o.height, o.hash, o.amount, coalesce(s.status, 'pending') AS status,
                        to_char(o.ts, '%Y-%m-%dT%H:%M:%S%.3fZ') AS found_at
                 FROM payouts o LEFT JOIN status s ON s.hash = o.hash
                 WHERE o.pool = {p} AND o.miner = {m} ORDER BY o.ts DESC, o.height DESC"
            ),
            &params,
        )
        .await?;
        for r in &payouts {
            let amount = r.get("amount").map(int).unwrap_or(0);
            let status = r.get("status").and_then(Value::as_str).unwrap_or("pending");
            match status {
                "confirmed" => view.confirmed_balance += amount,
                "pending" => view.pending_balance += amount,
                _ => {}
            }
        }
        view.recent_payouts = payouts
            .into_iter()
            .take(20)
            .map(|r| {
                let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                PayoutView {
                    height: r.get("height").map(int).unwrap_or(0),
                    hash: text("hash"),
                    amount: r.get("amount").map(int).unwrap_or(0),
                    status: text("status"),
                    found_at: text("found_at"),
                }
            })
            .collect();
    }
    if have.contains("share_credits") {
        view.credited = int(&one(
            &state,
            &format!(
                "SELECT coalesce(sum(amount), 0) AS credited FROM share_credits
                 WHERE pool = {p} AND miner = {m}"
            ),
            &params,
            "credited",
        )
        .await?);
        view.confirmed_balance += view.credited;
    }
    if have.contains("payments") {
        view.total_paid = int(&one(
            &state,
            &format!(
                "SELECT coalesce(sum(CASE WHEN status = 'created' THEN amount WHEN status = 'failed' THEN -amount ELSE 0 END), 0) AS paid
                 FROM payments WHERE pool = {p} AND miner = {m}"
            ),
            &params,
            "paid",
        )
        .await?);
        view.confirmed_balance -= view.total_paid;
    }
    Ok(Json(view))
}

/// A miner's workers.
#[utoipa::path(get, path = "/api/v1/pools/{pool}/miners/{miner}/workers", tag = "pool",
    params(("pool" = String, Path, description = "Pool id"),
           ("miner" = String, Path, description = "The miner's login (wallet address)")),
    responses((status = 200, body = [WorkerView]), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn workers(
    State(state): State<AppState>,
    Path((pool, miner)): Path<(String, String)>,
) -> Result<Json<Vec<WorkerView>>> {
    let have = tables(&state).await?;
    if !have.contains("shares") {
        return Ok(Json(Vec::new()));
    }
    let mut params = Params::new();
    let (p, m) = (params.text(&pool), params.text(&miner));
    let listed = rows(
        &state,
        &format!(
            "SELECT worker,
                    sum(CASE WHEN accepted THEN 1 ELSE 0 END) AS accepted,
                    sum(CASE WHEN accepted THEN 0 ELSE 1 END) AS rejected,
                    max(ts) AS last,
                    to_char(max(ts), '%Y-%m-%dT%H:%M:%S%.3fZ') AS last_share_at,
                    bool_or(accepted AND ts > now() - INTERVAL '{ONLINE_MINUTES} minutes') AS online
             FROM shares WHERE pool = {p} AND miner = {m} AND ts > now() - INTERVAL '24 hours'
             GROUP BY worker ORDER BY worker"
        ),
        &params,
    )
    .await?;
    let mut out = Vec::new();
    for r in listed {
        let worker = r
            .get("worker")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut with_worker = params.clone();
        let w = with_worker.text(&worker);
        let (hashrate_hs, hashrate_1h_hs) = hashrates(
            &state,
            &have,
            &format!("pool = {p} AND miner = {m} AND worker = {w}"),
            &with_worker,
        )
        .await?;
        let reported_hs = if have.contains("hashrate_samples") {
            let mut cluster = Params::new();
            let c = cluster.text(&worker);
            let v = one(
                &state,
                &format!(
                    "SELECT sum(h) AS reported FROM (
                       SELECT worker, avg(hashrate_hs) AS h FROM hashrate_samples
                       WHERE cluster = {c} AND ts > now() - INTERVAL '{ONLINE_MINUTES} minutes'
                       GROUP BY worker)"
                ),
                &cluster,
                "reported",
            )
            .await?;
            v.as_f64()
        } else {
            None
        };
        out.push(WorkerView {
            reported_hs,
            hashrate_hs,
            hashrate_1h_hs,
            accepted_24h: r.get("accepted").map(int).unwrap_or(0),
            rejected_24h: r.get("rejected").map(int).unwrap_or(0),
            last_share_at: r
                .get("last_share_at")
                .and_then(Value::as_str)
                .map(String::from),
            online: r.get("online").and_then(Value::as_bool).unwrap_or(false),
            worker,
        });
    }
    Ok(Json(out))
}
