//! A real OpenADR 3.1 VTN for tests: OpenLEADR's `openleadr-vtn` 0.2.8 (installed by
//! `scripts/setup.sh` with `cargo install`), on a PostgreSQL server of the test's own (its
//! own data directory and free port, run as the `postgres` user when the test runs as root),
//! both killed on drop. A business-logic client (`bl-client`) creates programs and events and
//! reads reports; the VEN's client is `ven-1` with secret `ven-client` (OpenLEADR's own test
//! credentials: [`VEN_CLIENT_ID`], [`VEN_CLIENT_SECRET`]).
//!
//! OpenLEADR's migrations are written for PostgreSQL 16 or newer (two statements use a
//! subquery in FROM without an alias); Debian 12 ships 15. So the harness applies them itself
//! before the VTN starts, with that alias added, and records each with the checksum of the
//! file as shipped (SHA-384, as sqlx does): the VTN's own migrator then finds them applied. A
//! missing binary, server or migration is a test failure that says what to install.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha384};

use crate::free_port;

/// The VTN version the migrations and credentials are for.
const VTN_VERSION: &str = "0.2.8";
/// The VEN's client id at the VTN.
pub const VEN_CLIENT_ID: &str = "ven-1";
/// Its secret.
pub const VEN_CLIENT_SECRET: &str = "ven-client";
/// The business logic's client id and secret.
const BL_CLIENT: (&str, &str) = ("bl-client", "bl-client");
/// How long the database and the VTN may take to start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The clients: OpenLEADR's fixture users (argon2 hashes of the secrets `bl-client` and
/// `ven-client`), with the scopes of 0.2.8.
const USERS: &str = r#"
INSERT INTO "user" (id, reference, description, scopes, created, modified) VALUES
 ('bl', 'bl', NULL, '{read_all,write_programs,write_events,write_vens_bl,write_reports_bl,write_subscriptions_bl,write_users}', now(), now()),
 ('ven1', 'ven1', NULL, '{read_targets,read_ven_objects,write_reports_ven,write_vens_ven,write_subscriptions_ven}', now(), now());
INSERT INTO user_credentials (user_id, client_id, client_secret) VALUES
 ('bl', 'bl-client', '$argon2id$v=19$m=16,t=2,p=1$MWt1QVNFdHdlZVJhNEZzUA$Rmkguwgaz+A2GWIaDRtv8w'),
 ('ven1', 'ven-1', '$argon2id$v=19$m=16,t=2,p=1$YWlOSE8xRGFVdVVIa212Ug$tjmQC+zNC3QXc9K8mEXRrA');
"#;

/// A running VTN and its database; both killed on drop.
pub struct Vtn3 {
    vtn: Child,
    postgres: Child,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// The `openleadr-vtn` binary: on `PATH` or in cargo's bin folder.
fn vtn_binary() -> PathBuf {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin").join("openleadr-vtn"));
    let found = which("openleadr-vtn").or(cargo_bin.filter(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "openleadr-vtn not found: run scripts/setup.sh (cargo install openleadr-vtn --version {VTN_VERSION} --no-default-features --features postgres,internal-oauth)"
        )
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// PostgreSQL's server programs (`initdb`, `postgres`): the newest under
/// `/usr/lib/postgresql`, or on `PATH`.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .or_else(|| which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
        .expect("PostgreSQL's server (initdb, postgres) not found: run scripts/setup.sh (apt-get install postgresql)")
}

/// The migrations shipped in the installed crate's source (cargo's registry).
fn migrations_dir() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("HOME or CARGO_HOME");
    let registry = home.join("registry").join("src");
    std::fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| {
            index
                .path()
                .join(format!("openleadr-vtn-{VTN_VERSION}"))
                .join("migrations")
        })
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "openleadr-vtn {VTN_VERSION}'s migrations not found under {}: run scripts/setup.sh",
                registry.display()
            )
        })
}

/// Whether this process runs as root (PostgreSQL refuses to).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program` with `args`, as the `postgres` user when this process is root.
fn as_postgres(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program)
        .args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

/// Runs `sql` through psql on the server at `port`, database `db`; panics with its output.
fn psql(port: u16, db: &str, sql: &str) {
    use std::io::Write;
    let mut child = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-X"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql (postgresql-client)");
    child
        .stdin
        .take()
        .expect("psql's stdin")
        .write_all(sql.as_bytes())
        .expect("write to psql");
    let out = child.wait_with_output().expect("psql ran");
    assert!(
        out.status.success(),
        "psql failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        &sql[..sql.len().min(400)]
    );
}

/// Applies OpenLEADR's migrations from `dir` to `db`, each with the PostgreSQL 16 syntax
/// made 15's and recorded as sqlx records it.
fn migrate(port: u16, db: &str, dir: &Path) {
    psql(
        port,
        db,
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
           installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL,
           checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL);",
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the migrations folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migration in {}", dir.display());
    for file in files {
        let shipped = std::fs::read(&file).expect("a migration");
        let checksum = hex(&Sha384::digest(&shipped));
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a migration's name");
        let (version, description) = name.split_once('_').expect("<version>_<description>");
        let sql = String::from_utf8(shipped).expect("UTF-8 SQL").replace(
            "FROM (SELECT unnest(_scopes) AS scope)",
            "FROM (SELECT unnest(_scopes) AS scope) AS s",
        );
        psql(
            port,
            db,
            &format!(
                "BEGIN;\n{sql}\n;\nINSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ({version}, '{}', true, '\\x{checksum}', 0);\nCOMMIT;",
                description.replace('_', " ").replace('\'', "''")
            ),
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Vtn3 {
    /// Starts PostgreSQL and the VTN, with the clients made; panics with what to install
    /// when a part is missing, or with the logs when a part does not start.
    pub async fn start() -> Self {
        let binary = vtn_binary();
        let pg = postgres_bin();
        let migrations = migrations_dir();
        let dir = tempfile::tempdir().expect("a temporary directory for the VTN");
        let data = dir.path().join("pg");
        if is_root() {
            // The server runs as `postgres`: it owns the folder and its socket.
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(chown.success(), "chown the VTN's folder to postgres");
        }
        let data_arg = data.to_str().expect("a UTF-8 path");
        let init = as_postgres(
            &pg.join("initdb"),
            &[
                "-D",
                data_arg,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .output()
        .expect("initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let pg_port = free_port();
        let socket = dir.path().to_str().expect("a UTF-8 path");
        let pg_log = std::fs::File::create(dir.path().join("postgres.log")).expect("a log");
        let postgres = as_postgres(
            &pg.join("postgres"),
            &[
                "-D",
                data_arg,
                "-p",
                &pg_port.to_string(),
                "-k",
                socket,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
        )
        .stdout(Stdio::from(pg_log.try_clone().expect("log handle")))
        .stderr(Stdio::from(pg_log))
        .spawn()
        .expect("start postgres");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !Command::new(pg.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &pg_port.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        psql(pg_port, "postgres", "CREATE DATABASE openadr;");
        migrate(pg_port, "openadr", &migrations);
        psql(pg_port, "openadr", USERS);

        let port = free_port();
        let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let log = std::fs::File::create(dir.path().join("vtn.log")).expect("the VTN's log");
        let vtn = Command::new(binary)
            // Its own folder: the VTN reads any `.env` in its working directory and above.
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:{pg_port}/openadr"),
            )
            .env("PORT", port.to_string())
            .env("OAUTH_TYPE", "INTERNAL")
            .env("OAUTH_BASE64_SECRET", secret)
            .env(
                "OAUTH_TOKEN_URL",
                format!("http://127.0.0.1:{port}/auth/token"),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start openleadr-vtn");
        let vtn = Self {
            vtn,
            postgres,
            port,
            dir,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let up = vtn
                .http
                .get(format!("{}/health", vtn.url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the VTN did not start; its log:\n{}",
                vtn.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = vtn.output();
        assert!(
            !log.to_ascii_lowercase().contains("migration failed"),
            "the VTN's migrations failed: {log}"
        );
        vtn
    }

    /// The VTN's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the VTN printed.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vtn.log")).unwrap_or_default()
    }

    /// A business-logic token.
    async fn token(&self) -> String {
        let reply: Value = self
            .http
            .post(format!("{}/auth/token", self.url()))
            .basic_auth(BL_CLIENT.0, Some(BL_CLIENT.1))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("the VTN's token endpoint")
            .json()
            .await
            .expect("a JSON token");
        reply["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {reply}"))
            .to_string()
    }

    /// `method path` with `body` as the business logic; the JSON answer.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let token = self.token().await;
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the VTN's API");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "{method} {path}: {status} {text}; log:\n{}",
            self.output()
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates a program; its id.
    pub async fn create_program(&self, name: &str) -> String {
        let program = self
            .call(
                reqwest::Method::POST,
                "/programs",
                Some(json!({ "programName": name })),
            )
            .await;
        program["id"].as_str().expect("a program id").to_string()
    }

    /// Creates `event` (its `programID` set by the caller); its id.
    pub async fn create_event(&self, event: Value) -> String {
        let event = self
            .call(reqwest::Method::POST, "/events", Some(event))
            .await;
        event["id"].as_str().expect("an event id").to_string()
    }

    /// Replaces event `id` with `event`.
    pub async fn update_event(&self, id: &str, event: Value) {
        self.call(reqwest::Method::PUT, &format!("/events/{id}"), Some(event))
            .await;
    }

    /// Every report on event `id`, as the business logic reads them back.
    pub async fn reports(&self, event_id: &str) -> Vec<Value> {
        let reports = self
            .call(
                reqwest::Method::GET,
                &format!("/reports?eventID={event_id}"),
                None,
            )
            .await;
        reports.as_array().cloned().unwrap_or_default()
    }

    /// Every VEN registered.
    pub async fn vens(&self) -> Vec<Value> {
        let vens = self.call(reqwest::Method::GET, "/vens", None).await;
        vens.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Vtn3 {
    fn drop(&mut self) {
        // Killing a child that already exited fails harmlessly; wait reaps it either way.
        if self.vtn.kill().is_ok() {
            self.vtn.wait().ok();
        }
        // PostgreSQL's fast shutdown (SIGINT) ends its backends too; a kill if it hangs.
        let pid = self.postgres.id().to_string();
        let asked = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while asked.as_ref().is_ok_and(|s| s.success())
            && Instant::now() < deadline
            && self.postgres.try_wait().is_ok_and(|done| done.is_none())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.postgres.kill().is_ok() {
            self.postgres.wait().ok();
        }
    }
}
