//! Result encodings: JSON, NDJSON, CSV, Arrow IPC stream and Parquet, produced batch by batch
//! into a streamed HTTP body.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;

use crate::error::QueryError;

/// A result encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// CSV with a header row.
    Csv,
    /// Arrow IPC stream.
    Arrow,
    /// A Parquet file.
    Parquet,
}

impl Format {
    /// The format named `name` (`json`, `ndjson`, `csv`, `arrow`, `parquet`).
    pub fn from_name(name: &str) -> Result<Self, QueryError> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "json" => Self::Json,
            "ndjson" | "jsonl" => Self::Ndjson,
            "csv" => Self::Csv,
            "arrow" | "ipc" => Self::Arrow,
            "parquet" => Self::Parquet,
            other => {
                return Err(QueryError::BadRequest(format!(
                    "unknown format {other:?}; use json, ndjson, csv, arrow or parquet"
                )));
            }
        })
    }

    /// The format an `Accept` header asks for, if it names one.
    pub fn from_accept(accept: &str) -> Option<Self> {
        [
            ("application/x-ndjson", Self::Ndjson),
            ("text/csv", Self::Csv),
            ("application/vnd.apache.arrow.stream", Self::Arrow),
            ("application/vnd.apache.parquet", Self::Parquet),
            ("application/json", Self::Json),
        ]
        .into_iter()
        .find(|(mime, _)| accept.contains(mime))
        .map(|(_, f)| f)
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Arrow => "application/vnd.apache.arrow.stream",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Encodes a result one batch at a time; each call returns the bytes ready to send.
pub struct Encoder {
    /// The encoding and its writer state.
    inner: Inner,
    /// The format, to name in a refusal.
    format: Format,
}

enum Inner {
    Json { first: bool },
    Ndjson,
    Csv { header: bool, schema: SchemaRef },
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
    Parquet(Box<ArrowWriter<Vec<u8>>>),
}

fn internal(e: impl ToString) -> QueryError {
    QueryError::Internal(e.to_string())
}

impl Encoder {
    /// An encoder for `format` over results of `schema`; returns it and the opening bytes.
    pub fn new(format: Format, schema: &SchemaRef) -> Result<(Self, Bytes), QueryError> {
        let (inner, opening) = match format {
            Format::Json => (Inner::Json { first: true }, Bytes::from_static(b"[")),
            Format::Ndjson => (Inner::Ndjson, Bytes::new()),
            Format::Csv => (
                Inner::Csv {
                    header: true,
                    schema: schema.clone(),
                },
                Bytes::new(),
            ),
            Format::Arrow => {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)
                    .map_err(internal)?;
                let opening = Bytes::from(std::mem::take(w.get_mut()));
                (Inner::Arrow(Box::new(w)), opening)
            }
            Format::Parquet => {
                let w = ArrowWriter::try_new(Vec::new(), schema.clone(), None).map_err(internal)?;
                (Inner::Parquet(Box::new(w)), Bytes::new())
            }
        };
        Ok((Self { inner, format }, opening))
    }

    /// Encodes one batch. A value the format cannot carry (a map with non-string keys in JSON,
    /// a list in CSV) is the caller's 400, naming the formats that carry every type.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        let format = self.format;
        self.encode(batch).map_err(|e| {
            QueryError::BadRequest(format!(
                "the result cannot be written as {format:?}: {e}; the arrow and parquet formats \
                 carry every type"
            ))
        })
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        let out = match &mut self.inner {
            Inner::Json { first } => {
                let lines = ndjson(batch).map_err(internal)?;
                let mut out = Vec::with_capacity(lines.len() + 2);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if !*first {
                        out.push(b',');
                    }
                    *first = false;
                    out.extend_from_slice(line);
                }
                out
            }
            Inner::Ndjson => ndjson(batch).map_err(internal)?,
            Inner::Csv { header, .. } => {
                let mut out = Vec::new();
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(*header)
                    .build(&mut out);
                w.write(batch).map_err(internal)?;
                drop(w);
                *header = false;
                out
            }
            Inner::Arrow(w) => {
                w.write(batch).map_err(internal)?;
                std::mem::take(w.get_mut())
            }
            Inner::Parquet(w) => {
                w.write(batch).map_err(internal)?;
                w.flush().map_err(internal)?;
                std::mem::take(w.inner_mut())
            }
        };
        Ok(Bytes::from(out))
    }

    /// The closing bytes.
    pub fn finish(self) -> Result<Bytes, QueryError> {
        let out = match self.inner {
            Inner::Json { .. } => b"]".to_vec(),
            Inner::Ndjson => Vec::new(),
            Inner::Csv {
                header: true,
                schema,
            } => {
                // No batch was written: still send the header row.
                let mut out = Vec::new();
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                w.write(&RecordBatch::new_empty(schema)).map_err(internal)?;
                drop(w);
                out
            }
            Inner::Csv { header: false, .. } => Vec::new(),
            Inner::Arrow(mut w) => {
                w.finish().map_err(internal)?;
                std::mem::take(w.get_mut())
            }
            Inner::Parquet(w) => w.into_inner().map_err(internal)?,
        };
        Ok(Bytes::from(out))
    }
}

fn ndjson(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(&mut out);
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// `batches` as one JSON object per row (for the REST views).
pub(crate) fn json_rows(
    batches: &[RecordBatch],
) -> crate::error::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut out = Vec::new();
    for batch in batches {
        let lines = ndjson(batch).map_err(|e| crate::error::QueryError::Internal(e.to_string()))?;
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(
                serde_json::from_slice(line)
                    .map_err(|e| crate::error::QueryError::Internal(e.to_string()))?,
            );
        }
    }
    Ok(out)
}
