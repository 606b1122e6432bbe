//! Leases against a real nats-server when the server does not expire a dead holder's key (a
//! replicated bucket whose leader moved can keep it, nats-io/nats-server#3653; here a bucket
//! with no max age stands in for that): a standby takes the lease over once it has seen the
//! same revision for a whole TTL, and never while the holder renews. And a holder stalled by a
//! busy host: slow is not lost, unless the key was taken meanwhile.

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

/// A bucket whose keys the server expires `ttl` after their last write, as the real one.
async fn expiring_bucket(nats: &NatsServer, ttl: Duration) -> kv::Store {
    let js = nats.jetstream().await;
    adit_bus::setup::ensure_bucket(&js, "leases_with_ttl", 1, Some(ttl), None, 1)
        .await
        .unwrap();
    js.get_key_value("leases_with_ttl").await.unwrap()
}

/// The stalled holders' TTL: long enough that the stall below ends well before the key could
/// expire, however busy the machine (2.4 s of margin).
const STALL_TTL: Duration = Duration::from_secs(6);

/// A holder of `payer` in an expiring bucket, just taken.
async fn holder(nats: &NatsServer) -> (kv::Store, Lease) {
    let kv = expiring_bucket(nats, STALL_TTL).await;
    let lease = Lease::acquire(
        kv.clone(),
        "payer",
        "holder",
        STALL_TTL,
        &CancellationToken::new(),
    )
    .await
    .unwrap()
    .unwrap();
    (kv, lease)
}

/// Blocks the calling thread (the test runtime's only one, which also drives the NATS client)
/// past the holder's trust (half the TTL), not past the key's expiry.
fn stall() {
    std::thread::sleep(STALL_TTL * 6 / 10);
}

/// A busy host stalls the holder's runtime (here: the one thread of the test's runtime, which
/// also drives the NATS client) past its trust but not past the key's expiry: slow is not
/// lost, so `confirm` renews on the spot and the holder keeps writing.
#[tokio::test]
async fn a_holder_stalled_past_its_trust_but_not_its_expiry_confirms_and_keeps_the_lease() {
    let nats = NatsServer::start();
    let (kv, lease) = holder(&nats).await;
    stall();
    assert!(!lease.is_valid(), "trusted past half its TTL");
    tokio::time::timeout(STALL_TTL, lease.confirm())
        .await
        .expect("confirm never answered")
        .expect("a stalled but unchallenged holder lost its lease");
    assert!(lease.is_valid());
    let value = kv.get("payer").await.unwrap().unwrap();
    assert_eq!(&value[..], b"holder");
}

/// The same stall while another process wrote the key: the renewal's compare-and-set is
/// refused, so `confirm` says the lease is lost and the holder writes nothing more.
#[tokio::test]
async fn a_stalled_holder_whose_key_was_taken_meanwhile_is_told_it_lost_the_lease() {
    let nats = NatsServer::start();
    let (kv, lease) = holder(&nats).await;
    kv.put("payer", "thief".into()).await.unwrap();
    stall();
    let confirmed = tokio::time::timeout(STALL_TTL, lease.confirm())
        .await
        .expect("confirm never answered");
    assert!(confirmed.is_err(), "a holder whose key was taken confirmed");
    assert!(!lease.is_valid());
    assert!(lease.lost().is_cancelled());
    let value = kv.get("payer").await.unwrap().unwrap();
    assert_eq!(&value[..], b"thief");
}
