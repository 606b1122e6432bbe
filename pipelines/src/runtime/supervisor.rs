//! The supervisor: every instance of every pipeline it is given, each restarted from its
//! last commit after an error and counted when it panics, until shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::error::{Disposition, Result};
use crate::runtime::context::PipelineContext;
use crate::runtime::progress::LagWatch;
use crate::runtime::runnable::Runnable;

pub use adit_bus::setup::backoff;

/// Runs `step` until it finishes or `shutdown` fires, retrying errors whose disposition is
/// [`Disposition::Retry`] with [`backoff`]; a `Stop` error is returned.
pub async fn supervise<F, Fut>(name: &str, shutdown: CancellationToken, mut step: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut delays = backoff();
    loop {
        match step().await {
            Ok(()) => return Ok(()),
            Err(e) if e.disposition() == Disposition::Stop => return Err(e),
            Err(e) => {
                let wait = delays.next_wait();
                if matches!(e, crate::Error::Bus(adit_bus::Error::LeaseLost { .. })) {
                    tracing::info!(pipeline = name, "lease lost; standing by");
                    delays.reset();
                } else {
                    tracing::warn!(pipeline = name, error = %e, retry_in = ?wait, "pipeline failed, restarting from its last commit");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Runs every instance of `pipelines` until `shutdown`; returns the first error that stops one.
pub async fn run_all(
    ctx: PipelineContext,
    pipelines: Vec<Arc<dyn Runnable>>,
    shutdown: CancellationToken,
) -> Result<()> {
    // The lease bucket is created at start with the streams' replicas (`ensure_lease_bucket`);
    // creating it here at one replica would shrink a cluster's.
    let mut tasks = tokio::task::JoinSet::new();
    {
        // The lag watch, restarted like an instance if it panics.
        let shutdown = shutdown.clone();
        let watched = LagWatch {
            js: ctx.js.clone(),
            holder: ctx.holder.clone(),
            max_lag: ctx.config.max_lag,
            progress: ctx.progress.clone(),
            vitals: ctx.vitals.clone(),
        };
        tasks.spawn(async move {
            let vitals = watched.vitals.clone();
            let policy = adit_supervise::Policy::default();
            adit_supervise::supervise("lag-watch", &vitals, policy, || {
                crate::runtime::progress::watch(watched.clone(), shutdown.clone())
            })
            .await
            .map(|_| ())
            .map_err(|gave_up| crate::Error::Panicked(gave_up.to_string()))
        });
    }
    for pipeline in pipelines {
        let name = pipeline.name();
        let partitions: Vec<Option<String>> = match ctx.config.partitions.get(&name) {
            Some(keys) => keys.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        for partition in partitions {
            let (ctx, shutdown, pipeline): (_, _, Arc<dyn Runnable>) =
                (ctx.clone(), shutdown.clone(), pipeline.clone());
            let instance = crate::runtime::runner::instance_name(&name, partition.as_deref());
            let part = format!("pipeline:{instance}");
            let vitals = ctx.vitals.clone();
            // Errors are retried from the last commit inside; a panic (a bug) restarts the
            // instance the same way, counted and shown by `/ready`, until it keeps panicking.
            tasks.spawn(async move {
                let policy = adit_supervise::Policy::default();
                adit_supervise::supervise(&part, &vitals, policy, || {
                    let (ctx, pipeline, partition, shutdown, instance) = (
                        ctx.clone(),
                        pipeline.clone(),
                        partition.clone(),
                        shutdown.clone(),
                        instance.clone(),
                    );
                    async move {
                        supervise(&instance, shutdown.clone(), || {
                            pipeline.run(&ctx, partition.as_deref(), &shutdown)
                        })
                        .await
                    }
                })
                .await
                .map_err(|gave_up| crate::Error::Panicked(gave_up.to_string()))?
            });
        }
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "pipeline stopped");
                shutdown.cancel();
                result = result.and(Err(e));
            }
            Err(join) => {
                tracing::error!(error = %join, "pipeline task panicked");
                shutdown.cancel();
                result = result.and(Err(crate::Error::Panicked(join.to_string())));
            }
        }
    }
    result
}
