//! The streams several pipelines read, declared once: the registry bucket, the grid signals
//! and the farm's readings, each with its subjects, its partition filter and the kinds it
//! carries (from the kind table, so a new kind on the stream reaches every reader); and what a
//! step was given of them, gathered once ([`readings_in`], [`signals_in`]; the registry's
//! changes are [`StepInput::registry`]).

use adit_schemas::{AnyEvent, EventKind, GridSignal, names};

use crate::farm::readings::{Reading, reading_of};
use crate::runtime::pipeline::{StepInput, StreamInput};

/// The farm's readings in a step (energy, sensors, miner status): event time (µs), stream
/// sequence, reading.
pub fn readings_in(input: &StepInput) -> Vec<(i64, u64, Reading)> {
    [EventKind::Energy, EventKind::Sensor, EventKind::Miner]
        .into_iter()
        .flat_map(|kind| input.of(kind))
        .filter_map(|(seq, event)| reading_of(event).map(|(ts, reading)| (ts, seq, reading)))
        .collect()
}

/// The grid signals in a step: event time (µs), stream sequence, signal.
pub fn signals_in(input: &StepInput) -> Vec<(i64, u64, GridSignal)> {
    input
        .of(EventKind::Grid)
        .filter_map(|(seq, event)| match event {
            AnyEvent::Grid(g) => Some((g.ts.timestamp_micros(), seq, g.clone())),
            _ => None,
        })
        .collect()
}

/// The registry bucket as an input of a farm pipeline: every partition reads all of it.
pub fn registry_input() -> StreamInput {
    StreamInput {
        name: "registry".into(),
        stream: names::STREAM_REGISTRY.into(),
        subject: format!("$KV.{}.>", names::KV_REGISTRY),
        partitioned: Some(format!("$KV.{}.>", names::KV_REGISTRY)),
        kinds: vec![EventKind::Registry],
        // Filed by `registry_log`, which reads the bucket's changes too.
        dead_letters: false,
    }
}

/// The grid signals as an input.
pub fn grid_input() -> StreamInput {
    StreamInput::of("grid", EventKind::Grid)
}

/// The farm's readings as an input: energy, sensors and miner status (worker hashrate samples
/// share the subject space and are read and ignored).
pub fn readings_input() -> StreamInput {
    // Every kind on the stream (the cluster's shares and upstream changes too, which nothing
    // here uses): the landing files what is refused.
    StreamInput::whole_stream("telemetry", names::STREAM_TELEMETRY)
}
