//! The bans every pool process applies: the KV bucket `adit_bans` mirrored in memory (its
//! current values, then every change), checked for each new connection and, on every change,
//! against each open one, which is closed if its address is now banned. The pool's own bans
//! for invalid shares are written to the bucket, so the other pool processes apply them too
//! and a restart keeps them until they expire. Expired bans are purged from the bucket (and so
//! from every process's memory) every [`SWEEP_EVERY`]: a crowd of addresses banned once each
//! does not make every later connection's check slower for good.
//!
//! A check costs one hash lookup per prefix length in force (at most 33 + 65), however many
//! bans there are: the bans are indexed by network, and an address is looked up as each of
//! its networks. An address is checked as its holder (`adit_schemas::bans::holder`): an
//! IPv4-mapped address as its IPv4 address, an IPv6 address as its /64.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use adit_schemas::bans::{self, Ban};
use adit_schemas::names;
use async_nats::jetstream::{self, kv::Operation};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A ban as held: its network, when it ends (none: until lifted) and its revision in the
/// bucket (so a purge of an expired ban cannot remove a newer ban of the same network).
type Held = (IpNet, Option<DateTime<Utc>>, u64);

/// How often expired bans are purged from the bucket.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The bans held, by KV key, and indexed by network for the check.
#[derive(Debug, Default)]
struct Table {
    by_key: BTreeMap<String, Held>,
    /// The keys holding each network (one, but for a record from before IPv6 bans were
    /// widened that now names the same /64 as a newer one).
    by_net: HashMap<IpNet, BTreeSet<String>>,
    /// How many networks of each (family is IPv6, prefix length) are in `by_net`.
    lengths: BTreeMap<(bool, u8), usize>,
}

impl Table {
    fn insert(&mut self, key: &str, held: Held) {
        self.remove(key);
        let net = held.0;
        let keys = self.by_net.entry(net).or_default();
        if keys.is_empty() {
            *self.lengths.entry(Self::length(&net)).or_default() += 1;
        }
        keys.insert(key.to_string());
        self.by_key.insert(key.to_string(), held);
    }

    fn remove(&mut self, key: &str) -> Option<Held> {
        let held = self.by_key.remove(key)?;
        let net = held.0;
        if let Some(keys) = self.by_net.get_mut(&net) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_net.remove(&net);
                let length = Self::length(&net);
                if let Some(n) = self.lengths.get_mut(&length) {
                    *n -= 1;
                    if *n == 0 {
                        self.lengths.remove(&length);
                    }
                }
            }
        }
        Some(held)
    }

    fn length(net: &IpNet) -> (bool, u8) {
        (matches!(net, IpNet::V6(_)), net.prefix_len())
    }

    /// Whether a ban in force at `now` covers `ip`: `ip`'s network of each length in force,
    /// looked up.
    fn covers(&self, ip: IpAddr, now: DateTime<Utc>) -> bool {
        let ip = bans::holder_addr(ip);
        let v6 = ip.is_ipv6();
        self.lengths
            .keys()
            .filter(|(family, _)| *family == v6)
            .filter_map(|(_, len)| IpNet::new(ip, *len).ok().map(|n| n.trunc()))
            .filter_map(|net| self.by_net.get(&net))
            .flatten()
            .filter_map(|key| self.by_key.get(key))
            .any(|(_, until, _)| until.is_none_or(|u| u > now))
    }
}

/// The bans in force, by KV key, shared by the connections and the sync task.
#[derive(Debug, Clone)]
pub struct Bans {
    held: Arc<RwLock<Table>>,
    /// Bumped on every change, so open connections check themselves again.
    changed: watch::Sender<u64>,
    /// The pool's own bans, to be written to the bucket.
    auto: mpsc::Sender<Ban>,
    /// Networks whose ban was lifted, for the guard to pardon (its own bans of them too).
    lifted: Arc<std::sync::Mutex<Vec<IpNet>>>,
}

impl Bans {
    /// An empty set, and the receiver of the pool's own bans for [`sync`].
    pub fn new() -> (Self, mpsc::Receiver<Ban>) {
        let (auto, rx) = mpsc::channel(1024);
        let bans = Self {
            held: Arc::default(),
            changed: watch::channel(0).0,
            auto,
            lifted: Arc::default(),
        };
        (bans, rx)
    }

    /// Whether `ip` (as its holder) is banned at `now`.
    pub fn covers(&self, ip: IpAddr, now: DateTime<Utc>) -> bool {
        let held = self.held.read().unwrap_or_else(PoisonError::into_inner);
        held.covers(ip, now)
    }

    /// The keys (with their revisions) of the bans that ended before `now`.
    fn expired(&self, now: DateTime<Utc>) -> Vec<(String, u64)> {
        let held = self.held.read().unwrap_or_else(PoisonError::into_inner);
        held.by_key
            .iter()
            .filter(|(_, (_, until, _))| until.is_some_and(|u| u <= now))
            .map(|(key, (_, _, revision))| (key.clone(), *revision))
            .collect()
    }

    /// A receiver that changes whenever the bans do.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// How many times the bans have changed: a connection that saw another number checks
    /// itself again.
    pub fn version(&self) -> u64 {
        *self.changed.borrow()
    }

    /// Records the pool's own ban of `ip` (as its holder) for `ban_for`, to be shared through
    /// the bucket.
    pub fn auto_ban(&self, ip: IpAddr, ban_for: Duration, reason: &str) {
        let until = Utc::now() + chrono::Duration::from_std(ban_for).unwrap_or_default();
        let ban = Ban::new(&bans::holder(ip), reason, Some(until), bans::AUTO);
        if let Err(e) = self.auto.try_send(ban) {
            // The ban holds in this process (the guard's); only its sharing is lost.
            tracing::warn!(%ip, error = %e, "automatic ban not shared: too many at once");
        }
    }

    /// The networks lifted since the last call, for the guard to pardon.
    pub fn take_lifted(&self) -> Vec<IpNet> {
        std::mem::take(&mut *self.lifted.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn apply(&self, key: &str, ban: Option<Ban>, revision: u64) {
        let removed = {
            let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
            match ban.and_then(|b| b.net().ok().map(|net| (net, b.expires, revision))) {
                Some(entry) => {
                    held.insert(key, entry);
                    None // replaced or added: nothing lifted
                }
                None => held.remove(key),
            }
        };
        if let Some((net, _, _)) = removed {
            let mut lifted = self.lifted.lock().unwrap_or_else(PoisonError::into_inner);
            if lifted.len() < 10_000 {
                lifted.push(net);
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A failure to `what` the bucket.
fn failed(what: &str, e: &dyn std::fmt::Display) -> crate::Error {
    crate::Error::Bans(format!("{}: {what}: {e}", names::KV_BANS))
}

/// The bans bucket.
async fn bucket(js: &jetstream::Context) -> Result<async_nats::jetstream::kv::Store, crate::Error> {
    js.get_key_value(names::KV_BANS)
        .await
        .map_err(|e| failed("open", &e))
}

/// Reads every ban in the bucket into `bans`, before the pool takes its first miner (the
/// watch in [`sync`] then keeps them current); returns how many there are.
pub(crate) async fn load(js: &jetstream::Context, bans: &Bans) -> Result<usize, crate::Error> {
    let kv = bucket(js).await?;
    let mut keys = kv.keys().await.map_err(|e| failed("list", &e))?;
    let mut count = 0;
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| failed("list", &e))?;
        let Some(entry) = kv.entry(&key).await.map_err(|e| failed("read", &e))? else {
            continue;
        };
        let ban = serde_json::from_slice::<Ban>(&entry.value).ok();
        if let Some(ban) = ban.filter(|b| b.validate().is_ok()) {
            bans.apply(&key, Some(ban), entry.revision);
            count += 1;
        }
    }
    Ok(count)
}

/// Mirrors the bucket into `bans`, writes the pool's own bans to it and purges the expired
/// ones every `sweep_every`, until `shutdown`; while the bucket cannot be read, the bans last
/// read hold and it is tried again.
pub async fn sync(
    js: jetstream::Context,
    bans: Bans,
    mut auto: mpsc::Receiver<Ban>,
    shutdown: CancellationToken,
    sweep_every: Duration,
) {
    loop {
        match mirror(&js, &bans, &mut auto, &shutdown, sweep_every).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "bans bucket not readable; the bans last read hold; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
}

/// Purges the bans that have ended from the bucket, each only at the revision that ended (a
/// ban of the same network written since stays). Every pool process sweeps; the one that
/// comes second finds the revision gone and leaves it.
async fn purge_expired(kv: &async_nats::jetstream::kv::Store, bans: &Bans) {
    for (key, revision) in bans.expired(Utc::now()) {
        match kv.purge_expect_revision(&key, Some(revision)).await {
            Ok(()) => tracing::info!(%key, "expired ban purged"),
            Err(e) => tracing::debug!(%key, error = %e, "expired ban not purged here"),
        }
    }
}

/// One watch of the bucket, until `shutdown` or an error.
async fn mirror(
    js: &jetstream::Context,
    bans: &Bans,
    auto: &mut mpsc::Receiver<Ban>,
    shutdown: &CancellationToken,
    sweep_every: Duration,
) -> Result<(), crate::Error> {
    let kv = bucket(js).await?;
    let mut changes = kv
        .watch_with_history(">")
        .await
        .map_err(|e| failed("watch", &e))?;
    let mut sweep = tokio::time::interval(sweep_every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = sweep.tick() => purge_expired(&kv, bans).await,
            change = changes.next() => {
                let entry = match change {
                    Some(Ok(entry)) => entry,
                    Some(Err(e)) => return Err(failed("watch", &e)),
                    None => return Err(failed("watch", &"ended")),
                };
                let ban = match entry.operation {
                    Operation::Put => match serde_json::from_slice::<Ban>(&entry.value) {
                        Ok(ban) if ban.validate().is_ok() => Some(ban),
                        _ => {
                            tracing::warn!(key = %entry.key, "a ban in the bucket is not valid; ignored");
                            None
                        }
                    },
                    Operation::Delete | Operation::Purge => None,
                };
                bans.apply(&entry.key, ban, entry.revision);
            }
            Some(ban) = auto.recv() => {
                let Ok(net) = ban.net() else { continue };
                let value = serde_json::to_vec(&ban).map_err(|e| failed("encode", &e))?;
                if let Err(e) = kv.put(bans::key(&net), value.into()).await {
                    tracing::warn!(network = %ban.network, error = %e, "automatic ban not shared: the bucket refused it");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_covers_its_network_until_it_expires_or_is_lifted() {
        let (bans, _auto) = Bans::new();
        let mut seen = bans.subscribe();
        let net = bans::parse_network("198.51.100.0/24").unwrap();
        let now = Utc::now();
        bans.apply(
            &bans::key(&net),
            Some(Ban::new(
                &net,
                "flood",
                Some(now + chrono::Duration::hours(1)),
                "ops",
            )),
            3,
        );
        assert!(seen.has_changed().unwrap());
        seen.mark_unchanged();
        let inside: IpAddr = "198.51.100.77".parse().unwrap();
        let outside: IpAddr = "198.51.101.1".parse().unwrap();
        assert!(bans.covers(inside, now));
        assert!(!bans.covers(outside, now));
        assert!(
            !bans.covers(inside, now + chrono::Duration::hours(2)),
            "expired"
        );
        assert!(bans.expired(now).is_empty());
        assert_eq!(
            bans.expired(now + chrono::Duration::hours(2)),
            vec![(bans::key(&net), 3)],
            "to purge at the revision that ended"
        );
        bans.apply(&bans::key(&net), None, 4);
        assert!(seen.has_changed().unwrap());
        assert!(!bans.covers(inside, now), "lifted");
        assert_eq!(bans.take_lifted(), vec![net], "for the guard to pardon");
        assert!(bans.take_lifted().is_empty());
    }

    /// A model of what a ban covers: every ban scanned, `contains` on the holder.
    fn scanned(bans: &[(IpNet, bool)], ip: IpAddr) -> bool {
        let ip = bans::holder_addr(ip);
        bans.iter()
            .any(|(net, active)| *active && net.contains(&ip))
    }

    proptest::proptest! {
        /// The index answers what a scan of every ban would, for any bans (of any family and
        /// prefix length, some expired, some lifted, some written twice) and any address
        /// (IPv4, IPv4-mapped, IPv6 near a banned one).
        #[test]
        fn the_index_answers_as_a_scan_would(
            ops in proptest::collection::vec(
                (0u8..4, proptest::prelude::any::<u32>(), proptest::prelude::any::<u64>(), 0u8..129, proptest::prelude::any::<bool>(), 0u8..3),
                1..40,
            ),
            probes in proptest::collection::vec(
                (0u8..3, proptest::prelude::any::<u32>(), proptest::prelude::any::<u64>()), 1..40),
        ) {
            let now = Utc::now();
            let (bans, _auto) = Bans::new();
            let mut model: BTreeMap<String, (IpNet, bool)> = BTreeMap::new();
            // Addresses drawn near each other, so networks and probes overlap.
            let addr = |kind: u8, a: u32, b: u64| -> IpAddr {
                match kind {
                    0 => IpAddr::from((a & 0xC0A8_00FF).to_be_bytes()),
                    1 => IpAddr::from(std::net::Ipv4Addr::from(a & 0xC0A8_00FF).to_ipv6_mapped()),
                    _ => IpAddr::from(((0x2001_0db8u128 << 96) | (u128::from(a & 0x3) << 64) | u128::from(b & 0xFF)).to_be_bytes()),
                }
            };
            for (kind, a, b, len, expired, action) in ops {
                let ip = addr(kind % 3, a, b);
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let net = bans::holder_of_net(IpNet::new(ip, len.min(max)).unwrap());
                let key = bans::key(&net);
                if action == 0 {
                    bans.apply(&key, None, 1);
                    model.remove(&key);
                } else {
                    let until = if expired { now - chrono::Duration::seconds(1) } else { now + chrono::Duration::hours(1) };
                    bans.apply(&key, Some(Ban::new(&net, "t", Some(until), "ops")), 1);
                    model.insert(key, (net, !expired));
                }
            }
            let list: Vec<_> = model.values().copied().collect();
            for (kind, a, b) in probes {
                let ip = addr(kind, a, b);
                proptest::prop_assert_eq!(bans.covers(ip, now), scanned(&list, ip), "{}", ip);
            }
        }
    }
}
