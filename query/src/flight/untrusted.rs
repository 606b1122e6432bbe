//! Arrow IPC from a client, checked before Arrow reads it: the parameter rows of a `DoPut` and
//! the parameters a prepared statement's handle carries back. Arrow's reader trusts what a
//! message declares: a compressed buffer's uncompressed length is allocated as declared (one
//! message saying "a terabyte" ends the process), and a buffer placed past the body panics.
//! So every message is read here first, from its flatbuffer: compressed bodies are refused
//! (parameters are one small row; no client needs them), every buffer must lie inside the
//! body, and the counts of rows, columns and buffers are bounded.

use arrow::ipc::{MessageHeader, RecordBatch as BatchHeader, root_as_message};

/// Most rows one client batch may declare.
pub const MAX_ROWS: i64 = 1_000_000;
/// Most field nodes (columns, nested ones counted) and buffers one batch may declare.
pub const MAX_NODES: usize = 10_000;

/// Checks one message: its flatbuffer `header`, and the length of the body that follows it.
pub fn check_message(header: &[u8], body_len: usize) -> Result<(), String> {
    let message = root_as_message(header).map_err(|e| format!("not an Arrow IPC message: {e}"))?;
    let declared = usize::try_from(message.bodyLength())
        .map_err(|_| format!("a body of {} bytes", message.bodyLength()))?;
    if declared > body_len {
        return Err(format!(
            "a body of {declared} bytes declared, {body_len} sent"
        ));
    }
    match message.header_type() {
        MessageHeader::Schema => Ok(()),
        MessageHeader::RecordBatch => match message.header_as_record_batch() {
            Some(batch) => check_batch(&batch, declared),
            None => Err("a record batch without its header".into()),
        },
        MessageHeader::DictionaryBatch => {
            match message.header_as_dictionary_batch().and_then(|d| d.data()) {
                Some(batch) => check_batch(&batch, declared),
                None => Err("a dictionary batch without its data".into()),
            }
        }
        other => Err(format!(
            "an Arrow IPC message of kind {other:?} is not taken"
        )),
    }
}

/// Checks a batch's header against the `body_len` bytes of its body.
fn check_batch(batch: &BatchHeader<'_>, body_len: usize) -> Result<(), String> {
    if batch.compression().is_some() {
        return Err("compressed Arrow IPC is not taken from clients".into());
    }
    if !(0..=MAX_ROWS).contains(&batch.length()) {
        return Err(format!(
            "a batch of {} rows (at most {MAX_ROWS})",
            batch.length()
        ));
    }
    let nodes = batch.nodes().map_or(0, |n| n.len());
    let buffers = batch.buffers();
    if nodes > MAX_NODES || buffers.as_ref().map_or(0, |b| b.len()) > 3 * MAX_NODES {
        return Err(format!("a batch of more than {MAX_NODES} columns"));
    }
    for node in batch.nodes().iter().flatten() {
        if !(0..=MAX_ROWS).contains(&node.length())
            || !(0..=node.length()).contains(&node.null_count())
        {
            return Err(format!(
                "a column of {} values, {} null",
                node.length(),
                node.null_count()
            ));
        }
    }
    for buffer in buffers.iter().flatten() {
        let end = usize::try_from(buffer.offset())
            .ok()
            .zip(usize::try_from(buffer.length()).ok())
            .and_then(|(offset, length)| offset.checked_add(length));
        if end.is_none_or(|end| end > body_len) {
            return Err(format!(
                "a buffer at {} of {} bytes, past a body of {body_len}",
                buffer.offset(),
                buffer.length()
            ));
        }
    }
    Ok(())
}

/// Checks every message of an Arrow IPC stream (as `StreamWriter` writes it).
pub fn check_stream(mut bytes: &[u8]) -> Result<(), String> {
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
        check_message(header, body.len())?;
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
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::CompressionType;
    use arrow::ipc::reader::StreamReader;
    use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};

    fn row() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("0", DataType::Utf8, true),
            Field::new("1", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("site-01")])),
                Arc::new(Int64Array::from(vec![Some(42)])),
            ],
        )
        .unwrap()
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
            let outcome = std::panic::catch_unwind(|| read(&bytes));
            proptest::prop_assert!(outcome.is_ok(), "a panic on {:?}", bytes);
            if compressed {
                proptest::prop_assert!(outcome.unwrap().is_err(), "a compressed stream was read");
            }
        }
    }
}
