//! Run summaries: what each run of a sorted file holds, written into the file's own footer.
//!
//! Every file adit writes is sorted by its keys, then time ([`crate::compact::SORT_COLUMNS`]),
//! so a file is a sequence of runs, one per key (a site's machine, a pool's miner). A run
//! summary is one row per run: the run's key (with the partition values of the rows), how many
//! rows it holds, and for each number or time column how many of its values are not null,
//! their smallest, their largest and (for the 64-bit numbers) their sum. A `GROUP BY` of those
//! keys that asks for counts, sums, averages, minimums or maximums is answered from these rows
//! instead of the file's (`adit_sql`'s summaries rule): on a compacted file of a 10 000-machine
//! farm that is one row per thousand readings.
//!
//! The summary is an Arrow IPC stream, base64-encoded, kept under [`SUMMARY_KEY`] in the
//! Parquet footer's key-value metadata. It lives and dies with the file it describes (a
//! compaction writes new files with new summaries; vacuum deletes both at once), so it can
//! never describe other rows than its file's. A reader still checks that its run counts add up
//! to the file's rows for the file's partition values, and scans the file when they do not.
//!
//! Sums are what DataFusion's `sum` would add up: wrapping for integers (so the runs' sums add
//! up to the rows' sum exactly, overflow or not), and only for the types whose `sum` keeps the
//! type (`Int64`, `UInt64`, `Float64`). Floating-point sums may differ from a row-by-row sum in
//! the last bits, as any two orders of adding do.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, UInt32Array, UInt64Array,
};
use arrow::compute::{partition, take};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Field, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use base64::Engine as _;

/// The footer key the summary is kept under (its format's version in the name).
pub const SUMMARY_KEY: &str = "adit.runs.v1";

/// The column of a summary holding each run's row count.
pub const ROWS: &str = "rows";

/// A file whose runs hold fewer rows than this on average gets no summary: it would be about as
/// large as the file's own rows, and a scan of them is as fast (the newest commits' small
/// files, a run per machine or two).
pub const MIN_ROWS_PER_RUN: usize = 8;

/// The largest summary kept, encoded: a footer is read whole by every scan of its file.
pub const MAX_SUMMARY_BYTES: usize = 8 << 20;

/// What a summary keeps of a value column: its name with one of these after a `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// How many of the run's values are not null (`UInt64`); left out when every value of the
    /// file is (then it is the run's rows).
    NonNull,
    /// The smallest value (the column's type; null when every value is).
    Min,
    /// The largest value.
    Max,
    /// The wrapping sum of the values (the column's type; null when every value is null).
    Sum,
}

impl Stat {
    /// The summary column holding this statistic of `column`.
    pub fn of(self, column: &str) -> String {
        let what = match self {
            Stat::NonNull => "n",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Sum => "sum",
        };
        format!("{column}/{what}")
    }
}

/// The summary of `batch` (sorted as compaction sorts) by its columns `keys` (the partition
/// columns, then the sort columns but time: `crate::compact::key_columns`), or `None` when
/// there are none or its runs are too short to be worth one.
pub fn summarize(batch: &RecordBatch, keys: &[String]) -> Result<Option<RecordBatch>, ArrowError> {
    let schema = batch.schema();
    if keys.is_empty()
        || keys.iter().any(|k| schema.field_with_name(k).is_err())
        || batch.num_rows() == 0
    {
        return Ok(None);
    }
    let key_arrays: Vec<ArrayRef> = keys
        .iter()
        .map(|k| Arc::clone(batch.column(schema.index_of(k).expect("a key of the schema"))))
        .collect();
    let runs = partition(&key_arrays)?.ranges();
    if batch.num_rows() < runs.len() * MIN_ROWS_PER_RUN {
        return Ok(None);
    }
    let firsts = UInt32Array::from_iter_values(runs.iter().map(|r| r.start as u32));
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (name, array) in keys.iter().zip(&key_arrays) {
        let field = schema.field_with_name(name)?;
        fields.push(Field::new(
            name,
            field.data_type().clone(),
            field.is_nullable(),
        ));
        columns.push(take(array.as_ref(), &firsts, None)?);
    }
    fields.push(Field::new(ROWS, DataType::UInt64, false));
    columns.push(Arc::new(UInt64Array::from_iter_values(
        runs.iter().map(|r| r.len() as u64),
    )));
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        if keys.contains(field.name()) {
            continue;
        }
        if let Some(stats) = value_stats(array, &runs)? {
            for (stat, column) in stats {
                fields.push(Field::new(
                    stat.of(field.name()),
                    column.data_type().clone(),
                    true,
                ));
                columns.push(column);
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map(Some)
}

/// A value column's statistics per run, or `None` for a type summaries do not keep.
fn value_stats(
    array: &ArrayRef,
    runs: &[Range<usize>],
) -> Result<Option<Vec<(Stat, ArrayRef)>>, ArrowError> {
    Ok(Some(match array.data_type() {
        DataType::Int64 => stats::<Int64Type>(array, runs, true),
        DataType::UInt64 => stats::<UInt64Type>(array, runs, true),
        DataType::Float64 => stats::<Float64Type>(array, runs, true),
        DataType::Int8 => stats::<Int8Type>(array, runs, false),
        DataType::Int16 => stats::<Int16Type>(array, runs, false),
        DataType::Int32 => stats::<Int32Type>(array, runs, false),
        DataType::UInt8 => stats::<UInt8Type>(array, runs, false),
        DataType::UInt16 => stats::<UInt16Type>(array, runs, false),
        DataType::UInt32 => stats::<UInt32Type>(array, runs, false),
        DataType::Float32 => stats::<Float32Type>(array, runs, false),
        DataType::Date32 => stats::<Date32Type>(array, runs, false),
        DataType::Date64 => stats::<Date64Type>(array, runs, false),
        DataType::Timestamp(TimeUnit::Second, _) => {
            stats::<TimestampSecondType>(array, runs, false)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            stats::<TimestampMillisecondType>(array, runs, false)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            stats::<TimestampMicrosecondType>(array, runs, false)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            stats::<TimestampNanosecondType>(array, runs, false)
        }
        _ => return Ok(None),
    }))
}

/// Non-null count, min, max (and the wrapping sum, with `with_sum`) of `array`'s values in each
/// run, the min, max and sum in `array`'s own type (a timestamp keeps its zone).
fn stats<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    runs: &[Range<usize>],
    with_sum: bool,
) -> Vec<(Stat, ArrayRef)> {
    let values = array.as_primitive::<T>();
    let data_type = array.data_type().clone();
    let (mut n, mut min, mut max, mut sum) = (
        Vec::with_capacity(runs.len()),
        Vec::with_capacity(runs.len()),
        Vec::with_capacity(runs.len()),
        Vec::with_capacity(runs.len()),
    );
    for run in runs {
        let slice = values.slice(run.start, run.len());
        n.push((slice.len() - slice.null_count()) as u64);
        min.push(arrow::compute::min(&slice));
        max.push(arrow::compute::max(&slice));
        if with_sum {
            sum.push(arrow::compute::sum(&slice));
        }
    }
    let typed = |v: Vec<Option<T::Native>>| -> ArrayRef {
        Arc::new(PrimitiveArray::<T>::from_iter(v).with_data_type(data_type.clone()))
    };
    let all = values.null_count() == 0;
    let mut out = Vec::with_capacity(4);
    if !all {
        out.push((Stat::NonNull, Arc::new(UInt64Array::from(n)) as ArrayRef));
    }
    out.push((Stat::Min, typed(min)));
    out.push((Stat::Max, typed(max)));
    if with_sum {
        out.push((Stat::Sum, typed(sum)));
    }
    out
}

/// `summary` as the text kept in a footer, or `None` when it is larger than
/// [`MAX_SUMMARY_BYTES`].
pub fn encode(summary: &RecordBatch) -> Result<Option<String>, ArrowError> {
    let mut bytes = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut bytes, &summary.schema())?;
        writer.write(summary)?;
        writer.finish()?;
    }
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok((text.len() <= MAX_SUMMARY_BYTES).then_some(text))
}

/// A summary from the text [`encode`] wrote. Outside bytes, as any file's: checked by
/// [`adit_ipc`] before Arrow reads them, so a malformed one is an error, never a panic.
pub fn decode(text: &str) -> Result<RecordBatch, ArrowError> {
    if text.len() > MAX_SUMMARY_BYTES {
        return Err(ArrowError::InvalidArgumentError(format!(
            "a run summary of {} bytes (at most {MAX_SUMMARY_BYTES})",
            text.len()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| ArrowError::InvalidArgumentError(format!("a run summary's base64: {e}")))?;
    // Checked before Arrow reads it: Arrow's reader panics on a buffer placed past the body.
    adit_ipc::check_stream(&bytes)
        .map_err(|e| ArrowError::InvalidArgumentError(format!("a run summary: {e}")))?;
    let mut reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let batch = reader.next().transpose()?.ok_or_else(|| {
        ArrowError::InvalidArgumentError("a run summary without rows".to_string())
    })?;
    if reader.next().is_some() {
        return Err(ArrowError::InvalidArgumentError(
            "a run summary of more than one batch".to_string(),
        ));
    }
    Ok(batch)
}

/// The footer entry for `batch` (a file's rows, sorted, with its partition columns): the
/// encoded summary under [`SUMMARY_KEY`], or `None` when it gets none. A summary that cannot be
/// made is logged and left out: the file is still written, and scanned in full.
pub fn footer_entry(batch: &RecordBatch, keys: &[String]) -> Option<(String, String)> {
    let made = summarize(batch, keys).and_then(|s| s.map(|s| encode(&s)).transpose());
    match made {
        Ok(text) => text.flatten().map(|t| (SUMMARY_KEY.to_string(), t)),
        Err(e) => {
            tracing::warn!(error = %e, "a file is written without its run summary");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Utf8, false),
            Field::new("site", DataType::Utf8, false),
            Field::new("machine", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("power_w", DataType::Float64, false),
            Field::new("energy_wh", DataType::Float64, true),
            Field::new("seq", DataType::Int64, false),
            Field::new("source", DataType::Utf8, false),
        ]));
        let rows = 24;
        let machine = |i: usize| format!("m-{}", i / 8);
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|_| "2026-11-30"),
                )),
                Arc::new(StringArray::from_iter_values((0..rows).map(|_| "s-1"))),
                Arc::new(StringArray::from_iter_values((0..rows).map(machine))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values((0..rows).map(|i| i as i64 * 10))
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
                Arc::new(Float64Array::from_iter(
                    (0..rows).map(|i| (i % 8 != 0 && i < 16).then_some(1.5)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|i| i64::MAX - i as i64),
                )),
                Arc::new(StringArray::from_iter_values((0..rows).map(|_| "pdu"))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_run_per_key_with_its_counts_extremes_and_sums() {
        let summary = summarize(&batch(), &keys(&["date", "site", "machine"]))
            .unwrap()
            .unwrap();
        let schema = summary.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(&names[..4], ["date", "site", "machine", ROWS]);
        assert!(names.contains(&"ts/min") && names.contains(&"power_w/sum"));
        // A column without nulls keeps no count of them: the run's rows are.
        assert!(!names.contains(&"power_w/n") && names.contains(&"energy_wh/n"));
        assert!(!names.contains(&"ts/sum") && !names.contains(&"source/min"));
        assert_eq!(summary.num_rows(), 3);
        let column = |name: &str| summary.column_by_name(name).unwrap().clone();
        assert_eq!(
            column(ROWS).as_primitive::<UInt64Type>().values(),
            &[8, 8, 8]
        );
        let sums = column("power_w/sum");
        assert_eq!(
            sums.as_primitive::<Float64Type>().values(),
            &[28.0, 92.0, 156.0]
        );
        let energy = column("energy_wh/n");
        assert_eq!(energy.as_primitive::<UInt64Type>().values(), &[7, 7, 0]);
        assert!(column("energy_wh/sum").is_null(2) && column("energy_wh/min").is_null(2));
        // Integer sums wrap as DataFusion's `sum` does.
        let seq = column("seq/sum");
        let want = (0..8).fold(0i64, |s, i| s.wrapping_add(i64::MAX - i));
        assert_eq!(seq.as_primitive::<Int64Type>().value(0), want);
        assert_eq!(
            column("ts/max").data_type(),
            batch().schema().field(3).data_type()
        );
    }

    #[test]
    fn encoded_summaries_come_back_the_same_and_garbage_is_an_error() {
        let summary = summarize(&batch(), &keys(&["site", "machine"]))
            .unwrap()
            .unwrap();
        let text = encode(&summary).unwrap().unwrap();
        assert_eq!(decode(&text).unwrap(), summary);
        for bad in ["", "not base64!", "AAAA", &text[..text.len() / 2]] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("ADIT_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000)))]
        /// A footer is outside bytes: any change to a summary's is an error or a summary,
        /// never a panic.
        #[test]
        fn changed_summaries_never_panic(
            flips in proptest::collection::vec((0usize..4096, 0u8..=255), 1..8),
            cut in 0usize..4096,
        ) {
            let summary = summarize(&batch(), &keys(&["site", "machine"])).unwrap().unwrap();
            let text = encode(&summary).unwrap().unwrap();
            let mut bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            bytes.truncate(cut.max(1));
            let _ = decode(&base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
    }

    #[test]
    fn short_runs_and_keyless_files_get_none() {
        let b = batch();
        assert!(
            summarize(&b.slice(0, 7), &keys(&["site", "machine"]))
                .unwrap()
                .is_none()
        );
        // One row per machine: runs of one.
        let sparse =
            arrow::compute::take_record_batch(&b, &UInt32Array::from(vec![0, 8, 16])).unwrap();
        assert!(
            summarize(&sparse, &keys(&["site", "machine"]))
                .unwrap()
                .is_none()
        );
        let keyless = b.project(&[3, 4]).unwrap();
        assert!(summarize(&keyless, &[]).unwrap().is_none());
    }
}
