//! adit on a NATS server that requires TLS and verifies its clients (issue 30), as a secured
//! production cluster is run: the certificates come from `adit certs` (a CA, a server
//! certificate for 127.0.0.1, a client certificate), nats-server is started with `tls { verify:
//! true }` and a user and password, and `adit run` is given `nats.ca`, `nats.cert`, `nats.key`
//! and the credentials in the URL. Readings published over TLS land and are answered in SQL; a
//! client without a certificate, or without TLS, is refused by the server.
//!
//! And on a server in operator mode (`testkit::NatsOperator`: an operator, a JetStream account,
//! users with `.creds` files, as `nsc` and managed NATS hand them out): adit given
//! `nats.credentials` lands readings; a `.creds` of an account the server does not know, or of
//! a user allowed nothing, is refused and the log says why.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adit_bus::{NatsAuth, Publisher};
use common::*;

/// nats-server with TLS required and clients verified against `certs/ca.pem`; killed on drop.
struct TlsNats {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl TlsNats {
    fn start(certs: &Path) -> Self {
        let store = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = store.path().join("tls.conf");
        let file = |name: &str| certs.join(name).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\n\
                 jetstream {{ store_dir: \"{store}\" }}\n\
                 authorization {{ user: \"adit\", password: \"s3cret-pass\" }}\n\
                 tls {{\n  cert_file: \"{cert}\"\n  key_file: \"{key}\"\n  ca_file: \"{ca}\"\n  verify: true\n  timeout: 3\n}}\n",
                store = store.path().join("js").display(),
                cert = file("coordinator.pem"),
                key = file("coordinator.key"),
                ca = file("ca.pem"),
            ),
        )
        .unwrap();
        let child = Command::new(adit_testkit::nats_server_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "TLS nats-server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            _store: store,
        }
    }
}

impl Drop for TlsNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a client with `auth` gets connected to `url` within a few seconds.
async fn connects(url: &str, auth: &NatsAuth) -> bool {
    let Ok(client) = adit_bus::connect_with(url, auth).await else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        if client.connection_state() == async_nats::connection::State::Connected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adit_lands_readings_through_a_server_that_requires_tls_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = Command::new(adit_binary())
        .args([
            "certs",
            "--server",
            "127.0.0.1,localhost",
            "--worker",
            "adit",
        ])
        .arg("--out")
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "adit certs: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let nats = TlsNats::start(&certs);
    let url = format!("nats://adit:s3cret-pass@127.0.0.1:{}", nats.port);
    let auth = NatsAuth {
        credentials: None,
        ca: Some(certs.join("ca.pem")),
        cert: Some(certs.join("adit.pem")),
        key: Some(certs.join("adit.key")),
    };

    // The server refuses what a secured cluster must refuse.
    let plain = format!("nats://adit:s3cret-pass@127.0.0.1:{}", nats.port);
    assert!(
        !connects(&plain, &NatsAuth::default()).await,
        "connected without TLS"
    );
    let no_cert = NatsAuth {
        cert: None,
        key: None,
        ..auth.clone()
    };
    assert!(
        !connects(&url, &no_cert).await,
        "connected without a client certificate"
    );
    let wrong_password = format!("nats://adit:wrong@127.0.0.1:{}", nats.port);
    assert!(
        !connects(&wrong_password, &auth).await,
        "connected with a wrong password"
    );
    assert!(connects(&url, &auth).await, "the right client was refused");

    // adit itself, given the CA, its certificate and key: streams set up, readings landed.
    let data = dir.path().join("adit");
    std::fs::create_dir_all(&data).unwrap();
    let app = App::start(
        &url,
        &data,
        "pipelines,query",
        &format!(
            "[nats]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            certs.join("ca.pem").display(),
            certs.join("adit.pem").display(),
            certs.join("adit.key").display()
        ),
    );
    app.wait_http().await;
    let client = adit_bus::connect_with(&url, &auth).await.unwrap();
    let js = async_nats::jetstream::new(client);
    lands(&app, js, 500, "over TLS").await;
    let log = app.log();
    assert!(!log.contains("s3cret-pass"), "the password reached the log");
}

/// How many readings of `app` have landed, by SQL.
async fn landed(app: &App) -> Option<i64> {
    let (status, body) = app
        .sql(
            "SELECT (SELECT count(*) FROM energy_readings) + (SELECT count(*) FROM sensor_readings) AS n",
            "json",
            Some(READ_TOKEN),
        )
        .await;
    (status == 200)
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten()
        .and_then(|v| v[0]["n"].as_i64())
}

/// Waits for adit's streams, publishes `n` readings through `js` and waits until SQL counts
/// them all; `how` names the connection in failures.
async fn lands(app: &App, js: async_nats::jetstream::Context, n: usize, how: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while js
        .get_stream(adit_schemas::names::STREAM_TELEMETRY)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "adit never set up its streams {how}; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let base = chrono::Utc::now() - chrono::Duration::minutes(5);
    Publisher::new(js)
        .publish_all(telemetry(n, base))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let landed = landed(app).await;
        if landed == Some(n as i64) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{landed:?} of {n} landed {how}; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until `app`'s log holds `needle`, or fails naming it.
async fn wait_log(app: &App, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(45);
    while !app.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "the log never said {needle:?}:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adit_lands_readings_through_an_operator_mode_server_with_a_creds_file() {
    let nats = adit_testkit::NatsOperator::start();
    let url = nats.url();
    let with = |path: std::path::PathBuf| NatsAuth {
        credentials: Some(path),
        ..NatsAuth::default()
    };

    // The server refuses a client without credentials and one signed by an unknown account.
    assert!(
        !connects(&url, &NatsAuth::default()).await,
        "connected without credentials"
    );
    assert!(
        !connects(&url, &with(nats.stranger_creds())).await,
        "connected with a user of an account the operator never signed"
    );
    assert!(
        connects(&url, &with(nats.creds())).await,
        "the account's user was refused; server log:\n{}",
        nats.log()
    );

    // adit with the account's .creds: streams set up, readings landed, answered in SQL.
    let dir = tempfile::tempdir().unwrap();
    let creds_toml = |path: &Path| format!("[nats]\ncredentials = \"{}\"\n", path.display());
    for name in ["adit", "stranger", "denied"] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
    }
    let app = App::start(
        &url,
        &dir.path().join("adit"),
        "pipelines,query",
        &creds_toml(&nats.creds()),
    );
    app.wait_http().await;
    let client = adit_bus::connect_with(&url, &with(nats.creds()))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    lands(&app, js, 300, "with a .creds file").await;
    let seed = std::fs::read_to_string(nats.creds()).unwrap();
    let seed = seed
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a user seed in the .creds file");
    assert!(!app.log().contains(seed), "the NKey seed reached the log");

    // A wrong .creds file, or a user the account allows nothing, is named in the log: the
    // operator is told why, not left with timeouts.
    for (name, creds, said) in [
        ("stranger", nats.stranger_creds(), "authorization violation"),
        ("denied", nats.denied_creds(), "Permissions Violation"),
    ] {
        let refused = App::start(
            &url,
            &dir.path().join(name),
            "pipelines",
            &creds_toml(&creds),
        );
        wait_log(&refused, said).await;
    }
}
