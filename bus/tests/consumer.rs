//! A durable consumer against a real nats-server when its acks never arrive (as when a stream
//! leader moves and the acks go to the old one): it reaches its ack-pending limit and the
//! server stops sending. The consumer sees that messages wait while nothing new comes, and
//! re-creates itself after the last message it handed out: every message comes through, once.
//! It says it is stuck from then until it moves again (what the pipelines' `/ready` shows).

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
    let config = ConsumerConfig {
        stream: names::STREAM_TELEMETRY.into(),
        durable: "stuck-test".into(),
        filter_subject: String::new(),
        max_rows: 100,
        max_wait: Duration::from_millis(50),
        stall_after: Duration::from_secs(2),
    };
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
