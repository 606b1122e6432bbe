//! Leases against a real nats-server when the server does not expire a dead holder's key (a
//! replicated bucket whose leader moved can keep it, nats-io/nats-server#3653; here a bucket
//! with no max age stands in for that): a standby takes the lease over once it has seen the
//! same revision for a whole TTL, and never while the holder renews.

use std::time::{Duration, Instant};

use adit_bus::Lease;
use adit_testkit::NatsServer;
use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(1);

async fn bucket(nats: &NatsServer) -> kv::Store {
    let js = nats.jetstream().await;
    // No max age: a key is never expired by the server.
    adit_bus::setup::ensure_bucket(&js, "leases_without_ttl", 1, None, None, 1)
        .await
        .unwrap();
    js.get_key_value("leases_without_ttl").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_key_the_server_keeps_is_taken_over_after_a_ttl() {
    let nats = NatsServer::start();
    let kv = bucket(&nats).await;
    kv.put("telemetry", "a-holder-that-died".into())
        .await
        .unwrap();
    let started = Instant::now();
    let lease = tokio::time::timeout(
        10 * TTL,
        Lease::acquire(
            kv.clone(),
            "telemetry",
            "standby",
            TTL,
            &CancellationToken::new(),
        ),
    )
    .await
    .expect("the dead holder's lease was never taken over")
    .unwrap()
    .unwrap();
    let waited = started.elapsed();
    assert!(waited >= TTL, "taken over after only {waited:?}");
    assert!(lease.is_valid());
    let value = kv.get("telemetry").await.unwrap().unwrap();
    assert_eq!(&value[..], b"standby");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_renews_is_never_taken_over() {
    let nats = NatsServer::start();
    let kv = bucket(&nats).await;
    let shutdown = CancellationToken::new();
    let holder = Lease::acquire(kv.clone(), "telemetry", "holder", TTL, &shutdown)
        .await
        .unwrap()
        .unwrap();
    let standby = tokio::time::timeout(
        5 * TTL,
        Lease::acquire(kv.clone(), "telemetry", "standby", TTL, &shutdown),
    )
    .await;
    assert!(standby.is_err(), "a standby took a renewed lease");
    assert!(holder.is_valid(), "the holder lost its lease");
    let value = kv.get("telemetry").await.unwrap().unwrap();
    assert_eq!(&value[..], b"holder");
    // Once it stops renewing (dropped, as a crashed process), the standby takes over.
    drop(holder);
    let taken = tokio::time::timeout(
        10 * TTL,
        Lease::acquire(kv.clone(), "telemetry", "standby", TTL, &shutdown),
    )
    .await
    .expect("never taken after the holder stopped")
    .unwrap();
    assert!(taken.is_some());
}
