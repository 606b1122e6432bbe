//! Who may act (issue 23), on the real binary with a real HTTP client. Without tokens the API
//! is open to whoever reaches it, so it may only listen on loopback; and even there a page the
//! operator opens elsewhere must not act through the operator's browser: a change from
//! another page's origin (CSRF), a body a form can send, and a host name pointed at
//! 127.0.0.1 (DNS rebinding) are refused, while the API's own pages and plain clients work.

mod common;

use serde_json::json;

use common::*;

/// A config with no tokens, listening on `listen`.
fn open_config(dir: &std::path::Path, listen: &str) -> String {
    let path = dir.join("open.toml");
    std::fs::write(&path, format!("[query]\nlisten = \"{listen}\"\n")).unwrap();
    path.to_string_lossy().into_owned()
}

fn run_args(dir: &std::path::Path, config: String, nats_url: &str) -> Vec<String> {
    vec![
        "--config".into(),
        config,
        "--nats-url".into(),
        nats_url.into(),
        "--data-dir".into(),
        dir.join("data").to_string_lossy().into_owned(),
        "--tables".into(),
        dir.join("tables").to_string_lossy().into_owned(),
        "run".into(),
        "--roles".into(),
        "query".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_api_refuses_other_pages_other_hosts_and_other_networks() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();

    // No tokens and a reachable address: refused at start, saying how to fix it.
    let port = free_port();
    let config = open_config(dir.path(), &format!("0.0.0.0:{port}"));
    let out = std::process::Command::new(adit_binary())
        .args(run_args(dir.path(), config, &nats.url()))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an open API on 0.0.0.0 started");
    assert!(
        said.contains("query.tokens") && said.contains("127.0.0.1"),
        "{said}"
    );

    // No tokens on loopback: served, to this machine's own pages and clients only.
    let config = open_config(dir.path(), &format!("127.0.0.1:{port}"));
    let app = App::command(
        dir.path(),
        "open",
        port,
        &run_args(dir.path(), config, &nats.url()),
    );
    app.wait_http().await;
    let client = reqwest::Client::new();
    let silences = format!("{}/api/v1/alerts/silences", app.url());
    let silence = json!({"matchers": {"severity": "critical"}, "duration": "30d",
                         "comment": "from another page"});

    // Another page's fetch, JSON and all: its Origin gives it away.
    let r = client
        .post(&silences)
        .header("origin", "http://evil.example")
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cross_origin", "{body}");

    // A form or a no-cors fetch can only send text/plain (and sends no Origin from some
    // browsers' privacy modes): the body type is refused.
    let r = client
        .post(&silences)
        .header("content-type", "text/plain")
        .body(silence.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // A name the attacker points at 127.0.0.1: refused even for reads.
    let r = client
        .get(format!("{}/api/v1/tables", app.url()))
        .header("host", format!("rebind.evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);

    // Nothing was silenced.
    let listed: serde_json::Value = client
        .get(&silences)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]), "{listed}");

    // The API's own page, and a client that is not a browser, may.
    let r = client
        .post(&silences)
        .header("origin", app.url())
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = client
        .get(format!("{}/api/v1/tables", app.url()))
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The managed nats-server lets in only who holds its generated password (issue 23): it is in
/// files only this user reads, another local client is refused, and no log line shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_nats_server_lets_in_only_adit() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = open_config(dir.path(), &format!("127.0.0.1:{port}"));
    let args: Vec<String> = [
        "--config",
        config.as_str(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--tables",
        dir.path().join("tables").to_str().unwrap(),
        "run",
        "--roles",
        "query",
    ]
    .map(String::from)
    .to_vec();
    let app = App::command(dir.path(), "managed", port, &args);
    app.wait_http().await;
    let nats = dir.path().join("data/nats");
    for file in ["url", "auth.conf"] {
        let mode = std::fs::metadata(nats.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let url = std::fs::read_to_string(nats.join("url")).unwrap();
    let (credentials, address) = url
        .trim()
        .trim_start_matches("nats://")
        .rsplit_once('@')
        .expect("the URL carries credentials");
    let password = credentials.split_once(':').unwrap().1;
    assert!(password.len() >= 32, "{password}");

    // Another local user, without the password: refused.
    let stranger = async_nats::ConnectOptions::new()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(format!("nats://{address}"))
        .await;
    assert!(stranger.is_err(), "a client without the password got in");
    let guesser = async_nats::ConnectOptions::with_user_and_password("adit".into(), "guess".into())
        .connect(format!("nats://{address}"))
        .await;
    assert!(guesser.is_err(), "a wrong password got in");
    // adit's own clients (the URL file): in.
    let client = adit_ingest::connect(url.trim())
        .await
        .expect("adit's URL connects");
    client.flush().await.unwrap();
    assert!(
        !app.log().contains(password),
        "the password reached the log"
    );
}
