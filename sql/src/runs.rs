//! The first step of a `GROUP BY` over landed rows, done run by run.
//!
//! Every file adit writes is sorted by the columns people filter and group by (site, pool,
//! machine, miner, worker, then time: `adit_sinks::compact`), so a scan hands a `GROUP BY
//! site, machine` its rows in runs of one key, hundreds of rows long. DataFusion's partial
//! aggregation hashes and compares every row's key all the same: on issue 29's landed bench
//! that was about 60 % of the process's CPU for "top 5 machines" (hashing the two keys, the
//! probe and the key comparison per row), where DuckDB took 0.8 of adit's time.
//!
//! [`RunsAggregate`] is a physical optimizer rule that puts [`RunsAggregateExec`] in place of a
//! partial `AggregateExec` that groups by such columns of a Parquet scan (through filters,
//! batch coalescing and round-robin repartitioning, which keep a batch's rows in order). The
//! exec finds each batch's runs with Arrow's `partition` kernel (comparing neighbours, a
//! vectorised pass per key column), looks each run's key up once, and hands DataFusion's own
//! group accumulators the same group indices its partial aggregation would have computed;
//! its output is the partial aggregation's, so the repartition and final aggregation above it
//! are unchanged. Rows that do not come in runs (a file of an adit older than the sorted
//! writes, until compaction rewrites it) are still grouped correctly, one run per row, only
//! without the gain.
//!
//! Memory is reserved from the statement's pool as the groups grow; when the pool says no,
//! the groups so far are emitted (a partial aggregation may emit a group more than once: the
//! final aggregation merges them) and grouping starts over, as DataFusion's does.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use adit_sinks::compact::SORT_COLUMNS;
use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{partition, take};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode,
    Partitioning, PlanProperties, ReplaceChildrenOptions,
};
use futures::{StreamExt, TryStreamExt};

/// Whether adit's files are sorted by `name` before time, so that a grouping by it (with
/// others of them) meets its rows in runs.
fn sorted_key(name: &str) -> bool {
    let (_time, keys) = SORT_COLUMNS.split_last().unwrap_or((&"", &[]));
    keys.contains(&name)
}

/// Bytes an entry of the key index holds besides its key: the boxed slice's pointer and
/// length, the group number, the table's control byte, rounded up.
const KEY_OVERHEAD: usize = 32;

/// The rule: partial aggregations over runs become [`RunsAggregateExec`]s.
#[derive(Debug, Default)]
pub(crate) struct RunsAggregate;

impl PhysicalOptimizerRule for RunsAggregate {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if !over_runs(aggregate) {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(RunsAggregateExec::new(aggregate.clone())) as Arc<dyn ExecutionPlan>,
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "adit_runs_aggregate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `aggregate` is a partial aggregation [`RunsAggregateExec`] does exactly as it
/// would, over rows that come in runs of its grouping key.
fn over_runs(aggregate: &AggregateExec) -> bool {
    let group_by = aggregate.group_expr();
    let columns: Option<Vec<&Column>> = group_by
        .expr()
        .iter()
        .map(|(expr, _)| expr.downcast_ref::<Column>())
        .collect();
    let Some(columns) = columns else {
        return false;
    };
    let input = aggregate.input_schema();
    *aggregate.mode() == AggregateMode::Partial
        && group_by.is_single()
        && !columns.is_empty()
        && columns.iter().all(|c| sorted_key(c.name()))
        && columns.iter().all(|c| {
            input
                .fields()
                .get(c.index())
                .is_some_and(|f| plain_key(f.data_type()))
        })
        && aggregate.limit_options().is_none()
        && aggregate.dynamic_expressions_produced().is_empty()
        && *aggregate.input_order_mode() == InputOrderMode::Linear
        && aggregate.filter_expr().iter().all(Option::is_none)
        && aggregate.aggr_expr().iter().all(|a| {
            !a.is_distinct() && a.order_bys().is_empty() && a.groups_accumulator_supported()
        })
        && scans_in_order(
            aggregate.input(),
            &columns.iter().map(|c| c.name()).collect::<Vec<_>>(),
        )
}

/// Whether a key of `data_type` comes back from Arrow's row format as the same type: not a
/// dictionary or run-end encoded (decoded to their values' type), not nested.
fn plain_key(data_type: &DataType) -> bool {
    !data_type.is_nested()
        && !matches!(
            data_type,
            DataType::Dictionary(..) | DataType::RunEndEncoded(..)
        )
        && RowConverter::supports_fields(&[SortField::new(data_type.clone())])
}

/// Whether `plan` hands on a Parquet scan's rows in file order, with the columns `names` as
/// the scan read them (batches may be cut or dropped on the way, rows not reordered, the
/// columns not renamed or recomputed).
fn scans_in_order(plan: &Arc<dyn ExecutionPlan>, names: &[&str]) -> bool {
    if let Some(source) = plan.downcast_ref::<DataSourceExec>() {
        return source
            .data_source()
            .downcast_ref::<FileScanConfig>()
            .is_some_and(|scan| scan.file_source().file_type() == "parquet");
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        // Each grouped column must be a column of the same name below.
        let passed_on = names.iter().all(|name| {
            projection.expr().iter().any(|kept| {
                kept.alias == *name
                    && kept
                        .expr
                        .downcast_ref::<Column>()
                        .is_some_and(|c| c.name() == *name)
            })
        });
        return passed_on && scans_in_order(projection.input(), names);
    }
    // A filter's own projection only leaves columns out.
    let keeps_order = plan.downcast_ref::<FilterExec>().is_some()
        || plan.downcast_ref::<RepartitionExec>().is_some_and(|r| {
            matches!(r.partitioning(), Partitioning::RoundRobinBatch(_)) && !r.preserve_order()
        });
    keeps_order && scans_in_order(plan.children()[0], names)
}

/// A partial aggregation that looks each run of equal keys up once. Its output, partitioning
/// and ordering are those of the `AggregateExec` it stands in for.
#[derive(Debug)]
pub(crate) struct RunsAggregateExec {
    /// The partial aggregation it does the work of (its groups, aggregates and input).
    inner: AggregateExec,
    /// What each partition did, for `EXPLAIN ANALYZE`.
    metrics: ExecutionPlanMetricsSet,
}

impl RunsAggregateExec {
    fn new(inner: AggregateExec) -> Self {
        Self {
            inner,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The partial aggregation it does the work of.
    pub(crate) fn aggregate(&self) -> &AggregateExec {
        &self.inner
    }
}

impl DisplayAs for RunsAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !matches!(t, DisplayFormatType::TreeRender) {
            write!(f, "RunsAggregateExec (adit): ")?;
        }
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for RunsAggregateExec {
    fn name(&self) -> &'static str {
        "RunsAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.inner.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = Arc::new(self.inner.clone()).replace_children(children, options)?;
        // Over an input that became sorted, DataFusion's own streaming aggregation (which holds
        // the group still filling back when it emits early) is the right one.
        match inner.downcast_ref::<AggregateExec>() {
            Some(aggregate) if *aggregate.input_order_mode() == InputOrderMode::Linear => {
                Ok(Arc::new(Self::new(aggregate.clone())))
            }
            _ => Ok(inner),
        }
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
        let input = self
            .inner
            .input()
            .execute(partition, Arc::clone(&context))?;
        let groups = Grouping::new(&self.inner, &context, partition)?;
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let schema = self.inner.schema();
        let batch_rows = context.session_config().batch_size().max(1);
        let stream = futures::stream::try_unfold(
            (input, groups, metrics, false),
            move |(mut input, mut groups, metrics, done)| async move {
                if done {
                    return Ok::<_, DataFusionError>(None);
                }
                while let Some(batch) = input.next().await {
                    let batch = batch?;
                    let timer = metrics.elapsed_compute().timer();
                    groups.add(&batch)?;
                    let full = !groups.fits()?;
                    timer.done();
                    if full {
                        let out = groups.emit(batch_rows)?;
                        metrics.record_output(out.iter().map(RecordBatch::num_rows).sum());
                        return Ok(Some((out, (input, groups, metrics, false))));
                    }
                }
                let out = groups.emit(batch_rows)?;
                metrics.record_output(out.iter().map(RecordBatch::num_rows).sum());
                metrics.done();
                Ok(Some((out, (input, groups, metrics, true))))
            },
        )
        .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// An aggregate and the expressions of its arguments.
type Aggregate = (Arc<AggregateFunctionExpr>, Vec<Arc<dyn PhysicalExpr>>);

/// One partition's groups: their keys, in the order they were first seen, and each
/// aggregate's accumulator. Fed rows ([`Grouping::add`]) or partial states of runs
/// ([`Grouping::merge`], from `crate::summaries`).
pub(crate) struct Grouping {
    /// The grouping columns.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Each aggregate, with its arguments.
    aggregates: Vec<Aggregate>,
    /// The accumulators, one per aggregate.
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Encodes keys as comparable bytes, and back.
    converter: RowConverter,
    /// The keys seen, group `i` at row `i`.
    seen: Rows,
    /// Each key's group.
    index: HashMap<Box<[u8]>, u32>,
    /// What the keys of `index` hold, with the map's own share per entry.
    key_bytes: usize,
    /// The group of each row of the batch in hand (kept to reuse its memory).
    group_of_row: Vec<usize>,
    /// What the groups hold, reserved from the statement's pool.
    reservation: MemoryReservation,
    /// The output's schema (the partial aggregation's).
    schema: arrow::datatypes::SchemaRef,
}

impl Grouping {
    pub(crate) fn new(
        inner: &AggregateExec,
        context: &Arc<TaskContext>,
        partition: usize,
    ) -> Result<Self> {
        let keys: Vec<Arc<dyn PhysicalExpr>> = inner
            .group_expr()
            .expr()
            .iter()
            .map(|(e, _)| Arc::clone(e))
            .collect();
        let input = inner.input_schema();
        let fields = keys
            .iter()
            .map(|k| Ok(SortField::new(k.data_type(&input)?)))
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(fields)?;
        let aggregates: Vec<_> = inner
            .aggr_expr()
            .iter()
            .map(|a| (Arc::clone(a), a.expressions()))
            .collect();
        let accumulators = accumulators(&aggregates)?;
        let reservation = MemoryConsumer::new(format!("RunsAggregateExec[{partition}]"))
            .with_can_spill(false)
            .register(context.memory_pool());
        Ok(Self {
            keys,
            aggregates,
            accumulators,
            seen: converter.empty_rows(0, 0),
            converter,
            index: HashMap::new(),
            key_bytes: 0,
            group_of_row: Vec::new(),
            reservation,
            schema: inner.schema(),
        })
    }

    /// Adds `batch`'s rows to their groups.
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let keys = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let groups = self.assign(&keys, rows)?;
        for ((_, arguments), accumulator) in self.aggregates.iter().zip(&mut self.accumulators) {
            let values = arguments
                .iter()
                .map(|a| a.evaluate(batch)?.into_array(rows))
                .collect::<Result<Vec<ArrayRef>>>()?;
            accumulator.update_batch(&values, &self.group_of_row, None, groups)?;
        }
        Ok(())
    }

    /// Merges partial states (`states[i]` is aggregate `i`'s, a row per key of `keys`, or per
    /// run when there are no keys) into their groups, as a final aggregation merges partitions.
    pub(crate) fn merge(&mut self, keys: &[ArrayRef], states: &[Vec<ArrayRef>]) -> Result<()> {
        let rows = keys
            .first()
            .or_else(|| states.first().and_then(|state| state.first()))
            .map_or(0, |array| array.len());
        if rows == 0 {
            return Ok(());
        }
        let groups = self.assign(keys, rows)?;
        for (state, accumulator) in states.iter().zip(&mut self.accumulators) {
            accumulator.merge_batch(state, &self.group_of_row, groups)?;
        }
        Ok(())
    }

    /// Sets each of the `rows` rows' group (a new one for a key not seen before) in
    /// `group_of_row`, looking each run of equal keys up once; returns how many groups there
    /// are. Without keys (a global aggregate: `count(*)` with no `GROUP BY`) every row is in
    /// the one group, whose key is empty.
    fn assign(&mut self, keys: &[ArrayRef], rows: usize) -> Result<usize> {
        if self.keys.is_empty() {
            self.group_of_row.clear();
            self.group_of_row.resize(rows, 0);
            if self.index.is_empty() {
                self.index.insert(Box::default(), 0);
            }
            return Ok(1);
        }
        let runs = partition(keys)?.ranges();
        let firsts = UInt32Array::from_iter_values(runs.iter().map(|r| r.start as u32));
        let first_keys = keys
            .iter()
            .map(|k| take(k.as_ref(), &firsts, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let encoded = self.converter.convert_columns(&first_keys)?;
        self.group_of_row.clear();
        for (run, key) in runs.iter().zip(encoded.iter()) {
            let group = match self.index.get(key.as_ref()) {
                Some(&group) => group,
                None => {
                    let group = self.index.len() as u32;
                    self.index.insert(key.as_ref().into(), group);
                    self.key_bytes += key.as_ref().len() + KEY_OVERHEAD;
                    self.seen.push(key);
                    group
                }
            };
            self.group_of_row
                .extend(std::iter::repeat_n(group as usize, run.len()));
        }
        Ok(self.index.len())
    }

    /// Whether the groups' memory could be reserved; `false`: emit them now.
    pub(crate) fn fits(&mut self) -> Result<bool> {
        let held = self.key_bytes
            + self.seen.size()
            + self.group_of_row.capacity() * size_of::<usize>()
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>();
        Ok(self.reservation.try_resize(held).is_ok() || self.index.is_empty())
    }

    /// Every group so far as the partial aggregation's rows, in batches of at most
    /// `batch_rows`; grouping starts over.
    pub(crate) fn emit(&mut self, batch_rows: usize) -> Result<Vec<RecordBatch>> {
        if self.index.is_empty() {
            return Ok(Vec::new());
        }
        // A global aggregate's one group has no key columns, only its states.
        let mut columns = if self.keys.is_empty() {
            Vec::new()
        } else {
            self.converter.convert_rows(self.seen.iter())?
        };
        for accumulator in &mut self.accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        let all = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.accumulators = accumulators(&self.aggregates)?;
        self.seen = self.converter.empty_rows(0, 0);
        self.index = HashMap::new();
        self.key_bytes = 0;
        self.reservation.free();
        Ok((0..all.num_rows())
            .step_by(batch_rows)
            .map(|at| all.slice(at, batch_rows.min(all.num_rows() - at)))
            .collect())
    }
}

/// A fresh accumulator for each aggregate.
fn accumulators(aggregates: &[Aggregate]) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    aggregates
        .iter()
        .map(|(a, _)| a.create_groups_accumulator())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    /// `n` readings from a small generator: sites and machines with nulls, integral powers
    /// (so sums are exact in any order), sorted by site and machine unless `shuffled`.
    fn readings(seed: u64, n: usize, shuffled: bool) -> RecordBatch {
        let mut state = seed;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % m
        };
        type Reading = (Option<String>, Option<String>, Option<f64>, String);
        let mut rows: Vec<Reading> = (0..n)
            .map(|_| {
                (
                    (next(12) > 0).then(|| format!("s-{}", next(3))),
                    (next(15) > 0).then(|| format!("m-{:03}", next(40))),
                    (next(10) > 0).then(|| next(5_000) as f64),
                    format!("src-{}", next(2)),
                )
            })
            .collect();
        if !shuffled {
            rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, true),
            Field::new("machine", DataType::Utf8, true),
            Field::new("power_w", DataType::Float64, true),
            Field::new("source", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0.clone()))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.clone()))),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.3))),
            ],
        )
        .expect("a batch")
    }

    /// A session over Parquet files in `dir`, with the rule or without; small batches and
    /// several partitions, so runs cross batches and files are split.
    async fn session(dir: &std::path::Path, with_rule: bool) -> anyhow::Result<SessionContext> {
        let config = SessionConfig::new()
            .with_target_partitions(3)
            .with_batch_size(64);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if with_rule {
            state = state.with_physical_optimizer_rule(Arc::new(RunsAggregate));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_parquet("t", dir.to_str().unwrap(), ParquetReadOptions::default())
            .await?;
        Ok(ctx)
    }

    /// Parquet files of sorted and shuffled readings in a new folder.
    async fn files() -> anyhow::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        let writer = SessionContext::new();
        for (i, (n, shuffled)) in [(700, false), (1_300, false), (500, true), (1, false)]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("part-{i}.parquet"));
            writer
                .read_batch(readings(i as u64 + 3, n, shuffled))?
                .write_parquet(
                    path.to_str().unwrap(),
                    DataFrameWriteOptions::new().with_single_file_output(true),
                    None,
                )
                .await?;
        }
        Ok(dir)
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> anyhow::Result<String> {
        Ok(pretty_format_batches(&ctx.sql(sql).await?.collect().await?)?.to_string())
    }

    /// Each of `statements` answers the same with the rule and without it, and its plan has a
    /// `RunsAggregateExec` exactly when `taken`.
    async fn same_answers(statements: &[&str], taken: bool) -> anyhow::Result<()> {
        let dir = files().await?;
        let ours = session(dir.path(), true).await?;
        let theirs = session(dir.path(), false).await?;
        for sql in statements {
            let plan = answer(&ours, &format!("EXPLAIN {sql}")).await?;
            assert_eq!(plan.contains("RunsAggregateExec"), taken, "{sql}: {plan}");
            assert_eq!(
                answer(&ours, sql).await?,
                answer(&theirs, sql).await?,
                "{sql}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn grouping_by_runs_answers_as_datafusion_does() -> anyhow::Result<()> {
        same_answers(
            &[
                "SELECT site, machine, count(*) AS n, count(power_w) AS p, sum(power_w) AS s, \
                 min(power_w) AS lo, max(power_w) AS hi, avg(power_w) AS a \
                 FROM t GROUP BY site, machine ORDER BY site, machine",
                "SELECT machine, site, count(*) AS n FROM t GROUP BY machine, site \
                 ORDER BY machine, site",
                "SELECT site, sum(power_w) AS s FROM t GROUP BY site ORDER BY site",
                "SELECT machine, count(*) AS n FROM t WHERE power_w > 2500 GROUP BY machine \
                 ORDER BY machine",
                "SELECT site, machine, avg(power_w) AS w FROM t GROUP BY site, machine \
                 ORDER BY w DESC, site, machine LIMIT 5",
                // Planned as a grouping by (site, machine) below one by site.
                "SELECT site, count(DISTINCT machine) AS n FROM t GROUP BY site ORDER BY site",
            ],
            true,
        )
        .await
    }

    #[tokio::test]
    async fn other_groupings_keep_datafusions_own_plan() -> anyhow::Result<()> {
        same_answers(
            &[
                // Not a column adit's files are sorted by.
                "SELECT source, count(*) AS n FROM t GROUP BY source ORDER BY source",
                // Not a plain column.
                "SELECT upper(site) AS s, count(*) AS n FROM t GROUP BY upper(site) ORDER BY s",
                // An aggregate with a filter of its own.
                "SELECT site, count(*) FILTER (WHERE power_w > 100) AS n FROM t GROUP BY site \
                 ORDER BY site",
                // A renamed column.
                "SELECT s, count(*) AS n FROM (SELECT machine AS s FROM t) GROUP BY s ORDER BY s",
                // No grouping at all.
                "SELECT count(*) AS n, sum(power_w) AS s FROM t",
            ],
            false,
        )
        .await
    }

    #[tokio::test]
    async fn groups_are_emitted_early_when_the_pool_is_full() -> anyhow::Result<()> {
        let batches: Vec<RecordBatch> = (0..4).map(|i| readings(i + 9, 400, false)).collect();
        let ctx = SessionContext::new();
        let aggregate = ctx
            .read_batches(batches.clone())?
            .aggregate(
                vec![
                    datafusion::prelude::col("site"),
                    datafusion::prelude::col("machine"),
                ],
                vec![datafusion::functions_aggregate::expr_fn::count(
                    datafusion::prelude::col("power_w"),
                )],
            )?
            .create_physical_plan()
            .await?;
        // The partial aggregation below the final one, as the rule would take it.
        let partial = find_partial(&aggregate).expect("a partial aggregation");
        // A pool too small for any group: each batch's groups go out as soon as they are made.
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(1, 1.0)
            .build_arc()?;
        let task = Arc::new(TaskContext::default().with_runtime(runtime));
        let exec = RunsAggregateExec::new(partial.clone());
        let mut out = Vec::new();
        for p in 0..exec.properties().output_partitioning().partition_count() {
            out.extend(
                exec.execute(p, Arc::clone(&task))?
                    .try_collect::<Vec<_>>()
                    .await?,
            );
        }
        assert!(out.len() > 1, "emitted in several pieces");
        // Counted per (site, machine), the pieces add up to every non-null power once.
        let counted: i64 = out
            .iter()
            .map(|b| {
                arrow::compute::sum(
                    b.column(2)
                        .as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .expect("counts"),
                )
                .unwrap_or(0)
            })
            .sum();
        let powers: usize = batches
            .iter()
            .map(|b| b.num_rows() - b.column(2).null_count())
            .sum();
        assert_eq!(counted as usize, powers);
        assert_eq!(out[0].schema(), partial.schema());
        Ok(())
    }

    #[test]
    fn only_keys_the_row_format_gives_back_unchanged_are_taken() {
        for plain in [
            DataType::Utf8,
            DataType::Utf8View,
            DataType::Int64,
            DataType::Date32,
        ] {
            assert!(plain_key(&plain), "{plain}");
        }
        let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        for changed in [dictionary, list] {
            assert!(!plain_key(&changed), "{changed}");
        }
    }

    fn find_partial(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
        if let Some(a) = plan.downcast_ref::<AggregateExec>()
            && *a.mode() == AggregateMode::Partial
        {
            return Some(a);
        }
        plan.children().into_iter().find_map(find_partial)
    }
}
