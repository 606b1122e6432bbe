//! Compaction that sorts: a partition's small files rewritten as files ordered by the
//! columns people filter on (site, pool, machine, miner, worker, then time), so a scan for one
//! machine or one miner reads the few row groups and pages whose statistics hold it instead of
//! every row of the day.
//!
//! Each commit's file is already sorted ([`sorted_for_scans`], called by the exactly-once
//! writer), so the newest rows prune too; delta-rs's own compaction concatenates files and its
//! Z-order rewrites whole partitions. This one is size-tiered, as LSM stores compact: files
//! are grouped per partition into tiers by size (under 1 MiB, then each tier `fanout` times
//! larger, up to [`TARGET_FILE_BYTES`]), and a tier holding `fanout` files or more is merged
//! into one sorted file of about the next tier's size. So a partition holds a few files per
//! tier at any time whatever the commit rate, and each row is rewritten about once per tier
//! (a handful of times), never the whole day on every compaction. The replacement is one
//! Delta commit that changes no data (`dataChange: false`, operation OPTIMIZE): readers see
//! the same rows before and after, and the writers' stream positions (their `txn` actions) are
//! untouched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, UInt32Array, new_null_array,
};
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{Row, RowConverter, SortField};
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

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

/// Most rows per row group of a written file (parquet's default is 1 Mi). A row group is what
/// a scan is split by: a compacted day of 1 M readings was one row group, read by one thread
/// while the others waited (`output_rows_skew=100%` in its EXPLAIN ANALYZE), and its statistics
/// pruned only whole. DuckDB writes 122 880 rows a group.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Commits tried before a compaction that keeps losing the race to other writers' commits is
/// left to the next check.
const COMMIT_ATTEMPTS: usize = 20;

/// Files under this size are the first tier (what landing commits write).
const FIRST_TIER_BYTES: u64 = 1 << 20;

/// The columns rows are ordered by, in this order, where the table has them: the keys people
/// filter and group by, then time.
pub const SORT_COLUMNS: [&str; 6] = ["site", "pool", "machine", "miner", "worker", "ts"];

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

/// How files of `schema` are written (by compaction and by each commit): Snappy, pages of
/// [`PAGE_ROWS`] rows, row groups of at most [`ROW_GROUP_ROWS`], and dictionaries for text
/// columns only.
///
/// Readings, sequences and times are nearly all distinct: a dictionary for them is built for
/// every value while writing, outgrows its limit and is abandoned, yet stays at the head of the
/// column, so a read of a few pages (one machine's rows) also fetched that dictionary and, the
/// store merging nearby ranges, everything between it and those pages (half the column on
/// issue 29's landed bench).
pub fn writer_properties(schema: &Schema) -> WriterProperties {
    properties(schema).build()
}

/// [`writer_properties`] for a file of `rows` (sorted, with the table's `partitions` columns),
/// with its run summary in the footer ([`crate::summary`]).
pub fn file_properties(
    schema: &Schema,
    rows: &RecordBatch,
    partitions: &[String],
) -> WriterProperties {
    let entry = crate::summary::footer_entry(rows, &key_columns(&rows.schema(), partitions));
    properties(schema)
        .set_key_value_metadata(entry.map(|(k, v)| vec![KeyValue::new(k, v)]))
        .build()
}

fn properties(schema: &Schema) -> WriterPropertiesBuilder {
    schema
        .fields()
        .iter()
        .filter(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Dictionary(..)
            )
        })
        .fold(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_data_page_row_count_limit(PAGE_ROWS)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .set_dictionary_enabled(false),
            |properties, text| {
                properties
                    .set_column_dictionary_enabled(ColumnPath::from(text.name().as_str()), true)
            },
        )
}

/// The key columns of a file of `schema`, which its run summary is by: its partition columns,
/// then its sort columns but time. Empty when it has no sort column but time.
pub fn key_columns(schema: &Schema, partitions: &[String]) -> Vec<String> {
    let sorted: Vec<&str> = SORT_COLUMNS
        .iter()
        .copied()
        .filter(|c| *c != "ts" && schema.field_with_name(c).is_ok())
        .collect();
    if sorted.is_empty() {
        return Vec::new();
    }
    partitions
        .iter()
        .map(String::as_str)
        .filter(|p| schema.field_with_name(p).is_ok())
        .chain(sorted)
        .map(str::to_string)
        .collect()
}

/// `batches` as one batch sorted by the [`sort_columns`] of their schema, ready to be one
/// file; unchanged when they have none of them, none or one row, or differ in schema.
pub fn sorted_for_scans(
    batches: Vec<RecordBatch>,
) -> std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(batches);
    };
    let sort = sort_columns(&schema);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if sort.is_empty() || rows < 2 || batches.iter().any(|b| b.schema() != schema) {
        return Ok(batches);
    }
    Ok(vec![sorted(&schema, &batches, &sort)?])
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
        // A writer per bin: its file's footer carries the bin's own run summary.
        let mut writer = RecordBatchWriter::for_table(table)
            .map_err(delta)?
            .with_writer_properties(file_properties(schema, &sorted, &partitions));
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

/// `batches` as one batch ordered by `sort`, then by input order (the sort is stable:
/// inputs that are already sorted files, every tier above the first, are runs it merges
/// rather than sorts again, and rows equal on every sort column keep their landing order).
fn sorted(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    sort: &[&str],
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let all = concat_batches(schema, batches)?;
    let columns: Vec<ArrayRef> = sort
        .iter()
        .filter_map(|c| all.column_by_name(c).cloned())
        .collect();
    if columns.is_empty() {
        return Ok(all);
    }
    let order = match columns.split_last() {
        Some((time, keys)) if !keys.is_empty() => match ticks(time) {
            Some(time) => order_by_groups_then_time(keys, &time)?,
            None => order_by_rows(&columns)?,
        },
        _ => order_by_rows(&columns)?,
    };
    take_record_batch(&all, &UInt32Array::from(order))
}

/// A last sort column of times (or integers) without nulls, as integers that order the same.
fn ticks(column: &ArrayRef) -> Option<Int64Array> {
    let integers = match column.data_type() {
        DataType::Timestamp(..) | DataType::Int64 => cast(column, &DataType::Int64).ok()?,
        _ => return None,
    };
    let integers = integers.as_primitive::<Int64Type>().clone();
    (integers.null_count() == 0).then_some(integers)
}

/// The row numbers of `columns` in the order of their values in Arrow's row format, whose
/// rows compare as plain bytes (a multi-column `lexsort` calls a comparator per column per
/// comparison: it was a tenth of the landing's CPU in `adit bench ingest`), ties in input
/// order.
fn order_by_rows(columns: &[ArrayRef]) -> std::result::Result<Vec<u32>, ArrowError> {
    let rows = RowConverter::new(sort_fields(columns))?.convert_columns(columns)?;
    let mut order: Vec<u32> = (0..row_count(rows.num_rows())?).collect();
    order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    Ok(order)
}

/// The same order as [`order_by_rows`] over `keys` then `time`, found with fewer byte
/// comparisons: each distinct key (a site and machine: a few thousand in a batch of tens of
/// thousands of rows) is ranked once, and the rows are sorted by (rank, time, row number),
/// three integers. It was most of the landing's sort, 7 % of its CPU under perf (issue 29).
fn order_by_groups_then_time(
    keys: &[ArrayRef],
    time: &Int64Array,
) -> std::result::Result<Vec<u32>, ArrowError> {
    let rows = RowConverter::new(sort_fields(keys))?.convert_columns(keys)?;
    let n = row_count(rows.num_rows())?;
    let mut group_of: HashMap<Row<'_>, u32> = HashMap::new();
    let mut firsts: Vec<u32> = Vec::new();
    let groups: Vec<u32> = (0..n)
        .map(|i| {
            let next = firsts.len() as u32;
            let group = *group_of.entry(rows.row(i as usize)).or_insert(next);
            if group == next {
                firsts.push(i);
            }
            group
        })
        .collect();
    // Groups in key order; rank[g] is group g's place in it.
    let mut by_key: Vec<u32> = (0..firsts.len() as u32).collect();
    by_key.sort_unstable_by(|&a, &b| {
        rows.row(firsts[a as usize] as usize)
            .cmp(&rows.row(firsts[b as usize] as usize))
    });
    let mut rank = vec![0_u32; firsts.len()];
    for (place, group) in by_key.into_iter().enumerate() {
        rank[group as usize] = place as u32;
    }
    let times = time.values();
    let mut order: Vec<(u32, i64, u32)> = (0..n)
        .map(|i| (rank[groups[i as usize] as usize], times[i as usize], i))
        .collect();
    // Stable and run-aware, though the row number already makes every key distinct.
    order.sort();
    Ok(order.into_iter().map(|(_, _, i)| i).collect())
}

/// Ascending sort fields for `columns`.
fn sort_fields(columns: &[ArrayRef]) -> Vec<SortField> {
    columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect()
}

/// `rows` as a row number's type.
fn row_count(rows: usize) -> std::result::Result<u32, ArrowError> {
    u32::try_from(rows)
        .map_err(|_| ArrowError::ComputeError("too many rows to compact at once".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Field, Int64Type};

    #[test]
    fn only_text_columns_are_written_with_dictionaries() {
        let schema = Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            Field::new("machine", DataType::Utf8View, false),
            Field::new("power_w", DataType::Float64, false),
            Field::new("seq", DataType::Int64, false),
        ]);
        let properties = writer_properties(&schema);
        let dictionary = |c: &str| properties.dictionary_enabled(&ColumnPath::from(c));
        assert!(dictionary("site") && dictionary("machine"));
        assert!(!dictionary("power_w") && !dictionary("seq"));
        assert_eq!(properties.data_page_row_count_limit(), PAGE_ROWS);
        assert_eq!(properties.max_row_group_row_count(), Some(ROW_GROUP_ROWS));
        assert_eq!(
            properties.compression(&ColumnPath::from("power_w")),
            Compression::SNAPPY
        );
    }

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

    /// A small linear congruential generator from `seed`: each call a number below its
    /// argument, the same on every run.
    fn numbers(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut state = seed;
        move |m| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % m
        }
    }

    /// Against the order the sort columns define, on rows with many ties: every row kept
    /// once, ordered, and rows equal on the sort columns in their input order (what lets a
    /// merge of sorted files be cheap).
    #[test]
    fn the_order_is_the_sort_columns_then_the_input_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            Field::new("machine", DataType::Utf8View, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let mut next = numbers(7);
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                let keys: Vec<(String, String, i64)> = (0..400)
                    .map(|_| {
                        (
                            format!("s-{}", next(3)),
                            format!("m-{}", next(7)),
                            next(5) as i64,
                        )
                    })
                    .collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from_iter_values(keys.iter().map(|k| &k.0))),
                        Arc::new(arrow::array::StringViewArray::from_iter_values(
                            keys.iter().map(|k| &k.1),
                        )),
                        Arc::new(arrow::array::Int64Array::from_iter_values(
                            keys.iter().map(|k| k.2),
                        )),
                        Arc::new(arrow::array::Int64Array::from_iter_values(
                            (0..400).map(|i| b * 400 + i),
                        )),
                    ],
                )
                .unwrap()
            })
            .collect();
        let out = sorted(&schema, &batches, &["site", "machine", "ts"]).unwrap();
        let site = out.column(0).as_string::<i32>();
        let machine = out.column(1).as_string_view();
        let ts = out.column(2).as_primitive::<Int64Type>();
        let n = out.column(3).as_primitive::<Int64Type>();
        let key = |i: usize| (site.value(i), machine.value(i), ts.value(i), n.value(i));
        for i in 1..out.num_rows() {
            assert!(key(i - 1) < key(i), "rows {} and {i} out of order", i - 1);
        }
        let mut seen: Vec<i64> = n.values().to_vec();
        seen.sort_unstable();
        assert_eq!(seen, (0..1200).collect::<Vec<i64>>());
    }

    /// The landing's order (ranked keys, then time) is the row format's order over all the
    /// sort columns, ties in input order, on keys with nulls, many ties and times out of
    /// order, for times as timestamps and as integers.
    #[test]
    fn ranking_the_keys_orders_as_the_row_format_does() {
        use arrow::array::{StringViewArray, TimestampMicrosecondArray};
        let mut next = numbers(11);
        for rows in [2, 17, 1_000, 5_000] {
            let site: ArrayRef = Arc::new(StringArray::from_iter(
                (0..rows).map(|_| (next(10) > 0).then(|| format!("s-{}", next(4)))),
            ));
            let machine: ArrayRef = Arc::new(StringViewArray::from_iter(
                (0..rows).map(|_| (next(20) > 0).then(|| format!("m-{}", next(50)))),
            ));
            let micros: Vec<i64> = (0..rows).map(|_| next(40) as i64 - 20).collect();
            let integers: ArrayRef = Arc::new(Int64Array::from(micros.clone()));
            let stamps: ArrayRef =
                Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"));
            for time in [integers, stamps] {
                let keys = [site.clone(), machine.clone()];
                let all = [site.clone(), machine.clone(), time.clone()];
                let ranked =
                    order_by_groups_then_time(&keys, &ticks(&time).expect("times")).unwrap();
                assert_eq!(ranked, order_by_rows(&all).unwrap(), "{rows} rows");
            }
        }
        // A time column with a null, or of another type, takes the row format's path.
        assert!(ticks(&(Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef)).is_none());
        assert!(ticks(&(Arc::new(StringArray::from(vec!["1"])) as ArrayRef)).is_none());
    }
}
