//! The `anomalies` pipeline: the farm's series run through [`crate::farm::detector`] (robust z-score,
//! EWMA drift, peers of the same model at the same site, stuck sensors), each change written
//! to `anomalies` and published on `results.anomaly.<site>`.
//!
//! Series: a machine's power (meter and PDU readings), its hashrate (its own status reports
//! while it says it is mining: a machine asleep on purpose is not an anomaly), and each
//! temperature sensor. Peers come from the registry (read from its bucket's stream, like the
//! violations pipeline): machines of the same model at the same site; a site's temperature
//! sensors. A machine the registry does not know is still watched, without peers.

use adit_schemas::names::{self, TABLE_ANOMALIES};
use adit_schemas::registry::RegistryView;
use adit_schemas::results::AnomalyRow;
use adit_schemas::time::from_micros;
use adit_schemas::{AnyEvent, EnergySource, EventKind, MinerState, SensorKind, to_batch};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::farm::detector::{
    AnomalyChange, AnomalyEvent, DetectConfig, Detector, Sample, SeriesKey, SeriesKind,
};
use crate::inputs::{readings_input, registry_input};
use crate::runtime::cpu::in_place;
use crate::runtime::pipeline::{
    OutputTable, Pipeline, PipelineSpec, ResultMessage, StepInput, StepOutput,
};

/// What survives a restart: the registry (for peers) and the detectors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomaliesState {
    registry: RegistryView,
    detector: Detector,
}

/// The anomalies pipeline.
#[derive(Debug, Clone)]
pub struct Anomalies {
    config: DetectConfig,
}

impl Anomalies {
    /// With `config`.
    pub fn new(config: DetectConfig) -> Self {
        Self { config }
    }
}

/// The sample an event gives, if any.
fn sample_of(view: &RegistryView, event: &AnyEvent) -> Option<Sample> {
    let machine_peers = |site: &str, machine: &str| {
        view.machine(site, machine)
            .map(|m| format!("{site}/{}", m.model))
    };
    // A machine's power series is its best source: firmware figures only when no meter or
    // PDU is registered for it (two devices measuring one machine differ a little).
    let metered = |site: &str, machine: &str| {
        view.meters()
            .any(|m| m.site == site && m.machine.as_deref() == Some(machine))
    };
    let (site, kind, id, peer_group, ts, value) = match event {
        AnyEvent::Energy(e)
            if e.source == EnergySource::Firmware && metered(&e.site, &e.machine) =>
        {
            return None;
        }
        AnyEvent::Energy(e) => (
            &e.site,
            SeriesKind::MachinePower,
            &e.machine,
            machine_peers(&e.site, &e.machine),
            e.ts,
            e.power_w,
        ),
        AnyEvent::Miner(m) if m.state == MinerState::Mining => (
            &m.site,
            SeriesKind::MachineHashrate,
            &m.machine,
            machine_peers(&m.site, &m.machine),
            m.ts,
            m.hashrate_hs,
        ),
        AnyEvent::Sensor(s) if s.kind == SensorKind::Temperature => (
            &s.site,
            SeriesKind::Temperature,
            &s.sensor,
            Some(format!("{}/temperature", s.site)),
            s.ts,
            s.value,
        ),
        _ => return None,
    };
    Some(Sample {
        key: SeriesKey {
            site: site.clone(),
            kind,
            id: id.clone(),
        },
        peer_group,
        ts_us: ts.timestamp_micros(),
        value,
    })
}

/// The table row of one detector event.
pub fn row_of(e: &AnomalyEvent) -> AnomalyRow {
    let mut row = AnomalyRow {
        event_id: e.id.clone(),
        id: e.anomaly_id.clone(),
        event: String::new(),
        site: e.series.site.clone(),
        series: e.series.kind.as_str().into(),
        subject: e.series.id.clone(),
        detector: e.detector.as_str().into(),
        ts: from_micros(e.ts_us),
        started: None,
        value: None,
        expected: None,
        score: None,
        peak_score: None,
        duration_s: None,
        reason: None,
        date: from_micros(e.ts_us).date_naive(),
    };
    match &e.change {
        AnomalyChange::Opened {
            started_us,
            value,
            expected,
            score,
        } => {
            row.event = "opened".into();
            row.started = Some(from_micros(*started_us));
            (row.value, row.expected, row.score) = (Some(*value), Some(*expected), Some(*score));
            row.peak_score = Some(*score);
        }
        AnomalyChange::Updated {
            value,
            expected,
            score,
            peak_score,
        } => {
            row.event = "updated".into();
            (row.value, row.expected, row.score) = (Some(*value), Some(*expected), Some(*score));
            row.peak_score = Some(*peak_score);
        }
        AnomalyChange::Resolved {
            started_us,
            duration_us,
            peak_score,
            reason,
            ..
        } => {
            row.event = "resolved".into();
            row.started = Some(from_micros(*started_us));
            row.peak_score = Some(*peak_score);
            row.duration_s = Some(*duration_us as f64 / 1e6);
            row.reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
        }
    }
    row
}

impl Pipeline for Anomalies {
    type State = AnomaliesState;

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            name: "anomalies".into(),
            inputs: vec![registry_input(), readings_input()],
            outputs: vec![OutputTable::dated(TABLE_ANOMALIES, AnomalyRow::schema())],
            timers: Vec::new(),
            snapshot_every: std::time::Duration::from_secs(30),
        }
    }

    async fn step(&self, state: &mut AnomaliesState, input: StepInput) -> Result<StepOutput> {
        let mut samples = Vec::new();
        for entry in input.registry() {
            state.registry.apply(entry);
        }
        for decoded in &input.inputs {
            for kind in [EventKind::Energy, EventKind::Miner, EventKind::Sensor] {
                for (seq, event) in decoded.of(kind) {
                    if let Some(sample) = sample_of(&state.registry, event) {
                        samples.push((*seq, sample));
                    }
                }
            }
        }
        samples.sort_by_key(|(seq, s)| (s.ts_us, *seq));
        let samples: Vec<Sample> = samples.into_iter().map(|(_, s)| s).collect();
        // Each reading is compared with its site's peers: seconds for a large farm's batch.
        let events = in_place(|| state.detector.observe(&self.config, &samples));
        let mut out = StepOutput::default();
        if events.is_empty() {
            return Ok(out);
        }
        let rows: Vec<AnomalyRow> = events.iter().map(row_of).collect();
        for row in &rows {
            out.results.push(ResultMessage::json(
                names::anomaly_result_subject(&row.site),
                row.event_id.clone(),
                row,
            )?);
        }
        out.rows(
            TABLE_ANOMALIES,
            to_batch(TABLE_ANOMALIES, AnomalyRow::schema(), &rows)?,
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_bus::DecodedBatch;
    use adit_schemas::EnergyReading;
    use std::collections::BTreeMap;

    fn reading(machine: &str, t: i64, w: f64) -> (u64, AnyEvent) {
        (
            t as u64,
            AnyEvent::Energy(EnergyReading {
                site: "s1".into(),
                machine: machine.into(),
                ts: from_micros(1_800_000_000_000_000 + t * 1_000_000),
                power_w: w,
                energy_wh: None,
                source: EnergySource::Meter,
            }),
        )
    }

    #[tokio::test]
    async fn a_machine_whose_power_jumps_opens_an_anomaly_row() {
        let p = Anomalies::new(DetectConfig::default());
        let mut state = AnomaliesState::default();
        let mut rows = Vec::new();
        // Four machines at 3 kW with a little noise, one jumping to 4.5 kW after 20 minutes.
        for minute in 0..40i64 {
            let mut events = Vec::new();
            for t in (minute * 60..minute * 60 + 60).step_by(10) {
                for (i, m) in ["m1", "m2", "m3", "m4"].iter().enumerate() {
                    let noise = ((t + i as i64 * 7) % 13) as f64 * 5.0;
                    let jump = *m == "m4" && t >= 1200;
                    events.push(reading(m, t, if jump { 4500.0 } else { 3000.0 } + noise));
                }
            }
            let decoded = DecodedBatch {
                rows: BTreeMap::from([(EventKind::Energy, events)]),
                ..Default::default()
            };
            let out = p
                .step(
                    &mut state,
                    StepInput::batches(
                        from_micros(1_800_000_000_000_000 + minute * 60_000_000),
                        vec![DecodedBatch::default(), decoded],
                    ),
                )
                .await
                .unwrap();
            for r in &out.results {
                rows.push(serde_json::from_slice::<AnomalyRow>(&r.payload).unwrap());
            }
            assert_eq!(out.results.len(), out.row_count());
        }
        let opened: Vec<_> = rows.iter().filter(|r| r.event == "opened").collect();
        assert!(!opened.is_empty(), "{rows:#?}");
        assert!(opened.iter().all(|r| r.subject == "m4"), "{opened:#?}");
        assert!(
            opened
                .iter()
                .all(|r| r.started.unwrap() >= from_micros(1_800_000_000_000_000 + 1_200_000_000))
        );
    }
}
