//! The MQTT adapter against a real Mosquitto broker: JSON and bare-number payloads pushed by
//! another client become sensor readings (site and sensor from the topic, ts from the payload),
//! a garbage payload is refused without ending the subscription, and after the broker restarts
//! the adapter reconnects and subscribes again.

use std::time::{Duration, Instant};

use adit_devices::mqtt::{MappedError, TopicMap, publish_reading, spawn_publisher, subscribe};
use adit_schemas::{SensorKind, SensorReading};
use adit_testkit::Mosquitto;
use chrono::{DateTime, SubsecRound, Utc};
use rumqttc::{AsyncClient, QoS};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::topic_maps::{humidities, temperatures};

type Outcome = Result<SensorReading, MappedError>;

/// How long any one expected message may take.
const WAIT: Duration = Duration::from_secs(30);

/// Temperatures as JSON, humidity as bare numbers.
fn maps() -> Vec<TopicMap> {
    vec![temperatures(), humidities()]
}

fn temperature(site: &str, sensor: &str, value: f64, ts: DateTime<Utc>) -> SensorReading {
    SensorReading {
        site: site.into(),
        sensor: sensor.into(),
        kind: SensorKind::Temperature,
        value,
        ts,
    }
}

/// Starts `subscribe` on a task for `broker` with [`maps`].
fn spawn_subscriber(
    broker: &Mosquitto,
    client_id: &'static str,
    tx: mpsc::Sender<Outcome>,
    shutdown: &CancellationToken,
) -> JoinHandle<Result<(), adit_devices::mqtt::MqttError>> {
    let url = broker.url();
    let shutdown = shutdown.clone();
    tokio::spawn(async move { subscribe(&url, client_id, maps(), tx, shutdown).await })
}

/// Publishes probes on `farm/probe/sensors/<phase>-<n>` until one of this phase arrives: the
/// subscription is live. A subscription made after a publish does not see it, so this is how a
/// test knows it may start.
async fn await_subscribed(client: &AsyncClient, rx: &mut mpsc::Receiver<Outcome>, phase: &str) {
    let deadline = Instant::now() + WAIT;
    for attempt in 0.. {
        let topic = format!("farm/probe/sensors/{phase}-{attempt}");
        publish_reading(client, &topic, &json!({"temperature": 1.0}))
            .await
            .unwrap();
        let wait_until = tokio::time::Instant::now() + Duration::from_millis(300);
        loop {
            match tokio::time::timeout_at(wait_until, rx.recv()).await {
                Ok(Some(Ok(r))) if r.site == "probe" && r.sensor.starts_with(phase) => return,
                Ok(Some(Ok(r))) if r.site == "probe" => {}
                Ok(Some(other)) => panic!("unexpected {other:?} while waiting for a probe"),
                Ok(None) => panic!("subscribe ended while waiting for a probe"),
                Err(_) => break,
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {phase} probe arrived within {WAIT:?}"
        );
    }
}

/// The next outcome that is not a probe.
async fn next(rx: &mut mpsc::Receiver<Outcome>) -> Outcome {
    loop {
        let outcome = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no MQTT message in time")
            .expect("subscribe ended");
        match outcome {
            Ok(r) if r.site == "probe" => {}
            outcome => return outcome,
        }
    }
}

async fn publish_raw(client: &AsyncClient, topic: &str, payload: &'static [u8]) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
}

#[tokio::test]
async fn pushed_sensor_values_become_readings_across_a_broker_restart() {
    let mut broker = Mosquitto::start();
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(64);
    let subscriber = spawn_subscriber(&broker, "adit-test-sub", tx, &shutdown);
    let (client, publisher) =
        spawn_publisher(&broker.url(), "adit-test-pub", shutdown.clone()).unwrap();
    await_subscribed(&client, &mut rx, "first").await;

    let t1 = Utc::now().trunc_subsecs(0) - chrono::Duration::seconds(10);
    let t2 = t1 - chrono::Duration::seconds(5);
    let before = Utc::now();
    let sends: [(&str, serde_json::Value); 3] = [
        (
            "farm/north/sensors/t1",
            json!({"temperature": 21.5, "ts": t1.to_rfc3339()}),
        ),
        (
            "farm/north/sensors/t2",
            json!({"temperature": 30.25, "ts": t2.timestamp()}),
        ),
        ("farm/south/humidity/h1", json!(55.5)),
    ];
    for (topic, payload) in &sends {
        publish_reading(&client, topic, payload).await.unwrap();
    }
    publish_raw(&client, "farm/north/sensors/t1", b"not json{").await;
    publish_raw(&client, "farm/north/sensors/t3", br#"{"temperature": 500}"#).await;
    publish_raw(&client, "elsewhere/north/sensors/t1", b"1").await;
    let late = json!({"temperature": -5.0, "ts": t1.timestamp()});
    publish_reading(&client, "farm/south/sensors/t9", &late)
        .await
        .unwrap();
    let marker = json!({"temperature": 0.0, "ts": t1.to_rfc3339()});
    publish_reading(&client, "farm/marker/sensors/end", &marker)
        .await
        .unwrap();

    // Everything up to the marker, which comes last: one connection keeps publish order.
    let mut readings = Vec::new();
    let mut refused = Vec::new();
    loop {
        match next(&mut rx).await {
            Ok(r) if r.site == "marker" => break,
            Ok(r) => readings.push(r),
            Err(e) => refused.push(e),
        }
    }
    let after = Utc::now();

    // The unmatched topic gave nothing; the garbage did not stop the later good message.
    readings.sort_by(|a, b| a.sensor.cmp(&b.sensor));
    assert_eq!(readings.len(), 4, "{readings:?}");
    let humidity = readings.remove(0);
    assert_eq!(
        (humidity.site.as_str(), humidity.sensor.as_str()),
        ("site-south", "hh1")
    );
    assert_eq!(
        (humidity.kind, humidity.value),
        (SensorKind::Humidity, 55.5)
    );
    assert!(
        before <= humidity.ts && humidity.ts <= after,
        "a bare number is stamped when received: {} not in {before}..{after}",
        humidity.ts
    );
    assert_eq!(
        readings,
        [
            temperature("north", "t1", 21.5, t1),
            temperature("north", "t2", 30.25, t2),
            temperature("south", "t9", -5.0, t1),
        ]
    );

    assert_eq!(refused.len(), 2, "{refused:?}");
    let garbage = &refused[0];
    assert_eq!(garbage.topic, "farm/north/sensors/t1");
    assert_eq!(garbage.excerpt, "not json{");
    assert!(garbage.reason.contains("not JSON"), "{garbage}");
    let hot = &refused[1];
    assert_eq!(hot.topic, "farm/north/sensors/t3");
    assert!(hot.reason.contains("value = 500"), "{hot}");

    // The broker restarts with no memory of the subscription: the adapter must reconnect and
    // subscribe again for new publishes to arrive.
    broker.restart();
    await_subscribed(&client, &mut rx, "second").await;
    let payload = json!({"temperature": 18.0, "ts": t2.to_rfc3339()});
    publish_reading(&client, "farm/east/sensors/t4", &payload)
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await.unwrap(),
        temperature("east", "t4", 18.0, t2)
    );

    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), subscriber)
        .await
        .expect("subscribe returns on shutdown")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    tokio::time::timeout(Duration::from_secs(5), publisher)
        .await
        .expect("the publisher stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn subscribe_returns_when_the_receiver_is_gone() {
    let broker = Mosquitto::start();
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(1);
    let subscriber = spawn_subscriber(&broker, "adit-test-gone", tx, &shutdown);
    let (client, _publisher) =
        spawn_publisher(&broker.url(), "adit-test-gone-pub", shutdown.clone()).unwrap();
    await_subscribed(&client, &mut rx, "gone").await;
    drop(rx);
    publish_reading(
        &client,
        "farm/north/sensors/t1",
        &json!({"temperature": 20.0}),
    )
    .await
    .unwrap();
    let ended = tokio::time::timeout(WAIT, subscriber)
        .await
        .expect("subscribe returns once its receiver is gone")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(!shutdown.is_cancelled());
}
