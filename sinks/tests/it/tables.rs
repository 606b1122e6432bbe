//! What the tests of tables share: a store in a temp folder, opening a writer, reading back.

use adit_sinks::{ExactlyOnceTable, Maintenance, TableStore};
use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::Schema;

/// A store in a fresh temp folder, which lives as long as the folder returned.
pub(crate) fn temp_store() -> (tempfile::TempDir, TableStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    (dir, store)
}

/// Writer `app` of `table` in `store`, partitioned by `partitions`.
pub(crate) async fn open(
    store: &TableStore,
    table: &str,
    schema: &std::sync::Arc<Schema>,
    partitions: &[&str],
    maint: Maintenance,
) -> ExactlyOnceTable {
    ExactlyOnceTable::open(store, table, schema, partitions, "app", maint)
        .await
        .unwrap()
}

/// The batches `sql` reads, `table` of `store` registered under its name.
pub(crate) async fn query(store: &TableStore, table: &str, sql: &str) -> Vec<RecordBatch> {
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    assert!(store.register(&ctx, table).await.unwrap());
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// The first row of `sql` over `table`, its columns read as integers.
pub(crate) async fn first_row(store: &TableStore, table: &str, sql: &str) -> Vec<i64> {
    let rows = query(store, table, sql).await;
    rows[0]
        .columns()
        .iter()
        .map(|c| c.as_any().downcast_ref::<Int64Array>().unwrap().value(0))
        .collect()
}

/// The first column of every row of `sql` over `table`, read as integers.
pub(crate) async fn first_column(store: &TableStore, table: &str, sql: &str) -> Vec<i64> {
    query(store, table, sql)
        .await
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}
