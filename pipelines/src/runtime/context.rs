//! What every pipeline instance is given: the runtime's settings, checked, and the context
//! (bus, tables, validation, lease holder name, vitals) passed explicitly to each.

use std::collections::BTreeMap;
use std::time::Duration;

use adit_bus::Publisher;
use adit_config::{Checked, check};
use adit_schemas::ValidationPolicy;
use adit_sinks::{Maintenance, TableStore};
use async_nats::jetstream;

/// The runtime's own settings (the `[pipelines]` keys that are not one pipeline's), taken
/// from the pipelines' config by [`crate::catalog::PipelinesConfig::runtime`].
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// A batch closes at this many messages (a backlog is landed in batches this big: fewer
    /// commits per event; at a steady rate a batch closes at `batch_max_wait` first)...
    pub batch_max_rows: usize,
    /// ...or this long after its first message.
    pub batch_max_wait: Duration,
    /// A pipeline instance's lease lives this long without renewal.
    pub lease_ttl: Duration,
    /// An instance whose oldest uncommitted message was stored longer ago than this is stalled.
    pub max_lag: Duration,
    /// The partition keys each partitioned pipeline runs one instance per.
    pub partitions: BTreeMap<String, Vec<String>>,
    /// Table compaction and vacuum.
    pub maintenance: Maintenance,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            // `adit bench ingest` (200 000-event backlog, 2 cores, four runs each): 50 000
            // landed at 0.77 of a raw consume on average (0.69–0.83), 20 000 at 0.74
            // (0.63–0.79): within this machine's noise (ahead in both alternated pairs), with
            // 2.5× fewer commits and files; 100 000 fell to 0.65 (two batches: too little
            // overlap of reading and writing). Issue 29.
            batch_max_rows: 50_000,
            batch_max_wait: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(10),
            max_lag: Duration::from_secs(300),
            partitions: BTreeMap::new(),
            maintenance: Maintenance::default(),
        }
    }
}

impl RuntimeConfig {
    /// Every value checked; the first problem found, naming its key. Which pipelines exist is
    /// the catalog's to check ([`crate::catalog::PipelinesConfig::validate`]).
    pub fn validate(&self) -> Checked {
        check(
            self.batch_max_rows > 0,
            "pipelines.batch_max_rows",
            "must be at least 1",
        )?;
        check(
            !self.batch_max_wait.is_zero(),
            "pipelines.batch_max_wait",
            "must be more than 0",
        )?;
        check(
            self.lease_ttl >= Duration::from_secs(1),
            "pipelines.lease_ttl",
            "must be at least 1s",
        )?;
        check(
            (Duration::from_secs(1)..=Duration::from_secs(7 * 86_400)).contains(&self.max_lag),
            "pipelines.max_lag",
            "must be 1s to 7 days",
        )?;
        self.maintenance
            .validate()
            .map_err(|e| e.under("pipelines.maintenance"))
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
    /// The runtime's settings.
    pub config: RuntimeConfig,
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
