//! The process's and the host's vital signs (`[health]`, issue 25), sampled every
//! `sample_every`: the process's CPU time, memory, threads and open files (`metrics-process`),
//! the free space of the volumes adit writes (the table root when it is a folder, the data
//! folder with the managed NATS store), and each JetStream stream's messages and bytes. A volume
//! under its free-space threshold is reported down in the vitals, so `/ready` answers 503
//! naming it (`disk:tables`) before a full disk stops ingest; it is up again once there is room.
//! So is the pool's node while its client cannot reach it (`node`), and, in a process that
//! writes tables, the table root while a small object cannot be written and removed there
//! (`tables`: a read-only, unmounted or unreachable store). Beside them: the host's CPU, memory,
//! load, disks and network (`crate::host`) and how many records of each kind the registry holds.

use std::path::PathBuf;
use std::time::Duration;

use adit_config::{Checked, check};
use serde::Deserialize;
use strum::IntoEnumIterator;
use tokio_util::sync::CancellationToken;

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often the vital signs are read (1s to 10m).
    #[serde(with = "humantime_serde")]
    pub sample_every: Duration,
    /// A volume with less free space than this is down (bytes).
    pub min_free_bytes: u64,
    /// A volume with less than this share of its size free is down (0 to 0.5).
    pub min_free_ratio: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            sample_every: Duration::from_secs(15),
            min_free_bytes: 1 << 30,
            min_free_ratio: 0.02,
        }
    }
}

impl HealthConfig {
    /// Checks every value, naming the key.
    pub fn validate(&self) -> Checked {
        check(
            (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.sample_every),
            "health.sample_every",
            "must be 1s to 10m",
        )?;
        check(
            (0.0..=0.5).contains(&self.min_free_ratio),
            "health.min_free_ratio",
            format!("must be 0 to 0.5, not {}", self.min_free_ratio),
        )
    }

    /// Why a volume with `free` of `total` bytes is short of room, if it is.
    fn shortage(&self, free: u64, total: u64) -> Option<String> {
        let ratio = if total == 0 {
            0.0
        } else {
            free as f64 / total as f64
        };
        (free < self.min_free_bytes || ratio < self.min_free_ratio).then(|| {
            format!(
                "{free} bytes free of {total} ({:.1} %), under health.min_free_bytes {} or health.min_free_ratio {}",
                ratio * 100.0,
                self.min_free_bytes,
                self.min_free_ratio
            )
        })
    }
}

/// What the sampler watches.
pub struct Watched {
    /// Volumes by name (`tables`, `data`) and a folder on each.
    pub volumes: Vec<(&'static str, PathBuf)>,
    /// JetStream, for the streams' sizes (none: not read).
    pub js: Option<async_nats::jetstream::Context>,
    /// The pool's node, reported as the part `node` (none: this process runs no pool).
    pub node: Option<adit_stratum::Node>,
    /// The table root and this process's probe name, reported as the part `tables` (none:
    /// this process writes no table).
    pub tables: Option<(adit_sinks::TableStore, String)>,
}

/// How long a write to the table root may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Samples until `shutdown`.
pub async fn run(
    config: HealthConfig,
    watched: Watched,
    vitals: adit_supervise::Vitals,
    shutdown: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let process = metrics_process::Collector::default();
    process.describe();
    let mut host = crate::host::Host::new();
    let mut registry = None;
    let mut tick = tokio::time::interval(config.sample_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        process.collect();
        host.sample();
        for (volume, path) in &watched.volumes {
            let state = disk(&config, volume, path);
            let was_up = vitals.report(&format!("disk:{volume}"), state.clone());
            match (&state, was_up) {
                (Err(reason), true) => {
                    tracing::warn!(volume, path = %path.display(), %reason, "a volume adit writes is nearly full: /ready says so until there is room");
                }
                (Ok(()), false) => {
                    tracing::info!(volume, path = %path.display(), "a volume adit writes has room again");
                }
                _ => {}
            }
        }
        if let Some((store, name)) = &watched.tables {
            let state = writable(store, name).await;
            match (&state, vitals.report("tables", state.clone())) {
                (Err(reason), true) => {
                    tracing::warn!(root = %store.root(), %reason, "the table root cannot be written: /ready says so until it can");
                }
                (Ok(()), false) => {
                    tracing::info!(root = %store.root(), "the table root can be written again")
                }
                _ => {}
            }
        }
        if let Some(node) = &watched.node {
            vitals.report("node", node.reachable());
        }
        if let Some(js) = &watched.js {
            streams(js).await;
            registered(js, &mut registry).await;
        }
    }
}

/// Sets `adit_registry_records` for each kind of record (sites, pools, machines, sensors,
/// meters): what the registry holds now. The registry is opened on first use; a process whose
/// NATS has no registry bucket yet tries again at the next sample.
async fn registered(
    js: &async_nats::jetstream::Context,
    registry: &mut Option<adit_bus::registry::Registry>,
) {
    if registry.is_none() {
        *registry = adit_bus::registry::Registry::open(js.clone()).await.ok();
    }
    let Some(open) = registry else { return };
    match open.snapshot().await {
        Ok(records) => {
            for kind in adit_schemas::registry::RecordKind::iter() {
                let n = records
                    .iter()
                    .filter(|(_, v)| v.record.kind() == kind)
                    .count();
                metrics::gauge!("adit_registry_records", "kind" => kind.plural()).set(n as f64);
            }
        }
        Err(e) => tracing::debug!(error = %e, "registry not counted this time"),
    }
}

/// Whether the table root takes a write now.
pub(crate) async fn writable(store: &adit_sinks::TableStore, name: &str) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, store.probe_write(name)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "a write to {} took over {PROBE_TIMEOUT:?}",
            store.root()
        )),
    }
}

/// One volume's free space as gauges, and whether it has room. A folder not made yet is
/// measured on the nearest one that exists (the volume it will be made on).
fn disk(config: &HealthConfig, volume: &'static str, path: &std::path::Path) -> Result<(), String> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(std::path::Path::new("/"));
    let stats = fs4::statvfs(existing).map_err(|e| format!("{}: {e}", existing.display()))?;
    let (free, total) = (stats.available_space(), stats.total_space());
    metrics::gauge!("adit_disk_free_bytes", "volume" => volume).set(free as f64);
    metrics::gauge!("adit_disk_total_bytes", "volume" => volume).set(total as f64);
    config.shortage(free, total).map_or(Ok(()), Err)
}

/// Each stream's messages and bytes as gauges; a stream that cannot be read is logged.
async fn streams(js: &async_nats::jetstream::Context) {
    for (name, _) in adit_schemas::names::STREAMS {
        let info = match js.get_stream(*name).await {
            Ok(mut stream) => stream.info().await.map(|i| i.state.clone()),
            Err(e) => {
                tracing::debug!(stream = name, error = %e, "stream not readable for its size");
                continue;
            }
        };
        match info {
            Ok(state) => {
                metrics::gauge!("adit_stream_messages", "stream" => *name)
                    .set(state.messages as f64);
                metrics::gauge!("adit_stream_bytes", "stream" => *name).set(state.bytes as f64);
            }
            Err(e) => tracing::debug!(stream = name, error = %e, "stream size not read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_is_short_by_bytes_or_by_share() {
        let config = HealthConfig {
            min_free_bytes: 1_000,
            min_free_ratio: 0.1,
            ..HealthConfig::default()
        };
        assert_eq!(config.shortage(5_000, 10_000), None);
        assert!(config.shortage(999, 5_000).is_some(), "under the bytes");
        let by_share = config.shortage(5_000, 100_000).unwrap();
        assert!(by_share.contains("5.0 %"), "{by_share}");
        assert!(config.shortage(0, 0).is_some());
    }

    #[test]
    fn the_real_disk_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let roomy = HealthConfig {
            min_free_bytes: 0,
            min_free_ratio: 0.0,
            ..HealthConfig::default()
        };
        assert_eq!(disk(&roomy, "tables", dir.path()), Ok(()));
        // Not made yet: measured where it will be.
        assert_eq!(
            disk(&roomy, "tables", &dir.path().join("later/tables")),
            Ok(())
        );
        let greedy = HealthConfig {
            min_free_bytes: u64::MAX,
            ..roomy
        };
        let reason = disk(&greedy, "tables", dir.path()).unwrap_err();
        assert!(reason.contains("bytes free of"), "{reason}");
    }
}
