//! Landing pipelines: every valid event of a stream into its kind's table, exactly once;
//! everything else to the dead-letter stream with its reason (the runtime does that part).
//! Stateless: a step turns each kind's decoded events into that kind's table rows.

use adit_schemas::arrow_rows::DATE_COLUMN;
use adit_schemas::{EventKind, names};

use crate::error::Result;
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, StepInput, StepOutput, StreamInput,
};

/// Which stream a landing pipeline reads and which kinds it lands.
#[derive(Debug, Clone, PartialEq)]
pub struct Landing {
    /// Pipeline name.
    name: String,
    /// Stream to read.
    stream: String,
    /// Subject filter with `{part}` where a partition key (site or pool) goes.
    subject: String,
    /// Subject filter when unpartitioned; empty: the whole stream (whose other kinds are
    /// dead-lettered), only for a stream that carries nothing but the kinds landed.
    whole: String,
    /// Event kinds expected on it; anything else is dead-lettered.
    kinds: Vec<EventKind>,
}

impl Landing {
    /// Readings from machines, meters, sensors and workers, partitionable by site.
    pub fn telemetry() -> Self {
        Self {
            name: "telemetry".into(),
            stream: names::STREAM_TELEMETRY.into(),
            subject: "telemetry.*.{part}.>".into(),
            whole: String::new(),
            kinds: EventKind::on_stream(names::STREAM_TELEMETRY),
        }
    }

    /// Grid signals (every kind of GRID, from the kind table), partitionable by site.
    pub fn grid() -> Self {
        Self {
            name: "grid".into(),
            stream: names::STREAM_GRID.into(),
            subject: "grid.*.{part}".into(),
            whole: String::new(),
            kinds: EventKind::on_stream(names::STREAM_GRID),
        }
    }

    /// Alerts' changes of state, from RESULTS, partitionable by severity.
    pub fn alerts() -> Self {
        Self {
            name: "alerts".into(),
            stream: names::STREAM_RESULTS.into(),
            subject: "results.alert.{part}".into(),
            // RESULTS also carries every pipeline's results (payouts, energy, decisions…):
            // read only alerts, or each of those would be dead-lettered here.
            whole: "results.alert.>".into(),
            kinds: vec![EventKind::Alert],
        }
    }

    /// Notification attempts, from RESULTS, partitionable by receiver.
    pub fn notifications() -> Self {
        Self {
            name: "notifications".into(),
            stream: names::STREAM_RESULTS.into(),
            subject: "results.notification.{part}".into(),
            whole: "results.notification.>".into(),
            kinds: vec![EventKind::Notification],
        }
    }

    /// The API's audit trail, from CONTROL, partitionable by role.
    pub fn audit() -> Self {
        Self {
            name: "audit".into(),
            stream: names::STREAM_CONTROL.into(),
            subject: "control.audit.{part}".into(),
            // CONTROL also carries commands, outcomes, overrides and notes: read only these.
            whole: "control.audit.>".into(),
            kinds: vec![EventKind::Audit],
        }
    }

    /// Shares and blocks (every kind of MINING, from the kind table), partitionable by pool.
    pub fn shares() -> Self {
        Self {
            name: "shares".into(),
            stream: names::STREAM_MINING.into(),
            subject: "mining.*.{part}".into(),
            whole: String::new(),
            kinds: EventKind::on_stream(names::STREAM_MINING),
        }
    }
}

impl Landing {
    /// Every landing, in the order the registry runs them.
    pub fn all() -> Vec<Self> {
        vec![
            Self::telemetry(),
            Self::grid(),
            Self::shares(),
            Self::alerts(),
            Self::notifications(),
            Self::audit(),
        ]
    }
}

impl Pipeline for Landing {
    type State = ();

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: self.name.clone(),
            inputs: vec![StreamInput {
                name: self.name.clone(),
                stream: self.stream.clone(),
                subject: self.whole.clone(),
                partitioned: Some(self.subject.clone()),
                kinds: self.kinds.clone(),
                // The landing reads every subject of its stream that is its own.
                dead_letters: true,
            }],
            outputs: self
                .kinds
                .iter()
                .map(|kind| OutputTable {
                    name: kind.table().to_string(),
                    schema: kind.table_schema(),
                    partitions: vec![DATE_COLUMN.to_string()],
                })
                .collect(),
            timers: Vec::new(),
            snapshot_every: std::time::Duration::ZERO,
        }
    }

    async fn step(&self, _state: &mut (), input: StepInput) -> Result<StepOutput> {
        let mut out = StepOutput::default();
        for decoded in &input.inputs {
            for kind in &self.kinds {
                let rows = decoded.of(*kind);
                if !rows.is_empty() {
                    out.rows(kind.table(), kind.batch(rows)?);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_bus::{RawBatch, RawMessage, decode_batch};
    use adit_schemas::{AnyEvent, EnergyReading, EnergySource, ValidationPolicy};
    use chrono::Utc;

    #[tokio::test]
    async fn a_step_lands_each_kind_in_its_table() {
        let now = Utc::now();
        let event = AnyEvent::Energy(EnergyReading {
            site: "s1".into(),
            machine: "m1".into(),
            ts: now,
            power_w: 10.0,
            energy_wh: None,
            source: EnergySource::Meter,
        });
        let (subject, _, payload) = event.to_message();
        let raw = RawBatch::from_messages(vec![RawMessage {
            seq: 7,
            subject: subject.into(),
            schema_version: None,
            payload: payload.into(),
        }]);
        let landing = Landing::telemetry();
        let decoded = decode_batch(&raw, &landing.kinds, &ValidationPolicy::default(), now);
        let out = landing
            .step(
                &mut (),
                StepInput {
                    now,
                    ticks: vec![],
                    inputs: vec![decoded],
                },
            )
            .await
            .unwrap();
        assert_eq!(out.tables.len(), 1);
        assert_eq!(out.tables[0].0, names::TABLE_ENERGY_READINGS);
        assert_eq!(out.tables[0].1.num_rows(), 1);
    }

    /// Whether NATS subject `subject` matches `filter` (`*` one token, `>` the rest; empty:
    /// everything).
    fn matches(filter: &str, subject: &str) -> bool {
        if filter.is_empty() {
            return true;
        }
        let (mut f, mut s) = (filter.split('.'), subject.split('.'));
        loop {
            match (f.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some(a), Some(b)) if a == "*" || a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    /// A landing on a stream other publishers share reads only its kinds' subjects
    /// unpartitioned: the alerts landing used to read all of RESULTS and dead-letter every
    /// payout, energy result and decision there.
    #[test]
    fn a_landing_on_a_shared_stream_reads_only_its_kinds() {
        let others = [
            "results.payout.p1",
            "results.energy.s1",
            "results.decision.s1",
            "results.payment.p1",
            "control.command.s1",
            "control.override.s1",
        ];
        for (landing, ours) in [
            (Landing::alerts(), "results.alert.critical"),
            (Landing::notifications(), "results.notification.ops"),
            (Landing::audit(), "control.audit.admin"),
        ] {
            let input = &landing.spec().inputs[0];
            let filter = input.filter(None).unwrap();
            assert_eq!(EventKind::from_subject(ours), Some(landing.kinds[0]));
            assert!(
                matches(&filter, ours),
                "{}: {filter} misses {ours}",
                landing.name
            );
            for other in others {
                assert!(
                    !matches(&filter, other),
                    "{}: {filter} reads {other}",
                    landing.name
                );
            }
        }
    }
}
