//! Statements run on a Ballista cluster (DataFusion's distributed engine) instead of here.
//!
//! The statement is planned and checked here exactly as for the local engine (read-only, the
//! bounded functions, the limits); only the optimized logical plan is sent to the cluster's
//! scheduler, and its rows come back as a stream. The cluster knows nothing of Delta: each
//! table is handed to it as what its current snapshot is, a list of Parquet files. Files are
//! grouped by their partition values, each group scanned as a listing of exactly those files
//! (never of a folder, which may still hold files the log has removed), with the partition
//! columns as constants; the groups are unioned. Stock Ballista schedulers and executors plan
//! and run that with their default codecs, so they need no part of adit, only read access to
//! the same storage.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use ballista_core::config::BALLISTA_CLIENT_PULL;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};
use datafusion::physical_plan::{ExecutionPlan, RecordBatchStream, SendableRecordBatchStream};
use datafusion_proto::protobuf::LogicalPlanNode;
use deltalake::DeltaTable;
use futures::Stream;
use serde::Deserialize;

/// Where statements run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum QueryEngine {
    /// In this process (the default).
    #[default]
    Local,
    /// On the Ballista cluster whose scheduler is at this gRPC address (`http://host:port`).
    Ballista(String),
}

/// The scheduler's port when the address names none (Ballista's default).
const SCHEDULER_PORT: u16 = 50050;

impl FromStr for QueryEngine {
    type Err = String;

    /// `local`, or `ballista://host[:port]` (port 50050 when left out).
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "local" {
            return Ok(Self::Local);
        }
        let wrong = |why: &str| {
            format!("query.engine {s:?} {why}: give \"local\" or \"ballista://host:50050\"")
        };
        let url = url::Url::parse(s).map_err(|e| wrong(&format!("is not a URL ({e})")))?;
        if url.scheme() != "ballista" {
            return Err(wrong("is neither local nor a ballista:// URL"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| wrong("names no scheduler host"))?;
        if !url.path().trim_matches('/').is_empty() || url.query().is_some() {
            return Err(wrong(
                "has a path or query; a scheduler is a host and a port",
            ));
        }
        let port = url.port().unwrap_or(SCHEDULER_PORT);
        Ok(Self::Ballista(format!("http://{host}:{port}")))
    }
}

impl TryFrom<String> for QueryEngine {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// `state` made to send its plans to the scheduler at `scheduler` (an `http://host:port`).
/// The client polls for the job's state (instead of waiting on a pushed stream) so that it
/// knows the job's id from the start and can cancel it.
pub(crate) fn upgrade(state: SessionState, scheduler: &str) -> DfResult<SessionState> {
    let config = state
        .config()
        .clone()
        .upgrade_for_ballista()
        .set_bool(BALLISTA_CLIENT_PULL, true);
    SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build()
        .upgrade_for_ballista(scheduler.to_string())
}

/// `table` at its current snapshot, as a view over its Parquet files that any Ballista
/// scheduler can plan: a union of one listing per partition, the partition columns constant.
pub(crate) fn files_view(table: &DeltaTable) -> DfResult<Arc<dyn TableProvider>> {
    let delta = |e: deltalake::DeltaTableError| DataFusionError::External(Box::new(e));
    let snapshot = table.snapshot().map_err(delta)?;
    let schema = snapshot.snapshot().arrow_schema();
    let partitions = snapshot.metadata().partition_columns();
    let file_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !partitions.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let root = table
        .log_store()
        .root_url()
        .as_str()
        .trim_end_matches('/')
        .to_string();
    // The files of each partition, by the partition values in the table's column order.
    let mut groups: BTreeMap<Vec<Option<String>>, Vec<String>> = BTreeMap::new();
    for file in snapshot.log_data().iter() {
        if file.path().contains('%') {
            // A partition value its path escapes: read through a listing, such a file is not
            // found, or found twice (not solved yet); better no table than wrong rows.
            return Err(DataFusionError::NotImplemented(format!(
                "{} has partition values that its file paths escape ({}); \
                 such tables are read by the local engine only",
                root,
                file.path()
            )));
        }
        let mut values = file.partition_values_map();
        let key = partitions
            .iter()
            .map(|p| values.remove(p).flatten())
            .collect();
        let url = format!("{root}/{}", file.object_store_path().as_ref());
        groups.entry(key).or_default().push(url);
    }
    if groups.is_empty() {
        // No file yet: a listing that matches nothing (an empty relation would reach the
        // cluster without its columns, and a listing needs a path).
        groups.insert(Vec::new(), Vec::new());
    }
    let mut union: Option<LogicalPlanBuilder> = None;
    for (values, files) in groups {
        let constants: BTreeMap<&str, Option<String>> =
            partitions.iter().map(String::as_str).zip(values).collect();
        let branch = partition_scan(&file_schema, &root, files)?;
        let columns = schema
            .fields()
            .iter()
            .map(|f| match constants.get(f.name().as_str()) {
                Some(value) => partition_value(value.clone(), f.data_type(), f.name()),
                None if partitions.contains(f.name()) => {
                    partition_value(None, f.data_type(), f.name())
                }
                None => Ok(Expr::Column(Column::new_unqualified(f.name()))),
            })
            .collect::<DfResult<Vec<_>>>()?;
        let branch = branch.project(columns)?.build()?;
        union = Some(match union {
            None => LogicalPlanBuilder::from(branch),
            Some(union) => union.union(branch)?,
        });
    }
    let plan = union
        .ok_or_else(|| DataFusionError::Internal("a table view of no listing".into()))?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// A scan of exactly `files` (Parquet, holding the table's columns but its partition columns);
/// of nothing when there are none.
fn partition_scan(
    file_schema: &Arc<Schema>,
    root: &str,
    files: Vec<String>,
) -> DfResult<LogicalPlanBuilder> {
    // Listed files are taken whatever their names end with (the log says they are Parquet).
    let (paths, extension) = if files.is_empty() {
        (vec![format!("{root}/")], NO_FILE)
    } else {
        (files, "")
    };
    let urls = paths
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<DfResult<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(extension);
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(file_schema.clone());
    let listing: Arc<dyn TableProvider> = Arc::new(ListingTable::try_new(config)?);
    LogicalPlanBuilder::scan("files", provider_as_source(listing), None)
}

/// A file name ending no file has: a listing of a table's folder that must find nothing.
const NO_FILE: &str = ".adit-no-such-file";

/// A partition column's value (Delta keeps them as text) as a constant of the column's type.
fn partition_value(value: Option<String>, data_type: &DataType, name: &str) -> DfResult<Expr> {
    let scalar = match value {
        Some(text) => ScalarValue::try_from_string(text, data_type)?,
        None => ScalarValue::try_from(data_type)?,
    };
    Ok(lit(scalar).alias(name))
}

/// Asks the scheduler at `scheduler` to stop job `job_id` (a statement whose caller went away
/// or whose time ran out); a failure is logged, as nobody waits for it.
pub(crate) async fn cancel(scheduler: String, job_id: String) {
    let result = async {
        let mut client = SchedulerGrpcClient::connect(scheduler.clone()).await?;
        client
            .cancel_job(CancelJobParams {
                job_id: job_id.clone(),
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(%scheduler, job = %job_id, "cancelled the cluster's job"),
        Err(e) => tracing::warn!(%scheduler, job = %job_id, "cancelling the cluster's job: {e}"),
    }
}

/// Why the cluster failed us, when `e` is a transport failure or an error status of the
/// scheduler's gRPC service (such as a plan it could not decode); `None` for anything else,
/// including a job that ran and failed.
pub(crate) fn unreachable(e: &DataFusionError) -> Option<String> {
    let text = e.find_root().to_string();
    let transport = [
        "transport error",
        "Connection refused",
        "Status {",
        "dns error",
    ];
    transport
        .iter()
        .any(|mark| text.contains(mark))
        .then(|| text.lines().next().unwrap_or_default().to_string())
}

/// `stream`, the rows of `plan` coming from the cluster, made to cancel the cluster's job when
/// it is dropped before its end (the caller went away, or the time limit struck): without it
/// the job would run on with nobody to read it.
pub(crate) fn cancel_on_drop(
    stream: SendableRecordBatchStream,
    plan: Arc<dyn ExecutionPlan>,
    scheduler: &str,
) -> SendableRecordBatchStream {
    Box::pin(JobStream {
        stream,
        plan,
        scheduler: scheduler.to_string(),
        done: false,
    })
}

/// See [`cancel_on_drop`].
struct JobStream {
    stream: SendableRecordBatchStream,
    /// The plan whose root knows the cluster's job id once the job is accepted.
    plan: Arc<dyn ExecutionPlan>,
    scheduler: String,
    /// The stream has ended (the job with it).
    done: bool,
}

impl Stream for JobStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.stream.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.done = true;
        }
        next
    }
}

impl RecordBatchStream for JobStream {
    fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }
}

impl Drop for JobStream {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let job = self
            .plan
            .downcast_ref::<DistributedQueryExec<LogicalPlanNode>>()
            .and_then(DistributedQueryExec::job_id);
        let (Some(job), Ok(runtime)) = (job, tokio::runtime::Handle::try_current()) else {
            return;
        };
        runtime.spawn(cancel(self.scheduler.clone(), job.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_is_local_or_a_scheduler_address() {
        assert_eq!("local".parse(), Ok(QueryEngine::Local));
        assert_eq!(
            "ballista://sched.example:50051".parse(),
            Ok(QueryEngine::Ballista("http://sched.example:50051".into()))
        );
        assert_eq!(
            "ballista://10.0.0.5".parse(),
            Ok(QueryEngine::Ballista("http://10.0.0.5:50050".into()))
        );
        for (bad, why) in [
            ("", "not a URL"),
            ("remote", "not a URL"),
            ("http://sched:50050", "neither local nor"),
            ("ballista://sched:50050/x", "path or query"),
            ("ballista:///x", "no scheduler host"),
        ] {
            let err = bad.parse::<QueryEngine>().unwrap_err();
            assert!(
                err.contains(why) && err.contains("query.engine"),
                "{bad}: {err}"
            );
        }
    }
}
