//! The exactly-once commit on a real Delta table in a temp folder.

use std::sync::Arc;

use adit_sinks::{ExactlyOnceTable, Maintenance};

use crate::tables::{first_column, first_row, open, query, temp_store};
use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

/// The columns [`batch`] writes: a name, the stream sequence, and the partition.
fn names_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("part", DataType::Utf8, false),
    ]))
}

fn batch(schema: &Arc<Schema>, seqs: &[i64]) -> RecordBatch {
    let names: Vec<String> = seqs.iter().map(|s| format!("row-{s}")).collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(seqs.to_vec())),
            Arc::new(StringArray::from(vec!["p"; seqs.len()])),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn positions_survive_reopen_and_replays_are_skipped() {
    let (_dir, store) = temp_store();
    let schema = names_schema();
    let maint = Maintenance {
        optimize_every_commits: 2,
        ..Default::default()
    };
    let mut t = open(&store, "t", &schema, &["part"], maint.clone()).await;
    assert_eq!(t.committed(), 0);
    assert!(t.commit(vec![batch(&schema, &[1, 2, 3])], 3).await.unwrap());
    assert!(
        t.commit(vec![], 10).await.unwrap(),
        "an empty commit moves the position"
    );
    assert!(
        !t.commit(vec![batch(&schema, &[2, 3])], 3).await.unwrap(),
        "a replay is skipped"
    );
    t.maintain_if_due().await.unwrap();
    t.finish_compaction().await.unwrap();

    let mut again = open(&store, "t", &schema, &["part"], maint.clone()).await;
    assert_eq!(again.committed(), 10);
    assert!(again.commit(vec![batch(&schema, &[11])], 11).await.unwrap());
    let other = ExactlyOnceTable::open(&store, "t", &schema, &["part"], "other-app", maint)
        .await
        .unwrap();
    assert_eq!(other.committed(), 0, "positions are per writer");

    let sql = "SELECT count(*) AS n, sum(seq) AS s FROM t";
    let [n, s] = first_row(&store, "t", sql).await[..] else {
        panic!("two columns")
    };
    assert_eq!((n, s), (4, 1 + 2 + 3 + 11));
}

#[tokio::test]
async fn rows_past_their_tables_retention_are_deleted() {
    use arrow::array::Date32Array;
    let (_dir, store) = temp_store();
    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("date", DataType::Date32, false),
    ]));
    let day = |d: &str| {
        let d: chrono::NaiveDate = d.parse().unwrap();
        (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
    };
    let rows = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(Date32Array::from(vec![
                day("2024-01-01"),
                day("2026-10-01"),
                day("2026-11-20"),
            ])),
        ],
    )
    .unwrap();
    let maint = Maintenance {
        retention: [(
            "kept".to_string(),
            std::time::Duration::from_secs(30 * 86400),
        )]
        .into(),
        ..Default::default()
    };
    let mut t = open(&store, "kept", &schema, &["date"], maint.clone()).await;
    t.commit(vec![rows.clone()], 1).await.unwrap();
    let now = "2026-11-22T12:00:00Z".parse().unwrap();
    t.apply_retention(now).await.unwrap();
    let mut other = open(&store, "other", &schema, &["date"], maint).await;
    other.commit(vec![rows], 1).await.unwrap();
    other.apply_retention(now).await.unwrap();

    for (table, want) in [("kept", vec![3]), ("other", vec![1, 2, 3])] {
        let sql = format!("SELECT seq FROM {table} ORDER BY seq");
        let seqs = first_column(&store, table, &sql).await;
        assert_eq!(
            seqs, want,
            "{table}: 30 days kept in one, everything in the other"
        );
    }
    let reopened = open(&store, "kept", &schema, &["date"], Maintenance::default()).await;
    assert_eq!(reopened.committed(), 1, "the position survives the delete");
}

/// An upgrade (issue 25): a table written by the previous layout, one column fewer, is opened
/// by this version's writer and evolved: the column is added, the old rows read it as null, new
/// rows carry it, and the writer's position is kept. A column that may not be null cannot be
/// given to the old rows, and the table is refused naming it.
#[tokio::test]
async fn a_table_with_a_column_fewer_is_evolved_on_open() {
    let (_dir, store) = temp_store();
    let old = names_schema();
    let maint = Maintenance::default();
    let mut before = open(&store, "t", &old, &["part"], maint.clone()).await;
    assert!(before.commit(vec![batch(&old, &[1, 2])], 2).await.unwrap());

    let mut fields = old.fields().to_vec();
    fields.push(Arc::new(Field::new("note", DataType::Utf8, true)));
    let new = Arc::new(Schema::new(fields));
    let mut after = ExactlyOnceTable::open(&store, "t", &new, &["part"], "app", maint.clone())
        .await
        .expect("the old table is evolved, not refused");
    assert_eq!(after.committed(), 2, "the position survives the upgrade");
    let row = RecordBatch::try_new(
        new.clone(),
        vec![
            Arc::new(StringArray::from(vec!["row-3"])),
            Arc::new(Int64Array::from(vec![3])),
            Arc::new(StringArray::from(vec!["p"])),
            Arc::new(StringArray::from(vec!["added"])),
        ],
    )
    .unwrap();
    assert!(after.commit(vec![row], 3).await.unwrap());

    let sql = "SELECT seq, coalesce(note, 'null') AS note FROM t ORDER BY seq";
    let rows = query(&store, "t", sql).await;
    let text = arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(text.contains("| 1   | null  |"), "{text}");
    assert!(text.contains("| 2   | null  |"), "{text}");
    assert!(text.contains("| 3   | added |"), "{text}");

    let mut strict = new.fields().to_vec();
    strict.push(Arc::new(Field::new("required", DataType::Int64, false)));
    let refused = ExactlyOnceTable::open(
        &store,
        "t",
        &Arc::new(Schema::new(strict)),
        &["part"],
        "app",
        maint,
    )
    .await
    .err()
    .expect("a column that may not be null cannot be added to old rows");
    assert!(refused.to_string().contains("required"), "{refused}");
}

/// Each commit writes its rows sorted by the filter columns, and compaction replaces a
/// partition's small files, once there are `compact_fanout` of them, by one file sorted the
/// same way: the same rows, the writer's position kept, fewer files, and a file whose rows (so
/// whose row groups' and pages' statistics) run machine by machine.
#[tokio::test]
async fn commits_and_compaction_write_files_sorted_by_the_filter_columns() {
    use adit_sinks::compact::sort_columns;

    let (dir, store) = temp_store();
    let schema = Arc::new(Schema::new(vec![
        Field::new("machine", DataType::Utf8, false),
        Field::new("site", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("date", DataType::Utf8, false),
    ]));
    assert_eq!(sort_columns(&schema), ["site", "machine"]);
    let maint = Maintenance {
        optimize_every_commits: 1,
        compact_fanout: 4,
        ..Default::default()
    };
    let mut t = open(&store, "r", &schema, &["date"], maint.clone()).await;
    // Four commits, each every machine of two sites mixed, in two dates.
    let mut seq = 0;
    for commit in 1..=4u64 {
        let (mut machines, mut sites, mut seqs, mut dates) = (vec![], vec![], vec![], vec![]);
        for i in 0..50 {
            seq += 1;
            machines.push(format!("m-{:02}", (i * 7 + commit as usize) % 10));
            sites.push(format!("s-{}", i % 2));
            seqs.push(seq);
            dates.push(if i % 5 == 0 {
                "2026-11-24"
            } else {
                "2026-11-25"
            });
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(machines)),
                Arc::new(StringArray::from(sites)),
                Arc::new(Int64Array::from(seqs)),
                Arc::new(StringArray::from(dates)),
            ],
        )
        .unwrap();
        assert!(t.commit(vec![batch], commit * 100).await.unwrap());
        let paths = live_files(&t);
        let files = paths.len();
        assert_eq!(files, 2 * commit as usize, "a file per commit and date");
        // Each commit writes its rows sorted already.
        for path in &paths {
            assert_sorted_by_site_machine(&dir.path().join("r").join(path));
        }
        if commit < 4 {
            // Fewer small files than the fanout: left as they are.
            t.maintain_if_due().await.unwrap();
            t.finish_compaction().await.unwrap();
            let after = t.table().snapshot().unwrap().log_data().iter().count();
            assert_eq!(after, files, "a tier below the fanout is not merged");
        }
    }
    t.maintain_if_due().await.unwrap();
    t.finish_compaction().await.unwrap();
    let files = live_files(&t);
    assert_eq!(files.len(), 2, "one sorted file per date: {files:?}");

    // Same rows, same position.
    let again = open(&store, "r", &schema, &["date"], maint).await;
    assert_eq!(again.committed(), 400);
    let sql = "SELECT count(*), sum(seq), count(DISTINCT seq) FROM r";
    assert_eq!(first_row(&store, "r", sql).await, [200, 200 * 201 / 2, 200]);

    // Each file, read as it lies on disk, runs site by site, machine by machine.
    for file in files {
        assert_sorted_by_site_machine(&dir.path().join("r").join(&file));
    }
}

/// The paths of the files `t`'s snapshot holds.
fn live_files(t: &ExactlyOnceTable) -> Vec<String> {
    t.table()
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .map(|f| f.path().to_string())
        .collect()
}

/// Fails unless the Parquet file at `path` holds its rows by site, then machine.
fn assert_sorted_by_site_machine(path: &std::path::Path) {
    use arrow::compute::concat_batches;
    let bytes = std::fs::read(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let all = concat_batches(&batches[0].schema(), &batches).unwrap();
    let text = |name: &str| -> Vec<String> {
        let column = all.column_by_name(name).unwrap();
        let strings = arrow::compute::cast(column, &DataType::Utf8).unwrap();
        let strings = strings.as_any().downcast_ref::<StringArray>().unwrap();
        strings.iter().map(|v| v.unwrap().to_string()).collect()
    };
    let keys: Vec<(String, String)> = text("site").into_iter().zip(text("machine")).collect();
    let mut ordered = keys.clone();
    ordered.sort();
    assert_eq!(keys, ordered, "{path:?} is not sorted by site, machine");
    assert!(keys.len() > 5, "{path:?}: {} rows", keys.len());
}

/// Two writers of one table (the partitions of a pipeline) compacting the same files at once:
/// one that raced only an append still merges them; the next finds them gone and commits
/// nothing, so no row is held twice. (delta-rs's own conflict check lets both commit: it skips
/// a concurrent commit's removes that change no data. The two-process SIGKILL test once landed
/// 94 000 rows of 80 000 that way.)
#[tokio::test]
async fn two_writers_compacting_the_same_files_keep_each_row_once() {
    use adit_sinks::compact::compact_sorted;

    let (dir, store) = temp_store();
    let schema = names_schema();
    let maint = Maintenance {
        optimize_every_commits: 0,
        ..Default::default()
    };
    let mut t = open(&store, "t", &schema, &["part"], maint).await;
    for i in 0..4 {
        let batch = batch(&schema, &[i * 10 + 1, i * 10 + 2]);
        assert!(t.commit(vec![batch], (i as u64 + 1) * 10).await.unwrap());
    }
    let (first, second) = (t.table().clone(), t.table().clone());
    assert!(t.commit(vec![batch(&schema, &[51, 52])], 50).await.unwrap());

    let (_, done) = compact_sorted("t", &first, &schema, 4)
        .await
        .unwrap()
        .expect("the files are still live after an append: merged");
    assert_eq!((done.files_removed, done.files_added, done.rows), (4, 1, 8));
    assert!(
        compact_sorted("t", &second, &schema, 4)
            .await
            .unwrap()
            .is_none(),
        "its files were replaced by the first: nothing committed"
    );

    let sql = "SELECT count(*), count(DISTINCT seq), sum(seq) FROM t";
    let expected: i64 = (0..4).map(|i| 20 * i + 3).sum::<i64>() + 51 + 52;
    assert_eq!(first_row(&store, "t", sql).await, [10, 10, expected]);
    let files = std::fs::read_dir(dir.path().join("t/part=p"))
        .unwrap()
        .count();
    assert_eq!(
        files, 6,
        "four replaced files (until vacuum), the append, the merged file; the loser's file deleted"
    );
}

/// The writer's own compaction runs beside it (issue 29): the writer keeps committing while a
/// merge of its earlier files is written and committed, each over the other. The table ends
/// with every row once, the writer's position, and fewer files than commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_beside_the_writer_loses_and_doubles_nothing() {
    let (dir, store) = temp_store();
    let schema = names_schema();
    let maint = Maintenance {
        optimize_every_commits: 1,
        compact_fanout: 2,
        ..Default::default()
    };
    let mut t = open(&store, "t", &schema, &["part"], maint.clone()).await;
    let (commits, rows) = (40_i64, 50_i64);
    for c in 0..commits {
        let seqs: Vec<i64> = (c * rows + 1..=(c + 1) * rows).collect();
        let version = ((c + 1) * rows) as u64;
        assert!(
            t.commit(vec![batch(&schema, &seqs)], version)
                .await
                .unwrap()
        );
        t.maintain_if_due().await.unwrap();
    }
    t.finish_compaction().await.unwrap();

    let operations: Vec<String> = commit_files(&dir.path().join("t"))
        .iter()
        .map(|name| commit_operation(&dir.path().join("t/_delta_log").join(name)))
        .collect();
    let optimized = operations.iter().filter(|op| *op == "OPTIMIZE").count();
    let last_write = operations.iter().rposition(|op| op == "WRITE").unwrap();
    let first_optimize = operations.iter().position(|op| op == "OPTIMIZE");
    assert!(
        optimized >= 2 && first_optimize.is_some_and(|o| o < last_write),
        "compactions committed between the writer's commits: {operations:?}"
    );
    let n = commits * rows;
    let sql = "SELECT count(*) AS n, count(DISTINCT seq) AS d, sum(seq) AS s FROM t";
    let [count, distinct, sum] = first_row(&store, "t", sql).await[..] else {
        panic!("three columns")
    };
    assert_eq!((count, distinct, sum), (n, n, n * (n + 1) / 2));
    let files = live_files(&t).len();
    assert!(
        files < commits as usize / 2,
        "{files} live files after {commits} commits"
    );
    let again = open(&store, "t", &schema, &["part"], maint).await;
    assert_eq!(
        again.committed(),
        n as u64,
        "the position survives the compactions"
    );
}

/// The operation a Delta commit file records (`WRITE`, `OPTIMIZE`...).
fn commit_operation(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|action| action["commitInfo"]["operation"].as_str().map(String::from))
        .unwrap_or_default()
}

/// The commit files in `dir`'s `_delta_log`.
fn commit_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_tables_log_keeps_commits_only_for_its_retention_and_positions_survive() {
    let (dir, store) = temp_store();
    let schema = names_schema();
    let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
    let maint = Maintenance {
        optimize_every_commits: 1,
        log_retention: hours(2),
        vacuum_retention: hours(3),
        ..Default::default()
    };
    let open_t = |maint: Maintenance| open(&store, "t", &schema, &["part"], maint);
    let properties = |t: &ExactlyOnceTable| {
        let held = t.table().snapshot().unwrap().table_config().clone();
        (
            held.log_retention_duration,
            held.deleted_file_retention_duration,
            held.enable_expired_log_cleanup,
        )
    };
    let t = open_t(maint.clone()).await;
    assert_eq!(
        properties(&t),
        (Some(hours(2)), Some(hours(3)), Some(false))
    );
    let version = t.table().version();
    let t = open_t(maint.clone()).await;
    assert_eq!(t.table().version(), version, "set once, not at every open");
    let longer = Maintenance {
        log_retention: hours(48),
        ..maint.clone()
    };
    let t = open_t(longer).await;
    assert_eq!(
        properties(&t),
        (Some(hours(48)), Some(hours(3)), Some(false))
    );
    assert_eq!(t.table().version(), version.map(|v| v + 1));

    // Commits do not clean the log (that would list it whole at every commit); Delta writes a
    // checkpoint every 100 versions (at 99, 199…)...
    let mut t = open_t(maint).await;
    let table_dir = dir.path().join("t");
    for seq in 1..=120 {
        t.commit(vec![batch(&schema, &[seq])], seq as u64)
            .await
            .unwrap();
    }
    assert!(
        table_dir
            .join("_delta_log/00000000000000000099.checkpoint.parquet")
            .exists()
    );
    // ...not even once their commits are past the retention (Delta's default would clean
    // them after the next commit)...
    let three_hours_ago = std::time::SystemTime::now() - hours(3);
    for name in commit_files(&table_dir) {
        std::fs::File::options()
            .write(true)
            .open(table_dir.join("_delta_log").join(name))
            .unwrap()
            .set_modified(three_hours_ago)
            .unwrap();
    }
    for seq in 121..=125 {
        t.commit(vec![batch(&schema, &[seq])], seq as u64)
            .await
            .unwrap();
    }
    let latest = t.table().version().unwrap();
    assert_eq!(
        commit_files(&table_dir).len() as u64,
        latest + 1,
        "no commit cleaned the log"
    );
    // ...the writer's hourly maintenance does: commits older than the retention, below a
    // checkpoint. The writer's position lives on in the checkpoint.
    t.maintain_if_due().await.unwrap();
    let kept = commit_files(&table_dir);
    assert_eq!(
        kept.first().map(String::as_str),
        Some("00000000000000000099.json"),
        "the commits before the checkpoint are cleaned, the rest kept"
    );
    let again = open_t(Maintenance {
        log_retention: hours(2),
        vacuum_retention: hours(3),
        ..Default::default()
    })
    .await;
    assert_eq!(again.committed(), 125, "the position survives the cleaning");
    let n = first_row(&store, "t", "SELECT count(*) AS n FROM t").await[0];
    assert_eq!(n, 125, "every row is still read after the cleaning");
}
