//! Stalls of the process's runtime: a tick every [`TICK`] measures how late it runs. A tick
//! more than [`STALL`] late means nothing on the runtime ran for that long (every worker held by
//! one long poll, or the process not scheduled at all), and everything on it waited: NATS
//! heartbeats look missed, lease renewals go unanswered and are given up. Each stall is logged
//! with its length and counted (`adit_runtime_stalls_total`, `adit_runtime_longest_stall_seconds`),
//! so a lost lease or a consumer error can be told from a silent server.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How often the runtime is asked to run the watch.
pub const TICK: Duration = Duration::from_millis(100);

/// Lateness that counts as a stall.
pub const STALL: Duration = Duration::from_secs(1);

/// How late a tick asked for at `asked`, due `TICK` after it, ran at `ran`; none while on time.
pub fn stall(asked: Instant, ran: Instant) -> Option<Duration> {
    let late = ran.saturating_duration_since(asked + TICK);
    (late >= STALL).then_some(late)
}

/// Ticks until `shutdown`, logging and counting each stall.
pub async fn watch(shutdown: CancellationToken) -> Result<(), std::convert::Infallible> {
    let mut longest = Duration::ZERO;
    ticks(shutdown, |late| {
        longest = longest.max(late);
        metrics::counter!("adit_runtime_stalls_total").increment(1);
        metrics::gauge!("adit_runtime_longest_stall_seconds").set(longest.as_secs_f64());
        tracing::warn!(
            stalled_ms = late.as_millis() as u64,
            "the runtime ran nothing for a while: every task on it (NATS heartbeats, lease renewals) waited"
        );
    })
    .await;
    Ok(())
}

/// Ticks until `shutdown`, handing each stall to `stalled`.
async fn ticks(shutdown: CancellationToken, mut stalled: impl FnMut(Duration)) {
    loop {
        let asked = Instant::now();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        if let Some(late) = stall(asked, Instant::now()) {
            stalled(late);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tick_late_by_the_stall_or_more_is_one() {
        let asked = Instant::now();
        assert_eq!(stall(asked, asked + TICK), None);
        assert_eq!(stall(asked, asked), None, "early is not late");
        assert_eq!(stall(asked, asked + TICK + STALL / 2), None);
        assert_eq!(stall(asked, asked + TICK + STALL), Some(STALL));
        let long = Duration::from_secs(12);
        assert_eq!(stall(asked, asked + TICK + long), Some(long));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_poll_that_holds_the_runtime_is_one_stall_of_its_length() {
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watch = tokio::spawn(ticks(shutdown.clone(), move |late| {
            tx.send(late).unwrap();
        }));
        // Let the watch ask for a tick, then hold the runtime's only thread past a stall.
        tokio::time::sleep(TICK / 2).await;
        let held = STALL + TICK * 3;
        std::thread::sleep(held);
        tokio::time::sleep(TICK * 3).await;
        shutdown.cancel();
        watch.await.unwrap();
        let stalls: Vec<Duration> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        // The hold is one stall at least its length (a busy machine may add time, or a stall
        // of its own, but never shorten this one).
        assert!(
            stalls.first().is_some_and(|s| *s >= held - TICK),
            "{stalls:?}"
        );
    }
}
