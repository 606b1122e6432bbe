//! A Delta table's snapshot as a DataFusion table that scans exactly the snapshot's Parquet
//! files, with what the log knows about each one.
//!
//! deltalake's own provider reads every file with an extra file-id column and joins the
//! partition values (and deletion vectors) back onto each batch above the scan. A table with no
//! deletion vectors and no column mapping (every table adit writes) needs none of that, so
//! this provider hands DataFusion's Parquet scan the snapshot's files directly: the partition
//! values are the scan's own partition columns, and the log's row counts, null counts and
//! min/max values are the files' statistics. Filters on partition columns drop files exactly
//! before the plan is made; filters on other columns drop files whose min/max rule them out;
//! a bare `count(*)` is answered from the log. Tables that need more get deltalake's provider
//! ([`SnapshotTable::try_new`] says which).
//!
//! The log's statistics are not taken as exact bounds: Delta truncates timestamps to
//! milliseconds and long strings to a prefix, so a timestamp's max is widened to the end of its
//! millisecond, a string max that may be truncated is dropped, and DataFusion is told the
//! bounds are inexact (never used to answer `min`/`max` on their own).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{
    Column, ColumnStatistics, DFSchema, DataFusionError, Result as DfResult, ScalarValue,
    Statistics, project_schema,
};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use deltalake::kernel::{LogDataHandler, LogicalFileView};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::Deserialize;

use crate::page_index::IndexedFooters;

/// Delta's string statistics may be cut to this many characters (Spark's default); a max of
/// that length may be a prefix of the real one.
const STRING_STATS_PREFIX: usize = 32;

/// One Delta table at one snapshot, scanned as its Parquet files.
#[derive(Debug)]
pub(crate) struct SnapshotTable {
    /// The columns in the table's order, as users see them.
    schema: SchemaRef,
    /// The files' columns followed by the partition columns: the scan's order.
    scan: TableSchema,
    /// For each of the table's columns, its index in the scan's order.
    scan_index: Vec<usize>,
    /// The store the files are in, as registered with each session.
    store_url: ObjectStoreUrl,
    /// Every file of the snapshot, with its partition values and statistics.
    files: Vec<PartitionedFile>,
    /// The same statistics, column by column, for pruning.
    bounds: FileBounds,
}

impl SnapshotTable {
    /// `table` at its current snapshot; `None` when the snapshot needs deltalake's own reader
    /// (deletion vectors, column mapping, or files outside the table's root).
    pub(crate) fn try_new(table: &DeltaTable) -> DfResult<Option<Self>> {
        let delta = |e: deltalake::DeltaTableError| DataFusionError::External(Box::new(e));
        let state = table.snapshot().map_err(delta)?;
        let metadata = state.metadata();
        let mapped = metadata
            .configuration()
            .get("delta.columnMapping.mode")
            .is_some_and(|mode| mode != "none");
        let log = state.log_data();
        let plain = |file: &LogicalFileView| {
            file.deletion_vector_descriptor().is_none() && !file.path().contains("://")
        };
        if mapped || !log.iter().all(|file| plain(&file)) {
            return Ok(None);
        }
        let partitions = metadata.partition_columns().to_vec();
        let table_schema = view_types(&state.snapshot().arrow_schema());
        let (partition_fields, file_fields): (Vec<FieldRef>, Vec<FieldRef>) = table_schema
            .fields()
            .iter()
            .cloned()
            .partition(|f| partitions.contains(f.name()));
        // Partition columns in the order the table declares them.
        let partition_fields: Vec<FieldRef> = partitions
            .iter()
            .filter_map(|p| partition_fields.iter().find(|f| f.name() == p).cloned())
            .collect();
        let scan = TableSchema::builder(Arc::new(Schema::new(file_fields)))
            .with_table_partition_cols(partition_fields.clone())
            .build();
        let scan_schema = scan.table_schema().clone();
        let scan_index = table_schema
            .fields()
            .iter()
            .map(|f| scan_schema.index_of(f.name()))
            .collect::<Result<Vec<_>, _>>()?;

        let root = table.log_store().root_url().clone();
        let store_url = ObjectStoreUrl::parse(format!(
            "{}://{}",
            root.scheme(),
            &root[url::Position::BeforeHost..url::Position::AfterPort]
        ))?;
        let root_path =
            Path::from_url_path(root.path()).map_err(|e| DataFusionError::External(Box::new(e)))?;

        let bounds = FileBounds::from_log(&log, &scan_schema, &partition_fields)?;
        if !bounds.has_partition_values() {
            // A partition column whose values the log does not give here (binary ones).
            return Ok(None);
        }
        let files = log
            .iter()
            .enumerate()
            .map(|(i, file)| {
                let location =
                    Path::from_iter(root_path.parts().chain(file.object_store_path().parts()));
                // The path as it is (a string would be escaped a second time).
                let mut scanned = PartitionedFile::new_from_meta(ObjectMeta {
                    location,
                    last_modified: file.modification_datetime().unwrap_or_default(),
                    size: u64::try_from(file.size()).unwrap_or_default(),
                    e_tag: None,
                    version: None,
                });
                scanned.partition_values = bounds.partition_values(i);
                scanned.statistics = Some(Arc::new(bounds.file_statistics(i)));
                scanned
            })
            .collect();
        Ok(Some(Self {
            schema: table_schema,
            scan,
            scan_index,
            store_url,
            files,
            bounds,
        }))
    }

    /// Whether `filter` reads partition columns only (and so is evaluated exactly, per file).
    fn on_partitions_only(&self, filter: &Expr) -> bool {
        let names: Vec<&str> = self
            .scan
            .table_partition_cols()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        !names.is_empty() && expr_applicable_for_cols(&names, filter)
    }

    /// The statistics of `files` together.
    fn merged_statistics<'a>(
        &self,
        files: impl Iterator<Item = &'a PartitionedFile>,
    ) -> DfResult<Statistics> {
        Statistics::try_merge_iter(
            files.filter_map(|f| f.statistics.as_deref()),
            self.scan.table_schema(),
        )
    }

    /// Which files `filters` may keep: partition-only filters are evaluated exactly on each
    /// file's partition values, the rest prune by the files' bounds.
    fn keep(&self, session: &dyn Session, filters: &[Expr]) -> DfResult<Vec<bool>> {
        let mut keep = vec![true; self.files.len()];
        let scan_schema = self.scan.table_schema().clone();
        let df_schema = DFSchema::try_from(scan_schema.clone())?;
        let (exact, rest): (Vec<&Expr>, Vec<&Expr>) =
            filters.iter().partition(|f| self.on_partitions_only(f));
        if let Some(exact) = conjunction(exact.into_iter().cloned()) {
            let values = self.bounds.partition_batch()?;
            let expr = session.create_physical_expr(exact, &df_schema)?;
            let mask = expr.evaluate(&values)?.into_array(values.num_rows())?;
            let mask = mask.as_boolean();
            for (i, keep) in keep.iter_mut().enumerate() {
                *keep = mask.is_valid(i) && mask.value(i);
            }
        }
        let Some(rest) = conjunction(rest.into_iter().cloned()) else {
            return Ok(keep);
        };
        let expr = session.create_physical_expr(rest, &df_schema)?;
        // A predicate pruning cannot use keeps every file.
        let pruning = PruningPredicateBuilder::new()
            .with_file_schema(scan_schema)
            .with_max_in_list_size(session.config_options().execution.parquet.max_in_list_size)
            .build(expr);
        if let Some(pruning) = pruning {
            for (keep, may_match) in keep.iter_mut().zip(pruning.prune(&self.bounds)?) {
                *keep &= may_match;
            }
        }
        Ok(keep)
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The scan's columns in the order asked for (all of them in the table's order).
        let indices: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| self.scan_index[i]).collect(),
            None => self.scan_index.clone(),
        };
        let keep = self.keep(session, filters)?;
        let files: Vec<PartitionedFile> = self
            .files
            .iter()
            .zip(keep)
            .filter_map(|(file, keep)| keep.then(|| file.clone()))
            .collect();
        if files.is_empty() {
            let schema = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let statistics = self.merged_statistics(files.iter())?;
        let groups = FileGroup::new(files).split_files(session.config().target_partitions());
        // Rows are filtered as they are decoded (reading the other columns only for the rows
        // kept) when the statement filters this table's data. Otherwise the only filters a
        // scan gets are the ones a join derives from its other side at run time, which rarely
        // drop rows and would cost a check per row.
        let mut options = session.table_options().parquet.clone();
        options.global.pushdown_filters |= filters.iter().any(|f| !self.on_partitions_only(f));
        // As `ParquetFormat::create_physical_plan` builds the scan, but with readers that
        // keep each file's page index in the footer cache (crate::page_index).
        let runtime = session.runtime_env();
        let readers = IndexedFooters::new(
            runtime.object_store(&self.store_url)?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let hint = options.global.metadata_size_hint;
        let mut source = ParquetSource::new(self.scan.clone())
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(readers));
        if let Some(hint) = hint {
            source = source.with_metadata_size_hint(hint);
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(Some(indices))?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.on_partitions_only(f) {
                    // Evaluated exactly on each file's partition values in `keep`.
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    fn statistics(&self) -> Option<Statistics> {
        self.merged_statistics(self.files.iter()).ok()
    }
}

/// Each file's row count and, per column in the scan's order, its min, max and null count
/// (partition columns: the file's value), one array entry per file.
#[derive(Debug)]
struct FileBounds {
    /// The scan's schema (files' columns, then partition columns).
    schema: SchemaRef,
    /// How many of the columns are the files' own.
    file_columns: usize,
    /// Rows of each file, when the log records them.
    rows: Option<ArrayRef>,
    /// Per column: smallest value of each file, when known.
    mins: Vec<Option<ArrayRef>>,
    /// Per column: largest value of each file, when known (never below the real one).
    maxs: Vec<Option<ArrayRef>>,
    /// Per column: nulls of each file, when known.
    nulls: Vec<Option<ArrayRef>>,
    /// Number of files.
    len: usize,
}

impl FileBounds {
    /// The bounds the log records for each file of `log`.
    fn from_log(
        log: &LogDataHandler<'_>,
        schema: &SchemaRef,
        partitions: &[FieldRef],
    ) -> DfResult<Self> {
        let len = log.num_containers();
        let file_columns = schema.fields().len() - partitions.len();
        // Row and null counts from each file's own statistics (deltalake's column-wise
        // `row_counts` and `null_counts` miss them: none at all, and none for strings).
        let counts: Vec<Option<FileCounts>> = log
            .iter()
            .map(|file| file.stats().and_then(|s| serde_json::from_str(&s).ok()))
            .collect();
        let rows: UInt64Array = counts.iter().map(|c| c.as_ref()?.num_records).collect();
        let (mut mins, mut maxs, mut nulls) = (Vec::new(), Vec::new(), Vec::new());
        for (i, field) in schema.fields().iter().enumerate() {
            let column = Column::new_unqualified(field.name());
            let fitted = |a: Option<ArrayRef>| a.and_then(|a| cast(&a, field.data_type()).ok());
            let min = fitted(log.min_values(&column));
            let max = fitted(log.max_values(&column));
            let null_counts: UInt64Array = if i < file_columns {
                counts
                    .iter()
                    .map(|c| c.as_ref()?.null_count.get(field.name())?.as_u64())
                    .collect()
            } else {
                // A partition value holds for all of a file's rows, or none.
                (0..len)
                    .map(|f| match &min {
                        Some(values) if values.is_valid(f) => Some(0),
                        _ => rows.is_valid(f).then(|| rows.value(f)),
                    })
                    .collect()
            };
            nulls.push(known(null_counts));
            if i < file_columns {
                mins.push(min);
                maxs.push(max.map(|m| widen_max(m, field)).transpose()?);
            } else {
                // A partition value is both bounds (the log gives it as the min and the max).
                maxs.push(min.clone());
                mins.push(min);
            }
        }
        let rows = known(rows);
        let fits = |a: &Option<ArrayRef>| a.as_ref().is_none_or(|a| a.len() == len);
        if !(fits(&rows) && mins.iter().chain(&maxs).chain(&nulls).all(fits)) {
            return Err(DataFusionError::Internal(
                "the Delta log's statistics do not cover every file".into(),
            ));
        }
        Ok(Self {
            schema: schema.clone(),
            file_columns,
            rows,
            mins,
            maxs,
            nulls,
            len,
        })
    }

    /// Whether every partition column's values are known (a file's may still be null).
    fn has_partition_values(&self) -> bool {
        self.len == 0 || self.mins[self.file_columns..].iter().all(Option::is_some)
    }

    /// File `i`'s partition values, in the partition columns' order.
    fn partition_values(&self, i: usize) -> Vec<ScalarValue> {
        (self.file_columns..self.schema.fields().len())
            .map(|c| value_at(&self.mins[c], i, self.schema.field(c).data_type()))
            .collect()
    }

    /// One row per file holding its partition values.
    fn partition_batch(&self) -> DfResult<RecordBatch> {
        let columns = (0..self.schema.fields().len())
            .map(|c| match &self.mins[c] {
                Some(values) if c >= self.file_columns => Ok(values.clone()),
                _ => ScalarValue::try_from(self.schema.field(c).data_type())
                    .and_then(|null| null.to_array_of_size(self.len)),
            })
            .collect::<DfResult<Vec<_>>>()?;
        // The files' own columns are all null here, whatever the table declares.
        let nullable: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(nullable)),
            columns,
        )?)
    }

    /// File `i`'s statistics for DataFusion: exact counts, inexact data bounds, exact
    /// partition values.
    fn file_statistics(&self, i: usize) -> Statistics {
        let rows = self
            .rows
            .as_ref()
            .and_then(|r| r.as_primitive_opt::<arrow::datatypes::UInt64Type>())
            .filter(|r| r.is_valid(i))
            .map_or(Precision::Absent, |r| Precision::Exact(r.value(i) as usize));
        let column_statistics = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(c, field)| {
                let bound = |values: &Option<ArrayRef>| {
                    let value = value_at(values, i, field.data_type());
                    match (value.is_null(), c >= self.file_columns) {
                        (true, _) => Precision::Absent,
                        (false, true) => Precision::Exact(value),
                        (false, false) => Precision::Inexact(value),
                    }
                };
                let null_count = self.nulls[c]
                    .as_ref()
                    .map(|n| n.as_primitive::<arrow::datatypes::UInt64Type>())
                    .filter(|n| n.is_valid(i))
                    .map_or(Precision::Absent, |n| Precision::Exact(n.value(i) as usize));
                ColumnStatistics {
                    null_count,
                    min_value: bound(&self.mins[c]),
                    max_value: bound(&self.maxs[c]),
                    ..ColumnStatistics::new_unknown()
                }
            })
            .collect();
        Statistics {
            num_rows: rows,
            total_byte_size: Precision::Absent,
            column_statistics,
        }
    }

    fn column(&self, column: &Column) -> Option<usize> {
        self.schema.index_of(column.name()).ok()
    }
}

impl PruningStatistics for FileBounds {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.mins[self.column(column)?].clone()
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.maxs[self.column(column)?].clone()
    }

    fn num_containers(&self) -> usize {
        self.len
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.nulls[self.column(column)?].clone()
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        self.rows.clone()
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// The counts in a file's statistics (the log's `stats` JSON).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileCounts {
    /// Rows in the file.
    num_records: Option<u64>,
    /// Nulls per column (nested columns: an object per struct).
    #[serde(default)]
    null_count: HashMap<String, serde_json::Value>,
}

/// `counts` as an array, or `None` when no file has one.
fn known(counts: UInt64Array) -> Option<ArrayRef> {
    (counts.null_count() < counts.len()).then(|| Arc::new(counts) as ArrayRef)
}

/// Entry `i` of `values` (null when unknown).
fn value_at(values: &Option<ArrayRef>, i: usize, data_type: &DataType) -> ScalarValue {
    values
        .as_ref()
        .and_then(|a| ScalarValue::try_from_array(a, i).ok())
        .or_else(|| ScalarValue::try_from(data_type).ok())
        .unwrap_or(ScalarValue::Null)
}

/// A column's max values made safe as upper bounds: a timestamp's is moved to the end of its
/// millisecond (Delta truncates them), a string's that may be a truncated prefix is dropped.
fn widen_max(max: ArrayRef, field: &Field) -> DfResult<ArrayRef> {
    let end_of_ms = match field.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => 999,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 999_999,
        DataType::Utf8View | DataType::Utf8 | DataType::LargeUtf8 => {
            let strings = cast(&max, &DataType::Utf8)?;
            let kept: StringArray = strings
                .as_string::<i32>()
                .iter()
                .map(|s| s.filter(|s| s.chars().count() < STRING_STATS_PREFIX))
                .collect();
            return Ok(cast(&kept, field.data_type())?);
        }
        _ => return Ok(max),
    };
    let ticks = cast(&max, &DataType::Int64)?;
    let widened: Int64Array = ticks
        .as_primitive::<Int64Type>()
        .iter()
        .map(|t| t.map(|t| t.saturating_add(end_of_ms)))
        .collect();
    Ok(cast(&widened, field.data_type())?)
}

/// `schema` with strings and binaries as view types, as DataFusion's Parquet reader gives them.
fn view_types(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let data_type = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
                DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
                other => other.clone(),
            };
            f.as_ref().clone().with_data_type(data_type)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_sinks::TableStore;
    use arrow::array::{Date32Array, Float64Array, StringArray, TimestampMicrosecondArray};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::physical_plan::FileScanConfig;
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::prelude::SessionContext;

    /// 2026-11-20 and the day after, as days since the epoch.
    const DAY: i32 = 20_777;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("power", DataType::Float64, true),
            Field::new("note", DataType::Utf8, true),
            Field::new("date", DataType::Date32, false),
        ]))
    }

    /// Rows of `day` at `ts` microseconds into it, one per site.
    fn batch(day: i32, sites: &[&str], micros: &[i64]) -> RecordBatch {
        let start = i64::from(day) * 86_400_000_000;
        let n = sites.len();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(sites.to_vec())),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        micros.iter().map(|m| start + m).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(
                    (0..n).map(|i| i as f64 * 10.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    (0..n)
                        .map(|i| {
                            (i % 2 == 0)
                                .then(|| format!("{}-a-note-long-enough-to-be-truncated", sites[i]))
                        })
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Date32Array::from(vec![day; n])),
            ],
        )
        .expect("a valid batch")
    }

    /// A table of three commits over two days; the last row of day 2 is 0.5 ms past a
    /// millisecond, which Delta's statistics truncate away.
    async fn table(dir: &std::path::Path) -> anyhow::Result<DeltaTable> {
        let store = TableStore::new(dir.to_str().unwrap(), HashMap::new())?;
        let mut table = store.open_or_create("t", &schema(), &["date"]).await?;
        for rows in [
            batch(DAY, &["a", "b"], &[1_000, 2_000]),
            batch(DAY, &["a", "c"], &[3_000, 4_000]),
            batch(DAY + 1, &["b", "c"], &[5_000, 7_500_500]),
        ] {
            table = table
                .write(vec![rows])
                .with_partition_columns(["date"])
                .await?;
        }
        Ok(table)
    }

    /// `sql`'s rows, printed, through each provider.
    async fn both(table: &DeltaTable, sql: &str) -> anyhow::Result<(String, String)> {
        let ours = SessionContext::new();
        table.update_datafusion_session(&ours.state())?;
        let scan = SnapshotTable::try_new(table)?.expect("a plain table");
        ours.register_table("t", Arc::new(scan))?;
        let theirs = SessionContext::new();
        table.update_datafusion_session(&theirs.state())?;
        theirs.register_table("t", table.table_provider().await?)?;
        let print =
            |batches: Vec<RecordBatch>| pretty_format_batches(&batches).map(|t| t.to_string());
        Ok((
            print(ours.sql(sql).await?.collect().await?)?,
            print(theirs.sql(sql).await?.collect().await?)?,
        ))
    }

    #[tokio::test]
    async fn answers_as_deltalakes_own_provider_does() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let table = table(dir.path()).await?;
        let (ours, _) = both(
            &table,
            "SELECT count(*) AS n FROM t WHERE date = DATE '2026-11-20'",
        )
        .await?;
        assert!(ours.contains("| 4 |"), "four rows on the first day: {ours}");
        for sql in [
            "SELECT * FROM t ORDER BY ts",
            "SELECT count(*) FROM t",
            "SELECT site, sum(power) FROM t WHERE date >= DATE '2026-11-21' GROUP BY site ORDER BY site",
            "SELECT date, count(*), count(note) FROM t GROUP BY date ORDER BY date",
            "SELECT min(ts), max(ts), min(site), max(note) FROM t",
            "SELECT * FROM t WHERE date = DATE '2026-12-01'",
            "SELECT date FROM t WHERE site = 'b' ORDER BY date",
            "SELECT site, ts FROM t WHERE ts > TIMESTAMP '2026-11-20T00:00:00.002Z' AND date < DATE '2026-11-21' ORDER BY ts",
            "SELECT note, date FROM t WHERE note > 'b' ORDER BY note, date",
            "SELECT * FROM t WHERE date::varchar LIKE '%-21' ORDER BY ts",
        ] {
            let (ours, theirs) = both(&table, sql).await?;
            assert_eq!(ours, theirs, "{sql}");
        }
        Ok(())
    }

    /// The files the scan for `filter` would read.
    async fn files_read(table: &DeltaTable, filter: &str) -> anyhow::Result<usize> {
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        let scan = SnapshotTable::try_new(table)?.expect("a plain table");
        let schema = DFSchema::try_from(scan.schema())?;
        let filter = ctx.parse_sql_expr(filter, &schema)?;
        let plan = scan.scan(&ctx.state(), None, &[filter], None).await?;
        let Some(source) = plan.downcast_ref::<DataSourceExec>() else {
            return Ok(0);
        };
        let config = source
            .data_source()
            .downcast_ref::<FileScanConfig>()
            .expect("a file scan");
        Ok(config.file_groups.iter().map(|g| g.len()).sum())
    }

    #[tokio::test]
    async fn filters_skip_files_by_partition_value_and_by_the_logs_bounds() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let table = table(dir.path()).await?;
        assert_eq!(files_read(&table, "site IS NOT NULL").await?, 3);
        assert_eq!(files_read(&table, "date = DATE '2026-11-20'").await?, 2);
        assert_eq!(files_read(&table, "date > DATE '2026-11-21'").await?, 0);
        assert_eq!(
            files_read(&table, "site = 'c' AND date = DATE '2026-11-20'").await?,
            1
        );
        assert_eq!(
            files_read(&table, "ts > TIMESTAMP '2026-11-20T00:00:00.0035Z'").await?,
            2
        );
        // The last row is 7.5005 s into day 2; the log records 7.500 s. Its file must be
        // read for a filter between the two.
        let filter = "ts >= TIMESTAMP '2026-11-21T00:00:07.5005Z'";
        assert_eq!(files_read(&table, filter).await?, 1);
        let (ours, theirs) = both(&table, &format!("SELECT site FROM t WHERE {filter}")).await?;
        assert_eq!(ours, theirs);
        assert!(ours.contains("| c "), "{ours}");
        Ok(())
    }

    #[tokio::test]
    async fn the_logs_counts_are_the_scans_statistics() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let table = table(dir.path()).await?;
        let scan = SnapshotTable::try_new(&table)?.expect("a plain table");
        let stats = scan.statistics().expect("statistics");
        assert_eq!(stats.num_rows, Precision::Exact(6));
        let note = scan.schema().index_of("note")?;
        assert_eq!(
            stats.column_statistics[note].null_count,
            Precision::Exact(3)
        );
        // `count(*)` is answered from them, without reading a file.
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        ctx.register_table("t", Arc::new(scan))?;
        let plan = ctx
            .sql("EXPLAIN SELECT count(*) FROM t")
            .await?
            .collect()
            .await?;
        let text = pretty_format_batches(&plan)?.to_string();
        assert!(!text.contains("DataSourceExec"), "{text}");
        Ok(())
    }

    #[tokio::test]
    async fn partition_values_that_paths_escape_are_read() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = TableStore::new(dir.path().to_str().unwrap(), Default::default())?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Float64, false),
            Field::new("where", DataType::Utf8, false),
        ]));
        let mut table = store.open_or_create("t", &schema, &["where"]).await?;
        let places = ["hall a/b", "50% east", "ålesund"];
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])),
                Arc::new(StringArray::from(places.to_vec())),
            ],
        )?;
        table = table
            .write(vec![batch])
            .with_partition_columns(["where"])
            .await?;
        let sql = "SELECT \"where\", v FROM t ORDER BY v";
        let (ours, theirs) = both(&table, sql).await?;
        assert_eq!(ours, theirs);
        for place in places {
            assert!(ours.contains(place), "{place} in {ours}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_table_with_no_file_scans_to_nothing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = TableStore::new(dir.path().to_str().unwrap(), HashMap::new())?;
        let table = store.open_or_create("t", &schema(), &["date"]).await?;
        let (ours, theirs) = both(&table, "SELECT count(*), max(ts) FROM t").await?;
        assert_eq!(ours, theirs);
        let (ours, theirs) = both(&table, "SELECT * FROM t").await?;
        assert_eq!(ours, theirs);
        Ok(())
    }
}
