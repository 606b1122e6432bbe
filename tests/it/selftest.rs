//! `adit selftest` (issue 61) against a running installation (`adit run --roles
//! query,simulate,adapters`: the simulated farm's devices on real sockets, registered with their
//! addresses): it reads every device once, sends the one receiver a test message (which a
//! local webhook receives), and passes; after a miner is moved to a dead address it names that
//! device, says the receiver was not sent to under `--no-notify`, and exits 1.

use crate::common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A webhook that keeps every body it is sent; its URL and what it got.
async fn webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    (url, seen)
}

/// Runs `adit selftest` with the app's config; its exit success and its output.
async fn selftest(app: &App, nats: &str, extra: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adit"));
    command
        .args(["--config", app.dir.join("adit.toml").to_str().unwrap()])
        .args([
            "--nats-url",
            nats,
            "--tables",
            app.dir.join("tables").to_str().unwrap(),
        ])
        .arg("selftest")
        .args(extra);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_reads_every_device_and_tests_every_receiver_then_names_what_fails() {
    let (hook, seen) = webhook().await;
    let config = format!(
        "[simulate]\nsites = 1\nmachines_per_site = 2\nsensors_per_site = 1\ninterval = \"500ms\"\ngrid_every = 0\n\
         [notify]\nreceivers = [{{ name = \"ops\", kind = \"webhook\", url = \"{hook}\" }}]\n\
         [notify.route]\nreceiver = \"ops\"\n"
    );
    let (nats, _dir, app) = start_app("query,simulate,adapters", &config).await;
    eventually(Duration::from_secs(30), "the farm registered", || async {
        let machines: Vec<Value> = app.get_json("/api/v1/registry/machines", READ_TOKEN).await;
        machines.len() == 2
    })
    .await;

    let (passed, out) = selftest(&app, &nats.url(), &[]).await;
    println!("adit selftest, sound:\n{out}");
    assert!(passed, "selftest failed on a sound installation:\n{out}");
    for line in [
        "ok    tables: ",
        "ok    nats: connected",
        "ok    registry: 1 sites, 2 machines",
        "ok    receiver ops: test message sent (webhook)",
        "skip  node: the pool's node is simulated",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let devices = out
        .lines()
        .filter(|l| l.starts_with("ok    device cgminer "))
        .count();
    assert_eq!(devices, 2, "each miner read once:\n{out}");
    assert!(!out.contains("FAIL"), "{out}");
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("adit test message to ops"), "{sent:?}");

    // A miner unplugged: moved to a dead address.
    let machine = "/api/v1/registry/machines/site-01/m-001";
    let current: Value = app.get_json(machine, READ_TOKEN).await;
    let mut moved = current.clone();
    moved["adapter"]["address"] = "127.0.0.1:1".into();
    let r = reqwest::Client::new()
        .put(format!("{}{machine}", app.url()))
        .bearer_auth(OPERATE_TOKEN)
        .json(&moved)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let (passed, out) = selftest(&app, &nats.url(), &["--no-notify"]).await;
    println!("adit selftest --no-notify, a miner unplugged:\n{out}");
    assert!(!passed, "selftest passed with a dead miner:\n{out}");
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].starts_with("FAIL  device cgminer 127.0.0.1:1 (site-01/m-001): "),
        "{out}"
    );
    assert!(
        out.contains("skip  receiver ops: not sent (--no-notify)"),
        "{out}"
    );
    assert!(
        out.contains("1 failed: device cgminer 127.0.0.1:1 (site-01/m-001)"),
        "{out}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "--no-notify sent a message");
}
