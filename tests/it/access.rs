//! Who may act (issue 23), on the real binary with a real HTTP client. Without tokens the API
//! is open to whoever reaches it, so it may only listen on loopback; and even there a page the
//! operator opens elsewhere must not act through the operator's browser: a change from
//! another page's origin (CSRF), a body a form can send, and a host name pointed at
//! 127.0.0.1 (DNS rebinding) are refused, while the API's own pages and plain clients work.
//! And whoever may register a device chooses where adit connects: the egress policy keeps
//! those connections to the farm's networks.

use crate::common;

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
    let listed: serde_json::Value = json_of(client.get(&silences)).await;
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
    let client = adit_bus::connect(url.trim())
        .await
        .expect("adit's URL connects");
    client.flush().await.unwrap();
    assert!(
        !app.log().contains(password),
        "the password reached the log"
    );
}

/// Issue 23: a device registered at `localhost:P` (a name that resolves to 127.0.0.1) or at
/// `127.0.0.1:P` would make the adapters connect to whatever listens on adit's own host (the
/// wallet RPC, NATS, the API). With the default egress rules (devices on private networks)
/// both are refused, told in the log with the rule, and the service there never sees a
/// connection; `localhost` is refused on the address it resolves to, at connect time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_adits_own_host_are_refused_by_the_egress_policy() {
    let internal = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = internal.local_addr().unwrap().port();
    internal.set_nonblocking(true).unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        loop {
            if internal.accept().is_ok() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });

    let (_nats, _dir, app) = start_app(
        "query,adapters",
        "[egress]\ndevices = [\"private\"]\n\
         [adapters]\ninterval = \"1s\"\ntimeout = \"500ms\"\nmax_backoff = \"2s\"\nregistry_refresh = \"1s\"\n",
    )
    .await;
    app.put_all(vec![
        (
            "/api/v1/registry/sites/s1".to_string(),
            json!({"allocation_kw": 10.0}),
        ),
        (
            "/api/v1/registry/machines/s1/by-name".to_string(),
            json!({"model": "S19", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000,
                   "adapter": {"kind": "cgminer", "address": format!("localhost:{port}")}}),
        ),
        (
            "/api/v1/registry/machines/s1/by-address".to_string(),
            json!({"model": "S19", "nominal_hashrate_hs": 1e14, "nominal_power_w": 3000,
                   "adapter": {"kind": "cgminer", "address": format!("127.0.0.1:{port}")}}),
        ),
    ])
    .await;
    eventually(
        std::time::Duration::from_secs(60),
        "both devices refused by the egress policy",
        || async {
            let log = app.log();
            log.contains("does not let devices reach localhost")
                && log.contains("does not let devices reach 127.0.0.1")
        },
    )
    .await;
    let log = app.log();
    assert!(log.contains("egress.devices allows [private]"), "{log}");
    // Several polls later, still nothing reached the host's own service.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused device was connected to; log:\n{}",
        app.log()
    );
}

/// Issue 23: every change through the API is a row of `audit` (who, with which role, what,
/// how it ended, from where), and so are the refusals: a change a token's role does not allow
/// (403) and a request without a valid token (401). An address that fails
/// `query.lockout.limit` times is banned (429 `banned` with `Retry-After`, even with a valid
/// token) until the ban ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_and_refusals_are_audited_and_guessing_tokens_is_banned() {
    let (_nats, _dir, app) = start_app(
        "pipelines,query",
        "[query.lockout]\nlimit = 3\nwindow = \"1m\"\nban_for = \"4s\"\n",
    )
    .await;
    let client = reqwest::Client::new();
    let site = format!("{}/api/v1/registry/sites/s1", app.url());
    let put = |token: &'static str| {
        client
            .put(&site)
            .bearer_auth(token)
            .json(&json!({"allocation_kw": 10.0}))
            .send()
    };
    assert_eq!(put(ADMIN_TOKEN).await.unwrap().status(), 201);
    assert_eq!(put(READ_TOKEN).await.unwrap().status(), 403);

    // Guessing: two failures are answered (slowly), the third bans the address.
    let tables = format!("{}/api/v1/tables", app.url());
    for _ in 0..3 {
        let r = client
            .get(&tables)
            .bearer_auth("guess-guess-guess")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let banned = client
        .get(&tables)
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        banned.status(),
        429,
        "a banned address is refused, a valid token too"
    );
    assert!(banned.headers().contains_key("retry-after"));
    let body: serde_json::Value = banned.json().await.unwrap();
    assert_eq!(body["error"]["code"], "banned");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let after = client
        .get(&tables)
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "the ban ends");

    let sql = "SELECT who, role, method, path, status, client FROM audit ORDER BY ts";
    app.wait_rows(
        std::time::Duration::from_secs(60),
        "the audit rows landed",
        sql,
        |rows| rows.len() >= 5,
    )
    .await;
    let rows = app.rows(sql).await;
    let row = |i: usize| {
        let r = &rows[i];
        (
            r["who"].as_str().unwrap().to_string(),
            r["role"].as_str().unwrap().to_string(),
            r["method"].as_str().unwrap().to_string(),
            r["status"].as_i64().unwrap(),
            r["client"].as_str().unwrap().to_string(),
        )
    };
    let local = "127.0.0.1".to_string();
    assert_eq!(
        row(0),
        (
            "admin".into(),
            "admin".into(),
            "PUT".into(),
            201,
            local.clone()
        )
    );
    assert_eq!(rows[0]["path"], "/api/v1/registry/sites/s1");
    assert_eq!(
        row(1),
        (
            "reader".into(),
            "read".into(),
            "PUT".into(),
            403,
            local.clone()
        )
    );
    for i in 2..5 {
        assert_eq!(
            row(i),
            (
                "unknown".into(),
                "none".into(),
                "GET".into(),
                401,
                local.clone()
            )
        );
    }
    assert_eq!(rows.len(), 5, "reads are not audited: {rows:?}");
}

/// `adit <args>`'s standard output; panics with its error output when it fails.
fn adit_output(args: &[&str]) -> String {
    let out = std::process::Command::new(adit_binary())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "adit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An HS256 JWT with `claims`, signed with `secret`.
fn jwt(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_token_kept_as_its_digest_and_jwts_from_real_clients() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_arg = certs.to_string_lossy().into_owned();
    adit_output(&[
        "certs",
        "--out",
        &certs_arg,
        "--server",
        "localhost,127.0.0.1",
    ]);
    // The operator's token as `adit token new` makes it: the config keeps only its digest.
    let made = adit_output(&["token", "new", "--name", "ops", "--role", "admin"]);
    let lines: Vec<&str> = made.lines().collect();
    let token = lines[1].trim().to_string();
    let entry = &made[made.find("[[query.tokens]]").expect(&made)..];
    assert!(
        !entry.contains(&token),
        "the config entry holds the token itself:\n{made}"
    );
    let digest = entry
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect(&made)
        .to_string();

    let secret = "the-farm-identity-providers-hs256-secret";
    let port = free_port();
    let config = dir.path().join("https.toml");
    std::fs::write(
        &config,
        format!(
            "[query]\nlisten = \"127.0.0.1:{port}\"\n\
             tls = {{ cert = \"{c}/coordinator.pem\", key = \"{c}/coordinator.key\" }}\n\
             {entry}\n\
             [query.jwt]\nalgorithm = \"HS256\"\nsecret = \"{secret}\"\nissuer = \"farm-idp\"\n",
            c = certs_arg
        ),
    )
    .unwrap();
    let mut args = run_args(
        dir.path(),
        config.to_string_lossy().into_owned(),
        &nats.url(),
    );
    *args.last_mut().unwrap() = "pipelines,query".into();
    let app = App::command(dir.path(), "https", port, &args);

    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    eventually(
        std::time::Duration::from_secs(60),
        "adit serves HTTPS",
        || async {
            https
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    let sql = |bearer: Option<String>| {
        let mut request = https
            .post(format!("{base}/api/v1/sql?format=json"))
            .header("content-type", "text/plain")
            .body("SELECT 1 AS one");
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(sql(None).await, 401);
    assert_eq!(sql(Some(token.clone())).await, 200, "{}", app.log());
    assert_eq!(
        sql(Some(digest.clone())).await,
        401,
        "the digest is not a token"
    );

    let now = chrono::Utc::now().timestamp();
    let claims = |role: &str, exp: i64, iss: &str| json!({"sub": "alice@farm", "role": role, "exp": exp, "iss": iss});
    let reader = jwt(secret, claims("read", now + 600, "farm-idp"));
    assert_eq!(sql(Some(reader.clone())).await, 200);
    let expired = jwt(secret, claims("read", now - 600, "farm-idp"));
    assert_eq!(sql(Some(expired)).await, 401);
    let elsewhere = jwt(secret, claims("admin", now + 600, "someone-else"));
    assert_eq!(sql(Some(elsewhere)).await, 401);
    let forged = jwt(
        "not-the-farms-secret-not-the-farms-secret",
        claims("admin", now + 600, "farm-idp"),
    );
    assert_eq!(sql(Some(forged)).await, 401);

    // A JWT's role holds: read may not change the registry, operate may not set a site's
    // allocation, admin may.
    let put = |bearer: String| {
        let request = https
            .put(format!("{base}/api/v1/registry/sites/s1"))
            .bearer_auth(bearer)
            .json(&json!({"allocation_kw": 10.0}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(put(reader.clone()).await, 403);
    let admin = jwt(secret, claims("admin", now + 600, "farm-idp"));
    assert_eq!(put(admin).await, 201, "{}", app.log());

    // The JWT's subject is who the audit trail names.
    let audit = "SELECT who, role, method, status FROM audit WHERE method = 'PUT' ORDER BY ts";
    let rows = || async {
        let r = https
            .post(format!("{base}/api/v1/sql?format=json"))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(audit)
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return Vec::new();
        }
        r.json::<Vec<serde_json::Value>>().await.unwrap()
    };
    eventually(
        std::time::Duration::from_secs(60),
        "the audit rows landed",
        || async { rows().await.len() >= 2 },
    )
    .await;
    assert_eq!(
        rows().await,
        vec![
            json!({"who": "alice@farm", "role": "read", "method": "PUT", "status": 403}),
            json!({"who": "alice@farm", "role": "admin", "method": "PUT", "status": 201}),
        ]
    );

    // `adit sql` over HTTPS, trusting the cluster's CA, with the JWT.
    let printed = adit_output(&[
        "sql",
        "--url",
        &base,
        "--ca",
        &format!("{certs_arg}/ca.pem"),
        "--token",
        &reader,
        "--format",
        "csv",
        "SELECT 41 + 1 AS answer",
    ]);
    assert_eq!(printed.trim(), "answer\n42");
}
