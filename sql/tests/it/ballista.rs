//! The same statements on a Ballista cluster (a real scheduler and executor, started in this
//! process as their binaries start them, talking gRPC and Arrow Flight over loopback) give the
//! same rows as the local engine.
//!
//! The tables are partitioned by date and have lived a little: several writes per day, a delete
//! and a compaction, so their folders hold files the Delta log no longer lists. A cluster that
//! read folders instead of the snapshot's file list would count those rows twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adit_sinks::TableStore;
use adit_sql::{Catalog, QueryEngine, SqlEngine, SqlError, SqlLimits};
use adit_testkit::ballista::Cluster;
use adit_testkit::free_port;
use anyhow::{Context, Result};
use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use ballista_core::serde::protobuf::job_status::Status;

/// Days since the epoch of 2026-11-20, the first day of data.
const FIRST_DAY: i32 = 20_777;

fn readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("machine", DataType::Utf8, false),
        Field::new("site", DataType::Utf8, false),
        Field::new("watts", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("date", DataType::Date32, false),
    ]))
}

fn blocks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("height", DataType::Int64, false),
        Field::new("site", DataType::Utf8, false),
        Field::new("reward", DataType::Int64, false),
        Field::new("date", DataType::Date32, false),
    ]))
}

/// `n` readings of day `day` (0, 1, 2), the `part`-th write of that day.
fn readings(day: i32, part: i64, n: i64) -> Result<RecordBatch> {
    let sites = ["north", "south", "gone"];
    let rows = 0..n;
    let base = i64::from(FIRST_DAY + day) * 86_400_000_000 + part * 1_000_000_000;
    Ok(RecordBatch::try_new(
        readings_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.clone().map(|i| format!("m{:02}", (i * 7 + part) % 23)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.clone().map(|i| sites[(i % 3) as usize]),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.clone()
                    .map(|i| 1000 + (i * 37 + part * 11 + i64::from(day)) % 500),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.clone().map(|i| base + i * 1_000))
                    .with_timezone("UTC"),
            ),
            Arc::new(Date32Array::from_iter_values(rows.map(|_| FIRST_DAY + day))),
        ],
    )?)
}

fn blocks() -> Result<RecordBatch> {
    let n = 12;
    Ok(RecordBatch::try_new(
        blocks_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| 3_000_000 + i))),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| if i % 2 == 0 { "north" } else { "south" }),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|i| 600_000_000_000 + i),
            )),
            Arc::new(Date32Array::from_iter_values(
                (0..n).map(|i| FIRST_DAY + (i % 3) as i32),
            )),
        ],
    )?)
}

/// Three days of readings in several writes, compacted, then one site deleted; a blocks
/// table; and a table that has no file yet.
async fn tables(store: &TableStore) -> Result<()> {
    let mut table = store
        .open_or_create("readings", &readings_schema(), &["date"])
        .await?;
    for day in 0..3 {
        for part in 0..3 {
            table = table
                .write(vec![readings(day, part, 400 + 50 * i64::from(day))?])
                .with_partition_columns(["date"])
                .await?;
        }
    }
    let (table, compacted) = table.optimize().await?;
    assert!(
        compacted.num_files_removed > 0,
        "the compaction replaced files"
    );
    let (_, deleted) = table.delete().with_predicate("site = 'gone'").await?;
    assert!(
        deleted.num_deleted_rows > Some(0),
        "the delete removed rows"
    );

    let table = store
        .open_or_create("blocks", &blocks_schema(), &["date"])
        .await?;
    table
        .write(vec![blocks()?])
        .with_partition_columns(["date"])
        .await?;
    store
        .open_or_create("no_rows_yet", &blocks_schema(), &["date"])
        .await?;

    // Partition values that the files' paths escape.
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, false),
        Field::new("place", DataType::Utf8, false),
    ]));
    let places = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["hall a/b", "50% east", "ålesund"])),
        ],
    )?;
    store
        .open_or_create("places", &schema, &["place"])
        .await?
        .write(vec![places])
        .with_partition_columns(["place"])
        .await?;
    Ok(())
}

/// The rows of `sql` on `engine`, as a table in text (the statements order their rows).
async fn rows(engine: &SqlEngine, sql: &str) -> Result<String> {
    let result = engine
        .query(sql)
        .await
        .with_context(|| format!("running {sql}"))?;
    Ok(pretty_format_batches(&result.batches)?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ballista_cluster_gives_the_local_engines_rows() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = TableStore::new(dir.path().to_str().context("utf-8 path")?, HashMap::new())?;
    tables(&store).await?;
    let cluster = Cluster::start(2).await;
    let address = &cluster.address;
    let limits = SqlLimits::default();
    let catalog = || Arc::new(Catalog::new(store.clone(), Duration::ZERO));
    let local = SqlEngine::new(catalog(), limits.clone());
    let remote = SqlEngine::on(
        address.parse().map_err(anyhow::Error::msg)?,
        catalog(),
        limits,
    );

    let statements = [
        "SELECT count(*) AS n FROM readings",
        "SELECT date, site, count(*) AS n, sum(watts) AS watts, max(ts) AS last \
         FROM readings GROUP BY date, site ORDER BY date, site",
        "SELECT machine, watts, ts FROM readings WHERE machine = 'm05' \
         ORDER BY ts DESC LIMIT 7",
        "SELECT date_bin(INTERVAL '1 minute', ts) AS minute, count(*) AS n \
         FROM readings WHERE date = DATE '2026-11-21' GROUP BY 1 ORDER BY 1",
        "SELECT b.height, b.site, b.reward, count(r.machine) AS readings \
         FROM blocks b JOIN readings r ON r.site = b.site AND r.date = b.date \
         GROUP BY b.height, b.site, b.reward ORDER BY b.height",
        "SELECT count(*) AS n, min(date) AS first FROM no_rows_yet",
        "SELECT repeat(site, 3) AS echo FROM readings GROUP BY site ORDER BY site",
    ];
    for sql in statements {
        let here = rows(&local, sql).await?;
        let there = rows(&remote, sql).await?;
        assert_eq!(here, there, "{sql}");
    }
    // The data behind those: the deleted site is gone from both, not read from old files.
    let counts = rows(&remote, "SELECT count(*) AS n FROM readings").await?;
    let kept: i64 = (0..3)
        .map(|day| 3 * (0..400 + 50 * day).filter(|i| i % 3 != 2).count() as i64)
        .sum();
    assert!(counts.contains(&format!("| {kept} |")), "{kept}: {counts}");
    let sites = rows(&remote, "SELECT DISTINCT site FROM readings ORDER BY site").await?;
    assert!(
        !sites.contains("gone") && sites.contains("north"),
        "{sites}"
    );

    // A table whose paths escape its partition values is read here, and refused by name on
    // the cluster (whose listings would miss or double its files), not answered wrongly.
    let here = rows(&local, "SELECT place, v FROM places ORDER BY v").await?;
    assert!(
        here.contains("hall a/b") && here.contains("ålesund"),
        "{here}"
    );
    match remote.query("SELECT place, v FROM places").await {
        Err(SqlError::InvalidSql(reason)) => assert!(reason.contains("places"), "{reason}"),
        other => panic!(
            "expected a refusal naming the table, got {:?}",
            other.map(|r| r.batches.len())
        ),
    }

    // The same refusals, before anything is sent.
    match remote.query("DROP TABLE readings").await {
        Err(SqlError::ReadOnly(_)) => {}
        other => panic!(
            "DDL reached the cluster: {:?}",
            other.map(|r| r.batches.len())
        ),
    }
    match remote.query("SELECT repeat('x', 1000000000)").await {
        Err(SqlError::MemoryLimit { .. }) => {}
        other => panic!(
            "an unbounded repeat was sent: {:?}",
            other.map(|r| r.batches.len())
        ),
    }

    // A statement out of time is stopped on the cluster too: its job is cancelled there.
    let short = SqlLimits {
        timeout: Duration::from_secs(5),
        ..SqlLimits::default()
    };
    let remote = Arc::new(SqlEngine::on(
        address.parse().map_err(anyhow::Error::msg)?,
        catalog(),
        short,
    ));
    let endless = "SELECT count(*) FROM readings a, readings b, readings c \
                   WHERE a.watts + b.watts + c.watts > 0";
    let statement = tokio::spawn({
        let remote = remote.clone();
        async move { remote.query(endless).await.map(|r| r.batches.len()) }
    });
    let running = cluster.running_job(Duration::from_secs(5)).await;
    match statement.await? {
        Err(SqlError::Timeout { .. }) => {}
        other => panic!("expected the time limit, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = cluster.job_status(&running).await;
        if matches!(status, Some(Status::Failed(_))) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the job ran on after the time limit: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_scheduler_that_does_not_answer_is_the_clusters_fault() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = TableStore::new(dir.path().to_str().context("utf-8 path")?, HashMap::new())?;
    tables(&store).await?;
    // A port nothing listens on.
    let port = free_port();
    let engine: QueryEngine = format!("ballista://127.0.0.1:{port}")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let remote = SqlEngine::on(
        engine,
        Arc::new(Catalog::new(store, Duration::ZERO)),
        SqlLimits::default(),
    );
    match remote.query("SELECT count(*) FROM readings").await {
        Err(SqlError::Cluster(reason)) => assert!(reason.contains(&port.to_string()), "{reason}"),
        other => panic!(
            "expected a cluster error, got {:?}",
            other.map(|r| r.batches.len())
        ),
    }
    Ok(())
}
