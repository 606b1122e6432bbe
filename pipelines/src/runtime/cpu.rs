//! Long computations inside a pipeline's step, held off the runtime's workers. A step runs on
//! the process's runtime, beside the NATS connection, the lease renewals and the consumers'
//! heartbeats; a computation that holds a worker for seconds (the anomaly detector over a
//! farm of thousands of machines, a large state's snapshot) holding both of a two-core
//! machine's workers stopped all of them at once (`adit::stalls` measured up to 2.5 s; a 10 s
//! one lost every lease). [`in_place`] tells the runtime first, so it hands this worker's other
//! tasks to another thread while the computation runs.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f` on this thread after telling a multi-threaded runtime that it will block (its
/// other tasks move to another worker meanwhile); on a single-threaded runtime, or outside
/// one, it just runs `f`.
pub fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn outside_a_runtime_and_on_a_single_thread_it_just_runs() {
        assert_eq!(in_place(|| 7), 7);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(async { in_place(|| 8) }), 8);
    }

    #[test]
    fn a_long_computation_leaves_the_runtimes_other_tasks_running() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let ticks = Arc::new(AtomicU32::new(0));
        let counted = ticks.clone();
        let during = rt.block_on(async move {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
            // On the runtime's only worker, as a step's computation is.
            tokio::spawn(async move {
                let before = ticks.load(Ordering::Relaxed);
                in_place(|| std::thread::sleep(Duration::from_millis(500)));
                ticks.load(Ordering::Relaxed) - before
            })
            .await
            .unwrap()
        });
        // 0 when the computation holds the only worker; a busy machine may slow the ticker,
        // not stop it.
        assert!(during >= 3, "the ticker ran {during} times in 500 ms");
    }
}
