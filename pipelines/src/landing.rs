//! Landing pipelines: every valid event of a stream into its kind's table, exactly once;
//! everything else to the dead-letter stream with its reason.

use std::time::{Duration, Instant};

use adit_ingest::{BatchConsumer, ConsumerConfig, decode_batch};
use adit_schemas::EventKind;
use adit_schemas::arrow_rows::DATE_COLUMN;
use adit_sinks::ExactlyOnceTable;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::metrics;
use crate::runtime::PipelineContext;

/// A quiet table's position is moved forward (by an empty commit) once it is this many stream
/// sequences behind, so a restart (which resumes after the lowest position) never replays
/// more than this for its sake.
const MAX_QUIET_LAG: u64 = 10_000;

/// Which stream a landing pipeline reads and which kinds it lands.
#[derive(Debug, Clone, PartialEq)]
pub struct LandingSpec {
    /// Pipeline name; also its Delta application id and durable consumer name.
    pub name: String,
    /// Stream to read.
    pub stream: String,
    /// Event kinds expected on it; anything else is dead-lettered.
    pub kinds: Vec<EventKind>,
}

/// Runs one landing pipeline until `shutdown`. Resumes after the lowest position committed
/// to any of its tables; rows at or below a table's own position are skipped for that table.
pub async fn run_landing(
    ctx: &PipelineContext,
    spec: &LandingSpec,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut tables = Vec::with_capacity(spec.kinds.len());
    for kind in &spec.kinds {
        let table = ExactlyOnceTable::open(
            &ctx.store,
            kind.table(),
            &kind.table_schema(),
            &[DATE_COLUMN],
            &spec.name,
            ctx.config.maintenance.clone(),
        )
        .await?;
        tables.push((*kind, table));
    }
    let start = tables.iter().map(|(_, t)| t.committed()).min().unwrap_or(0);
    tracing::info!(pipeline = %spec.name, resume_after = start, "landing pipeline starting");
    let consumer_config = ConsumerConfig {
        stream: spec.stream.clone(),
        durable: format!("adit-{}", spec.name),
        filter_subjects: Vec::new(),
        max_rows: ctx.config.batch_max_rows,
        max_wait: ctx.config.batch_max_wait,
    };
    let consumer = BatchConsumer::start(ctx.js.clone(), consumer_config, start).await?;
    let (mut incoming, prefetch) = prefetch(consumer);
    let mut batches = 0u64;
    let mut last = start;
    loop {
        let raw = tokio::select! {
            _ = shutdown.cancelled() => break,
            raw = incoming.recv() => match raw {
                Some(raw) => raw,
                // The consumer task died: restart from the last commit rather than go quiet.
                None => {
                    return Err(adit_ingest::Error::Consumer {
                        stream: spec.stream.clone(),
                        consumer: format!("adit-{}", spec.name),
                        message: "the consumer task ended".into(),
                    }
                    .into());
                }
            },
        };
        if raw.is_empty() {
            for (_, table) in &mut tables {
                table.maintain_if_due().await?;
            }
            continue;
        }
        let started = Instant::now();
        let mut decoded = decode_batch(&raw, &spec.kinds, &ctx.policy, Utc::now());
        let decoded_in = started.elapsed();
        decoded.dead_letter(&ctx.publisher, &spec.stream).await?;
        batches += 1;
        let mut landed = 0;
        for (kind, table) in &mut tables {
            let mut rows = decoded.rows.remove(kind).unwrap_or_default();
            rows.retain(|(seq, _)| *seq > table.committed());
            if rows.is_empty() && raw.hi.saturating_sub(table.committed()) < MAX_QUIET_LAG {
                continue;
            }
            landed += rows.len();
            let batch = kind.batch(&rows)?;
            table.commit(vec![batch], raw.hi).await?;
        }
        metrics::batch_committed(
            &spec.name,
            landed,
            decoded.rejected.len(),
            started.elapsed(),
            raw.hi,
        );
        tracing::debug!(
            pipeline = %spec.name,
            lo = raw.lo,
            hi = raw.hi,
            rows = landed,
            rejected = decoded.rejected.len(),
            decode_ms = decoded_in.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        let hi = raw.hi;
        last = hi;
        raw.ack().await;
        if batches % 20 == 1 {
            report_lag(ctx, spec, hi).await;
        }
    }
    drop(incoming);
    prefetch.abort();
    tracing::info!(pipeline = %spec.name, last, "landing pipeline stopped");
    Ok(())
}

/// Fills the next batch while the current one is decoded and committed: the consumer runs in
/// its own task and hands over at most one finished batch ahead. Nothing is acknowledged
/// there; a batch still in the channel at shutdown is simply redelivered on the next start.
fn prefetch(
    mut consumer: BatchConsumer,
) -> (
    tokio::sync::mpsc::Receiver<adit_ingest::RawBatch>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(async move {
        loop {
            let batch = consumer.next_batch(Duration::from_secs(1)).await;
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    });
    (rx, task)
}

async fn report_lag(ctx: &PipelineContext, spec: &LandingSpec, hi: u64) {
    if let Ok(mut stream) = ctx.js.get_stream(&spec.stream).await
        && let Ok(info) = stream.info().await
    {
        metrics::lag(&spec.name, info.state.last_sequence.saturating_sub(hi));
    }
}
