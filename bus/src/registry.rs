//! The registry bucket (`adit_registry`): reading it whole, and changing it with the checks a
//! change must pass (fields, references, dependents, optimistic concurrency).
//!
//! Every value written is a [`RegistryEntry`] naming who changed it and when; a delete writes
//! a tombstone entry rather than removing the key, so the bucket's stream holds the change
//! with its author, and the `registry` pipeline can record it. The HTTP API (`query`) and the
//! simulator both change the registry through [`Registry`] only.

use std::time::Duration;

use adit_schemas::names;
use adit_schemas::registry::{
    ChangeOp, FieldError, Record, RecordKind, RegistryEntry, RegistryView,
};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;

use crate::error::BoxError;

/// How long reading the whole bucket may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a registry read or change failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A field is refused (answered with 400).
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// No such record.
    #[error("no {0} in the registry")]
    NotFound(String),
    /// The change conflicts with the registry's current state (a stale revision, a record
    /// others still name).
    #[error("{0}")]
    Conflict(String),
    /// The bucket could not be read or written.
    #[error("registry bucket: {0}")]
    Kv(#[source] BoxError),
}

impl RegistryError {
    fn kv(e: impl Into<BoxError>) -> Self {
        Self::Kv(e.into())
    }
}

/// A record with the bucket revision that holds it (its ETag).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The record.
    pub record: Record,
    /// The revision of its value.
    pub revision: u64,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The record's revision now.
    pub revision: u64,
    /// The record it replaced, if any.
    pub before: Option<Record>,
    /// Whether anything was written (a put of the record as it already is writes nothing).
    pub written: bool,
}

/// The registry bucket.
#[derive(Clone)]
pub struct Registry {
    js: jetstream::Context,
    kv: kv::Store,
}

impl Registry {
    /// Opens the bucket (created by [`crate::ensure_buckets`]).
    pub async fn open(js: jetstream::Context) -> Result<Self, RegistryError> {
        let kv = js
            .get_key_value(names::KV_REGISTRY)
            .await
            .map_err(RegistryError::kv)?;
        Ok(Self { js, kv })
    }

    /// Every current record with its revision, in key order.
    pub async fn snapshot(&self) -> Result<Vec<(String, Versioned)>, RegistryError> {
        tokio::time::timeout(SNAPSHOT_TIMEOUT, self.read_all())
            .await
            .map_err(|_| RegistryError::Kv("reading the registry bucket timed out".into()))?
    }

    async fn read_all(&self) -> Result<Vec<(String, Versioned)>, RegistryError> {
        let mut stream = self
            .js
            .get_stream(names::STREAM_REGISTRY)
            .await
            .map_err(RegistryError::kv)?;
        let info = stream.info().await.map_err(RegistryError::kv)?;
        let mut out = std::collections::BTreeMap::new();
        if info.state.messages == 0 {
            return Ok(Vec::new());
        }
        let mut watch = self
            .kv
            .watch_with_history(">")
            .await
            .map_err(RegistryError::kv)?;
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(RegistryError::kv)?;
            let last = entry.delta == 0;
            match decode(&entry) {
                Some(Ok(e)) => match e.record {
                    Some(record) => {
                        out.insert(
                            entry.key.clone(),
                            Versioned {
                                record,
                                revision: entry.revision,
                            },
                        );
                    }
                    None => {
                        out.remove(&entry.key);
                    }
                },
                Some(Err(reason)) => {
                    tracing::warn!(key = %entry.key, %reason, "unreadable registry value skipped");
                }
                None => {
                    out.remove(&entry.key);
                }
            }
            if last {
                break;
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The current registry as pipelines see it.
    pub async fn view(&self) -> Result<RegistryView, RegistryError> {
        Ok(RegistryView {
            records: self
                .snapshot()
                .await?
                .into_iter()
                .map(|(k, v)| (k, v.record))
                .collect(),
        })
    }

    /// Records of `kind` (of `site`, when given), in key order.
    pub async fn list(
        &self,
        kind: RecordKind,
        site: Option<&str>,
    ) -> Result<Vec<Versioned>, RegistryError> {
        Ok(self
            .snapshot()
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| v.record.kind() == kind)
            .filter(|v| site.is_none() || v.record.site() == site)
            .collect())
    }

    /// The record at `key`.
    pub async fn get(&self, key: &str) -> Result<Versioned, RegistryError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(RegistryError::kv)?
            .ok_or_else(|| RegistryError::NotFound(key.to_string()))?;
        match decode(&entry) {
            Some(Ok(RegistryEntry {
                record: Some(record),
                ..
            })) => Ok(Versioned {
                record,
                revision: entry.revision,
            }),
            Some(Err(reason)) => Err(RegistryError::Kv(
                format!("value of {key} is unreadable: {reason}").into(),
            )),
            _ => Err(RegistryError::NotFound(key.to_string())),
        }
    }

    /// Creates or replaces `record` as `by`. With `expected`, only if the key's current
    /// revision is that one (0: only if it does not exist).
    pub async fn put(
        &self,
        record: Record,
        by: &str,
        expected: Option<u64>,
    ) -> Result<Changed, RegistryError> {
        let mut current = self.snapshot().await?.into_iter().collect();
        self.put_over(&mut current, record, by, expected).await
    }

    /// Puts each of `records` as `by`, in order, as [`Registry::put`] would (references
    /// checked, an unchanged record left alone, each write conditional on the revision read),
    /// against one read of the registry kept up to date with its own writes instead of a read
    /// of the whole bucket per record (registering a 2 000-machine farm took two minutes).
    /// Stops at the first refusal; returns how many records were written.
    pub async fn put_all(&self, records: Vec<Record>, by: &str) -> Result<usize, RegistryError> {
        let mut current = self.snapshot().await?.into_iter().collect();
        let mut written = 0;
        for record in records {
            let key = record.key();
            let changed = self.put_over(&mut current, record, by, None).await?;
            tracing::debug!(%key, revision = changed.revision, "registered");
            written += usize::from(changed.written);
        }
        Ok(written)
    }

    /// [`Registry::put`] against `current`, the registry as last read, which it updates
    /// with what it writes.
    async fn put_over(
        &self,
        current: &mut std::collections::BTreeMap<String, Versioned>,
        record: Record,
        by: &str,
        expected: Option<u64>,
    ) -> Result<Changed, RegistryError> {
        record.validate()?;
        for (field, key) in record.references() {
            if !current.contains_key(&key) {
                return Err(FieldError::new(
                    field,
                    format!("{key} is not in the registry; create it first"),
                )
                .into());
            }
        }
        let key = record.key();
        let existing = current.get(&key).cloned();
        if let Some(same) = existing.as_ref().filter(|v| v.record == record)
            && expected.is_none_or(|want| want == same.revision)
        {
            return Ok(Changed {
                revision: same.revision,
                before: Some(same.record.clone()),
                written: false,
            });
        }
        let entry = RegistryEntry {
            key: key.clone(),
            op: ChangeOp::Put,
            by: by.to_string(),
            at: Utc::now(),
            record: Some(record.clone()),
        };
        let revision = self
            .write(&entry, expected, existing.as_ref().map(|v| v.revision))
            .await?;
        current.insert(key, Versioned { record, revision });
        Ok(Changed {
            revision,
            before: existing.map(|v| v.record),
            written: true,
        })
    }

    /// Deletes the record at `key` as `by`, unless another record still names it.
    pub async fn delete(
        &self,
        key: &str,
        by: &str,
        expected: Option<u64>,
    ) -> Result<Changed, RegistryError> {
        let current = self.snapshot().await?;
        let existing = current
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| RegistryError::NotFound(key.to_string()))?;
        let dependents: Vec<&str> = current
            .iter()
            .filter(|(_, v)| v.record.references().iter().any(|(_, r)| r == key))
            .map(|(k, _)| k.as_str())
            .collect();
        if !dependents.is_empty() {
            let shown: Vec<_> = dependents.iter().take(5).copied().collect();
            return Err(RegistryError::Conflict(format!(
                "{key} is still named by {} record(s) ({}{}); delete or move them first",
                dependents.len(),
                shown.join(", "),
                if dependents.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )));
        }
        let entry = RegistryEntry {
            key: key.to_string(),
            op: ChangeOp::Delete,
            by: by.to_string(),
            at: Utc::now(),
            record: None,
        };
        let revision = self
            .write(&entry, expected, Some(existing.revision))
            .await?;
        Ok(Changed {
            revision,
            before: Some(existing.record),
            written: true,
        })
    }

    /// Writes `entry`: against the revision the caller expects, else against the one just
    /// read (so two writers cannot both believe they replaced the same value).
    async fn write(
        &self,
        entry: &RegistryEntry,
        expected: Option<u64>,
        current: Option<u64>,
    ) -> Result<u64, RegistryError> {
        entry.check()?;
        let value = Bytes::from(serde_json::to_vec(entry).map_err(RegistryError::kv)?);
        let stale = |e: &dyn std::fmt::Display| {
            RegistryError::Conflict(format!(
                "{} changed since it was read (revision {}): {e}; read it again and retry",
                entry.key,
                current.unwrap_or(0)
            ))
        };
        match expected {
            Some(want) if Some(want) != current && !(want == 0 && current.is_none()) => {
                Err(RegistryError::Conflict(format!(
                    "{} is at revision {}, not {want}",
                    entry.key,
                    current.unwrap_or(0)
                )))
            }
            _ => match current {
                Some(rev) => self
                    .kv
                    .update(&entry.key, value, rev)
                    .await
                    .map_err(|e| stale(&e)),
                // A deleted record's key still holds its tombstone: replace that one.
                None => match self.kv.entry(&entry.key).await.map_err(RegistryError::kv)? {
                    Some(tombstone) => self
                        .kv
                        .update(&entry.key, value, tombstone.revision)
                        .await
                        .map_err(|e| stale(&e)),
                    None => self
                        .kv
                        .create(&entry.key, value)
                        .await
                        .map_err(|e| stale(&e)),
                },
            },
        }
    }
}

/// The entry in a KV value: `None` for a KV-level delete or purge (not written by adit, but
/// a tool may), `Some(Err)` for a value that is not an entry.
fn decode(entry: &kv::Entry) -> Option<Result<RegistryEntry, String>> {
    if entry.operation != kv::Operation::Put {
        return None;
    }
    Some(serde_json::from_slice::<RegistryEntry>(&entry.value).map_err(|e| e.to_string()))
}
