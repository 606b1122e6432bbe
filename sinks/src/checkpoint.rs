//! The epoch log of a pipeline instance: one small object per epoch beside the tables
//! (`<root>/_adit/pipelines/<instance>/epoch-<n>.json`), written *before* the Delta commits
//! that carry that epoch.
//!
//! An epoch record says what the step of that epoch read (the position of every input after
//! it), when it ran (`now`, and the timers that fired) and, every so often, the pipeline's
//! state after it. With the epoch committed to each output table as its Delta application
//! transaction, a restart can replay exactly the epochs some table is missing, from a state
//! that belongs to them: state is never paired with positions it does not belong to.
//!
//! Records are JSON so an operator can read them; they live on the same object store as the
//! tables, so a state too big for a KV value is no problem.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::TableStore;

/// What one epoch of a pipeline instance did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch (1, 2, …).
    pub epoch: u64,
    /// Input name → last stream sequence read, after this epoch.
    pub positions: BTreeMap<String, u64>,
    /// Processing time of the step, µs since the epoch.
    pub now_us: i64,
    /// Timers that fired in this step.
    #[serde(default)]
    pub ticks: Vec<String>,
    /// The pipeline's state after this epoch, when a snapshot was taken; the key is absent
    /// when none was. A state that is JSON `null` (a stateless pipeline's `()`) is a snapshot
    /// like any other: a landing pipeline resumes from its last record, not from epoch 1.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub state: Option<Snapshot>,
    /// The output tables this epoch gave rows (absent in an older adit's records: any of them).
    /// A table behind the others is replayed only when a later epoch wrote to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Vec<String>>,
}

impl EpochRecord {
    /// Whether this epoch gave `table` rows (or may have: an older record does not say).
    pub fn wrote(&self, table: &str) -> bool {
        self.written
            .as_ref()
            .is_none_or(|tables| tables.iter().any(|t| t == table))
    }
}

/// A `state` key that is there is a snapshot, even when its value is `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Snapshot>, D::Error> {
    Snapshot::deserialize(deserializer).map(Some)
}

/// A pipeline's state as JSON text: serialized once from the state and copied into the record
/// as it is (a state of thousands of machines is megabytes; a tree of values in between cost a
/// second copy, and its encoding ran on the runtime's worker).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Snapshot(Box<serde_json::value::RawValue>);

impl Snapshot {
    /// `state` as JSON.
    pub fn of<T: Serialize + ?Sized>(state: &T) -> serde_json::Result<Self> {
        serde_json::value::to_raw_value(state).map(Self)
    }

    /// The state it holds, read as a `T`.
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }

    /// Whether it is JSON `null` (a stateless pipeline's `()`).
    pub fn is_null(&self) -> bool {
        self.0.get().trim() == "null"
    }

    /// Its JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

/// Two snapshots are equal when their texts are.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

/// The epoch records of one pipeline instance.
#[derive(Clone)]
pub struct EpochLog {
    /// The object store of the table root.
    store: Arc<dyn ObjectStore>,
    /// Folder of this instance's records.
    prefix: Path,
    /// For messages.
    instance: String,
}

impl std::fmt::Debug for EpochLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochLog")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn file_name(epoch: u64) -> String {
    format!("epoch-{epoch:020}.json")
}

fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix("epoch-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

impl EpochLog {
    /// The log of pipeline instance `instance` under `store`'s root.
    pub fn open(store: &TableStore, instance: &str) -> Result<Self> {
        let (object_store, root) = store.object_store()?;
        let prefix = root
            .join("_adit")
            .join("pipelines")
            .join(instance.to_string());
        Ok(Self {
            store: object_store,
            prefix,
            instance: instance.to_string(),
        })
    }

    fn err(&self, action: &'static str, source: object_store::Error) -> Error {
        Error::Checkpoint {
            instance: self.instance.clone(),
            action,
            source: Box::new(source),
        }
    }

    /// Writes (or overwrites) the record of `record.epoch`.
    pub async fn put(&self, record: &EpochRecord) -> Result<()> {
        let body = serde_json::to_vec(record).map_err(|e| Error::CheckpointFormat {
            instance: self.instance.clone(),
            source: e,
        })?;
        self.store
            .put_opts(
                &self.prefix.clone().join(file_name(record.epoch)),
                PutPayload::from(body),
                PutOptions::default(),
            )
            .await
            .map_err(|e| self.err("writing an epoch record", e))?;
        Ok(())
    }

    /// The record of `epoch`, if it was written.
    pub async fn get(&self, epoch: u64) -> Result<Option<EpochRecord>> {
        let location = self.prefix.clone().join(file_name(epoch));
        let found = match self.store.get_opts(&location, GetOptions::default()).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("reading an epoch record", e)),
        };
        let bytes = found
            .bytes()
            .await
            .map_err(|e| self.err("reading an epoch record", e))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::CheckpointFormat {
                instance: self.instance.clone(),
                source: e,
            })
    }

    /// Every epoch that has a record, in order.
    pub async fn epochs(&self) -> Result<Vec<u64>> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("listing epoch records", e))?;
        let mut epochs: Vec<u64> = metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(parse_name))
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Deletes the records of every epoch below `epoch`.
    pub async fn delete_below(&self, epoch: u64) -> Result<usize> {
        let old: Vec<object_store::Result<Path>> = self
            .epochs()
            .await?
            .into_iter()
            .filter(|e| *e < epoch)
            .map(|e| Ok(self.prefix.clone().join(file_name(e))))
            .collect();
        let mut deleted = 0;
        let mut results = self.store.delete_stream(futures::stream::iter(old).boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(err) => return Err(self.err("deleting an old epoch record", err)),
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_list_in_order_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let log = EpochLog::open(&store, "energy").unwrap();
        assert_eq!(log.get(1).await.unwrap(), None);
        for epoch in [3, 1, 12, 2] {
            let record = EpochRecord {
                epoch,
                positions: BTreeMap::from([("telemetry".to_string(), epoch * 10)]),
                now_us: 7,
                ticks: vec!["minute".into()],
                state: (epoch % 2 == 0)
                    .then(|| Snapshot::of(&serde_json::json!({"n": epoch})).unwrap()),
                written: Some(vec!["energy_minutes".into()]),
            };
            log.put(&record).await.unwrap();
        }
        assert_eq!(log.epochs().await.unwrap(), vec![1, 2, 3, 12]);
        let twelve = log.get(12).await.unwrap().unwrap();
        assert_eq!(twelve.positions["telemetry"], 120);
        let state: serde_json::Value = twelve.state.unwrap().read().unwrap();
        assert_eq!(state, serde_json::json!({"n": 12}));
        assert_eq!(log.delete_below(3).await.unwrap(), 2);
        assert_eq!(log.epochs().await.unwrap(), vec![3, 12]);
    }

    /// A stateless pipeline's snapshot is `null`: it must read back as a snapshot, or every
    /// restart of a landing pipeline replays from epoch 1 (and fails once that is pruned).
    #[test]
    fn a_null_state_is_a_snapshot_and_no_state_is_none() {
        let record = |state| EpochRecord {
            epoch: 4,
            positions: BTreeMap::new(),
            now_us: 0,
            ticks: Vec::new(),
            state,
            written: None,
        };
        let null = serde_json::to_string(&record(Some(Snapshot::of(&()).unwrap()))).unwrap();
        assert!(null.contains("\"state\":null"), "{null}");
        let back: EpochRecord = serde_json::from_str(&null).unwrap();
        assert!(
            back.state.as_ref().is_some_and(Snapshot::is_null),
            "{back:?}"
        );
        let none = serde_json::to_string(&record(None)).unwrap();
        assert!(!none.contains("state"), "{none}");
        let back: EpochRecord = serde_json::from_str(&none).unwrap();
        assert_eq!(back.state, None);
    }
}
