//! The streams several pipelines read, declared once: the registry bucket, the grid signals
//! and the farm's readings, each with its subjects, its partition filter and the kinds it
//! carries (from the kind table, so a new kind on the stream reaches every reader).

use adit_schemas::{EventKind, names};

use crate::runtime::pipeline::StreamInput;

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
    StreamInput {
        name: "grid".into(),
        stream: names::STREAM_GRID.into(),
        subject: "grid.signal.>".into(),
        partitioned: Some("grid.signal.{part}".into()),
        kinds: vec![EventKind::Grid],
        dead_letters: false,
    }
}

/// The farm's readings as an input: energy, sensors and miner status (worker hashrate samples
/// share the subject space and are read and ignored).
pub fn readings_input() -> StreamInput {
    StreamInput {
        name: "telemetry".into(),
        stream: names::STREAM_TELEMETRY.into(),
        subject: "telemetry.>".into(),
        partitioned: Some("telemetry.*.{part}.>".into()),
        // Every kind on the stream (the cluster's shares and upstream changes too, which
        // nothing here uses): the landing files what is refused.
        kinds: EventKind::on_stream(names::STREAM_TELEMETRY),
        dead_letters: false,
    }
}
