//! Leases in NATS KV: one writer per key (a pipeline's partition, the payer), hot standbys
//! waiting for it.
//!
//! The bucket's max age is the lease's TTL, so a key its holder stops renewing disappears on
//! its own; a standby's `create` succeeds only then, or, where the server failed to expire it,
//! once the standby has seen the same revision for a whole TTL ([`take_over_stale`]). The
//! holder renews every `ttl / 5` with a compare-and-set on the revision it last wrote, and
//! trusts its lease only until half the TTL after the last renewal it *sent* that the server
//! confirmed: it stops writing at least `ttl / 2` before any other process can hold the key
//! (clock drift on one host aside, since both ends measure their own elapsed time). The Delta
//! commit is the second fence: a writer whose application id was committed by someone else
//! since it read the table is refused (`adit_sinks::Error::Fenced`).
//!
//! Slow is not lost. A writer about to write calls [`Lease::confirm`]: where its trust has run
//! out (a busy host delayed the renewals), it asks for a renewal at once and waits for it. A
//! compare-and-set on the holder's own last revision that succeeds proves no one else wrote the
//! key since, so trust starts again from that renewal; only a refused compare-and-set (the key
//! expired or was taken, not a renewal of this holder's own that went through unanswered) or
//! no answer until the key could have expired loses the lease.

use std::sync::Arc;
use std::time::Duration;

use adit_schemas::names;
use async_nats::jetstream::{
    self,
    kv::{CreateErrorKind, Operation, Store, UpdateErrorKind},
};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Creates the lease bucket: a KV bucket whose keys expire `ttl` after their last write.
pub async fn ensure_bucket(js: &jetstream::Context, ttl: Duration, replicas: usize) -> Result<()> {
    crate::setup::ensure_bucket(js, names::KV_LEASES, 1, Some(ttl), None, replicas).await
}

/// This process's name on the leases it holds (host, pid and a random part).
pub fn holder_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

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
    /// Until when this holder may write (moved on by each confirmed renewal).
    valid_until: watch::Receiver<Instant>,
    /// Asks the renewer for a renewal now rather than at its next tick.
    renew_now: Arc<Notify>,
    /// Fired when the lease is lost (another holder, or renewals failing too long).
    lost: CancellationToken,
    /// The renewal task.
    renewer: tokio::task::JoinHandle<u64>,
}

impl Lease {
    /// [`Lease::acquire`] in the lease bucket ([`ensure_bucket`]).
    pub async fn acquire_in(
        js: &jetstream::Context,
        key: &str,
        holder: &str,
        ttl: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>> {
        // A request waits for its answer as long as the lease lasts, not the context's
        // default (5 s): a renewal a busy server answers after 7 s, inside a 10 s TTL, keeps
        // the lease; given up at 5 s and tried again 2 s later, it lost it with the key
        // still held (`renew` bounds each wait by the key's possible expiry).
        let mut js = js.clone();
        js.set_timeout(ttl);
        let kv = js
            .get_key_value(names::KV_LEASES)
            .await
            .map_err(|e| Error::Lease {
                key: key.to_string(),
                source: Box::new(e),
            })?;
        Self::acquire(kv, key, holder, ttl, shutdown).await
    }

    /// The error of a write refused because this holder lost the lease on `key`.
    pub fn lost_error(&self) -> Error {
        Error::LeaseLost {
            key: self.key.clone(),
        }
    }

    /// Waits until the lease on `key` is free and takes it for `holder`, or returns `None` once
    /// `shutdown` fires. A process waiting here is a hot standby. `kv`'s requests should time
    /// out no sooner than `ttl` ([`Lease::acquire_in`] makes it so): a renewal answered later
    /// than that is given up anyway.
    pub async fn acquire(
        kv: Store,
        key: &str,
        holder: &str,
        ttl: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>> {
        let mut seen: Option<Seen> = None;
        loop {
            let sent = Instant::now();
            match kv.create(key, holder.to_string().into()).await {
                Ok(revision) => {
                    tracing::info!(lease = key, holder, "lease taken");
                    return Ok(Some(Self::hold(kv, key, holder, ttl, revision, sent)));
                }
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                    if let Some(revision) = take_over_stale(&kv, key, holder, ttl, &mut seen).await
                    {
                        return Ok(Some(Self::hold(kv, key, holder, ttl, revision, sent)));
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
        let (trust, valid_until) = watch::channel(trusted_until(sent, ttl));
        let lost = CancellationToken::new();
        let renew_now = Arc::new(Notify::new());
        let renewer = tokio::spawn(renew(
            Renewal {
                kv: kv.clone(),
                key: key.to_string(),
                holder: holder.to_string(),
                ttl,
                revision,
                confirmed_sent: sent,
            },
            trust,
            renew_now.clone(),
            lost.clone(),
        ));
        Self {
            kv,
            key: key.to_string(),
            valid_until,
            renew_now,
            lost,
            renewer,
        }
    }

    /// Whether this holder may write now, without waiting (see [`Lease::confirm`]).
    pub fn is_valid(&self) -> bool {
        !self.lost.is_cancelled() && Instant::now() < *self.valid_until.borrow()
    }

    /// Returns once this holder may write, renewing at once where its trust has run out; an
    /// error only when the lease is lost. Call it right before each write it fences.
    pub async fn confirm(&self) -> Result<()> {
        let mut valid_until = self.valid_until.clone();
        loop {
            if self.lost.is_cancelled() {
                return Err(self.lost_error());
            }
            if Instant::now() < *valid_until.borrow_and_update() {
                return Ok(());
            }
            self.renew_now.notify_one();
            tokio::select! {
                _ = self.lost.cancelled() => {}
                changed = valid_until.changed() => {
                    if changed.is_err() {
                        // The renewer ended: the lease was lost or released.
                        return Err(self.lost_error());
                    }
                }
            }
        }
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

/// The holder's last write as a standby has seen it: its revision, and when (on the standby's
/// own clock) that revision was first seen.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    revision: u64,
    since: Instant,
}

impl Seen {
    /// Records `revision` seen `now`; returns whether the holder has not written for a whole
    /// `ttl`, so its key ought to have expired.
    fn observe(seen: &mut Option<Seen>, revision: u64, now: Instant, ttl: Duration) -> bool {
        match seen {
            Some(s) if s.revision == revision => now.saturating_duration_since(s.since) >= ttl,
            _ => {
                *seen = Some(Seen {
                    revision,
                    since: now,
                });
                false
            }
        }
    }
}

/// Takes a lease whose holder has stopped renewing but whose key the server has not expired.
///
/// The bucket's max age should remove such a key, but a replicated bucket whose leader moved
/// can keep it for good (seen on nats-server 2.9 after a SIGKILLed leader came back; the same
/// as nats-io/nats-server#3653): every standby would then wait forever. So a standby also
/// watches the revision itself. A revision that stood unchanged for `ttl` from the moment this
/// standby first saw it is past its holder's trust (which ends `ttl / 2` after the holder sent
/// that renewal, before the server stored it), and is replaced with a compare-and-set on that
/// very revision: a holder that renewed meanwhile wins, and so does another standby that got
/// there first. Returns the revision written when this process took the lease.
async fn take_over_stale(
    kv: &Store,
    key: &str,
    holder: &str,
    ttl: Duration,
    seen: &mut Option<Seen>,
) -> Option<u64> {
    let entry = match kv.entry(key).await {
        Ok(Some(entry)) if entry.operation == Operation::Put => entry,
        // Gone or deleted since the create: the next create takes it.
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(lease = key, error = %e, "cannot read the lease; retrying");
            return None;
        }
    };
    // This process's own name: a lease it gave up when the server did not answer for a
    // whole TTL, which no one took since. Only this process writes its name, and its writer
    // stopped with the old lease, so it takes the key back with a compare-and-set at once
    // rather than waiting out its own key's expiry (every pipeline stood by for a TTL after
    // one stall of the server).
    if entry.value == holder.as_bytes() {
        return match kv
            .update(key, holder.to_string().into(), entry.revision)
            .await
        {
            Ok(revision) => {
                tracing::info!(
                    lease = key,
                    "lease taken back from this process's own last write"
                );
                Some(revision)
            }
            Err(e) => {
                tracing::debug!(lease = key, error = %e, "own lease moved on before it was taken back");
                None
            }
        };
    }
    let first = seen.is_none();
    if !Seen::observe(seen, entry.revision, Instant::now(), ttl) {
        if first {
            tracing::info!(lease = key, holder = %String::from_utf8_lossy(&entry.value), "another process holds the lease; standing by");
        }
        return None;
    }
    match kv
        .update(key, holder.to_string().into(), entry.revision)
        .await
    {
        Ok(revision) => {
            tracing::warn!(
                lease = key,
                stale_holder = %String::from_utf8_lossy(&entry.value),
                stale_revision = entry.revision,
                "lease not renewed for its whole time to live but never expired by the server; taken over"
            );
            Some(revision)
        }
        Err(e) => {
            tracing::debug!(lease = key, error = %e, "stale lease moved on before the take-over");
            *seen = None;
            None
        }
    }
}

/// What the renewer keeps between renewals.
struct Renewal {
    kv: Store,
    key: String,
    holder: String,
    ttl: Duration,
    /// The revision this holder last wrote.
    revision: u64,
    /// When the last renewal the server confirmed was sent.
    confirmed_sent: Instant,
}

/// Renews every `ttl / 5`, or at once when asked, until the lease is lost; returns the last
/// revision written.
///
/// A refused compare-and-set loses the lease at once, unless the key holds this holder's own
/// name at a later revision (an earlier renewal went through unanswered: [`own_later_write`]),
/// which the renewer goes on from. A renewal waits for its answer until the
/// key could have expired on the server, a whole `ttl` after the last confirmed renewal was
/// sent (its store's requests time out no sooner: [`Lease::acquire_in`]); any other failure (a
/// broken connection) is retried until then. Past that only the server could say whether
/// another holder has it, and it did not answer.
async fn renew(
    mut lease: Renewal,
    trust: watch::Sender<Instant>,
    renew_now: Arc<Notify>,
    lost: CancellationToken,
) -> u64 {
    let key = lease.key.clone();
    loop {
        tokio::select! {
            _ = lost.cancelled() => return lease.revision,
            _ = tokio::time::sleep(lease.ttl / 5) => {}
            _ = renew_now.notified() => {}
        }
        let sent = Instant::now();
        let expiry = lease.confirmed_sent + lease.ttl;
        let update = lease
            .kv
            .update(&key, lease.holder.clone().into(), lease.revision);
        let answered = tokio::select! {
            _ = lost.cancelled() => return lease.revision,
            answered = tokio::time::timeout_at(expiry, update) => answered,
        };
        let Ok(answer) = answered else {
            tracing::warn!(lease = %key, "lease renewal not answered before the key could expire; stopping");
            lost.cancel();
            return lease.revision;
        };
        match answer {
            Ok(next) => {
                lease.revision = next;
                lease.confirmed_sent = sent;
                trust.send_replace(trusted_until(sent, lease.ttl));
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                match own_later_write(&lease).await {
                    Ok(Some(revision)) => {
                        // Trust is not moved: when that renewal was sent is not known, and
                        // the next one, on this revision, confirms it.
                        tracing::info!(lease = %key, revision, "an earlier renewal went through unanswered; going on from its revision");
                        lease.revision = revision;
                        renew_now.notify_one();
                    }
                    Ok(None) => {
                        tracing::warn!(lease = %key, "lease expired or taken by another process; stopping");
                        lost.cancel();
                        return lease.revision;
                    }
                    Err(e) if expiry <= Instant::now() => {
                        tracing::warn!(lease = %key, error = %e, "lease could not be read back before it could expire; stopping");
                        lost.cancel();
                        return lease.revision;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %key, error = %e, "lease renewal refused and the key unreadable; retrying");
                    }
                }
            }
            Err(e) => {
                let left = expiry.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tracing::warn!(lease = %key, error = %e, "lease could not be renewed before it could expire; stopping");
                    lost.cancel();
                    return lease.revision;
                }
                tracing::warn!(lease = %key, error = %e, ?left, "lease renewal failed; retrying");
            }
        }
    }
}

/// The revision of a renewal by this holder that the server applied but whose answer never
/// came (a reply lost in a reconnect, or an attempt given up before it was answered), found
/// after a compare-and-set on the last answered revision was refused: the key still holds
/// this holder's name, at a later revision. Only this holder writes its name (a standby writes
/// its own), and only by a compare-and-set on its own revision, so that later revision is its
/// own write and no one else's since. `None` when the key holds another name, or is gone.
async fn own_later_write(
    lease: &Renewal,
) -> std::result::Result<Option<u64>, async_nats::jetstream::kv::EntryError> {
    let entry = lease.kv.entry(&lease.key).await?;
    Ok(entry
        .filter(|entry| {
            entry.operation == Operation::Put
                && entry.revision > lease.revision
                && entry.value == lease.holder.as_bytes()
        })
        .map(|entry| entry.revision))
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

    #[test]
    fn a_standby_calls_a_revision_stale_only_after_seeing_it_unchanged_for_the_ttl() {
        let ttl = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut seen = None;
        assert!(!Seen::observe(&mut seen, 7, t0, ttl), "first sight");
        assert!(!Seen::observe(&mut seen, 7, t0 + ttl / 2, ttl));
        // A renewal resets the clock.
        assert!(!Seen::observe(
            &mut seen,
            8,
            t0 + ttl - Duration::from_millis(1),
            ttl
        ));
        assert!(!Seen::observe(
            &mut seen,
            8,
            t0 + ttl + Duration::from_secs(1),
            ttl
        ));
        let since = seen.unwrap().since;
        assert!(Seen::observe(&mut seen, 8, since + ttl, ttl));
        // Past the holder's trust: it stopped writing ttl/2 after sending revision 8, which
        // was before the standby first saw it.
        assert!(trusted_until(since, ttl) < since + ttl);
    }
}
