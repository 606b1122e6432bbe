//! Leases in NATS KV: one writer per (pipeline, partition), hot standbys waiting for it.
//!
//! The bucket's max age is the lease's TTL, so a key its holder stops renewing disappears on
//! its own; a standby's `create` succeeds only then. The holder renews every `ttl / 5` with a
//! compare-and-set on the revision it last wrote, and trusts its lease only until half the TTL
//! after the last renewal it *sent* that the server confirmed: it stops writing at least
//! `ttl / 2` before any other process can hold the key (clock drift on one host aside, since
//! both ends measure their own elapsed time). The Delta commit is the second fence: a writer
//! whose application id was committed by someone else since it read the table is refused
//! ([`adit_sinks::Error::Fenced`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Store, UpdateErrorKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The part of a lease's validity window that is trusted: half the TTL.
pub fn trusted_until(renewal_sent: Instant, ttl: Duration) -> Instant {
    renewal_sent + ttl / 2
}

/// A held lease; renewed in the background until dropped, released or lost.
pub struct Lease {
    /// The bucket.
    kv: Store,
    /// `<pipeline>.<partition>`.
    key: String,
    /// Until when this holder may write.
    valid_until: Arc<Mutex<Instant>>,
    /// Fired when the lease is lost (another holder, or renewals failing too long).
    lost: CancellationToken,
    /// The renewal task.
    renewer: tokio::task::JoinHandle<u64>,
}

impl Lease {
    /// Waits until the lease on `key` is free and takes it for `holder`, or returns `None` once
    /// `shutdown` fires. A process waiting here is a hot standby.
    pub async fn acquire(
        kv: Store,
        key: &str,
        holder: &str,
        ttl: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>> {
        let mut waited = false;
        loop {
            let sent = Instant::now();
            match kv.create(key, holder.to_string().into()).await {
                Ok(revision) => {
                    tracing::info!(lease = key, holder, "lease taken");
                    return Ok(Some(Self::hold(kv, key, holder, ttl, revision, sent)));
                }
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                    if !waited {
                        tracing::info!(lease = key, "another process holds the lease; standing by");
                        waited = true;
                    }
                }
                Err(e) if e.kind() == CreateErrorKind::InvalidKey => {
                    return Err(Error::Lease {
                        key: key.to_string(),
                        source: Box::new(e),
                    });
                }
                Err(e) => {
                    tracing::warn!(lease = key, error = %e, "cannot reach the lease bucket; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(ttl / 10) => {}
            }
        }
    }

    fn hold(
        kv: Store,
        key: &str,
        holder: &str,
        ttl: Duration,
        revision: u64,
        sent: Instant,
    ) -> Self {
        let valid_until = Arc::new(Mutex::new(trusted_until(sent, ttl)));
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            kv.clone(),
            key.to_string(),
            holder.to_string(),
            ttl,
            revision,
            valid_until.clone(),
            lost.clone(),
        ));
        Self {
            kv,
            key: key.to_string(),
            valid_until,
            lost,
            renewer,
        }
    }

    /// Whether this holder may still write.
    pub fn is_valid(&self) -> bool {
        !self.lost.is_cancelled()
            && Instant::now() < *self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fires when the lease is lost.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Gives the lease up so a standby takes over at once (after a graceful stop).
    pub async fn release(mut self) {
        self.lost.cancel();
        let revision = (&mut self.renewer).await.ok();
        if let Err(e) = self.kv.delete_expect_revision(&self.key, revision).await {
            tracing::debug!(lease = %self.key, error = %e, "lease not released; it will expire");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews until the lease is lost; returns the last revision written.
async fn renew(
    kv: Store,
    key: String,
    holder: String,
    ttl: Duration,
    mut revision: u64,
    valid_until: Arc<Mutex<Instant>>,
    lost: CancellationToken,
) -> u64 {
    loop {
        tokio::select! {
            _ = lost.cancelled() => return revision,
            _ = tokio::time::sleep(ttl / 5) => {}
        }
        let sent = Instant::now();
        match kv.update(&key, holder.clone().into(), revision).await {
            Ok(next) => {
                revision = next;
                *valid_until.lock().unwrap_or_else(|p| p.into_inner()) = trusted_until(sent, ttl);
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                tracing::warn!(lease = %key, "lease taken by another process; stopping");
                lost.cancel();
                return revision;
            }
            Err(e) => {
                let left = valid_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tracing::warn!(lease = %key, error = %e, "lease could not be renewed in time; stopping");
                    lost.cancel();
                    return revision;
                }
                tracing::warn!(lease = %key, error = %e, ?left, "lease renewal failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_trusts_half_the_ttl_after_its_last_confirmed_renewal() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(10);
        assert_eq!(trusted_until(sent, ttl), sent + Duration::from_secs(5));
        // The key expires on the server no earlier than ttl after the server stored it, which
        // is after `sent`: the holder stops writing ttl/2 before a standby can take over.
        assert!(trusted_until(sent, ttl) + ttl / 2 <= sent + ttl);
    }
}
