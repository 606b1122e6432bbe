//! Process wiring: connect ([`crate::services`]), run the chosen roles ([`crate::roles`]) as
//! tasks under one shutdown token, and drain them.

use std::time::Duration;

use adit_ingest::simulate::SimConfig;
use tokio_util::sync::CancellationToken;

use crate::cli::Role;
use crate::config::Config;
use crate::roles::{self, Shared, Tasks};
use crate::services::connect;

/// How long open work may take to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(20);

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
        roles::payments(&shared, &mut tasks, node.as_ref())?;
    }
    let mut adapters = config.adapters.clone();
    if has(Role::Simulate) {
        let feeds = roles::simulate(&shared, &mut tasks, sim, has(Role::Adapters)).await?;
        for feed in adapters.add_feeds_where_none(feeds) {
            tracing::info!(site = %feed.site, kind = ?feed.kind, "the simulated farm's grid feed is not read: the site has its own source");
        }
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
    services.close().await;
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
