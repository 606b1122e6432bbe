//! The anomaly detector's neighbour index: per site, kind and peer group, the values the peer
//! and stuck detectors compare a series with, kept sorted as series change. One reading then
//! costs a few ordered lookups instead of a pass over every series of its site (at 1 000
//! machines a site, that pass made each round of readings 10^6 medians per site and held the
//! runtime's workers for seconds).
//!
//! Derived state only: [`Neighbours::ensure`] rebuilds it from the series after a restore or
//! when the settings it was built for change; it is never serialized. A *member* is a series
//! with something to compare: a temperature sensor (its last value, and whether it varies) or a
//! machine in a peer group with `recent_samples` values (their median). The detector's tests
//! check every reading taken through the index against a pass over the series.

use super::{DetectConfig, SeriesKey, SeriesKind, SeriesState};
use std::collections::BTreeMap;

/// Which members are compared with each other: one site's series of one kind, and for
/// machines one peer group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PoolKey {
    site: String,
    kind: SeriesKind,
    group: Option<String>,
}

/// What a member offers its pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Member {
    /// Its last accepted sample, µs.
    ts: i64,
    /// What others compare with: a sensor's last value, a machine's recent median.
    pub(super) value: f64,
    /// A sensor not stuck (always false for machines).
    varying: bool,
}

/// A member's pool and offer, or `None` when the series has nothing to compare yet.
pub(super) fn member(
    key: &SeriesKey,
    s: &SeriesState,
    cfg: &DetectConfig,
) -> Option<(PoolKey, Member)> {
    let (group, value, varying) = if key.kind == SeriesKind::Temperature {
        (None, s.values.back()?.0, s.run < cfg.stuck_samples)
    } else {
        let group = s.peer_group.clone()?;
        (Some(group), s.recent_median(cfg.recent_samples)?, false)
    };
    let pool = PoolKey {
        site: key.site.clone(),
        kind: key.kind,
        group,
    };
    let ts = s.last_ts_us;
    Some((pool, Member { ts, value, varying }))
}

/// The other members of a pool heard recently enough.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Others {
    /// How many.
    pub(super) count: usize,
    /// Whether any of them varies.
    pub(super) varying: bool,
    /// The median of their values (mean of the middle two for an even count).
    pub(super) median: Option<f64>,
}

/// One pool's members.
#[derive(Debug, Clone, Default)]
struct Pool {
    /// Every member's value, sorted by `f64::total_cmp` (equal means the same bits).
    values: Vec<f64>,
    /// Every member by `(last sample µs, id)`, so the stale ones are a range.
    heard: BTreeMap<(i64, String), Member>,
    /// How many members vary.
    varying: usize,
}

impl Pool {
    fn insert(&mut self, id: &str, m: Member) {
        let at = self
            .values
            .partition_point(|v| v.total_cmp(&m.value).is_lt());
        self.values.insert(at, m.value);
        self.heard.insert((m.ts, id.to_owned()), m);
        self.varying += usize::from(m.varying);
    }

    fn remove(&mut self, id: &str, m: Member) {
        let at = self
            .values
            .partition_point(|v| v.total_cmp(&m.value).is_lt());
        if self
            .values
            .get(at)
            .is_some_and(|v| v.total_cmp(&m.value).is_eq())
        {
            self.values.remove(at);
        }
        if self.heard.remove(&(m.ts, id.to_owned())).is_some() && m.varying {
            self.varying -= 1;
        }
    }

    /// The members other than `me` (one of them) heard at or after `since`.
    fn others(&self, me: Member, since: i64) -> Others {
        let mut excluded: Vec<Member> = self
            .heard
            .range(..(since, String::new()))
            .map(|(_, m)| *m)
            .collect();
        if me.ts >= since {
            excluded.push(me);
        }
        let varying_out = excluded.iter().filter(|m| m.varying).count();
        let mut gone: Vec<f64> = excluded.into_iter().map(|m| m.value).collect();
        gone.sort_by(f64::total_cmp);
        let count = self.values.len().saturating_sub(gone.len());
        Others {
            count,
            varying: self.varying > varying_out,
            median: median_without(&self.values, &gone),
        }
    }
}

/// The median of `values` (sorted) less one instance of each of `gone` (sorted, a part of it).
fn median_without(values: &[f64], gone: &[f64]) -> Option<f64> {
    // Where each removed instance sits in `values`: equal values take successive places.
    let mut places = Vec::with_capacity(gone.len());
    for (i, g) in gone.iter().enumerate() {
        let first = values.partition_point(|v| v.total_cmp(g).is_lt());
        let before = gone[..i].iter().filter(|h| h.total_cmp(g).is_eq()).count();
        places.push(first + before);
    }
    // The k-th (from 0) value left: skip every removed place at or before it.
    let kth = |k: usize| {
        let mut at = k;
        for &p in &places {
            if p <= at {
                at += 1;
            } else {
                break;
            }
        }
        values.get(at).copied()
    };
    let n = values.len().checked_sub(gone.len())?;
    match n {
        0 => None,
        _ if n % 2 == 1 => kth(n / 2),
        _ => Some((kth(n / 2 - 1)? + kth(n / 2)?) / 2.0),
    }
}

/// Every pool, and the settings it was built for.
#[derive(Debug, Clone, Default)]
pub(super) struct Neighbours {
    /// `(recent_samples, stuck_samples)` the members were computed with; `None` until built.
    built_for: Option<(usize, usize)>,
    pools: BTreeMap<PoolKey, Pool>,
}

impl Neighbours {
    /// Rebuilds the index from `series` unless it was built for `cfg`'s settings.
    pub(super) fn ensure<'a>(
        &mut self,
        cfg: &DetectConfig,
        series: impl Iterator<Item = (&'a SeriesKey, &'a SeriesState)>,
    ) {
        let settings = (cfg.recent_samples, cfg.stuck_samples);
        if self.built_for == Some(settings) {
            return;
        }
        self.pools.clear();
        for (key, s) in series {
            self.replace(&key.id, None, member(key, s, cfg).as_ref());
        }
        self.built_for = Some(settings);
    }

    /// Series `id` went from offering `before` to offering `after`.
    pub(super) fn replace(
        &mut self,
        id: &str,
        before: Option<(PoolKey, Member)>,
        after: Option<&(PoolKey, Member)>,
    ) {
        if let Some((pool, m)) = before
            && let Some(p) = self.pools.get_mut(&pool)
        {
            p.remove(id, m);
            if p.heard.is_empty() {
                self.pools.remove(&pool);
            }
        }
        if let Some((pool, m)) = after {
            match self.pools.get_mut(pool) {
                Some(p) => p.insert(id, *m),
                None => self.pools.entry(pool.clone()).or_default().insert(id, *m),
            }
        }
    }

    /// The members of `pool` other than `me` (one of them) heard at or after `since`.
    pub(super) fn others(&self, pool: &PoolKey, me: Member, since: i64) -> Others {
        match self.pools.get(pool) {
            Some(p) => p.others(me, since),
            None => Others {
                count: 0,
                varying: false,
                median: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_less_some_values_is_the_median_of_what_is_left() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..2_000 {
            let mut values: Vec<f64> = (0..next(12)).map(|_| next(5) as f64).collect();
            values.sort_by(f64::total_cmp);
            let mut left = values.clone();
            let mut gone = Vec::new();
            for _ in 0..next(values.len() as u64 + 1) {
                let i = next(left.len() as u64) as usize;
                gone.push(left.remove(i));
            }
            gone.sort_by(f64::total_cmp);
            assert_eq!(
                median_without(&values, &gone),
                super::super::median(left.clone()),
                "{values:?} less {gone:?}"
            );
        }
    }
}
