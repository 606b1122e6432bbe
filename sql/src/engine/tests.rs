//! The engine's per-statement rules: its own memory limit, its own `now()`, the snapshot it starts
//! on, the tables it registers, secret columns, and a bad pattern as the caller's fault.

use super::*;
use adit_sinks::TableStore;
use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

/// The scans `engine` keeps, by table.
fn kept_scans(engine: &SqlEngine) -> std::sync::MutexGuard<'_, HashMap<String, KeptScan>> {
    engine
        .inner
        .scans
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// An engine with `limits` over an empty table root (kept alive by the returned folder).
fn empty_engine(limits: SqlLimits) -> anyhow::Result<(tempfile::TempDir, SqlEngine)> {
    let dir = tempfile::tempdir()?;
    let store = TableStore::new(dir.path().to_str().unwrap(), Default::default())?;
    let catalog = Arc::new(Catalog::new(store, Duration::ZERO));
    Ok((dir, SqlEngine::new(catalog, limits)))
}

/// Each statement runs in a memory pool of its own, though it starts from a session
/// shared with the others: an aggregation past the statement's limit is stopped even when
/// the engine's budget has room, and gives back what it held.
#[tokio::test]
async fn each_statement_is_held_to_its_own_memory_limit() -> anyhow::Result<()> {
    let limits = SqlLimits {
        memory_bytes: 1 << 20,
        ..SqlLimits::default()
    };
    assert!(limits.total_memory_bytes > 64 << 20);
    let (_dir, engine) = empty_engine(limits)?;
    // The shared session is built by the first statement; the second copies it.
    for _ in 0..2 {
        let big = engine
            .query("SELECT array_agg(value) FROM generate_series(1, 4000000)")
            .await;
        match big {
            Err(SqlError::MemoryLimit { .. }) => {}
            Err(other) => panic!("not the memory limit: {other}"),
            Ok(_) => panic!("answered past the statement's memory limit"),
        }
        for _ in 0..100 {
            if engine.memory_in_use() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(engine.memory_in_use(), 0);
        let small = engine
            .query("SELECT sum(value) FROM generate_series(1, 1000)")
            .await?;
        assert_eq!(small.batches[0].num_rows(), 1);
    }
    Ok(())
}

/// `now()` is each statement's own start, though every statement copies one session: a
/// frozen clock kept alert rules over `now() - INTERVAL` windows firing forever (CI stop 48,
/// `tests/it/alerts.rs`).
#[tokio::test]
async fn now_is_each_statements_own_start() -> anyhow::Result<()> {
    let (_dir, engine) = empty_engine(SqlLimits::default())?;
    let first = now_ns(&engine).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = now_ns(&engine).await?;
    assert!(
        second - first >= 50_000_000,
        "now() moved {} ns across 50 ms",
        second - first
    );
    Ok(())
}

/// A pattern that does not compile is the statement's fault, whichever way it is written,
/// and the answer says why on one line.
#[tokio::test]
async fn a_pattern_that_does_not_compile_is_the_callers_fault() -> anyhow::Result<()> {
    let (_dir, api) = empty_engine(SqlLimits::default())?;
    for sql in [
        "SELECT s SIMILAR TO '(' FROM (VALUES ('a'), (NULL)) AS t(s)",
        "SELECT s ~ '[' FROM (VALUES ('a')) AS t(s)",
        "SELECT regexp_like(s, p) FROM (VALUES ('a', '(')) AS t(s, p)",
    ] {
        match api.query(sql).await {
            Err(SqlError::InvalidSql(reason)) => {
                assert!(!reason.contains('\n'), "{sql}: {reason}");
                assert!(!reason.contains("Internal"), "{sql}: {reason}");
            }
            Err(other) => panic!("{sql}: {other}"),
            Ok(answer) => panic!("{sql}: answered {} batches", answer.batches.len()),
        }
    }
    Ok(())
}

/// The first column of the first row of `sql`'s answer, a 64-bit integer.
async fn first_i64(engine: &SqlEngine, sql: &str) -> anyhow::Result<i64> {
    let answer = engine.query(sql).await?;
    let column = answer.batches[0].column(0);
    Ok(column
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("a 64-bit integer")
        .value(0))
}

/// The engine's `now()` in nanoseconds since the epoch.
async fn now_ns(engine: &SqlEngine) -> anyhow::Result<i64> {
    first_i64(engine, "SELECT CAST(now() AS BIGINT) AS ns").await
}

async fn count(engine: &SqlEngine) -> anyhow::Result<i64> {
    first_i64(engine, "SELECT count(*) AS n, max(v) FROM t").await
}

/// A payment's signed transaction and the wallet's metadata are seen only by the payer's
/// engine: an API engine cannot select, list or star them, and the rest reads as before.
#[tokio::test]
async fn secret_columns_are_seen_only_by_an_engine_with_secrets() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = TableStore::new(dir.path().to_str().unwrap(), Default::default())?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("tx_hash", DataType::Utf8, false),
        Field::new("amount", DataType::Int64, false),
        Field::new("tx_metadata", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["h1", "h2"])),
            Arc::new(Int64Array::from(vec![5, 7])),
            Arc::new(StringArray::from(vec![Some("SECRET"), None])),
        ],
    )?;
    let table = store.open_or_create("payments", &schema, &[]).await?;
    table.write(vec![batch]).await?;
    let catalog = Arc::new(Catalog::new(store.clone(), Duration::ZERO));
    let api = SqlEngine::new(catalog.clone(), SqlLimits::default());
    assert!(matches!(
        api.query("SELECT tx_metadata FROM payments").await,
        Err(SqlError::InvalidSql(_))
    ));
    let all = api.query("SELECT * FROM payments WHERE amount > 5").await?;
    assert_eq!(all.schema.fields().len(), 2);
    assert_eq!(all.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let listed = api
        .query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'tx_metadata'")
        .await?;
    let n = listed.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(0));
    assert_eq!(n, Some(0));
    let payer = SqlEngine::with_secrets(catalog, SqlLimits::default());
    let kept = payer
        .query("SELECT tx_metadata FROM payments WHERE tx_metadata IS NOT NULL")
        .await?;
    assert_eq!(kept.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    Ok(())
}

#[tokio::test]
async fn each_statement_reads_the_tables_version_it_starts_on() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = TableStore::new(dir.path().to_str().unwrap(), Default::default())?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, false),
        Field::new("day", DataType::Utf8, false),
    ]));
    let rows = |v: Vec<i64>, day: &str| {
        let n = v.len();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(v)),
                Arc::new(StringArray::from(vec![day; n])),
            ],
        )
    };
    let mut table = store.open_or_create("t", &schema, &["day"]).await?;
    table = table
        .write(vec![rows(vec![1, 2], "a")?])
        .with_partition_columns(["day"])
        .await?;
    let catalog = Arc::new(Catalog::new(store.clone(), Duration::ZERO));
    let engine = SqlEngine::new(catalog, SqlLimits::default());
    assert_eq!(count(&engine).await?, 2);
    let scanned = |engine: &SqlEngine| {
        let scans = kept_scans(engine);
        scans
            .get("t")
            .map(|(version, scan)| (*version, scan.is_some()))
    };
    let first = scanned(&engine);
    assert_eq!(
        first.map(|(_, direct)| direct),
        Some(true),
        "a plain table is scanned as its files"
    );
    // The scan made for the first version is not reused for the second.
    table
        .write(vec![rows(vec![3, 4, 5], "b")?])
        .with_partition_columns(["day"])
        .await?;
    assert_eq!(count(&engine).await?, 5);
    let second = scanned(&engine);
    assert!(second.is_some_and(|(_, direct)| direct));
    assert_ne!(second, first, "a new scan for the new version");
    let result = engine
        .query("SELECT day, sum(v) AS s FROM t WHERE day = 'b' GROUP BY day")
        .await?;
    let sums = result.batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("a sum")
        .value(0);
    assert_eq!(sums, 12);
    Ok(())
}
/// A statement waits on and registers only the tables it names; one that names
/// `information_schema` (or `SHOW`s) sees every table, as does one naming a table by its
/// full name.
#[tokio::test]
async fn a_statement_registers_only_the_tables_it_reads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = TableStore::new(dir.path().to_str().unwrap(), Default::default())?;
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    for name in ["t", "u"] {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )?;
        store
            .open_or_create(name, &schema, &[])
            .await?
            .write(vec![batch])
            .await?;
    }
    let catalog = Arc::new(Catalog::new(store, Duration::ZERO));
    let engine = SqlEngine::new(catalog, SqlLimits::default());
    let scanned = |engine: &SqlEngine| {
        let scans = kept_scans(engine);
        let mut names: Vec<String> = scans.keys().cloned().collect();
        names.sort();
        names
    };
    let rows = |r: &QueryResult| r.batches.iter().map(|b| b.num_rows()).sum::<usize>();
    engine.query("SELECT 1").await?;
    assert!(
        scanned(&engine).is_empty(),
        "no table read, none registered"
    );
    let u = engine.query("SELECT * FROM u WHERE v > 1").await?;
    assert_eq!(rows(&u), 2);
    assert_eq!(scanned(&engine), ["u"]);
    for sql in [
        "SELECT * FROM public.t",
        "SELECT * FROM datafusion.public.t",
        "WITH u AS (SELECT * FROM t) SELECT * FROM u",
    ] {
        assert_eq!(rows(&engine.query(sql).await?), 3, "{sql}");
    }
    let listed = engine
        .query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        .await?;
    assert_eq!(rows(&listed), 2, "information_schema lists every table");
    assert!(rows(&engine.query("SHOW TABLES").await?) >= 2);
    match engine.query("SELECT * FROM missing").await {
        Err(e) => assert!(e.to_string().contains("missing"), "{e}"),
        Ok(_) => panic!("a table that does not exist answered"),
    }
    Ok(())
}
