//! End to end through the real binary (issue 2): events in JetStream land in Delta tables,
//! bad messages go to the DLQ with their reason, the SQL API answers the same rows in every
//! format and refuses what it must, DuckDB counts what DataFusion counts, and the energy
//! pipeline integrates power into energy.

use crate::common;

use std::time::Duration;

use adit_schemas::names;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use async_nats::jetstream;
use common::*;

const GOOD: usize = 3_000;

/// (seq, site, machine, power_w) rows, sorted, from any batches.
fn rows_of(batches: &[RecordBatch]) -> Vec<(i64, String, String, f64)> {
    let mut out = Vec::new();
    for b in batches {
        let seq = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).unwrap();
        let site = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8).unwrap();
        let machine = arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Utf8).unwrap();
        let power =
            arrow::compute::cast(b.column(3), &arrow::datatypes::DataType::Float64).unwrap();
        for i in 0..b.num_rows() {
            out.push((
                seq.as_primitive::<Int64Type>().value(i),
                site.as_string::<i32>().value(i).to_string(),
                machine.as_string::<i32>().value(i).to_string(),
                power.as_primitive::<Float64Type>().value(i),
            ));
        }
    }
    out.sort_by_key(|a| a.0);
    out
}

fn rows_of_json(values: &[serde_json::Value]) -> Vec<(i64, String, String, f64)> {
    let mut out: Vec<_> = values
        .iter()
        .map(|v| {
            (
                v["seq"].as_i64().unwrap(),
                v["site"].as_str().unwrap().to_string(),
                v["machine"].as_str().unwrap().to_string(),
                v["power_w"].as_f64().unwrap(),
            )
        })
        .collect();
    out.sort_by_key(|a| a.0);
    out
}

/// Sends the head of an ingest request declaring `length` body bytes, none of them, and
/// returns what the server answers.
async fn oversized_request_head(url: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/ingest/energy HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Reads until the error body is in or the server closes; a server waiting for the body
    // leaves `reply` short of it and the caller's assertions say so.
    while !String::from_utf8_lossy(&reply).contains("payload_too_large") {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => reply.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

async fn publish_raw(js: &jetstream::Context, subject: &str, body: &str) {
    js.publish(subject.to_string(), body.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_and_the_sql_api_serves_them() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (publisher, js) = publisher(&nats).await;
    let base = chrono::Utc::now() - chrono::Duration::minutes(30);
    let msgs: Vec<_> = (0..GOOD).map(|i| energy(i, base)).collect();
    publisher.publish_all(msgs.clone()).await.unwrap();
    // A retried publish of the same events is stored once (Nats-Msg-Id).
    publisher.publish_all(msgs[..100].to_vec()).await.unwrap();
    // Bad input: malformed JSON, a NaN-ish value, a wrong subject, an unknown kind.
    publish_raw(&js, "telemetry.energy.site-00.m-001", "{not json").await;
    publish_raw(&js, "telemetry.energy.site-00.m-001", r#"{"site":"site-00","machine":"m-001","ts":"2026-01-01T00:00:00Z","power_w":-4,"source":"pdu"}"#).await;
    publish_raw(&js, "telemetry.bogus.x", "{}").await;

    let limits = "[query.limits]\ntimeout = \"3s\"\nmemory_bytes = 8388608\nmax_rows = 100000\n";
    let mut app = App::start(&nats.url(), dir.path(), "pipelines,query", limits);
    app.wait_http().await;
    let tables = dir.path().join("tables");
    eventually(
        Duration::from_secs(120),
        "all good events landed",
        || async {
            scalar(
                &tables,
                &["energy_readings"],
                "SELECT count(*) FROM energy_readings",
            )
            .await
                == GOOD as i64
        },
    )
    .await;

    // Dead letters carry their reasons.
    let mut reasons = Vec::new();
    for m in stream_messages(&js, names::STREAM_DLQ, "", 10).await {
        let h = m.headers.as_ref().unwrap();
        reasons.push(h.get(names::HEADER_DLQ_REASON).unwrap().to_string());
    }
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("invalid energy JSON")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("power_w")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("unexpected subject")),
        "{reasons:?}"
    );

    // The same rows in every format.
    let sql = "SELECT seq, site, machine, power_w FROM energy_readings ORDER BY seq";
    let expected = rows_of(&query(&tables, &["energy_readings"], sql).await);
    assert_eq!(expected.len(), GOOD);
    let (s, json) = app.sql(sql, "json", Some(READ_TOKEN)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&json));
    let json: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows_of_json(&json), expected, "json");
    let (_, nd) = app.sql(sql, "ndjson", Some(READ_TOKEN)).await;
    let nd: Vec<serde_json::Value> = nd
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(rows_of_json(&nd), expected, "ndjson");
    let (_, csv) = app.sql(sql, "csv", Some(READ_TOKEN)).await;
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("seq,site,machine,power_w"));
    let mut from_csv: Vec<_> = lines
        .map(|l| {
            let f: Vec<_> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    from_csv.sort_by_key(|a| a.0);
    assert_eq!(from_csv, expected, "csv");
    let (_, ipc) = app.sql(sql, "arrow", Some(READ_TOKEN)).await;
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(rows_of(&batches), expected, "arrow");
    let (_, pq) = app.sql(sql, "parquet", Some(READ_TOKEN)).await;
    let reader =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(pq),
        )
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(rows_of(&batches), expected, "parquet");

    // Refusals: writes, files, URLs, settings; auth; limits.
    for (bad, code) in [
        ("CREATE TABLE t AS SELECT 1", "read_only"),
        (
            "INSERT INTO energy_readings SELECT * FROM energy_readings",
            "read_only",
        ),
        ("DELETE FROM energy_readings", "read_only"),
        ("COPY (SELECT 1) TO '/tmp/adit-copy.csv'", "read_only"),
        (
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
            "read_only",
        ),
        ("SET datafusion.execution.batch_size = 1", "read_only"),
        ("SELECT * FROM '/etc/passwd'", "invalid_sql"),
        (
            "SELECT * FROM 'https://example.com/x.parquet'",
            "invalid_sql",
        ),
        ("SELEC 1", "invalid_sql"),
        ("SELECT nope FROM energy_readings", "invalid_sql"),
    ] {
        let (s, body) = app.sql(bad, "json", Some(ADMIN_TOKEN)).await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!((400..500).contains(&s), "{bad}: {s} {body}");
        assert_eq!(body["error"]["code"], code, "{bad}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert!(!std::path::Path::new("/tmp/adit-copy.csv").exists());
    let (s, _) = app.sql("SELECT 1", "json", None).await;
    assert_eq!(s, 401, "missing token");
    let (s, _) = app
        .sql("SELECT 1", "json", Some("not-a-token-at-all"))
        .await;
    assert_eq!(s, 401, "unknown token");
    let (s, body) = app.sql("SELECT 1", "xml", Some(READ_TOKEN)).await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    let client = reqwest::Client::new();
    let ingest = format!("{}/api/v1/ingest/energy", app.url());
    let r = client
        .post(&ingest)
        .bearer_auth(READ_TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "read role may not ingest");
    let (s, body) = app
        .sql(
            "SELECT count(*) FROM generate_series(1, 100000000000)",
            "json",
            Some(READ_TOKEN),
        )
        .await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("query_timeout")),
        "{body}"
    );
    let (s, body) = app
        .sql("SELECT count(*) FROM (SELECT (v * 7919) % 3000017 AS k FROM generate_series(1, 3000000) t(v) GROUP BY k)", "json", Some(READ_TOKEN))
        .await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("memory_limit")),
        "{body}"
    );

    // HTTP ingest: valid records published, invalid ones refused by index with a reason.
    let now = chrono::Utc::now().to_rfc3339();
    let ndjson = format!(
        "{{\"site\":\"site-h\",\"machine\":\"m-1\",\"ts\":\"{now}\",\"power_w\":10,\"source\":\"meter\"}}\n{{\"site\":\"site-h\"}}\n"
    );
    let r = client
        .post(&ingest)
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let reply: serde_json::Value = r.json().await.unwrap();
    assert_eq!(reply["accepted"], 1);
    assert_eq!(reply["rejected"][0]["index"], 1);
    let r = client
        .post(format!("{}/api/v1/ingest/plutonium", app.url()))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Shares and blocks come only from the pool (issue 23): posted ones would be paid, so not
    // even an admin may post them.
    let share = format!(
        "{{\"pool\":\"main\",\"miner\":\"thief\",\"worker\":\"w\",\"job_id\":\"1\",\"nonce\":\"00000001\",\
         \"difficulty\":1000000000000000,\"accepted\":true,\"ts\":\"{now}\"}}"
    );
    for kind in ["share", "block"] {
        let r = client
            .post(format!("{}/api/v1/ingest/{kind}", app.url()))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(share.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{kind}");
        let reply: serde_json::Value = r.json().await.unwrap();
        assert_eq!(reply["error"]["code"], "pool_only_kind", "{kind}: {reply}");
    }
    // An oversized body is refused from its declared length, before the client sends it (so
    // the client reads the answer instead of a cut connection).
    let head = oversized_request_head(&app.url(), 9 * 1024 * 1024).await;
    assert!(head.starts_with("HTTP/1.1 413"), "oversized body: {head}");
    assert!(head.contains("payload_too_large"), "oversized body: {head}");
    eventually(
        Duration::from_secs(30),
        "the HTTP-ingested row landed",
        || async {
            scalar(
                &tables,
                &["energy_readings"],
                "SELECT count(*) FROM energy_readings WHERE site = 'site-h'",
            )
            .await
                == 1
        },
    )
    .await;

    // The table listing names every table and its columns.
    let listing: serde_json::Value = app.get_json("/api/v1/tables", READ_TOKEN).await;
    let columns = listing["energy_readings"].as_array().unwrap();
    assert!(
        columns
            .iter()
            .any(|c| c["name"] == "power_w" && c["type"] == "Float64"),
        "{listing}"
    );
    assert!(listing.get("site_energy_1m").is_some(), "{listing}");

    // Health and metrics need no token.
    for path in ["/health", "/ready", "/live"] {
        assert_eq!(
            reqwest::get(format!("{}{path}", app.url()))
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    let metrics = app.metrics().await;
    assert!(metrics.contains("adit_pipeline_rows_total"), "{metrics}");
    assert!(metrics.contains("adit_query_requests_total"), "{metrics}");

    // DuckDB reads the Delta table's active Parquet files and counts the same rows.
    let duck: i64 = duckdb_value(&tables, "energy_readings", "select count(*) from {t}")
        .await
        .parse()
        .unwrap();
    let ours = scalar(
        &tables,
        &["energy_readings"],
        "SELECT count(*) FROM energy_readings",
    )
    .await;
    assert_eq!(duck, ours, "DuckDB and DataFusion count the same rows");

    assert!(
        app.terminate(),
        "SIGTERM exits cleanly; log:\n{}",
        app.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn energy_is_integrated_per_machine_and_site_minute() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (publisher, _js) = publisher(&nats).await;
    use adit_bus::publish::Outgoing;
    use adit_schemas::{AnyEvent, EnergyReading, EnergySource};
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::minutes(20);
    let start = start
        - chrono::Duration::seconds(start.timestamp() % 60)
        - chrono::Duration::nanoseconds(start.timestamp_subsec_nanos() as i64);
    // Two machines at a constant 6 kW and 3 kW, a reading every 10 s for 10 minutes.
    let mut msgs = Vec::new();
    for (machine, watts) in [("m-a", 6000.0), ("m-b", 3000.0)] {
        for k in 0..=60 {
            msgs.push(Outgoing::event(&AnyEvent::Energy(EnergyReading {
                site: "site-e".into(),
                machine: machine.into(),
                ts: start + chrono::Duration::seconds(10 * k),
                power_w: watts,
                energy_wh: None,
                source: EnergySource::Meter,
            })));
        }
    }
    publisher.publish_all(msgs).await.unwrap();
    let app = App::start(&nats.url(), dir.path(), "pipelines", "");
    let tables = dir.path().join("tables");
    // Minutes are final once the newest reading is max_gap (2 min) + grace past their end.
    eventually(
        Duration::from_secs(120),
        "7 site minutes computed",
        || async {
            scalar(
                &tables,
                &["site_energy_1m"],
                "SELECT count(*) FROM site_energy_1m",
            )
            .await
                >= 7
        },
    )
    .await;
    let batches = query(
        &tables,
        &["machine_energy_1m"],
        "SELECT machine, energy_wh, quality FROM machine_energy_1m ORDER BY machine, minute",
    )
    .await;
    let mut seen = 0;
    for b in &batches {
        let machine = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        for i in 0..b.num_rows() {
            let m = machine.as_string::<i32>().value(i);
            let wh = b.column(1).as_primitive::<Float64Type>().value(i);
            let q = b.column(2).as_primitive::<Float64Type>().value(i);
            let want = if m == "m-a" { 100.0 } else { 50.0 };
            assert!((wh - want).abs() < 1e-6, "{m}: {wh} Wh, want {want}");
            assert_eq!(q, 1.0);
            seen += 1;
        }
    }
    assert!(seen >= 14, "{seen} machine minutes; log:\n{}", app.log());
    let site = scalar(
        &tables,
        &["site_energy_1m"],
        "SELECT CAST(min(energy_wh) * 1000 AS BIGINT) FROM site_energy_1m",
    )
    .await;
    assert_eq!(site, 150_000, "site minute = 100 Wh + 50 Wh");
}
