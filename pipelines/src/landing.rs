//! Landing pipelines: every valid event of a stream into its kind's table, exactly once;
//! everything else to the dead-letter stream with its reason (the runtime does that part).
//! Stateless: a step turns each kind's decoded events into that kind's table rows.

use adit_schemas::{EventKind, Land, names};

use crate::error::Result;
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, StepInput, StepOutput, StreamInput,
};

/// Which subjects a landing pipeline reads and which kinds it lands.
#[derive(Debug, Clone, PartialEq)]
pub struct Landing {
    /// What it reads; also its name (the pipeline's and its input's).
    input: StreamInput,
}

impl Landing {
    /// Every kind of `stream` (from the kind table), read whole and partitionable by site or
    /// pool; what is not one of them is dead-lettered.
    fn stream(name: &str, stream: &str) -> Self {
        Self {
            input: StreamInput::whole_stream(name, stream).filing_dead_letters(),
        }
    }

    /// One kind landed by itself ([`Land::Own`]): only its subjects, on a stream others
    /// publish to as well (RESULTS carries every pipeline's results, CONTROL the commands),
    /// partitionable by its subject's first token. Named after its table.
    fn own(kind: EventKind) -> Self {
        Self {
            input: StreamInput::of(kind.table(), kind).filing_dead_letters(),
        }
    }

    /// Readings from machines, meters, sensors and workers, partitionable by site.
    pub fn telemetry() -> Self {
        Self::stream("telemetry", names::STREAM_TELEMETRY)
    }

    /// Grid signals, partitionable by site.
    pub fn grid() -> Self {
        Self::stream("grid", names::STREAM_GRID)
    }

    /// Shares and blocks, partitionable by pool.
    pub fn shares() -> Self {
        Self::stream("shares", names::STREAM_MINING)
    }

    /// Every landing, in the order the registry runs them: the three streams landed whole,
    /// then each kind the table says lands by itself (alerts, notifications, audit).
    pub fn all() -> Vec<Self> {
        let mut all = vec![Self::telemetry(), Self::grid(), Self::shares()];
        all.extend(
            EventKind::ALL
                .iter()
                .filter(|kind| kind.land() == Land::Own)
                .map(|&kind| Self::own(kind)),
        );
        all
    }

    /// The kinds it lands.
    fn kinds(&self) -> &[EventKind] {
        &self.input.kinds
    }
}

impl Pipeline for Landing {
    type State = ();

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: self.input.name.clone(),
            inputs: vec![self.input.clone()],
            outputs: self
                .kinds()
                .iter()
                .map(|kind| OutputTable::dated(kind.table(), kind.table_schema()))
                .collect(),
            timers: Vec::new(),
            snapshot_every: std::time::Duration::ZERO,
        }
    }

    async fn step(&self, _state: &mut (), input: StepInput) -> Result<StepOutput> {
        let mut out = StepOutput::default();
        for decoded in &input.inputs {
            for kind in self.kinds() {
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
        let decoded = decode_batch(&raw, landing.kinds(), &ValidationPolicy::default(), now);
        let out = landing
            .step(&mut (), StepInput::batches(now, vec![decoded]))
            .await
            .unwrap();
        assert_eq!(out.tables.len(), 1);
        assert_eq!(out.tables[0].0, names::TABLE_ENERGY_READINGS);
        assert_eq!(out.tables[0].1.num_rows(), 1);
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
        let own = |kind| {
            Landing::all()
                .into_iter()
                .find(|l| l.kinds() == [kind])
                .unwrap()
        };
        for (landing, ours) in [
            (own(EventKind::Alert), "results.alert.critical"),
            (own(EventKind::Notification), "results.notification.ops"),
            (own(EventKind::Audit), "control.audit.admin"),
        ] {
            let input = &landing.spec().inputs[0];
            let filter = input.filter(None).unwrap();
            assert_eq!(EventKind::from_subject(ours), Some(landing.kinds()[0]));
            assert!(
                names::filter_matches(&filter, ours),
                "{}: {filter} misses {ours}",
                landing.input.name
            );
            for other in others {
                assert!(
                    !names::filter_matches(&filter, other),
                    "{}: {filter} reads {other}",
                    landing.input.name
                );
            }
        }
    }
}
