//! The connections every role and command uses: NATS (or the managed nats-server started
//! here), with the streams and buckets created, the publisher and the registry bucket.

use std::time::Duration;

use adit_bus::registry::Registry;
use adit_bus::{Publisher, ensure_buckets, ensure_streams};
use async_nats::jetstream;

use crate::config::Config;
use crate::nats_server::{self, ManagedNats};

/// Connections every role uses.
pub struct Services {
    /// The NATS client.
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// Event publisher.
    pub publisher: Publisher,
    /// The registry bucket, opened once for every role that reads or changes it.
    pub registry: Registry,
    /// The managed nats-server, if this process started one.
    pub managed: Option<ManagedNats>,
}

/// How long the NATS connection may take to send what it holds at the end.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

impl Services {
    /// The end of a process's use of NATS: see [`close`].
    pub async fn close(self) {
        close(&self.client, self.managed).await;
    }
}

/// Closes the NATS connection (what it queued sent first), then stops the managed
/// nats-server if this process started one: stopped under a live connection, the client
/// would log a lost connection and a failed reconnect at every clean shutdown.
pub async fn close(client: &async_nats::Client, managed: Option<ManagedNats>) {
    if !adit_bus::close(client, CLOSE_WITHIN).await {
        tracing::debug!("the NATS connection was not closed within {CLOSE_WITHIN:?}");
    }
    if let Some(managed) = managed {
        managed.stop().await;
    }
}

/// Connects to the configured NATS (or starts the managed one) and creates the streams and
/// buckets.
pub async fn connect(config: &Config) -> anyhow::Result<Services> {
    let (client, managed) = connect_bare(config).await?;
    let js = jetstream::new(client.clone());
    // Each retried through a cluster's election or a node down; a permanent refusal says why.
    ensure_streams(&js, &config.nats.streams).await?;
    ensure_buckets(&js, config.nats.streams.replicas).await?;
    adit_bus::lease::ensure_bucket(
        &js,
        config.pipelines.lease_ttl,
        config.nats.streams.replicas,
    )
    .await?;
    Ok(Services {
        publisher: Publisher::new(js.clone()),
        registry: Registry::open(js.clone()).await?,
        client,
        js,
        managed,
    })
}

/// Connects to the configured NATS (or starts the managed one) and creates nothing.
pub async fn connect_bare(
    config: &Config,
) -> anyhow::Result<(async_nats::Client, Option<ManagedNats>)> {
    let (url, managed) = match &config.nats.url {
        Some(url) => (url.clone(), None),
        None => {
            nats_server::ensure(
                &config.data_dir(),
                config.nats.server_binary.as_deref(),
                &config.listen_ports(),
            )
            .await?
        }
    };
    Ok((
        adit_bus::connect_with(&url, &config.nats.auth()).await?,
        managed,
    ))
}
