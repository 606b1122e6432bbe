//! Read-only SQL over the Delta tables, with time, memory and row limits.
//!
//! Every query gets a fresh DataFusion session with the latest version of every table, a
//! memory pool of its own (spilling off, so the limit is a limit) and no way to reach files or
//! URLs: URL tables are off, and the plan is checked before it runs, so DDL, DML, `COPY` and
//! `SET`-like statements are refused.

use std::sync::Arc;
use std::time::Duration;

use adit_schemas::names;
use adit_sinks::TableStore;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use serde::Deserialize;

use crate::error::{QueryError, Result};

/// Every table adit writes; each is registered when it exists.
pub const TABLES: &[&str] = &[
    names::TABLE_ENERGY_READINGS,
    names::TABLE_SENSOR_READINGS,
    names::TABLE_MINER_STATUS,
    names::TABLE_HASHRATE_SAMPLES,
    names::TABLE_GRID_SIGNALS,
    names::TABLE_SHARES,
    names::TABLE_BLOCKS,
    names::TABLE_MACHINE_ENERGY_1M,
    names::TABLE_SITE_ENERGY_1M,
];

/// Per-query limits; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlLimits {
    /// Longest a query may run.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most memory a query may hold, bytes.
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

/// A query's result: its schema and batches (within the row limit).
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
}

/// Runs read-only SQL over the table store.
pub struct SqlEngine {
    /// Where the tables are.
    store: TableStore,
    /// Limits for every query.
    limits: SqlLimits,
}

impl SqlEngine {
    /// An engine over `store` with `limits`.
    pub fn new(store: TableStore, limits: SqlLimits) -> Self {
        Self { store, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SqlLimits {
        &self.limits
    }

    /// A session with its own memory pool and every existing table registered.
    async fn session(&self) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for table in TABLES {
            self.store
                .register(&ctx, table)
                .await
                .map_err(|e| QueryError::Internal(e.to_string()))?;
        }
        Ok(ctx)
    }

    /// Runs `sql` and returns its rows, or the reason it was refused or stopped.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        if sql.trim().is_empty() {
            return Err(QueryError::BadRequest("no SQL given".into()));
        }
        let limit_ms = self.limits.timeout.as_millis() as u64;
        tokio::time::timeout(self.limits.timeout, self.run(sql))
            .await
            .map_err(|_| QueryError::Timeout { limit_ms })?
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
            .map_err(|e| QueryError::ReadOnly(strip(e)))?;
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
                return Err(QueryError::RowLimit {
                    limit: self.limits.max_rows,
                });
            }
            batches.push(batch);
        }
        Ok(QueryResult { schema, batches })
    }

    /// Sorts a DataFusion error into the caller's fault or ours.
    fn classify(&self, e: DataFusionError) -> QueryError {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(detail) => QueryError::MemoryLimit {
                limit_bytes: self.limits.memory_bytes,
                detail: detail.clone(),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::InvalidSql(strip(e)),
            DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => {
                QueryError::InvalidSql(strip(e))
            }
            _ => QueryError::Internal(strip(e)),
        }
    }
}

/// DataFusion's message without its internal backtrace noise.
fn strip(e: DataFusionError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
