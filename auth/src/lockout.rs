//! Failed authentications per client address (issue 23): each failure is counted and slows
//! the next answer to that address; `limit` failures within `window` ban the address for
//! `ban_for` (every request from it is a 429 `banned`, a valid token included). Counted in
//! `adit_api_auth_failures_total` and `adit_api_auth_bans_total`; each failure is also a row
//! of the `audit` table, which the shipped `ApiAuthFailures` rule watches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use adit_config::{Checked, check};
use serde::Deserialize;

/// Addresses followed at most; past it, addresses without a failure in the window are
/// forgotten first, then the oldest.
const MAX_TRACKED: usize = 65_536;
/// The longest a failure's answer is held back.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// `[query.lockout]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Failures within `window` that ban an address.
    pub limit: u32,
    /// How far back failures count.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long a ban lasts.
    #[serde(with = "humantime_serde")]
    pub ban_for: Duration,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            limit: 10,
            window: Duration::from_secs(300),
            ban_for: Duration::from_secs(900),
        }
    }
}

impl LockoutConfig {
    /// Refuses values that would ban on nothing or never.
    pub fn validate(&self) -> Checked {
        check(
            (1..=100_000).contains(&self.limit),
            "query.lockout.limit",
            format!("{} must be 1..=100000", self.limit),
        )?;
        let day = Duration::from_secs(86_400);
        check(
            (Duration::from_secs(1)..=day).contains(&self.window),
            "query.lockout.window",
            "must be 1s..=24h",
        )?;
        check(
            (Duration::from_secs(1)..=7 * day).contains(&self.ban_for),
            "query.lockout.ban_for",
            "must be 1s..=7d",
        )
    }
}

/// One address's record.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    /// Failures since `since`.
    count: u32,
    /// When the current window started.
    since: Instant,
    /// Banned until then.
    banned_until: Option<Instant>,
}

/// The failures of every address.
#[derive(Debug)]
pub struct Lockout {
    config: LockoutConfig,
    strikes: Mutex<HashMap<IpAddr, Strikes>>,
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Struck {
    /// Hold the answer back this long.
    pub delay: Duration,
    /// The address is banned from now on.
    pub banned: bool,
}

impl Lockout {
    /// A lockout under `config`.
    pub fn new(config: LockoutConfig) -> Self {
        Self {
            config,
            strikes: Mutex::new(HashMap::new()),
        }
    }

    /// Until when `ip` is banned at `now`, if it is.
    pub fn banned(&self, ip: IpAddr, now: Instant) -> Option<Instant> {
        let strikes = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        strikes
            .get(&ip)
            .and_then(|s| s.banned_until)
            .filter(|until| *until > now)
    }

    /// Counts a failed authentication from `ip` at `now`.
    pub fn fail(&self, ip: IpAddr, now: Instant) -> Struck {
        metrics::counter!("adit_api_auth_failures_total").increment(1);
        let mut strikes = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        if strikes.len() >= MAX_TRACKED && !strikes.contains_key(&ip) {
            self.forget(&mut strikes, now);
        }
        let s = strikes.entry(ip).or_insert(Strikes {
            count: 0,
            since: now,
            banned_until: None,
        });
        if now.duration_since(s.since) > self.config.window {
            s.count = 0;
            s.since = now;
        }
        s.count = s.count.saturating_add(1);
        let banned = s.count >= self.config.limit && s.banned_until.is_none_or(|u| u <= now);
        if banned {
            s.banned_until = Some(now + self.config.ban_for);
            s.count = 0;
            s.since = now;
            metrics::counter!("adit_api_auth_bans_total").increment(1);
            tracing::warn!(client = %ip, ban_for = ?self.config.ban_for, limit = self.config.limit, "a client failed to authenticate too often and is banned");
        }
        let delay = (Duration::from_millis(100) * s.count).min(MAX_DELAY);
        Struck { delay, banned }
    }

    /// Makes room: drops addresses with nothing current, then the oldest half.
    fn forget(&self, strikes: &mut HashMap<IpAddr, Strikes>, now: Instant) {
        let window = self.config.window;
        strikes.retain(|_, s| {
            s.banned_until.is_some_and(|u| u > now) || now.duration_since(s.since) <= window
        });
        if strikes.len() >= MAX_TRACKED {
            let mut by_age: Vec<(IpAddr, Instant)> =
                strikes.iter().map(|(ip, s)| (*ip, s.since)).collect();
            by_age.sort_by_key(|(_, since)| *since);
            for (ip, _) in by_age.into_iter().take(MAX_TRACKED / 2) {
                strikes.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout(limit: u32) -> Lockout {
        Lockout::new(LockoutConfig {
            limit,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(600),
        })
    }

    #[test]
    fn failures_slow_then_ban_an_address_and_no_other() {
        let l = lockout(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(l.fail(a, t0).delay, Duration::from_millis(100));
        let second = l.fail(a, t0);
        assert_eq!(
            (second.delay, second.banned),
            (Duration::from_millis(200), false)
        );
        assert!(l.banned(a, t0).is_none());
        assert!(l.fail(a, t0).banned, "the third failure bans");
        assert_eq!(l.banned(a, t0), Some(t0 + Duration::from_secs(600)));
        assert!(l.banned(b, t0).is_none(), "another address is not banned");
        assert!(
            l.banned(a, t0 + Duration::from_secs(601)).is_none(),
            "a ban ends"
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = lockout(3);
        let a: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        l.fail(a, t0);
        l.fail(a, t0 + Duration::from_secs(30));
        assert!(!l.fail(a, t0 + Duration::from_secs(120)).banned);
        assert!(l.banned(a, t0 + Duration::from_secs(120)).is_none());
    }

    #[test]
    fn the_delay_is_bounded_and_so_is_the_memory() {
        let l = lockout(100_000);
        let a: IpAddr = "10.0.0.9".parse().unwrap();
        let t0 = Instant::now();
        let mut last = Duration::ZERO;
        for _ in 0..100 {
            last = l.fail(a, t0).delay;
        }
        assert_eq!(last, MAX_DELAY);
        for i in 0..(MAX_TRACKED as u32 + 10) {
            l.fail(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.strikes.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(LockoutConfig::default().validate().is_ok());
        for (bad, key) in [
            (
                LockoutConfig {
                    limit: 0,
                    ..Default::default()
                },
                "query.lockout.limit",
            ),
            (
                LockoutConfig {
                    window: Duration::ZERO,
                    ..Default::default()
                },
                "query.lockout.window",
            ),
            (
                LockoutConfig {
                    ban_for: Duration::from_secs(30 * 86_400),
                    ..Default::default()
                },
                "query.lockout.ban_for",
            ),
        ] {
            assert_eq!(
                bad.validate().map_err(|e| e.key),
                Err(key.into()),
                "{bad:?}"
            );
        }
    }
}
