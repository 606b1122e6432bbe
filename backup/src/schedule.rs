//! The `backup` role: a backup every `every`, the newest `keep` kept, interrupted ones
//! removed; a failure is logged and counted (`adit_backup_failures_total`) and tried again
//! sooner, and `adit_backup_last_success_seconds` tells a rule when backups stopped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use adit_config::{Checked, check};
use adit_sinks::TableStore;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::location::Location;
use crate::take::{Source, new_id, take};

/// `[backup]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups go: a folder or an object-store URL (`s3://bucket/prefix`).
    pub to: Option<String>,
    /// How often the `backup` role takes one.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// How many complete backups to keep.
    pub keep: usize,
    /// Keep the config's secrets in the backup instead of redacting them.
    pub with_secrets: bool,
    /// Object-store options for `to` (credentials, endpoint, region…).
    pub options: HashMap<String, String>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            to: None,
            every: Duration::from_secs(24 * 3600),
            keep: 7,
            with_secrets: false,
            options: HashMap::new(),
        }
    }
}

impl BackupConfig {
    /// Checks the values; the key is the full one (`backup.every`), so the caller adds no
    /// prefix.
    pub fn validate(&self) -> Checked {
        check(
            self.every >= Duration::from_secs(60),
            "backup.every",
            format!("must be at least 1m, not {:?}", self.every),
        )?;
        check(self.keep != 0, "backup.keep", "must be at least 1")?;
        check(
            !self.to.as_deref().is_some_and(|t| t.trim().is_empty()),
            "backup.to",
            "must not be empty",
        )
    }
}

/// What the role needs.
pub struct Scheduled {
    /// `[backup]` (with `to` set).
    pub config: BackupConfig,
    /// The NATS connection.
    pub client: async_nats::Client,
    /// The table root.
    pub tables: TableStore,
    /// The config file the process runs with.
    pub config_file: Option<PathBuf>,
}

/// Runs the role until `shutdown`.
pub async fn run(job: Scheduled, to: String, shutdown: CancellationToken) -> Result<()> {
    let location = Location::open(&to, job.config.options.clone())?.encrypted_like(&job.tables);
    let mut wait = first_wait(&location, job.config.every).await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        wait = match once(&job, &location).await {
            Ok(id) => {
                tracing::info!(backup = %id, to = %to, "backup taken");
                metrics::gauge!("adit_backup_last_success_seconds")
                    .set(chrono::Utc::now().timestamp() as f64);
                job.config.every
            }
            Err(e) => {
                tracing::error!(error = %e, to = %to, "backup failed; trying again in 10 minutes");
                metrics::counter!("adit_backup_failures_total").increment(1);
                job.config.every.min(Duration::from_secs(600))
            }
        };
    }
}

/// Until the first backup: `every` after the newest one, or now when there is none.
async fn first_wait(location: &Location, every: Duration) -> Duration {
    let Ok(mut ids) = location.backups().await else {
        return Duration::ZERO;
    };
    let Some(newest) = ids.pop() else {
        return Duration::ZERO;
    };
    match taken_at(&newest) {
        Some(at) => {
            let age = (chrono::Utc::now() - at).to_std().unwrap_or(Duration::ZERO);
            every.saturating_sub(age)
        }
        None => Duration::ZERO,
    }
}

/// When backup `id` (`adit-<UTC time>`) was taken.
pub(crate) fn taken_at(id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let time = id.strip_prefix("adit-")?;
    chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Takes one backup and prunes the old ones.
async fn once(job: &Scheduled, location: &Location) -> Result<String> {
    let id = new_id();
    let backup = location.backup(&id)?;
    let source = Source {
        client: &job.client,
        tables: &job.tables,
        config_file: job.config_file.as_deref(),
        with_secrets: job.config.with_secrets,
    };
    let manifest = take(&source, &backup.place).await?;
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    metrics::gauge!("adit_backup_bytes").set(bytes as f64);
    for old in location.unfinished().await? {
        if old < id {
            location.delete(&old).await?;
        }
    }
    let complete = location.backups().await?;
    let excess = complete.len().saturating_sub(job.config.keep);
    for old in &complete[..excess] {
        location.delete(old).await?;
        tracing::info!(backup = %old, "old backup deleted");
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_is_named_by_its_full_key() {
        assert_eq!(BackupConfig::default().validate(), Ok(()));
        let often = BackupConfig {
            every: Duration::from_secs(1),
            ..BackupConfig::default()
        };
        assert_eq!(
            often.validate().unwrap_err().to_string(),
            "backup.every: must be at least 1m, not 1s"
        );
        let none = BackupConfig {
            keep: 0,
            ..BackupConfig::default()
        };
        assert_eq!(none.validate().unwrap_err().key, "backup.keep");
        let blank = BackupConfig {
            to: Some(" ".into()),
            ..BackupConfig::default()
        };
        assert_eq!(blank.validate().unwrap_err().key, "backup.to");
    }
}
