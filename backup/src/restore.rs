//! Restoring a backup into a NATS and a table root that hold none of its data: verified first,
//! refused before anything changes when a stream, table or pipeline record it would overwrite
//! holds data (unless asked to replace them), then tables and records, then streams.

use adit_sinks::TableStore;

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::place::Place;
use crate::tables::RECORDS;
use crate::{streams, tables, verify};

/// Where a restore writes.
pub struct Target<'a> {
    /// The NATS connection.
    pub client: &'a async_nats::Client,
    /// The table root.
    pub tables: &'a TableStore,
    /// Overwrite streams, tables and records that hold data.
    pub replace: bool,
    /// Replica count for the restored streams (`None`: as recorded).
    pub replicas: Option<usize>,
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Restored {
    /// Streams restored, with the messages each holds now.
    pub streams: Vec<(String, u64)>,
    /// Tables restored.
    pub tables: usize,
    /// Files written under the table root.
    pub files: usize,
}

/// Restores the backup at `backup` (its tables readable as `backup_tables`) into `target`.
pub async fn restore(
    backup: &Place,
    backup_tables: &TableStore,
    target: &Target<'_>,
) -> Result<(Manifest, Restored)> {
    let (manifest, _) = verify::verify(backup, backup_tables).await?;
    let root = Place::of(target.tables)?;
    let instances = backup
        .folders(&format!("tables/{RECORDS}/pipelines"))
        .await?;
    if !target.replace {
        refuse_overwrites(&manifest, &instances, target, &root).await?;
    }
    let mut files = 0;
    for table in &manifest.tables {
        root.delete_all(&table.name).await?;
        files += copy_back(backup, &root, &manifest, &format!("tables/{}", table.name)).await?;
    }
    for instance in &instances {
        root.delete_all(&format!("{RECORDS}/pipelines/{instance}"))
            .await?;
    }
    files += copy_back(backup, &root, &manifest, &format!("tables/{RECORDS}")).await?;
    let mut restored = Vec::new();
    for stream in &manifest.streams {
        if streams::state(target.client, &stream.name).await?.is_some() {
            streams::delete(target.client, &stream.name).await?;
        }
        let state = streams::restore(
            target.client,
            &stream.name,
            &stream.config,
            &stream.state,
            target.replicas,
            backup,
            &stream.file,
        )
        .await?;
        // The server reads the state it reports beside a snapshot apart from the snapshot
        // itself, so a stream written to meanwhile may hold a few more messages than its
        // recorded state says (they arrived after the tables were copied, and are processed
        // once like any other); fewer would be a loss.
        let messages = state.get("messages").and_then(|m| m.as_u64()).unwrap_or(0);
        if messages < stream.messages {
            return Err(Error::Stream {
                stream: stream.name.clone(),
                message: format!(
                    "restored with {messages} messages where the backup holds {}",
                    stream.messages
                ),
            });
        }
        tracing::info!(stream = %stream.name, messages, recorded = stream.messages, "stream restored");
        restored.push((stream.name.clone(), messages));
    }
    let done = Restored {
        streams: restored,
        tables: manifest.tables.len(),
        files,
    };
    Ok((manifest, done))
}

/// Fails, naming each, when a stream, table or pipeline's records the backup holds already
/// exist with data (empty ones, as a first start leaves them, are replaced).
async fn refuse_overwrites(
    manifest: &Manifest,
    instances: &[String],
    target: &Target<'_>,
    root: &Place,
) -> Result<()> {
    let mut held = Vec::new();
    for stream in &manifest.streams {
        if let Some(state) = streams::state(target.client, &stream.name).await? {
            let messages = state.get("messages").and_then(|m| m.as_u64()).unwrap_or(0);
            if messages > 0 {
                held.push(format!("stream {} holds {messages} messages", stream.name));
            }
        }
    }
    for table in &manifest.tables {
        if let Some(opened) = target.tables.open(&table.name).await? {
            let (rows, _) = tables::contents(&opened, &table.name)?;
            if rows > 0 {
                held.push(format!("table {} holds {rows} rows", table.name));
            }
        }
    }
    for instance in instances {
        if !root
            .list(&format!("{RECORDS}/pipelines/{instance}"))
            .await?
            .is_empty()
        {
            held.push(format!("pipeline {instance} has epoch records"));
        }
    }
    if held.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{}; restore into an empty NATS and table root, or pass --replace to overwrite them",
        held.join(", ")
    )))
}

/// Copies the backup's files under `prefix` (`tables/…`) to the table root, without the
/// leading `tables/`; how many.
async fn copy_back(
    backup: &Place,
    root: &Place,
    manifest: &Manifest,
    prefix: &str,
) -> Result<usize> {
    let mut copied = 0;
    for file in manifest.files_under(prefix) {
        let rel = &file.path["tables/".len()..];
        backup
            .copy_to(&file.path, root, rel)
            .await?
            .ok_or_else(|| Error::Corrupt {
                path: file.path.clone(),
                message: "gone since it was verified".into(),
            })?;
        copied += 1;
    }
    Ok(copied)
}
