//! `adit replay decisions`: recomputes the controller's recorded decisions from the inputs and
//! state each row holds (with the rules recorded beside them, or with the configured ones:
//! "what would the new rules have done") and prints every step where they differ.

use adit_schemas::time::micros;
use std::sync::Arc;
use std::time::Duration;

use adit_pipelines::control::curtailment::{ReplayDiff, replay_step};
use adit_schemas::control::DecisionRow;
use adit_sql::{Catalog, SqlEngine, SqlLimits};
use anyhow::{Context, bail};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use chrono::DateTime;

use crate::cli::ReplayDecisionsArgs;
use crate::config::Config;

/// What a replay found.
#[derive(Debug, serde::Serialize)]
pub struct ReplayReport {
    /// Steps recomputed.
    pub steps: usize,
    /// Decisions compared.
    pub decisions: usize,
    /// The steps that differ.
    pub differences: Vec<ReplayDiff>,
}

/// Runs the replay and prints the report; fails when anything differs.
pub(super) async fn decisions(config: &Config, args: &ReplayDecisionsArgs) -> anyhow::Result<()> {
    let report = replay(config, args).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.differences.is_empty() {
        bail!(
            "{} of {} steps differ",
            report.differences.len(),
            report.steps
        );
    }
    Ok(())
}

/// Reads the site's decisions between `from` and `to` and recomputes each step.
pub async fn replay(config: &Config, args: &ReplayDecisionsArgs) -> anyhow::Result<ReplayReport> {
    if !adit_schemas::names::is_token(&args.site) {
        bail!("--site {:?} is not a site id", args.site);
    }
    let store = config.table_store()?;
    let engine = SqlEngine::new(
        Arc::new(Catalog::new(store, Duration::ZERO)),
        SqlLimits::default(),
    );
    let sql = format!(
        "SELECT id, site, CAST(ts AS BIGINT) AS ts_us, step, from_mode, to_mode, rule, action, \
         machine, fan_level, target_kw, load_kw, dry_run, inputs, state, power_target_w \
         FROM decisions WHERE site = '{}' AND ts >= to_timestamp_micros({}) \
         AND ts < to_timestamp_micros({})",
        args.site,
        micros(args.from),
        micros(args.to)
    );
    let result = engine
        .query(&sql)
        .await
        .context("reading the decisions table")?;
    let mut rows = Vec::new();
    for batch in &result.batches {
        rows.extend(rows_of(batch)?);
    }
    // A step's decisions in the order they were taken (the id ends in their index).
    rows.sort_by_key(|r| (r.ts, index_of(&r.id)));
    let rules = args
        .with_config_rules
        .then(|| config.pipelines.curtailment.rules());
    let mut report = ReplayReport {
        steps: 0,
        decisions: rows.len(),
        differences: Vec::new(),
    };
    for step in rows.chunk_by(|a, b| a.step == b.step) {
        report.steps += 1;
        if let Some(diff) = replay_step(step, rules.as_ref())? {
            report.differences.push(diff);
        }
    }
    Ok(report)
}

fn index_of(id: &str) -> u64 {
    id.rsplit(':')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or(0)
}

/// The rows of one result batch (columns in the order of the query).
fn rows_of(batch: &RecordBatch) -> anyhow::Result<Vec<DecisionRow>> {
    // Whatever the engine reads them as (Utf8View, dictionaries), as plain arrays.
    let col =
        |i: usize, to: &DataType| -> anyhow::Result<ArrayRef> { Ok(cast(batch.column(i), to)?) };
    let texts: Vec<ArrayRef> = [0, 1, 3, 4, 5, 6, 7, 8, 13, 14]
        .iter()
        .map(|&i| col(i, &DataType::Utf8))
        .collect::<anyhow::Result<_>>()?;
    let t = |k: usize| texts[k].as_string::<i32>();
    let (id, site, step, from, to, rule, action, machine, inputs, state) =
        (t(0), t(1), t(2), t(3), t(4), t(5), t(6), t(7), t(8), t(9));
    let ts = col(2, &DataType::Int64)?;
    let ts = ts.as_primitive::<Int64Type>();
    let fan = col(9, &DataType::Int64)?;
    let fan = fan.as_primitive::<Int64Type>();
    let target = col(10, &DataType::Float64)?;
    let target = target.as_primitive::<Float64Type>();
    let load = col(11, &DataType::Float64)?;
    let load = load.as_primitive::<Float64Type>();
    let dry = col(12, &DataType::Boolean)?;
    let dry = dry.as_boolean();
    let power = col(15, &DataType::Float64)?;
    let power = power.as_primitive::<Float64Type>();
    (0..batch.num_rows())
        .map(|i| {
            let at = DateTime::from_timestamp_micros(ts.value(i)).context("a decision's ts")?;
            Ok(DecisionRow {
                id: id.value(i).into(),
                site: site.value(i).into(),
                ts: at,
                step: step.value(i).into(),
                from_mode: from.value(i).into(),
                to_mode: to.value(i).into(),
                rule: rule.value(i).into(),
                action: action.value(i).into(),
                machine: machine.is_valid(i).then(|| machine.value(i).into()),
                fan_level: fan.is_valid(i).then(|| fan.value(i)),
                power_target_w: power.is_valid(i).then(|| power.value(i)),
                target_kw: target.is_valid(i).then(|| target.value(i)),
                load_kw: load.value(i),
                dry_run: dry.value(i),
                inputs: inputs.value(i).into(),
                state: state.value(i).into(),
                date: at.date_naive(),
            })
        })
        .collect()
}
