//! A table as a statement sees it with fresh reads: its committed snapshot, then the rows its
//! writer holds but has not committed yet (see [`adit_sinks::FreshRows`]).
//!
//! The fresh rows are asked for when a statement scans the table (only tables a plan reads pay
//! for them) and are cast to the snapshot's schema by column name, so a table an older adit
//! wrote, or one with columns added since, still lines up; rows that cannot be lined up are
//! left out with a warning, and the statement sees the snapshot alone.

use std::sync::Arc;

use adit_sinks::FreshRows;
use arrow::array::{RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Result as DfResult;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use deltalake::DeltaTable;

/// One table: the provider of its snapshot, unioned with its fresh rows at scan time.
pub struct FreshTable {
    name: String,
    snapshot: DeltaTable,
    committed: Arc<dyn TableProvider>,
    fresh: Arc<dyn FreshRows>,
}

impl std::fmt::Debug for FreshTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshTable")
            .field("name", &self.name)
            .field("version", &self.snapshot.version())
            .finish()
    }
}

impl FreshTable {
    /// Table `name` at `snapshot`, read through `committed`, plus what `fresh` holds after it.
    pub fn new(
        name: &str,
        snapshot: DeltaTable,
        committed: Arc<dyn TableProvider>,
        fresh: Arc<dyn FreshRows>,
    ) -> Self {
        Self {
            name: name.to_string(),
            snapshot,
            committed,
            fresh,
        }
    }
}

/// `batch` with `schema`'s columns, by name: cast where the type differs, null where the batch
/// lacks the column.
fn line_up(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => cast(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[async_trait]
impl TableProvider for FreshTable {
    fn schema(&self) -> SchemaRef {
        self.committed.schema()
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
        let committed = self
            .committed
            .scan(session, projection, filters, limit)
            .await?;
        let rows = self.fresh.after(&self.name, &self.snapshot).await;
        if rows.is_empty() {
            return Ok(committed);
        }
        let schema = self.schema();
        let lined_up = match rows.iter().map(|b| line_up(b, &schema)).collect() {
            Ok(batches) => batches,
            Err(e) => {
                tracing::warn!(table = %self.name, error = %e, "fresh rows do not fit the table's schema; reading the committed snapshot only");
                return Ok(committed);
            }
        };
        let fresh =
            MemorySourceConfig::try_new_exec(&[lined_up], schema, projection.cloned())? as _;
        UnionExec::try_new(vec![committed, fresh])
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // The fresh rows are not filtered by the scan: every filter is applied above it.
        Ok(self
            .committed
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|p| match p {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn fresh_rows_are_lined_up_to_the_table_by_name() {
        let table = Arc::new(Schema::new(vec![
            Field::new("machine", DataType::Utf8, false),
            Field::new("seq", DataType::Int64, false),
            Field::new("added", DataType::Int32, true),
        ]));
        let rows = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("seq", DataType::Int32, false),
                Field::new("machine", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(arrow::array::Int32Array::from(vec![7, 8])),
                Arc::new(StringArray::from(vec!["m1", "m2"])),
            ],
        )
        .unwrap();
        let lined = line_up(&rows, &table).unwrap();
        assert_eq!(lined.schema(), table);
        assert_eq!(
            lined
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>(),
            &Int64Array::from(vec![7, 8])
        );
        assert_eq!(lined.column(0).as_string::<i32>().value(1), "m2");
        assert_eq!(lined.column(2).null_count(), 2);
        let wrong = Arc::new(Schema::new(vec![Field::new(
            "machine",
            DataType::Struct(Default::default()),
            false,
        )]));
        assert!(line_up(&rows, &wrong).is_err());
    }
}
