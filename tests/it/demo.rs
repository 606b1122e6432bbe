//! `adit demo` end to end (issue 2): the managed nats-server, the simulated farm, the pool with
//! its demo miner, the pipelines and the API come up; SQL answers with rows from each; SIGTERM
//! stops everything, including the managed nats-server.

use crate::common;

use std::time::{Duration, Instant};

use common::Demo;

async fn sql(port: u16, q: &str) -> Option<Vec<serde_json::Value>> {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/sql?format=json"))
        .body(q.to_string())
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_brings_everything_up() {
    let started = Instant::now();
    let mut demo = Demo::start();
    let http = demo.http;

    let q = "SELECT site, count(*) AS n FROM energy_readings GROUP BY site ORDER BY site";
    // Both sites' readings, waited for: under load one site's first commit lands before the
    // other's.
    let rows = loop {
        let rows = sql(http, q).await.unwrap_or_default();
        if rows.len() == 2 {
            break rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "energy rows of two simulated sites, not {rows:?}; log:\n{}",
            demo.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "energy rows visible {:?} after start: {rows:?}",
        started.elapsed()
    );
    // The farm is read through the adapters: miners over the cgminer API (firmware power),
    // meters over IotaWatt's API and PDUs over HTTP, each registered with its address.
    let q = "SELECT DISTINCT source FROM energy_readings ORDER BY source";
    loop {
        let sources: Vec<String> = sql(http, q)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["source"].as_str().map(str::to_string))
            .collect();
        if sources == ["firmware", "meter", "pdu"] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "sources so far {sources:?}; log:\n{}",
            demo.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let machines: Vec<serde_json::Value> =
        reqwest::get(format!("http://127.0.0.1:{http}/api/v1/registry/machines"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(machines.len(), 20, "{machines:?}");
    assert!(
        machines.iter().all(|m| m["adapter"]["kind"] == "cgminer"),
        "{machines:?}"
    );
    let shares = loop {
        let q = "SELECT count(*) AS n FROM shares WHERE accepted AND worker = 'demo-rig'";
        let n = sql(http, q)
            .await
            .and_then(|r| r.first().and_then(|v| v["n"].as_i64()))
            .unwrap_or(0);
        if n > 0 {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no demo shares; log:\n{}",
            demo.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(shares > 0);
    // The simulated utility's feeds are read too (their prices from the start).
    loop {
        let q = "SELECT count(*) AS n FROM grid_signals";
        let n = sql(http, q)
            .await
            .and_then(|r| r.first().and_then(|v| v["n"].as_i64()))
            .unwrap_or(0);
        if n > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no grid signal from the simulated feeds; log:\n{}",
            demo.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        !demo.log().contains("egress policy does not let"),
        "the demo reaches its own devices and feeds; log:\n{}",
        demo.log()
    );
    let url = std::fs::read_to_string(demo.dir().join("data/nats/url")).unwrap();
    let nats_port: u16 = url.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_ok(),
        "managed nats-server runs"
    );

    let clean = demo.terminate();
    assert!(clean, "clean exit; log:\n{}", demo.log());
    assert!(
        !demo.log().contains("did not finish"),
        "every role drained by itself; log:\n{}",
        demo.log()
    );
    // The NATS connection is closed before its server is stopped: a clean stop says nothing
    // of a lost connection or a failed reconnect.
    let log = demo.log();
    let stopping = log
        .find("shutting down")
        .map(|at| &log[at..])
        .unwrap_or_else(|| panic!("no shutdown in the log:\n{log}"));
    for noise in ["NATS connection lost", "NATS could not connect"] {
        assert!(
            !stopping.contains(noise),
            "{noise:?} after the shutdown began; log:\n{log}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the managed nats-server was stopped with the demo"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
