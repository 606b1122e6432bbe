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
