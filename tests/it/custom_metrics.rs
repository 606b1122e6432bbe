//! Custom metrics (issue 61) through the real binary (`adit run --roles pipelines,query`):
//! points posted over HTTP ingest land in `custom_metrics` and read back by name, source and
//! time range over the API and in SQL, with their labels as posted in any key order; points
//! outside the `custom_` name space or the label bounds are refused with their reasons and
//! dead-lettered to `dlq.ingest`; past `query.custom_metric_series` a new series is refused
//! while the known ones still pass; and an alert rule reads the table like any other.

use crate::common;

use std::time::Duration;

use adit_schemas::names;
use chrono::Utc;
use common::*;
use serde_json::{Value, json};

async fn post(app: &App, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest/metric", app.url()))
        .bearer_auth(OPERATE_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metrics_land_read_back_bounded_and_alert() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pipelines,query",
        // Appended to the test config's [query] table.
        "custom_metric_series = 3\n",
    );
    app.wait_http().await;
    let now = Utc::now();
    let at = |s: i64| (now - chrono::Duration::seconds(s)).to_rfc3339();
    let point = |source: &str, tank: &str, value: f64, ago: i64| {
        json!({"name": "custom_fuel_pct", "source": source, "labels": {"tank": tank, "fuel": "diesel"},
               "value": value, "ts": at(ago)})
    };
    let nine: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("l{i}"), json!("v"))).collect();
    let (status, reply) = post(
        &app,
        &json!([
            point("gen-1", "a", 80.0, 300),
            point("gen-1", "a", 55.0, 120),
            point("gen-2", "b", 12.5, 60),
            {"name": "pool_total_hashrate", "source": "gen-1", "value": 1.0, "ts": at(10)},
            {"name": "custom_fuel_pct", "source": "gen-1", "labels": nine, "value": 1.0, "ts": at(10)},
        ]),
    )
    .await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["accepted"], 3, "{reply}");
    let refused: Vec<i64> = reply["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_i64().unwrap())
        .collect();
    assert_eq!(refused, [3, 4], "{reply}");

    // The same labels in another order are the same series; a third series fits, a fourth
    // does not, while the known ones still pass.
    let reordered = json!({"name": "custom_fuel_pct", "source": "gen-1",
        "labels": {"fuel": "diesel", "tank": "a"}, "value": 50.0, "ts": at(30)});
    let third =
        json!({"name": "custom_inlet_kpa", "source": "gen-1", "value": 101.3, "ts": at(30)});
    let (status, reply) = post(&app, &json!([reordered, third])).await;
    assert_eq!((status, &reply["accepted"]), (200, &json!(2)), "{reply}");
    let fourth =
        json!({"name": "custom_inlet_kpa", "source": "gen-9", "value": 99.0, "ts": at(20)});
    let (status, reply) = post(&app, &json!([fourth, point("gen-2", "b", 11.0, 20)])).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["accepted"], 1, "{reply}");
    let reason = reply["rejected"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("query.custom_metric_series"), "{reason}");

    // Every refused point is a dead letter with its reason.
    let js = nats.jetstream().await;
    let reasons = || async {
        stream_messages(&js, names::STREAM_DLQ, "dlq.ingest", 10)
            .await
            .iter()
            .map(|m| {
                let h = m.headers.as_ref().unwrap();
                assert_eq!(h.get(names::HEADER_DLQ_KIND).unwrap().as_str(), "metric");
                h.get(names::HEADER_DLQ_REASON).unwrap().to_string()
            })
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(10), "three dead letters", || async {
        reasons().await.len() == 3
    })
    .await;
    let reasons = reasons().await;
    assert!(
        reasons.iter().any(|r| r.contains("custom_ then")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("at most 8")),
        "{reasons:?}"
    );

    // Landed, and read back by name, source and time range.
    app.wait_rows(
        Duration::from_secs(30),
        "six points landed",
        "SELECT count(*) AS n FROM custom_metrics",
        |rows| rows.first().is_some_and(|r| r["n"] == 6),
    )
    .await;
    let fuel: Vec<Value> = app
        .get_json("/api/v1/metrics/custom?name=custom_fuel_pct", READ_TOKEN)
        .await;
    assert_eq!(fuel.len(), 5, "{fuel:?}");
    assert_eq!(fuel[0]["value"], 11.0, "newest first: {fuel:?}");
    assert_eq!(fuel[0]["labels"], json!({"fuel": "diesel", "tank": "b"}));
    let from = urlencoding(&at(200));
    let to = urlencoding(&at(40));
    let window: Vec<Value> = app
        .get_json(
            &format!(
                "/api/v1/metrics/custom?name=custom_fuel_pct&source=gen-1&from={from}&to={to}"
            ),
            READ_TOKEN,
        )
        .await;
    let values: Vec<f64> = window
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [55.0], "{window:?}");
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/metrics/custom?name=adit_pool_hashrate",
            app.url()
        ))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // An alert rule over the table: the tank under 20 % fires, the full one does not.
    let rule = json!({"alert": "FuelLow", "labels": {"severity": "warning"},
        "expr": "SELECT source, last_value(value ORDER BY ts) AS value FROM custom_metrics \
                 WHERE name = 'custom_fuel_pct' GROUP BY source HAVING last_value(value ORDER BY ts) < 20"});
    let body = app.evaluate(&json!({ "rule": rule })).await;
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{body}");
    assert_eq!(series[0]["labels"]["source"], "gen-2");
    assert_eq!(series[0]["value"], 11.0);
}

/// `text` as a query-string value.
fn urlencoding(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
