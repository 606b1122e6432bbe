//! Runs one read-only statement over the catalog, with time, memory and row limits.
//!
//! Every statement gets a session of its own over the catalog's current snapshots, with a
//! memory pool of its own (spilling off, so the limit is a limit) that draws on one budget the
//! engine's statements share, and no way to reach files or URLs: URL tables are off, and the
//! plan is checked before it runs, so DDL, DML, `COPY` and `SET`-like statements are refused.
//! Functions that would build values outside the pool are bounded ([`crate::bounded`]).
//!
//! Statements are planned and executed on a runtime of the engine's own ([`Executor`]), so a
//! heavy query never starves the tasks of the caller's runtime (HTTP, Stratum, pipelines); a
//! statement that reaches its time limit, or whose caller goes away (the future is dropped),
//! is aborted there.
//!
//! With [`QueryEngine::Ballista`] the statement is planned and checked here the same way, then
//! run on the cluster ([`crate::cluster`]); a statement stopped here is cancelled there.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, PoisonError, Weak};
use std::time::Duration;

use adit_config::{Checked, check};
use adit_sinks::MemoryTables;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::common::{ParamValues, TableReference};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, DEFAULT_METADATA_CACHE_LIMIT, FileMetadataCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry, ObjectStoreUrl,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use deltalake::DeltaTable;
use deltalake::kernel::Version;
use futures::StreamExt;
use serde::Deserialize;

use crate::catalog::Catalog;
use crate::cluster::{self, QueryEngine};
use crate::delta_scan::SnapshotTable;
use crate::error::{Result, SqlError};
use crate::executor::{Executor, Task};
use crate::fresh::FreshTable;
use crate::local_files::InlineFiles;
use crate::pool::QueryPool;
use crate::syntax::{
    Dialect, MAX_DEPTH_CEILING, MAX_STATEMENT_BYTES_CEILING, TextError, TextLimits,
};

/// Rows per batch: four times DataFusion's default, so a quarter of the batches and of their
/// per-batch overhead on an aggregation over millions of rows (`scripts/bench_sql.py`:
/// group-by about 1.57 → 1.4 × DuckDB).
const BATCH_ROWS: usize = 32 * 1024;

/// Per-statement limits; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlLimits {
    /// Longest a statement may run.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most memory a statement may hold, bytes.
    pub memory_bytes: usize,
    /// Most rows a result may have.
    pub max_rows: usize,
    /// Most memory all statements of one engine may hold together, bytes.
    pub total_memory_bytes: usize,
    /// Most bytes one call of a value-building function (`repeat`, `lpad`, `range`…) may
    /// build (at most `memory_bytes`, whichever is lower).
    pub max_value_bytes: usize,
    /// Threads of the engine's own runtime (0: one per core).
    pub threads: usize,
    /// Partitions a statement's plan is split into (0: twice the threads, so that files whose
    /// row groups do not divide evenly among the threads still keep every thread busy).
    pub partitions: usize,
    /// Most bytes a statement's text may have, checked before it is parsed.
    pub max_statement_bytes: usize,
    /// Deepest nesting of expressions, subqueries and set operations a statement may have,
    /// checked before it is planned (planning walks the tree recursively).
    pub max_expression_depth: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 512 * 1024 * 1024,
            max_rows: 1_000_000,
            total_memory_bytes: 2048 * 1024 * 1024,
            max_value_bytes: 64 * 1024 * 1024,
            threads: 0,
            partitions: 0,
            max_statement_bytes: TextLimits::default().max_bytes,
            max_expression_depth: TextLimits::default().max_depth,
        }
    }
}

impl SqlLimits {
    /// The text limits every statement is checked against before planning.
    pub fn text(&self) -> TextLimits {
        TextLimits {
            max_bytes: self.max_statement_bytes,
            max_depth: self.max_expression_depth,
        }
    }

    /// Checks the values; the error names the full key (`query.limits.…`).
    pub fn validate(&self) -> Checked {
        check(
            self.max_rows > 0,
            "query.limits.max_rows",
            "must be at least 1",
        )?;
        check(
            self.memory_bytes >= 1024 * 1024,
            "query.limits.memory_bytes",
            "must be at least 1 MiB",
        )?;
        check(
            self.total_memory_bytes >= self.memory_bytes,
            "query.limits.total_memory_bytes",
            format!(
                "must be at least memory_bytes ({}), not {}",
                self.memory_bytes, self.total_memory_bytes
            ),
        )?;
        check(
            self.max_value_bytes >= 1024,
            "query.limits.max_value_bytes",
            format!("must be at least 1 KiB, not {}", self.max_value_bytes),
        )?;
        check(
            !self.timeout.is_zero(),
            "query.limits.timeout",
            "must be more than 0",
        )?;
        check(
            self.threads <= 1024,
            "query.limits.threads",
            format!("must be at most 1024, not {}", self.threads),
        )?;
        check(
            (1024..=MAX_STATEMENT_BYTES_CEILING).contains(&self.max_statement_bytes),
            "query.limits.max_statement_bytes",
            format!(
                "must be from 1024 to {MAX_STATEMENT_BYTES_CEILING}, not {}",
                self.max_statement_bytes
            ),
        )?;
        check(
            (8..=MAX_DEPTH_CEILING).contains(&self.max_expression_depth),
            "query.limits.max_expression_depth",
            format!(
                "must be from 8 to {MAX_DEPTH_CEILING}, not {}",
                self.max_expression_depth
            ),
        )?;
        check(
            self.partitions <= 4096,
            "query.limits.partitions",
            format!("must be at most 4096, not {}", self.partitions),
        )
    }
}

/// What a statement needs besides its text; the HTTP API needs none of it, a PostgreSQL
/// client all of it.
#[derive(Clone, Default)]
pub struct StatementOptions {
    /// The dialect its text is in.
    pub dialect: Dialect,
    /// What its session holds besides the tables (e.g. PostgreSQL's `pg_catalog`).
    pub session: Option<Arc<dyn SessionSetup>>,
    /// The values of its `$1`, `$2`… placeholders.
    pub params: Option<ParamValues>,
}

/// Adds to a statement's session what one kind of client expects besides adit's tables
/// (PostgreSQL's `pg_catalog` and functions). It must add nothing that writes or reaches outside.
pub trait SessionSetup: Send + Sync {
    /// Adds what every statement's session holds whatever its tables: functions, type
    /// planners. Called once per engine, on a copy of the session statements start from; each
    /// statement then starts from a copy of what it returns (building it per statement was
    /// four copies of the whole session and a rebuild of it each time, issue 62).
    fn functions(&self, base: SessionState) -> datafusion::error::Result<SessionState>;
    /// Adds what a statement's session holds over its tables (a catalog of them), once they
    /// are registered in `state` and before it is planned.
    fn tables(&self, state: &SessionState) -> datafusion::error::Result<()>;
}

/// What a statement takes and gives, known once it is planned and before it runs.
#[derive(Debug, Clone)]
pub struct Description {
    /// The type of each placeholder `$1`, `$2`… in order (`None`: the plan does not say).
    pub params: Vec<Option<DataType>>,
    /// The schema of its rows.
    pub schema: SchemaRef,
}

/// A statement planned against the tables' snapshots and read-only checked, not run yet: run
/// it with [`SqlEngine::run_planned`] to skip planning it again (a Flight SQL client asks for
/// a statement's schema, then for its rows).
pub struct Planned {
    /// Its placeholders and the schema of its rows.
    pub description: Description,
    /// The session its tables are registered in, at the snapshots it was planned on.
    state: SessionState,
    /// Its logical plan.
    plan: LogicalPlan,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// A statement's result: its schema and batches (within the row limit).
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
}

/// A statement's rows as they are made (no row limit): the schema, then batch after batch;
/// dropping it stops the statement.
pub struct RowStream {
    /// Result schema.
    pub schema: SchemaRef,
    /// The batches, or the reason the statement stopped (time limit, memory…).
    batches: tokio::sync::mpsc::Receiver<Result<RecordBatch>>,
    /// The statement's task, aborted when the stream is dropped.
    _task: Task<()>,
}

impl RowStream {
    /// The next batch; `None` when the statement has finished.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        self.batches.recv().await
    }
}

/// Runs read-only SQL over a [`Catalog`].
pub struct SqlEngine {
    /// What a statement's task needs.
    inner: Arc<Inner>,
    /// The engine's own runtime.
    executor: Executor,
}

/// The engine's shared parts, moved into each statement's task.
struct Inner {
    /// The tables.
    catalog: Arc<Catalog>,
    /// Each table's scan at the version it was last made for (`None`: deltalake reads that
    /// version; its provider is made per statement).
    scans: std::sync::Mutex<HashMap<String, KeptScan>>,
    /// Parquet footers already read and the run summaries decoded from them, shared by every
    /// statement (at most [`footer_cache_bytes`]).
    footers: Arc<FileMetadataCache>,
    /// The tables' object stores, registered once and shared by every statement.
    stores: Arc<dyn ObjectStoreRegistry>,
    /// The session a local statement starts from (configuration, bounded functions, rules),
    /// built on first use: a copy of it is a fraction of building one, which was most of a
    /// short statement's CPU (issue 29). A cluster's session is built per statement.
    base: OnceLock<SessionState>,
    /// The base with each live [`SessionSetup`]'s functions added, made on its first statement.
    setups: std::sync::Mutex<Vec<(Weak<dyn SessionSetup>, SessionState)>>,
    /// Where statements run.
    engine: QueryEngine,
    /// Limits for every statement.
    limits: SqlLimits,
    /// The memory budget all statements draw on.
    budget: Arc<dyn MemoryPool>,
    /// Whether the columns in `names::SECRET_COLUMNS` are seen (only the payer's engine).
    secrets: bool,
}

/// A table's version and its scan at that version (`None`: deltalake reads it).
type KeptScan = (Option<Version>, Option<Arc<SnapshotTable>>);

impl SqlEngine {
    /// An engine over `catalog` with `limits` that runs statements in this process.
    pub fn new(catalog: Arc<Catalog>, limits: SqlLimits) -> Self {
        Self::on(QueryEngine::Local, catalog, limits)
    }

    /// An engine over `catalog` with `limits` that runs statements where `engine` says (here,
    /// or on a Ballista cluster: planned and checked here, run there).
    pub fn on(engine: QueryEngine, catalog: Arc<Catalog>, limits: SqlLimits) -> Self {
        Self::build(engine, catalog, limits, false)
    }

    /// An engine that also sees the secret columns (`names::SECRET_COLUMNS`): the payer's
    /// own, never one that answers users.
    pub fn with_secrets(catalog: Arc<Catalog>, limits: SqlLimits) -> Self {
        Self::build(QueryEngine::Local, catalog, limits, true)
    }

    fn build(engine: QueryEngine, catalog: Arc<Catalog>, limits: SqlLimits, secrets: bool) -> Self {
        let budget: Arc<dyn MemoryPool> =
            Arc::new(GreedyMemoryPool::new(limits.total_memory_bytes));
        let executor = Executor::new("adit-sql", limits.threads);
        let footers: Arc<FileMetadataCache> =
            Arc::new(DefaultCache::new(footer_cache_bytes(&limits)).with_name("adit-sql-footers"));
        let stores = stores(catalog.store().key());
        Self {
            inner: Arc::new(Inner {
                catalog,
                scans: std::sync::Mutex::default(),
                footers,
                stores,
                base: OnceLock::new(),
                setups: std::sync::Mutex::default(),
                engine,
                limits,
                budget,
                secrets,
            }),
            executor,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SqlLimits {
        &self.inner.limits
    }

    /// The catalog it reads.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Bytes all running statements hold now.
    pub fn memory_in_use(&self) -> usize {
        self.inner.budget.reserved()
    }

    /// Runs `sql` and returns its rows, or the reason it was refused or stopped.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        self.query_with(sql, StatementOptions::default()).await
    }

    /// [`SqlEngine::query`] with `options`.
    pub async fn query_with(&self, sql: &str, options: StatementOptions) -> Result<QueryResult> {
        self.on_executor(sql, move |inner, sql| async move {
            inner.run(&sql, &options).await
        })
        .await
    }

    /// Runs `work` for `sql` on the engine's runtime within the time limit (an empty `sql` is
    /// refused first).
    async fn on_executor<T, F, Fut>(&self, sql: &str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>, String) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        if sql.trim().is_empty() {
            return Err(SqlError::Empty);
        }
        let limit_ms = u64::try_from(self.inner.limits.timeout.as_millis()).unwrap_or(u64::MAX);
        let task = self
            .executor
            .spawn(work(self.inner.clone(), sql.to_string()));
        match tokio::time::timeout(self.inner.limits.timeout, task).await {
            Ok(result) => result?,
            Err(_) => Err(SqlError::Timeout { limit_ms }),
        }
    }
}

impl SqlEngine {
    /// Runs `f` on one of the engine's threads, whose stacks hold the deepest statement the
    /// text limits allow ([`crate::syntax::STACK_BYTES`]): for work outside the engine that
    /// walks a client's tree (another dialect's parser), without making a thread for each
    /// statement (that was ~0.1 ms of every PostgreSQL client's statement, issue 62). `None`
    /// when `f` panicked or no thread could run it.
    pub async fn on_deep_stack<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        if !self.executor.owns_threads() {
            return crate::syntax::on_big_stack(f);
        }
        self.executor.spawn(async move { f() }).await.ok()
    }

    /// Runs `sql` and streams its rows without the row limit (for results too big to collect).
    /// The time limit bounds planning, the making of each batch, and the wait for the reader to
    /// take each one (a reader that stops reading stops the statement). Memory stays at what
    /// the plan itself holds.
    pub async fn query_stream(&self, sql: &str) -> Result<RowStream> {
        self.query_stream_with(sql, StatementOptions::default())
            .await
    }

    /// [`SqlEngine::query_stream`] with `options`.
    pub async fn query_stream_with(
        &self,
        sql: &str,
        options: StatementOptions,
    ) -> Result<RowStream> {
        if sql.trim().is_empty() {
            return Err(SqlError::Empty);
        }
        let sql = sql.to_string();
        self.stream(move |inner| async move { inner.plan(&sql, &options).await })
            .await
    }

    /// Plans `sql` (read-only checked, within the time limit) to be run later with
    /// [`SqlEngine::run_planned`]: its description, and its plan at the snapshots of now.
    pub async fn plan(&self, sql: &str, options: StatementOptions) -> Result<Planned> {
        self.on_executor(sql, move |inner, sql| async move {
            inner.planned(&sql, &options).await
        })
        .await
    }

    /// [`SqlEngine::query_stream`] of a statement planned already (with no parameter values).
    pub async fn run_planned(&self, planned: Planned) -> Result<RowStream> {
        self.stream(move |inner| async move {
            inner
                .start(planned.state, planned.plan, &StatementOptions::default())
                .await
        })
        .await
    }

    /// Streams the rows of the statement `start` plans and starts on the engine's runtime,
    /// within the time limit (see [`SqlEngine::query_stream`]).
    async fn stream<F, Fut>(&self, start: F) -> Result<RowStream>
    where
        F: FnOnce(Arc<Inner>) -> Fut + Send + 'static,
        Fut: std::future::Future<
                Output = Result<datafusion::physical_plan::SendableRecordBatchStream>,
            > + Send
            + 'static,
    {
        let limits = &self.inner.limits;
        let limit_ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
        let (tx, batches) = tokio::sync::mpsc::channel(2);
        let inner = self.inner.clone();
        let task = self.executor.spawn(async move {
            let timed_out = || SqlError::Timeout { limit_ms };
            let planned = start(inner.clone());
            let stream = match tokio::time::timeout_at(deadline, planned).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    // The receiver may be gone already; then nobody waits for the reason.
                    drop(schema_tx.send(Err(e)));
                    return;
                }
                Err(_) => {
                    drop(schema_tx.send(Err(timed_out())));
                    return;
                }
            };
            if schema_tx.send(Ok(stream.schema())).is_err() {
                return;
            }
            let mut stream = stream;
            let each = inner.limits.timeout;
            loop {
                let next = match tokio::time::timeout(each, stream.next()).await {
                    Ok(Some(batch)) => batch.map_err(|e| inner.classify(e)),
                    Ok(None) => return,
                    Err(_) => Err(timed_out()),
                };
                let stop = next.is_err();
                match tokio::time::timeout(each, tx.send(next)).await {
                    Ok(Ok(())) if !stop => {}
                    _ => return,
                }
            }
        });
        let schema = match tokio::time::timeout_at(deadline, schema_rx).await {
            Ok(Ok(schema)) => schema?,
            Ok(Err(_)) => {
                return Err(SqlError::Engine(DataFusionError::Execution(
                    "the statement's task ended before planning".into(),
                )));
            }
            Err(_) => return Err(SqlError::Timeout { limit_ms }),
        };
        Ok(RowStream {
            schema,
            batches,
            _task: task,
        })
    }
}

/// How many bytes of footers and decoded run summaries an engine keeps: an eighth of what its
/// statements may hold together (256 MiB by default; a 1 M-row file of a 10 000-machine farm
/// takes about 3 MB), and never less than DataFusion's own default.
fn footer_cache_bytes(limits: &SqlLimits) -> usize {
    (limits.total_memory_bytes / 8).max(DEFAULT_METADATA_CACHE_LIMIT)
}

impl Inner {
    /// A runtime with the memory `pool`, no disk, and the shared footers and object stores.
    /// A statement runs in one with a pool of its own that draws on the engine's budget.
    fn runtime(&self, pool: Arc<dyn MemoryPool>) -> Result<Arc<RuntimeEnv>> {
        RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(self.footers.clone()))
                    .with_metadata_cache_limit(footer_cache_bytes(&self.limits)),
            )
            .with_object_store_registry(self.stores.clone())
            .build_arc()
            .map_err(SqlError::Engine)
    }

    /// A copy of the session every statement starts from, without tables.
    fn base(&self) -> Result<SessionState> {
        if let QueryEngine::Ballista(_) = &self.engine {
            return self.build_base();
        }
        if let Some(base) = self.base.get() {
            return Ok(base.clone());
        }
        let base = self.build_base()?;
        Ok(self.base.get_or_init(|| base).clone())
    }

    /// [`Inner::base`] with `setup`'s functions added (see [`SessionSetup::functions`]).
    fn base_for(&self, setup: Option<&Arc<dyn SessionSetup>>) -> Result<SessionState> {
        let base = self.base()?;
        let Some(setup) = setup else {
            return Ok(base);
        };
        if let QueryEngine::Ballista(_) = &self.engine {
            return setup.functions(base).map_err(SqlError::Engine);
        }
        let mut setups = self.setups.lock().unwrap_or_else(PoisonError::into_inner);
        setups.retain(|(kept, _)| kept.strong_count() > 0);
        let mine = Arc::as_ptr(setup);
        if let Some((_, state)) = setups
            .iter()
            .find(|(kept, _)| std::ptr::addr_eq(kept.as_ptr(), mine))
        {
            return Ok(state.clone());
        }
        let state = setup.functions(base).map_err(SqlError::Engine)?;
        setups.push((Arc::downgrade(setup), state.clone()));
        Ok(state)
    }

    /// The session statements start from: configuration, functions bounded, rules. Planning
    /// reserves no memory; a statement runs in a runtime of its own ([`Inner::plan`]).
    fn build_base(&self) -> Result<SessionState> {
        let runtime = self.runtime(self.budget.clone())?;
        let mut config = SessionConfig::new()
            .with_batch_size(BATCH_ROWS)
            .with_information_schema(true)
            .with_target_partitions(self.partitions());
        // No cache of a filter's decoded columns between the filter and the output: to fill it,
        // the reader decodes the filter columns over whole batches around each page the page
        // index kept ([`BATCH_ROWS`] rows each), so one machine's readings decoded 622 K rows
        // of site and machine for 73 K the pages held (issue 29's landed bench). Without it the
        // output decodes the few matching rows' filter columns a second time.
        config
            .options_mut()
            .execution
            .parquet
            .max_predicate_cache_size = Some(0);
        // adit writes no bloom filters (`adit_sinks::compact::writer_properties`); looking for
        // them in each file of a scan cost a point lookup on 12 landed files 1.4 ms of its
        // ~10 (issue 29, EXPLAIN ANALYZE's bloom_filter_eval_time).
        config.options_mut().execution.parquet.bloom_filter_on_read = false;
        let ctx = match &self.engine {
            // Partial aggregations over the sorted files' runs look each run's key up once
            // (crate::runs); a cluster's executors run DataFusion's own plan nodes only.
            QueryEngine::Local => SessionContext::new_with_state(
                SessionStateBuilder::new()
                    .with_config(config)
                    .with_runtime_env(runtime)
                    .with_default_features()
                    .with_physical_optimizer_rule(Arc::new(crate::summaries::RunSummaries))
                    .with_physical_optimizer_rule(Arc::new(crate::runs::RunsAggregate))
                    .build(),
            ),
            QueryEngine::Ballista(scheduler) => {
                let state = SessionStateBuilder::new()
                    .with_config(config)
                    .with_runtime_env(runtime)
                    .with_default_features()
                    .build();
                let state = cluster::upgrade(state, scheduler).map_err(SqlError::Engine)?;
                SessionContext::new_with_state(state)
            }
        };
        // A call may build at most the statement's whole memory, whichever limit is lower.
        let max_value = self.limits.max_value_bytes.min(self.limits.memory_bytes);
        let local = matches!(self.engine, QueryEngine::Local);
        if local {
            // Local only: a cluster's executors do not know them.
            crate::json::register(&ctx);
            // A grouped count(DISTINCT …) beside counts as two group-bys (crate::distinct).
            ctx.add_optimizer_rule(Arc::new(crate::distinct::DistinctWithCounts));
        }
        crate::bounded::install(&ctx, max_value, local).map_err(SqlError::Engine)?;
        Ok(ctx.state())
    }

    /// A session for `statement` with the tables it reads registered at their current
    /// snapshots (every table when it may read them all: [`tables_read`]) and what `setup`
    /// adds.
    async fn session(
        &self,
        statement: &DfStatement,
        setup: Option<&Arc<dyn SessionSetup>>,
    ) -> Result<SessionState> {
        let mut state = self.base_for(setup)?;
        // The copy holds the base's clock: `now()` is the statement's start, not the base's.
        state.mark_start_execution();
        let read = tables_read(&state, statement);
        let tables = self.catalog.snapshot_of(read.as_ref()).await?;
        let schema = MemorySchemaProvider::new();
        // Tables gone from the root are forgotten.
        self.scans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| tables.names.binary_search(name).is_ok());
        for (name, table) in tables.snapshots {
            let delta = |source: deltalake::DeltaTableError| adit_sinks::Error::Delta {
                table: name.clone(),
                source: Box::new(source),
            };
            let provider = match &self.engine {
                QueryEngine::Local => {
                    table.update_datafusion_session(&state).map_err(delta)?;
                    let committed = match self.scan(&name, &table) {
                        Some(scan) => scan,
                        None => table.table_provider().await.map_err(|e| delta(e.into()))?,
                    };
                    match self.catalog.fresh() {
                        Some(fresh) if fresh.covers(&name) => Arc::new(FreshTable::new(
                            &name,
                            table.clone(),
                            committed,
                            fresh.clone(),
                        )),
                        _ => committed,
                    }
                }
                QueryEngine::Ballista(_) => match cluster::files_view(&table) {
                    Ok(view) => view,
                    Err(e) => {
                        // Left out, so a statement that reads it fails naming it.
                        tracing::warn!(table = %name, error = %e, "not readable on the cluster");
                        continue;
                    }
                },
            };
            let provider = if self.secrets {
                provider
            } else {
                without_secrets(&name, provider).map_err(SqlError::Engine)?
            };
            schema
                .register_table(name, provider)
                .map_err(SqlError::Engine)?;
        }
        if let Some(memory) = self.catalog.memory() {
            register_memory(&schema, memory.as_ref(), read.as_ref())?;
        }
        // The statement's own catalog: the base's is shared by every copy of it.
        let names = &state.config().options().catalog;
        let catalog = MemoryCatalogProvider::new();
        catalog
            .register_schema(&names.default_schema, Arc::new(schema))
            .map_err(SqlError::Engine)?;
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(names.default_catalog.clone(), Arc::new(catalog));
        state.register_catalog_list(Arc::new(catalogs));
        if let Some(setup) = setup {
            setup.tables(&state).map_err(SqlError::Engine)?;
        }
        Ok(state)
    }

    /// `table`'s scan of its snapshot's files, made once per version; `None` when deltalake
    /// must read it (or the scan could not be made: then deltalake reads it, and the reason
    /// is logged once per version).
    fn scan(&self, name: &str, table: &DeltaTable) -> Option<Arc<dyn TableProvider>> {
        let version = table.version();
        let mut scans = self.scans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((v, scan)) = scans.get(name)
            && *v == version
        {
            return scan.clone().map(|s| s as _);
        }
        let scan = match SnapshotTable::try_new(table) {
            Ok(scan) => scan.map(Arc::new),
            Err(e) => {
                tracing::warn!(table = name, error = %e, "the table's files cannot be scanned directly; deltalake reads it");
                None
            }
        };
        scans.insert(name.to_string(), (version, scan.clone()));
        scan.map(|s| s as _)
    }

    /// The partitions a plan is split into.
    fn partitions(&self) -> usize {
        match self.limits.partitions {
            0 => 2 * Executor::workers(self.limits.threads),
            n => n,
        }
    }

    /// `sql` parsed and checked against the text limits, as the one statement to plan; what is
    /// not a statement DataFusion's SQL planner reads (`COPY`, `CREATE EXTERNAL TABLE`,
    /// `RESET`) is refused here, before planning.
    fn statement(&self, sql: &str, dialect: Dialect) -> Result<DfStatement> {
        let mut statements =
            crate::syntax::parse_in(sql, self.limits.text(), dialect).map_err(|e| match e {
                TextError::Parse(reason) => SqlError::InvalidSql(reason),
                too_big => SqlError::TooComplex(too_big.to_string()),
            })?;
        match (statements.pop_front(), statements.is_empty()) {
            (None, _) => Err(SqlError::Empty),
            (Some(_), false) => Err(SqlError::InvalidSql(
                "one statement at a time, please".into(),
            )),
            (Some(s @ (DfStatement::Statement(_) | DfStatement::Explain(_))), true) => Ok(s),
            (Some(other), true) => Err(SqlError::ReadOnly(format!(
                "{} is not a query",
                other.to_string().split_whitespace().next().unwrap_or("it")
            ))),
        }
    }

    /// `sql`'s logical plan, read-only checked, in a session made for it.
    async fn logical(
        &self,
        sql: &str,
        options: &StatementOptions,
    ) -> Result<(SessionState, LogicalPlan)> {
        let statement = self.statement(sql, options.dialect)?;
        let state = self.session(&statement, options.session.as_ref()).await?;
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| self.classify_planning(e))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| SqlError::ReadOnly(first_line(&e)))?;
        Ok((state, plan))
    }

    /// `sql` planned, to be started later.
    async fn planned(&self, sql: &str, options: &StatementOptions) -> Result<Planned> {
        let (state, plan) = self.logical(sql, options).await?;
        Ok(Planned {
            description: self.description(&plan)?,
            state,
            plan,
        })
    }

    /// The placeholders and row schema of `plan`.
    fn description(&self, plan: &LogicalPlan) -> Result<Description> {
        let mut types = plan
            .get_parameter_types()
            .map_err(|e| self.classify_planning(e))?;
        let mut params = Vec::new();
        while let Some(t) = types.remove(&format!("${}", params.len() + 1)) {
            params.push(t);
        }
        if let Some(name) = types.keys().next() {
            return Err(SqlError::InvalidSql(format!(
                "placeholder {name} is not one of $1…${} in order",
                params.len()
            )));
        }
        Ok(Description {
            params,
            schema: Arc::new(plan.schema().as_arrow().clone()),
        })
    }

    /// Plans `sql` (read-only checked) and starts it.
    async fn plan(
        &self,
        sql: &str,
        options: &StatementOptions,
    ) -> Result<datafusion::physical_plan::SendableRecordBatchStream> {
        let (state, plan) = self.logical(sql, options).await?;
        self.start(state, plan, options).await
    }

    /// Starts `plan` in `state` with `options`' parameter values.
    async fn start(
        &self,
        state: SessionState,
        plan: LogicalPlan,
        options: &StatementOptions,
    ) -> Result<datafusion::physical_plan::SendableRecordBatchStream> {
        let plan = match &options.params {
            Some(values) => plan
                .with_param_values(values.clone())
                .map_err(|e| self.classify_planning(e))?,
            None => plan,
        };
        let plan = state
            .optimize(&plan)
            .map_err(|e| self.classify_optimizing(e))?;
        if let QueryEngine::Ballista(_) = &self.engine {
            // The cluster's executors run the functions unwrapped: what can be judged here is.
            crate::bounded::check_constant_calls(&plan).map_err(|e| self.classify(e))?;
        }
        let plan = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await
            .map_err(|e| self.classify_planning(e))?;
        let pool = QueryPool::new(self.budget.clone(), self.limits.memory_bytes);
        let task = TaskContext::from(&state).with_runtime(self.runtime(Arc::new(pool))?);
        let stream = execute_stream(plan.clone(), Arc::new(task)).map_err(|e| self.classify(e))?;
        Ok(match &self.engine {
            QueryEngine::Local => stream,
            QueryEngine::Ballista(scheduler) => cluster::cancel_on_drop(stream, plan, scheduler),
        })
    }

    async fn run(&self, sql: &str, options: &StatementOptions) -> Result<QueryResult> {
        let mut stream = self.plan(sql, options).await?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        let (mut rows, mut bytes) = (0, 0);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.classify(e))?;
            rows += batch.num_rows();
            // The collected result is held in memory too: it counts against the statement.
            bytes += batch.get_array_memory_size();
            if bytes > self.limits.memory_bytes {
                return Err(SqlError::MemoryLimit {
                    limit_bytes: self.limits.memory_bytes,
                    detail: format!(
                        "the result holds over {bytes} bytes; aggregate, add a LIMIT, or stream it (stream=true)"
                    ),
                });
            }
            if rows > self.limits.max_rows {
                return Err(SqlError::RowLimit {
                    limit: self.limits.max_rows,
                });
            }
            batches.push(batch);
        }
        Ok(QueryResult { schema, batches })
    }

    /// [`Inner::classify`] for an error while planning, which only the statement can cause:
    /// DataFusion's internal errors there (a type it fails to coerce, found by
    /// `sql/tests/it/hostile_statements.rs`) are answered as the statement's fault, not ours.
    fn classify_planning(&self, e: DataFusionError) -> SqlError {
        match e.find_root() {
            DataFusionError::Internal(_) => SqlError::InvalidSql(format!(
                "the statement cannot be planned: {}",
                first_line(&e)
            )),
            _ => self.classify(e),
        }
    }

    /// [`Inner::classify`] for an error of the logical optimizer, which reads no storage and
    /// works on the statement's expressions alone: whatever it fails on (a pattern that does
    /// not compile while `regexp_like` is simplified, a constant it cannot fold) is the
    /// statement's fault, but for the memory limit.
    fn classify_optimizing(&self, e: DataFusionError) -> SqlError {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(_) => self.classify(e),
            _ => SqlError::InvalidSql(format!(
                "the statement cannot be planned: {}",
                e.to_string().replace('\n', " ")
            )),
        }
    }

    /// Sorts a DataFusion error into the caller's fault or ours.
    fn classify(&self, e: DataFusionError) -> SqlError {
        if let QueryEngine::Ballista(scheduler) = &self.engine
            && let Some(reason) = cluster::unreachable(&e)
        {
            return SqlError::Cluster(format!("the scheduler at {scheduler}: {reason}"));
        }
        match e.find_root() {
            DataFusionError::ResourcesExhausted(detail) => SqlError::MemoryLimit {
                limit_bytes: self.limits.memory_bytes,
                detail: detail.clone(),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Execution(_)
            | DataFusionError::ArrowError(..) => SqlError::InvalidSql(first_line(&e)),
            DataFusionError::Internal(text) if text.contains(BAD_PATTERN) => {
                SqlError::InvalidSql(bad_pattern(text))
            }
            _ => SqlError::Engine(e),
        }
    }
}

/// How Arrow says a statement's regular expression (`SIMILAR TO`, `~`, a `regexp_` function's
/// pattern) does not compile. DataFusion wraps it as an internal error when the pattern meets
/// the rows, though only the statement can cause it (found by `sql/tests/it/hostile_statements.rs`).
const BAD_PATTERN: &str = "Regular expression did not compile";

/// The object stores statements read through: local table files by [`InlineFiles`] (their
/// byte ranges read on the statement's own threads, in place of DataFusion's default
/// `LocalFileSystem`), opened with `key` when the tables are encrypted at rest; the rest as
/// the tables register them (an encrypted root's store already decrypts).
fn stores(key: Option<&adit_sinks::AtRestKey>) -> Arc<dyn ObjectStoreRegistry> {
    let stores = DefaultObjectStoreRegistry::new();
    let local: Arc<dyn object_store::ObjectStore> = Arc::new(InlineFiles::default());
    let local: Arc<dyn object_store::ObjectStore> = match key {
        Some(key) => Arc::new(adit_sinks::EncryptedStore::new(local, key.clone())),
        None => local,
    };
    // The default store it replaces is not needed.
    stores.register_store(ObjectStoreUrl::local_filesystem().as_ref(), local);
    Arc::new(stores)
}

/// The caller's message for a pattern that does not compile: the regex crate's reason, on
/// one line, without DataFusion's "internal error" framing.
fn bad_pattern(text: &str) -> String {
    let reason = text
        .split_once(BAD_PATTERN)
        .map_or(text, |(_, reason)| reason)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.chars().all(|c| c == '~'))
        .collect::<Vec<_>>()
        .join(" ");
    format!("the pattern is not a valid regular expression{reason}")
}

/// `provider` as a view without the secret columns of the table `name` (itself when it has
/// none): a reader cannot name them, list them or reach them through `*`.
fn without_secrets(
    name: &str,
    provider: Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    use datafusion::catalog::default_table_source::provider_as_source;
    use datafusion::catalog::view::ViewTable;
    use datafusion::logical_expr::LogicalPlanBuilder;
    use datafusion::prelude::col;
    let secret = |column: &str| {
        adit_schemas::names::SECRET_COLUMNS
            .iter()
            .any(|(t, c)| *t == name && *c == column)
    };
    let schema = provider.schema();
    if !schema.fields().iter().any(|f| secret(f.name())) {
        return Ok(provider);
    }
    let shown = schema
        .fields()
        .iter()
        .filter(|f| !secret(f.name()))
        .map(|f| col(datafusion::common::Column::new_unqualified(f.name())));
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?
        .project(shown)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// DataFusion's message without its internal backtrace noise.
fn first_line(e: &DataFusionError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// The tables of the default schema `statement` names, by name; `None` when it names a table
/// of another schema or catalog (`information_schema`, which `SHOW` reads too, `pg_catalog`)
/// or its names cannot be read, so it gets every table. A name that is no table stays in the
/// set and is found by no one, failing the statement as before.
/// Registers in `schema` each table `memory` holds that the statement reads (every one when
/// `read` is `None`), with its rows as they are now.
fn register_memory(
    schema: &MemorySchemaProvider,
    memory: &dyn MemoryTables,
    read: Option<&HashSet<String>>,
) -> Result<()> {
    for name in memory.names() {
        if read.is_some_and(|read| !read.contains(&name)) {
            continue;
        }
        let Some((table_schema, batches)) = memory.rows(&name) else {
            continue;
        };
        let table = MemTable::try_new(table_schema, vec![batches]).map_err(SqlError::Engine)?;
        schema
            .register_table(name, Arc::new(table))
            .map_err(SqlError::Engine)?;
    }
    Ok(())
}

fn tables_read(state: &SessionState, statement: &DfStatement) -> Option<HashSet<String>> {
    let names = &state.config().options().catalog;
    let references = state.resolve_table_references(statement).ok()?;
    references
        .into_iter()
        .map(|reference| match reference {
            TableReference::Bare { table } => Some(table.to_string()),
            TableReference::Partial { schema, table } if *schema == names.default_schema => {
                Some(table.to_string())
            }
            TableReference::Full {
                catalog,
                schema,
                table,
            } if *catalog == names.default_catalog && *schema == names.default_schema => {
                Some(table.to_string())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
