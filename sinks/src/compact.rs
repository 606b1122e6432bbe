//! Compaction that sorts: a partition's small files rewritten as files ordered by the
//! columns people filter on (site, pool, machine, miner, worker, then time), so a scan for one
//! machine or one miner reads the few row groups and pages whose statistics hold it instead of
//! every row of the day.
//!
//! Landing commits append each batch as it came off the stream (every machine mixed in every
//! file, a file per commit); delta-rs's own compaction concatenates those files and its
//! Z-order rewrites whole partitions. This one is size-tiered, as LSM stores compact: files
//! are grouped per partition into tiers by size (under 1 MiB, then each tier `fanout` times
//! larger, up to [`TARGET_FILE_BYTES`]), and a tier holding `fanout` files or more is merged
//! into one sorted file of about the next tier's size. So a partition holds a few files per
//! tier at any time whatever the commit rate, and each row is rewritten about once per tier
//! (a handful of times), never the whole day on every compaction. The replacement is one
//! Delta commit that changes no data (`dataChange: false`, operation OPTIMIZE): readers see
//! the same rows before and after, and the writers' stream positions (their `txn` actions) are
//! untouched.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::compute::{SortColumn, cast, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Files below this size are compacted, into files of at most about this size (compressed):
/// large enough that a day of a big farm is a few dozen files, small enough that a bin's rows
/// sort in memory.
pub const TARGET_FILE_BYTES: u64 = 64 << 20;

/// Rows per data page of a compacted file (parquet's default is 20 000): sorted by machine,
/// a page then spans a few machines rather than dozens, so the page index of a scan for one
/// machine can drop more of a file (on the 1 M-row landed bench of issue 29 the difference
/// was within the run-to-run noise).
const PAGE_ROWS: usize = 4096;

/// Commits tried before a compaction that keeps losing the race to other writers' commits is
/// left to the next check.
const COMMIT_ATTEMPTS: usize = 20;

/// Files under this size are the first tier (what landing commits write).
const FIRST_TIER_BYTES: u64 = 1 << 20;

/// The columns rows are ordered by, in this order, where the table has them.
const SORT_COLUMNS: [&str; 6] = ["site", "pool", "machine", "miner", "worker", "ts"];

/// What one compaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Files replaced.
    pub files_removed: usize,
    /// Sorted files written.
    pub files_added: usize,
    /// Rows rewritten.
    pub rows: usize,
}

/// The columns of `schema` its rows are sorted by.
pub fn sort_columns(schema: &SchemaRef) -> Vec<&'static str> {
    SORT_COLUMNS
        .into_iter()
        .filter(|c| schema.field_with_name(c).is_ok())
        .collect()
}

/// Merges each partition's tiers of `table` that hold `fanout` files or more (see the module
/// header) into sorted files, in one commit; `None` when no tier is full.
pub async fn compact_sorted(
    name: &str,
    table: &DeltaTable,
    schema: &SchemaRef,
    fanout: usize,
) -> Result<Option<(DeltaTable, Compacted)>> {
    let delta = |source| Error::Delta {
        table: name.to_string(),
        source: Box::new(source),
    };
    let snapshot = table.snapshot().map_err(delta)?;
    let bins = bins(snapshot.log_data().iter().collect(), fanout);
    if bins.is_empty() {
        return Ok(None);
    }
    let sort = sort_columns(schema);
    let partitions = snapshot.metadata().partition_columns().to_vec();
    let store = table.object_store();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .build();
    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(delta)?
        .with_writer_properties(properties);
    let mut actions = Vec::new();
    let mut done = Compacted::default();
    for bin in &bins {
        let mut batches = Vec::new();
        for file in bin {
            let bytes = store
                .get(&file.object_store_path())
                .await
                .map_err(|e| delta(e.into()))?
                .bytes()
                .await
                .map_err(|e| delta(e.into()))?;
            batches.extend(
                read(bytes, file, schema, &partitions).map_err(|e| Error::Compact {
                    table: name.to_string(),
                    reason: format!("{}: {e}", file.path()),
                })?,
            );
            actions.push(Action::Remove(file.remove_action(false)));
        }
        let sorted = sorted(schema, &batches, &sort).map_err(|e| Error::Compact {
            table: name.to_string(),
            reason: e.to_string(),
        })?;
        done.rows += sorted.num_rows();
        done.files_removed += bin.len();
        writer.write(sorted).await.map_err(delta)?;
        // Each bin its own file: written together they would be two sorted runs in one.
        for mut add in writer.flush().await.map_err(delta)? {
            add.data_change = false;
            actions.push(Action::Add(add));
            done.files_added += 1;
        }
    }
    let written: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Add(add) => Some(add.path.clone()),
            _ => None,
        })
        .collect();
    let removed: HashSet<String> = bins
        .iter()
        .flatten()
        .map(|f| f.path().to_string())
        .collect();
    match commit_if_live(table, actions, &removed)
        .await
        .map_err(delta)?
    {
        Some(table) => Ok(Some((table, done))),
        None => {
            tracing::info!(
                table = %name,
                "another writer replaced some of these files first; compaction left to the next check"
            );
            for path in written {
                let path = object_store::path::Path::from(path);
                if let Err(e) = store.delete(&path).await {
                    tracing::warn!(table = %name, %path, error = %e, "an unused compacted file stays until vacuum");
                }
            }
            Ok(None)
        }
    }
}

/// Commits `actions` (removing the files `removed`) on the latest version of `table` as long
/// as every file in `removed` is still live there; `None` once one is not.
///
/// delta-rs's conflict check ignores a concurrent commit's removes that change no data, so
/// two writers compacting the same files would both commit, and the table would hold their
/// rows twice. Each attempt therefore commits only on the very version it checked (no retry
/// inside delta-rs: the commit file is written if absent), and a lost race re-checks.
async fn commit_if_live(
    table: &DeltaTable,
    actions: Vec<Action>,
    removed: &HashSet<String>,
) -> std::result::Result<Option<DeltaTable>, deltalake::DeltaTableError> {
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: TARGET_FILE_BYTES as i64,
    };
    let mut current = table.clone();
    for _ in 0..COMMIT_ATTEMPTS {
        let committed = CommitBuilder::default()
            .with_max_retries(0)
            .with_actions(actions.clone())
            .build(
                Some(current.snapshot()?),
                current.log_store(),
                operation.clone(),
            )
            .await;
        match committed {
            Ok(_) => {
                current.update_incremental(None).await?;
                return Ok(Some(current));
            }
            Err(deltalake::DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_),
            }) => {
                current.update_incremental(None).await?;
                let live: HashSet<String> = current
                    .snapshot()?
                    .log_data()
                    .iter()
                    .map(|f| f.path().to_string())
                    .collect();
                if !removed.is_subset(&live) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The tier of a file of `size` bytes: 0 under [`FIRST_TIER_BYTES`], then one more per
/// `fanout` times that (at most 64: no size or fanout makes it spin).
fn tier(size: u64, fanout: usize) -> u32 {
    let (mut tier, mut bound) = (0, FIRST_TIER_BYTES);
    while size >= bound && tier < 64 {
        tier += 1;
        bound = bound.saturating_mul(fanout as u64);
    }
    tier
}

/// The files to merge: per partition and tier, a tier of `fanout` files or more, in bins of at
/// most [`TARGET_FILE_BYTES`]; only bins of two files or more. Files of that size or more, and
/// files with deletion vectors, stay as they are.
fn bins(files: Vec<LogicalFileView>, fanout: usize) -> Vec<Vec<LogicalFileView>> {
    type Key = (Vec<(String, Option<String>)>, u32);
    let mut tiers: BTreeMap<Key, Vec<LogicalFileView>> = BTreeMap::new();
    for file in files {
        let size = file.size() as u64;
        if file.deletion_vector_descriptor().is_some() || size >= TARGET_FILE_BYTES {
            continue;
        }
        let mut partition: Vec<_> = file.partition_values_map().into_iter().collect();
        partition.sort();
        tiers
            .entry((partition, tier(size, fanout)))
            .or_default()
            .push(file);
    }
    let mut bins = Vec::new();
    for files in tiers.into_values().filter(|files| files.len() >= fanout) {
        let mut bin: Vec<LogicalFileView> = Vec::new();
        let mut bytes = 0;
        for file in files {
            let size = file.size() as u64;
            if !bin.is_empty() && bytes + size > TARGET_FILE_BYTES {
                bins.push(std::mem::take(&mut bin));
                bytes = 0;
            }
            bytes += size;
            bin.push(file);
        }
        bins.push(bin);
    }
    bins.retain(|bin| bin.len() > 1);
    bins
}

/// A file's rows in the table's schema: the file's own columns by name (a column added since
/// it was written is null), its partition values as constant columns.
fn read(
    bytes: Bytes,
    file: &LogicalFileView,
    schema: &SchemaRef,
    partitions: &[String],
) -> std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let values = file.partition_values_map();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?
        .with_batch_size(65_536)
        .build()
        .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let rows = batch.num_rows();
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                let name = field.name();
                if partitions.contains(name) {
                    let value = values.get(name).cloned().flatten();
                    let text: ArrayRef = Arc::new(StringArray::from(vec![value; rows]));
                    return cast(&text, field.data_type());
                }
                match batch.column_by_name(name) {
                    Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                    Some(column) => cast(column, field.data_type()),
                    None => Ok(new_null_array(field.data_type(), rows)),
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        out.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    Ok(out)
}

/// `batches` as one batch ordered by `sort`.
fn sorted(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    sort: &[&str],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let all = concat_batches(schema, batches)?;
    if sort.is_empty() {
        return Ok(all);
    }
    let columns: Vec<SortColumn> = sort
        .iter()
        .filter_map(|c| all.column_by_name(c))
        .map(|values| SortColumn {
            values: values.clone(),
            options: None,
        })
        .collect();
    let indices = lexsort_to_indices(&columns, None)?;
    take_record_batch(&all, &indices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn tiers_grow_by_the_fanout_from_one_mebibyte() {
        assert_eq!(tier(0, 4), 0);
        assert_eq!(tier(40_000, 4), 0);
        assert_eq!(tier((1 << 20) - 1, 4), 0);
        assert_eq!(tier(1 << 20, 4), 1);
        assert_eq!(tier((4 << 20) - 1, 4), 1);
        assert_eq!(tier(4 << 20, 4), 2);
        assert_eq!(tier(16 << 20, 4), 3);
        assert_eq!(tier(1 << 20, 8), 1);
        assert_eq!(tier(8 << 20, 8), 2);
        // No size or fanout spins it.
        assert_eq!(tier(u64::MAX, 2), 64);
        assert_eq!(tier(u64::MAX, 1), 64);
    }

    #[test]
    fn rows_sort_by_the_filter_columns_the_table_has_then_time() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("machine", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("power_w", DataType::Float64, false),
        ]));
        assert_eq!(sort_columns(&schema), ["site", "machine", "ts"]);
        let batch = |machines: Vec<&str>, sites: Vec<&str>, ts: Vec<i64>| {
            let n = ts.len();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(machines)),
                    Arc::new(StringArray::from(sites)),
                    Arc::new(arrow::array::Int64Array::from(ts)),
                    Arc::new(arrow::array::Float64Array::from(vec![1.0; n])),
                ],
            )
            .unwrap()
        };
        let out = sorted(
            &schema,
            &[
                batch(vec!["m-2", "m-1"], vec!["s-1", "s-2"], vec![5, 1]),
                batch(vec!["m-1", "m-2"], vec!["s-1", "s-1"], vec![9, 3]),
            ],
            &sort_columns(&schema),
        )
        .unwrap();
        let column = |name: &str| -> Vec<String> {
            let c = cast(out.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
            c.as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect()
        };
        assert_eq!(column("site"), ["s-1", "s-1", "s-1", "s-2"]);
        assert_eq!(column("machine"), ["m-1", "m-2", "m-2", "m-1"]);
        assert_eq!(column("ts"), ["9", "3", "5", "1"]);
    }
}
