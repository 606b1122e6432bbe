//! Worker-down notices (issue 59): a miner asks, for its own address, to be told when one of
//! its workers goes quiet, by email or webhook; the `notify` role checks every `check_every`.
//!
//! Quiet is judged per worker, not by one threshold for all: a worker's expected share interval
//! is the mean gap between its accepted shares over the last `lookback` (what vardiff steers
//! toward, measured), and it is down when nothing came for `factor` (the miner's, else the
//! config's) times that, and at least `min_silence`. A slow worker sends rarely and is expected
//! to; a fast one that stops is seen within minutes. A worker with fewer than `min_shares`
//! shares in the lookback says nothing about its rate and is never judged.
//!
//! One message per address per check, listing only that address's workers newly down; a worker
//! is told once until it sends again, kept in the bucket (`notice-told.<pool>.<miner id>`) so a
//! restart does not tell again. Subscriptions are kept in the `adit_channels` bucket
//! (`notice.<pool>.<miner id>`), written by the API only for a request the address's own
//! wallet signed, so no one subscribes, or learns of, another miner's workers; each miner's
//! newest `signed_at` taken is kept beside it (`notice-signed.<pool>.<miner id>`), and a
//! request signed no later is refused, so a signed request cannot be replayed. Every attempt is
//! recorded on `results.notification.miners` (landed in `notifications`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use adit_bus::Publisher;
use adit_schemas::AnyEvent;
use adit_schemas::alerts::NotificationAttempt;
use adit_schemas::window::miner_id;
use adit_sql::{Params, SqlEngine};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::channels::{self, Outgoing};
use super::config::Channel;
pub use super::config::{FACTORS, WorkerNotices};
use crate::error::{AlertsError, Result};

/// The key prefix of subscriptions in the channels bucket.
pub const NOTICE_PREFIX: &str = "notice.";
/// The key prefix of the newest `signed_at` taken per miner: a request signed no later is a
/// replay, refused.
const SIGNED_PREFIX: &str = "notice-signed.";
/// The key prefix of the workers a miner was told of and that have not sent since, so a
/// restart does not tell again.
const TOLD_PREFIX: &str = "notice-told.";
/// The receiver name notices are recorded under.
pub const RECEIVER: &str = "miners";
/// One miner's request to be told of its workers going quiet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The pool.
    pub pool: String,
    /// The miner's login (its address).
    pub miner: String,
    /// Where to mail.
    pub email: Option<String>,
    /// Where to post.
    pub webhook: Option<String>,
    /// Its factor, when it chose one.
    pub factor: Option<u32>,
    /// When it was asked for.
    pub since: DateTime<Utc>,
}

impl Subscription {
    /// Its key in the bucket: the miner by id, so no login reaches a key.
    fn key(pool: &str, miner: &str) -> String {
        keyed(NOTICE_PREFIX, pool, miner)
    }
}

/// `prefix` + the pool + the miner by id.
fn keyed(prefix: &str, pool: &str, miner: &str) -> String {
    format!("{prefix}{pool}.{}", miner_id(pool, miner))
}

/// The subscriptions in the channels bucket.
#[derive(Clone)]
pub struct Subscriptions {
    kv: kv::Store,
}

impl Subscriptions {
    /// Opens the bucket.
    pub async fn open(js: &jetstream::Context) -> Result<Self> {
        Ok(Self {
            kv: super::channels_bucket(js).await?,
        })
    }

    /// Stores `s`, replacing the miner's earlier one.
    pub async fn put(&self, s: &Subscription) -> Result<()> {
        let bytes = serde_json::to_vec(s).map_err(AlertsError::kv)?;
        self.kv
            .put(Subscription::key(&s.pool, &s.miner), bytes.into())
            .await
            .map_err(AlertsError::kv)?;
        Ok(())
    }

    /// Removes the miner's subscription; false when there was none. What it was told is
    /// kept: a worker told of is not told again, after a new subscription either, until it
    /// sends again.
    pub async fn delete(&self, pool: &str, miner: &str) -> Result<bool> {
        let key = Subscription::key(pool, miner);
        if self.kv.get(&key).await.map_err(AlertsError::kv)?.is_none() {
            return Ok(false);
        }
        self.kv.delete(&key).await.map_err(AlertsError::kv)?;
        Ok(true)
    }

    /// Whether `sub`'s miner is still subscribed (it may have opted out since the list).
    async fn still(&self, sub: &Subscription) -> Result<bool> {
        let key = Subscription::key(&sub.pool, &sub.miner);
        Ok(self.kv.get(&key).await.map_err(AlertsError::kv)?.is_some())
    }

    /// Takes `signed_at` as the miner's newest signed request: false when one signed at the
    /// same time or later was taken already (a replay, or a stale request). Compare-and-set on
    /// the key's revision, so of two racing requests only one is taken.
    pub async fn claim_signed(
        &self,
        pool: &str,
        miner: &str,
        signed_at: DateTime<Utc>,
    ) -> Result<bool> {
        let key = keyed(SIGNED_PREFIX, pool, miner);
        let value = signed_at.to_rfc3339().into_bytes();
        let entry = self.kv.entry(key.as_str()).await.map_err(AlertsError::kv)?;
        let taken = match entry {
            None => self.kv.create(&key, value.into()).await.is_ok(),
            Some(entry) => {
                let last = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                if last.is_some_and(|last| signed_at <= last) {
                    return Ok(false);
                }
                self.kv
                    .update(&key, value.into(), entry.revision)
                    .await
                    .is_ok()
            }
        };
        Ok(taken)
    }

    /// The workers of `sub` it was told of that have not sent since.
    async fn told(&self, sub: &Subscription) -> Result<BTreeSet<String>> {
        let key = keyed(TOLD_PREFIX, &sub.pool, &sub.miner);
        Ok(match self.kv.get(&key).await.map_err(AlertsError::kv)? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => BTreeSet::new(),
        })
    }

    /// Keeps `told` for `sub`.
    async fn set_told(&self, sub: &Subscription, told: &BTreeSet<String>) -> Result<()> {
        let bytes = serde_json::to_vec(told).map_err(AlertsError::kv)?;
        self.kv
            .put(keyed(TOLD_PREFIX, &sub.pool, &sub.miner), bytes.into())
            .await
            .map_err(AlertsError::kv)?;
        Ok(())
    }

    /// Every subscription; one that no longer parses is skipped with a warning.
    pub async fn all(&self) -> Result<Vec<Subscription>> {
        let mut keys = self.kv.keys().await.map_err(AlertsError::kv)?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(AlertsError::kv)?;
            if !key.starts_with(NOTICE_PREFIX) {
                continue;
            }
            let Some(bytes) = self.kv.get(&key).await.map_err(AlertsError::kv)? else {
                continue;
            };
            match serde_json::from_slice(&bytes) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "a worker-notice subscription does not parse; skipped")
                }
            }
        }
        Ok(out)
    }
}

/// A worker's accepted shares in the lookback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recent {
    /// How many.
    pub shares: u64,
    /// The first one's time, Unix seconds.
    pub first: f64,
    /// The last one's.
    pub last: f64,
}

/// Whether a worker with `recent` shares is down at `now` (Unix seconds): silent for more
/// than `factor` × its mean share interval, and at least `min_silence`. `None` when it has
/// too few shares to judge.
pub fn down(
    recent: &Recent,
    now: f64,
    factor: u32,
    min_silence: Duration,
    min_shares: u32,
) -> Option<bool> {
    if recent.shares < u64::from(min_shares.max(2)) {
        return None;
    }
    let interval = (recent.last - recent.first) / (recent.shares - 1) as f64;
    let limit = (interval * f64::from(factor)).max(min_silence.as_secs_f64());
    Some(now - recent.last > limit)
}

/// Each worker's recent accepted shares of `miner` in `pool`.
async fn recent(
    engine: &SqlEngine,
    pool: &str,
    miner: &str,
    lookback: Duration,
) -> Result<BTreeMap<String, Recent>> {
    let mut params = Params::new();
    let (p, m) = (params.text(pool), params.text(miner));
    let sql = format!(
        "SELECT CAST(worker AS VARCHAR) AS worker, count(*) AS n,
                CAST(extract(epoch FROM min(ts)) AS DOUBLE) AS first,
                CAST(extract(epoch FROM max(ts)) AS DOUBLE) AS last
         FROM shares WHERE pool = {p} AND miner = {m} AND accepted
           AND ts > now() - INTERVAL '{} seconds'
         GROUP BY worker",
        lookback.as_secs()
    );
    let result = engine
        .query_with(&sql, params.into_options())
        .await
        .map_err(|e| AlertsError::Query(e.to_string()))?;
    let mut out = BTreeMap::new();
    for batch in &result.batches {
        let worker = arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(|e| AlertsError::Query(e.to_string()))?;
        let worker = worker.as_string::<i32>();
        let n = batch.column(1).as_primitive::<Int64Type>();
        let (first, last) = (
            batch.column(2).as_primitive::<Float64Type>(),
            batch.column(3).as_primitive::<Float64Type>(),
        );
        for i in 0..batch.num_rows() {
            if worker.is_null(i) || first.is_null(i) || last.is_null(i) {
                continue;
            }
            out.insert(
                worker.value(i).to_string(),
                Recent {
                    shares: u64::try_from(n.value(i)).unwrap_or(0),
                    first: first.value(i),
                    last: last.value(i),
                },
            );
        }
    }
    Ok(out)
}

/// What the notices need besides their config.
pub struct NoticeContext {
    /// `[notify]`, for the mail receiver's server and the send timeout.
    pub notify: super::NotifyConfig,
    /// Outbound HTTP and mail under `[egress] notify`.
    pub http: adit_egress::Outbound,
    /// Reads `shares`.
    pub engine: Arc<SqlEngine>,
    /// The subscriptions.
    pub subscriptions: Subscriptions,
    /// Records each attempt.
    pub publisher: Publisher,
}

/// Checks every subscriber's workers every `check_every` until `shutdown`.
pub async fn run(ctx: NoticeContext, shutdown: CancellationToken) -> Result<()> {
    let config = ctx.notify.workers.clone();
    config
        .validate()
        .map_err(|e| AlertsError::Refused(e.to_string()))?;
    loop {
        if let Err(e) = check_all(&ctx, &config).await {
            tracing::warn!(error = %e, "worker notices: a check failed; the next one tries again");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(config.check_every) => {}
        }
    }
}

/// One check of every subscription. Who was told is kept in the bucket after the telling, so
/// a crash between the two tells again rather than never.
async fn check_all(ctx: &NoticeContext, config: &WorkerNotices) -> Result<()> {
    let now = Utc::now();
    let seconds = now.timestamp_micros() as f64 / 1e6;
    for sub in ctx.subscriptions.all().await? {
        let workers = recent(&ctx.engine, &sub.pool, &sub.miner, config.lookback).await?;
        let factor = sub.factor.unwrap_or(config.factor);
        let before = ctx.subscriptions.told(&sub).await?;
        let mut told = before.clone();
        let mut newly = Vec::new();
        for (worker, r) in &workers {
            match down(r, seconds, factor, config.min_silence, config.min_shares) {
                Some(true) if !told.contains(worker) => {
                    newly.push((worker.clone(), *r));
                    told.insert(worker.clone());
                }
                Some(false) => {
                    told.remove(worker);
                }
                _ => {}
            }
        }
        // A miner that opted out since the list is told nothing.
        if !newly.is_empty() && ctx.subscriptions.still(&sub).await? {
            tell(ctx, &sub, &newly, seconds, now).await?;
        }
        if told != before {
            ctx.subscriptions.set_told(&sub, &told).await?;
        }
    }
    Ok(())
}

/// Tells `sub`'s miner, on each of its channels, of its workers newly down.
async fn tell(
    ctx: &NoticeContext,
    sub: &Subscription,
    newly: &[(String, Recent)],
    seconds: f64,
    now: DateTime<Utc>,
) -> Result<()> {
    let names: Vec<&str> = newly.iter().map(|(w, _)| w.as_str()).collect();
    let summary = format!(
        "adit pool {}: {} worker{} stopped sending shares: {}",
        sub.pool,
        newly.len(),
        if newly.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    let lines: Vec<String> = newly
        .iter()
        .map(|(w, r)| {
            let interval = (r.last - r.first) / (r.shares.max(2) - 1) as f64;
            format!(
                "{w}: last share {:.0} s ago; it sent one every {:.0} s on average",
                seconds - r.last,
                interval
            )
        })
        .collect();
    let message = Outgoing {
        summary: summary.clone(),
        text: format!(
            "{summary}\n\n{}\n\nMiner {}.\nTo stop these notices, send the same request with enabled = false.",
            lines.join("\n"),
            sub.miner
        ),
        json: json!({
            "pool": sub.pool, "miner": sub.miner, "down": names,
            "summary": summary, "at": now.to_rfc3339(),
        }),
    };
    let mut channels = Vec::new();
    if let Some(url) = &sub.webhook {
        channels.push(Channel::Webhook { url: url.clone() });
    }
    if let Some(to) = &sub.email {
        match mail_channel(&ctx.notify, to) {
            Some(channel) => channels.push(channel),
            None => {
                tracing::warn!(pool = %sub.pool, "worker notices: a miner asked for email, and notify.workers.mail names no receiver with an email channel")
            }
        }
    }
    for (n, channel) in channels.iter().enumerate() {
        let result = channels::send(channel, &message, &ctx.http, ctx.notify.timeout).await;
        metrics::counter!("adit_worker_notices_total", "status" => if result.is_ok() { "sent" } else { "failed" }).increment(1);
        let record = NotificationAttempt {
            id: format!(
                "{RECEIVER}:{}:{}:{n}",
                miner_id(&sub.pool, &sub.miner),
                now.timestamp_micros()
            ),
            receiver: RECEIVER.into(),
            channel: channel.kind().into(),
            group: "worker-down".into(),
            status: if result.is_ok() { "sent" } else { "failed" }.into(),
            attempt: 1,
            summary: summary.clone(),
            alerts: newly.len() as i64,
            error: result.err(),
            ts: now,
        };
        ctx.publisher
            .publish(&AnyEvent::Notification(record))
            .await?;
    }
    Ok(())
}

/// The mail receiver's email channel, addressed to `to` only.
fn mail_channel(notify: &super::NotifyConfig, to: &str) -> Option<Channel> {
    let name = notify.workers.mail.as_deref()?;
    notify.receiver(name)?.all_channels().find_map(|c| match c {
        Channel::Email { .. } => {
            let mut c = c.clone();
            if let Channel::Email { to: recipients, .. } = &mut c {
                *recipients = vec![to.to_string()];
            }
            Some(c)
        }
        _ => None,
    })
}

/// Checks a miner's contact details before they are stored.
pub fn validate_contact(
    email: Option<&str>,
    webhook: Option<&str>,
) -> std::result::Result<(), String> {
    if email.is_none() && webhook.is_none() {
        return Err("give an email or a webhook (or enabled = false to stop)".into());
    }
    if let Some(e) = email {
        let ok = e.len() <= 254
            && e.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && !e
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
        if !ok {
            return Err(format!(
                "email: {:?} is not an address",
                e.chars().take(80).collect::<String>()
            ));
        }
    }
    if let Some(w) = webhook {
        let ok = w.len() <= 512
            && reqwest::Url::parse(w).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err("webhook: not an http or https URL of at most 512 characters".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recent(shares: u64, first: f64, last: f64) -> Recent {
        Recent {
            shares,
            first,
            last,
        }
    }

    #[test]
    fn a_worker_is_down_after_its_own_interval_times_the_factor() {
        let min = Duration::from_secs(60);
        // One share every 10 s for 100 s: down after 10 × 10 s = 100 s of silence.
        let fast = recent(11, 0.0, 100.0);
        assert_eq!(down(&fast, 199.0, 10, min, 5), Some(false));
        assert_eq!(down(&fast, 201.0, 10, min, 5), Some(true));
        // One share every 600 s: 30 minutes of silence is nothing for it.
        let slow = recent(6, 0.0, 3000.0);
        assert_eq!(down(&slow, 3000.0 + 1800.0, 10, min, 5), Some(false));
        assert_eq!(down(&slow, 3000.0 + 6001.0, 10, min, 5), Some(true));
        // Never under the shortest silence, and not judged on too few shares.
        let burst = recent(20, 0.0, 19.0);
        assert_eq!(down(&burst, 19.0 + 59.0, 3, min, 5), Some(false));
        assert_eq!(down(&recent(4, 0.0, 3.0), 1e9, 3, min, 5), None);
    }

    #[tokio::test]
    async fn a_signed_request_is_taken_once_and_what_was_told_outlives_a_restart() {
        let nats = adit_testkit::NatsServer::start();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client);
        adit_bus::setup::ensure_buckets(&js, 1).await.unwrap();
        let store = Subscriptions::open(&js).await.unwrap();
        let t0 = Utc::now();
        let later = t0 + chrono::Duration::seconds(1);
        assert!(store.claim_signed("p", "alice", t0).await.unwrap());
        assert!(
            !store.claim_signed("p", "alice", t0).await.unwrap(),
            "the same request again is a replay"
        );
        assert!(
            !store
                .claim_signed("p", "alice", t0 - chrono::Duration::seconds(5))
                .await
                .unwrap(),
            "an older request sent late is refused"
        );
        assert!(
            store.claim_signed("p", "bob", t0).await.unwrap(),
            "per miner"
        );
        // Of two racing requests at the same newer time, one is taken.
        let (a, b) = tokio::join!(
            store.claim_signed("p", "alice", later),
            store.claim_signed("p", "alice", later)
        );
        assert!(a.unwrap() ^ b.unwrap());

        let sub = Subscription {
            pool: "p".into(),
            miner: "alice".into(),
            email: None,
            webhook: Some("http://127.0.0.1:9/x".into()),
            factor: None,
            since: t0,
        };
        store.put(&sub).await.unwrap();
        let told: BTreeSet<String> = ["rig-1".to_string()].into();
        store.set_told(&sub, &told).await.unwrap();
        // Another process (a restart) opens the same bucket and finds it.
        let again = Subscriptions::open(&js).await.unwrap();
        assert_eq!(again.told(&sub).await.unwrap(), told);
        assert_eq!(again.all().await.unwrap(), std::slice::from_ref(&sub));
        assert!(again.still(&sub).await.unwrap());
        assert!(again.delete("p", "alice").await.unwrap());
        assert!(!again.still(&sub).await.unwrap());
        assert_eq!(
            again.told(&sub).await.unwrap(),
            told,
            "an opt-out forgets no telling: a worker still down is not told again"
        );
    }

    #[test]
    fn contacts_are_checked_before_they_are_stored() {
        assert!(validate_contact(Some("m@pool.example"), None).is_ok());
        assert!(validate_contact(None, Some("https://hooks.example/x")).is_ok());
        assert!(validate_contact(None, None).is_err());
        for bad in ["nobody", "a@b", "a b@c.d", "<a@b.c>", "x@y.z\r\nBcc: e@f.g"] {
            assert!(validate_contact(Some(bad), None).is_err(), "{bad:?}");
        }
        for bad in [
            "ftp://x",
            "not a url",
            &format!("https://x/{}", "a".repeat(600)),
        ] {
            assert!(validate_contact(None, Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_name_the_miner_by_id_only() {
        let key = Subscription::key("main", "4Secret.Address+1");
        assert!(
            key.starts_with("notice.main.") && !key.contains("Secret"),
            "{key}"
        );
        assert!(adit_schemas::names::is_token(
            key.trim_start_matches("notice.main.")
        ));
    }
}
