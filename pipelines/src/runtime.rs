//! The runtime: what every pipeline shares (bus, tables, config) and the supervisor that runs
//! them all until shutdown.

use std::time::Duration;

use adit_ingest::Publisher;
use adit_schemas::{EventKind, ValidationPolicy, names};
use adit_sinks::{Maintenance, TableStore};
use async_nats::jetstream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::energy::{EnergyConfig, run_energy};
use crate::error::{Disposition, Result};
use crate::landing::{LandingSpec, run_landing};

/// Pipeline settings; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelinesConfig {
    /// A batch closes at this many messages...
    pub batch_max_rows: usize,
    /// ...or this long after its first message.
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// Table compaction and vacuum.
    pub maintenance: Maintenance,
    /// The energy pipeline.
    pub energy: EnergyConfig,
}

impl Default for PipelinesConfig {
    fn default() -> Self {
        Self {
            batch_max_rows: 20_000,
            batch_max_wait: Duration::from_millis(500),
            maintenance: Maintenance::default(),
            energy: EnergyConfig::default(),
        }
    }
}

/// What every pipeline needs, passed explicitly.
#[derive(Clone)]
pub struct PipelineContext {
    /// JetStream.
    pub js: jetstream::Context,
    /// Publishes dead letters and results.
    pub publisher: Publisher,
    /// Where tables live.
    pub store: TableStore,
    /// Settings.
    pub config: PipelinesConfig,
    /// Validation limits for incoming events.
    pub policy: ValidationPolicy,
}

/// The landing pipelines: which stream, which kinds.
pub fn landing_specs() -> Vec<LandingSpec> {
    vec![
        LandingSpec {
            name: "telemetry".into(),
            stream: names::STREAM_TELEMETRY.into(),
            kinds: vec![
                EventKind::Energy,
                EventKind::Sensor,
                EventKind::Miner,
                EventKind::Hashrate,
            ],
        },
        LandingSpec {
            name: "grid".into(),
            stream: names::STREAM_GRID.into(),
            kinds: vec![EventKind::Grid],
        },
        LandingSpec {
            name: "shares".into(),
            stream: names::STREAM_MINING.into(),
            kinds: vec![EventKind::Share, EventKind::Block],
        },
    ]
}

/// Runs `step` until it finishes or `shutdown` fires, retrying errors whose disposition is
/// [`Disposition::Retry`] with a capped backoff; a `Stop` error is returned.
pub async fn supervise<F, Fut>(name: &str, shutdown: CancellationToken, mut step: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut failures = 0u32;
    loop {
        match step().await {
            Ok(()) => return Ok(()),
            Err(e) if e.disposition() == Disposition::Stop => return Err(e),
            Err(e) => {
                failures += 1;
                let wait = Duration::from_millis(200 * u64::from(failures.min(25)));
                tracing::warn!(pipeline = name, error = %e, retry_in = ?wait, "pipeline failed, restarting from its last commit");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Runs every pipeline until `shutdown`; returns the first error that stops one.
pub async fn run_all(ctx: PipelineContext, shutdown: CancellationToken) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for spec in landing_specs() {
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        tasks.spawn(async move {
            let name = spec.name.clone();
            supervise(&name, shutdown.clone(), || {
                run_landing(&ctx, &spec, shutdown.clone())
            })
            .await
        });
    }
    {
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        tasks.spawn(async move {
            supervise("energy", shutdown.clone(), || {
                run_energy(&ctx, shutdown.clone())
            })
            .await
        });
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
