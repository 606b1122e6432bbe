//! What the adapters' tests share: a bus on a private nats-server, timings for loopback, and
//! the `adapters` role started and stopped.

use std::time::Duration;

use adit_bus::registry::Registry;
use adit_bus::{Publisher, ensure_buckets, ensure_streams};
use adit_ingest::adapters::poll::{self, AdaptersConfig, AdaptersError};
use adit_testkit::NatsServer;
use adit_testkit::tail::WAIT;
use async_nats::jetstream::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `nats`'s JetStream with adit's streams and buckets, and the registry in them.
pub(crate) async fn bus(nats: &NatsServer) -> (Context, Registry) {
    let js = nats.jetstream().await;
    ensure_streams(&js, &Default::default())
        .await
        .expect("streams");
    ensure_buckets(&js, 1).await.expect("buckets");
    let registry = Registry::open(js.clone()).await.expect("registry");
    (js, registry)
}

/// The adapters' config with timings generous for loopback, so a loaded machine does not turn
/// a device stale by itself.
pub(crate) fn loopback() -> AdaptersConfig {
    AdaptersConfig {
        interval: Duration::from_millis(300),
        timeout: Duration::from_millis(250),
        max_backoff: Duration::from_millis(600),
        stale_after: Duration::from_millis(1500),
        registry_refresh: Duration::from_millis(200),
        ..AdaptersConfig::default()
    }
}

/// The `adapters` role with `config`, publishing into `js` until `shutdown`.
pub(crate) fn spawn_role(
    config: AdaptersConfig,
    registry: Registry,
    js: &Context,
    shutdown: &CancellationToken,
) -> JoinHandle<Result<(), AdaptersError>> {
    tokio::spawn(poll::run(
        config,
        adit_testkit::tail::loopback_egress(),
        registry,
        Publisher::new(js.clone()),
        shutdown.clone(),
    ))
}

/// Fails unless `role`, told to stop, ends in time, without a panic or an error.
pub(crate) async fn stopped(role: JoinHandle<Result<(), AdaptersError>>) {
    tokio::time::timeout(WAIT, role)
        .await
        .expect("the role stops on shutdown")
        .expect("no panic")
        .expect("the role ends without error");
}
