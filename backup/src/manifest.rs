//! The manifest: what a backup holds (streams with their server config and state, tables at
//! their versions, every file with its size and SHA-256), written last so a backup without one
//! is known to be incomplete.

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest's own name inside a backup.
pub const MANIFEST: &str = "manifest.json";
/// The layout this version writes and reads.
pub const FORMAT: u32 = 1;

/// Everything a backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`FORMAT`]).
    pub format: u32,
    /// The adit that took it.
    pub adit_version: String,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
    /// The JetStream streams (events and KV buckets), each a server snapshot.
    pub streams: Vec<StreamEntry>,
    /// The Delta tables, each at one committed version.
    pub tables: Vec<TableEntry>,
    /// The config file, if one was given.
    pub config: Option<ConfigEntry>,
    /// Every file of the backup but the manifest, relative to the backup's folder.
    pub files: Vec<FileEntry>,
}

/// One stream's snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEntry {
    /// Stream name.
    pub name: String,
    /// The snapshot file (an s2-compressed tar, as nats-server writes it).
    pub file: String,
    /// Messages in the stream when it was taken.
    pub messages: u64,
    /// Its first and last sequence then.
    pub first_seq: u64,
    /// Its last sequence then.
    pub last_seq: u64,
    /// The stream's config, as the server reported it (given back to it on restore).
    pub config: serde_json::Value,
    /// The stream's state, as the server reported it.
    pub state: serde_json::Value,
}

/// One table at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Table name.
    pub name: String,
    /// The Delta version copied.
    pub version: u64,
    /// Rows at that version (from the log's file statistics).
    pub rows: u64,
    /// Data files at that version.
    pub data_files: usize,
}

/// The config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// Its name in the backup.
    pub file: String,
    /// Whether secrets were replaced by `"<redacted>"`.
    pub redacted: bool,
}

/// One file of the backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the backup's folder.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content, lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// Parses a manifest read from `path` and checks that everything it names is safe to
    /// read and write: known layout, relative paths without `..`, names that are tokens.
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |message: String| Error::Manifest {
            path: path.to_string(),
            message,
        };
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "layout {} is not the one this adit reads ({FORMAT})",
                manifest.format
            )));
        }
        for file in &manifest.files {
            relative(&file.path).map_err(|m| bad(format!("file {:?}: {m}", file.path)))?;
            if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("file {:?}: sha256 is not a digest", file.path)));
            }
        }
        for stream in &manifest.streams {
            if !adit_schemas::names::is_token(&stream.name) {
                return Err(bad(format!("stream name {:?}", stream.name)));
            }
            if !manifest.files.iter().any(|f| f.path == stream.file) {
                return Err(bad(format!(
                    "stream {}: its file is not listed",
                    stream.name
                )));
            }
        }
        for table in &manifest.tables {
            if !adit_schemas::names::is_token(&table.name) {
                return Err(bad(format!("table {:?} at {}", table.name, table.version)));
            }
        }
        Ok(manifest)
    }

    /// The manifest as pretty JSON (an operator reads it).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest serializes")
    }

    /// The files under `prefix/` (a table's folder, `_adit/`…), with their paths.
    pub fn files_under<'m>(&'m self, prefix: &'m str) -> impl Iterator<Item = &'m FileEntry> + 'm {
        self.files
            .iter()
            .filter(move |f| f.path.starts_with(prefix) && f.path[prefix.len()..].starts_with('/'))
    }
}

/// `text` as an object path relative to a backup: no empty, `.` or `..` segment, not absolute.
pub fn relative(text: &str) -> std::result::Result<Path, String> {
    if text.is_empty() || text.starts_with('/') || text.len() > 1024 {
        return Err("not a relative path".into());
    }
    if text
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\\'))
    {
        return Err("has an empty, '.', '..' or '\\' segment".into());
    }
    Path::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            adit_version: "0.1.0".into(),
            taken_at: Utc::now(),
            streams: vec![StreamEntry {
                name: "KV_adit_registry".into(),
                file: "streams/KV_adit_registry.tar.s2".into(),
                messages: 3,
                first_seq: 1,
                last_seq: 3,
                config: serde_json::json!({"name": "KV_adit_registry"}),
                state: serde_json::json!({"messages": 3}),
            }],
            tables: vec![TableEntry {
                name: "shares".into(),
                version: 4,
                rows: 10,
                data_files: 2,
            }],
            config: None,
            files: vec![FileEntry {
                path: "streams/KV_adit_registry.tar.s2".into(),
                bytes: 10,
                sha256: "0".repeat(64),
            }],
        }
    }

    #[test]
    fn a_manifest_reads_back() {
        let manifest = sample();
        assert_eq!(
            Manifest::parse("m", &manifest.to_bytes()).unwrap(),
            manifest
        );
    }

    #[test]
    fn paths_that_leave_the_backup_are_refused() {
        for path in [
            "../etc/passwd",
            "/abs",
            "a//b",
            "a/./b",
            "tables/../../x",
            "",
            "a\\..\\b",
        ] {
            let mut manifest = sample();
            manifest.files[0].path = path.into();
            manifest.streams.clear();
            let err = Manifest::parse("m", &manifest.to_bytes()).unwrap_err();
            assert!(err.to_string().contains("file"), "{path}: {err}");
        }
    }

    #[test]
    fn names_that_are_not_names_are_refused() {
        let mut manifest = sample();
        manifest.streams[0].name = "KV.>".into();
        assert!(Manifest::parse("m", &manifest.to_bytes()).is_err());
        let mut manifest = sample();
        manifest.tables[0].name = "../x".into();
        assert!(Manifest::parse("m", &manifest.to_bytes()).is_err());
        let mut manifest = sample();
        manifest.format = 2;
        assert!(Manifest::parse("m", &manifest.to_bytes()).is_err());
        assert!(Manifest::parse("m", b"{not json").is_err());
    }

    #[test]
    fn files_under_a_folder_are_only_its_own() {
        let mut manifest = sample();
        manifest.files = [
            "tables/shares/a",
            "tables/shares_2/b",
            "tables/shares/_delta_log/0.json",
        ]
        .iter()
        .map(|p| FileEntry {
            path: p.to_string(),
            bytes: 0,
            sha256: "0".repeat(64),
        })
        .collect();
        let under: Vec<_> = manifest
            .files_under("tables/shares")
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(
            under,
            ["tables/shares/a", "tables/shares/_delta_log/0.json"]
        );
    }
}
