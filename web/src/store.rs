//! Dashboards in the `adit_dashboards` KV bucket: `d.<id>` holds a dashboard with its owner
//! (the bucket keeps its last 64 revisions), `link.<key>` the id a public link opens. Writes
//! are conditional on the revision read, so two editors cannot overwrite each other unseen.
//!
//! A deleted dashboard's revisions are purged with it: whoever creates its id again starts a
//! history of their own and reads nothing of the previous owner's. The bucket has a size
//! (`adit_bus::setup::DASHBOARDS_MAX_BYTES`); a write is refused once it holds
//! [`FULL_AT`] of it, so deleting (a small purge marker) always fits.

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{DashboardError, Result};
use crate::model::Dashboard;

/// A dashboard as stored: what its owner wrote, who the owner is, its public link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// Its id.
    pub id: String,
    /// Who created it (a token's name or a JWT's subject).
    pub owner: String,
    /// Who wrote this revision.
    pub author: String,
    /// When this revision was written.
    pub updated: chrono::DateTime<chrono::Utc>,
    /// The key of its public link, while it is public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The dashboard.
    pub dashboard: Dashboard,
}

/// The share of the bucket's size past which a write is refused (per mille).
pub const FULL_AT: i64 = 875;

/// The bucket.
#[derive(Clone)]
pub struct DashboardStore {
    kv: kv::Store,
}

fn unavailable(e: impl std::fmt::Display) -> DashboardError {
    DashboardError::Unavailable(e.to_string())
}

fn key(id: &str) -> String {
    format!("d.{id}")
}

fn link_key(link: &str) -> String {
    format!("link.{link}")
}

/// A stored value read back; a value that does not parse is reported, not skipped.
fn parse(value: &[u8]) -> Result<Stored> {
    serde_json::from_slice(value)
        .map_err(|e| DashboardError::Broken(format!("a stored dashboard does not parse: {e}")))
}

impl DashboardStore {
    /// Opens the bucket (created at start with the others).
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self> {
        let kv = js
            .get_key_value(adit_schemas::names::KV_DASHBOARDS)
            .await
            .map_err(unavailable)?;
        Ok(Self { kv })
    }

    /// The dashboard `id` and its revision.
    pub async fn get(&self, id: &str) -> Result<Option<(Stored, u64)>> {
        match self.kv.entry(key(id)).await.map_err(unavailable)? {
            Some(e) if e.operation == Operation::Put => Ok(Some((parse(&e.value)?, e.revision))),
            _ => Ok(None),
        }
    }

    /// Whether `id` was ever written, deleted since or not (its history is kept).
    pub async fn ever_written(&self, id: &str) -> Result<bool> {
        Ok(self.kv.entry(key(id)).await.map_err(unavailable)?.is_some())
    }

    /// Every dashboard with its revision.
    pub async fn list(&self) -> Result<Vec<(Stored, u64)>> {
        let mut keys = self.kv.keys().await.map_err(unavailable)?;
        let mut ids = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(unavailable)?;
            if let Some(id) = k.strip_prefix("d.") {
                ids.push(id.to_string());
            }
        }
        let mut all = Vec::new();
        for id in ids {
            if let Some(found) = self.get(&id).await? {
                all.push(found);
            }
        }
        Ok(all)
    }

    /// Writes `stored`: created when `revision` is `None` (a 409 when it exists), else only
    /// over that revision (a 409 when someone wrote since). Its new revision.
    pub async fn put(&self, stored: &Stored, revision: Option<u64>) -> Result<u64> {
        let value = Bytes::from(
            serde_json::to_vec(stored).map_err(|e| DashboardError::Broken(e.to_string()))?,
        );
        let held = self.kv.stream.get_info().await.map_err(unavailable)?;
        let limit = adit_bus::setup::DASHBOARDS_MAX_BYTES * FULL_AT / 1000;
        let after = i64::try_from(held.state.bytes)
            .unwrap_or(i64::MAX)
            .saturating_add(i64::try_from(value.len()).unwrap_or(i64::MAX));
        if after > limit {
            return Err(DashboardError::Full(format!(
                "the dashboards bucket is full ({} of {limit} bytes); delete dashboards to make room",
                held.state.bytes
            )));
        }
        let written = match revision {
            None => self
                .kv
                .create(key(&stored.id), value)
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => DashboardError::Conflict(format!(
                        "dashboard {} exists; send If-Match with its revision to replace it",
                        stored.id
                    )),
                    _ => unavailable(e),
                }),
            Some(r) => self
                .kv
                .update(key(&stored.id), value, r)
                .await
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => DashboardError::Conflict(format!(
                        "dashboard {} changed since revision {r}; read it again",
                        stored.id
                    )),
                    _ => unavailable(e),
                }),
        }?;
        Ok(written)
    }

    /// Deletes dashboard `id` and every revision of it (a purge marker stays, so a shipped
    /// dashboard deleted is not installed again).
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.kv.purge(key(id)).await.map_err(unavailable)
    }

    /// The revisions of `id` since it was last created, oldest first (none of an earlier
    /// dashboard of the same id, should a deletion have left any).
    pub async fn history(&self, id: &str) -> Result<Vec<(Stored, u64)>> {
        let mut entries = self.kv.history(key(id)).await.map_err(unavailable)?;
        let mut all = Vec::new();
        while let Some(e) = entries.next().await {
            let e = e.map_err(unavailable)?;
            match e.operation {
                Operation::Put => all.push((parse(&e.value)?, e.revision)),
                Operation::Delete | Operation::Purge => all.clear(),
            }
        }
        Ok(all)
    }

    /// The id a public link opens.
    pub async fn linked(&self, link: &str) -> Result<Option<String>> {
        match self.kv.entry(link_key(link)).await.map_err(unavailable)? {
            Some(e) if e.operation == Operation::Put => {
                Ok(Some(String::from_utf8_lossy(&e.value).into_owned()))
            }
            _ => Ok(None),
        }
    }

    /// Makes `link` open `id`.
    pub async fn set_link(&self, link: &str, id: &str) -> Result<()> {
        self.kv
            .put(link_key(link), Bytes::from(id.to_string()))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Ends `link`.
    pub async fn end_link(&self, link: &str) -> Result<()> {
        self.kv.delete(link_key(link)).await.map_err(unavailable)
    }
}
