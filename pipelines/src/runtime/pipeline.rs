//! The one shape every pipeline has: what it reads, what it writes, its state, and a step.
//!
//! A pipeline author writes a [`Pipeline`]: a [`PipelineSpec`] (inputs, output tables, timers,
//! how often to snapshot state) and a deterministic `step(state, input) → output`. The runtime
//! ([`crate::runtime::runner`]) owns everything else: leases, consumers, batching, decoding and
//! dead-lettering, epoch records, commits with positions, publishing results after the commit,
//! acks, metrics, shutdown and restarts. See docs/src/internals/writing-a-pipeline.md.
//!
//! **Determinism**: a step must compute the same output from the same (state, input). The
//! runtime replays recorded epochs after a crash (same messages, same `now`, same ticks) and
//! relies on it to fill a table that missed an epoch without doubling another.

use std::future::Future;
use std::time::Duration;

use adit_bus::DecodedBatch;
use adit_schemas::registry::RegistryEntry;
use adit_schemas::{AnyEvent, EventKind};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::runtime::timer::Timer;

/// A stream the pipeline reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInput {
    /// Name of the input; its position is recorded under it.
    pub name: String,
    /// The stream.
    pub stream: String,
    /// Subject filter when unpartitioned; empty reads the whole stream (so a landing pipeline
    /// dead-letters what no one else would read).
    pub subject: String,
    /// Subject filter of one partition, `{part}` standing for its key (a site or pool); `None`
    /// when the input cannot be partitioned.
    pub partitioned: Option<String>,
    /// Event kinds expected; anything else is refused with its reason.
    pub kinds: Vec<EventKind>,
    /// Whether this input files what it refuses as dead letters. Exactly one input reads each
    /// subject as its owner (the landing of its stream, or the only pipeline that reads it),
    /// so a bad message is filed once, however many pipelines read it and whenever they do;
    /// the others count it and skip it (checked over every pipeline in `registry`'s tests).
    pub dead_letters: bool,
}

impl StreamInput {
    /// `kind`'s records, partitionable by their subject's first token (a site, pool, …), under
    /// `name`, filing no dead letters (the kind's landing or owning pipeline does).
    pub fn of(name: &str, kind: EventKind) -> Self {
        Self {
            name: name.into(),
            stream: kind.stream().into(),
            subject: kind.filter(None),
            partitioned: Some(kind.filter(Some("{part}"))),
            kinds: vec![kind],
            dead_letters: false,
        }
    }

    /// Every record of `kind`, read whole by every partition: what a pipeline partitioned by
    /// site needs of records keyed otherwise (every pool's shares, every coin's price).
    pub fn of_all(name: &str, kind: EventKind) -> Self {
        Self {
            partitioned: Some(kind.filter(None)),
            ..Self::of(name, kind)
        }
    }

    /// Every kind `stream` carries (from the kind table), read whole, partitionable by the
    /// records' first subject token after the kind (`telemetry.*.{part}.>`, `mining.*.{part}`),
    /// under `name`, filing no dead letters.
    pub fn whole_stream(name: &str, stream: &str) -> Self {
        let kinds = EventKind::on_stream(stream);
        let root = kinds
            .first()
            .and_then(|kind| kind.route_prefix().split('.').next())
            .unwrap_or_default();
        let deeper = kinds.iter().any(|kind| kind.route_tokens() > 1);
        Self {
            name: name.into(),
            stream: stream.into(),
            subject: String::new(),
            partitioned: Some(format!(
                "{root}.*.{{part}}{}",
                if deeper { ".>" } else { "" }
            )),
            kinds,
            dead_letters: false,
        }
    }

    /// The same input, filing what it refuses as dead letters: the only reader of its subjects.
    pub fn filing_dead_letters(self) -> Self {
        Self {
            dead_letters: true,
            ..self
        }
    }

    /// Whether this is reference data the other inputs are judged against (the registry):
    /// read to its stream's end before a pipeline's first live step.
    pub fn is_reference(&self) -> bool {
        self.kinds == [EventKind::Registry]
    }

    /// The subject filter of `partition` (`None`: unpartitioned); `None` when this input
    /// cannot be partitioned.
    pub fn filter(&self, partition: Option<&str>) -> Option<String> {
        match partition {
            Some(key) => self.partitioned.as_ref().map(|t| t.replace("{part}", key)),
            None => Some(self.subject.clone()),
        }
    }
}

/// A table the pipeline writes.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTable {
    /// Table name.
    pub name: String,
    /// Its Arrow schema.
    pub schema: SchemaRef,
    /// Partition columns.
    pub partitions: Vec<String>,
}

impl OutputTable {
    /// Table `name` of `schema`, partitioned by its rows' UTC date (as every table is).
    pub fn dated(name: &str, schema: SchemaRef) -> Self {
        Self {
            name: name.into(),
            schema,
            partitions: vec![adit_schemas::arrow_rows::DATE_COLUMN.into()],
        }
    }
}

/// What a pipeline declares.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Name: the instance's Delta application id, lease key and consumer names derive from it.
    pub name: String,
    /// Streams read; each with its own position.
    pub inputs: Vec<StreamInput>,
    /// Tables written (at least one: the commits there own the positions).
    pub outputs: Vec<OutputTable>,
    /// Timers that call the step without input.
    pub timers: Vec<Timer>,
    /// How often the state is written into the epoch record (zero: every epoch). A pipeline
    /// with large state snapshots less often; a restart then replays the epochs since.
    pub snapshot_every: Duration,
}

/// The tick of a step that holds every message its inputs had up to its `now` (a run of one
/// epoch, `runner::run_once`): nothing can still arrive with an earlier time, so a pipeline may
/// decide up to `now` instead of waiting out late messages. A tick, so it is recorded with the
/// epoch and a replay decides the same.
pub const CAUGHT_UP: &str = "caught_up";

/// What one step sees.
#[derive(Debug)]
pub struct StepInput {
    /// Processing time of this step (recorded, so a replay sees the same).
    pub now: DateTime<Utc>,
    /// Names of the timers that fired, and [`CAUGHT_UP`] when the step holds every input
    /// message up to `now`.
    pub ticks: Vec<String>,
    /// One decoded batch per input, in the order of [`PipelineSpec::inputs`] (possibly empty).
    pub inputs: Vec<DecodedBatch>,
}

impl StepInput {
    /// Every accepted event of `kind`, over all the inputs, with its stream sequence.
    pub fn of(&self, kind: EventKind) -> impl Iterator<Item = (u64, &AnyEvent)> {
        self.inputs
            .iter()
            .flat_map(move |d| d.of(kind))
            .map(|(seq, event)| (*seq, event))
    }

    /// The registry's changes in this step, in stream order.
    pub fn registry(&self) -> impl Iterator<Item = &RegistryEntry> {
        self.of(EventKind::Registry)
            .filter_map(|(_, event)| match event {
                AnyEvent::Registry(entry) => Some(entry),
                _ => None,
            })
    }
}

#[cfg(test)]
impl StepInput {
    /// A step at `now` over `inputs` with no timer fired, as the pipelines' unit tests feed
    /// them.
    pub(crate) fn batches(now: DateTime<Utc>, inputs: Vec<DecodedBatch>) -> Self {
        Self {
            now,
            ticks: vec![],
            inputs,
        }
    }
}

/// A message to publish once the step's commit is done.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultMessage {
    /// Subject (under `results.>`).
    pub subject: String,
    /// Dedupe id, derived from the inputs so a replay publishes nothing new.
    pub id: String,
    /// JSON body.
    pub payload: Vec<u8>,
}

impl ResultMessage {
    /// A result row as JSON.
    pub fn json<T: Serialize>(subject: String, id: String, row: &T) -> Result<Self> {
        Ok(Self {
            subject,
            id,
            payload: serde_json::to_vec(row).map_err(crate::Error::Encode)?,
        })
    }
}

/// What one step produced.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// Rows per output table name.
    pub tables: Vec<(String, RecordBatch)>,
    /// Messages to publish after the commit.
    pub results: Vec<ResultMessage>,
    /// Events that arrived after their window closed (counted, not used).
    pub late: u64,
}

impl StepOutput {
    /// Adds `batch` for `table`.
    pub fn rows(&mut self, table: &str, batch: RecordBatch) {
        self.tables.push((table.to_string(), batch));
    }

    /// Rows produced, over all tables.
    pub fn row_count(&self) -> usize {
        self.tables.iter().map(|(_, b)| b.num_rows()).sum()
    }
}

/// A pipeline: its declaration and its step.
pub trait Pipeline: Send + Sync + 'static {
    /// What survives a restart (serialized into epoch records).
    type State: Serialize + DeserializeOwned + Default + Send + Sync + 'static;

    /// The declaration.
    fn spec(&self) -> PipelineSpec;

    /// One step: deterministic in (`state`, `input`).
    fn step(
        &self,
        state: &mut Self::State,
        input: StepInput,
    ) -> impl Future<Output = Result<StepOutput>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_filters_substitute_the_key() {
        let input = StreamInput {
            name: "telemetry".into(),
            stream: "TELEMETRY".into(),
            subject: String::new(),
            partitioned: Some("telemetry.*.{part}.>".into()),
            kinds: vec![],
            dead_letters: true,
        };
        assert_eq!(
            input.filter(Some("site-01")).as_deref(),
            Some("telemetry.*.site-01.>")
        );
        assert_eq!(input.filter(None).as_deref(), Some(""), "the whole stream");
        let fixed = StreamInput {
            partitioned: None,
            ..input
        };
        assert_eq!(fixed.filter(Some("site-01")), None);
    }
}
