//! The runtime's contract against a real nats-server and real Delta tables (issue 6): a
//! stateful pipeline with two inputs and two output tables, crashed at random moments (its
//! task dropped mid-flight, lease and all), resumes each input after its own position with the
//! state that belongs to it, and ends with every message counted exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use adit_bus::lease::{ensure_bucket as ensure_lease_bucket, holder_name};
use adit_bus::publish::Outgoing;
use adit_bus::{Publisher, ensure_streams};
use adit_pipelines::PipelinesConfig;
use adit_pipelines::runtime::PipelineContext;
use adit_pipelines::runtime::runner::run_instance;
use adit_pipelines::{
    OutputTable, Pipeline, PipelineSpec, Result, StepInput, StepOutput, StreamInput,
};
use adit_schemas::{
    AnyEvent, EventKind, GridSignal, GridSignalKind, SensorKind, SensorReading, ValidationPolicy,
    names,
};
use adit_sinks::TableStore;
use adit_testkit::NatsServer;
use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Counts messages per input; every message becomes a row carrying the running count of its
/// input, so a state paired with the wrong positions shows as a gap or a repeat in the counts.
struct Counter;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counts {
    per_input: BTreeMap<String, i64>,
}

fn schema(with_total: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("input", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
    ];
    if with_total {
        fields.push(Field::new("running", DataType::Int64, false));
    }
    Arc::new(Schema::new(fields))
}

impl Pipeline for Counter {
    type State = Counts;

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: "counter".into(),
            inputs: vec![
                StreamInput {
                    name: "grid".into(),
                    stream: names::STREAM_GRID.into(),
                    subject: "grid.signal.*".into(),
                    partitioned: None,
                    kinds: vec![EventKind::Grid],
                    dead_letters: true,
                },
                StreamInput {
                    name: "sensors".into(),
                    stream: names::STREAM_TELEMETRY.into(),
                    subject: "telemetry.sensor.*.*".into(),
                    partitioned: None,
                    kinds: vec![EventKind::Sensor],
                    dead_letters: true,
                },
            ],
            outputs: vec![
                OutputTable {
                    name: "counted".into(),
                    schema: schema(true),
                    partitions: vec![],
                },
                OutputTable {
                    name: "seen".into(),
                    schema: schema(false),
                    partitions: vec![],
                },
            ],
            timers: vec![],
            // Snapshots only now and then: restarts replay the epochs since.
            snapshot_every: Duration::from_millis(300),
        }
    }

    async fn step(&self, state: &mut Counts, input: StepInput) -> Result<StepOutput> {
        let mut names_ = Vec::new();
        let mut seqs = Vec::new();
        let mut running = Vec::new();
        for (decoded, name) in input.inputs.iter().zip(["grid", "sensors"]) {
            for rows in decoded.rows.values() {
                for (seq, _) in rows {
                    let n = state.per_input.entry(name.to_string()).or_default();
                    *n += 1;
                    names_.push(name);
                    seqs.push(*seq as i64);
                    running.push(*n);
                }
            }
        }
        let mut out = StepOutput::default();
        let columns = |with_total: bool| {
            let mut c: Vec<Arc<dyn arrow::array::Array>> = vec![
                Arc::new(StringArray::from(names_.clone())),
                Arc::new(Int64Array::from(seqs.clone())),
            ];
            if with_total {
                c.push(Arc::new(Int64Array::from(running.clone())));
            }
            c
        };
        out.rows(
            "counted",
            RecordBatch::try_new(schema(true), columns(true)).expect("batch"),
        );
        out.rows(
            "seen",
            RecordBatch::try_new(schema(false), columns(false)).expect("batch"),
        );
        Ok(out)
    }
}

fn grid(i: usize, base: chrono::DateTime<chrono::Utc>) -> Outgoing {
    Outgoing::event(&AnyEvent::Grid(GridSignal {
        site: format!("site-{}", i % 3),
        ts: base,
        kind: GridSignalKind::Price,
        target_kw: None,
        deadline: None,
        price_per_mwh: Some(i as f64),
        event_id: format!("ev-{i}"),
    }))
}

fn sensor(i: usize, base: chrono::DateTime<chrono::Utc>) -> Outgoing {
    Outgoing::event(&AnyEvent::Sensor(SensorReading {
        site: format!("site-{}", i % 3),
        sensor: format!("t-{}", i % 5),
        kind: SensorKind::Temperature,
        value: 20.0 + (i % 10) as f64,
        ts: base - chrono::Duration::milliseconds(i as i64),
    }))
}

async fn column_values(root: &std::path::Path, sql: &str) -> Vec<(String, i64)> {
    let store = TableStore::new(root.to_str().unwrap(), Default::default()).unwrap();
    let ctx = SessionContext::new();
    for t in ["counted", "seen"] {
        if !store.register(&ctx, t).await.unwrap() {
            return Vec::new();
        }
    }
    let mut out = Vec::new();
    for b in ctx.sql(sql).await.unwrap().collect().await.unwrap() {
        let names_ = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
        let names_ = names_.as_string::<i32>();
        let values = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((names_.value(i).to_string(), values.value(i)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_inputs_resume_each_after_its_own_position_with_their_state() {
    const GRID: usize = 3_000;
    const SENSORS: usize = 12_000;
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    ensure_streams(&js, &Default::default()).await.unwrap();
    let config = PipelinesConfig {
        batch_max_rows: 500,
        batch_max_wait: Duration::from_millis(50),
        lease_ttl: Duration::from_secs(1),
        ..Default::default()
    };
    ensure_lease_bucket(&js, config.lease_ttl, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let publisher = Publisher::new(js.clone());
    let ctx = PipelineContext {
        js: js.clone(),
        publisher: publisher.clone(),
        store,
        config: config.runtime(),
        policy: ValidationPolicy::default(),
        holder: holder_name(),
        vitals: adit_supervise::Vitals::new(),
        progress: Default::default(),
    };
    // The two inputs arrive at different rates, interleaved over the run.
    let base = chrono::Utc::now();
    let producer = tokio::spawn(async move {
        for chunk in 0..30 {
            let msgs: Vec<Outgoing> = (chunk * 100..(chunk + 1) * 100)
                .map(|i| grid(i, base))
                .chain((chunk * 400..(chunk + 1) * 400).map(|i| sensor(i, base)))
                .collect();
            publisher.publish_all(msgs).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let mut crashes = 0;
    let counted = "SELECT input, count(*) FROM counted GROUP BY input";
    loop {
        let stop = CancellationToken::new();
        let task = {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            tokio::spawn(async move { run_instance(&Counter, &ctx, None, &stop).await })
        };
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let landed: i64 = column_values(dir.path(), counted)
            .await
            .iter()
            .map(|(_, n)| n)
            .sum();
        if crashes >= 8 {
            // Enough crashes: let this instance finish (on a loaded machine a recovery can
            // take longer than the next crash would allow it).
            let deadline = std::time::Instant::now() + Duration::from_secs(180);
            let mut landed = landed;
            while landed as usize != GRID + SENSORS {
                assert!(
                    std::time::Instant::now() < deadline,
                    "not done 180 s after the last crash ({landed} rows)"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                landed = column_values(dir.path(), counted)
                    .await
                    .iter()
                    .map(|(_, n)| n)
                    .sum();
            }
            stop.cancel();
            task.await.unwrap().unwrap();
            break;
        }
        // A crash: the task is dropped wherever it is (between a record and its commits,
        // between two tables' commits, mid-publish…); its lease expires on its own.
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        crashes += 1;
    }
    producer.await.unwrap();

    let per_input: BTreeMap<String, i64> = column_values(dir.path(), counted)
        .await
        .into_iter()
        .collect();
    assert_eq!(per_input["grid"], GRID as i64, "grid messages counted once");
    assert_eq!(
        per_input["sensors"], SENSORS as i64,
        "sensor messages counted once"
    );
    for table in ["counted", "seen"] {
        let distinct = column_values(
            dir.path(),
            &format!("SELECT input, count(DISTINCT seq) FROM {table} GROUP BY input"),
        )
        .await;
        let total: i64 = distinct.iter().map(|(_, n)| n).sum();
        assert_eq!(
            total,
            (GRID + SENSORS) as i64,
            "{table}: each stream sequence once"
        );
    }
    // The running count of each input is exactly 1..=N: the state always resumed with the
    // positions it belongs to.
    let running = column_values(
        dir.path(),
        "SELECT input, count(DISTINCT running) FROM counted WHERE running BETWEEN 1 AND 100000 GROUP BY input",
    )
    .await;
    let running: BTreeMap<String, i64> = running.into_iter().collect();
    assert_eq!(running["grid"], GRID as i64);
    assert_eq!(running["sensors"], SENSORS as i64);
    let max = column_values(
        dir.path(),
        "SELECT input, max(running) FROM counted GROUP BY input",
    )
    .await;
    let max: BTreeMap<String, i64> = max.into_iter().collect();
    assert_eq!(max["grid"], GRID as i64);
    assert_eq!(max["sensors"], SENSORS as i64);
    eprintln!("{crashes} crashes; grid {GRID}, sensors {SENSORS}, each counted once");
}
