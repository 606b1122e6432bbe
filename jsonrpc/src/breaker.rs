//! The node client's circuit breaker as a pure state machine: (state, input, now) → state, with no
//! clock and no I/O, so it is tested with simulated time.
//!
//! **Closed** lets every call through and counts consecutive calls that could not reach the node.
//! At [`BreakerConfig::failure_threshold`] it **opens**: calls fail fast, without touching the
//! network, until [`BreakerConfig::cool_down`] has passed. The first call after that is the
//! **half-open** trial (others still fail fast while it runs): if it reaches the node the breaker
//! closes, if not it opens for another cool-down. A trial that is abandoned (its future dropped)
//! hands the trial to the next call rather than wedging the breaker half-open.
//!
//! A call counts as a failure only when the node could not be reached (connection refused,
//! timeout, HTTP 5xx) after its retries. A node that answers with an error — a rejected block, a
//! bad parameter — is alive, so that answer closes the breaker like any other.

use std::time::Duration;

use tokio::time::Instant;

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive unreachable calls that open the breaker (0 counts as 1).
    pub failure_threshold: u32,
    /// How long an open breaker fails calls fast before it lets one trial call through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    /// Five failed calls open it for five seconds: long enough not to pile timeouts onto a dead
    /// node, short enough that miners get fresh jobs soon after it comes back.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
        }
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed {
        /// Consecutive unreachable calls so far (below the threshold).
        failures: u32,
    },
    /// Calls fail fast until `until`.
    Open {
        /// When the next call becomes the half-open trial.
        until: Instant,
        /// Consecutive unreachable calls that led here, for the error message.
        failures: u32,
    },
    /// One trial call is in flight; the others fail fast until it reports.
    HalfOpen {
        /// Consecutive unreachable calls before the trial.
        failures: u32,
    },
}

impl Default for BreakerState {
    /// Closed, with no failures.
    fn default() -> Self {
        Self::Closed { failures: 0 }
    }
}

/// The breaker's answer to a call that wants to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead (the breaker is closed).
    Allowed,
    /// Go ahead as the half-open trial; its outcome decides whether the breaker closes.
    Trial,
    /// Fail fast without calling the node.
    Rejected {
        /// Consecutive unreachable calls that opened the breaker.
        failures: u32,
        /// Time until the next trial; `None` while a trial is already in flight.
        retry_in: Option<Duration>,
    },
}

/// How an admitted call ended, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The node answered (with a result or with an error of its own).
    Reached,
    /// The node could not be reached, retries included.
    Unreachable,
    /// The call was dropped before it finished (its caller went away).
    Abandoned,
}

/// A call wants to start at `now`: the breaker's new state and its answer.
pub fn admit_call(state: BreakerState, now: Instant) -> (BreakerState, Admission) {
    match state {
        BreakerState::Closed { .. } => (state, Admission::Allowed),
        BreakerState::Open { until, failures } if now >= until => {
            (BreakerState::HalfOpen { failures }, Admission::Trial)
        }
        BreakerState::Open { until, failures } => (
            state,
            Admission::Rejected {
                failures,
                retry_in: Some(until - now),
            },
        ),
        BreakerState::HalfOpen { failures } => (
            state,
            Admission::Rejected {
                failures,
                retry_in: None,
            },
        ),
    }
}

/// An admitted call ended at `now` with `outcome`: the breaker's new state.
pub fn record_call(
    config: &BreakerConfig,
    state: BreakerState,
    outcome: CallOutcome,
    now: Instant,
) -> BreakerState {
    let open = |failures| BreakerState::Open {
        until: now + config.cool_down,
        failures,
    };
    match (state, outcome) {
        (_, CallOutcome::Reached) => BreakerState::Closed { failures: 0 },
        (BreakerState::Closed { failures }, CallOutcome::Unreachable) => {
            let failures = failures.saturating_add(1);
            if failures >= config.failure_threshold.max(1) {
                open(failures)
            } else {
                BreakerState::Closed { failures }
            }
        }
        (BreakerState::HalfOpen { failures }, CallOutcome::Unreachable) => {
            open(failures.saturating_add(1))
        }
        // A call admitted before the breaker opened failed late: the cool-down already runs.
        (BreakerState::Open { until, failures }, CallOutcome::Unreachable) => BreakerState::Open {
            until,
            failures: failures.saturating_add(1),
        },
        // The trial went away without an answer: the next call becomes the trial.
        (BreakerState::HalfOpen { failures }, CallOutcome::Abandoned) => BreakerState::Open {
            until: now,
            failures,
        },
        (BreakerState::Closed { .. } | BreakerState::Open { .. }, CallOutcome::Abandoned) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BreakerConfig = BreakerConfig {
        failure_threshold: 3,
        cool_down: Duration::from_secs(10),
    };

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    /// Admits a call and records its outcome at the same instant.
    fn call(state: BreakerState, outcome: CallOutcome, now: Instant) -> (BreakerState, Admission) {
        let (state, admission) = admit_call(state, now);
        match admission {
            Admission::Allowed | Admission::Trial => {
                (record_call(&CONFIG, state, outcome, now), admission)
            }
            Admission::Rejected { .. } => (state, admission),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_fails_fast_during_the_cool_down() {
        let t0 = Instant::now();
        let mut state = BreakerState::default();
        for n in 1..=2 {
            let (next, admission) = call(state, CallOutcome::Unreachable, secs(t0, n));
            assert_eq!(admission, Admission::Allowed);
            assert_eq!(next, BreakerState::Closed { failures: n as u32 });
            state = next;
        }
        let (state, admission) = call(state, CallOutcome::Unreachable, secs(t0, 3));
        assert_eq!(admission, Admission::Allowed);
        assert_eq!(
            state,
            BreakerState::Open {
                until: secs(t0, 13),
                failures: 3
            }
        );
        // Fast failures until the cool-down ends, counting down.
        for (at, left) in [(3, 10), (8, 5), (12, 1)] {
            assert_eq!(
                admit_call(state, secs(t0, at)),
                (
                    state,
                    Admission::Rejected {
                        failures: 3,
                        retry_in: Some(Duration::from_secs(left))
                    }
                )
            );
        }
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let (state, _) = call(BreakerState::default(), CallOutcome::Unreachable, t0);
        let (state, _) = call(state, CallOutcome::Unreachable, t0);
        let (state, _) = call(state, CallOutcome::Reached, t0);
        assert_eq!(state, BreakerState::Closed { failures: 0 });
        let (state, _) = call(state, CallOutcome::Unreachable, t0);
        let (state, _) = call(state, CallOutcome::Unreachable, t0);
        assert_eq!(state, BreakerState::Closed { failures: 2 });
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_outcome_decides() {
        let t0 = Instant::now();
        let open = BreakerState::Open {
            until: secs(t0, 10),
            failures: 3,
        };

        // At the end of the cool-down the first call is the trial, the next fails fast.
        let (half, admission) = admit_call(open, secs(t0, 10));
        assert_eq!(admission, Admission::Trial);
        assert_eq!(half, BreakerState::HalfOpen { failures: 3 });
        assert_eq!(
            admit_call(half, secs(t0, 11)).1,
            Admission::Rejected {
                failures: 3,
                retry_in: None
            }
        );

        // The trial reaches the node: closed.
        assert_eq!(
            record_call(&CONFIG, half, CallOutcome::Reached, secs(t0, 11)),
            BreakerState::Closed { failures: 0 }
        );
        // The trial fails: open for a whole new cool-down.
        let reopened = record_call(&CONFIG, half, CallOutcome::Unreachable, secs(t0, 12));
        assert_eq!(
            reopened,
            BreakerState::Open {
                until: secs(t0, 22),
                failures: 4
            }
        );
        assert!(matches!(
            admit_call(reopened, secs(t0, 21)).1,
            Admission::Rejected { .. }
        ));
        assert_eq!(admit_call(reopened, secs(t0, 22)).1, Admission::Trial);
    }

    #[test]
    fn an_abandoned_trial_hands_the_trial_to_the_next_call() {
        let t0 = Instant::now();
        let half = BreakerState::HalfOpen { failures: 3 };
        let state = record_call(&CONFIG, half, CallOutcome::Abandoned, secs(t0, 5));
        assert_eq!(admit_call(state, secs(t0, 5)).1, Admission::Trial);
        // Abandoning an ordinary call changes nothing.
        let closed = BreakerState::Closed { failures: 2 };
        assert_eq!(
            record_call(&CONFIG, closed, CallOutcome::Abandoned, t0),
            closed
        );
    }

    #[test]
    fn a_late_failure_does_not_extend_the_cool_down() {
        let t0 = Instant::now();
        let open = BreakerState::Open {
            until: secs(t0, 10),
            failures: 3,
        };
        assert_eq!(
            record_call(&CONFIG, open, CallOutcome::Unreachable, secs(t0, 4)),
            BreakerState::Open {
                until: secs(t0, 10),
                failures: 4
            }
        );
        // A late answer closes it: the node is evidently up.
        assert_eq!(
            record_call(&CONFIG, open, CallOutcome::Reached, secs(t0, 4)),
            BreakerState::Closed { failures: 0 }
        );
    }

    #[test]
    fn a_zero_threshold_opens_on_the_first_failure() {
        let t0 = Instant::now();
        let config = BreakerConfig {
            failure_threshold: 0,
            cool_down: Duration::from_secs(1),
        };
        assert_eq!(
            record_call(
                &config,
                BreakerState::default(),
                CallOutcome::Unreachable,
                t0
            ),
            BreakerState::Open {
                until: secs(t0, 1),
                failures: 1
            }
        );
    }
}
