//! Compaction that sorts: a partition's small files rewritten as one file ordered by the
//! columns people filter on (site, pool, machine, miner, worker, then time), so a scan for one
//! machine or one miner reads the few row groups and pages whose statistics hold it instead of
//! every row of the day.
//!
//! Landing commits append each batch as it came off the stream (every machine mixed in every
//! file); delta-rs's own compaction concatenates those files and its Z-order rewrites whole
//! partitions. This one takes only the files under [`TARGET_FILE_BYTES`], in bins of at most
//! that many bytes, per partition, and replaces each bin by its rows sorted, in one Delta commit
//! that changes no data (`dataChange: false`, operation OPTIMIZE): readers see the same rows
//! before and after, and the writers' stream positions (their `txn` actions) are untouched.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::compute::{SortColumn, cast, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// Files below this size are compacted, into files of at most about this size (compressed):
/// large enough that a day of a big farm is a few dozen files, small enough that a bin's rows
/// sort in memory.
pub const TARGET_FILE_BYTES: u64 = 64 << 20;

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

/// Sorts the small files of each partition of `table` into files of about
/// [`TARGET_FILE_BYTES`], one commit; `None` when no partition has two small files.
pub async fn compact_sorted(
    name: &str,
    table: &DeltaTable,
    schema: &SchemaRef,
) -> Result<Option<(DeltaTable, Compacted)>> {
    let delta = |source| Error::Delta {
        table: name.to_string(),
        source: Box::new(source),
    };
    let snapshot = table.snapshot().map_err(delta)?;
    let bins = bins(snapshot.log_data().iter().collect());
    if bins.is_empty() {
        return Ok(None);
    }
    let sort = sort_columns(schema);
    let partitions = snapshot.metadata().partition_columns().to_vec();
    let store = table.object_store();
    let mut writer = RecordBatchWriter::for_table(table).map_err(delta)?;
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
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: TARGET_FILE_BYTES as i64,
    };
    CommitBuilder::default()
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(delta)?;
    let mut table = table.clone();
    table.update_incremental(None).await.map_err(delta)?;
    Ok(Some((table, done)))
}

/// The small files grouped by partition, in bins of at most [`TARGET_FILE_BYTES`]; only bins
/// of two files or more (one small file alone is left as it is).
fn bins(files: Vec<LogicalFileView>) -> Vec<Vec<LogicalFileView>> {
    let mut by_partition: BTreeMap<Vec<(String, Option<String>)>, Vec<LogicalFileView>> =
        BTreeMap::new();
    for file in files {
        if file.deletion_vector_descriptor().is_some() || file.size() as u64 >= TARGET_FILE_BYTES {
            continue;
        }
        let mut key: Vec<_> = file.partition_values_map().into_iter().collect();
        key.sort();
        by_partition.entry(key).or_default().push(file);
    }
    let mut bins = Vec::new();
    for files in by_partition.into_values() {
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
