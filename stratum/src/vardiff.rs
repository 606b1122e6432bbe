//! Variable share difficulty: a pure function of (settings, state, now, network difficulty) that
//! moves each miner's difficulty toward one share per target time.
//!
//! Time is plain milliseconds passed in by the caller, so tests simulate it. The state sums the
//! difficulty of the shares accepted since the window began (the work done); once the retarget
//! interval has passed, or sooner if many shares arrived, the ideal difficulty is
//! `work × target time / elapsed`. The difficulty changes only if the ideal is outside the
//! tolerance band, by at most `max_step` in one go, within `[min, max]`, and never above the
//! network difficulty (that cap wins over `min`, and applies at once, not at the next retarget).

use adit_config::{Checked, check};

/// Vardiff settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VardiffConfig {
    /// The share interval aimed at, in milliseconds (default 30 s).
    pub target_share_time_ms: u64,
    /// The lowest difficulty handed out (unless the network's is lower).
    pub min_difficulty: u64,
    /// The highest difficulty handed out.
    pub max_difficulty: u64,
    /// How long a window of shares is measured before deciding, in milliseconds.
    pub retarget_interval_ms: u64,
    /// Retarget before the interval is over once this many shares arrived in the window, so a
    /// fast miner that starts far too low is corrected quickly.
    pub fast_retarget_shares: u32,
    /// Keep the difficulty while the ideal is within this many percent of it, so random share
    /// times do not cause constant job re-sends.
    pub tolerance_percent: u64,
    /// The largest factor one retarget may raise or lower the difficulty by.
    pub max_step: u64,
}

impl Default for VardiffConfig {
    fn default() -> Self {
        Self {
            target_share_time_ms: 30_000,
            min_difficulty: 1_000,
            max_difficulty: u64::MAX,
            retarget_interval_ms: 120_000,
            fast_retarget_shares: 20,
            tolerance_percent: 30,
            max_step: 4,
        }
    }
}

impl VardiffConfig {
    /// Refuses settings the algorithm cannot work with; the key is relative to
    /// `[pool.server.vardiff]` (the caller puts it [`adit_config::Invalid::under`] `vardiff`).
    pub fn validate(&self) -> Checked {
        check(
            self.target_share_time_ms != 0,
            "target_share_time_ms",
            "must be positive",
        )?;
        check(
            self.retarget_interval_ms != 0,
            "retarget_interval_ms",
            "must be positive",
        )?;
        check(
            self.min_difficulty != 0,
            "min_difficulty",
            "must be at least 1",
        )?;
        check(
            self.min_difficulty <= self.max_difficulty,
            "min_difficulty",
            "is above the maximum (max_difficulty)",
        )?;
        check(self.max_step >= 2, "max_step", "must be at least 2")?;
        check(
            self.fast_retarget_shares != 0,
            "fast_retarget_shares",
            "must be at least 1",
        )
    }

    /// `difficulty` brought within `[min, max]` and then capped at the network difficulty
    /// (e.g. for a starting difficulty from config or from the miner's login).
    pub fn clamp(&self, difficulty: u64, network_difficulty: u64) -> u64 {
        difficulty
            .clamp(self.min_difficulty, self.max_difficulty)
            .min(network_difficulty)
            .max(1)
    }
}

/// One miner's vardiff state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VardiffState {
    /// The difficulty the miner's current job was sent with.
    pub difficulty: u64,
    /// When the current measurement window began, in milliseconds.
    pub window_start_ms: u64,
    /// The summed difficulty of the shares accepted in the window: the work done.
    pub window_work: u128,
    /// How many shares were accepted in the window.
    pub window_shares: u32,
}

impl VardiffState {
    /// A new miner at `difficulty` (already clamped by the caller), measured from `now_ms`.
    pub fn new(difficulty: u64, now_ms: u64) -> Self {
        Self {
            difficulty,
            window_start_ms: now_ms,
            window_work: 0,
            window_shares: 0,
        }
    }

    /// Counts an accepted share found at `share_difficulty` (the job's difficulty, which may be
    /// an older one than the current).
    pub fn record_share(&mut self, share_difficulty: u64) {
        self.window_work += u128::from(share_difficulty);
        self.window_shares = self.window_shares.saturating_add(1);
    }

    /// The same difficulty with an empty window starting at `now_ms`.
    fn restart(&self, difficulty: u64, now_ms: u64) -> Self {
        Self::new(difficulty, now_ms)
    }
}

/// The outcome of [`retarget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retarget {
    /// The state to keep.
    pub state: VardiffState,
    /// The new difficulty, when it changed and the miner needs a new job.
    pub new_difficulty: Option<u64>,
}

/// Decides the miner's difficulty at `now_ms`. Call it after each accepted share and from a
/// periodic tick (so a miner that stopped finding shares is lowered too).
pub fn retarget(
    config: &VardiffConfig,
    state: &VardiffState,
    now_ms: u64,
    network_difficulty: u64,
) -> Retarget {
    let current = state.difficulty;
    let elapsed = now_ms.saturating_sub(state.window_start_ms);
    // A miner with no share in twice the target time is too slow for its difficulty (a share
    // was due twice over): it need not wait for the whole interval to be lowered.
    let quiet =
        state.window_shares == 0 && elapsed >= config.target_share_time_ms.saturating_mul(2);
    let due = elapsed >= config.retarget_interval_ms
        || quiet
        || (state.window_shares >= config.fast_retarget_shares && elapsed > 0);
    if !due {
        // Bounds and the network cap apply at once; the window keeps measuring.
        let capped = config.clamp(current, network_difficulty);
        return Retarget {
            state: VardiffState {
                difficulty: capped,
                ..state.clone()
            },
            new_difficulty: (capped != current).then_some(capped),
        };
    }

    let target = u128::from(config.target_share_time_ms);
    let elapsed = u128::from(elapsed);
    let ideal = if state.window_shares == 0 {
        // No share yet: the miner is at most as fast as one share in the window would mean,
        // which only ever argues for lowering the difficulty.
        (u128::from(current) * target / elapsed).min(u128::from(current))
    } else {
        state.window_work * target / elapsed
    };
    let current_wide = u128::from(current);
    let tolerance = u128::from(config.tolerance_percent);
    let low = current_wide * 100u128.saturating_sub(tolerance) / 100;
    let high = current_wide * (100 + tolerance) / 100;
    let wanted = if (low..=high).contains(&ideal) {
        current
    } else {
        let step = u128::from(config.max_step);
        let stepped = ideal.clamp(current_wide / step, current_wide * step);
        u64::try_from(stepped).unwrap_or(u64::MAX)
    };
    let next = config.clamp(wanted, network_difficulty);
    Retarget {
        state: state.restart(next, now_ms),
        new_difficulty: (next != current).then_some(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETWORK: u64 = u64::MAX;

    /// Hashes per second → expected milliseconds per share at `difficulty`.
    fn share_interval_ms(difficulty: u64, hashrate: u64) -> u64 {
        difficulty * 1_000 / hashrate
    }

    /// Runs a miner whose shares come exactly every `difficulty / hashrate` seconds for
    /// `duration_ms`, returning the difficulty after each retarget decision.
    fn run_steady(config: &VardiffConfig, start: u64, hashrate: u64, duration_ms: u64) -> Vec<u64> {
        let mut state = VardiffState::new(start, 0);
        let mut now = 0;
        let mut history = vec![state.difficulty];
        while now < duration_ms {
            now += share_interval_ms(state.difficulty, hashrate).max(1);
            state.record_share(state.difficulty);
            let outcome = retarget(config, &state, now, NETWORK);
            state = outcome.state;
            history.push(state.difficulty);
        }
        history
    }

    #[test]
    fn default_config_is_valid_and_aims_at_30_seconds() {
        let config = VardiffConfig::default();
        config.validate().unwrap();
        assert_eq!(config.target_share_time_ms, 30_000);
    }

    #[test]
    fn refuses_unworkable_configs_naming_the_key() {
        let base = VardiffConfig::default();
        let cases = [
            (
                VardiffConfig {
                    target_share_time_ms: 0,
                    ..base.clone()
                },
                "target_share_time_ms",
            ),
            (
                VardiffConfig {
                    retarget_interval_ms: 0,
                    ..base.clone()
                },
                "retarget_interval_ms",
            ),
            (
                VardiffConfig {
                    min_difficulty: 0,
                    ..base.clone()
                },
                "min_difficulty",
            ),
            (
                VardiffConfig {
                    min_difficulty: 10,
                    max_difficulty: 9,
                    ..base.clone()
                },
                "min_difficulty",
            ),
            (
                VardiffConfig {
                    max_step: 1,
                    ..base.clone()
                },
                "max_step",
            ),
            (
                VardiffConfig {
                    fast_retarget_shares: 0,
                    ..base.clone()
                },
                "fast_retarget_shares",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, key, "{config:?}: {err}");
        }
    }

    #[test]
    fn a_steady_miner_converges_to_the_target_share_time_and_stays() {
        let config = VardiffConfig::default();
        for (start, hashrate) in [(1_000, 10_000), (5_000_000, 2_000), (1_000, 1_000_000)] {
            let ideal = hashrate * 30;
            let history = run_steady(&config, start, hashrate, 3 * 60 * 60 * 1_000);
            let last = *history.last().unwrap();
            // The ideal is within the tolerance band around where it ended.
            assert!(
                ideal.abs_diff(last) * 100 <= last * config.tolerance_percent,
                "start {start}, {hashrate} H/s: ended at {last}, ideal {ideal}"
            );
            // Once in the band it stays put: the last quarter of decisions changed nothing.
            let tail = &history[history.len() * 3 / 4..];
            assert!(tail.iter().all(|&d| d == last), "{start}: {tail:?}");
        }
    }

    #[test]
    fn a_fast_miner_far_below_its_ideal_is_raised_before_the_interval() {
        let config = VardiffConfig::default();
        let mut state = VardiffState::new(1_000, 0);
        // 1 MH/s at difficulty 1000: a share every millisecond.
        for now in 1..=20 {
            state.record_share(1_000);
            let outcome = retarget(&config, &state, now, NETWORK);
            state = outcome.state;
            if now < 20 {
                assert_eq!(outcome.new_difficulty, None, "{now}");
            } else {
                // The step is capped at ×4.
                assert_eq!(outcome.new_difficulty, Some(4_000));
            }
        }
        assert_eq!(state.window_shares, 0);
        assert_eq!(state.window_start_ms, 20);
    }

    /// A deterministic xorshift generator, so the random test needs no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next_unit(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn a_random_miner_hovers_around_its_ideal() {
        let config = VardiffConfig::default();
        let hashrate = 5_000.0;
        let ideal = hashrate * 30.0;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut state = VardiffState::new(1_000, 0);
        let mut now = 0u64;
        let mut late = Vec::new();
        let hours = 24 * 60 * 60 * 1_000;
        while now < hours {
            // Exponential share times with mean difficulty / hashrate.
            let mean_ms = state.difficulty as f64 / hashrate * 1_000.0;
            let wait = -mean_ms * (1.0 - rng.next_unit()).ln();
            now += wait.max(1.0) as u64;
            state.record_share(state.difficulty);
            state = retarget(&config, &state, now, NETWORK).state;
            if now > hours / 4 {
                late.push(state.difficulty as f64);
            }
        }
        // After the first few hours the geometric mean is near the ideal.
        let log_mean = late.iter().map(|d| d.ln()).sum::<f64>() / late.len() as f64;
        let ratio = log_mean.exp() / ideal;
        assert!((0.7..1.4).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn an_idle_miner_is_lowered_step_by_step_to_the_minimum() {
        let config = VardiffConfig {
            min_difficulty: 100,
            ..VardiffConfig::default()
        };
        let mut state = VardiffState::new(100_000, 0);
        let mut now = 0;
        let mut seen = Vec::new();
        for _ in 0..8 {
            now += config.retarget_interval_ms;
            let outcome = retarget(&config, &state, now, NETWORK);
            state = outcome.state;
            seen.push(state.difficulty);
        }
        // 120 s without a share at a 30 s target: the ideal is a quarter, which is also the
        // largest step.
        assert_eq!(seen, [25_000, 6_250, 1_562, 390, 100, 100, 100, 100]);
    }

    #[test]
    fn a_miner_too_slow_for_its_start_is_lowered_before_its_first_share() {
        // At the start difficulty this miner would take 129 s per share; ticked every 5 s, it
        // is halved once 60 s (twice the 30 s target) pass without a share, and then finds its
        // first share sooner than it would have.
        let config = VardiffConfig {
            min_difficulty: 100,
            ..VardiffConfig::default()
        };
        let hashrate = 100; // H/s
        let mut state = VardiffState::new(12_900, 0);
        let mut now = 0;
        let mut work_done = 0u64; // hashes since the last share
        let first_share_at = loop {
            now += 5_000;
            work_done += hashrate * 5;
            if work_done >= state.difficulty {
                break now;
            }
            let outcome = retarget(&config, &state, now, NETWORK);
            if outcome.new_difficulty.is_some() {
                assert!(
                    now <= 60_000 || state.difficulty < 12_900,
                    "lowered at {now} ms"
                );
            }
            state = outcome.state;
        };
        assert_eq!(state.difficulty, 6_450, "halved once, at 60 s");
        assert!(
            first_share_at < 129_000,
            "first share at {first_share_at} ms"
        );
        // A miner that did send a share in the window is left to the normal interval.
        let mut busy = VardiffState::new(12_900, 0);
        busy.record_share(12_900);
        assert_eq!(
            retarget(&config, &busy, 60_000, NETWORK).new_difficulty,
            None
        );
    }

    #[test]
    fn a_window_within_tolerance_keeps_the_difficulty_and_restarts() {
        let config = VardiffConfig::default();
        let mut state = VardiffState::new(10_000, 1_000);
        // 5 shares in 120 s at a 30 s target is 4 expected: +25 %, within the 30 % band.
        for _ in 0..5 {
            state.record_share(10_000);
        }
        let outcome = retarget(&config, &state, 121_000, NETWORK);
        assert_eq!(outcome.new_difficulty, None);
        assert_eq!(outcome.state, VardiffState::new(10_000, 121_000));

        // 6 shares is +50 %: raised to 15 000.
        let mut six = VardiffState::new(10_000, 1_000);
        for _ in 0..6 {
            six.record_share(10_000);
        }
        let outcome = retarget(&config, &six, 121_000, NETWORK);
        assert_eq!(outcome.new_difficulty, Some(15_000));
    }

    #[test]
    fn an_early_call_changes_nothing() {
        let config = VardiffConfig::default();
        let mut state = VardiffState::new(10_000, 0);
        state.record_share(10_000);
        let outcome = retarget(&config, &state, 5_000, NETWORK);
        assert_eq!(outcome.new_difficulty, None);
        assert_eq!(outcome.state, state);
        // A clock that went backwards is treated as no time passed.
        let outcome = retarget(&config, &VardiffState::new(10_000, 9_000), 1_000, NETWORK);
        assert_eq!(outcome.new_difficulty, None);
    }

    #[test]
    fn never_above_network_difficulty_and_within_bounds() {
        let config = VardiffConfig {
            min_difficulty: 1_000,
            max_difficulty: 1_000_000,
            ..VardiffConfig::default()
        };
        // The network cap applies at once, even mid-window, and beats the minimum.
        let state = VardiffState::new(50_000, 0);
        let outcome = retarget(&config, &state, 10, 20_000);
        assert_eq!(outcome.new_difficulty, Some(20_000));
        assert_eq!(outcome.state.window_start_ms, 0);
        let outcome = retarget(&config, &state, 10, 500);
        assert_eq!(outcome.new_difficulty, Some(500));

        // A very fast miner is held at the maximum, or at the network difficulty if lower.
        let history = run_steady(&config, 1_000, 1_000_000_000, 60 * 60 * 1_000);
        assert_eq!(*history.last().unwrap(), 1_000_000);
        assert!(history.iter().all(|&d| d <= 1_000_000));
        let mut state = VardiffState::new(1_000, 0);
        for now in 1..200 {
            state.record_share(state.difficulty);
            state = retarget(&config, &state, now * 10, 300_000).state;
            assert!(state.difficulty <= 300_000);
        }
        assert_eq!(state.difficulty, 300_000);

        assert_eq!(config.clamp(1, NETWORK), 1_000);
        assert_eq!(config.clamp(u64::MAX, NETWORK), 1_000_000);
        assert_eq!(config.clamp(5_000, 2_000), 2_000);
        assert_eq!(config.clamp(5_000, 0), 1);
    }
}
