//! Taking a backup: the pipelines' records, then every table at a version consistent with
//! them, then the streams (which by then hold every event the tables hold, and more: those
//! the pipelines resume with), then the config, then the manifest.

use std::path::Path as FsPath;

use adit_sinks::TableStore;
use chrono::Utc;

use crate::error::{Error, Result};
use crate::manifest::{ConfigEntry, FORMAT, FileEntry, MANIFEST, Manifest, StreamEntry};
use crate::place::Place;
use crate::{redact, streams, tables};

/// What a backup reads.
pub struct Source<'a> {
    /// The NATS connection.
    pub client: &'a async_nats::Client,
    /// The table root.
    pub tables: &'a TableStore,
    /// The config file, if the process was started with one.
    pub config_file: Option<&'a FsPath>,
    /// Keep the config's secrets instead of redacting them.
    pub with_secrets: bool,
}

/// The streams a backup holds: every event stream and every configuration bucket (the
/// leases are not kept: they expire in seconds and are taken again).
pub fn stream_names() -> Vec<String> {
    adit_schemas::names::STREAMS
        .iter()
        .map(|(name, _)| name.to_string())
        .chain(
            adit_schemas::names::KV_BUCKETS
                .iter()
                .map(|bucket| format!("KV_{bucket}")),
        )
        .collect()
}

/// A new backup's folder name: `adit-<UTC time>`.
pub fn new_id() -> String {
    format!("adit-{}", Utc::now().format("%Y%m%dT%H%M%S%3fZ"))
}

/// Takes a backup into `to` (a folder that must not hold one yet).
pub async fn take(source: &Source<'_>, to: &Place) -> Result<Manifest> {
    if to.exists(MANIFEST).await? {
        return Err(Error::Refused(format!("{to:?} already holds a backup")));
    }
    let taken_at = Utc::now();
    let root = Place::of(source.tables)?;
    let tables_to = to.child("tables");
    let (highest, mut files) = tables::copy_records(&root, &tables_to).await?;
    let mut table_entries = Vec::new();
    for name in tables::names(&root).await? {
        if let Some((table, copied)) =
            tables::copy_table(source.tables, &root, &name, &highest, &tables_to).await?
        {
            tracing::info!(table = %name, version = table.version, rows = table.rows, "table copied");
            table_entries.push(table);
            files.extend(copied);
        }
    }
    for file in &mut files {
        file.path = format!("tables/{}", file.path);
    }
    let mut stream_entries = Vec::new();
    for name in stream_names() {
        if streams::state(source.client, &name).await?.is_none() {
            tracing::warn!(stream = %name, "no such stream: not in the backup");
            continue;
        }
        let file = format!("streams/{name}.tar.s2");
        let taken = streams::snapshot(source.client, &name, to, &file).await?;
        let number = |key: &str| taken.state.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
        tracing::info!(stream = %name, messages = number("messages"), bytes = taken.moved.bytes, "stream copied");
        stream_entries.push(StreamEntry {
            name,
            file: file.clone(),
            messages: number("messages"),
            first_seq: number("first_seq"),
            last_seq: number("last_seq"),
            config: taken.config,
            state: taken.state,
        });
        files.push(FileEntry {
            path: file,
            bytes: taken.moved.bytes,
            sha256: taken.moved.sha256,
        });
    }
    let config = match source.config_file {
        Some(path) => {
            let (entry, file) = copy_config(path, source.with_secrets, to).await?;
            files.push(file);
            Some(entry)
        }
        None => None,
    };
    let manifest = Manifest {
        format: FORMAT,
        adit_version: env!("CARGO_PKG_VERSION").to_string(),
        taken_at,
        streams: stream_entries,
        tables: table_entries,
        config,
        files,
    };
    to.write(MANIFEST, manifest.to_bytes()).await?;
    Ok(manifest)
}

async fn copy_config(
    path: &FsPath,
    with_secrets: bool,
    to: &Place,
) -> Result<(ConfigEntry, FileEntry)> {
    let config_err = |message: String| Error::Config {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| config_err(e.to_string()))?;
    let kept = if with_secrets {
        text
    } else {
        redact::redact(&text).map_err(config_err)?
    };
    let name = "config.toml";
    let moved = to.write(name, kept.into_bytes()).await?;
    Ok((
        ConfigEntry {
            file: name.to_string(),
            redacted: !with_secrets,
        },
        FileEntry {
            path: name.to_string(),
            bytes: moved.bytes,
            sha256: moved.sha256,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_id_is_a_folder_name_that_sorts_by_time() {
        let first = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id();
        assert!(adit_schemas::names::is_token(&first), "{first}");
        assert!(first < second, "{first} {second}");
        assert!(crate::schedule::taken_at(&first).is_some(), "{first}");
    }
}
