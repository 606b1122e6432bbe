//! Tables and the pipelines' epoch records, copied so that a restore resumes exactly once.
//!
//! A pipeline resumes from its tables' epochs and its epoch records (`_adit/pipelines/…`):
//! each table it writes must be at an epoch whose record exists, and the records between the
//! newest state snapshot at or below the lowest of them and the highest must all be there.
//! Records are written before the commits that carry their epoch and pruned from below, so the
//! records are copied first (an instance whose record vanished mid-copy is copied again), and
//! each table is then copied at its newest version whose epochs, for every pipeline, are at or
//! below the highest record copied: Delta's time travel gives that version's log and files.

use std::collections::BTreeMap;

use adit_sinks::TableStore;
use deltalake::DeltaTable;

use crate::error::{Error, Result};
use crate::manifest::{FileEntry, TableEntry};
use crate::place::Place;

/// Where records live under the table root.
pub const RECORDS: &str = "_adit";
/// How often an instance's records are copied again before giving up.
const RECORD_TRIES: usize = 50;
/// How many versions a table may be walked back to meet its records.
const MAX_WALK_BACK: u64 = 10_000;

fn entry(path: String, moved: crate::place::Moved) -> FileEntry {
    FileEntry {
        path,
        bytes: moved.bytes,
        sha256: moved.sha256,
    }
}

/// Copies everything under `_adit/` of `from` to `to` (same relative paths); returns the
/// highest epoch recorded per pipeline instance and the files copied.
pub async fn copy_records(
    from: &Place,
    to: &Place,
) -> Result<(BTreeMap<String, u64>, Vec<FileEntry>)> {
    let mut highest = BTreeMap::new();
    let mut files = Vec::new();
    let pipelines = format!("{RECORDS}/pipelines");
    for instance in from.folders(&pipelines).await? {
        let folder = format!("{pipelines}/{instance}");
        let (top, copied) = copy_instance(from, to, &instance, &folder).await?;
        if let Some(top) = top {
            highest.insert(instance, top);
        }
        files.extend(copied);
    }
    for rel in from.list(RECORDS).await? {
        if rel.starts_with(&format!("{pipelines}/")) {
            continue;
        }
        if let Some(moved) = from.copy_to(&rel, to, &rel).await? {
            files.push(entry(rel, moved));
        }
    }
    Ok((highest, files))
}

/// Copies one instance's records as one consistent set: when a record listed is gone by the
/// time it is read (pruned), the instance is copied again.
async fn copy_instance(
    from: &Place,
    to: &Place,
    instance: &str,
    folder: &str,
) -> Result<(Option<u64>, Vec<FileEntry>)> {
    for _ in 0..RECORD_TRIES {
        to.delete_all(folder).await?;
        let mut files = Vec::new();
        let mut top = None;
        let mut complete = true;
        for rel in from.list(folder).await? {
            match from.copy_to(&rel, to, &rel).await? {
                Some(moved) => {
                    if let Some(epoch) = epoch_of(&rel) {
                        top = top.max(Some(epoch));
                    }
                    files.push(entry(rel, moved));
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if complete {
            return Ok((top, files));
        }
    }
    Err(Error::Records {
        instance: instance.to_string(),
        message: format!(
            "its records changed under every one of {RECORD_TRIES} copies; take the backup again"
        ),
    })
}

/// The epoch of a record's path (`…/epoch-00000000000000000042.json`).
fn epoch_of(rel: &str) -> Option<u64> {
    rel.rsplit('/')
        .next()?
        .strip_prefix("epoch-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// The tables under the root: folders with a Delta log, `_adit` aside.
pub async fn names(root: &Place) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for folder in root.folders("").await? {
        if folder.starts_with('_') || !adit_schemas::names::is_token(&folder) {
            continue;
        }
        if !root
            .folders(&folder)
            .await?
            .iter()
            .any(|f| f == "_delta_log")
        {
            continue;
        }
        names.push(folder);
    }
    Ok(names)
}

/// Copies table `name` of `tables` (rooted at `from`) into `to` at the newest version
/// consistent with `highest` (the epochs recorded per pipeline).
pub async fn copy_table(
    tables: &TableStore,
    from: &Place,
    name: &str,
    highest: &BTreeMap<String, u64>,
    to: &Place,
) -> Result<Option<(TableEntry, Vec<FileEntry>)>> {
    let Some(mut table) = tables.open(name).await? else {
        return Ok(None);
    };
    let version = consistent_version(&mut table, name, highest).await?;
    let (rows, data) = contents(&table, name)?;
    let mut files = Vec::new();
    let mut wanted: Vec<String> = from
        .list(&format!("{name}/_delta_log"))
        .await?
        .into_iter()
        .filter(|rel| log_version(rel).is_some_and(|v| v <= version))
        .collect();
    let data_files = data.len();
    wanted.extend(data.into_iter().map(|rel| format!("{name}/{rel}")));
    for rel in wanted {
        let moved = from
            .copy_to(&rel, to, &rel)
            .await?
            .ok_or_else(|| Error::Corrupt {
                path: rel.clone(),
                message: format!(
                    "a file of version {version} is gone (vacuumed while the backup ran?)"
                ),
            })?;
        files.push(entry(rel, moved));
    }
    Ok(Some((
        TableEntry {
            name: name.to_string(),
            version,
            rows,
            data_files,
        },
        files,
    )))
}

/// The rows of `table` at its loaded version (from the log's file statistics) and its data
/// files, relative to the table's folder.
pub fn contents(table: &DeltaTable, name: &str) -> Result<(u64, Vec<String>)> {
    let snapshot = table.snapshot().map_err(|source| Error::Table {
        table: name.to_string(),
        source: Box::new(source),
    })?;
    let mut rows = 0u64;
    let mut data = Vec::new();
    for file in snapshot.log_data() {
        rows += file.num_records().unwrap_or(0) as u64;
        data.push(file.object_store_path().to_string());
    }
    Ok((rows, data))
}

/// Walks `table` back from its latest version to the newest one whose application
/// transactions are all at or below the recorded epochs; leaves it loaded at that version.
async fn consistent_version(
    table: &mut DeltaTable,
    name: &str,
    highest: &BTreeMap<String, u64>,
) -> Result<u64> {
    let table_err = |source| Error::Table {
        table: name.to_string(),
        source: Box::new(source),
    };
    let latest = table.version().unwrap_or(0);
    let mut version = latest;
    loop {
        let ahead = ahead_of_records(table, highest).await.map_err(table_err)?;
        let Some(instance) = ahead else {
            return Ok(version);
        };
        if version == 0 || latest - version >= MAX_WALK_BACK {
            return Err(Error::Records {
                instance,
                message: format!(
                    "table {name} holds epochs its records do not (walked back from version \
                     {latest} to {version})"
                ),
            });
        }
        version -= 1;
        table.load_version(version).await.map_err(table_err)?;
    }
}

/// The first pipeline whose epoch in `table` is past its highest record.
async fn ahead_of_records(
    table: &DeltaTable,
    highest: &BTreeMap<String, u64>,
) -> deltalake::DeltaResult<Option<String>> {
    let snapshot = table.snapshot()?;
    let log_store = table.log_store();
    for (instance, top) in highest {
        let epoch = snapshot
            .transaction_version(log_store.as_ref(), instance)
            .await?;
        if epoch.is_some_and(|e| e.max(0) as u64 > *top) {
            return Ok(Some(instance.clone()));
        }
    }
    Ok(None)
}

/// The version a `_delta_log` file belongs to (`00000000000000000012.json`,
/// `….checkpoint.parquet`, `….crc`); `None` for `_last_checkpoint` and anything else.
fn log_version(rel: &str) -> Option<u64> {
    let file = rel.rsplit('/').next()?;
    let digits = file.get(..20)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !file[20..].starts_with('.') {
        return None;
    }
    if file.ends_with(".compacted.json") {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_are_told_by_version() {
        assert_eq!(
            log_version("t/_delta_log/00000000000000000012.json"),
            Some(12)
        );
        assert_eq!(
            log_version("t/_delta_log/00000000000000000010.checkpoint.parquet"),
            Some(10)
        );
        assert_eq!(
            log_version("t/_delta_log/00000000000000000003.crc"),
            Some(3)
        );
        assert_eq!(log_version("t/_delta_log/_last_checkpoint"), None);
        assert_eq!(
            log_version("t/_delta_log/00000000000000000001.00000000000000000004.compacted.json"),
            None
        );
        assert_eq!(log_version("t/_delta_log/_commit_abc/x.json.tmp"), None);
    }

    #[test]
    fn record_names_give_their_epoch() {
        assert_eq!(
            epoch_of("_adit/pipelines/shares/epoch-00000000000000000042.json"),
            Some(42)
        );
        assert_eq!(epoch_of("_adit/pipelines/shares/other.json"), None);
    }
}
