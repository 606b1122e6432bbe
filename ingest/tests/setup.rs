//! Streams and buckets are created on a real nats-server, idempotently.

use adit_ingest::{ensure_buckets, ensure_streams};
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
    let kv = js.get_key_value(names::KV_REGISTRY).await.unwrap();
    kv.put("site.s1", "{}".into()).await.unwrap();
    assert_eq!(kv.get("site.s1").await.unwrap().unwrap(), "{}");
}
