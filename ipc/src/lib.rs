//! Arrow IPC from outside, checked before Arrow reads it: the parameter rows of a Flight SQL
//! `DoPut` and the parameters a prepared statement's handle carries back (`adit_wire`), and the
//! run summary in a data file's footer (`adit_sinks::summary`). Arrow's reader trusts what a
//! message declares: a compressed buffer's uncompressed length is allocated as declared (one
//! message saying "a terabyte" ends the process), and a buffer placed past the body panics.
//! So every message is read here first, from its flatbuffer: compressed bodies are refused
//! (parameters are one small row; no client needs them), every buffer must lie inside the
//! body at a multiple of 8, and the counts of rows, columns and buffers are bounded.
//!
//! A schema is read the same way. Arrow's conversion of one panics on what it does not expect
//! (an integer 0 bits wide, found by the mutation test below), so a schema may hold only the
//! scalar types a parameter or a summary can have, each with the widths and units Arrow takes:
//! null, boolean, integers, floats, strings, binaries, dates, times, timestamps and decimals,
//! little-endian, none dictionary-encoded. Dictionary batches are not taken.

use arrow::ipc::{
    DateUnit, Endianness, Field, MessageHeader, Precision, RecordBatch as BatchHeader,
    Schema as SchemaHeader, TimeUnit, Type, root_as_message,
};

/// Most rows one client batch may declare.
pub const MAX_ROWS: i64 = 1_000_000;
/// Most field nodes (columns, nested ones counted) and buffers one batch may declare.
pub const MAX_NODES: usize = 10_000;

/// What one field's buffers must be, in order: each one's element width in bytes (0: any
/// length, for validity bitmaps and the values of strings).
type Layout = &'static [usize];

/// Checks a client's messages in order: the schema first, then batches laid out as it says.
#[derive(Debug, Default)]
pub struct Checker {
    /// Each field's layout, once the schema has come.
    fields: Option<Vec<Layout>>,
}

impl Checker {
    /// Checks one message: its flatbuffer `header`, and the length of the body that follows.
    pub fn message(&mut self, header: &[u8], body_len: usize) -> Result<(), String> {
        let message =
            root_as_message(header).map_err(|e| format!("not an Arrow IPC message: {e}"))?;
        let declared = usize::try_from(message.bodyLength())
            .map_err(|_| format!("a body of {} bytes", message.bodyLength()))?;
        if declared > body_len {
            return Err(format!(
                "a body of {declared} bytes declared, {body_len} sent"
            ));
        }
        match (message.header_type(), &self.fields) {
            (MessageHeader::Schema, None) => {
                let schema = message
                    .header_as_schema()
                    .ok_or("a schema without its header")?;
                self.fields = Some(check_schema(&schema)?);
                Ok(())
            }
            (MessageHeader::RecordBatch, Some(fields)) => {
                let batch = message
                    .header_as_record_batch()
                    .ok_or("a record batch without its header")?;
                check_batch(&batch, fields, declared)
            }
            (MessageHeader::Schema, Some(_)) => Err("a second schema".into()),
            (MessageHeader::RecordBatch, None) => Err("a record batch before its schema".into()),
            (other, _) => Err(format!(
                "an Arrow IPC message of kind {other:?} is not taken"
            )),
        }
    }
}

/// Checks a schema: little-endian, at most [`MAX_NODES`] fields, each of a scalar type Arrow
/// converts without a panic; each field's layout.
fn check_schema(schema: &SchemaHeader<'_>) -> Result<Vec<Layout>, String> {
    if schema.endianness() != Endianness::Little {
        return Err("a big-endian schema".into());
    }
    let fields = schema.fields().ok_or("a schema without fields")?;
    if fields.len() > MAX_NODES {
        return Err(format!("a schema of more than {MAX_NODES} fields"));
    }
    fields.iter().map(|f| check_field(&f)).collect()
}

/// Checks one field's type (see the module's header); its layout.
fn check_field(field: &Field<'_>) -> Result<Layout, String> {
    let name = field.name().unwrap_or_default();
    if field.dictionary().is_some() {
        return Err(format!("parameter {name:?}: dictionary-encoded"));
    }
    let width = |bits: i32| match bits {
        8 => Some(&[0, 1][..]),
        16 => Some(&[0, 2][..]),
        32 => Some(&[0, 4][..]),
        64 => Some(&[0, 8][..]),
        128 => Some(&[0, 16][..]),
        256 => Some(&[0, 32][..]),
        _ => None,
    };
    let layout: Option<Layout> = match field.type_type() {
        Type::Null => Some(&[]),
        Type::Bool => Some(&[0, 0]),
        Type::Utf8 | Type::Binary => Some(&[0, 4, 0]),
        Type::LargeUtf8 | Type::LargeBinary => Some(&[0, 8, 0]),
        Type::Int => field
            .type_as_int()
            .filter(|i| matches!(i.bitWidth(), 8 | 16 | 32 | 64))
            .and_then(|i| width(i.bitWidth())),
        Type::FloatingPoint => field
            .type_as_floating_point()
            .and_then(|f| match f.precision() {
                Precision::HALF => width(16),
                Precision::SINGLE => width(32),
                Precision::DOUBLE => width(64),
                _ => None,
            }),
        Type::Date => field.type_as_date().and_then(|d| match d.unit() {
            DateUnit::DAY => width(32),
            DateUnit::MILLISECOND => width(64),
            _ => None,
        }),
        Type::Time => field
            .type_as_time()
            .and_then(|t| match (t.bitWidth(), t.unit()) {
                (32, TimeUnit::SECOND | TimeUnit::MILLISECOND) => width(32),
                (64, TimeUnit::MICROSECOND | TimeUnit::NANOSECOND) => width(64),
                _ => None,
            }),
        Type::Timestamp => field
            .type_as_timestamp()
            .filter(|t| {
                matches!(
                    t.unit(),
                    TimeUnit::SECOND
                        | TimeUnit::MILLISECOND
                        | TimeUnit::MICROSECOND
                        | TimeUnit::NANOSECOND
                )
            })
            .and_then(|_| width(64)),
        Type::Decimal => field.type_as_decimal().and_then(|d| {
            let most = match d.bitWidth() {
                32 => 9,
                64 => 18,
                128 => 38,
                256 => 76,
                _ => 0,
            };
            ((1..=most).contains(&d.precision()) && (-128..=127).contains(&d.scale()))
                .then(|| width(d.bitWidth()))
                .flatten()
        }),
        _ => None,
    };
    layout.ok_or_else(|| format!("parameter {name:?}: not a scalar type a parameter can have"))
}

/// Checks a batch's header against its schema's `fields` and the `body_len` bytes of its body.
fn check_batch(batch: &BatchHeader<'_>, fields: &[Layout], body_len: usize) -> Result<(), String> {
    if batch.compression().is_some() {
        return Err("compressed Arrow IPC is not taken from clients".into());
    }
    if !(0..=MAX_ROWS).contains(&batch.length()) {
        return Err(format!(
            "a batch of {} rows (at most {MAX_ROWS})",
            batch.length()
        ));
    }
    let nodes: Vec<_> = batch.nodes().iter().flatten().collect();
    let buffers: Vec<_> = batch.buffers().iter().flatten().collect();
    let widths: Vec<usize> = fields.iter().flat_map(|f| f.iter().copied()).collect();
    if nodes.len() != fields.len() || buffers.len() != widths.len() {
        return Err(format!(
            "a batch of {} columns and {} buffers, its schema says {} and {}",
            nodes.len(),
            buffers.len(),
            fields.len(),
            widths.len()
        ));
    }
    for node in &nodes {
        if node.length() != batch.length() || !(0..=node.length()).contains(&node.null_count()) {
            return Err(format!(
                "a column of {} values, {} null, in a batch of {} rows",
                node.length(),
                node.null_count(),
                batch.length()
            ));
        }
    }
    for (buffer, width) in buffers.iter().zip(widths) {
        let (offset, length) = (buffer.offset(), buffer.length());
        // Arrow's format puts each buffer at a multiple of 8 and a typed buffer holds whole
        // values; Arrow's reader panics on either broken (found by the mutation test below).
        let whole = width == 0 || length % width as i64 == 0;
        let end = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(length).ok())
            .and_then(|(offset, length)| offset.checked_add(length));
        if offset % 8 != 0 || !whole || end.is_none_or(|end| end > body_len) {
            return Err(format!(
                "a buffer at {offset} of {length} bytes, in a body of {body_len}"
            ));
        }
    }
    Ok(())
}

/// Checks every message of an Arrow IPC stream (as `StreamWriter` writes it).
pub fn check_stream(mut bytes: &[u8]) -> Result<(), String> {
    let mut checker = Checker::default();
    let word = |b: &[u8]| -> Option<[u8; 4]> { b.get(..4).and_then(|w| w.try_into().ok()) };
    loop {
        let Some(first) = word(bytes) else {
            return if bytes.is_empty() {
                Ok(())
            } else {
                Err("an Arrow IPC stream cut off".into())
            };
        };
        // A continuation marker, then the length; or (the old format) the length alone.
        let (len, rest) = if first == [0xff; 4] {
            let len = word(&bytes[4..]).ok_or("an Arrow IPC stream cut off")?;
            (i32::from_le_bytes(len), &bytes[8..])
        } else {
            (i32::from_le_bytes(first), &bytes[4..])
        };
        if len == 0 {
            return Ok(());
        }
        let len = usize::try_from(len).map_err(|_| format!("a message of {len} bytes"))?;
        let header = rest.get(..len).ok_or("an Arrow IPC message cut off")?;
        let body = &rest[len..];
        checker.message(header, body.len())?;
        let declared = root_as_message(header)
            .ok()
            .and_then(|m| usize::try_from(m.bodyLength()).ok())
            .unwrap_or(0);
        bytes = &body[declared..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::ipc::CompressionType;
    use arrow::ipc::reader::StreamReader;
    use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};

    /// One row of every type a parameter may have.
    fn row() -> RecordBatch {
        use arrow::array::{
            ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array,
            Int8Array, LargeStringArray, NullArray, Time64MicrosecondArray,
            TimestampMicrosecondArray,
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("s", Arc::new(StringArray::from(vec![Some("site-01")]))),
            ("i", Arc::new(Int64Array::from(vec![Some(42)]))),
            ("b", Arc::new(BooleanArray::from(vec![Some(true)]))),
            ("f", Arc::new(Float64Array::from(vec![None]))),
            ("t", Arc::new(Int8Array::from(vec![Some(-3)]))),
            ("l", Arc::new(LargeStringArray::from(vec![Some("x")]))),
            (
                "y",
                Arc::new(BinaryArray::from(vec![Some(&b"\x00\x01"[..])])),
            ),
            ("d", Arc::new(Date32Array::from(vec![Some(20_000)]))),
            ("h", Arc::new(Time64MicrosecondArray::from(vec![Some(1)]))),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![Some(1)]).with_timezone("UTC")),
            ),
            (
                "m",
                Arc::new(
                    Decimal128Array::from(vec![Some(12_345)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ),
            ("n", Arc::new(NullArray::new(1))),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn stream(compression: Option<CompressionType>) -> Vec<u8> {
        let batch = row();
        let options = IpcWriteOptions::default()
            .try_with_compression(compression)
            .unwrap();
        let mut out = Vec::new();
        let mut writer =
            StreamWriter::try_new_with_options(&mut out, &batch.schema(), options).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        out
    }

    /// What the server does with a client's stream: checks it, then reads it.
    fn read(bytes: &[u8]) -> Result<usize, String> {
        check_stream(bytes)?;
        let reader = StreamReader::try_new(bytes, None).map_err(|e| e.to_string())?;
        let mut rows = 0;
        for batch in reader {
            rows += batch.map_err(|e| e.to_string())?.num_rows();
        }
        Ok(rows)
    }

    #[test]
    fn only_scalar_parameter_types_are_taken() {
        use arrow::array::ListArray;
        use arrow::datatypes::Int32Type;
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
        let batch = RecordBatch::try_from_iter(vec![("l", Arc::new(list) as _)]).unwrap();
        let mut out = Vec::new();
        let mut writer = StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        let err = read(&out).unwrap_err();
        assert!(err.contains("not a scalar type"), "{err}");
    }

    #[test]
    fn a_plain_row_passes_and_a_compressed_one_is_refused() {
        assert_eq!(read(&stream(None)), Ok(1));
        for codec in [CompressionType::LZ4_FRAME, CompressionType::ZSTD] {
            let err = read(&stream(Some(codec))).unwrap_err();
            assert!(err.contains("compressed"), "{err}");
        }
    }

    /// The attack: an LZ4 buffer whose 8-byte prefix declares a terabyte uncompressed. Arrow
    /// alone would allocate it; the check refuses the message before.
    #[test]
    fn a_huge_declared_length_never_reaches_arrow() {
        let mut bytes = stream(Some(CompressionType::LZ4_FRAME));
        let terabyte = (1u64 << 40).to_le_bytes();
        // Every 8-byte-aligned spot in the body that held a small length now says 1 TiB.
        for at in (0..bytes.len() - 8).step_by(8) {
            let n = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            if (1..=64).contains(&n) {
                bytes[at..at + 8].copy_from_slice(&terabyte);
            }
        }
        assert!(read(&bytes).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("ADIT_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000)))]
        /// Any bytes changed in a valid stream (plain or compressed) are refused or read,
        /// never a panic.
        #[test]
        fn mutated_streams_never_panic(
            compressed in proptest::prelude::any::<bool>(),
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::option::of(proptest::prelude::any::<usize>()),
        ) {
            let mut bytes = stream(compressed.then_some(CompressionType::LZ4_FRAME));
            for (at, value) in edits {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            // A mutation may also strip the compression flag: then the body is read as it is.
            let outcome = std::panic::catch_unwind(|| read(&bytes));
            proptest::prop_assert!(outcome.is_ok(), "a panic on {:?}", bytes);
        }
    }
}
