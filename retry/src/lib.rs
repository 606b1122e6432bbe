//! How adit waits between tries of anything that may recover — a reconnect, a retried request,
//! a restarted task, a device polled again after it failed: waits doubling from a first one up
//! to a cap, back to the first after a success, with jitter where many processes may retry the
//! same server at once. One [`Backoff`] for every such loop; where a call is retried a bounded
//! number of times, `backon`'s `Retryable` takes the same policy ([`Backoff::builder`]). The
//! loop's waits are computed here, exactly: backon multiplies by an `f32` factor, so its
//! second wait after 13 ms is 26.000001 ms, not 26 ms (found by the property below).
//!
//! A leaf crate (no adit dependency), so every crate that retries can use it.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Doubling waits from `first` up to `cap`; with [`Backoff::with_jitter`], each wait is
/// stretched by a random part of itself (up to twice as long), so processes that failed
/// together do not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    jitter: bool,
}

impl Backoff {
    /// Waits `first`, `2·first`, `4·first`, … up to `cap` (a `cap` below `first` is `first`).
    pub const fn new(first: Duration, cap: Duration) -> Self {
        let cap = if cap.as_nanos() < first.as_nanos() {
            first
        } else {
            cap
        };
        Self {
            first,
            cap,
            jitter: false,
        }
    }

    /// The same waits, each stretched by a random part of itself.
    #[must_use]
    pub const fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The longest wait (before jitter).
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// The wait after `failures` failures in a row (before jitter): `first·2ⁿ⁻¹`, at most the
    /// cap; none before the first failure.
    pub fn after(&self, failures: u32) -> Duration {
        let Some(doublings) = failures.checked_sub(1) else {
            return Duration::ZERO;
        };
        2u32.checked_pow(doublings)
            .and_then(|factor| self.first.checked_mul(factor))
            .map_or(self.cap, |wait| wait.min(self.cap))
    }

    /// The endless waits of a loop that tries until it succeeds or is stopped.
    pub fn waits(&self) -> Waits {
        Waits {
            policy: *self,
            failures: 0,
        }
    }

    /// The same policy as `backon`'s builder, for `Retryable` (add `with_max_times`).
    pub fn builder(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.cap);
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }
}

/// The waits of one retry loop: [`Iterator::next`] after each failure, [`Waits::reset`] after
/// a success. Never ends.
#[derive(Debug)]
pub struct Waits {
    policy: Backoff,
    /// Failures in a row so far.
    failures: u32,
}

impl Waits {
    /// The wait after this failure.
    pub fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = self.policy.after(self.failures);
        if self.policy.jitter {
            wait.saturating_add(wait.mul_f64(rand::random::<f64>()))
        } else {
            wait
        }
    }

    /// Back to the first wait, after a try that worked.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

impl Iterator for Waits {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_wait())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let policy = Backoff::new(250 * MS, 2_000 * MS);
        let mut waits = policy.waits();
        let first: Vec<_> = waits.by_ref().take(6).collect();
        assert_eq!(
            first,
            [
                250 * MS,
                500 * MS,
                1_000 * MS,
                2_000 * MS,
                2_000 * MS,
                2_000 * MS
            ]
        );
        waits.reset();
        assert_eq!(waits.next(), Some(250 * MS));
    }

    #[test]
    fn a_cap_below_the_first_wait_is_the_first_wait() {
        let policy = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(
            policy.waits().take(3).collect::<Vec<_>>(),
            [Duration::from_secs(5); 3]
        );
        assert_eq!(policy.after(40), Duration::from_secs(5));
    }

    proptest! {
        /// `after(n)` is the n-th wait of the loop, jitter aside; jitter keeps each wait between
        /// it and twice it.
        #[test]
        fn after_is_the_loops_nth_wait(first_ms in 1u64..10_000, cap_ms in 1u64..100_000, n in 1u32..40) {
            let policy = Backoff::new(Duration::from_millis(first_ms), Duration::from_millis(cap_ms));
            let plain = policy.waits().nth(n as usize - 1).unwrap();
            prop_assert_eq!(policy.after(n), plain);
            prop_assert!(plain <= policy.cap());
            let jittered = policy.with_jitter().waits().nth(n as usize - 1).unwrap();
            prop_assert!(jittered >= plain && jittered <= plain * 2, "{jittered:?} vs {plain:?}");
        }
    }

    #[test]
    fn no_failure_no_wait() {
        assert_eq!(Backoff::new(MS, MS).after(0), Duration::ZERO);
    }
}
