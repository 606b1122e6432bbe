//! Teams and their competitions (issue 61). A miner joins a team by naming it at login
//! (`team=NAME` in XMRig's `pass`); each share carries its session's team, so a session only
//! ever counts its own work, and no one can move another's shares to a team. Open to anyone,
//! each request taking one of the public slots (a flood is answered 429):
//!
//! - `GET /api/v1/public/pools/{pool}/teams?window=`: the teams ranked by accepted work over
//!   the last hour, day or week — rank, team, miners, shares, work and hashrate.
//! - `GET /api/v1/public/pools/{pool}/competitions`: the pool's competitions, newest first,
//!   each with its state (`upcoming`, `running`, `ended`) and its standings — the teams ranked
//!   by accepted work between its start and its end.
//!
//! An operator sets a competition with `POST /api/v1/pools/{pool}/competitions`; it lands in
//! `competitions` with the token that set it. Teams are ranked by work (Σ accepted share
//! difficulty): the hashes done, which neither a lucky block nor the share difficulty a miner
//! picks can inflate. Miners appear only as a count: the public page names no login.

use std::collections::BTreeMap;

use adit_schemas::Competition;
use adit_sql::Params;
use adit_sql::admission::Slot;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller, Role};
use crate::error::{QueryError, Result};
use crate::publish::{body, publish};
use crate::routes::standings::{count, only, window_seconds};
use crate::view_sql::{rows, tables};
use crate::state::AppState;

/// Most teams a ranking lists.
const MAX_TEAMS: i64 = 100;
/// Most competitions listed (newest first).
const MAX_COMPETITIONS: usize = 20;
/// Teams listed in each competition's standings.
const STANDINGS: i64 = 10;

pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(teams))
        .routes(routes!(competitions))
        .merge(access.at(
            Role::Operate,
            OpenApiRouter::new().routes(routes!(set_competition)),
        ))
}

/// A pool id from the path: a token, else a 400 (it goes into SQL only as a parameter).
fn pool_id(pool: &str) -> Result<()> {
    if adit_schemas::names::is_token(pool) {
        Ok(())
    } else {
        Err(QueryError::InvalidField {
            field: "pool".into(),
            reason: "1-64 of A-Z a-z 0-9 _ -".into(),
        })
    }
}

/// The teams ranked by accepted work in `[from_us, to_us)`: rank, team, miners, shares, work
/// and hashrate (work over `seconds`), at most `limit`.
async fn ranked(
    state: &AppState,
    pool: &str,
    (from_us, to_us): (i64, i64),
    seconds: f64,
    limit: i64,
) -> Result<Vec<Map<String, Value>>> {
    let mut params = Params::new();
    let sql = format!(
        "WITH t AS (SELECT team, count(DISTINCT miner) AS miners, count(*) AS shares, \
                      CAST(sum(difficulty) AS BIGINT) AS work \
                    FROM shares WHERE pool = {} AND accepted AND team IS NOT NULL \
                      AND ts >= to_timestamp_micros({from_us}) \
                      AND ts < to_timestamp_micros({to_us}) GROUP BY team) \
         SELECT CAST(row_number() OVER (ORDER BY work DESC, team) AS BIGINT) AS rank, \
           team, miners, shares, work, work / {seconds:.3} AS hashrate_hs \
         FROM t ORDER BY rank LIMIT {limit}",
        params.text(pool)
    );
    rows(state, &sql, &params).await
}

/// The pool's teams ranked by accepted work over `window` (`1h`, `24h` — the default — or
/// `7d`): rank, team, miners, shares, work and hashrate (H/s).
#[utoipa::path(get, path = "/api/v1/public/pools/{pool}/teams", tag = "pool",
    params(("pool" = String, Path), ("window" = Option<String>, Query, description = "1h, 24h or 7d"),
           ("limit" = Option<usize>, Query, description = "1 to 100, default 20")),
    responses((status = 200, description = "[{rank, team, miners, shares, work, hashrate_hs}]"),
              (status = 400), (status = 429, description = "The public slots are all taken")))]
pub async fn teams(
    State(state): State<AppState>,
    Path(pool): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>> {
    pool_id(&pool)?;
    only(&query, &["window", "limit"])?;
    let seconds = window_seconds(&query)?;
    let limit = count(&query, "limit", 20, MAX_TEAMS)?;
    let _slot = state.admission.admit(Slot::Public).await?;
    if !tables(&state).await?.contains("shares") {
        return Ok(Json(Vec::new()));
    }
    let now = Utc::now().timestamp_micros();
    let span = (now - seconds * 1_000_000, now + 1);
    Ok(Json(
        ranked(&state, &pool, span, seconds as f64, limit).await?,
    ))
}

/// The pool's competitions, newest first (at most 20): id, name, starts, ends, state
/// (`upcoming`, `running`, `ended`) and standings (the first 10 teams by work between its start
/// and its end or now; hashrate over the time it has run).
#[utoipa::path(get, path = "/api/v1/public/pools/{pool}/competitions", tag = "pool",
    params(("pool" = String, Path)),
    responses((status = 200, description = "[{id, name, starts, ends, state, standings: [{rank, team, miners, shares, work, hashrate_hs}]}]"),
              (status = 400), (status = 429, description = "The public slots are all taken")))]
pub async fn competitions(
    State(state): State<AppState>,
    Path(pool): Path<String>,
) -> Result<Json<Vec<Value>>> {
    pool_id(&pool)?;
    let _slot = state.admission.admit(Slot::Public).await?;
    let have = tables(&state).await?;
    if !have.contains("competitions") {
        return Ok(Json(Vec::new()));
    }
    let mut params = Params::new();
    let sql = format!(
        "SELECT id, name, CAST(starts AS BIGINT) AS starts_us, CAST(ends AS BIGINT) AS ends_us \
         FROM competitions WHERE pool = {} ORDER BY starts DESC, id LIMIT {MAX_COMPETITIONS}",
        params.text(&pool)
    );
    let now = Utc::now().timestamp_micros();
    let mut out = Vec::new();
    for c in rows(&state, &sql, &params).await? {
        let us = |key: &str| c.get(key).and_then(Value::as_i64).unwrap_or_default();
        let (starts, ends) = (us("starts_us"), us("ends_us"));
        let state_name = match (now < starts, now < ends) {
            (true, _) => "upcoming",
            (false, true) => "running",
            (false, false) => "ended",
        };
        let until = ends.min(now);
        let standings = if until > starts && have.contains("shares") {
            let seconds = (until - starts) as f64 / 1e6;
            ranked(&state, &pool, (starts, until), seconds, STANDINGS).await?
        } else {
            Vec::new()
        };
        let time = |us: i64| DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339());
        out.push(json!({
            "id": c.get("id"),
            "name": c.get("name"),
            "starts": time(starts),
            "ends": time(ends),
            "state": state_name,
            "standings": standings,
        }));
    }
    Ok(Json(out))
}

/// A competition to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCompetition {
    /// Its id, unique within the pool (1-64 of A-Z a-z 0-9 _ -).
    pub id: String,
    /// Its name, as the public page shows it (at most 120 bytes).
    pub name: String,
    /// When shares start to count (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub starts: DateTime<Utc>,
    /// When they stop (RFC 3339; at most 366 days after `starts`).
    #[schema(value_type = String, format = DateTime)]
    pub ends: DateTime<Utc>,
}

/// Sets a competition between the pool's teams (operate); a 409 when the pool has one of
/// that id already.
#[utoipa::path(post, path = "/api/v1/pools/{pool}/competitions", tag = "pool",
    params(("pool" = String, Path)),
    request_body = NewCompetition,
    responses((status = 201, description = "{\"id\"}: set"),
              (status = 400, description = "A field refused"), (status = 401), (status = 403),
              (status = 409, description = "The pool has a competition of that id")),
    security(("bearer" = [])))]
pub async fn set_competition(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pool): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    pool_id(&pool)?;
    let new: NewCompetition = body(&bytes)?;
    let competition = Competition {
        id: new.id,
        pool,
        name: new.name,
        starts: new.starts,
        ends: new.ends,
        by: caller.name,
        ts: Utc::now(),
    };
    if tables(&state).await?.contains("competitions") {
        let mut params = Params::new();
        let sql = format!(
            "SELECT count(*) AS n FROM competitions WHERE pool = {} AND id = {}",
            params.text(&competition.pool),
            params.text(&competition.id)
        );
        let taken = rows(&state, &sql, &params).await?;
        if taken
            .first()
            .and_then(|r| r.get("n"))
            .and_then(Value::as_i64)
            > Some(0)
        {
            return Err(QueryError::Conflict(format!(
                "pool {:?} has a competition {:?} already",
                competition.pool, competition.id
            )));
        }
    }
    let id = competition.id.clone();
    publish(&state, competition, "setting a competition").await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}
