//! Harness for the end-to-end tests: the real `adit` binary on free ports against a private
//! nats-server and temp Delta tables, killed and restarted at will.

#![allow(dead_code, unreachable_pub)]

pub mod farm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adit_bus::publish::Outgoing;
use adit_bus::{Publisher, ensure_streams};
use adit_sinks::TableStore;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;

/// The adit binary the tests run: the one cargo built, or `ADIT_TEST_BIN` (an older build, to
/// show that a test fails before the fix it guards).
pub fn adit_binary() -> std::ffi::OsString {
    std::env::var_os("ADIT_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_adit").into())
}

pub use adit_testkit::{NatsServer, free_port};

/// Tokens the test config defines.
pub const READ_TOKEN: &str = "read-token-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";
/// The `operator` token (operate role) every test app accepts.
pub const OPERATE_TOKEN: &str = "operate-token-0123456789";

/// A running `adit` process.
pub struct App {
    child: Option<Child>,
    args: Vec<String>,
    pub port: u16,
    pub dir: PathBuf,
    log: PathBuf,
    /// Environment variables the process gets besides the test's own.
    env: Vec<(String, String)>,
}

impl App {
    /// Writes a config into `dir` and starts `adit run --roles <roles>` with its tables under
    /// `dir/tables`.
    pub fn start(nats_url: &str, dir: &Path, roles: &str, extra_toml: &str) -> Self {
        Self::start_on(nats_url, dir, &dir.join("tables"), roles, extra_toml)
    }

    /// [`App::start`] with the tables under `tables` (several processes may share one root).
    pub fn start_on(
        nats_url: &str,
        dir: &Path,
        tables: &Path,
        roles: &str,
        extra_toml: &str,
    ) -> Self {
        Self::start_with_env(nats_url, dir, tables, roles, extra_toml, &[])
    }

    /// [`App::start_on`] with `env` set for the process.
    pub fn start_with_env(
        nats_url: &str,
        dir: &Path,
        tables: &Path,
        roles: &str,
        extra_toml: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let config = dir.join("adit.toml");
        // The tests' devices, relays and webhooks listen on loopback, which the egress policy
        // refuses by default: widened here unless the test sets its own.
        let egress = if extra_toml.contains("[egress]") {
            ""
        } else {
            "[egress]\ndevices = [\"private\", \"loopback\"]\nfeeds = [\"public\", \"loopback\"]\nnotify = [\"public\", \"loopback\"]\n"
        };
        let energy = if extra_toml.contains("[pipelines.energy]") {
            ""
        } else {
            "[pipelines.energy]\ntick = \"500ms\"\n"
        };
        std::fs::write(
            &config,
            format!(
                "{egress}[pipelines]\nbatch_max_rows = 2000\nbatch_max_wait = \"200ms\"\nlease_ttl = \"3s\"\n\
                 {energy}[query]\nlisten = \"127.0.0.1:{port}\"\n\
                 tokens = [{{ name = \"reader\", token = \"{READ_TOKEN}\", role = \"read\" }}, \
                           {{ name = \"operator\", token = \"{OPERATE_TOKEN}\", role = \"operate\" }}, \
                           {{ name = \"admin\", token = \"{ADMIN_TOKEN}\", role = \"admin\" }}]\n{extra_toml}"
            ),
        )
        .unwrap();
        let args = vec![
            "--config".into(),
            config.to_string_lossy().into_owned(),
            "--nats-url".into(),
            nats_url.into(),
            "--tables".into(),
            tables.to_string_lossy().into_owned(),
            "--data-dir".into(),
            dir.join("data").to_string_lossy().into_owned(),
            "run".into(),
            "--roles".into(),
            roles.into(),
        ];
        let mut app = Self {
            child: None,
            args,
            port,
            dir: dir.to_path_buf(),
            log: dir.join("adit.log"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        app.spawn();
        app
    }

    /// Starts `adit <args>` (any subcommand) logging to `dir/<name>.log`; `port` is the HTTP
    /// port the arguments give it, for [`App::url`].
    pub fn command(dir: &Path, name: &str, port: u16, args: &[String]) -> Self {
        let mut app = Self {
            child: None,
            args: args.to_vec(),
            port,
            dir: dir.to_path_buf(),
            log: dir.join(format!("{name}.log")),
            env: Vec::new(),
        };
        app.spawn();
        app
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(adit_binary())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn adit");
        self.child = Some(child);
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status, once the process has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        c.wait().map(|s| s.success()).unwrap_or(false)
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `/health` answers.
    pub async fn wait_http(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/health", self.url())).await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "adit did not serve HTTP; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Puts each (path, body) through the API with the admin token (a site's allocation and
    /// safety limits are an admin's), in order; panics on a refusal, naming the path.
    #[allow(dead_code)]
    pub async fn put_all(&self, records: Vec<(String, serde_json::Value)>) {
        let client = reqwest::Client::new();
        for (path, body) in records {
            let r = client
                .put(format!("{}{path}", self.url()))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success(),
                "{path}: {}",
                r.text().await.unwrap()
            );
        }
    }

    /// Rows of `sql` as JSON objects (read token); panics on an error answer.
    pub async fn rows(&self, sql: &str) -> Vec<serde_json::Value> {
        let (status, body) = self.sql(sql, "json", Some(READ_TOKEN)).await;
        assert_eq!(status, 200, "{sql}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// The JSON body of a GET of `path` with `token` (whatever its status); panics on a body
    /// that is not `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> T {
        json_of(
            reqwest::Client::new()
                .get(format!("{}{path}", self.url()))
                .bearer_auth(token),
        )
        .await
    }

    /// The Prometheus text of `/metrics` (no token).
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Rows of `sql` as JSON objects (read token), or none while it is refused (before the
    /// tables it reads are made); panics on an answer that is not JSON rows.
    pub async fn try_rows(&self, sql: &str) -> Option<Vec<serde_json::Value>> {
        let (status, body) = self.sql(sql, "json", Some(READ_TOKEN)).await;
        (status == 200).then(|| serde_json::from_slice(&body).unwrap())
    }

    /// Waits up to `limit` for `sql` to answer with rows `done` accepts (polling through
    /// refusals, as while its tables are not made yet); on timing out, panics with the last
    /// answer, so a failure shows what was there instead.
    pub async fn wait_rows(
        &self,
        limit: Duration,
        what: &str,
        sql: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let rows = self.try_rows(sql).await;
            if rows.as_deref().is_some_and(&done) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the last answer to {sql}: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Evaluates an alert rule once through the API (`POST /api/v1/alerts/evaluate` with
    /// `ask`, as a reader); the answer, which must be a 200.
    pub async fn evaluate(&self, ask: &serde_json::Value) -> serde_json::Value {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/alerts/evaluate", self.url()))
            .bearer_auth(READ_TOKEN)
            .json(ask)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.json().await.unwrap_or(serde_json::Value::Null);
        assert_eq!(status, 200, "evaluating {ask}: {body}");
        body
    }

    /// Runs SQL through the API with `format` and `token`; returns status and body.
    pub async fn sql(&self, sql: &str, format: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let mut req = reqwest::Client::new()
            .post(format!("{}/api/v1/sql?format={format}", self.url()))
            .header("content-type", "text/plain")
            .body(sql.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.bytes().await.unwrap().to_vec())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private nats-server, a temp dir and [`App::start`] on them with `roles` and
/// `extra_toml`, once it serves HTTP.
pub async fn start_app(roles: &str, extra_toml: &str) -> (NatsServer, tempfile::TempDir, App) {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&nats.url(), dir.path(), roles, extra_toml);
    app.wait_http().await;
    (nats, dir, app)
}

/// Requests to an app's API as one caller: with a token, or with none (no Authorization).
pub struct Caller {
    url: String,
    token: Option<&'static str>,
}

impl Caller {
    /// With `token`.
    pub fn new(app: &App, token: &'static str) -> Self {
        Self {
            url: app.url(),
            token: Some(token),
        }
    }

    /// With no token.
    pub fn anonymous(app: &App) -> Self {
        Self {
            url: app.url(),
            token: None,
        }
    }

    /// A request: its status and JSON body (null when it has none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        if_match: Option<u64>,
    ) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(t) = self.token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        if let Some(r) = if_match {
            request = request.header("if-match", r.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, Some(body), None)
            .await
    }

    pub async fn put(
        &self,
        path: &str,
        body: serde_json::Value,
        if_match: Option<u64>,
    ) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::PUT, path, Some(body), if_match)
            .await
    }
}

/// A publisher on `nats`, with the streams created.
pub async fn publisher(nats: &NatsServer) -> (Publisher, async_nats::jetstream::Context) {
    let js = nats.jetstream().await;
    ensure_streams(&js, &Default::default()).await.unwrap();
    (Publisher::new(js.clone()), js)
}

/// Runs SQL directly on the tables under `root` (bypassing the API).
pub async fn query(root: &Path, tables: &[&str], sql: &str) -> Vec<RecordBatch> {
    let store = TableStore::new(root.to_str().unwrap(), Default::default()).unwrap();
    let ctx = SessionContext::new();
    for t in tables {
        store.register(&ctx, t).await.unwrap();
    }
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// The single i64 a query returns (0 when the table does not exist yet).
pub async fn scalar(root: &Path, tables: &[&str], sql: &str) -> i64 {
    let store = TableStore::new(root.to_str().unwrap(), Default::default()).unwrap();
    let ctx = SessionContext::new();
    for t in tables {
        if !store.register(&ctx, t).await.unwrap() {
            return 0;
        }
    }
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let col = batches[0].column(0);
    let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Int64).unwrap();
    let col = col.as_primitive::<Int64Type>();
    if col.is_null(0) { 0 } else { col.value(0) }
}

/// Rows in `energy_readings` under `root`, read directly (0 before the table exists).
#[allow(dead_code)]
pub async fn energy_rows(root: &Path) -> i64 {
    scalar(
        root,
        &["energy_readings"],
        "SELECT count(*) FROM energy_readings",
    )
    .await
}

/// Column `name` of `batch` as i64s.
pub fn ints(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let col = arrow::compute::cast(
        batch.column_by_name(name).unwrap(),
        &arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    col.as_primitive::<Int64Type>().values().to_vec()
}

/// Column `name` of `batch` as strings.
pub fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let col = arrow::compute::cast(
        batch.column_by_name(name).unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let col = col.as_string::<i32>();
    (0..col.len()).map(|i| col.value(i).to_string()).collect()
}

/// Logs in to the pool `app` runs at `addr` as `login`, retrying while its Stratum port opens.
pub async fn stratum_login(
    app: &App,
    addr: std::net::SocketAddr,
    login: &str,
) -> adit_stratum::StratumClient {
    for _ in 0..100 {
        if let Ok(miner) = adit_stratum::StratumClient::login(addr, login).await {
            return miner;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("pool did not accept a login; log:\n{}", app.log())
}

/// Polls `f` every 200 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An energy reading event as a message.
pub fn energy(i: usize, base: chrono::DateTime<chrono::Utc>) -> Outgoing {
    use adit_schemas::{AnyEvent, EnergyReading, EnergySource};
    Outgoing::event(&AnyEvent::Energy(EnergyReading {
        site: format!("site-{:02}", i % 3),
        machine: format!("m-{:03}", i % 50),
        ts: base + chrono::Duration::milliseconds(i as i64),
        power_w: 1000.0 + (i % 100) as f64,
        energy_wh: None,
        source: EnergySource::Pdu,
    }))
}

/// `count` telemetry events, three energy readings for every sensor reading, interleaved: two
/// tables fed from one stream.
pub fn telemetry(count: usize, base: chrono::DateTime<chrono::Utc>) -> Vec<Outgoing> {
    (0..count)
        .map(|i| {
            if i % 4 == 3 {
                sensor(i, base)
            } else {
                energy(i, base)
            }
        })
        .collect()
}

/// A sensor reading event as a message.
pub fn sensor(i: usize, base: chrono::DateTime<chrono::Utc>) -> Outgoing {
    use adit_schemas::{AnyEvent, SensorKind, SensorReading};
    Outgoing::event(&AnyEvent::Sensor(SensorReading {
        site: format!("site-{:02}", i % 3),
        sensor: format!("t-{:02}", i % 7),
        kind: SensorKind::Temperature,
        value: 20.0 + (i % 15) as f64,
        ts: base + chrono::Duration::milliseconds(i as i64),
    }))
}

/// `sql` run by DuckDB over the active Parquet files of `table` under `root` (`{t}` in `sql`
/// stands for them); its first value as text.
pub async fn duckdb_value(root: &Path, table: &str, sql: &str) -> String {
    let table = adit_sinks::TableStore::new(root.to_str().unwrap(), Default::default())
        .unwrap()
        .open(table)
        .await
        .unwrap()
        .unwrap();
    let files: Vec<String> = table
        .get_file_uris()
        .unwrap()
        .map(|u| format!("'{}'", u.trim_start_matches("file://")))
        .collect();
    let sql = sql.replace("{t}", &format!("read_parquet([{}])", files.join(",")));
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            &format!("import duckdb; print(duckdb.sql(\"{sql}\").fetchall()[0][0])"),
        ])
        .output()
        .expect("python3 (scripts/setup.sh installs it with duckdb)");
    assert!(
        out.status.success(),
        "duckdb failed (scripts/setup.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `adit demo` on free ports in a temp folder, terminated when dropped (a failed test leaves
/// nothing running).
pub struct Demo {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    /// The HTTP port.
    pub http: u16,
}

impl Demo {
    /// Starts the demo.
    #[allow(dead_code)]
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts the demo with `extra_toml` in its config (tokens, TLS…).
    #[allow(dead_code)]
    pub fn start_with(extra_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (http, stratum) = (free_port(), free_port());
        let config = dir.path().join("demo.toml");
        std::fs::write(
            &config,
            format!("[pool]\nlisten = \"127.0.0.1:{stratum}\"\n{extra_toml}"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("demo.log")).unwrap();
        let child = Command::new(adit_binary())
            .args(["--config", config.to_str().unwrap(), "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{http}"), "demo"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn adit demo");
        Self {
            child: Some(child),
            dir: Some(dir),
            http,
        }
    }

    /// Its folder (config, log, data).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .expect("the demo's folder")
    }

    /// Keeps the folder after the test (for whoever reads a failure) and returns its path.
    pub fn keep(&mut self) -> PathBuf {
        self.dir
            .take()
            .map(|d| d.keep())
            .expect("the demo's folder")
    }

    /// What it has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("demo.log")).unwrap_or_default()
    }

    /// SIGTERM; whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        signalled && child.wait().is_ok_and(|s| s.success())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.is_some() && !self.terminate() {
            eprintln!("adit demo did not exit cleanly; log:\n{}", self.log());
        }
    }
}

/// What `request` answers, as JSON (whatever its status); panics when it cannot be sent or
/// the answer is not `T`.
pub async fn json_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
}

/// The height monerod's RPC at `url` reports.
#[allow(dead_code)]
pub async fn monerod_height(url: &str) -> u64 {
    let reply: serde_json::Value = json_of(
        reqwest::Client::new()
            .post(format!("{url}/json_rpc"))
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": "0", "method": "get_block_count"})),
    )
    .await;
    reply["result"]["count"].as_u64().unwrap()
}

/// Up to `max` messages of `stream` on `filter` (all subjects when empty), from the first kept,
/// waiting at most 2 s for them.
#[allow(dead_code)]
pub async fn stream_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
    filter: &str,
    max: usize,
) -> Vec<async_nats::jetstream::Message> {
    use futures::StreamExt;
    let consumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: filter.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut fetched = consumer
        .fetch()
        .max_messages(max)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut messages = Vec::new();
    while let Some(Ok(message)) = fetched.next().await {
        messages.push(message);
    }
    messages
}

/// Runs the Python script `tests/browser/<script>` with `args`, its output to `log`, killed
/// after `limit`; its exit status and what it printed.
#[allow(dead_code)]
pub fn run_browser_script(
    script: &str,
    args: &[String],
    log: &Path,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let output = std::fs::File::create(log).unwrap();
    let mut child = Command::new("python3")
        .arg(&path)
        .args(args)
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 (scripts/setup.sh installs it with playwright)");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

/// A CA and a server certificate for `localhost`/127.0.0.1 made by `adit certs`, in a folder
/// of their own, and the `tls = {…}` line of `[query]` that serves them.
#[allow(dead_code)]
pub fn server_certs() -> (tempfile::TempDir, String) {
    let certs = tempfile::tempdir().unwrap();
    let made = Command::new(adit_binary())
        .args(["certs", "--server", "localhost,127.0.0.1", "--out"])
        .arg(certs.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let pem = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        pem("coordinator.pem"),
        pem("coordinator.key")
    );
    (certs, tls)
}

/// The shipped alert rules with every group's interval and every `for` a second.
pub fn shortened_rules(rules: &str) -> String {
    rules
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            if trimmed.starts_with("interval: ") {
                format!("{indent}interval: 1s")
            } else if trimmed.starts_with("for: ") {
                format!("{indent}for: 1s")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A real SMTP server (Python's aiosmtpd) keeping what it receives in a maildir.
pub struct Smtp {
    /// Its process.
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    maildir: tempfile::TempDir,
}

impl Smtp {
    /// Starts one on a free port.
    pub fn start() -> Self {
        let port = free_port();
        let maildir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (scripts/setup.sh installs it)");
        let give_up = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < give_up, "aiosmtpd did not start on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            port,
            maildir,
        }
    }

    /// The messages received, as text.
    pub fn mail(&self) -> Vec<String> {
        let new = self.maildir.path().join("mail").join("new");
        std::fs::read_dir(new)
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
