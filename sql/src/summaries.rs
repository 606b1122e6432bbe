//! Aggregations answered from the files' run summaries instead of their rows.
//!
//! Each file adit writes carries, in its footer, a row per run of its sort keys: the run's key,
//! row count, and each number or time column's non-null count, min, max and sum
//! ([`adit_sinks::summary`]). A `GROUP BY` of those keys (and the table's partition columns),
//! or none at all (`SELECT sum(energy_wh) FROM energy_readings WHERE site = 's-1'`), whose
//! aggregates are `count`, `sum`, `min`, `max` or `avg` of plain columns needs nothing else:
//! the partial aggregation's state for a run is in its summary row. On a compacted file of
//! a 10 000-machine farm that is one summary row for about a thousand readings, and nothing of
//! the file is decoded but its footer.
//!
//! [`RunSummaries`] is a physical optimizer rule that puts a [`SummariesExec`] above such a
//! partial aggregation over a Parquet scan of a Delta snapshot (through filters, projections,
//! repartitions and the union with fresh rows). When it runs, the exec reads each file's
//! footer and its summary (both kept in the engine's footer cache, the summary apart and decoded
//! once: `page_index.rs`), files side by side, and answers the file from its summary when:
//! - the footer has a summary, whose run counts for the file's partition values add up to the
//!   file's rows (anything else and the file is scanned, as if it had none);
//! - every run either holds no row the statement's filters keep, or only such rows: the filters
//!   are judged on each run's key and its columns' min and max as a file's statistics are
//!   (DataFusion's pruning predicate), once as written and once negated. A run that straddles a
//!   filter's bound (one site's readings across the hour asked for) makes its whole file
//!   scanned.
//!
//! The files answered are merged into the partial aggregation's groups with the aggregates'
//! own `merge_batch` (each partition merges its share of them), and emitted ahead of the partial aggregation over the rest, which runs
//! unchanged over a scan of the files left. The final aggregation above merges both, as it
//! merges partitions. Sums of floating-point values add in another order than a scan would, so
//! they may differ in the last bits, as they do between any two partitionings.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use adit_sinks::summary::{ROWS, Stat};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{and, cast, filter_record_batch, sum};
use arrow::datatypes::{DataType, SchemaRef, UInt64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, DynamicFilterPhysicalExpr, IsNotNullExpr, IsNullExpr, Literal,
};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::{StreamExt, TryStreamExt};

use crate::page_index;
use crate::runs::{Grouping, RunsAggregateExec};

/// The rule: partial aggregations a summary can answer get a [`SummariesExec`] above them.
#[derive(Debug, Default)]
pub(crate) struct RunSummaries;

impl PhysicalOptimizerRule for RunSummaries {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.downcast_ref::<SummariesExec>().is_some() {
                return Ok(Transformed::no(node));
            }
            match SummariesExec::over(Arc::clone(&node)) {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "adit_run_summaries"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Where an aggregate's partial state comes from in a summary row.
#[derive(Debug, Clone)]
enum Need {
    /// `count(*)`: the run's rows.
    Rows,
    /// `count(c)`: its non-null values.
    NonNull(String),
    /// `sum(c)`, `min(c)`, `max(c)`: that statistic.
    One(Stat, String),
    /// `avg(c)`: the non-null count and the sum.
    Avg(String),
}

/// What a partial aggregation needs of the summaries, found when the plan is made.
#[derive(Debug)]
struct Eligible {
    /// The grouping columns' names, and the types the aggregation reads them as.
    groups: Vec<(String, DataType)>,
    /// Each aggregate's need, and the types of its state.
    aggregates: Vec<(Need, Vec<DataType>)>,
    /// The filters between the aggregation and the scan, each with the schema it reads.
    filters: Vec<(Arc<dyn PhysicalExpr>, SchemaRef)>,
    /// The table's partition columns, as the scan gives them.
    partitions: Vec<(String, DataType)>,
}

/// Whether `aggregate` can be answered from summaries, and what it needs of them.
fn eligible(aggregate: &AggregateExec) -> Option<Eligible> {
    if *aggregate.mode() != AggregateMode::Partial
        || !aggregate.group_expr().is_single()
        || aggregate.limit_options().is_some()
        || !aggregate.dynamic_expressions_produced().is_empty()
        || aggregate.filter_expr().iter().any(Option::is_some)
    {
        return None;
    }
    let input = aggregate.input_schema();
    let mut names = Vec::new();
    let mut groups = Vec::new();
    for (expr, _) in aggregate.group_expr().expr() {
        let column = expr.downcast_ref::<Column>()?;
        let field = input.fields().get(column.index())?;
        names.push(field.name().clone());
        groups.push((field.name().clone(), field.data_type().clone()));
    }
    let mut aggregates = Vec::new();
    for a in aggregate.aggr_expr() {
        if a.is_distinct() || !a.order_bys().is_empty() {
            return None;
        }
        let arguments = a.expressions();
        let column = match arguments.as_slice() {
            [one] => match one.downcast_ref::<Column>() {
                Some(c) => {
                    let field = input.fields().get(c.index())?;
                    Some((field.name().clone(), field.data_type().clone()))
                }
                None => None,
            },
            _ => return None,
        };
        let literal = arguments
            .first()
            .and_then(|e| e.downcast_ref::<Literal>())
            .is_some_and(|l| !l.value().is_null());
        let state: Vec<DataType> = a
            .state_fields()
            .ok()?
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let need = match (a.fun().name(), column) {
            ("count", None) if literal => Need::Rows,
            ("count", Some((c, _))) => Need::NonNull(c),
            ("sum", Some((c, DataType::Int64 | DataType::UInt64 | DataType::Float64))) => {
                Need::One(Stat::Sum, c)
            }
            ("min", Some((c, t))) if summarized(&t) => Need::One(Stat::Min, c),
            ("max", Some((c, t))) if summarized(&t) => Need::One(Stat::Max, c),
            ("avg", Some((c, DataType::Float64))) => Need::Avg(c),
            _ => return None,
        };
        let expected = match &need {
            Need::Rows | Need::NonNull(_) => vec![DataType::Int64],
            Need::One(_, c) => vec![input.field_with_name(c).ok()?.data_type().clone()],
            Need::Avg(_) => vec![DataType::UInt64, DataType::Float64],
        };
        if state != expected {
            return None;
        }
        if let Need::NonNull(c) | Need::One(_, c) | Need::Avg(c) = &need {
            names.push(c.clone());
        }
        aggregates.push((need, state));
    }
    let mut filters = Vec::new();
    let scan = scan_below(aggregate.input(), &names, &mut filters)?;
    let (_, config, _) = adit_scan(&scan)?;
    let partitions = config
        .table_partition_cols()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    Some(Eligible {
        groups,
        aggregates,
        filters,
        partitions,
    })
}

/// Whether summaries keep min and max of a column of `data_type` (what
/// [`adit_sinks::summary`] summarizes).
fn summarized(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
    )
}

/// Whether `plan` is a Parquet scan with its own readers: adit's scan of a Delta snapshot
/// (`crate::delta_scan`, whose readers keep footers with their page index) is. Tables that need
/// deltalake's own provider (deletion vectors, column mapping) are scanned under its own node,
/// which no chain [`scan_below`] follows passes through.
fn adit_scan(
    plan: &Arc<dyn ExecutionPlan>,
) -> Option<(&DataSourceExec, &FileScanConfig, &ParquetSource)> {
    let source = plan.downcast_ref::<DataSourceExec>()?;
    let config = source.data_source().downcast_ref::<FileScanConfig>()?;
    let parquet = config.file_source().downcast_ref::<ParquetSource>()?;
    parquet.parquet_file_reader_factory()?;
    Some((source, config, parquet))
}

/// The one adit scan under `plan` whose rows reach it unchanged in value (the columns `names`
/// passed on by name), collecting the filters on the way; `None` for any other shape.
fn scan_below(
    plan: &Arc<dyn ExecutionPlan>,
    names: &[String],
    filters: &mut Vec<(Arc<dyn PhysicalExpr>, SchemaRef)>,
) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some((_, config, parquet)) = adit_scan(plan) {
        if config.limit.is_some() {
            return None;
        }
        if let Some(predicate) = parquet.filter() {
            filters.push((predicate, Arc::clone(parquet.table_schema().table_schema())));
        }
        let schema = plan.schema();
        return names
            .iter()
            .all(|n| schema.field_with_name(n).is_ok())
            .then(|| Arc::clone(plan));
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        filters.push((Arc::clone(filter.predicate()), filter.input().schema()));
        return scan_below(filter.input(), names, filters);
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let passed_on = names.iter().all(|name| {
            projection.expr().iter().any(|kept| {
                kept.alias == *name
                    && kept
                        .expr
                        .downcast_ref::<Column>()
                        .is_some_and(|c| c.name() == name)
            })
        });
        return passed_on
            .then(|| scan_below(projection.input(), names, filters))
            .flatten();
    }
    if let Some(union) = plan.downcast_ref::<UnionExec>() {
        // The snapshot's scan beside the fresh rows: the one child with a scan is followed.
        let mut found = None;
        for child in union.children() {
            if contains_scan(child) {
                if found.is_some() {
                    return None;
                }
                found = scan_below(child, names, filters);
                found.as_ref()?;
            }
        }
        return found;
    }
    let passes = plan.downcast_ref::<RepartitionExec>().is_some()
        || plan
            .downcast_ref::<CoalescePartitionsExec>()
            .is_some_and(|c| c.fetch().is_none());
    passes
        .then(|| scan_below(plan.children()[0], names, filters))
        .flatten()
}

/// Whether an adit scan is anywhere under `plan`.
fn contains_scan(plan: &Arc<dyn ExecutionPlan>) -> bool {
    adit_scan(plan).is_some() || plan.children().into_iter().any(contains_scan)
}

/// The partial aggregation it stands above, inside a runs aggregation or not.
fn aggregate_of(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    plan.downcast_ref::<AggregateExec>().or_else(|| {
        plan.downcast_ref::<RunsAggregateExec>()
            .map(RunsAggregateExec::aggregate)
    })
}

/// A partial aggregation whose files are answered from their summaries where they can be; its
/// output, partitioning and ordering are the aggregation's.
pub(crate) struct SummariesExec {
    /// The partial aggregation (its plan runs over the files left).
    inner: Arc<dyn ExecutionPlan>,
    /// What it needs of the summaries.
    eligible: Arc<Eligible>,
    /// What the first partition to run found, for every partition.
    prepared: Arc<tokio::sync::OnceCell<Prepared>>,
    /// Files answered and scanned, for `EXPLAIN ANALYZE`.
    metrics: ExecutionPlanMetricsSet,
}

/// The files the summaries answered (their runs' keys and states), and the plan over the files
/// left.
struct Prepared {
    answered: Vec<KeysAndStates>,
    rest: Arc<dyn ExecutionPlan>,
}

impl fmt::Debug for SummariesExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SummariesExec")
            .field("eligible", &self.eligible)
            .finish_non_exhaustive()
    }
}

impl SummariesExec {
    /// The exec above `plan`, when it is a partial aggregation summaries can answer.
    fn over(plan: Arc<dyn ExecutionPlan>) -> Option<Self> {
        let eligible = eligible(aggregate_of(&plan)?)?;
        Some(Self {
            inner: plan,
            eligible: Arc::new(eligible),
            prepared: Arc::new(tokio::sync::OnceCell::new()),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for SummariesExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => Ok(()),
            _ => write!(
                f,
                "SummariesExec (adit): files answered from their run summaries"
            ),
        }
    }
}

impl ExecutionPlan for SummariesExec {
    fn name(&self) -> &'static str {
        "SummariesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let child = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("SummariesExec has one child".into()))?;
        // Whatever a later rule made of the aggregation, it is judged again.
        Ok(match Self::over(Arc::clone(&child)) {
            Some(exec) => Arc::new(exec),
            None => child,
        })
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let prepared = Arc::clone(&self.prepared);
        let eligible = Arc::clone(&self.eligible);
        let inner = Arc::clone(&self.inner);
        let counts = (
            MetricBuilder::new(&self.metrics).counter("files_from_summaries", partition),
            MetricBuilder::new(&self.metrics).counter("files_scanned", partition),
        );
        let schema = self.inner.schema();
        let partitions = self.properties().output_partitioning().partition_count();
        let stream = futures::stream::once(async move {
            let prepared = prepared
                .get_or_try_init(|| prepare(&eligible, &inner, &context, counts))
                .await?;
            // Each partition merges its share of the files answered (every n-th), so the
            // merging runs on as many threads as the scan would.
            let mine = prepared
                .answered
                .iter()
                .skip(partition)
                .step_by(partitions.max(1));
            let answered = merged(&inner, &context, partition, mine)?;
            let rest = prepared.rest.execute(partition, context)?;
            Ok::<_, DataFusionError>(
                futures::stream::iter(answered.into_iter().map(Ok)).chain(rest),
            )
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    /// Its own counts, and once it has run, the metrics of the scan over the files left (the
    /// child shown is the plan as made, which never runs).
    fn metrics(&self) -> Option<MetricsSet> {
        let mut metrics = self.metrics.clone_inner();
        if let Some(prepared) = self.prepared.get() {
            let _ = prepared.rest.apply(|node| {
                if let Some(scan) = node
                    .downcast_ref::<DataSourceExec>()
                    .and_then(|n| n.metrics())
                {
                    scan.iter().for_each(|m| metrics.push(Arc::clone(m)));
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Some(metrics)
    }
}

/// Answers every file it can from its summary (the files' footers read and judged side by side,
/// as many at a time as the statement has partitions) and plans the partial aggregation over
/// the rest.
async fn prepare(
    eligible: &Arc<Eligible>,
    inner: &Arc<dyn ExecutionPlan>,
    context: &Arc<TaskContext>,
    (from_summaries, scanned): (Count, Count),
) -> Result<Prepared> {
    let mut scan = None;
    inner.apply(|node| {
        if adit_scan(node).is_some() {
            scan = Some(Arc::clone(node));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let scan =
        scan.ok_or_else(|| DataFusionError::Internal("SummariesExec over no scan".into()))?;
    let (_, config, parquet) = adit_scan(&scan).expect("an adit scan");
    let factory = parquet
        .parquet_file_reader_factory()
        .cloned()
        .expect("an adit scan has its readers");
    let cache = context
        .runtime_env()
        .cache_manager
        .get_file_metadata_cache();
    let store = context
        .runtime_env()
        .object_store(&config.object_store_url)?;
    // A large file is scanned in byte ranges, one per partition: each file is answered once.
    let mut seen = HashSet::new();
    let files: Vec<PartitionedFile> = config
        .file_groups
        .iter()
        .flat_map(FileGroup::iter)
        .filter(|file| seen.insert(file.object_meta.location.clone()))
        .cloned()
        .collect();
    let judged: Vec<(PartitionedFile, Option<KeysAndStates>)> =
        futures::stream::iter(files.into_iter().map(|file| {
            let (eligible, factory, cache, store) = (
                Arc::clone(eligible),
                Arc::clone(&factory),
                Arc::clone(&cache),
                Arc::clone(&store),
            );
            SpawnedTask::spawn(async move {
                let metadata = factory
                    .create_reader(0, file.clone(), None, &ExecutionPlanMetricsSet::new())?
                    .get_metadata(None)
                    .await?;
                let answer = match page_index::run_summary(&store, &cache, &file, &metadata).await?
                {
                    Some(runs) => {
                        runs_of(&eligible, &file, &runs, metadata.file_metadata().num_rows())?
                    }
                    None => None,
                };
                Ok::<_, DataFusionError>((file, answer))
            })
        }))
        .buffered(context.session_config().target_partitions().max(1))
        .map(|joined| joined.map_err(|e| DataFusionError::External(Box::new(e)))?)
        .try_collect()
        .await?;
    let mut answered = Vec::new();
    let mut answered_files = HashSet::new();
    for (file, answer) in judged {
        match answer {
            Some(answer) => {
                answered_files.insert(file.object_meta.location);
                answered.push(answer);
                from_summaries.add(1);
            }
            None => scanned.add(1),
        }
    }
    let rest = Arc::clone(inner)
        .transform_up(|node| {
            let Some((_, config, _)) = adit_scan(&node) else {
                return Ok(Transformed::no(node));
            };
            let mut config = config.clone();
            config.file_groups = config
                .file_groups
                .iter()
                .map(|group| {
                    FileGroup::new(
                        group
                            .iter()
                            .filter(|f| !answered_files.contains(&f.object_meta.location))
                            .cloned()
                            .collect(),
                    )
                })
                .collect();
            Ok(Transformed::yes(
                DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
            ))
        })
        .data()?;
    Ok(Prepared { answered, rest })
}

/// `answers` merged into partition `partition`'s groups of the partial aggregation, as its
/// output rows (emitted early where the groups outgrow the memory they may reserve).
fn merged<'a>(
    inner: &Arc<dyn ExecutionPlan>,
    context: &Arc<TaskContext>,
    partition: usize,
    answers: impl Iterator<Item = &'a KeysAndStates>,
) -> Result<Vec<RecordBatch>> {
    let aggregate = aggregate_of(inner)
        .ok_or_else(|| DataFusionError::Internal("SummariesExec over no aggregation".into()))?;
    let batch_rows = context.session_config().batch_size().max(1);
    let mut grouping = Grouping::new(aggregate, context, partition)?;
    let mut out = Vec::new();
    for (keys, states) in answers {
        grouping.merge(keys, states)?;
        if !grouping.fits()? {
            out.extend(grouping.emit(batch_rows)?);
        }
    }
    out.extend(grouping.emit(batch_rows)?);
    Ok(out)
}

/// A file's answer: its runs' grouping keys, and each aggregate's partial states of them.
type KeysAndStates = (Vec<ArrayRef>, Vec<Vec<ArrayRef>>);

/// The grouping keys and each aggregate's states of the runs of `file` (`runs`, its decoded
/// summary; the file has `file_rows`) the statement keeps, or `None` when the file must be
/// scanned: a summary that does not add up to the file, or a run the filters cut through.
fn runs_of(
    eligible: &Eligible,
    file: &PartitionedFile,
    runs: &RecordBatch,
    file_rows: i64,
) -> Result<Option<KeysAndStates>> {
    // The runs of the file's partition: they must hold exactly the file's rows.
    let mut mine = BooleanArray::from(vec![true; runs.num_rows()]);
    for ((name, data_type), value) in eligible.partitions.iter().zip(&file.partition_values) {
        let Some(column) = runs.column_by_name(name) else {
            return Ok(None);
        };
        // Compared as plain values: the scan may give partition values as dictionaries.
        let plain = match data_type {
            DataType::Dictionary(_, values) => values.as_ref(),
            other => other,
        };
        let (Ok(column), Ok(value)) = (cast(column, plain), value.cast_to(plain)) else {
            return Ok(None);
        };
        mine = and(&mine, &eq(&column, &value.to_scalar()?)?)?;
    }
    let runs = filter_record_batch(runs, &mine)?;
    let rows = match runs
        .column_by_name(ROWS)
        .map(|c| c.as_primitive_opt::<UInt64Type>())
    {
        Some(Some(rows)) => rows.clone(),
        _ => return Ok(None),
    };
    if sum(&rows).unwrap_or(0) != file_rows as u64 {
        return Ok(None);
    }
    let mut keep = vec![true; runs.num_rows()];
    for (filter, schema) in &eligible.filters {
        let stats = RunStats {
            runs: &runs,
            rows: &rows,
            file,
            partitions: &eligible.partitions,
            schema: Some(schema),
        };
        // Which runs may hold a row `expr` keeps (all of them when the pruning cannot tell);
        // `None` when it fails on these runs, leaving the file to the scan.
        let judge = |expr: Arc<dyn PhysicalExpr>| match PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(schema))
            .build(expr)
        {
            Some(pruning) => pruning.prune(&stats).ok(),
            None => Some(vec![true; runs.num_rows()]),
        };
        let Some(may) = judge(Arc::clone(filter)) else {
            return Ok(None);
        };
        let may_not = match negated(filter).map(judge) {
            Some(Some(may_not)) => may_not,
            Some(None) => return Ok(None),
            None => vec![true; runs.num_rows()],
        };
        let columns: Vec<String> = collect_columns(filter)
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        for (run, keep) in keep.iter_mut().enumerate() {
            if !*keep || !may[run] {
                *keep = false;
                continue;
            }
            // Kept whole only when no row fails the filter and none of its columns is null
            // there (a null makes the filter neither true nor false).
            let whole = !may_not[run] && columns.iter().all(|c| stats.no_nulls(c, run));
            if !whole {
                return Ok(None);
            }
        }
    }
    let runs = filter_record_batch(&runs, &BooleanArray::from(keep))?;
    let stats = RunStats {
        runs: &runs,
        rows: runs
            .column_by_name(ROWS)
            .expect("checked above")
            .as_primitive(),
        file,
        partitions: &eligible.partitions,
        schema: None,
    };
    let mut keys = Vec::new();
    for (name, data_type) in &eligible.groups {
        let Some(column) = stats.column(name) else {
            return Ok(None);
        };
        let Ok(column) = cast(&column, data_type) else {
            return Ok(None);
        };
        keys.push(column);
    }
    let mut states = Vec::new();
    for (need, types) in &eligible.aggregates {
        let arrays = match need {
            Need::Rows => vec![Some(Arc::clone(
                runs.column_by_name(ROWS).expect("checked"),
            ))],
            Need::NonNull(c) => vec![non_null(&runs, c)],
            Need::One(stat, c) => vec![runs.column_by_name(&stat.of(c)).cloned()],
            // A run without values gives no state at all (a null count, as its sum is): a
            // count of 0 would mark its group as having some, and its average 0/0.
            Need::Avg(c) => vec![
                non_null(&runs, c)
                    .and_then(|n| cast(&n, &DataType::UInt64).ok())
                    .map(|n| {
                        let n = n.as_primitive::<UInt64Type>();
                        Arc::new(n.unary_opt::<_, UInt64Type>(|n| (n > 0).then_some(n))) as ArrayRef
                    }),
                runs.column_by_name(&Stat::Sum.of(c)).cloned(),
            ],
        };
        let mut state = Vec::new();
        for (array, data_type) in arrays.into_iter().zip(types) {
            let Some(Ok(array)) = array.map(|a| cast(&a, data_type)) else {
                return Ok(None);
            };
            state.push(array);
        }
        states.push(state);
    }
    Ok(Some((keys, states)))
}

/// Column `c`'s non-null count per run: its own, or the run's rows where the summary keeps its
/// values but no count (a column without nulls); `None` when the summary does not keep it.
fn non_null(runs: &RecordBatch, c: &str) -> Option<ArrayRef> {
    runs.column_by_name(&Stat::NonNull.of(c))
        .or_else(|| {
            runs.column_by_name(&Stat::Min.of(c))
                .and(runs.column_by_name(ROWS))
        })
        .cloned()
}

/// `filter` negated as a pruning predicate can judge it (comparisons flipped, `AND` and `OR`
/// swapped), or `None` for a filter it does not know how to negate.
fn negated(filter: &Arc<dyn PhysicalExpr>) -> Option<Arc<dyn PhysicalExpr>> {
    if filter.downcast_ref::<DynamicFilterPhysicalExpr>().is_some() {
        return None;
    }
    if let Some(is_null) = filter.downcast_ref::<IsNullExpr>() {
        return Some(Arc::new(IsNotNullExpr::new(Arc::clone(is_null.arg()))));
    }
    if let Some(is_not_null) = filter.downcast_ref::<IsNotNullExpr>() {
        return Some(Arc::new(IsNullExpr::new(Arc::clone(is_not_null.arg()))));
    }
    let binary = filter.downcast_ref::<BinaryExpr>()?;
    let (left, right) = (binary.left(), binary.right());
    let flipped = match binary.op() {
        Operator::And | Operator::Or => {
            let op = if *binary.op() == Operator::And {
                Operator::Or
            } else {
                Operator::And
            };
            return Some(Arc::new(BinaryExpr::new(
                negated(left)?,
                op,
                negated(right)?,
            )));
        }
        Operator::Eq => Operator::NotEq,
        Operator::NotEq => Operator::Eq,
        Operator::Lt => Operator::GtEq,
        Operator::LtEq => Operator::Gt,
        Operator::Gt => Operator::LtEq,
        Operator::GtEq => Operator::Lt,
        _ => return None,
    };
    Some(Arc::new(BinaryExpr::new(
        Arc::clone(left),
        flipped,
        Arc::clone(right),
    )))
}

/// A file's runs as the containers of a pruning predicate: a key's min and max are the key, a
/// value column's are its summary's, a partition column's the file's value.
struct RunStats<'a> {
    runs: &'a RecordBatch,
    rows: &'a UInt64Array,
    file: &'a PartitionedFile,
    partitions: &'a [(String, DataType)],
    /// The schema a filter reads: statistics are given in its types.
    schema: Option<&'a SchemaRef>,
}

impl RunStats<'_> {
    /// The run's value of a key or partition column, one per run.
    fn column(&self, name: &str) -> Option<ArrayRef> {
        if let Some(at) = self.partitions.iter().position(|(p, _)| p == name) {
            let value = self.file.partition_values.get(at)?;
            return value.to_array_of_size(self.runs.num_rows()).ok();
        }
        self.runs.column_by_name(name).cloned()
    }

    /// Whether column `name` has no null in run `run`, as far as the summary tells.
    fn no_nulls(&self, name: &str, run: usize) -> bool {
        if let Some(key) = self.column(name) {
            return key.is_valid(run);
        }
        non_null(self.runs, name)
            .as_ref()
            .and_then(|n| n.as_primitive_opt::<UInt64Type>())
            .is_some_and(|n| n.value(run) == self.rows.value(run))
    }

    /// A column's min or max per run, in the type the filter reads it as.
    fn stat(&self, column: &datafusion::common::Column, stat: Stat) -> Option<ArrayRef> {
        let values = self
            .column(column.name())
            .or_else(|| self.runs.column_by_name(&stat.of(column.name())).cloned())?;
        match self.schema {
            Some(schema) => {
                let field = schema.field_with_name(column.name()).ok()?;
                cast(&values, field.data_type()).ok()
            }
            None => Some(values),
        }
    }
}

impl PruningStatistics for RunStats<'_> {
    fn min_values(&self, column: &datafusion::common::Column) -> Option<ArrayRef> {
        self.stat(column, Stat::Min)
    }

    fn max_values(&self, column: &datafusion::common::Column) -> Option<ArrayRef> {
        self.stat(column, Stat::Max)
    }

    fn num_containers(&self) -> usize {
        self.runs.num_rows()
    }

    fn null_counts(&self, column: &datafusion::common::Column) -> Option<ArrayRef> {
        let nulls: Vec<u64> = match self.column(column.name()) {
            Some(key) => (0..key.len()).map(|i| u64::from(key.is_null(i))).collect(),
            None => {
                let n = non_null(self.runs, column.name())?;
                let n = n.as_primitive_opt::<UInt64Type>()?;
                n.values()
                    .iter()
                    .zip(self.rows.values())
                    .map(|(n, rows)| rows.saturating_sub(*n))
                    .collect()
            }
        };
        Some(Arc::new(UInt64Array::from(nulls)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(self.rows.clone()))
    }

    fn contained(
        &self,
        _column: &datafusion::common::Column,
        _values: &HashSet<ScalarValue>,
    ) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests;
