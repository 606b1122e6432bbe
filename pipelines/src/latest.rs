//! The last-value tables: the newest readings per machine, sensor and worker, held in memory
//! by the query process and read in SQL like any table (issue 62).
//!
//! For each kind it keeps ([`KINDS`]), the process follows the kind's subjects on its stream
//! itself, decoding and validating each message as the landing does. A start reads the
//! messages stored in the last `seed` (a minute), then the last message of each subject
//! (`DeliverPolicy::LastPerSubject`) and every one after: one message per key, not the stream. A key is one subject: the event's route (site and machine, site and
//! sensor, cluster and worker). Per key it keeps the `keep` rows with the newest times (the
//! later stream position wins a tie; a message read twice counts once). Each kind gives two
//! tables, with its landed table's columns:
//! - `latest_<table>`: the newest row per key;
//! - `recent_<table>`: up to `keep` rows per key.
//!
//! After a start, a key that had no message within `seed` shows its last message on the
//! stream (its newest by arrival) until newer ones come, and `recent_` fills from there. It
//! may not show a key whose last message the landing refused (until its next valid one), nor
//! one whose messages the stream's limits removed before the start. No key is
//! forgotten while the process runs; past `max_keys`, a new key is refused with a warning and
//! counted in `adit_sql_latest_refused_keys_total`.
//!
//! Statements see the tables as they are when they start: each table is encoded once per
//! change to it, not once per statement, and apart (a reading newer than its key's newest
//! rebuilds `latest_` when next asked; `recent_`, `keep` times larger, is built only when asked).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use adit_bus::{RawBatch, RawMessage, decode_batch};
use adit_schemas::{AnyEvent, EventKind, ValidationPolicy};
use adit_sinks::MemoryTables;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_nats::jetstream::{self, consumer::DeliverPolicy};
use chrono::Utc;
use futures::StreamExt;
use serde::Deserialize;
use tokio::task::JoinHandle;

/// The kinds whose last values are kept: readings with one key each.
pub const KINDS: [EventKind; 4] = [
    EventKind::Energy,
    EventKind::Sensor,
    EventKind::Miner,
    EventKind::Hashrate,
];

/// After a follower failed (no stream yet, not allowed…), it tries again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Most messages decoded at once.
const CHUNK_MESSAGES: usize = 4_096;

/// How many rows the last-value tables keep; from config (`[query.latest]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatestConfig {
    /// Keep the last-value tables at all (they cost a consumer per kind and the rows kept).
    pub enabled: bool,
    /// Rows kept per key in the `recent_` tables (1 to 1 000).
    pub keep: usize,
    /// Keys kept per kind at most (1 to 10 000 000): a new key past it is refused and counted.
    pub max_keys: usize,
    /// At a start, every message stored this long before is read first (then each key's last
    /// message): a key's newest by time and its `keep` newest are right from the start when
    /// they arrived within it, whatever their order (at most 1 h).
    #[serde(with = "humantime_serde")]
    pub seed: Duration,
}

impl Default for LatestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keep: 10,
            max_keys: 100_000,
            seed: Duration::from_secs(60),
        }
    }
}

/// The name of `kind`'s table of the newest row per key.
pub fn latest_table(kind: EventKind) -> String {
    format!("latest_{}", kind.table())
}

/// The name of `kind`'s table of the newest rows per key.
pub fn recent_table(kind: EventKind) -> String {
    format!("recent_{}", kind.table())
}

/// One kind's rows per key.
struct Kept {
    kind: EventKind,
    config: LatestConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per key, the rows kept, newest first, each with its stream sequence.
    keys: BTreeMap<String, Vec<(u64, AnyEvent)>>,
    /// The `latest_` table as of the last change, once a statement asked for it.
    latest: Option<RecordBatch>,
    /// The `recent_` table as of the last change, once a statement asked for it (built apart:
    /// it holds `keep` times the rows, and a statement on the newest rows alone need not pay
    /// for it after every change).
    recent: Option<RecordBatch>,
}

impl State {
    /// Keeps `event` if it is among its key's newest; whether it was.
    fn insert(&mut self, seq: u64, event: &AnyEvent, config: &LatestConfig) -> Insert {
        let key = event.subject();
        if !self.keys.contains_key(&key) && self.keys.len() >= config.max_keys {
            return Insert::Refused;
        }
        let rows = self.keys.entry(key).or_default();
        if rows.iter().any(|(s, _)| *s == seq) {
            return Insert::Old;
        }
        let newer = (event.ts(), seq);
        let at = rows
            .iter()
            .position(|(s, e)| newer > (e.ts(), *s))
            .unwrap_or(rows.len());
        if at >= config.keep {
            return Insert::Old;
        }
        rows.insert(at, (seq, event.clone()));
        rows.truncate(config.keep);
        if at == 0 {
            self.latest = None;
        }
        self.recent = None;
        Insert::Kept
    }

    /// The newest row per key (`latest`) or every row kept, encoded as `kind`'s table.
    fn table(&mut self, kind: EventKind, latest: bool) -> adit_schemas::Result<RecordBatch> {
        let built = if latest { &self.latest } else { &self.recent };
        if let Some(batch) = built {
            return Ok(batch.clone());
        }
        let rows: Vec<(u64, AnyEvent)> = if latest {
            let newest = self.keys.values().filter_map(|r| r.first());
            newest.cloned().collect()
        } else {
            self.keys.values().flatten().cloned().collect()
        };
        let batch = kind.batch(&rows)?;
        let kept = if latest {
            &mut self.latest
        } else {
            &mut self.recent
        };
        *kept = Some(batch.clone());
        Ok(batch)
    }
}

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
enum Insert {
    Kept,
    /// Older than what its key keeps, or kept already.
    Old,
    /// A new key past `max_keys`.
    Refused,
}

/// The last-value tables of every kind in [`KINDS`], each kept up to date by its own task.
pub struct LatestValues {
    kept: Vec<Arc<Kept>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LatestValues {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LatestValues {
    /// Starts following every kind's subjects over `js` on the current runtime, validating
    /// as the landing does with `policy`.
    pub fn start(js: &jetstream::Context, policy: &ValidationPolicy, config: LatestConfig) -> Self {
        let kept: Vec<Arc<Kept>> = KINDS
            .iter()
            .map(|kind| {
                Arc::new(Kept {
                    kind: *kind,
                    config,
                    state: Mutex::new(State::default()),
                })
            })
            .collect();
        let tasks = kept
            .iter()
            .map(|k| tokio::spawn(follow(js.clone(), k.clone(), policy.clone())))
            .collect();
        Self { kept, tasks }
    }

    /// The kind whose table `name` is, and whether it is the `latest_` one.
    fn find(&self, name: &str) -> Option<(&Kept, bool)> {
        self.kept.iter().find_map(|k| {
            if name == latest_table(k.kind) {
                Some((k.as_ref(), true))
            } else if name == recent_table(k.kind) {
                Some((k.as_ref(), false))
            } else {
                None
            }
        })
    }
}

impl MemoryTables for LatestValues {
    fn names(&self) -> Vec<String> {
        self.kept
            .iter()
            .flat_map(|k| [latest_table(k.kind), recent_table(k.kind)])
            .collect()
    }

    fn rows(&self, table: &str) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let (kept, latest) = self.find(table)?;
        let schema = kept.kind.table_schema();
        let built = lock(&kept.state).table(kept.kind, latest);
        match built {
            Ok(batch) => Some((schema, vec![batch])),
            Err(e) => {
                tracing::warn!(table, error = %e, "a last-value table could not be encoded; it reads empty");
                Some((schema, Vec::new()))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Follows `kept`'s subjects for as long as the process runs, starting again after a failure.
async fn follow(js: jetstream::Context, kept: Arc<Kept>, policy: ValidationPolicy) {
    loop {
        let error = read(&js, &kept, &policy).await;
        tracing::warn!(table = kept.kind.table(), error = %error, retry_after = ?RETRY_AFTER, "a last-value table stopped following its stream; it keeps what it holds");
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// Reads `kept`'s subjects: first every message stored in the last `seed` (so each key's
/// newest by time and its `keep` newest are there when they arrived lately, whatever their
/// order), then each subject's last message and every message after, until an error.
async fn read(js: &jetstream::Context, kept: &Kept, policy: &ValidationPolicy) -> String {
    let seed = chrono::Duration::from_std(kept.config.seed).unwrap_or(chrono::Duration::zero());
    let since = time::OffsetDateTime::from_unix_timestamp((Utc::now() - seed).timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let seeded = consume(
        js,
        kept,
        policy,
        DeliverPolicy::ByStartTime { start_time: since },
        true,
    );
    if let Err(e) = seeded.await {
        return e;
    }
    match consume(js, kept, policy, DeliverPolicy::LastPerSubject, false).await {
        Ok(()) => "the consumer ended".into(),
        Err(e) => e,
    }
}

/// Keeps the messages of `kept`'s subjects from `start` on; with `caught_up`, only until the
/// last one stored when it began.
async fn consume(
    js: &jetstream::Context,
    kept: &Kept,
    policy: &ValidationPolicy,
    start: DeliverPolicy,
    caught_up: bool,
) -> Result<(), String> {
    let kind = kept.kind;
    let consumer = adit_bus::reader::ordered_in(js, kind.stream(), &kind.filter(None), start)
        .await
        .map_err(|e| e.to_string())?;
    if caught_up && consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("messages: {e}"))?
        .ready_chunks(CHUNK_MESSAGES);
    while let Some(got) = messages.next().await {
        let mut raw = Vec::with_capacity(got.len());
        let mut pending = u64::MAX;
        for message in got {
            let message = message.map_err(|e| format!("message: {e}"))?;
            let info = message.info().map_err(|e| format!("message info: {e}"))?;
            pending = info.pending;
            raw.push(RawMessage::new(info.stream_sequence, &message));
        }
        keep(kept, &RawBatch::from_messages(raw), policy);
        if caught_up && pending == 0 {
            return Ok(());
        }
    }
    Err("the consumer ended".into())
}

/// Decodes `raw` as the landing does and keeps what is among its keys' newest.
fn keep(kept: &Kept, raw: &RawBatch, policy: &ValidationPolicy) {
    let kind = kept.kind;
    let decoded = decode_batch(raw, &[kind], policy, Utc::now());
    let mut refused = 0u64;
    let mut state = lock(&kept.state);
    for (seq, event) in decoded.of(kind) {
        if state.insert(*seq, event, &kept.config) == Insert::Refused {
            refused += 1;
        }
    }
    drop(state);
    if refused > 0 {
        metrics::counter!("adit_sql_latest_refused_keys_total", "table" => kind.table())
            .increment(refused);
        tracing::warn!(
            table = kind.table(),
            refused,
            max_keys = kept.config.max_keys,
            "readings of new keys past query.latest.max_keys are not in the last-value tables"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::{EnergyReading, EnergySource};
    use arrow::array::AsArray;
    use arrow::datatypes::Float64Type;
    use proptest::prelude::*;

    fn reading(machine: u8, second: i64, power_w: f64) -> AnyEvent {
        AnyEvent::Energy(EnergyReading {
            site: "s1".into(),
            machine: format!("m{machine}"),
            ts: chrono::DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap(),
            power_w,
            energy_wh: None,
            source: EnergySource::Pdu,
        })
    }

    fn powers(batch: &RecordBatch) -> Vec<f64> {
        let column = batch.column_by_name("power_w").unwrap();
        column.as_primitive::<Float64Type>().values().to_vec()
    }

    proptest! {
        /// Whatever order messages arrive in, and however often one is read again, each key's
        /// kept rows are exactly the `keep` newest of its distinct messages by (time, sequence),
        /// and the latest table holds each key's newest — whichever tables statements asked
        /// for between the messages (each is built apart and kept until it changes).
        #[test]
        fn each_key_keeps_its_newest_rows_whatever_the_order(
            messages in prop::collection::vec((0u8..4, 0i64..20), 1..60),
            replays in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            asked in prop::collection::vec(0u8..4, 80),
            keep in 1usize..5,
        ) {
            let config = LatestConfig { keep, max_keys: 100, ..LatestConfig::default() };
            let mut state = State::default();
            let mut order: Vec<usize> = (0..messages.len()).collect();
            order.extend(replays.iter().map(|i| i.index(messages.len())));
            for (n, i) in order.into_iter().enumerate() {
                let (machine, second) = messages[i];
                state.insert(i as u64, &reading(machine, second, i as f64), &config);
                let ask = asked[n];
                if ask & 1 == 1 {
                    state.table(EventKind::Energy, true).unwrap();
                }
                if ask & 2 == 2 {
                    state.table(EventKind::Energy, false).unwrap();
                }
            }
            let latest = state.table(EventKind::Energy, true).unwrap();
            let recent = state.table(EventKind::Energy, false).unwrap();
            let mut want_latest = Vec::new();
            let mut want_recent = Vec::new();
            for machine in 0..4u8 {
                let mut mine: Vec<(i64, usize)> = messages
                    .iter()
                    .enumerate()
                    .filter(|(_, (m, _))| *m == machine)
                    .map(|(i, (_, s))| (*s, i))
                    .collect();
                mine.sort_unstable_by(|a, b| b.cmp(a));
                mine.truncate(keep);
                want_latest.extend(mine.first().map(|(_, i)| *i as f64));
                want_recent.extend(mine.iter().map(|(_, i)| *i as f64));
            }
            prop_assert_eq!(powers(&latest), want_latest);
            prop_assert_eq!(powers(&recent), want_recent);
        }
    }

    #[test]
    fn a_new_key_past_the_limit_is_refused_and_known_keys_still_change() {
        let config = LatestConfig {
            keep: 1,
            max_keys: 2,
            ..LatestConfig::default()
        };
        let mut state = State::default();
        assert_eq!(state.insert(1, &reading(1, 0, 1.0), &config), Insert::Kept);
        assert_eq!(state.insert(2, &reading(2, 0, 2.0), &config), Insert::Kept);
        assert_eq!(
            state.insert(3, &reading(3, 0, 3.0), &config),
            Insert::Refused
        );
        assert_eq!(state.insert(4, &reading(1, 1, 4.0), &config), Insert::Kept);
        assert_eq!(state.insert(5, &reading(1, 0, 5.0), &config), Insert::Old);
        let latest = state.table(EventKind::Energy, true).unwrap();
        assert_eq!(powers(&latest), vec![4.0, 2.0]);
    }
}
