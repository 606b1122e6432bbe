//! A durable consumer against a real nats-server when its acks never arrive (as when a stream
//! leader moves and the acks go to the old one): it reaches its ack-pending limit and the
//! server stops sending. The consumer sees that messages wait while nothing new comes, and
//! re-creates itself after the last message it handed out: every message comes through, once.
//! It says it is stuck from then until it moves again (what the pipelines' `/ready` shows).
//! And its pull requests go on across a server restart and a deleted durable.

use std::time::{Duration, Instant};

use adit_bus::consumer::{BatchConsumer, ConsumerConfig};
use adit_bus::publish::Outgoing;
use adit_bus::{Publisher, ensure_streams};
use adit_schemas::{AnyEvent, SensorKind, SensorReading, names};

fn reading(i: usize) -> Outgoing {
    Outgoing::event(&AnyEvent::Sensor(SensorReading {
        site: "site-01".into(),
        sensor: format!("t-{}", i % 7),
        kind: SensorKind::Temperature,
        value: i as f64,
        ts: chrono::Utc::now(),
    }))
}

/// A whole-telemetry consumer `durable`, in batches of `max_rows`, stuck after `stall_after`.
fn telemetry(durable: &str, max_rows: usize, stall_after: Duration) -> ConsumerConfig {
    ConsumerConfig {
        stream: names::STREAM_TELEMETRY.into(),
        durable: durable.into(),
        filter_subject: String::new(),
        max_rows,
        max_wait: Duration::from_millis(50),
        stall_after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_acks_never_arrive_is_recreated_and_delivers_everything_once() {
    const MESSAGES: usize = 3_000;
    let nats = adit_testkit::NatsServer::start();
    let js = nats.jetstream().await;
    ensure_streams(&js, &Default::default()).await.unwrap();
    Publisher::new(js.clone())
        .publish_all((0..MESSAGES).map(reading).collect())
        .await
        .unwrap();
    let config = telemetry("stuck-test", 100, Duration::from_secs(2));
    let mut consumer = BatchConsumer::start(js.clone(), config, 0).await.unwrap();
    let mut seqs = Vec::new();
    let mut stuck_reasons = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seqs.len() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "stuck at {} of {MESSAGES} messages",
            seqs.len()
        );
        // Never acked: the server hands out at most max_ack_pending (1 024) of the 3 000
        // before it waits for acks; only re-creating the consumer gets past that.
        let batch = consumer.next_batch(Duration::from_millis(500)).await;
        if batch.is_empty() {
            stuck_reasons.extend(consumer.stuck().map(str::to_string));
        } else {
            // Stuck only until it moves again (what `/ready` shows).
            assert_eq!(consumer.stuck(), None, "moving again");
        }
        seqs.extend(batch.messages.iter().map(|m| m.seq));
    }
    assert!(
        stuck_reasons
            .iter()
            .any(|r| r.contains("wait and none came")),
        "the consumer said it was stuck: {stuck_reasons:?}"
    );
    let expected: Vec<u64> = (1..=MESSAGES as u64).collect();
    assert_eq!(seqs, expected, "every message once, in order");
    // The server agrees the consumer was re-created past its ack-pending limit.
    let info = js
        .get_stream(names::STREAM_TELEMETRY)
        .await
        .unwrap()
        .consumer_info("stuck-test")
        .await
        .unwrap();
    assert_eq!(info.num_pending, 0, "{info:?}");
    assert_eq!(info.delivered.stream_sequence, MESSAGES as u64, "{info:?}");
}

/// Takes batches from `consumer` (acking each) until `want` messages came or `within` passed.
async fn take(consumer: &mut BatchConsumer, want: usize, within: Duration) -> Vec<u64> {
    let mut seqs = Vec::new();
    let deadline = Instant::now() + within;
    while seqs.len() < want && Instant::now() < deadline {
        let batch = consumer.next_batch(Duration::from_millis(500)).await;
        seqs.extend(batch.messages.iter().map(|m| m.seq));
        batch.ack().await;
    }
    seqs
}

/// The consumer's own pull requests (`adit_bus::pull`) go on across what ends them: the
/// server restarting under it (the requests die with the connection and are asked again
/// within a second, not after a missed heartbeat) and its durable consumer deleted (the
/// server says so; it is re-created after the last message handed out). Every message comes
/// through once, in order, and the acks reach the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_go_on_across_a_server_restart_and_a_deleted_consumer() {
    const ROUND: usize = 500;
    let mut nats = adit_testkit::NatsServer::start();
    let js = nats.jetstream().await;
    ensure_streams(&js, &Default::default()).await.unwrap();
    let publisher = Publisher::new(js.clone());
    let config = telemetry("pull-test", 64, Duration::from_secs(30));
    let mut consumer = BatchConsumer::start(js.clone(), config, 0).await.unwrap();
    let mut seqs = Vec::new();

    publisher
        .publish_all((0..ROUND).map(reading).collect())
        .await
        .unwrap();
    seqs.extend(take(&mut consumer, ROUND, Duration::from_secs(30)).await);
    assert_eq!(seqs.len(), ROUND, "the first round");

    // The server restarts with its store: the pending requests are gone with the connection.
    nats.restart();
    let restarted = Instant::now();
    let mut sent = false;
    while !sent {
        // The client reconnects on its own; publish once it has.
        sent = Publisher::new(js.clone())
            .publish_all((ROUND..2 * ROUND).map(reading).collect())
            .await
            .is_ok();
        if !sent {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "no reconnect"
        );
    }
    seqs.extend(take(&mut consumer, ROUND, Duration::from_secs(30)).await);
    assert_eq!(seqs.len(), 2 * ROUND, "the round after the restart");
    let after_restart = restarted.elapsed();
    assert!(
        after_restart < Duration::from_secs(8),
        "asked again after the reconnect, not after a missed heartbeat: {after_restart:?}"
    );

    // The durable is deleted under the pull: the server ends its requests, and the consumer
    // is made again after the last sequence handed out.
    let stream = js.get_stream(names::STREAM_TELEMETRY).await.unwrap();
    stream.delete_consumer("pull-test").await.unwrap();
    publisher
        .publish_all((2 * ROUND..3 * ROUND).map(reading).collect())
        .await
        .unwrap();
    seqs.extend(take(&mut consumer, ROUND, Duration::from_secs(30)).await);

    let expected: Vec<u64> = (1..=3 * ROUND as u64).collect();
    assert_eq!(seqs, expected, "every message once, in order");
    // The last batch's ack reached the server: nothing waits and nothing is unacknowledged.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = stream.consumer_info("pull-test").await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            assert_eq!(info.ack_floor.stream_sequence, 3 * ROUND as u64, "{info:?}");
            break;
        }
        assert!(Instant::now() < deadline, "acks never arrived: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A backlog is handed out in full batches, then in batches that halve as it runs out, and
/// its last batch comes as soon as the stream is read to its end, without waiting for
/// `max_wait` (an hour here). A trickle after it is still gathered for `max_wait`, not handed
/// out a message at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlogs_tail_comes_in_halving_batches_without_waiting_and_a_trickle_is_gathered() {
    const BACKLOG: usize = 4_000;
    let nats = adit_testkit::NatsServer::start();
    let js = nats.jetstream().await;
    ensure_streams(&js, &Default::default()).await.unwrap();
    let publisher = Publisher::new(js.clone());
    publisher
        .publish_all((0..BACKLOG).map(reading).collect())
        .await
        .unwrap();
    let mut config = telemetry("tail-test", 1_600, Duration::from_secs(30));
    config.max_wait = Duration::from_secs(3600);
    let mut consumer = BatchConsumer::start(js.clone(), config, 0).await.unwrap();
    let mut sizes = Vec::new();
    let mut seqs = Vec::new();
    while seqs.len() < BACKLOG {
        let batch = tokio::time::timeout(
            Duration::from_secs(60),
            consumer.next_batch(Duration::from_secs(5)),
        )
        .await
        .unwrap_or_else(|_| panic!("a batch waited for max_wait after {sizes:?}"));
        assert!(!batch.is_empty(), "the backlog stopped after {sizes:?}");
        sizes.push(batch.messages.len());
        seqs.extend(batch.messages.iter().map(|m| m.seq));
    }
    // A full batch while more than two wait; then each closes once what is left is less than
    // it holds, down to 1 600 / 16 = 100; the last piece closes at the stream's end.
    assert_eq!(sizes, [1_600, 1_201, 600, 300, 150, 100, 49], "{sizes:?}");
    let expected: Vec<u64> = (1..=BACKLOG as u64).collect();
    assert_eq!(seqs, expected, "every message once, in order");

    // A trickle: each message the stream's last when sent. Gathered until max_wait.
    let mut config = telemetry("trickle-test", 1_600, Duration::from_secs(30));
    config.max_wait = Duration::from_secs(2);
    let mut consumer = BatchConsumer::start(js.clone(), config, BACKLOG as u64)
        .await
        .unwrap();
    let trickle = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            for i in 0..300 {
                publisher.publish_all(vec![reading(BACKLOG + i)]).await?;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok::<(), adit_bus::Error>(())
        }
    });
    let batch = consumer.next_batch(Duration::from_secs(10)).await;
    trickle.await.unwrap().unwrap();
    assert!(
        batch.messages.len() >= 150,
        "a trickle is gathered for max_wait, not cut at its small bursts: {} messages",
        batch.messages.len()
    );
}
