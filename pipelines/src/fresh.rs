//! Fresh reads of the landed tables: the query process follows each landing's stream itself
//! and shows, after a table's committed snapshot, the rows the landing will commit next.
//!
//! **What a reader may see.** For a table at snapshot version `v`, the landing instance's
//! position at `v` is read back (the application transaction of `v` names the epoch; the epoch
//! record names the stream position). The rows shown after the snapshot are the stream's
//! messages after that position, decoded and validated exactly as the landing does, in stream
//! order, up to the first message that the landing might judge differently (one refused here,
//! or one whose time is within [`PAST_MARGIN`] or [`FUTURE_MARGIN`] of the validation window's
//! edges): none of them is already in the snapshot, and none the landing commits before them
//! is left out. A crash loses none of them: they are in the stream, and the landing commits them
//! when it resumes.
//!
//! **What it may not see.** Rows after such an uncertain message until the landing commits past
//! it (one batch wait); anything while a tail is starting, after it fell more than
//! [`TailLimits::max_rows`] behind the landing, or when the landing has committed nothing the
//! tail can line up with. Then a reader sees the snapshot alone, as without fresh reads. Only
//! the landed tables are fresh; what other pipelines derive from them appears when committed.
//!
//! A tail starts when a statement first scans one of its tables, from that snapshot's position
//! (so it is complete at once), and stops after [`TailLimits::idle`] without a scan.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use adit_bus::{RawBatch, RawMessage, decode_batch};
use adit_schemas::arrow_rows::SEQ_COLUMN;
use adit_schemas::{EventKind, ValidationPolicy};
use adit_sinks::{EpochLog, FreshRows, TableStore};
use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Int64Type;
use async_nats::jetstream::{self, consumer::DeliverPolicy};
use chrono::Utc;
use deltalake::DeltaTable;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::catalog::PipelinesConfig;
use crate::landing::Landing;
use crate::runtime::runner::instance_name;

/// A message whose time lies this close to the oldest time the landing accepts is not shown
/// fresh: the landing may validate it up to this much later than the tail did.
pub const PAST_MARGIN: chrono::Duration = chrono::Duration::hours(1);
/// A message whose time lies this close to the newest time the landing accepts is not shown
/// fresh: the landing may have validated it up to this much earlier than the tail did.
pub const FUTURE_MARGIN: chrono::Duration = chrono::Duration::minutes(1);

/// After a tail failed (no such stream, not allowed to read it…), statements see committed
/// rows only for this long before another tail is tried, so a lasting failure is logged once
/// per interval, not once per statement.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Most messages decoded into one chunk of a tail.
const CHUNK_MESSAGES: usize = 4_096;
/// Table versions' positions remembered before the memo is cleared.
const POSITIONS_KEPT: usize = 4_096;

/// How much a tail may hold and how long it lives unread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailLimits {
    /// Rows a tail holds at most; past it, it starts over from where it is (and shows nothing
    /// until the landing catches up).
    pub max_rows: usize,
    /// A tail no statement read for this long stops.
    pub idle: Duration,
}

impl Default for TailLimits {
    fn default() -> Self {
        Self {
            max_rows: 1_000_000,
            idle: Duration::from_secs(600),
        }
    }
}

/// One landing instance a tail can follow.
#[derive(Debug, Clone)]
struct Spec {
    /// Its instance name: the Delta application id and the epoch log's folder.
    instance: String,
    /// Its input's name (the key of the position in its epoch records).
    input: String,
    /// The stream and the subject filter it reads.
    stream: String,
    filter: String,
    /// The kinds it lands, and their tables.
    kinds: Vec<EventKind>,
}

impl Spec {
    fn lands(&self, table: &str) -> bool {
        self.kinds.iter().any(|k| k.table() == table)
    }
}

/// Every landing instance `config` runs, as tails can follow them.
fn specs(config: &PipelinesConfig) -> Vec<Spec> {
    let mut out = Vec::new();
    for landing in Landing::all() {
        let spec = crate::runtime::pipeline::Pipeline::spec(&landing);
        let Some(input) = spec.inputs.first() else {
            continue;
        };
        let partitions: Vec<Option<&str>> = match config.partitions.get(&spec.name) {
            Some(keys) => keys.iter().map(|k| Some(k.as_str())).collect(),
            None => vec![None],
        };
        for partition in partitions {
            let Some(filter) = input.filter(partition) else {
                continue;
            };
            out.push(Spec {
                instance: instance_name(&spec.name, partition),
                input: input.name.clone(),
                stream: input.stream.clone(),
                filter,
                kinds: input.kinds.clone(),
            });
        }
    }
    out
}

/// Decoded messages of one tail: sequences `lo..=hi` of its filter.
struct Chunk {
    lo: u64,
    hi: u64,
    /// The messages the landing might judge differently, in order.
    barriers: Vec<u64>,
    /// Each table's rows.
    tables: Vec<(&'static str, RecordBatch)>,
}

impl Chunk {
    fn rows(&self) -> usize {
        self.tables.iter().map(|(_, b)| b.num_rows()).sum()
    }
}

/// What a tail has read and not yet seen committed.
struct Buffer {
    /// Every message of the filter at or after this sequence has been read (or is still to be
    /// read in order): the chunks are complete from here.
    from: u64,
    chunks: VecDeque<Chunk>,
    rows: usize,
    /// When a statement last asked.
    read: Instant,
    /// The tail's task has ended, and when, and whether it failed: an idle one is replaced at
    /// the next ask, a failed one not before [`RETRY_AFTER`].
    ended: Option<(Instant, bool)>,
}

impl Buffer {
    fn new(from: u64) -> Self {
        Self {
            from,
            chunks: VecDeque::new(),
            rows: 0,
            read: Instant::now(),
            ended: None,
        }
    }

    /// Adds a chunk; past `max_rows` everything is dropped and the tail is complete only from
    /// after it.
    fn push(&mut self, chunk: Chunk, max_rows: usize) {
        self.count(self.rows + chunk.rows());
        let hi = chunk.hi;
        self.chunks.push_back(chunk);
        if self.rows > max_rows {
            tracing::warn!(
                rows = self.rows,
                "a fresh-read tail holds more than its limit (its landing is behind); starting over"
            );
            self.clear();
            self.from = hi + 1;
        }
    }

    /// Drops every chunk.
    fn clear(&mut self) {
        self.chunks.clear();
        self.count(0);
    }

    /// Sets the rows held, and the gauge of every tail's rows with them.
    fn count(&mut self, rows: usize) {
        metrics::gauge!("adit_sql_fresh_rows").increment(rows as f64 - self.rows as f64);
        self.rows = rows;
    }

    /// Forgets what a commit at `position` holds.
    fn committed(&mut self, position: u64) {
        while let Some(front) = self.chunks.front()
            && front.hi <= position
        {
            let (rows, hi) = (front.rows(), front.hi);
            self.count(self.rows - rows);
            self.from = self.from.max(hi + 1);
            self.chunks.pop_front();
        }
    }

    /// `table`'s rows after `position`, up to the first barrier; `None` when the buffer is not
    /// complete from just after `position`.
    fn after(&self, table: &str, position: u64) -> Option<Vec<RecordBatch>> {
        if self.from > position + 1 {
            return None;
        }
        let mut out = Vec::new();
        for chunk in self.chunks.iter().filter(|c| c.hi > position) {
            let barrier = chunk.barriers.iter().copied().find(|b| *b > position);
            for (_, batch) in chunk.tables.iter().filter(|(t, _)| *t == table) {
                let whole = chunk.lo > position && barrier.is_none();
                out.push(if whole {
                    batch.clone()
                } else {
                    between(batch, position, barrier.unwrap_or(u64::MAX))?
                });
            }
            if barrier.is_some() {
                break;
            }
        }
        Some(out)
    }
}

/// The rows of `batch` whose sequence lies after `position` and before `barrier`.
fn between(batch: &RecordBatch, position: u64, barrier: u64) -> Option<RecordBatch> {
    let seq = batch
        .column_by_name(SEQ_COLUMN)?
        .as_primitive_opt::<Int64Type>()?;
    let keep: BooleanArray = seq
        .iter()
        .map(|s| s.map(|s| s as u64 > position && (s as u64) < barrier))
        .collect();
    filter_record_batch(batch, &keep).ok()
}

/// One running tail.
struct Tail {
    buffer: Arc<Mutex<Buffer>>,
    task: JoinHandle<()>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The tails of every landing instance, started as statements read their tables.
pub struct LandingTails {
    js: jetstream::Context,
    store: TableStore,
    /// The landing's validation, narrowed by the margins.
    policy: ValidationPolicy,
    limits: TailLimits,
    /// Where tails run (statements run on the SQL engine's own runtime).
    runtime: tokio::runtime::Handle,
    specs: Vec<Spec>,
    tails: Mutex<HashMap<String, Tail>>,
    /// `(instance, table, version)` → the input position that version holds.
    positions: Mutex<HashMap<(String, String, deltalake::kernel::Version), u64>>,
}

impl LandingTails {
    /// Tails over `js` for the landings `config` runs, checked against the tables of `store`;
    /// tasks run on the current runtime.
    pub fn new(
        js: jetstream::Context,
        store: TableStore,
        config: &PipelinesConfig,
        policy: &ValidationPolicy,
        limits: TailLimits,
    ) -> Self {
        Self {
            js,
            store,
            policy: narrowed(policy),
            limits,
            runtime: tokio::runtime::Handle::current(),
            specs: specs(config),
            tails: Mutex::new(HashMap::new()),
            positions: Mutex::new(HashMap::new()),
        }
    }

    /// The input position of `spec`'s instance that `table` at `snapshot` holds (0: it never
    /// committed to this table); `None` when it cannot be told. Read once per table version:
    /// the application transaction is a read of the log, the epoch record one more object.
    async fn position(&self, spec: &Spec, table: &str, snapshot: &DeltaTable) -> Option<u64> {
        let key = (
            spec.instance.clone(),
            table.to_string(),
            snapshot.version()?,
        );
        if let Some(p) = lock(&self.positions).get(&key) {
            return Some(*p);
        }
        let state = snapshot.snapshot().ok()?;
        let epoch = state
            .transaction_version(snapshot.log_store().as_ref(), &spec.instance)
            .await
            .ok()?;
        let position = match epoch.and_then(|e| u64::try_from(e).ok()).filter(|e| *e > 0) {
            None => 0,
            // A record pruned since (the snapshot is old) tells nothing: no fresh rows.
            Some(epoch) => *EpochLog::open(&self.store, &spec.instance)
                .ok()?
                .get(epoch)
                .await
                .ok()??
                .positions
                .get(&spec.input)?,
        };
        let mut positions = lock(&self.positions);
        if positions.len() >= POSITIONS_KEPT {
            positions.clear();
        }
        positions.insert(key, position);
        Some(position)
    }

    /// `table`'s rows after `position` from `spec`'s tail, starting one from there if none runs.
    fn rows(&self, spec: &Spec, table: &str, position: u64) -> Vec<RecordBatch> {
        let mut tails = lock(&self.tails);
        if let Some(tail) = tails.get(&spec.instance) {
            let mut buffer = lock(&tail.buffer);
            match buffer.ended {
                None => {
                    buffer.read = Instant::now();
                    buffer.committed(position);
                    return buffer.after(table, position).unwrap_or_default();
                }
                Some((at, true)) if at.elapsed() < RETRY_AFTER => return Vec::new(),
                Some(_) => {}
            }
        }
        let buffer = Arc::new(Mutex::new(Buffer::new(position + 1)));
        let task = self.runtime.spawn(follow(
            self.js.clone(),
            spec.clone(),
            self.policy.clone(),
            self.limits,
            buffer.clone(),
        ));
        tails.insert(spec.instance.clone(), Tail { buffer, task });
        Vec::new()
    }
}

impl FreshRows for LandingTails {
    fn covers(&self, table: &str) -> bool {
        self.specs.iter().any(|s| s.lands(table))
    }

    fn after<'a>(
        &'a self,
        table: &'a str,
        snapshot: &'a DeltaTable,
    ) -> BoxFuture<'a, Vec<RecordBatch>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for spec in self.specs.iter().filter(|s| s.lands(table)) {
                if let Some(position) = self.position(spec, table, snapshot).await {
                    out.extend(self.rows(spec, table, position));
                }
            }
            out
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `policy` with its time window shrunk by the margins: what it accepts, the landing accepts
/// too, whenever within the margins it validates.
fn narrowed(policy: &ValidationPolicy) -> ValidationPolicy {
    ValidationPolicy {
        max_future: (policy.max_future - FUTURE_MARGIN).max(chrono::Duration::zero()),
        max_past: (policy.max_past - PAST_MARGIN).max(chrono::Duration::zero()),
        ..policy.clone()
    }
}

/// Reads `spec`'s stream from the buffer's start into it until idle or an error; then marks
/// it ended.
async fn follow(
    js: jetstream::Context,
    spec: Spec,
    policy: ValidationPolicy,
    limits: TailLimits,
    buffer: Arc<Mutex<Buffer>>,
) {
    let from = lock(&buffer).from;
    metrics::gauge!("adit_sql_fresh_tails").increment(1.0);
    let failed = match read(&js, &spec, &policy, limits, &buffer, from).await {
        Ok(()) => {
            tracing::debug!(instance = %spec.instance, "fresh-read tail stopped: idle");
            false
        }
        Err(e) => {
            tracing::warn!(instance = %spec.instance, error = %e, retry_after = ?RETRY_AFTER, "fresh-read tail stopped; reads show committed rows only until another starts");
            true
        }
    };
    metrics::gauge!("adit_sql_fresh_tails").decrement(1.0);
    let mut buffer = lock(&buffer);
    buffer.ended = Some((Instant::now(), failed));
    buffer.clear();
}

async fn read(
    js: &jetstream::Context,
    spec: &Spec,
    policy: &ValidationPolicy,
    limits: TailLimits,
    buffer: &Mutex<Buffer>,
    from: u64,
) -> Result<(), String> {
    let consumer = adit_bus::reader::ordered_in(
        js,
        &spec.stream,
        &spec.filter,
        DeliverPolicy::ByStartSequence {
            start_sequence: from,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("messages: {e}"))?
        .ready_chunks(CHUNK_MESSAGES);
    loop {
        let next = tokio::time::timeout(limits.idle.min(Duration::from_secs(30)), messages.next());
        let got = next.await;
        if lock(buffer).read.elapsed() >= limits.idle {
            return Ok(());
        }
        let Ok(got) = got else { continue };
        let got = got.ok_or("the consumer ended")?;
        let mut raw = Vec::with_capacity(got.len());
        for message in got {
            let message = message.map_err(|e| format!("message: {e}"))?;
            let seq = message
                .info()
                .map_err(|e| format!("message info: {e}"))?
                .stream_sequence;
            raw.push(RawMessage::new(seq, &message));
        }
        let chunk = decode(&RawBatch::from_messages(raw), &spec.kinds, policy);
        lock(buffer).push(chunk, limits.max_rows);
    }
}

/// `raw` decoded as the landing does, each kind's rows in its table's batch; each message
/// refused (or not encodable) is a barrier.
fn decode(raw: &RawBatch, kinds: &[EventKind], policy: &ValidationPolicy) -> Chunk {
    let decoded = decode_batch(raw, kinds, policy, Utc::now());
    let mut barriers: Vec<u64> = decoded.rejected.iter().map(|r| r.seq).collect();
    let mut tables = Vec::new();
    for kind in kinds {
        let rows = decoded.of(*kind);
        if rows.is_empty() {
            continue;
        }
        match kind.batch(rows) {
            Ok(batch) => tables.push((kind.table(), batch)),
            Err(e) => {
                tracing::warn!(table = kind.table(), error = %e, "fresh rows not encodable");
                barriers.extend(rows.first().map(|(seq, _)| *seq));
            }
        }
    }
    barriers.sort_unstable();
    Chunk {
        lo: raw.lo,
        hi: raw.hi,
        barriers,
        tables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::names::TABLE_ENERGY_READINGS;
    use adit_schemas::{AnyEvent, EnergyReading, EnergySource};

    fn reading(seq: u64, minutes_ago: i64) -> RawMessage {
        let event = AnyEvent::Energy(EnergyReading {
            site: "s1".into(),
            machine: format!("m{seq}"),
            ts: Utc::now() - chrono::Duration::minutes(minutes_ago),
            power_w: 100.0,
            energy_wh: None,
            source: EnergySource::Pdu,
        });
        let (subject, _, payload) = event.to_message();
        RawMessage {
            seq,
            subject: subject.into(),
            schema_version: None,
            payload: payload.into(),
        }
    }

    fn chunk(messages: Vec<RawMessage>) -> Chunk {
        decode(
            &RawBatch::from_messages(messages),
            &[EventKind::Energy],
            &narrowed(&ValidationPolicy::default()),
        )
    }

    fn seqs(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column_by_name(SEQ_COLUMN)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn rows_after_a_position_are_cut_there_and_stop_at_the_first_uncertain_one() {
        let mut buffer = Buffer::new(10);
        buffer.push(chunk((10..15).map(|s| reading(s, 0)).collect()), 100);
        // 16 is refused; 17 lies within the margin of the oldest time the landing accepts.
        let days_30 = 30 * 24 * 60;
        buffer.push(
            chunk(vec![
                reading(15, 0),
                RawMessage {
                    payload: "not json".into(),
                    ..reading(16, 0)
                },
                reading(17, days_30 - 30),
                reading(18, 0),
            ]),
            100,
        );
        let t = TABLE_ENERGY_READINGS;
        assert_eq!(seqs(&buffer.after(t, 9).unwrap()), [10, 11, 12, 13, 14, 15]);
        assert_eq!(seqs(&buffer.after(t, 12).unwrap()), [13, 14, 15]);
        assert_eq!(buffer.after(t, 8), None, "the buffer starts at 10");
        assert!(buffer.after("other_table", 9).unwrap().is_empty());
        // Past the refused message, the next one within the margin is the barrier.
        assert_eq!(seqs(&buffer.after(t, 16).unwrap()), Vec::<i64>::new());
        assert_eq!(seqs(&buffer.after(t, 17).unwrap()), [18]);
        // A commit drops what it holds; an older snapshot then gets nothing.
        buffer.committed(14);
        assert_eq!(buffer.chunks.len(), 1);
        assert_eq!(buffer.rows, 2, "15 and 18 were accepted");
        assert_eq!(seqs(&buffer.after(t, 14).unwrap()), [15]);
        assert_eq!(buffer.after(t, 12), None);
    }

    #[test]
    fn a_tail_past_its_limit_starts_over_after_what_it_dropped() {
        let mut buffer = Buffer::new(1);
        buffer.push(chunk((1..=3).map(|s| reading(s, 0)).collect()), 5);
        buffer.push(chunk((4..=6).map(|s| reading(s, 0)).collect()), 5);
        assert_eq!(buffer.rows, 0);
        assert_eq!(buffer.after(TABLE_ENERGY_READINGS, 3), None);
        buffer.push(chunk(vec![reading(7, 0)]), 5);
        assert_eq!(seqs(&buffer.after(TABLE_ENERGY_READINGS, 6).unwrap()), [7]);
    }

    #[test]
    fn every_landed_table_has_a_tail_and_partitions_have_one_each() {
        let mut config = PipelinesConfig::default();
        let all = specs(&config);
        for kind in EventKind::ALL {
            let landed = Landing::all().iter().any(|l| {
                crate::runtime::pipeline::Pipeline::spec(l)
                    .outputs
                    .iter()
                    .any(|o| o.name == kind.table())
            });
            assert_eq!(
                all.iter().any(|s| s.lands(kind.table())),
                landed,
                "{kind:?}"
            );
        }
        config
            .partitions
            .insert("telemetry".into(), vec!["site-01".into(), "site-02".into()]);
        let parted: Vec<_> = specs(&config)
            .into_iter()
            .filter(|s| s.lands(TABLE_ENERGY_READINGS))
            .map(|s| (s.instance, s.filter))
            .collect();
        assert_eq!(
            parted,
            [
                (
                    "telemetry.site-01".to_string(),
                    "telemetry.*.site-01.>".to_string()
                ),
                (
                    "telemetry.site-02".to_string(),
                    "telemetry.*.site-02.>".to_string()
                ),
            ]
        );
    }
}
