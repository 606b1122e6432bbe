//! Process wiring: connect (or start) NATS and set up its streams and buckets, run the chosen
//! roles ([`crate::roles`]) as tasks under one shutdown token, and drain them.

use std::time::Duration;

use adit_bus::registry::Registry;
use adit_bus::{Publisher, ensure_buckets, ensure_streams};
use adit_ingest::simulate::SimConfig;
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::cli::Role;
use crate::config::Config;
use crate::nats_server::{self, ManagedNats};
use crate::roles::{self, Shared, Tasks};

/// How long open work may take to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(20);

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

/// Connects to the configured NATS (or starts the managed one) and creates the streams and
/// buckets.
pub async fn connect(config: &Config) -> anyhow::Result<Services> {
    let (client, managed) = connect_bare(config).await?;
    let js = jetstream::new(client.clone());
    // Each retried through a cluster's election or a node down; a permanent refusal says why.
    ensure_streams(&js, &config.nats.streams).await?;
    ensure_buckets(&js, config.nats.streams.replicas).await?;
    adit_pipelines::runtime::ensure_lease_bucket(
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
            nats_server::ensure(&config.data_dir(), config.nats.server_binary.as_deref()).await?
        }
    };
    Ok((
        adit_bus::connect_with(&url, &config.nats.auth()).await?,
        managed,
    ))
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutting down: finishing the batches in hand");
        token.cancel();
    });
}

/// Runs `roles` until `shutdown`; the first role to fail cancels the rest and is returned.
pub async fn run_roles(
    config: &Config,
    roles: &[Role],
    sim: SimConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let services = connect(config).await?;
    let shared = Shared::new(config, &services, shutdown.clone())?;
    let has = |role| roles.contains(&role);
    let mut tasks = Tasks::new();
    if has(Role::Pipelines) {
        roles::pipelines(&shared, &mut tasks);
    }
    if has(Role::Query) {
        roles::query(&shared, &mut tasks).await?;
    }
    let mut node = None;
    if has(Role::Pool) {
        node = Some(roles::pool(&shared, &mut tasks).await?);
    }
    if has(Role::Payments) {
        roles::payments(&shared, &mut tasks);
    }
    let mut adapters = config.adapters.clone();
    if has(Role::Simulate) {
        let feeds = roles::simulate(&shared, &mut tasks, sim, has(Role::Adapters)).await?;
        adapters.grid.extend(feeds);
    }
    if has(Role::Adapters) {
        roles::adapters(&shared, &mut tasks, adapters);
    }
    if has(Role::Alerts) {
        roles::alerts(&shared, &mut tasks).await?;
    }
    if has(Role::Compliance) {
        roles::compliance(&shared, &mut tasks);
    }
    if has(Role::Backup) {
        roles::backup(&shared, &mut tasks)?;
    }
    if has(Role::Coordinator) {
        roles::coordinator(&shared, &mut tasks);
    }
    if has(Role::Notify) {
        roles::notify(&shared, &mut tasks).await?;
    }
    if has(Role::Actuators) {
        roles::actuators(&shared, &mut tasks);
    }
    // Only a process that writes tables depends on being able to.
    roles::health(&shared, &mut tasks, node, has(Role::Pipelines));
    let result = drain(tasks, &shutdown).await;
    drop(shared);
    if let Some(managed) = services.managed {
        managed.stop().await;
    }
    result
}

/// Waits for every task; the first to fail (or panic) cancels the rest, which get [`DRAIN`]
/// to finish what they hold before they are stopped.
async fn drain(mut tasks: Tasks, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let mut result = Ok(());
    let mut draining = false;
    loop {
        let joined = if draining {
            match tokio::time::timeout(DRAIN, tasks.join_next()).await {
                Ok(j) => j,
                Err(_) => {
                    tracing::warn!("roles did not finish within {DRAIN:?}; stopping them");
                    tasks.abort_all();
                    break;
                }
            }
        } else {
            tokio::select! {
                j = tasks.join_next() => j,
                _ = shutdown.cancelled() => { draining = true; continue; }
            }
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok(Ok(role)) => tracing::info!(role, "role finished"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "role failed; stopping the others");
                shutdown.cancel();
                draining = true;
                result = result.and(Err(e));
            }
            Err(e) => {
                shutdown.cancel();
                draining = true;
                result = result.and(Err(anyhow::anyhow!("a role panicked: {e}")));
            }
        }
    }
    result
}
