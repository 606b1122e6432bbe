//! serde values ↔ Arrow record batches, through arrow-json's serializer (no field-by-field code).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::json::ReaderBuilder;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

/// Name of the column holding the stream sequence a row came from.
pub const SEQ_COLUMN: &str = "seq";
/// Name of the partition column holding the event's UTC date.
pub const DATE_COLUMN: &str = "date";

/// The Arrow type adit uses for every timestamp: microseconds, UTC (Delta's `timestamp`).
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A required UTC timestamp field.
pub fn ts_field(name: &str) -> Field {
    Field::new(name, ts_type(), false)
}

/// Encodes serde rows into one batch of `schema`.
pub fn to_batch<T: Serialize>(
    kind: &'static str,
    schema: SchemaRef,
    rows: &[T],
) -> Result<RecordBatch> {
    let arrow = |source| Error::Arrow { kind, source };
    // Strict: a serde field the schema lacks is an error, never a silently dropped column.
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .with_strict_mode(true)
        .build_decoder()
        .map_err(arrow)?;
    decoder.serialize(rows).map_err(arrow)?;
    Ok(decoder
        .flush()
        .map_err(arrow)?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// An event as it is stored: its fields, the stream sequence it came from and its date.
#[derive(Serialize)]
struct Stamped<'a, T> {
    #[serde(flatten)]
    event: &'a T,
    seq: u64,
    date: NaiveDate,
}

/// `fields` followed by the `seq` and `date` columns every landed-event table has.
pub fn stamped_schema(fields: Vec<Field>) -> SchemaRef {
    let mut fields = fields;
    fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
    fields.push(Field::new(DATE_COLUMN, DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

/// Encodes events with their stream sequences into one batch of `schema`
/// (which [`stamped_schema`] built), dating each row by `ts_of`.
pub fn stamped_batch<T: Serialize>(
    kind: &'static str,
    schema: SchemaRef,
    rows: &[(u64, &T)],
    ts_of: impl Fn(&T) -> DateTime<Utc>,
) -> Result<RecordBatch> {
    let stamped: Vec<Stamped<'_, T>> = rows
        .iter()
        .map(|(seq, event)| Stamped {
            event: *event,
            seq: *seq,
            date: ts_of(event).date_naive(),
        })
        .collect();
    to_batch(kind, schema, &stamped)
}
