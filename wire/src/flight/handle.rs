//! What a prepared statement's handle carries: its SQL, the number of the plan kept for its
//! first run, and, once the client has bound them, its parameter values as one row of Arrow
//! IPC. The server needs nothing kept between calls (a plan kept is a shortcut,
//! `super::planned`): the handle goes to the client and comes back, so it is read as hostile
//! input (bounded in size, parsed, and its SQL run under the caller's own role and limits, as if
//! sent as a statement; a plan is found only for the caller and SQL it was made for).

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use datafusion::common::{ParamValues, ScalarValue};
use serde::{Deserialize, Serialize};

/// Largest handle accepted back from a client, bytes.
pub(super) const MAX_HANDLE_BYTES: usize = 4 * 1024 * 1024;

/// A prepared statement between calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Handle {
    /// The statement.
    pub sql: String,
    /// The plan made when it was prepared, kept for its first run (`super::planned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<u64>,
    /// Its bound parameter values: one row, Arrow IPC stream, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<String>,
}

impl Handle {
    /// A handle for `sql`, planned as `plan`, with nothing bound.
    pub(super) fn new(sql: String, plan: Option<u64>) -> Self {
        Self {
            sql,
            plan,
            params: None,
        }
    }

    /// The same statement with `batch`'s one row as its parameter values.
    pub(super) fn bound(&self, batch: &RecordBatch) -> Result<Self, String> {
        if batch.num_rows() != 1 {
            return Err(format!(
                "parameters are bound one row at a time, not {}",
                batch.num_rows()
            ));
        }
        let mut ipc = Vec::new();
        let mut writer = StreamWriter::try_new(&mut ipc, &batch.schema())
            .map_err(|e| format!("parameters: {e}"))?;
        writer
            .write(batch)
            .map_err(|e| format!("parameters: {e}"))?;
        writer.finish().map_err(|e| format!("parameters: {e}"))?;
        drop(writer);
        Ok(Self {
            sql: self.sql.clone(),
            plan: None,
            params: Some(STANDARD.encode(ipc)),
        })
    }

    /// The bytes the client holds.
    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A handle a client sent back.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_HANDLE_BYTES {
            return Err(format!(
                "a prepared statement handle has at most {MAX_HANDLE_BYTES} bytes"
            ));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| format!("not a prepared statement handle from this server: {e}"))
    }

    /// The bound parameter values, in order (`None`: nothing bound).
    pub(super) fn params(&self) -> Result<Option<ParamValues>, String> {
        let Some(text) = &self.params else {
            return Ok(None);
        };
        let ipc = STANDARD
            .decode(text)
            .map_err(|e| format!("parameters: {e}"))?;
        adit_ipc::check_stream(&ipc).map_err(|e| format!("parameters: {e}"))?;
        let mut reader =
            StreamReader::try_new(ipc.as_slice(), None).map_err(|e| format!("parameters: {e}"))?;
        let batch = match reader.next() {
            Some(Ok(batch)) if batch.num_rows() == 1 => batch,
            Some(Err(e)) => return Err(format!("parameters: {e}")),
            _ => return Err("parameters: not one row".into()),
        };
        let values = batch
            .columns()
            .iter()
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("parameters: {e}"))?;
        Ok(Some(ParamValues::from(values)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn bound_values_come_back_in_order_and_garbage_is_refused() {
        let handle = Handle::new("SELECT $1, $2".into(), None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("0", DataType::Utf8, true),
            Field::new("1", DataType::Int64, true),
        ]));
        let row = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("site-01")])),
                Arc::new(Int64Array::from(vec![Some(42)])),
            ],
        )
        .unwrap();
        let bound = Handle::decode(&handle.bound(&row).unwrap().encode()).unwrap();
        assert_eq!(bound.sql, "SELECT $1, $2");
        let ParamValues::List(values) = bound.params().unwrap().unwrap() else {
            panic!("positional values")
        };
        let values: Vec<_> = values.into_iter().map(|v| v.value).collect();
        assert_eq!(
            values,
            vec![
                ScalarValue::Utf8(Some("site-01".into())),
                ScalarValue::Int64(Some(42))
            ]
        );
        assert!(
            Handle::decode(&handle.encode())
                .unwrap()
                .params()
                .unwrap()
                .is_none()
        );
        let two = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2)])),
            ],
        )
        .unwrap();
        assert!(handle.bound(&two).is_err());
        assert!(Handle::decode(b"SELECT 1").is_err());
        assert!(Handle::decode(&vec![b' '; MAX_HANDLE_BYTES + 1]).is_err());
        let forged = br#"{"sql": "SELECT 1", "params": "not base64!"}"#;
        assert!(Handle::decode(forged).unwrap().params().is_err());
    }
}
