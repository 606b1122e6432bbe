//! `adit bench ingest`: end-to-end events/s (publish → committed Delta table) beside the raw
//! JetStream consume rate of the same stream in the same run, and the publish → visible-in-SQL
//! delay under a steady load (committed snapshots only, and with fresh reads), and the time a landing pipeline takes to resume over the whole
//! backlog after a restart. Runs against its own nats-server and tables in a temp folder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adit_bus::publish::Outgoing;
use adit_bus::{Publisher, ensure_streams};
use adit_pipelines::PipelineContext;
use adit_pipelines::fresh::{LandingTails, TailLimits};
use adit_pipelines::landing::Landing;
use adit_pipelines::runtime::runner::run_instance;
use adit_schemas::names::{STREAM_TELEMETRY, TABLE_ENERGY_READINGS};
use adit_schemas::{AnyEvent, EnergyReading, EnergySource, ValidationPolicy};
use adit_sinks::TableStore;
use adit_sql::{Catalog, SqlEngine, SqlLimits};
use anyhow::Context;
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::median;
use super::procfs::cpu_seconds;
use crate::config::Config;
use crate::nats_server;

fn reading(i: usize, ts: chrono::DateTime<Utc>) -> Outgoing {
    Outgoing::event(&AnyEvent::Energy(EnergyReading {
        site: format!("site-{:02}", i % 4),
        machine: format!("m-{:04}", i % 1000),
        ts,
        power_w: 3000.0 + (i % 500) as f64,
        energy_wh: None,
        source: EnergySource::Pdu,
    }))
}

async fn raw_consume_rate(js: &jetstream::Context, n: usize) -> anyhow::Result<f64> {
    let stream = js.get_stream(STREAM_TELEMETRY).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench-raw".into()),
            ack_policy: AckPolicy::All,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(5_000)
        .messages()
        .await?;
    let mut got = 0;
    while got < n {
        let m = messages.next().await.context("raw consumer ended")??;
        got += 1;
        if got % 5_000 == 0 || got == n {
            m.ack().await.ok();
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    stream.delete_consumer("bench-raw").await.ok();
    Ok(rate)
}

/// The telemetry pipeline's committed stream position in `energy_readings`: the epoch in the
/// table's log (followed incrementally; a full reload per poll would take CPU from the
/// pipeline being measured), then that epoch's recorded position.
async fn committed(
    store: &TableStore,
    log: &adit_sinks::EpochLog,
    table: &mut Option<deltalake::DeltaTable>,
) -> anyhow::Result<u64> {
    if table.is_none() {
        *table = store.open(TABLE_ENERGY_READINGS).await?;
    }
    let Some(table) = table.as_mut() else {
        return Ok(0);
    };
    table.update_incremental(None).await?;
    let v = table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), "telemetry")
        .await?;
    let epoch = v.unwrap_or(0).max(0) as u64;
    if epoch == 0 {
        return Ok(0);
    }
    let record = log.get(epoch).await?.context("epoch record")?;
    Ok(record.positions.get("telemetry").copied().unwrap_or(0))
}

/// CPU time per event of this process and of the nats-server over one phase of the bench:
/// where the machine's time goes, beside the rates (on a machine the two share, what one
/// spends the other cannot).
#[derive(Debug, Clone, Copy)]
struct CpuPerEvent {
    /// This process (the raw consumer, or the landing pipeline and the bench's poll), µs.
    adit_us: Option<f64>,
    /// The nats-server delivering to it, µs.
    nats_us: Option<f64>,
}

/// The CPU seconds used so far by this process and the nats-server `nats` (its pid).
fn cpu_now(nats: Option<&str>) -> (Option<f64>, Option<f64>) {
    (cpu_seconds("self"), nats.and_then(cpu_seconds))
}

impl CpuPerEvent {
    /// The CPU used since `before` (from [`cpu_now`]) over `events` events.
    fn since(before: (Option<f64>, Option<f64>), nats: Option<&str>, events: usize) -> Self {
        let after = cpu_now(nats);
        let per = |a: Option<f64>, b: Option<f64>| Some((b? - a?) * 1e6 / events as f64);
        Self {
            adit_us: per(before.0, after.0),
            nats_us: per(before.1, after.1),
        }
    }

    /// `adit 2.8 + nats 2.9 µs`, or `?` for what could not be read.
    fn show(&self) -> String {
        let us = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |v| format!("{v:.2}"));
        format!("adit {} + nats {} µs", us(self.adit_us), us(self.nats_us))
    }

    /// The median of each part over `all`.
    fn median_of(all: &[Self]) -> Self {
        let part = |f: fn(&Self) -> Option<f64>| {
            let v: Vec<f64> = all.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| median(&v))
        };
        Self {
            adit_us: part(|c| c.adit_us),
            nats_us: part(|c| c.nats_us),
        }
    }
}

/// The pid of the nats-server started for the bench in `dir` (its pid file's first field).
fn managed_nats_pid(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("nats").join("pid")).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One drain of the backlog by the landing pipeline into an empty table folder.
struct Drain {
    /// The tables it landed in.
    store: TableStore,
    /// Its epoch log.
    log: adit_sinks::EpochLog,
    /// The pipeline's context (for the restart).
    ctx: PipelineContext,
    /// The running pipeline and its stop.
    pipeline: tokio::task::JoinHandle<Result<(), adit_pipelines::Error>>,
    stop: CancellationToken,
    /// Events/s from the pipeline's start to the last event committed.
    e2e_rate: f64,
    /// Events/s from the first commit seen on (the pipeline's start excluded), when the
    /// backlog took more than one commit.
    drain_rate: Option<f64>,
}

/// Starts the telemetry landing over tables in `dir` (empty: it starts at the stream's first
/// event) and waits until all `events` are committed.
async fn drain(
    config: &Config,
    js: &jetstream::Context,
    publisher: &Publisher,
    dir: &std::path::Path,
    events: usize,
) -> anyhow::Result<Drain> {
    let store = TableStore::new(dir.to_str().context("temp path")?, Default::default())?;
    let ctx = PipelineContext {
        js: js.clone(),
        publisher: publisher.clone(),
        store: store.clone(),
        config: config.pipelines.runtime(),
        policy: ValidationPolicy::default(),
        holder: adit_bus::lease::holder_name(),
        vitals: adit_supervise::Vitals::new(),
        progress: Default::default(),
    };
    adit_bus::lease::ensure_bucket(js, ctx.config.lease_ttl, 1).await?;
    let log = adit_sinks::EpochLog::open(&store, "telemetry")?;
    let stop = CancellationToken::new();
    let pipeline = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move { run_instance(&Landing::telemetry(), &ctx, None, &stop).await })
    };
    let started = Instant::now();
    let mut table = None;
    // Where the first commit was seen: the drain after it excludes the pipeline's start
    // (opening its tables, reading its position), which the restart figure measures.
    let mut first: Option<(u64, Instant)> = None;
    loop {
        let position = committed(&store, &log, &mut table).await?;
        if position > 0 && first.is_none() {
            first = Some((position, Instant::now()));
        }
        if position >= events as u64 {
            break;
        }
        anyhow::ensure!(!pipeline.is_finished(), "the landing pipeline stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e2e_rate = events as f64 / started.elapsed().as_secs_f64();
    let drain_rate = first
        .filter(|(position, _)| *position < events as u64)
        .map(|(position, at)| (events as u64 - position) as f64 / at.elapsed().as_secs_f64());
    Ok(Drain {
        store,
        log,
        ctx,
        pipeline,
        stop,
        e2e_rate,
        drain_rate,
    })
}

/// Runs the ingest benchmark and prints its report.
pub async fn ingest(
    config: &Config,
    events: usize,
    rate: usize,
    latency_for: Duration,
    rounds: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
    let tmp = tempfile::tempdir()?;
    let (url, managed) =
        nats_server::ensure(tmp.path(), config.nats.server_binary.as_deref(), &[]).await?;
    let client = adit_bus::connect(&url).await?;
    let js = jetstream::new(client);
    ensure_streams(&js, &config.nats.streams).await?;
    let publisher = Publisher::new(js.clone());

    eprintln!("publishing a backlog of {events} events…");
    let base = Utc::now();
    let msgs: Vec<_> = (0..events)
        .map(|i| reading(i, base + chrono::Duration::microseconds(i as i64)))
        .collect();
    let started = Instant::now();
    publisher.publish_all(msgs).await?;
    let publish_rate = events as f64 / started.elapsed().as_secs_f64();

    // The raw consume and the pipeline's drain alternate on the same backlog, each drain into
    // empty tables, so a machine whose speed drifts during the run moves both sides of each
    // round's ratio alike; the median round is reported.
    let mut measured = Vec::with_capacity(rounds);
    let mut cpu = Vec::with_capacity(rounds);
    let nats = managed_nats_pid(tmp.path());
    let mut last = None;
    for round in 1..=rounds {
        // The last round's pipeline stopped first: left running (compacting, polling), it
        // would slow the raw consume of this round and flatter the ratio.
        if let Some(done) = last.take() {
            let Drain { pipeline, stop, .. } = done;
            stop.cancel();
            pipeline.await??;
        }
        eprintln!("round {round}/{rounds}: raw JetStream consume of the backlog…");
        let before = cpu_now(nats.as_deref());
        let raw_rate = raw_consume_rate(&js, events).await?;
        let raw_cpu = CpuPerEvent::since(before, nats.as_deref(), events);
        eprintln!("round {round}/{rounds}: pipeline drain of the backlog into Delta…");
        let before = cpu_now(nats.as_deref());
        let done = drain(
            config,
            &js,
            &publisher,
            &tmp.path().join(format!("tables-{round}")),
            events,
        )
        .await?;
        cpu.push((raw_cpu, CpuPerEvent::since(before, nats.as_deref(), events)));
        measured.push((raw_rate, done.e2e_rate, done.drain_rate));
        last = Some(done);
    }
    let Drain {
        store,
        log,
        ctx,
        pipeline,
        stop,
        ..
    } = last.context("no round ran")?;
    let mut table = None;

    // A restart over the whole backlog: the pipeline stopped and started again, one more event
    // published; the time until it is committed is the time to resume.
    eprintln!("restarting the pipeline over the {events}-message stream…");
    stop.cancel();
    pipeline.await??;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let pipeline = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move { run_instance(&Landing::telemetry(), &ctx, None, &stop).await })
    };
    publisher
        .publish_all(vec![reading(events, Utc::now())])
        .await?;
    while committed(&store, &log, &mut table).await? < events as u64 + 1 {
        anyhow::ensure!(!pipeline.is_finished(), "the restarted pipeline stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = started.elapsed();

    eprintln!(
        "steady load of {rate} events/s for {latency_for:?}, measuring publish → visible in SQL…"
    );
    // Committed snapshots checked before every statement (the best a reader can do without
    // fresh reads), beside the API's catalog with fresh reads as `adit run` builds it.
    let committed_only = SqlEngine::new(
        Arc::new(Catalog::new(store.clone(), Duration::ZERO)),
        SqlLimits::default(),
    );
    let fresh = SqlEngine::new(
        Arc::new(
            Catalog::new(store.clone(), config.query.snapshot_refresh).with_fresh(Arc::new(
                LandingTails::new(
                    js.clone(),
                    store.clone(),
                    &config.pipelines,
                    &ValidationPolicy::default(),
                    TailLimits::default(),
                ),
            )),
        ),
        SqlLimits::default(),
    );
    let [committed_delays, fresh_delays] = latency_phase(
        &publisher,
        [&committed_only, &fresh],
        events + 1,
        rate,
        latency_for,
    )
    .await?;
    stop.cancel();
    pipeline.await??;
    // Closed before its server stops, so the client does not log reconnect attempts.
    crate::services::close(&js.client(), managed).await;
    println!(
        "adit bench ingest ({events} events backlog, debug={})",
        cfg!(debug_assertions)
    );
    println!("  publish rate             {publish_rate:>12.0} events/s");
    for (round, (raw, e2e, drained)) in measured.iter().enumerate() {
        let after = drained.map_or_else(
            || "one commit".to_string(),
            |d| format!("{:.3} after the first commit", d / raw),
        );
        println!(
            "  round {}: raw {raw:>9.0}/s, end to end {e2e:>9.0}/s, ratio {:.3} ({after})",
            round + 1,
            e2e / raw,
        );
        let (raw_cpu, drain_cpu) = cpu[round];
        println!(
            "           CPU per event: raw {}, landing {}",
            raw_cpu.show(),
            drain_cpu.show()
        );
    }
    let raw_rates: Vec<f64> = measured.iter().map(|m| m.0).collect();
    let e2e_rates: Vec<f64> = measured.iter().map(|m| m.1).collect();
    let ratios: Vec<f64> = measured.iter().map(|m| m.1 / m.0).collect();
    let after_first: Vec<f64> = measured
        .iter()
        .filter_map(|(raw, _, drained)| drained.map(|d| d / raw))
        .collect();
    println!(
        "  raw JetStream consume    {:>12.0} events/s   (baseline, median of {rounds})",
        median(&raw_rates)
    );
    println!(
        "  end to end into Delta    {:>12.0} events/s   (median of {rounds})",
        median(&e2e_rates)
    );
    println!(
        "  ratio end-to-end / raw   {:>12.3}            (median round; target ≥ 0.9)",
        median(&ratios)
    );
    let raw_cpu: Vec<CpuPerEvent> = cpu.iter().map(|c| c.0).collect();
    let drain_cpu: Vec<CpuPerEvent> = cpu.iter().map(|c| c.1).collect();
    println!(
        "  CPU per event, raw       {}   (median of {rounds})",
        CpuPerEvent::median_of(&raw_cpu).show()
    );
    println!(
        "  CPU per event, landing   {}   (median of {rounds}; the two share the machine)",
        CpuPerEvent::median_of(&drain_cpu).show()
    );
    if after_first.is_empty() {
        println!("  after the first commit   (the whole backlog went in one commit)");
    } else {
        println!(
            "  after the first commit   {:>12.3}            (median ratio, the start excluded)",
            median(&after_first)
        );
    }
    println!(
        "  restart to first commit  {:>12.0} ms       (over the {events}-message stream)",
        resumed.as_secs_f64() * 1000.0
    );
    for (what, mut delays, poll) in [
        ("committed only", committed_delays, POLL * 10),
        ("fresh reads   ", fresh_delays, POLL),
    ] {
        delays.sort_by(f64::total_cmp);
        println!(
            "  publish → visible in SQL, {what}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} events (target p99 ≤ 50 ms; poll every {} ms)",
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays.last().copied().unwrap_or(f64::NAN),
            delays.len(),
            poll.as_millis()
        );
    }
    Ok(())
}

/// How often the engine with fresh reads is asked for new rows in the latency phase: the
/// measured delay is at most this much later than the moment a row became visible (plus one
/// statement). The committed-only engine, whose delay is the landing's batch wait, is asked
/// ten times less often, so its statements (each reads the log) take less of the machine.
const POLL: Duration = Duration::from_millis(5);

/// Publishes at `rate` for `length`, each event stamped with its publish time, and polls SQL
/// every [`POLL`] through each of `engines` (side by side, so a slow one does not delay the
/// other's polls); returns, per engine, each event's delay until it was visible, in ms.
async fn latency_phase(
    publisher: &Publisher,
    engines: [&SqlEngine; 2],
    offset: usize,
    rate: usize,
    length: Duration,
) -> anyhow::Result<[Vec<f64>; 2]> {
    let total = (rate as f64 * length.as_secs_f64()) as usize;
    let producer = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let per_tick = (rate / 100).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut sent = 0;
            while sent < total {
                tick.tick().await;
                let now = Utc::now();
                let msgs = (0..per_tick)
                    .map(|k| {
                        reading(
                            offset + sent + k,
                            now + chrono::Duration::microseconds(k as i64),
                        )
                    })
                    .collect();
                publisher.publish_all(msgs).await?;
                sent += per_tick;
            }
            anyhow::Ok(sent)
        })
    };
    let deadline = Instant::now() + length + Duration::from_secs(30);
    let [a, b] = engines;
    let (a, b) = futures::future::join(
        visible_delays(a, offset, total, deadline, POLL * 10),
        visible_delays(b, offset, total, deadline, POLL),
    )
    .await;
    producer.await??;
    Ok([a, b])
}

/// Polls `engine` every `poll` for rows after `offset` until `total` are seen (or the
/// deadline): each one's delay from its publish to the end of the statement that saw it, ms.
async fn visible_delays(
    engine: &SqlEngine,
    offset: usize,
    total: usize,
    deadline: Instant,
    poll: Duration,
) -> Vec<f64> {
    let mut delays = Vec::with_capacity(total);
    let mut last_seq = offset as i64;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while delays.len() < total && Instant::now() < deadline {
        tick.tick().await;
        let sql = format!(
            "SELECT seq, CAST(ts AS BIGINT) AS ts FROM {TABLE_ENERGY_READINGS} WHERE seq > {last_seq}"
        );
        // Before the first commit the table does not exist yet.
        let Ok(result) = engine.query(&sql).await else {
            continue;
        };
        let now_us = Utc::now().timestamp_micros();
        for b in &result.batches {
            let seq = b.column(0).as_primitive::<Int64Type>();
            let ts = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                last_seq = last_seq.max(seq.value(i));
                delays.push((now_us - ts.value(i)) as f64 / 1000.0);
            }
        }
    }
    delays
}
