//! Per-IP admission: connection caps, token buckets for logins and submits, and a score-based
//! ban for invalid shares that expires. Pure: time is passed in.
//!
//! State is kept only for IPs with an open connection, a live ban or a recent score: a refused
//! connection leaves nothing behind, and what an IP left is swept once it has been quiet for
//! `ban_for`, so a flood of addresses (IPv6 gives an attacker billions) cannot grow it.
//!
//! An address is counted as its holder (`adit_schemas::bans::holder`): every address of one
//! IPv6 /64 shares one set of caps, buckets and score, and an IPv4-mapped address is its IPv4
//! address, so changing to another address one already holds gains nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use adit_config::{Checked, check};
use adit_schemas::bans::holder_addr;
use serde::Deserialize;
use tokio::time::Instant;

/// Limits; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Connections in total. Each is an open file: `adit` raises its open-file limit to fit
    /// them and 1 024 more at start, and where the hard limit (`LimitNOFILE`, `ulimit -Hn`)
    /// is lower it admits fewer, saying so, so a crowd of miners cannot take the files the
    /// rest of the process needs.
    pub max_connections: usize,
    /// Connections from one IP.
    pub max_per_ip: usize,
    /// Logins per second per IP (burst: twice this).
    pub logins_per_s: f64,
    /// Share submissions per second per IP (burst: twice this).
    pub submits_per_s: f64,
    /// `getjob` requests per second per IP (burst: twice this): each cuts a job (a blob of its
    /// own, a slot among the session's recent jobs), and XMRig asks for one only rarely.
    pub getjobs_per_s: f64,
    /// Ban score at which an IP is banned; an invalid share adds `invalid_penalty`, a valid
    /// one takes 1 off.
    pub ban_score: i64,
    /// Score added by one invalid share or message.
    pub invalid_penalty: i64,
    /// How long a ban lasts.
    #[serde(with = "humantime_serde")]
    pub ban_for: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_per_ip: 1_024,
            logins_per_s: 20.0,
            submits_per_s: 500.0,
            getjobs_per_s: 10.0,
            ban_score: 100,
            invalid_penalty: 10,
            ban_for: Duration::from_secs(600),
        }
    }
}

impl GuardConfig {
    /// Checks every value; the key is relative to `[pool.server.limits]` (the caller puts it
    /// [`adit_config::Invalid::under`] `limits`).
    pub fn validate(&self) -> Checked {
        check(
            self.max_connections != 0,
            "max_connections",
            "must be at least 1",
        )?;
        check(self.max_per_ip != 0, "max_per_ip", "must be at least 1")?;
        for (key, rate) in [
            ("logins_per_s", self.logins_per_s),
            ("submits_per_s", self.submits_per_s),
            ("getjobs_per_s", self.getjobs_per_s),
        ] {
            check(
                rate.is_finite() && rate > 0.0,
                key,
                format!("must be a positive number, not {rate}"),
            )?;
        }
        check(self.ban_score >= 1, "ban_score", "must be at least 1")?;
        check(
            self.invalid_penalty >= 0,
            "invalid_penalty",
            "must not be negative",
        )?;
        check(!self.ban_for.is_zero(), "ban_for", "must be more than 0")
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The IP is banned.
    Banned,
    /// Too many connections from the IP.
    PerIpCap,
    /// Too many connections in total.
    Full,
}

impl Refusal {
    /// A short reason for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Banned => "banned",
            Self::PerIpCap => "per_ip_cap",
            Self::Full => "full",
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens left.
    tokens: f64,
    /// When it was last refilled.
    at: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let burst = rate * 2.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What is known about one IP.
#[derive(Debug, Clone)]
struct IpState {
    /// Open connections.
    conns: usize,
    /// Login bucket.
    logins: Bucket,
    /// Submit bucket.
    submits: Bucket,
    /// `getjob` bucket.
    getjobs: Bucket,
    /// Ban score.
    score: i64,
    /// Banned until, if banned.
    banned_until: Option<Instant>,
    /// Last time anything was recorded for it.
    seen: Instant,
}

impl IpState {
    /// Whether nothing about this IP needs remembering at `now`: no connection, no live ban,
    /// and quiet for `quiet` (its score and buckets are then forgotten).
    fn forgettable(&self, now: Instant, quiet: Duration) -> bool {
        self.conns == 0
            && self.banned_until.is_none_or(|until| until <= now)
            && now.saturating_duration_since(self.seen) >= quiet
    }
}

/// Tracked IPs below which no sweep runs.
const SWEEP_FLOOR: usize = 1_024;

/// Admission state for every IP.
#[derive(Debug)]
pub struct Guard {
    /// Limits.
    config: GuardConfig,
    /// Per IP.
    ips: HashMap<IpAddr, IpState>,
    /// Open connections in total.
    total: usize,
    /// Sweep when this many IPs are tracked (twice what the last sweep left)…
    sweep_at: usize,
    /// …or once this time has come (a `ban_for` after the last sweep).
    sweep_by: Option<Instant>,
}

impl Guard {
    /// A guard with `config`.
    pub fn new(config: GuardConfig) -> Self {
        Self {
            config,
            ips: HashMap::new(),
            total: 0,
            sweep_at: SWEEP_FLOOR,
            sweep_by: None,
        }
    }

    /// IPs with state (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.ips.len()
    }

    /// Connections admitted and not yet released.
    pub fn open(&self) -> usize {
        self.total
    }

    /// Forgets every IP with nothing to remember. Amortised: runs when the map has doubled
    /// since the last sweep, or a `ban_for` after it.
    fn sweep(&mut self, now: Instant) {
        let due = self.sweep_by.is_some_and(|by| now >= by);
        if self.ips.len() < self.sweep_at && !due {
            return;
        }
        let quiet = self.config.ban_for;
        self.ips.retain(|_, s| !s.forgettable(now, quiet));
        self.sweep_at = (self.ips.len() * 2).max(SWEEP_FLOOR);
        self.sweep_by = Some(now + quiet);
    }

    fn state(&mut self, ip: IpAddr, now: Instant) -> &mut IpState {
        let ip = holder_addr(ip);
        let burst_l = self.config.logins_per_s * 2.0;
        let burst_s = self.config.submits_per_s * 2.0;
        let burst_g = self.config.getjobs_per_s * 2.0;
        let state = self.ips.entry(ip).or_insert_with(|| IpState {
            conns: 0,
            logins: Bucket {
                tokens: burst_l,
                at: now,
            },
            submits: Bucket {
                tokens: burst_s,
                at: now,
            },
            getjobs: Bucket {
                tokens: burst_g,
                at: now,
            },
            score: 0,
            banned_until: None,
            seen: now,
        });
        state.seen = now;
        state
    }

    /// Whether `ip` is banned at `now`. Keeps no state for an IP it has none for.
    pub fn is_banned(&mut self, ip: IpAddr, now: Instant) -> bool {
        let Some(s) = self.ips.get_mut(&holder_addr(ip)) else {
            return false;
        };
        match s.banned_until {
            Some(until) if until > now => true,
            Some(_) => {
                s.banned_until = None;
                s.score = 0;
                false
            }
            None => false,
        }
    }

    /// Lifts this guard's bans of every address `covered` says is in a lifted network, and
    /// clears their scores (an operator's pardon outranks the automatic ban).
    pub fn pardon(&mut self, covered: impl Fn(&IpAddr) -> bool) {
        for (ip, s) in &mut self.ips {
            if covered(ip) {
                s.banned_until = None;
                s.score = 0;
            }
        }
    }

    /// Admits a new connection from `ip`, or says why not. A refusal records nothing new.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.is_banned(ip, now) {
            return Err(Refusal::Banned);
        }
        if self.total >= self.config.max_connections {
            return Err(Refusal::Full);
        }
        let max_per_ip = self.config.max_per_ip;
        if self
            .ips
            .get(&holder_addr(ip))
            .is_some_and(|s| s.conns >= max_per_ip)
        {
            return Err(Refusal::PerIpCap);
        }
        self.sweep(now);
        let s = self.state(ip, now);
        s.conns += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `ip` closed.
    pub fn release(&mut self, ip: IpAddr) {
        let ip = holder_addr(ip);
        if let Some(s) = self.ips.get_mut(&ip) {
            s.conns = s.conns.saturating_sub(1);
            self.total = self.total.saturating_sub(1);
            if s.conns == 0 && s.score <= 0 && s.banned_until.is_none() {
                self.ips.remove(&ip);
            }
        }
    }

    /// Whether `ip` may log in now.
    pub fn allow_login(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.config.logins_per_s;
        self.state(ip, now).logins.take(rate, now)
    }

    /// Whether `ip` may submit a share now.
    pub fn allow_submit(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.config.submits_per_s;
        self.state(ip, now).submits.take(rate, now)
    }

    /// Whether `ip` may ask for a new job now.
    pub fn allow_getjob(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.config.getjobs_per_s;
        self.state(ip, now).getjobs.take(rate, now)
    }

    /// Scores one share or message from `ip`; returns true if `ip` is now banned.
    pub fn record(&mut self, ip: IpAddr, invalid: bool, now: Instant) -> bool {
        let (penalty, threshold, ban_for) = (
            self.config.invalid_penalty,
            self.config.ban_score,
            self.config.ban_for,
        );
        let s = self.state(ip, now);
        s.score = if invalid {
            s.score + penalty
        } else {
            (s.score - 1).max(0)
        };
        if s.score >= threshold {
            s.banned_until = Some(now + ban_for);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn caps_are_per_ip_and_total() {
        let now = Instant::now();
        let mut g = Guard::new(GuardConfig {
            max_connections: 3,
            max_per_ip: 2,
            ..Default::default()
        });
        assert!(g.admit(ip(1), now).is_ok());
        assert!(g.admit(ip(1), now).is_ok());
        assert_eq!(g.admit(ip(1), now), Err(Refusal::PerIpCap));
        assert!(g.admit(ip(2), now).is_ok());
        assert_eq!(g.admit(ip(3), now), Err(Refusal::Full));
        g.release(ip(1));
        assert!(g.admit(ip(3), now).is_ok());
    }

    #[test]
    fn buckets_refill_with_time() {
        let now = Instant::now();
        let mut g = Guard::new(GuardConfig {
            logins_per_s: 1.0,
            ..Default::default()
        });
        assert!(g.allow_login(ip(1), now));
        assert!(g.allow_login(ip(1), now));
        assert!(!g.allow_login(ip(1), now), "burst of 2 spent");
        assert!(g.allow_login(ip(1), now + Duration::from_secs(1)));
        assert!(g.allow_login(ip(2), now), "other IPs have their own bucket");
    }

    #[test]
    fn a_flood_of_addresses_leaves_no_state_behind() {
        let now = Instant::now();
        let mut g = Guard::new(GuardConfig {
            max_connections: 4,
            ban_score: 10,
            invalid_penalty: 10,
            ban_for: Duration::from_secs(60),
            ..Default::default()
        });
        // Each in a /64 of its own (addresses within one /64 are one holder).
        let v6 = |n: u64| IpAddr::from(((u128::from(n) << 64) | (0x2001_0db8 << 96)).to_be_bytes());
        for n in 0..4 {
            g.admit(v6(n), now).unwrap();
        }
        // The pool is full: a million new addresses are refused and remembered by none.
        for n in 4..1_000_000 {
            assert_eq!(g.admit(v6(n), now), Err(Refusal::Full));
        }
        assert_eq!(g.tracked(), 4);
        for n in 0..4 {
            g.release(v6(n));
        }
        // 100 000 addresses that each connect, get banned and leave: their bans are kept while
        // they last, then swept.
        for n in 0..100_000 {
            let ip = v6(10_000_000 + n);
            g.admit(ip, now).unwrap();
            assert!(g.record(ip, true, now));
            g.release(ip);
        }
        assert!(g.tracked() >= 100_000, "live bans are remembered");
        assert_eq!(g.admit(v6(10_000_000), now), Err(Refusal::Banned));
        let later = now + Duration::from_secs(61);
        for n in 0..2_000 {
            let ip = v6(20_000_000 + n);
            g.admit(ip, later).unwrap();
            g.release(ip);
        }
        assert!(g.tracked() < 5_000, "{} IPs still tracked", g.tracked());
    }

    #[test]
    fn one_holder_is_one_address_whatever_address_it_uses() {
        let now = Instant::now();
        let mut g = Guard::new(GuardConfig {
            max_per_ip: 2,
            ban_score: 10,
            invalid_penalty: 10,
            ..Default::default()
        });
        let a: IpAddr = "2001:db8:7:7::1".parse().unwrap();
        let b: IpAddr = "2001:db8:7:7:ffff::2".parse().unwrap();
        g.admit(a, now).unwrap();
        g.admit(b, now).unwrap();
        let c: IpAddr = "2001:db8:7:7::3".parse().unwrap();
        assert_eq!(g.admit(c, now), Err(Refusal::PerIpCap), "one /64, one cap");
        assert!(g.record(a, true, now));
        assert!(g.is_banned(c, now), "banned as its /64");
        let v4: IpAddr = "192.0.2.5".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.5".parse().unwrap();
        g.admit(v4, now).unwrap();
        assert!(g.record(mapped, true, now));
        assert!(
            g.is_banned(v4, now),
            "an IPv4-mapped address is its IPv4 address"
        );
        g.release(mapped);
        assert_eq!(g.tracked(), 2);
    }

    #[test]
    fn a_pardon_lifts_the_ban_of_the_addresses_it_covers() {
        let mut g = Guard::new(GuardConfig {
            ban_score: 10,
            invalid_penalty: 10,
            ..GuardConfig::default()
        });
        let now = Instant::now();
        let (a, b) = (ip(1), ip(2));
        assert!(g.record(a, true, now) && g.record(b, true, now));
        g.pardon(|x| *x == a);
        assert!(!g.is_banned(a, now), "pardoned");
        assert!(g.is_banned(b, now), "not covered");
    }

    #[test]
    fn invalid_shares_ban_and_bans_expire() {
        let now = Instant::now();
        let cfg = GuardConfig {
            ban_score: 30,
            invalid_penalty: 10,
            ban_for: Duration::from_secs(60),
            ..Default::default()
        };
        let mut g = Guard::new(cfg);
        assert!(!g.record(ip(1), true, now));
        assert!(!g.record(ip(1), false, now), "a valid share takes one off");
        assert!(!g.record(ip(1), true, now));
        assert!(!g.record(ip(1), true, now), "29 < 30");
        assert!(g.record(ip(1), true, now), "39 ≥ 30");
        assert_eq!(g.admit(ip(1), now), Err(Refusal::Banned));
        assert!(
            g.admit(ip(2), now).is_ok(),
            "an honest neighbour is unaffected"
        );
        assert!(
            g.admit(ip(1), now + Duration::from_secs(61)).is_ok(),
            "the ban expired"
        );
    }
}
