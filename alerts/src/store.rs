//! The rule groups in the `adit_rules` KV bucket (key = group name, value = the group as
//! JSON), written by the API and by loading a rules file, read by the evaluator.

use adit_schemas::names;
use adit_sql::syntax::TextLimits;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;

use crate::error::{AlertsError, Result};
use crate::rules::{RuleFile, RuleGroup};

/// The rules bucket.
#[derive(Clone)]
pub struct RuleStore {
    kv: kv::Store,
    /// The SQL text limits every `expr` is checked against (the evaluating engine's).
    limits: TextLimits,
}

impl RuleStore {
    /// Opens the bucket (created at start with the others); rules are checked against
    /// `limits`, those of the engine that evaluates them.
    pub async fn open(js: &jetstream::Context, limits: TextLimits) -> Result<Self> {
        let kv = js
            .get_key_value(names::KV_RULES)
            .await
            .map_err(AlertsError::kv)?;
        Ok(Self { kv, limits })
    }

    /// The SQL text limits rules are checked against.
    pub fn limits(&self) -> TextLimits {
        self.limits
    }

    /// Every group, in name order (a value that no longer reads or checks is skipped, with a
    /// warning).
    pub async fn groups(&self) -> Result<Vec<RuleGroup>> {
        let mut keys: Vec<String> = Vec::new();
        let mut stream = self.kv.keys().await.map_err(AlertsError::kv)?;
        while let Some(key) = stream.next().await {
            keys.push(key.map_err(AlertsError::kv)?);
        }
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let Some(bytes) = self.kv.get(&key).await.map_err(AlertsError::kv)? else {
                continue;
            };
            match serde_json::from_slice::<RuleGroup>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|g| {
                    g.validate(self.limits)
                        .map(|()| g)
                        .map_err(|e| e.to_string())
                }) {
                Ok(group) => out.push(group),
                Err(reason) => tracing::warn!(%key, %reason, "rule group skipped"),
            }
        }
        Ok(out)
    }

    /// One group.
    pub async fn get(&self, name: &str) -> Result<Option<RuleGroup>> {
        let Some(bytes) = self.kv.get(name).await.map_err(AlertsError::kv)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AlertsError::Kv(format!("rule group {name}: {e}")))
    }

    /// Checks and stores `group` under its name; returns the revision.
    pub async fn put(&self, group: &RuleGroup) -> Result<u64> {
        group.validate(self.limits)?;
        let bytes = serde_json::to_vec(group).map_err(|e| AlertsError::Kv(e.to_string()))?;
        self.kv
            .put(&group.name, bytes.into())
            .await
            .map_err(AlertsError::kv)
    }

    /// Deletes a group; whether it was there.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        if self.get(name).await?.is_none() {
            return Ok(false);
        }
        self.kv.delete(name).await.map_err(AlertsError::kv)?;
        Ok(true)
    }

    /// Stores every group of a rules file (replacing groups of the same names); how many.
    pub async fn load(&self, file: &RuleFile) -> Result<usize> {
        for group in &file.groups {
            self.put(group).await?;
        }
        Ok(file.groups.len())
    }
}
