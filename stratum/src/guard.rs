//! Per-IP admission: connection caps, token buckets for logins and submits, and a score-based
//! ban for invalid shares that expires. Pure: time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// Limits; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Connections in total.
    pub max_connections: usize,
    /// Connections from one IP.
    pub max_per_ip: usize,
    /// Logins per second per IP (burst: twice this).
    pub logins_per_s: f64,
    /// Share submissions per second per IP (burst: twice this).
    pub submits_per_s: f64,
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
            ban_score: 100,
            invalid_penalty: 10,
            ban_for: Duration::from_secs(600),
        }
    }
}

impl GuardConfig {
    /// Checks every value; the message starts with the key (under `pool.server.limits.`).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_per_ip == 0 {
            return Err("max_per_ip must be at least 1".into());
        }
        for (key, rate) in [
            ("logins_per_s", self.logins_per_s),
            ("submits_per_s", self.submits_per_s),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("{key} must be a positive number, not {rate}"));
            }
        }
        if self.ban_score < 1 {
            return Err("ban_score must be at least 1".into());
        }
        if self.invalid_penalty < 0 {
            return Err("invalid_penalty must not be negative".into());
        }
        if self.ban_for.is_zero() {
            return Err("ban_for must be more than 0".into());
        }
        Ok(())
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
    /// Ban score.
    score: i64,
    /// Banned until, if banned.
    banned_until: Option<Instant>,
}

/// Admission state for every IP.
#[derive(Debug)]
pub struct Guard {
    /// Limits.
    config: GuardConfig,
    /// Per IP.
    ips: HashMap<IpAddr, IpState>,
    /// Open connections in total.
    total: usize,
}

impl Guard {
    /// A guard with `config`.
    pub fn new(config: GuardConfig) -> Self {
        Self {
            config,
            ips: HashMap::new(),
            total: 0,
        }
    }

    fn state(&mut self, ip: IpAddr, now: Instant) -> &mut IpState {
        let burst_l = self.config.logins_per_s * 2.0;
        let burst_s = self.config.submits_per_s * 2.0;
        self.ips.entry(ip).or_insert_with(|| IpState {
            conns: 0,
            logins: Bucket {
                tokens: burst_l,
                at: now,
            },
            submits: Bucket {
                tokens: burst_s,
                at: now,
            },
            score: 0,
            banned_until: None,
        })
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&mut self, ip: IpAddr, now: Instant) -> bool {
        let s = self.state(ip, now);
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

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.is_banned(ip, now) {
            return Err(Refusal::Banned);
        }
        if self.total >= self.config.max_connections {
            return Err(Refusal::Full);
        }
        let max_per_ip = self.config.max_per_ip;
        let s = self.state(ip, now);
        if s.conns >= max_per_ip {
            return Err(Refusal::PerIpCap);
        }
        s.conns += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `ip` closed.
    pub fn release(&mut self, ip: IpAddr) {
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
