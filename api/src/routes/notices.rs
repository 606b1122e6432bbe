//! A miner's worker-down notices (issue 59): `PUT` asks to be told, by email or webhook, when
//! one of its workers goes quiet (see [`adit_alerts::notify::workers`]), or stops the notices
//! (`enabled: false`). Open without a token, as a miner has none: the request is signed by the
//! address's own wallet (Monero's `sign`), over the text [`signed_text`] makes, within
//! [`FRESH`] of `signed_at` and after the miner's last request taken (so none is replayed),
//! and checked with the pool's wallet RPC (`verify`). No one can subscribe, or stop, another
//! miner's notices, and the answer names only what was signed.

use adit_alerts::notify::workers::{FACTORS, Subscription, validate_contact};
use adit_sql::admission::Slot;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Access;
use crate::error::{QueryError, Result};
use crate::state::AppState;

/// How far `signed_at` may be from now.
pub const FRESH: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// Longest login accepted.
const MAX_MINER: usize = 256;

/// Open without a token: the request is signed.
pub(crate) fn routes(_access: &Access) -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_notices))
}

/// A miner's request, signed by its wallet.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeRequest {
    /// Tell (true, the default) or stop telling.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where to mail.
    pub email: Option<String>,
    /// Where to post (JSON).
    pub webhook: Option<String>,
    /// Silence, in the worker's own mean share intervals, that is down (3 to 100; the pool's
    /// default when absent).
    pub factor: Option<u32>,
    /// When it was signed (RFC 3339); within 10 minutes of now.
    pub signed_at: String,
    /// The wallet's signature (`sign`) over the signed text.
    pub signature: String,
}

fn yes() -> bool {
    true
}

/// What is now in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeState {
    /// The pool.
    pub pool: String,
    /// The miner.
    pub miner: String,
    /// Whether notices are sent.
    pub enabled: bool,
    /// Where to mail.
    pub email: Option<String>,
    /// Where to post.
    pub webhook: Option<String>,
    /// The factor chosen.
    pub factor: Option<u32>,
}

/// The text a miner's wallet signs: every field of the request, one per line, in this order.
pub fn signed_text(pool: &str, miner: &str, r: &NoticeRequest) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    format!(
        "adit worker notices\npool: {pool}\nminer: {miner}\nenabled: {}\nemail: {}\nwebhook: {}\nfactor: {}\nsigned_at: {}",
        r.enabled,
        opt(&r.email),
        opt(&r.webhook),
        r.factor.map(|f| f.to_string()).unwrap_or_default(),
        r.signed_at
    )
}

/// Ask for (or stop) worker-down notices for one's own address.
#[utoipa::path(put, path = "/api/v1/public/pools/{pool}/miners/{miner}/notices", tag = "proofs",
    params(("pool" = String, Path, description = "Pool id"),
           ("miner" = String, Path, description = "The miner's login (wallet address)")),
    request_body = NoticeRequest,
    responses((status = 200, body = NoticeState), (status = 400), (status = 403, description = "Not signed by the address's wallet, or signed too long ago"),
              (status = 503, description = "No wallet to check signatures, or no NATS")))]
pub async fn put_notices(
    State(state): State<AppState>,
    Path((pool, miner)): Path<(String, String)>,
    Json(request): Json<NoticeRequest>,
) -> Result<Json<NoticeState>> {
    let bad = |field: &str, reason: String| QueryError::InvalidField {
        field: field.into(),
        reason,
    };
    if !adit_schemas::names::is_token(&pool) {
        return Err(bad("pool", "1-64 of A-Z a-z 0-9 _ -".into()));
    }
    if miner.is_empty() || miner.len() > MAX_MINER || miner.chars().any(char::is_control) {
        return Err(bad("miner", format!("1 to {MAX_MINER} printable characters")));
    }
    if request.signature.len() > 512 || request.signed_at.len() > 64 {
        return Err(bad("signature", "too long".into()));
    }
    if request.enabled {
        validate_contact(request.email.as_deref(), request.webhook.as_deref())
            .map_err(|e| bad("email", e))?;
        if let Some(f) = request.factor
            && !FACTORS.contains(&f)
        {
            return Err(bad("factor", format!("{f} must be 3 to 100")));
        }
    }
    let signed_at = DateTime::parse_from_rfc3339(&request.signed_at)
        .map_err(|e| bad("signed_at", format!("not an RFC 3339 time: {e}")))?
        .with_timezone(&Utc);
    if (Utc::now() - signed_at).abs() > FRESH {
        return Err(QueryError::BadSignature(
            "signed_at is more than 10 minutes from now: sign the request again".into(),
        ));
    }
    // Open to anyone: checking a signature takes a public slot, so a flood is answered 429.
    let _slot = state.admission.admit(Slot::Public).await?;
    let (Some(wallet), Some(store)) = (&state.signatures, &state.notices) else {
        return Err(QueryError::Unavailable(
            "this pool has no wallet to check a miner's signature".into(),
        ));
    };
    verify(wallet, &miner, &signed_text(&pool, &miner, &request), &request.signature).await?;
    let unavailable = |e: adit_alerts::AlertsError| QueryError::Unavailable(e.to_string());
    // Only a request signed after the last one taken: a replay of a signed request (or an
    // older one sent late) changes nothing.
    if !store
        .claim_signed(&pool, &miner, signed_at)
        .await
        .map_err(unavailable)?
    {
        return Err(QueryError::BadSignature(
            "a request signed at this time or later was taken already: sign a new one".into(),
        ));
    }
    if request.enabled {
        store
            .put(&Subscription {
                pool: pool.clone(),
                miner: miner.clone(),
                email: request.email.clone(),
                webhook: request.webhook.clone(),
                factor: request.factor,
                since: Utc::now(),
            })
            .await
            .map_err(unavailable)?;
    } else {
        store.delete(&pool, &miner).await.map_err(unavailable)?;
    }
    Ok(Json(NoticeState {
        pool,
        miner,
        enabled: request.enabled,
        email: request.email.filter(|_| request.enabled),
        webhook: request.webhook.filter(|_| request.enabled),
        factor: request.factor.filter(|_| request.enabled),
    }))
}

/// Whether `address`'s wallet signed `text` (`verify` on the pool's wallet RPC).
async fn verify(wallet: &str, address: &str, text: &str, signature: &str) -> Result<()> {
    let url = format!("{}/json_rpc", wallet.trim_end_matches('/'));
    let body = json!({"jsonrpc": "2.0", "id": "0", "method": "verify",
                      "params": {"data": text, "address": address, "signature": signature}});
    let unavailable = |e: reqwest::Error| {
        QueryError::Unavailable(format!("the wallet that checks signatures: {e}"))
    };
    let reply: serde_json::Value = reqwest::Client::new()
        .post(url)
        .timeout(std::time::Duration::from_secs(10))
        .json(&body)
        .send()
        .await
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)?;
    if reply["result"]["good"] == true {
        return Ok(());
    }
    Err(QueryError::BadSignature(
        "the signature is not this address's wallet's over the request's text".into(),
    ))
}
