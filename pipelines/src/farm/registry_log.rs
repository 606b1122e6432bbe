//! The `registry` pipeline: every change of the registry bucket into `registry_changes`,
//! with who made it, when, and the record before and after, exactly once.
//!
//! It reads the bucket's own stream (the bucket keeps the last values of every key, each a
//! [`RegistryEntry`] naming its author), so a change is recorded if and only if it happened.
//! Its state is the registry itself (the value each key holds), to know what a change replaced.
//! `seq` is the change's bucket revision: `If-Match` in the API uses the same number.

use adit_schemas::names::TABLE_REGISTRY_CHANGES;
use adit_schemas::registry::{RegistryChange, RegistryView};
use adit_schemas::{AnyEvent, EventKind, stamped_batch};

use crate::error::Result;
use crate::inputs::registry_input;
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, StepInput, StepOutput, StreamInput,
};

/// The registry change log.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryLog;

impl Pipeline for RegistryLog {
    type State = RegistryView;

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: "registry".into(),
            inputs: vec![StreamInput {
                dead_letters: true,
                ..registry_input()
            }],
            outputs: vec![OutputTable::dated(
                TABLE_REGISTRY_CHANGES,
                EventKind::Registry.table_schema(),
            )],
            timers: Vec::new(),
            snapshot_every: std::time::Duration::from_secs(10),
        }
    }

    async fn step(&self, state: &mut RegistryView, input: StepInput) -> Result<StepOutput> {
        let mut changes: Vec<(u64, RegistryChange)> = Vec::new();
        for decoded in &input.inputs {
            for (seq, event) in decoded.of(EventKind::Registry) {
                if let AnyEvent::Registry(entry) = event {
                    let before = state.apply(entry);
                    changes.push((*seq, entry.change(before.as_ref())));
                }
            }
        }
        let mut out = StepOutput::default();
        if !changes.is_empty() {
            let rows: Vec<(u64, &RegistryChange)> = changes.iter().map(|(s, c)| (*s, c)).collect();
            out.rows(
                TABLE_REGISTRY_CHANGES,
                stamped_batch("registry", EventKind::Registry.table_schema(), &rows, |c| {
                    c.ts
                })?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_bus::{RawBatch, RawMessage, decode_batch};
    use adit_schemas::ValidationPolicy;
    use adit_schemas::registry::{ChangeOp, Record, RegistryEntry, Site};
    use arrow::array::{Array, AsArray};
    use chrono::Utc;

    fn message(seq: u64, entry: &RegistryEntry) -> RawMessage {
        RawMessage {
            seq,
            subject: RegistryEntry::subject_of(&entry.key).into(),
            schema_version: None,
            payload: serde_json::to_vec(entry).unwrap().into(),
        }
    }

    #[tokio::test]
    async fn changes_carry_the_value_they_replaced() {
        let now = Utc::now();
        let put = |kw| RegistryEntry {
            key: "site.s1".into(),
            op: ChangeOp::Put,
            by: "ops".into(),
            at: now,
            record: Some(Record::Site(Site::new("s1", kw))),
        };
        let delete = RegistryEntry {
            op: ChangeOp::Delete,
            record: None,
            ..put(0.0)
        };
        let raw = RawBatch::from_messages(vec![
            message(1, &put(100.0)),
            message(2, &put(80.0)),
            message(3, &delete),
        ]);
        let decoded = decode_batch(
            &raw,
            &[EventKind::Registry],
            &ValidationPolicy::default(),
            now,
        );
        assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
        let mut state = RegistryView::default();
        let out = RegistryLog
            .step(&mut state, StepInput::batches(now, vec![decoded]))
            .await
            .unwrap();
        let batch = &out.tables[0].1;
        assert_eq!(batch.num_rows(), 3);
        let before = batch.column_by_name("before").unwrap().as_string::<i32>();
        let after = batch.column_by_name("after").unwrap().as_string::<i32>();
        assert!(before.is_null(0));
        assert!(before.value(1).contains("100"));
        assert!(after.value(1).contains("80"));
        assert!(before.value(2).contains("80"));
        assert!(after.is_null(2));
        assert_eq!(
            batch
                .column_by_name("op")
                .unwrap()
                .as_string::<i32>()
                .value(2),
            "delete"
        );
        assert!(state.records.is_empty());
    }
}
