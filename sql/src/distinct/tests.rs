//! The two group-bys answer as the distinct aggregate does, for any rows and any statement the
//! rule takes (property test), and the statements it must leave alone are left alone.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use proptest::prelude::*;

use super::DistinctWithCounts;

/// One row: group keys `g` and `h`, the distinct argument `x`, plain values `y` and `f`
/// (integral, so sums are exact in any order); any of them NULL.
type Row = (
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
);

fn row() -> impl Strategy<Value = Row> {
    (
        prop::option::weighted(0.9, 0..4i64),
        prop::option::weighted(0.9, prop::sample::select(vec!["a", "b", "c"])),
        prop::option::weighted(0.8, 0..6i64),
        prop::option::weighted(0.8, -50..50i64),
        prop::option::weighted(0.8, (-1000..1000i32).prop_map(f64::from)),
    )
        .prop_map(|(g, h, x, y, f)| (g, h.map(str::to_string), x, y, f))
}

/// A statement the rule takes: a grouping, one distinct aggregate (of `x`, or of `h`), and at
/// least one plain count among plain aggregates it can add up.
fn statement() -> impl Strategy<Value = String> {
    let groups = prop::sample::select(vec!["g", "h", "g, h", "g % 2"]);
    let distinct = prop::sample::select(vec![
        "count(DISTINCT x)",
        "sum(DISTINCT x)",
        "min(DISTINCT x)",
        "max(DISTINCT x)",
        "avg(DISTINCT x)",
        "count(DISTINCT h)",
        "count(DISTINCT x + 1)",
    ]);
    let count = prop::sample::select(vec!["count(*)", "count(y)", "count(f)"]);
    let others = prop::sample::subsequence(
        vec![
            "sum(y)", "min(y)", "max(y)", "sum(f)", "count(x)", "count(*)",
        ],
        0..4,
    );
    (groups, distinct, count, others).prop_map(|(groups, distinct, count, mut others)| {
        others.retain(|o| *o != count);
        let aggregates = [vec![distinct, count], others].concat().join(", ");
        format!("SELECT {groups}, {aggregates} FROM t GROUP BY {groups}")
    })
}

fn table(rows: &[Row]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("g", DataType::Int64, true),
        Field::new("h", DataType::Utf8, true),
        Field::new("x", DataType::Int64, true),
        Field::new("y", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.1.clone()).collect::<StringArray>()),
            Arc::new(rows.iter().map(|r| r.2).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.3).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.4).collect::<Float64Array>()),
        ],
    )
    .unwrap()
}

/// A session over `rows` as table `t`, with the rule or without it.
fn session(rows: &[Row], with_rule: bool) -> SessionContext {
    let ctx = SessionContext::new();
    ctx.register_batch("t", table(rows)).unwrap();
    if with_rule {
        ctx.add_optimizer_rule(Arc::new(DistinctWithCounts));
    }
    ctx
}

/// The answer's column names and types, and its rows as text, sorted.
async fn answer(ctx: &SessionContext, sql: &str) -> (Vec<String>, Vec<String>) {
    let frame = ctx.sql(sql).await.unwrap();
    let schema = frame.schema().fields().iter();
    let columns = schema
        .map(|f| format!("{} {} {}", f.name(), f.data_type(), f.is_nullable()))
        .collect();
    let batches = frame.collect().await.unwrap();
    let mut rows = Vec::new();
    for batch in &batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(i).to_string()).collect();
            rows.push(cells.join(" | "));
        }
    }
    rows.sort();
    (columns, rows)
}

/// The aggregations of the optimized plan still holding a distinct call.
async fn distinct_aggregations(ctx: &SessionContext, sql: &str) -> usize {
    let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
    plan.display_indent()
        .to_string()
        .lines()
        .filter(|l| l.trim_start().starts_with("Aggregate:") && l.contains("DISTINCT"))
        .count()
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the rows and the statement: the same columns (names, types, nullability) and
    /// the same rows with the rule as without it, and no distinct call left to the adapter.
    #[test]
    fn two_group_bys_answer_as_the_distinct_aggregate(
        rows in prop::collection::vec(row(), 0..200),
        sql in statement(),
    ) {
        block_on(async {
            let (ours, theirs) = (session(&rows, true), session(&rows, false));
            prop_assert_eq!(answer(&ours, &sql).await, answer(&theirs, &sql).await, "{}", sql);
            prop_assert_eq!(distinct_aggregations(&ours, &sql).await, 0, "{}", sql);
            Ok(())
        })?;
    }
}

#[test]
fn the_joins_statement_is_taken() {
    // The landed bench's shares ⋈ payouts per miner, on one table.
    let rows: Vec<Row> = (0..50)
        .map(|i| (Some(i % 4), None, Some(i % 7), Some(i), None))
        .collect();
    let sql = "SELECT g, count(DISTINCT x) AS blocks, count(*) AS shares, sum(y) AS work \
               FROM t GROUP BY g ORDER BY work DESC, g LIMIT 10";
    let (ours, theirs) = (session(&rows, true), session(&rows, false));
    assert_eq!(block_on(distinct_aggregations(&theirs, sql)), 1);
    assert_eq!(block_on(distinct_aggregations(&ours, sql)), 0);
    assert_eq!(block_on(answer(&ours, sql)), block_on(answer(&theirs, sql)));
}

#[test]
fn statements_it_cannot_add_up_are_left_alone() {
    let rows: Vec<Row> = (0..20)
        .map(|i| (Some(i % 3), None, Some(i % 5), Some(i), Some(i as f64)))
        .collect();
    let ctx = session(&rows, true);
    for sql in [
        // No groups: an empty input's count is 0, a sum of no parts NULL.
        "SELECT count(DISTINCT x), count(*) FROM t",
        // avg is not the sum of its parts' averages.
        "SELECT g, count(DISTINCT x), count(*), avg(y) FROM t GROUP BY g",
        // Two distinct arguments.
        "SELECT g, count(DISTINCT x), count(DISTINCT y), count(*) FROM t GROUP BY g",
        // A filtered call.
        "SELECT g, count(DISTINCT x), count(*) FILTER (WHERE y > 3) FROM t GROUP BY g",
    ] {
        assert!(
            block_on(distinct_aggregations(&ctx, sql)) > 0,
            "rewritten: {sql}"
        );
        let plain = session(&rows, false);
        assert_eq!(
            block_on(answer(&ctx, sql)),
            block_on(answer(&plain, sql)),
            "{sql}"
        );
    }
}
