//! Streams and buckets are created on a real nats-server, idempotently.

use adit_bus::{ensure_buckets, ensure_streams};
use adit_schemas::names;

#[tokio::test]
async fn streams_and_buckets_are_created_twice_without_error() {
    let nats = adit_testkit::NatsServer::start();
    let js = nats.jetstream().await;
    for _ in 0..2 {
        ensure_streams(&js, &Default::default()).await.unwrap();
        ensure_buckets(&js, 1).await.unwrap();
    }
    for (name, _) in names::STREAMS {
        js.get_stream(*name).await.unwrap();
    }
    // A dead letter filed again after a crash (its batch's epoch not recorded) is stored once
    // for an hour, not the two minutes of the other streams.
    let dlq = js.get_stream(names::STREAM_DLQ).await.unwrap();
    assert_eq!(
        dlq.cached_info().config.duplicate_window,
        adit_bus::setup::DLQ_DUPLICATE_WINDOW
    );
    let telemetry = js.get_stream(names::STREAM_TELEMETRY).await.unwrap();
    assert_eq!(
        telemetry.cached_info().config.duplicate_window,
        std::time::Duration::from_secs(120)
    );
    let kv = js.get_key_value(names::KV_REGISTRY).await.unwrap();
    kv.put("site.s1", "{}".into()).await.unwrap();
    assert_eq!(kv.get("site.s1").await.unwrap().unwrap(), "{}");
}

/// `close` sends what the client had queued before it returns, and leaves the client closed
/// (no reconnecting once its server goes): every message published without a flush reaches a
/// subscriber, and the client refuses anything after.
#[tokio::test]
async fn a_closed_client_has_sent_everything_and_sends_nothing_more() {
    use futures::StreamExt;
    let nats = adit_testkit::NatsServer::start();
    let listener = async_nats::connect(nats.url()).await.unwrap();
    let mut heard = listener.subscribe("closing.test").await.unwrap();
    listener.flush().await.unwrap();
    let client = adit_bus::connect(&nats.url()).await.unwrap();
    for i in 0..1_000u32 {
        client
            .publish("closing.test", i.to_string().into())
            .await
            .unwrap();
    }
    assert!(
        adit_bus::close(&client, std::time::Duration::from_secs(10)).await,
        "closed within the time given"
    );
    for want in 0..1_000u32 {
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), heard.next())
            .await
            .expect("every message queued before the close arrives")
            .unwrap();
        assert_eq!(got.payload, want.to_string().as_bytes());
    }
    assert!(
        client.publish("closing.test", "late".into()).await.is_err(),
        "a closed client refuses to publish"
    );
    assert!(
        !adit_bus::close(&client, std::time::Duration::from_secs(1)).await,
        "a client closed already is not closed again"
    );
}

/// A client whose server is gone has nothing it can send: closing it does not wait for a
/// reconnect (a stop of adit while NATS is down would otherwise hang for the whole bound).
#[tokio::test]
async fn a_client_without_its_server_is_not_waited_on() {
    use std::time::Duration;
    let nats = adit_testkit::NatsServer::start();
    let client = adit_bus::connect(&nats.url()).await.unwrap();
    let until = |state: async_nats::connection::State| {
        let client = client.clone();
        tokio::time::timeout(Duration::from_secs(60), async move {
            while client.connection_state() != state {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    until(async_nats::connection::State::Connected)
        .await
        .expect("the client connects");
    drop(nats);
    let noticed = until(async_nats::connection::State::Disconnected);
    noticed
        .await
        .expect("the client notices its server is gone");
    let closed = tokio::time::timeout(
        Duration::from_secs(60),
        adit_bus::close(&client, Duration::from_secs(3600)),
    )
    .await
    .expect("close returns without waiting out its bound");
    assert!(!closed, "nothing was sent: not a clean close");
}
