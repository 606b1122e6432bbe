//! Receivers and the route managed over the API: kept in the `adit_channels` KV bucket
//! (`receiver.<name>`, `route`) beside the silences, and laid over `[notify]` from the config
//! file: a managed receiver joins the file's (it may not take a file receiver's name), a
//! managed route replaces the file's. Every change is checked against the whole result
//! before it is stored, so what is in the bucket always makes a config that validates; the
//! `notify` role reads it again every `reload`.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;

use super::config::{NotifyConfig, Receiver, Route};
use crate::error::{AlertsError, Result};

/// The key prefix of managed receivers.
pub const RECEIVER_PREFIX: &str = "receiver.";
/// The key of the managed route.
pub const ROUTE_KEY: &str = "route";

/// What the API manages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Managed {
    /// Receivers added over the API.
    pub receivers: Vec<Receiver>,
    /// The route, when set over the API.
    pub route: Option<Route>,
}

impl NotifyConfig {
    /// This config with `managed` laid over it: its receivers join the file's, its route
    /// replaces the file's.
    pub fn with(&self, managed: &Managed) -> NotifyConfig {
        let mut merged = self.clone();
        merged.receivers.extend(managed.receivers.iter().cloned());
        if let Some(route) = &managed.route {
            merged.route = route.clone();
        }
        merged
    }
}

/// The managed receivers and route in the channels bucket.
#[derive(Clone)]
pub struct ManagedStore {
    kv: kv::Store,
}

impl ManagedStore {
    /// Opens the bucket.
    pub async fn open(js: &jetstream::Context) -> Result<Self> {
        Ok(Self {
            kv: super::channels_bucket(js).await?,
        })
    }

    /// Everything managed now. An entry that no longer parses (written by another version)
    /// is skipped with a warning.
    pub async fn read(&self) -> Result<Managed> {
        let mut keys = self.kv.keys().await.map_err(AlertsError::kv)?;
        let mut managed = Managed::default();
        while let Some(key) = keys.next().await {
            let key = key.map_err(AlertsError::kv)?;
            let is_receiver = key.starts_with(RECEIVER_PREFIX);
            if !is_receiver && key != ROUTE_KEY {
                continue;
            }
            let Some(bytes) = self.kv.get(&key).await.map_err(AlertsError::kv)? else {
                continue;
            };
            let parsed = if is_receiver {
                serde_json::from_slice(&bytes).map(|r| managed.receivers.push(r))
            } else {
                serde_json::from_slice(&bytes).map(|r| managed.route = Some(r))
            };
            if let Err(e) = parsed {
                tracing::warn!(%key, error = %e, "notify: a managed entry does not parse; skipped");
            }
        }
        managed.receivers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(managed)
    }

    /// Adds or replaces receiver `r`, if the config with it validates.
    pub async fn put_receiver(&self, file: &NotifyConfig, r: &Receiver) -> Result<()> {
        if file.receiver(&r.name).is_some() {
            return Err(AlertsError::Conflict(format!(
                "receiver {:?} is defined in the config file; change it there",
                r.name
            )));
        }
        let mut managed = self.read().await?;
        managed.receivers.retain(|o| o.name != r.name);
        managed.receivers.push(r.clone());
        check(file, &managed, AlertsError::Refused)?;
        self.put(&format!("{RECEIVER_PREFIX}{}", r.name), r).await
    }

    /// Removes receiver `name`; false when the API never added it.
    pub async fn delete_receiver(&self, file: &NotifyConfig, name: &str) -> Result<bool> {
        let mut managed = self.read().await?;
        let before = managed.receivers.len();
        managed.receivers.retain(|o| o.name != name);
        if managed.receivers.len() == before {
            return Ok(false);
        }
        check(file, &managed, AlertsError::Conflict)?;
        self.delete(&format!("{RECEIVER_PREFIX}{name}")).await?;
        Ok(true)
    }

    /// Sets the route, if the config with it validates.
    pub async fn put_route(&self, file: &NotifyConfig, route: &Route) -> Result<()> {
        let mut managed = self.read().await?;
        managed.route = Some(route.clone());
        check(file, &managed, AlertsError::Refused)?;
        self.put(ROUTE_KEY, route).await
    }

    /// Goes back to the file's route; false when none was set over the API.
    pub async fn delete_route(&self, file: &NotifyConfig) -> Result<bool> {
        let mut managed = self.read().await?;
        if managed.route.take().is_none() {
            return Ok(false);
        }
        check(file, &managed, AlertsError::Conflict)?;
        self.delete(ROUTE_KEY).await?;
        Ok(true)
    }

    async fn put(&self, key: &str, value: &impl serde::Serialize) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(AlertsError::kv)?;
        self.kv
            .put(key, bytes.into())
            .await
            .map_err(AlertsError::kv)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.kv.delete(key).await.map_err(AlertsError::kv)
    }
}

/// Whether `file` with `managed` laid over it validates; `err` wraps what does not (`key:
/// reason`, the key in full).
fn check(file: &NotifyConfig, managed: &Managed, err: fn(String) -> AlertsError) -> Result<()> {
    file.with(managed)
        .validate()
        .map_err(|invalid| err(invalid.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::Channel;

    fn hook(name: &str, url: &str) -> Receiver {
        Receiver {
            name: name.into(),
            channel: Channel::Webhook { url: url.into() },
            channels: Vec::new(),
            fallback: None,
        }
    }

    #[test]
    fn managed_receivers_join_the_files_and_a_managed_route_replaces_it() {
        let file = NotifyConfig {
            receivers: vec![hook("hook", "http://x/h")],
            route: Route {
                receiver: "hook".into(),
                ..Route::default()
            },
            ..NotifyConfig::default()
        };
        let managed = Managed {
            receivers: vec![hook("oncall", "http://x/o")],
            route: Some(Route {
                receiver: "oncall".into(),
                ..Route::default()
            }),
        };
        let merged = file.with(&managed);
        assert_eq!(merged.receivers.len(), 2);
        assert_eq!(merged.route.receiver, "oncall");
        assert!(merged.validate().is_ok());
        // Without the receiver it names, the managed route cannot stand.
        let orphan = Managed {
            receivers: Vec::new(),
            ..managed
        };
        let e = check(&file, &orphan, AlertsError::Conflict).unwrap_err();
        assert!(matches!(e, AlertsError::Conflict(_)), "{e}");
        assert!(e.to_string().contains("oncall"), "{e}");
    }
}
