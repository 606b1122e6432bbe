//! Turning a raw micro-batch into typed rows per event kind, and dead-lettering the rest.

use std::collections::BTreeMap;

use adit_schemas::{AnyEvent, EventKind, SCHEMA_VERSION, ValidationPolicy, names};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::consumer::RawBatch;
use crate::error::Result;
use crate::publish::{Outgoing, Publisher};

/// A message that could not be accepted, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Its stream sequence.
    pub seq: u64,
    /// The subject it arrived on.
    pub subject: String,
    /// Its body, unchanged.
    pub payload: Bytes,
    /// Why it was refused.
    pub reason: String,
}

/// A batch after decoding: rows per kind, and what was refused.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    /// Lowest stream sequence of the batch.
    pub lo: u64,
    /// Highest stream sequence of the batch.
    pub hi: u64,
    /// Accepted events per kind, with their sequences.
    pub rows: BTreeMap<EventKind, Vec<(u64, AnyEvent)>>,
    /// Refused messages.
    pub rejected: Vec<Rejected>,
}

impl DecodedBatch {
    /// Accepted rows of `kind`.
    pub fn of(&self, kind: EventKind) -> &[(u64, AnyEvent)] {
        self.rows.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Sends every refused message to `dlq.<stream>` with its reason, waiting until stored.
    pub async fn dead_letter(&self, publisher: &Publisher, stream: &str) -> Result<()> {
        let msgs = self
            .rejected
            .iter()
            .map(|r| {
                Outgoing::dead_letter(
                    stream,
                    &r.seq.to_string(),
                    &r.reason,
                    vec![
                        (names::HEADER_DLQ_SUBJECT, r.subject.clone()),
                        (names::HEADER_DLQ_SEQUENCE, r.seq.to_string()),
                    ],
                    r.payload.clone(),
                )
            })
            .collect();
        publisher.publish_all(msgs).await.map(|_| ())
    }
}

/// A batch of at least this many messages is decoded on several threads: the landing of a
/// backlog waits on its last batch's decoding (tens of milliseconds for 50 000 readings on one
/// core), while a steady trickle's small batches stay on the caller's thread.
const PARALLEL_FROM: usize = 8_192;

/// Decodes and validates every message of `raw`, keeping only `kinds` (others are refused as
/// unexpected). A big batch is cut into contiguous runs decoded on threads of their own and
/// put back together in stream order, so the result is the same as one thread's.
pub fn decode_batch(
    raw: &RawBatch,
    kinds: &[EventKind],
    policy: &ValidationPolicy,
    now: DateTime<Utc>,
) -> DecodedBatch {
    let mut out = DecodedBatch {
        lo: raw.lo,
        hi: raw.hi,
        ..Default::default()
    };
    let messages = raw.messages.as_slice();
    let threads = if messages.len() >= PARALLEL_FROM {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(messages.len() / (PARALLEL_FROM / 2))
    } else {
        1
    };
    if threads <= 1 {
        decode_into(&mut out, messages, messages.len(), kinds, policy, now);
        return out;
    }
    let mut runs = messages.chunks(messages.len().div_ceil(threads));
    let first = runs.next().unwrap_or_default();
    let rest: Vec<DecodedBatch> = std::thread::scope(|scope| {
        let spawned: Vec<_> = runs
            .map(|run| {
                scope.spawn(move || {
                    let mut part = DecodedBatch::default();
                    decode_into(&mut part, run, run.len(), kinds, policy, now);
                    part
                })
            })
            .collect();
        // The first run's rows take room for the whole batch: the other runs' are appended
        // to them without growing (and so copying) them again.
        decode_into(&mut out, first, messages.len(), kinds, policy, now);
        spawned
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for part in rest {
        for (kind, rows) in part.rows {
            out.rows.entry(kind).or_default().extend(rows);
        }
        out.rejected.extend(part.rejected);
    }
    out
}

/// Decodes `messages` (one contiguous run of a batch, in stream order) into `out`, each
/// kind's rows made with room for `room` messages (from the run's first on).
fn decode_into(
    out: &mut DecodedBatch,
    messages: &[crate::consumer::RawMessage],
    room: usize,
    kinds: &[EventKind],
    policy: &ValidationPolicy,
    now: DateTime<Utc>,
) {
    for (i, msg) in messages.iter().enumerate() {
        let reject = |reason: String| Rejected {
            seq: msg.seq,
            subject: msg.subject.to_string(),
            payload: msg.payload.clone(),
            reason,
        };
        if let Some(v) = &msg.schema_version
            && !v.readable_up_to(SCHEMA_VERSION)
        {
            out.rejected
                .push(reject(format!("unsupported schema version {v}")));
            continue;
        }
        let kind = match EventKind::from_subject(&msg.subject) {
            Some(kind) if kinds.contains(&kind) => kind,
            _ => {
                out.rejected
                    .push(reject(format!("unexpected subject {}", msg.subject)));
                continue;
            }
        };
        match kind.decode(&msg.payload, policy, now) {
            Ok(event) if !event.is_on(&msg.subject) => out.rejected.push(reject(format!(
                "subject {} does not match the body, which belongs on {}",
                msg.subject,
                event.subject()
            ))),
            // Room for every message left, once per kind: an event is hundreds of bytes, and
            // growing by doubling copied each one again (a tenth of decoding's time).
            Ok(event) => out
                .rows
                .entry(kind)
                .or_insert_with(|| Vec::with_capacity(room - i))
                .push((msg.seq, event)),
            Err(invalid) => out.rejected.push(reject(invalid.reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::{RawMessage, SchemaVersion};

    fn msg(seq: u64, subject: &str, body: &str) -> RawMessage {
        RawMessage {
            seq,
            subject: subject.into(),
            schema_version: Some(SchemaVersion::Number(1)),
            payload: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn good_rows_pass_and_bad_ones_carry_reasons() {
        let now = Utc::now();
        let ts = now.to_rfc3339();
        let good = format!(
            r#"{{"site":"s1","machine":"m1","ts":"{ts}","power_w":100.0,"source":"meter"}}"#
        );
        let raw = RawBatch::from_messages(vec![
            msg(1, "telemetry.energy.s1.m1", &good),
            msg(2, "telemetry.energy.s1.m1", "{oops"),
            msg(3, "telemetry.energy.s9.m1", &good),
            msg(4, "telemetry.nope.s1.m1", &good),
            msg(5, "telemetry.energy.s1.m1", &good.replace("100.0", "NaN")),
        ]);
        let out = decode_batch(
            &raw,
            &[EventKind::Energy],
            &ValidationPolicy::default(),
            now,
        );
        assert_eq!((out.lo, out.hi), (1, 5));
        assert_eq!(out.of(EventKind::Energy).len(), 1);
        let reasons: Vec<_> = out
            .rejected
            .iter()
            .map(|r| (r.seq, r.reason.clone()))
            .collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].1.contains("invalid energy JSON"));
        assert!(reasons[1].1.contains("does not match"));
        assert!(reasons[2].1.contains("unexpected subject"));
        assert!(reasons[3].1.contains("invalid energy JSON"));
    }

    #[test]
    fn newer_schema_versions_are_refused() {
        let mut m = msg(1, "telemetry.energy.s1.m1", "{}");
        m.schema_version = Some(SchemaVersion::Number(99));
        let out = decode_batch(
            &RawBatch::from_messages(vec![m]),
            &[EventKind::Energy],
            &ValidationPolicy::default(),
            Utc::now(),
        );
        assert!(out.rejected[0].reason.contains("schema version"));
    }

    #[test]
    fn a_big_batch_decoded_on_threads_matches_one_thread() {
        let now = Utc::now();
        let ts = now.to_rfc3339();
        let messages: Vec<RawMessage> = (1..=20_000u64)
            .map(|seq| match seq % 997 {
                0 => msg(seq, "telemetry.energy.s1.m1", "{oops"),
                _ => msg(
                    seq,
                    &format!("telemetry.energy.s1.m{seq}"),
                    &format!(
                        r#"{{"site":"s1","machine":"m{seq}","ts":"{ts}","power_w":{seq}.0,"source":"meter"}}"#
                    ),
                ),
            })
            .collect();
        let policy = ValidationPolicy::default();
        let kinds = [EventKind::Energy];
        let whole = decode_batch(
            &RawBatch::from_messages(messages.clone()),
            &kinds,
            &policy,
            now,
        );
        // Runs under the threshold are decoded on the caller's thread alone.
        let (mut rows, mut rejected) = (Vec::new(), Vec::new());
        for run in messages.chunks(1_000) {
            let part = decode_batch(&RawBatch::from_messages(run.to_vec()), &kinds, &policy, now);
            rows.extend(part.of(EventKind::Energy).iter().cloned());
            rejected.extend(part.rejected);
        }
        assert_eq!((whole.lo, whole.hi), (1, 20_000));
        assert_eq!(whole.of(EventKind::Energy).len(), 20_000 - 20);
        assert_eq!(
            whole.of(EventKind::Energy),
            rows.as_slice(),
            "the same rows in stream order"
        );
        assert_eq!(whole.rejected.len(), 20);
        assert_eq!(whole.rejected, rejected);
    }
}
