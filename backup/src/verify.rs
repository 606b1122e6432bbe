//! Reading a backup back: every file against the manifest's size and SHA-256, and every table
//! opened from the backup at the version the manifest names, with the rows it says.

use std::collections::HashSet;

use adit_sinks::TableStore;

use crate::error::{Error, Result};
use crate::manifest::{MANIFEST, Manifest};
use crate::place::Place;
use crate::tables;

/// What a verification read.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verified {
    /// Files read and matched.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Tables opened at their version.
    pub tables: usize,
    /// Rows in them.
    pub rows: u64,
    /// Streams whose snapshot matched.
    pub streams: usize,
}

/// Reads and checks the manifest of the backup at `backup`.
pub async fn manifest(backup: &Place) -> Result<Manifest> {
    let shown = format!("{backup:?}/{MANIFEST}");
    if !backup.exists(MANIFEST).await? {
        return Err(Error::Manifest {
            path: shown,
            message: "missing: not a backup, or one that did not finish".into(),
        });
    }
    Manifest::parse(&shown, &backup.read(MANIFEST).await?)
}

/// Verifies the backup at `backup` whose tables are readable as `tables` (the backup's
/// `tables/` folder opened as a table root, with the location's options).
pub async fn verify(backup: &Place, tables: &TableStore) -> Result<(Manifest, Verified)> {
    let manifest = manifest(backup).await?;
    let mut report = Verified {
        files: 0,
        bytes: 0,
        tables: 0,
        rows: 0,
        streams: manifest.streams.len(),
    };
    for file in &manifest.files {
        let found = backup.digest(&file.path).await?;
        if found.bytes != file.bytes || found.sha256 != file.sha256 {
            return Err(Error::Corrupt {
                path: file.path.clone(),
                message: format!(
                    "{} bytes with SHA-256 {}, where the manifest says {} bytes with {}",
                    found.bytes, found.sha256, file.bytes, file.sha256
                ),
            });
        }
        report.files += 1;
        report.bytes += found.bytes;
    }
    let listed: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for table in &manifest.tables {
        let opened = tables
            .open(&table.name)
            .await?
            .ok_or_else(|| Error::Corrupt {
                path: format!("tables/{}", table.name),
                message: "not a Delta table".into(),
            })?;
        let version = opened.version().unwrap_or(0);
        let (rows, data) = tables::contents(&opened, &table.name)?;
        let data_files = data.len();
        for file in data {
            let rel = format!("tables/{}/{file}", table.name);
            if !listed.contains(rel.as_str()) {
                return Err(Error::Corrupt {
                    path: rel,
                    message: "the table reads it but the manifest does not list it".into(),
                });
            }
        }
        if version != table.version || rows != table.rows || data_files != table.data_files {
            return Err(Error::Corrupt {
                path: format!("tables/{}", table.name),
                message: format!(
                    "reads as version {version} with {rows} rows in {data_files} files, where the \
                     manifest says version {} with {} rows in {} files",
                    table.version, table.rows, table.data_files
                ),
            });
        }
        report.tables += 1;
        report.rows += rows;
    }
    Ok((manifest, report))
}
