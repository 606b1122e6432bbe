//! Leases against a real nats-server when the server does not expire a dead holder's key (a
//! replicated bucket whose leader moved can keep it, nats-io/nats-server#3653; here a bucket
//! with no max age stands in for that): a standby takes the lease over once it has seen the
//! same revision for a whole TTL, and never while the holder renews. And a holder stalled by a
//! busy host: slow is not lost, unless the key was taken meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use adit_bus::Lease;
use adit_testkit::NatsServer;
use async_nats::jetstream::kv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
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

/// A renewal the server applied but whose answer never came back (a reply lost in a
/// reconnect; here the holder's own name written behind its back does the same to the key):
/// the next renewal's compare-and-set, on the last revision answered, is refused. The key
/// still holds this holder's name, so no one else has it: the holder goes on from that
/// revision and keeps its lease, renewing on, and `confirm` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_applied_but_unanswered_does_not_lose_the_lease() {
    let nats = NatsServer::start();
    let (kv, lease) = holder(&nats).await;
    let applied = kv.put("payer", "holder".into()).await.unwrap();
    let renewed = async {
        loop {
            assert!(
                !lease.lost().is_cancelled(),
                "the holder gave up a lease whose key holds its own name"
            );
            if let Some(entry) = kv.entry("payer").await.unwrap()
                && entry.revision >= applied + 2
            {
                return entry;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let entry = tokio::time::timeout(STALL_TTL * 2, renewed)
        .await
        .expect("two renewals never followed the unanswered one");
    assert_eq!(&entry.value[..], b"holder");
    tokio::time::timeout(STALL_TTL, lease.confirm())
        .await
        .expect("confirm never answered")
        .expect("the lease was lost");
    assert!(lease.is_valid());
}

/// A process that gave its lease up (its server did not answer for a whole TTL) and asks for
/// it again finds its own name on the key: no one took it since, so it takes it back at once
/// instead of standing by for its own key to expire (here the key never expires, so waiting
/// would take a TTL as for a dead holder's key); another holder's key is still waited out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_takes_its_own_given_up_lease_back_at_once() {
    let ttl = Duration::from_secs(30);
    let nats = NatsServer::start();
    let kv = bucket(&nats).await;
    let before = kv.put("telemetry", "holder".into()).await.unwrap();
    let lease = tokio::time::timeout(
        ttl / 3,
        Lease::acquire(
            kv.clone(),
            "telemetry",
            "holder",
            ttl,
            &CancellationToken::new(),
        ),
    )
    .await
    .expect("its own lease was waited out like another holder's")
    .unwrap()
    .unwrap();
    assert!(lease.is_valid());
    let entry = kv.entry("telemetry").await.unwrap().unwrap();
    assert_eq!(&entry.value[..], b"holder");
    assert!(entry.revision > before);
    let other = tokio::time::timeout(
        Duration::from_secs(2),
        Lease::acquire(
            kv.clone(),
            "telemetry",
            "standby",
            ttl,
            &CancellationToken::new(),
        ),
    )
    .await;
    assert!(
        other.is_err(),
        "another process took a lease held and renewed"
    );
}

/// A TCP proxy to `port` on 127.0.0.1 for one connection, holding back every byte the server
/// sends by the delay in force when it came (`delay`, ms; 0 until the test sets it): a server
/// that answers late without being paused.
async fn late_answering_proxy(port: u16) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let delay = Arc::new(AtomicU64::new(0));
    let held = delay.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
        tokio::spawn(async move {
            while let Some((due, bytes)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                if to_client.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due =
                tokio::time::Instant::now() + Duration::from_millis(held.load(Ordering::Relaxed));
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    (format!("nats://{addr}"), delay)
}

/// A busy server answers the holder's renewals 7 s late: later than a JetStream request's
/// default timeout (5 s), well inside the lease's 20 s. The holder keeps its lease, as no one
/// else can have taken the key; given up at 5 s and tried again 4 s later (`ttl / 5`), every
/// renewal went unanswered until the key could have expired and the holder stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_server_answers_late_but_inside_the_ttl_keeps_its_lease() {
    let ttl = Duration::from_secs(20);
    let nats = NatsServer::start();
    let direct = nats.jetstream().await;
    adit_bus::lease::ensure_bucket(&direct, ttl, 1)
        .await
        .unwrap();
    let (url, delay) = late_answering_proxy(nats.port).await;
    let slow = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let shutdown = CancellationToken::new();
    let lease = Lease::acquire_in(&slow, "telemetry", "holder", ttl, &shutdown)
        .await
        .unwrap()
        .unwrap();
    delay.store(7_000, Ordering::Relaxed);
    // Three renewals through the late server (created at revision 1): the third is sent only
    // after the second's answer came back, 7 s late. A holder giving up at 5 s never gets
    // past its first (its retry's compare-and-set is on a revision the first moved on).
    let kv = direct
        .get_key_value(adit_schemas::names::KV_LEASES)
        .await
        .unwrap();
    let renewed = async {
        loop {
            if let Some(entry) = kv.entry("telemetry").await.unwrap()
                && entry.revision >= 4
            {
                return entry;
            }
            assert!(
                !lease.lost().is_cancelled(),
                "the lease was given up though its renewals were answered inside the TTL"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let entry = tokio::time::timeout(Duration::from_secs(90), renewed)
        .await
        .expect("three renewals never went through the late server");
    assert_eq!(&entry.value[..], b"holder");
    assert!(!lease.lost().is_cancelled());
}
