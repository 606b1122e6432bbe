//! A tokio runtime of the engine's own for planning and executing statements (InfluxDB 3's
//! "dedicated executor"): CPU-heavy DataFusion work runs on its threads, never on the threads
//! that serve HTTP, Stratum or the pipelines. A [`Task`] is aborted when it is dropped, so a
//! statement whose caller stops waiting (time limit, client gone) stops at its next yield.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::error::{Result, SqlError};

/// The engine's runtime.
pub(crate) struct Executor {
    /// Where tasks are spawned.
    handle: Handle,
    /// The runtime itself, shut down in the background when the engine goes (dropping a
    /// runtime inside another one would panic).
    runtime: Option<Runtime>,
}

impl Executor {
    /// The workers a runtime of `threads` has (0: one per core).
    pub(crate) fn workers(threads: usize) -> usize {
        if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        }
    }

    /// A runtime of `threads` workers (0: one per core) named `name`; if the system refuses
    /// threads, the caller's runtime is used instead.
    pub(crate) fn new(name: &str, threads: usize) -> Self {
        let threads = Self::workers(threads);
        match Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            // Planning and evaluating walk a statement's tree recursively: a stack that holds
            // the deepest statement the limits allow (crate::syntax).
            .thread_stack_size(crate::syntax::STACK_BYTES)
            .enable_all()
            .build()
        {
            Ok(runtime) => Self {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no runtime of its own for SQL; sharing the caller's");
                Self {
                    handle: Handle::current(),
                    runtime: None,
                }
            }
        }
    }

    /// Whether its workers are threads of its own (with [`crate::syntax::STACK_BYTES`]
    /// stacks), not the caller's runtime's.
    pub(crate) fn owns_threads(&self) -> bool {
        self.runtime.is_some()
    }

    /// Runs `fut` on the engine's runtime.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        Task(self.handle.spawn(fut))
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A statement running on the engine's runtime; dropping it aborts the statement.
pub(crate) struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| {
            r.map_err(|e| {
                SqlError::Engine(datafusion::error::DataFusionError::External(Box::new(e)))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_dropped_task_stops() {
        let executor = Executor::new("test", 1);
        let stopped = Arc::new(AtomicBool::new(true));
        let flag = stopped.clone();
        let task = executor.spawn(async move {
            struct Guard(Arc<AtomicBool>);
            impl Drop for Guard {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            flag.store(false, Ordering::SeqCst);
            let _guard = Guard(flag);
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!stopped.load(Ordering::SeqCst), "running");
        drop(task);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(stopped.load(Ordering::SeqCst), "aborted when dropped");
        assert_eq!(executor.spawn(async { 7 }).await.unwrap(), 7);
    }
}
