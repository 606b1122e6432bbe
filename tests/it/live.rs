//! Live results over Server-Sent Events (issue 12): a subscriber that disconnects and comes
//! back with `Last-Event-ID` gets exactly what it missed, nothing twice, across two streams
//! (results and blocks); a malformed or expired id is told so and starts from the oldest event
//! kept; filters outside what may be followed, and a missing token, are refused.

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

/// One server-sent event.
#[derive(Debug, Default, Clone)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// An open subscription, read event by event.
struct Subscription {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Subscription {
    async fn open(app: &App, subjects: &str, last_event_id: Option<&str>) -> Self {
        let mut req = reqwest::Client::new()
            .get(format!("{}/api/v1/live?subjects={subjects}", app.url()))
            .bearer_auth(READ_TOKEN);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            body: r.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (comments and heartbeats skipped), within 20 s.
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut e = Sse::default();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        e.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        e.event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        e.data.push_str(v.trim_start());
                    }
                }
                if e.data.is_empty() && e.event.is_none() {
                    continue;
                }
                return e;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("an event within 20 s")
                .expect("the stream stays open")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `n` data events' (stream, seq, n) and the last id.
    async fn take(&mut self, n: usize) -> (Vec<(String, u64, i64)>, String) {
        let mut out = Vec::new();
        let mut last = String::new();
        while out.len() < n {
            let e = self.next().await;
            if e.event.as_deref() == Some("ready") {
                last = e.id.expect("ready has an id");
                continue;
            }
            assert_eq!(e.event, None, "unexpected {e:?}");
            let v: Value = serde_json::from_str(&e.data).unwrap();
            out.push((
                v["stream"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
                v["payload"]["n"].as_i64().unwrap(),
            ));
            last = e.id.expect("every event has an id");
        }
        (out, last)
    }
}

async fn publish(js: &jetstream::Context, subject: &str, n: i64) {
    js.publish(subject.to_string(), json!({ "n": n }).to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_where_it_left_off() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (_publisher, js) = publisher(&nats).await;
    let app = App::start(&nats.url(), dir.path(), "query", "");
    app.wait_http().await;

    // One stream: ids are its sequence numbers.
    let mut sub = Subscription::open(&app, "results.>", None).await;
    for n in 0..5 {
        publish(&js, "results.violation.s1", n).await;
    }
    let (first, last) = sub.take(5).await;
    assert_eq!(
        first.iter().map(|e| e.2).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(last, first[4].1.to_string());
    drop(sub);
    for n in 5..12 {
        publish(&js, "results.decision.s1", n).await;
    }
    let mut sub = Subscription::open(&app, "results.>", Some(&last)).await;
    publish(&js, "results.alert.critical", 12).await;
    let (rest, _) = sub.take(8).await;
    assert_eq!(
        rest.iter().map(|e| e.2).collect::<Vec<_>>(),
        (5..13).collect::<Vec<_>>(),
        "exactly what was missed, then live"
    );
    drop(sub);

    // Two streams: results and blocks, one id for both; shares are not relayed.
    let both = "results.>,mining.block.>";
    let mut sub = Subscription::open(&app, both, None).await;
    publish(&js, "mining.share.p1", 100).await;
    publish(&js, "mining.block.p1", 101).await;
    publish(&js, "results.payout.p1", 102).await;
    let (got, last) = sub.take(2).await;
    // Each stream keeps its order; between the two streams there is none to keep.
    let mut ns: Vec<i64> = got.iter().map(|e| e.2).collect();
    ns.sort();
    assert_eq!(ns, vec![101, 102]);
    assert!(
        last.contains("MINING:") && last.contains("RESULTS:"),
        "{last}"
    );
    drop(sub);
    publish(&js, "mining.block.p1", 103).await;
    publish(&js, "results.payout.p1", 104).await;
    publish(&js, "mining.share.p1", 105).await;
    publish(&js, "mining.block.p1", 106).await;
    let mut sub = Subscription::open(&app, both, Some(&last)).await;
    let (got, _) = sub.take(3).await;
    let mut ns: Vec<i64> = got.iter().map(|e| e.2).collect();
    ns.sort();
    assert_eq!(ns, vec![103, 104, 106], "nothing missed, nothing twice");
    drop(sub);

    // A malformed id is told so and starts from the oldest event kept.
    let mut sub = Subscription::open(&app, "results.>", Some("not-a-number")).await;
    let notice = sub.next().await;
    assert_eq!(notice.event.as_deref(), Some("notice"), "{notice:?}");
    assert!(
        notice.data.contains("last_event_id_malformed"),
        "{notice:?}"
    );
    let (oldest, _) = sub.take(1).await;
    assert_eq!(oldest[0].2, 0, "from the oldest event kept");
    drop(sub);

    // An id the stream no longer keeps: purge the oldest results, then ask for one of them.
    let mut stream = js.get_stream("RESULTS").await.unwrap();
    let first_seq = stream.info().await.unwrap().state.first_sequence;
    stream.purge().sequence(first_seq + 3).await.unwrap();
    let mut sub = Subscription::open(&app, "results.>", Some(&(first_seq).to_string())).await;
    let notice = sub.next().await;
    assert!(notice.data.contains("last_event_id_expired"), "{notice:?}");
    let (oldest, _) = sub.take(1).await;
    assert_eq!(
        oldest[0].1,
        first_seq + 3,
        "from the oldest event still kept"
    );
    drop(sub);

    // Refusals.
    let client = reqwest::Client::new();
    let get = |q: &str, token: Option<&str>| {
        let mut r = client.get(format!("{}/api/v1/live?subjects={q}", app.url()));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = get("telemetry.>", Some(READ_TOKEN)).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("cannot be followed live"));
    assert_eq!(get("results.>", None).await.unwrap().status(), 401);
}
