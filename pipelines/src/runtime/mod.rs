//! The runtime: settings, what every pipeline shares (bus, tables, config), and the
//! supervisor that runs every registered pipeline instance until shutdown. It never names a
//! pipeline: they come from [`crate::catalog`].

pub mod fresh;
pub mod lease;
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod runner;
pub mod timer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use adit_bus::Publisher;
use adit_schemas::{ValidationPolicy, names};
use adit_sinks::{Maintenance, TableStore};
use async_nats::jetstream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Runnable};
use crate::control::curtailment::CurtailmentConfig;
use crate::error::{Disposition, Result};
use crate::farm::detector::DetectConfig;
use crate::farm::energy::EnergyConfig;
use crate::farm::violations::ViolationsConfig;
use crate::pool::hashrate::HashrateConfig;
use crate::pool::pplns::PplnsConfig;

/// Pipeline settings; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelinesConfig {
    /// A batch closes at this many messages...
    pub batch_max_rows: usize,
    /// ...or this long after its first message.
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// A pipeline instance's lease lives this long without renewal; a standby takes over
    /// within about this long after its holder dies.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// An instance whose oldest uncommitted message was stored longer ago than this is
    /// stalled: `/ready` answers 503 naming it (`lag:<instance>`) until it catches up.
    #[serde(with = "humantime_serde")]
    pub max_lag: Duration,
    /// Pipelines run as one instance per listed key (a site or pool), each with its own
    /// position and lease: `telemetry = ["site-01", "site-02"]`. Only the keys listed are read.
    pub partitions: BTreeMap<String, Vec<String>>,
    /// Table compaction and vacuum.
    pub maintenance: Maintenance,
    /// The energy pipeline.
    pub energy: EnergyConfig,
    /// PPLNS payouts.
    pub pplns: PplnsConfig,
    /// Effective hashrate tables.
    pub hashrate: HashrateConfig,
    /// Violations of the registry's limits.
    pub violations: ViolationsConfig,
    /// Anomaly detection.
    pub anomalies: DetectConfig,
    /// The curtailment and cooling controller.
    pub curtailment: CurtailmentConfig,
}

impl Default for PipelinesConfig {
    fn default() -> Self {
        Self {
            batch_max_rows: 20_000,
            batch_max_wait: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(10),
            max_lag: Duration::from_secs(300),
            partitions: BTreeMap::new(),
            maintenance: Maintenance::default(),
            energy: EnergyConfig::default(),
            pplns: PplnsConfig::default(),
            hashrate: HashrateConfig::default(),
            violations: ViolationsConfig::default(),
            anomalies: DetectConfig::default(),
            curtailment: CurtailmentConfig::default(),
        }
    }
}

/// A config value that cannot work, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidConfig {
    /// Dotted key, e.g. `pipelines.energy.tick`.
    pub key: String,
    /// Why.
    pub reason: String,
}

fn invalid(key: &str, reason: impl Into<String>) -> InvalidConfig {
    InvalidConfig {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl PipelinesConfig {
    /// Every value checked, after all overrides; the first problem found, naming its key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.batch_max_rows == 0 {
            return Err(invalid("pipelines.batch_max_rows", "must be at least 1"));
        }
        if self.batch_max_wait.is_zero() {
            return Err(invalid("pipelines.batch_max_wait", "must be more than 0"));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(invalid("pipelines.lease_ttl", "must be at least 1s"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(7 * 86_400)).contains(&self.max_lag) {
            return Err(invalid("pipelines.max_lag", "must be 1s to 7 days"));
        }
        self.pplns.validate()?;
        self.hashrate.validate()?;
        self.violations.validate()?;
        self.anomalies.validate()?;
        self.curtailment.validate()?;
        let pipelines = catalog::all(self);
        let known: Vec<String> = pipelines.iter().map(|p| p.name()).collect();
        for (pipeline, keys) in &self.partitions {
            let key = format!("pipelines.partitions.{pipeline}");
            if !known.contains(pipeline) {
                return Err(invalid(
                    &key,
                    format!("no such pipeline (pipelines: {})", known.join(", ")),
                ));
            }
            let spec = pipelines
                .iter()
                .find(|p| &p.name() == pipeline)
                .map(|p| p.spec());
            if let Some(input) = spec
                .iter()
                .flat_map(|s| s.inputs.iter())
                .find(|i| i.partitioned.is_none())
            {
                return Err(invalid(
                    &key,
                    format!("its input {} cannot be partitioned", input.name),
                ));
            }
            if keys.is_empty() {
                return Err(invalid(
                    &key,
                    "list at least one partition key, or remove the entry",
                ));
            }
            for k in keys {
                if !names::is_token(k) {
                    return Err(invalid(
                        &key,
                        format!("{k:?} is not a subject token (1–64 of A-Z a-z 0-9 _ -)"),
                    ));
                }
            }
            let mut sorted = keys.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != keys.len() {
                return Err(invalid(&key, "lists a key twice"));
            }
        }
        self.maintenance
            .validate()
            .map_err(|reason| invalid("pipelines.maintenance", reason))?;
        self.energy.validate()
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
    /// This process's name on the leases it holds (host, pid and a random part).
    pub holder: String,
    /// Where each pipeline instance's supervisor reports whether it runs, and the lag watch
    /// whether it keeps up (read by `/ready`).
    pub vitals: adit_supervise::Vitals,
    /// The instances this process runs, for the lag watch.
    pub progress: crate::runtime::progress::Progress,
}

/// A holder name unique to this process.
pub fn holder_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

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
                let wait = delays.next().unwrap_or(Duration::from_secs(10));
                if matches!(e, crate::Error::LeaseLost { .. }) {
                    tracing::info!(pipeline = name, "lease lost; standing by");
                    delays = backoff();
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

/// Creates the lease bucket: a KV bucket whose keys expire `ttl` after their last write.
pub async fn ensure_lease_bucket(
    js: &jetstream::Context,
    ttl: Duration,
    replicas: usize,
) -> Result<()> {
    adit_bus::setup::ensure_bucket(js, names::KV_LEASES, 1, Some(ttl), replicas).await?;
    Ok(())
}

/// Runs every registered pipeline instance until `shutdown`; returns the first error that
/// stops one.
pub async fn run_all(ctx: PipelineContext, shutdown: CancellationToken) -> Result<()> {
    // The lease bucket is created at start with the streams' replicas (`ensure_lease_bucket`);
    // creating it here at one replica would shrink a cluster's.
    let mut tasks = tokio::task::JoinSet::new();
    {
        // The lag watch, restarted like an instance if it panics.
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        tasks.spawn(async move {
            let vitals = ctx.vitals.clone();
            let policy = adit_supervise::Policy::default();
            adit_supervise::supervise("lag-watch", &vitals, policy, || {
                crate::runtime::progress::watch(ctx.clone(), shutdown.clone())
            })
            .await
            .map(|_| ())
            .map_err(|gave_up| crate::Error::Panicked(gave_up.to_string()))
        });
    }
    for pipeline in catalog::all(&ctx.config) {
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
