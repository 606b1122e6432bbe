//! Runs one read-only statement over the catalog, with time, memory and row limits.
//!
//! Every statement gets a session of its own over the catalog's current snapshots, with a
//! memory pool of its own (spilling off, so the limit is a limit) and no way to reach files or
//! URLs: URL tables are off, and the plan is checked before it runs, so DDL, DML, `COPY` and
//! `SET`-like statements are refused.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use serde::Deserialize;

use crate::catalog::Catalog;
use crate::error::{Result, SqlError};

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
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 512 * 1024 * 1024,
            max_rows: 1_000_000,
        }
    }
}

/// A statement's result: its schema and batches (within the row limit).
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
}

/// Runs read-only SQL over a [`Catalog`].
pub struct SqlEngine {
    /// The tables.
    catalog: Arc<Catalog>,
    /// Limits for every statement.
    limits: SqlLimits,
}

impl SqlEngine {
    /// An engine over `catalog` with `limits`.
    pub fn new(catalog: Arc<Catalog>, limits: SqlLimits) -> Self {
        Self { catalog, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SqlLimits {
        &self.limits
    }

    /// The catalog it reads.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A session with its own memory pool and every table registered at its current snapshot.
    async fn session(&self) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(SqlError::Engine)?;
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for (name, table) in self.catalog.snapshot().await? {
            let delta = |source: deltalake::DeltaTableError| adit_sinks::Error::Delta {
                table: name.clone(),
                source: Box::new(source),
            };
            table
                .update_datafusion_session(&ctx.state())
                .map_err(delta)?;
            let provider = table.table_provider().await.map_err(|e| delta(e.into()))?;
            ctx.register_table(name.as_str(), provider)
                .map_err(SqlError::Engine)?;
        }
        Ok(ctx)
    }

    /// Runs `sql` and returns its rows, or the reason it was refused or stopped.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        if sql.trim().is_empty() {
            return Err(SqlError::Empty);
        }
        let limit_ms = u64::try_from(self.limits.timeout.as_millis()).unwrap_or(u64::MAX);
        tokio::time::timeout(self.limits.timeout, self.run(sql))
            .await
            .map_err(|_| SqlError::Timeout { limit_ms })?
    }

    async fn run(&self, sql: &str) -> Result<QueryResult> {
        let ctx = self.session().await?;
        let state = ctx.state();
        let plan = state
            .create_logical_plan(sql)
            .await
            .map_err(|e| self.classify(e))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| SqlError::ReadOnly(first_line(&e)))?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| self.classify(e))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(|e| self.classify(e))?;
        let mut batches = Vec::new();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.classify(e))?;
            rows += batch.num_rows();
            if rows > self.limits.max_rows {
                return Err(SqlError::RowLimit {
                    limit: self.limits.max_rows,
                });
            }
            batches.push(batch);
        }
        Ok(QueryResult { schema, batches })
    }

    /// Sorts a DataFusion error into the caller's fault or ours.
    fn classify(&self, e: DataFusionError) -> SqlError {
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
            _ => SqlError::Engine(e),
        }
    }
}

/// DataFusion's message without its internal backtrace noise.
fn first_line(e: &DataFusionError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
