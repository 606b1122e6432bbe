//! Fresh rows: what a table's writer will commit but has not yet, so that a reader of a
//! committed snapshot may see it too (issue 29, "fresh reads"); and the tables held in memory
//! only (the last values), which a reader sees beside the committed ones.
//!
//! The query engine asks for them per table and snapshot; whoever answers must vouch for two
//! things: every row given is one the writer commits after that snapshot (never one already
//! in it), and no row the writer will commit before a given row is left out of the answer (the
//! rows are a contiguous run of the stream after the snapshot's position). The answer may be
//! empty at any time: a reader then sees the snapshot alone, as it did before fresh reads.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use futures::future::BoxFuture;

/// A source of rows committed after a snapshot (see the module header for its promise).
pub trait FreshRows: Send + Sync {
    /// Whether `table` may ever have fresh rows: the engine wraps only these.
    fn covers(&self, table: &str) -> bool;

    /// The rows `table` gains after `snapshot` (one version of it) once its writer commits
    /// what it holds, in the writer's schema; empty when none can be vouched for.
    fn after<'a>(
        &'a self,
        table: &'a str,
        snapshot: &'a DeltaTable,
    ) -> BoxFuture<'a, Vec<RecordBatch>>;
}

/// Tables held in memory beside the committed ones (the last-value tables): each statement
/// that reads one sees its rows as they are when the statement starts.
pub trait MemoryTables: Send + Sync {
    /// The names of the tables it holds.
    fn names(&self) -> Vec<String>;

    /// The schema and rows of `table` now; `None` when it holds no such table.
    fn rows(&self, table: &str) -> Option<(SchemaRef, Vec<RecordBatch>)>;
}
