//! Aggregations answered from the files' run summaries give what a scan of the rows gives: a fixed
//! farm, then generated statements and readings (property tests).

use super::*;
use std::collections::HashMap;

use crate::page_index::Summary;
use datafusion::execution::cache::cache_manager::CachedFileMetadataEntry;

use adit_sinks::TableStore;
use adit_sinks::exactly_once::{ExactlyOnceTable, Maintenance};
use arrow::array::{Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::collect;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use proptest::prelude::*;

use crate::delta_scan::SnapshotTable;

/// 2026-11-20, as days since the epoch.
const DAY: i32 = 20_777;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("site", DataType::Utf8, true),
        Field::new("machine", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("power_w", DataType::Float64, false),
        Field::new("energy_wh", DataType::Float64, true),
        Field::new("seq", DataType::Int64, false),
        Field::new("date", DataType::Date32, false),
    ]))
}

/// A reading: site (`None`: no site), machine, minute of the two days, power, energy, seq.
type Reading = (Option<u8>, u8, u32, u16, Option<u16>, i64);

fn batch(readings: &[Reading]) -> RecordBatch {
    let minute = |m: u32| i64::from(DAY) * 86_400_000_000 + i64::from(m) * 60_000_000;
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter(
                readings.iter().map(|r| r.0.map(|s| format!("s-{s}"))),
            )),
            Arc::new(StringArray::from_iter_values(
                readings.iter().map(|r| format!("m-{}", r.1)),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(readings.iter().map(|r| minute(r.2)))
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(
                readings.iter().map(|r| f64::from(r.3)),
            )),
            Arc::new(Float64Array::from_iter(
                readings.iter().map(|r| r.4.map(f64::from)),
            )),
            Arc::new(Int64Array::from_iter_values(readings.iter().map(|r| r.5))),
            Arc::new(Date32Array::from_iter_values(
                readings.iter().map(|r| DAY + (r.2 / 1440) as i32),
            )),
        ],
    )
    .unwrap()
}

/// The readings landed as adit lands them: a commit per chunk, then (with `compact`) the
/// sorted compaction.
async fn landed(dir: &std::path::Path, chunks: &[Vec<Reading>], compact: bool) -> DeltaTable {
    let store = TableStore::new(dir.to_str().unwrap(), HashMap::new()).unwrap();
    let maintenance = Maintenance {
        optimize_every_commits: 0,
        ..Maintenance::default()
    };
    let mut table = ExactlyOnceTable::open(&store, "t", &schema(), &["date"], "test", maintenance)
        .await
        .unwrap();
    for (version, chunk) in chunks.iter().enumerate() {
        table
            .commit(vec![batch(chunk)], version as u64 + 1)
            .await
            .unwrap();
    }
    let table = table.table().clone();
    if !compact {
        return table;
    }
    match adit_sinks::compact::compact_sorted("t", &table, &schema(), 2)
        .await
        .unwrap()
    {
        Some((table, _)) => table,
        None => table,
    }
}

/// A session reading `table`, with the summaries rule or without.
fn session(table: &DeltaTable, summaries: bool) -> SessionContext {
    // Files cut into byte ranges, as large ones are: one file in several partitions.
    let config = SessionConfig::new()
        .with_target_partitions(3)
        .with_batch_size(64)
        .with_repartition_file_min_size(1);
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    if summaries {
        state = state
            .with_physical_optimizer_rule(Arc::new(RunSummaries))
            .with_physical_optimizer_rule(Arc::new(crate::runs::RunsAggregate));
    }
    let ctx = SessionContext::new_with_state(state.build());
    table.update_datafusion_session(&ctx.state()).unwrap();
    let scan = SnapshotTable::try_new(table)
        .unwrap()
        .expect("a plain table");
    ctx.register_table("t", Arc::new(scan)).unwrap();
    ctx
}

/// `sql`'s rows printed, and how many files its summaries answered.
async fn run(ctx: &SessionContext, sql: &str) -> (String, usize) {
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    let mut answered = 0;
    plan.apply(|node| {
        if node.downcast_ref::<SummariesExec>().is_some() {
            answered += node
                .metrics()
                .and_then(|m| m.sum_by_name("files_from_summaries"))
                .map_or(0, |v| v.as_usize());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    (
        pretty_format_batches(&batches).unwrap().to_string(),
        answered,
    )
}

/// Long runs: 3 sites × 4 machines × 2 days, 40 readings each.
fn farm() -> Vec<Reading> {
    let mut readings = Vec::new();
    for i in 0..960u32 {
        let (site, machine) = ((i % 3) as u8, (i % 4) as u8);
        let minute = (i * 3) % 2880;
        readings.push((
            Some(site),
            machine,
            minute,
            (i % 500) as u16,
            (i % 7 != 0).then_some(i as u16),
            i64::from(i),
        ));
    }
    readings
}

#[tokio::test]
async fn groups_by_the_keys_come_from_the_summaries_and_match_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let readings = farm();
    let table = landed(
        dir.path(),
        &[readings[..480].to_vec(), readings[480..].to_vec()],
        true,
    )
    .await;
    let (with, without) = (session(&table, true), session(&table, false));
    for (sql, from_summaries) in [
        (
            "SELECT site, avg(power_w), max(power_w), count(*) FROM t GROUP BY site ORDER BY site",
            true,
        ),
        (
            "SELECT site, machine, sum(seq), min(ts), count(energy_wh), max(energy_wh) FROM t GROUP BY site, machine ORDER BY 1, 2",
            true,
        ),
        (
            "SELECT machine, avg(power_w) FROM t WHERE site = 's-1' GROUP BY machine ORDER BY 1",
            true,
        ),
        (
            "SELECT date, site, sum(power_w) FROM t WHERE date = DATE '2026-11-21' GROUP BY 1, 2 ORDER BY 1, 2",
            true,
        ),
        // Every run of a day is within its day: whole runs in, whole runs out.
        (
            "SELECT machine, count(*) FROM t WHERE ts >= TIMESTAMP '2026-11-21T00:00:00Z' GROUP BY machine ORDER BY 1",
            true,
        ),
        // An hour cuts through every run: the files are scanned.
        (
            "SELECT machine, count(*) FROM t WHERE ts >= TIMESTAMP '2026-11-21T10:00:00Z' GROUP BY machine ORDER BY 1",
            false,
        ),
        // No grouping at all: one group, from the summaries too.
        (
            "SELECT sum(power_w), count(energy_wh), min(ts), avg(power_w) FROM t WHERE site = 's-2'",
            true,
        ),
        (
            "SELECT count(*), max(seq) FROM t WHERE date = DATE '2026-11-21'",
            true,
        ),
        // Not a key, not an aggregate summaries keep: no summary.
        (
            "SELECT power_w, count(*) FROM t GROUP BY power_w ORDER BY 1 LIMIT 3",
            false,
        ),
        (
            "SELECT site, avg(power_w * 2) FROM t GROUP BY site ORDER BY 1",
            false,
        ),
    ] {
        let (ours, answered) = run(&with, sql).await;
        let (theirs, _) = run(&without, sql).await;
        assert_eq!(ours, theirs, "{sql}");
        assert_eq!(
            answered > 0,
            from_summaries,
            "{sql}: {answered} files from summaries"
        );
    }
    // The summaries are kept in the footer cache apart from their footers, and the next
    // statement reads them from there: unreadable ones there leave every file scanned.
    let sql = "SELECT site, count(*) FROM t GROUP BY site ORDER BY site";
    let (answer, answered) = run(&with, sql).await;
    assert!(answered > 0);
    let cache = with.runtime_env().cache_manager.get_file_metadata_cache();
    let decoded: Vec<_> = cache
        .list_entries()
        .into_iter()
        .filter(|(key, entry)| *key == page_index::summary_key(&entry.value.meta.location))
        .collect();
    assert_eq!(decoded.len(), answered, "one summary per file");
    for (key, entry) in decoded {
        let summary = entry.value.file_metadata.as_any().downcast_ref::<Summary>();
        assert!(summary.is_some_and(|s| s.runs(&key).is_some_and(|b| b.num_rows() > 0)));
        let unreadable = Summary::new("not a summary".to_string());
        cache.put(
            &key,
            CachedFileMetadataEntry::new(entry.value.meta, Arc::new(unreadable)),
        );
    }
    let (again, answered) = run(&with, sql).await;
    assert_eq!((again, answered), (answer, 0));
}

/// Filters and groupings over the keys, time and partitions (or none: a global
/// aggregate), drawn at random.
fn statement() -> impl Strategy<Value = String> {
    let group = prop::sample::select(vec![
        "",
        "site",
        "machine",
        "site, machine",
        "date",
        "date, machine",
    ]);
    let aggregates = prop::sample::subsequence(
        vec![
            "count(*)",
            "count(energy_wh)",
            "sum(power_w)",
            "sum(seq)",
            "min(ts)",
            "max(energy_wh)",
            "avg(power_w)",
            "min(seq)",
            "avg(energy_wh)",
        ],
        1..4,
    );
    let filter = prop_oneof![
        Just(String::new()),
        (0u8..4).prop_map(|s| format!("WHERE site = 's-{s}'")),
        (0u8..4).prop_map(|s| format!("WHERE site <> 's-{s}' OR site IS NULL")),
        (0u32..2880, 1u32..2880).prop_map(|(from, span)| format!(
            "WHERE ts >= TIMESTAMP '2026-11-20T00:00:00Z' + INTERVAL '{from} minutes' \
             AND ts < TIMESTAMP '2026-11-20T00:00:00Z' + INTERVAL '{} minutes'",
            from + span
        )),
        (0u8..6, 0u8..3).prop_map(|(m, s)| format!("WHERE machine = 'm-{m}' AND site = 's-{s}'")),
        Just("WHERE date = DATE '2026-11-20'".to_string()),
        Just("WHERE site IS NULL".to_string()),
    ];
    (group, aggregates, filter).prop_map(|(group, aggregates, filter)| {
        let aggregates = aggregates.join(", ");
        if group.is_empty() {
            format!("SELECT {aggregates} FROM t {filter}")
        } else {
            format!(
                "SELECT {group}, {aggregates} FROM t {filter} GROUP BY {group} ORDER BY {group}"
            )
        }
    })
}

fn reading() -> impl Strategy<Value = Reading> {
    (
        prop::option::weighted(0.97, 0u8..3),
        0u8..4,
        0u32..2880,
        any::<u16>(),
        prop::option::weighted(0.8, any::<u16>()),
        any::<i64>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the rows, their commits, compaction and the statement: the same answer with
    /// summaries as from the rows (sums of integral floats and wrapping integer sums are
    /// exact in any order).
    #[test]
    fn answers_from_summaries_are_the_scans_answers(
        chunks in prop::collection::vec(prop::collection::vec(reading(), 0..700), 1..4),
        compact in any::<bool>(),
        sql in statement(),
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let table = landed(dir.path(), &chunks, compact).await;
            let (ours, _) = run(&session(&table, true), &sql).await;
            let (theirs, _) = run(&session(&table, false), &sql).await;
            prop_assert_eq!(ours, theirs, "{}", sql);
            Ok(())
        })?;
    }
}
