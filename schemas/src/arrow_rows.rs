//! serde values → Arrow record batches, through `serde_arrow` (no field-by-field code): each
//! value goes straight into its column's builder, with no JSON tape in between.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

/// Name of the column holding the stream sequence a row came from.
pub const SEQ_COLUMN: &str = "seq";
/// Name of the partition column holding the event's UTC date.
pub const DATE_COLUMN: &str = "date";
/// Name of the column holding an event's time.
pub const TS_COLUMN: &str = "ts";

const SECONDS_PER_DAY: i64 = 86_400;

/// The Arrow type adit uses for every timestamp: microseconds, UTC (Delta's `timestamp`).
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A required UTC timestamp field.
pub fn ts_field(name: &str) -> Field {
    Field::new(name, ts_type(), false)
}

/// Encodes serde rows into one batch of `schema`. Strict: a serde field the schema lacks, a
/// value of the wrong type or a missing value for a column that may not be null is an error,
/// never a silently dropped or defaulted column.
pub fn to_batch<T: Serialize>(
    kind: &'static str,
    schema: SchemaRef,
    rows: &[T],
) -> Result<RecordBatch> {
    let arrow = |source| Error::Arrow { kind, source };
    if let Some(first) = rows.first() {
        check_columns(&schema, first).map_err(arrow)?;
    }
    let encoded = serde_arrow::to_record_batch(schema.fields(), &rows)
        .map_err(|e| arrow(ArrowError::ExternalError(Box::new(e))))?;
    // The same columns under the caller's schema (its metadata and its `Arc`, which later
    // schema comparisons use).
    RecordBatch::try_new(schema, encoded.columns().to_vec()).map_err(arrow)
}

/// Fails when `row` has a serde field `schema` has no column for (`serde_arrow` would skip
/// it). Rows of one type have the same fields (but those skipped when empty), so the first row
/// of a batch stands for all, and the round trip of every event kind through Arrow checks the
/// rest (`events::tests`).
fn check_columns<T: Serialize>(schema: &Schema, row: &T) -> std::result::Result<(), ArrowError> {
    let value = serde_json::to_value(row).map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
    let serde_json::Value::Object(fields) = value else {
        return Err(ArrowError::SchemaError(format!(
            "a row must be a struct, not {value}"
        )));
    };
    match fields
        .keys()
        .find(|name| schema.field_with_name(name).is_err())
    {
        Some(name) => Err(ArrowError::SchemaError(format!(
            "field {name:?} has no column in the table's schema"
        ))),
        None => Ok(()),
    }
}

/// `fields` followed by the `seq` and `date` columns every landed-event table has.
pub fn stamped_schema(fields: Vec<Field>) -> SchemaRef {
    let mut fields = fields;
    fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
    fields.push(Field::new(DATE_COLUMN, DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

/// Encodes events with their stream sequences into one batch of `schema`
/// (which [`stamped_schema`] built), dating each row by `ts_of`, which gives each event's
/// time: its `ts` column where the schema has one.
///
/// `serde_arrow` encodes the event's other columns; `ts`, `seq` and `date` are built here
/// from the values themselves. Through serde, chrono would write each `ts` out as RFC 3339
/// text for `serde_arrow` to parse back (a twentieth of the landing's CPU in
/// `adit bench ingest`).
pub fn stamped_batch<T: Serialize>(
    kind: &'static str,
    schema: SchemaRef,
    rows: &[(u64, &T)],
    ts_of: impl Fn(&T) -> DateTime<Utc>,
) -> Result<RecordBatch> {
    let arrow = |source| Error::Arrow { kind, source };
    if let Some((_, first)) = rows.first() {
        check_columns(&schema, *first).map_err(arrow)?;
    }
    let built_here = [TS_COLUMN, SEQ_COLUMN, DATE_COLUMN];
    let own: Vec<FieldRef> = schema
        .fields()
        .iter()
        .filter(|f| !built_here.contains(&f.name().as_str()))
        .cloned()
        .collect();
    let events: Vec<&T> = rows.iter().map(|(_, event)| *event).collect();
    let encoded = serde_arrow::to_record_batch(&own, &events)
        .map_err(|e| arrow(ArrowError::ExternalError(Box::new(e))))?;
    let times: Vec<DateTime<Utc>> = events.iter().map(|event| ts_of(event)).collect();
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> std::result::Result<ArrayRef, ArrowError> {
            Ok(match field.name().as_str() {
                TS_COLUMN => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        times.iter().map(DateTime::timestamp_micros),
                    )
                    .with_timezone("UTC"),
                ),
                SEQ_COLUMN => Arc::new(Int64Array::from(
                    rows.iter()
                        .map(|(seq, _)| {
                            i64::try_from(*seq).map_err(|_| {
                                ArrowError::ComputeError(format!(
                                    "stream sequence {seq} does not fit the seq column"
                                ))
                            })
                        })
                        .collect::<std::result::Result<Vec<i64>, _>>()?,
                )),
                DATE_COLUMN => Arc::new(Date32Array::from_iter_values(
                    times
                        .iter()
                        .map(|t| t.timestamp().div_euclid(SECONDS_PER_DAY) as i32),
                )),
                name => encoded.column_by_name(name).cloned().ok_or_else(|| {
                    ArrowError::SchemaError(format!("no column {name:?} was encoded"))
                })?,
            })
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(arrow)?;
    RecordBatch::try_new(schema, columns).map_err(arrow)
}

pub(crate) fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}
pub(crate) fn utf8_opt(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}
pub(crate) fn f64_field(name: &str) -> Field {
    Field::new(name, DataType::Float64, false)
}
pub(crate) fn f64_opt(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}
pub(crate) fn i64_field(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}
pub(crate) fn i64_opt(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: String,
        count: u64,
        ts: DateTime<Utc>,
        level: Option<f64>,
    }

    fn row() -> Row {
        Row {
            name: "m-1".into(),
            count: 7,
            ts: "2026-11-25T10:00:00.123456Z".parse().unwrap(),
            level: None,
        }
    }

    /// [`Row`]'s columns; `level` nullable or not, or left out (`None`).
    fn row_fields(level: Option<bool>) -> Vec<Field> {
        let mut fields = vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
            ts_field("ts"),
        ];
        fields.extend(level.map(|nullable| Field::new("level", DataType::Float64, nullable)));
        fields
    }

    fn schema(fields: Vec<Field>) -> SchemaRef {
        Arc::new(Schema::new(fields))
    }

    #[test]
    fn rows_become_typed_columns_of_the_given_schema() {
        let schema = schema(row_fields(Some(true)));
        let batch = to_batch("row", schema.clone(), &[row(), row()]).unwrap();
        assert!(Arc::ptr_eq(&batch.schema(), &schema));
        assert_eq!(batch.num_rows(), 2);
        let ts = batch
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), row().ts.timestamp_micros());
        assert_eq!(batch.column(3).null_count(), 2);
        let empty = to_batch::<Row>("row", schema, &[]).unwrap();
        assert_eq!(empty.num_rows(), 0);
    }

    #[test]
    fn a_field_the_schema_lacks_or_a_null_it_forbids_is_an_error() {
        let narrow = schema(row_fields(None));
        assert!(
            to_batch("row", narrow, &[row()]).is_err(),
            "level has no column"
        );
        let not_null = schema(row_fields(Some(false)));
        assert!(
            to_batch("row", not_null, &[row()]).is_err(),
            "level is null"
        );
    }

    #[test]
    fn stamped_rows_carry_their_sequence_and_date() {
        let schema = stamped_schema(row_fields(Some(true)));
        let r = row();
        let before_1970 = Row {
            ts: "1969-12-31T23:59:59.999Z".parse().unwrap(),
            ..row()
        };
        let rows = [(42, &r), (43, &before_1970)];
        let batch = stamped_batch("row", schema, &rows, |r| r.ts).unwrap();
        let seq = batch.column_by_name(SEQ_COLUMN).unwrap();
        let seq = seq
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!((seq.value(0), seq.value(1)), (42, 43));
        let date = batch.column_by_name(DATE_COLUMN).unwrap();
        let date = date
            .as_any()
            .downcast_ref::<arrow::array::Date32Array>()
            .unwrap();
        assert_eq!(date.value_as_date(0), Some(r.ts.date_naive()));
        assert_eq!(
            date.value_as_date(1).map(|d| d.to_string()),
            Some("1969-12-31".to_string())
        );
    }
}
