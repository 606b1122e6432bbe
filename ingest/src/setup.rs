//! Connecting to NATS and creating (or updating) adit's streams and KV buckets, idempotently.

use std::time::Duration;

use adit_schemas::names;
use async_nats::jetstream::{self, stream};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Limits every stream is created with; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// How long messages are kept (0 = forever).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Bytes a stream may hold (-1 = unlimited).
    pub max_bytes: i64,
    /// Copies of each stream; more than 1 needs a NATS cluster.
    pub replicas: usize,
    /// How long a `Nats-Msg-Id` is remembered for dedupe.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: -1,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// Connects to NATS at `url`, retrying on reconnect forever. Credentials in the URL
/// (`nats://user:password@host:port`, or `nats://token@host:port`, as the managed
/// nats-server's URL file holds them) are sent as such: the client itself ignores them there.
pub async fn connect(url: &str) -> Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .name("adit");
    let userinfo = url.split(',').find_map(|one| {
        let rest = one.split_once("://").map_or(one, |(_, rest)| rest);
        rest.rsplit_once('@').map(|(info, _)| info.to_string())
    });
    match userinfo.as_deref().map(|info| info.split_once(':')) {
        Some(Some((user, password))) => {
            options = options.user_and_password(user.to_string(), password.to_string());
        }
        Some(None) => options = options.token(userinfo.unwrap_or_default()),
        None => {}
    }
    options
        .connect(without_credentials(url))
        .await
        .map_err(|e| Error::Connect {
            url: without_credentials(url),
            source: Box::new(e),
        })
}

/// `url` (one NATS URL or a comma-separated list) with any `user:password@` or `token@` left
/// out, for logs and errors: the managed nats-server's URL carries its password.
pub fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|one| match one.rsplit_once('@') {
            Some((before, host)) => match before.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://{host}"),
                None => host.to_string(),
            },
            None => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates every stream of DESIGN.md §3, or updates its limits to `settings`.
pub async fn ensure_streams(js: &jetstream::Context, settings: &StreamSettings) -> Result<()> {
    for (name, subjects) in names::STREAMS {
        let config = stream::Config {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            max_age: settings.max_age,
            max_bytes: settings.max_bytes,
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            storage: stream::StorageType::File,
            allow_direct: true,
            ..Default::default()
        };
        js.create_or_update_stream(config)
            .await
            .map_err(|e| Error::Setup {
                name: name.to_string(),
                source: Box::new(e),
            })?;
    }
    Ok(())
}

/// Creates every KV bucket adit uses (registry, rules, channels, pipeline state) if missing.
///
/// The bucket's backing stream is created directly with the KV conventions (`KV_<bucket>`,
/// subjects `$KV.<bucket>.>`, per-key history, roll-ups), which every nats-server since 2.6
/// understands; the client's own bucket-creation request needs a newer server.
pub async fn ensure_buckets(js: &jetstream::Context, replicas: usize) -> Result<()> {
    for bucket in names::KV_BUCKETS {
        ensure_bucket(js, bucket, 10, None, replicas).await?;
    }
    Ok(())
}

/// Creates KV bucket `bucket` (or updates its limits) keeping `history` values per key; with
/// `max_age`, a key not written for that long disappears (how leases expire).
pub async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
    max_age: Option<Duration>,
    replicas: usize,
) -> Result<()> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        max_age: max_age.unwrap_or_default(),
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        duplicate_window: max_age
            .unwrap_or(Duration::from_secs(120))
            .min(Duration::from_secs(120)),
        ..Default::default()
    };
    js.create_or_update_stream(config)
        .await
        .map_err(|e| Error::Setup {
            name: bucket.to_string(),
            source: Box::new(e),
        })?;
    js.get_key_value(bucket).await.map_err(|e| Error::Setup {
        name: bucket.to_string(),
        source: Box::new(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_log() {
        assert_eq!(
            without_credentials("nats://adit:s3cret@127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            without_credentials("tok@n1:4222,nats://u:p@n2:4222,nats://n3:4222"),
            "n1:4222,nats://n2:4222,nats://n3:4222"
        );
    }
}
