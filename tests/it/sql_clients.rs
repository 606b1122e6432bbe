//! The SQL clients people already use, against `adit demo` over TLS with an API token
//! (issue 28). PostgreSQL: Debian's `psql` lists the tables (`\dt`) and runs a join, `psycopg`
//! runs parameterized queries over the extended protocol and gets typed values back; each write
//! is refused and each limit enforced as over HTTP, with PostgreSQL's SQLSTATE; a wrong
//! password and a connection without TLS are refused. Arrow Flight SQL: the ADBC driver logs
//! in with the token as its password, lists the tables, reads a query into Arrow and runs a
//! prepared statement with a parameter; a write and a wrong password are refused. Every
//! client sees the rows `POST /api/v1/sql` sees.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Demo, READ_TOKEN, free_port};

/// What psql printed and whether it succeeded.
struct Psql {
    ok: bool,
    out: String,
    err: String,
}

/// Runs psql against the demo's PostgreSQL port (`args` after the connection), unaligned and
/// tuples only, stopping at the first error, with verbose errors (the SQLSTATE shown).
fn psql(port: u16, ca: &Path, password: &str, sslmode: &str, args: &[&str]) -> Psql {
    let out = Command::new("psql")
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .arg(format!(
            "host=localhost port={port} user=grafana dbname=adit sslmode={sslmode} sslrootcert={}",
            ca.display()
        ))
        .args([
            "-X",
            "-A",
            "-t",
            "-F",
            ",",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .args(args)
        .output()
        .expect("psql runs (scripts/setup.sh installs Debian's postgresql-client)");
    Psql {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Rows of `sql` through the HTTPS API as JSON, with the status (0: not answering yet).
async fn http(client: &reqwest::Client, base: &str, sql: &str) -> (u16, serde_json::Value) {
    let sent = client
        .post(format!("{base}/api/v1/sql?format=json"))
        .bearer_auth(READ_TOKEN)
        .body(sql.to_string())
        .send()
        .await;
    let Ok(r) = sent else {
        return (0, serde_json::Value::Null);
    };
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// What a psycopg client does: parameterized queries (server-side binding, so the extended
/// protocol with `$1`), and the Python types of what comes back.
const PSYCOPG: &str = r#"
import datetime, json, sys
import psycopg
port, password, ca, site, cutoff = sys.argv[1:6]
cutoff = datetime.datetime.fromisoformat(cutoff)
out = {}
with psycopg.connect(host="localhost", port=int(port), user="grafana", password=password,
                     dbname="adit", sslmode="verify-full", sslrootcert=ca) as conn:
    row = conn.execute(
        "SELECT site, count(*) AS n FROM energy_readings WHERE site = %s AND ts < %s GROUP BY site",
        (site, cutoff)).fetchone()
    out["site"], out["n"] = row[0], row[1]
    ts, flag, amount, nothing = conn.execute(
        "SELECT max(ts), %s::boolean, CAST(12.50 AS DECIMAL(10, 2)), CAST(NULL AS BIGINT) "
        "FROM energy_readings WHERE site = %s", (True, site)).fetchone()
    out["ts_type"] = type(ts).__name__
    out["ts_aware"] = ts.tzinfo is not None and ts.utcoffset() == datetime.timedelta(0)
    out["bool"] = flag
    out["decimal"] = [type(amount).__name__, str(amount)]
    out["null"] = nothing
    prepared = [conn.execute("SELECT count(*) FROM energy_readings WHERE site = %s AND ts < %s",
                             (site, cutoff), prepare=True).fetchone()[0] for _ in range(3)]
    out["prepared"] = prepared
print(json.dumps(out))
"#;

/// `adit demo` with HTTPS, a read token, small limits and both SQL ports, once energy from
/// both sites has landed.
struct Setup {
    demo: Demo,
    certs: tempfile::TempDir,
    ca: std::path::PathBuf,
    pg: u16,
    flight: u16,
    base: String,
    client: reqwest::Client,
}

impl Setup {
    async fn start() -> Self {
        let (certs, tls) = common::server_certs();
        let ca = certs.path().join("ca.pem");
        let (pg, flight) = (free_port(), free_port());
        let demo = Demo::start_with(&format!(
            "[query]\n{tls}\n\
             tokens = [{{ name = \"reader\", token = \"{READ_TOKEN}\", role = \"read\" }}]\n\
             [query.limits]\nmax_rows = 5000\ntimeout = \"3s\"\n\
             [query.postgres]\nlisten = \"127.0.0.1:{pg}\"\n\
             [query.flight]\nlisten = \"127.0.0.1:{flight}\"\n"
        ));
        let base = format!("https://localhost:{}", demo.http);
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap(),
            )
            .build()
            .unwrap();
        let started = Instant::now();
        let q = "SELECT count(DISTINCT site) AS n FROM energy_readings";
        while http(&client, &base, q).await.1[0]["n"] != 2 {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no energy rows; log:\n{}",
                demo.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Self {
            demo,
            certs,
            ca,
            pg,
            flight,
            base,
            client,
        }
    }

    /// A time before which the rows no longer change (the landing has caught up with it).
    async fn settled(&self) -> chrono::DateTime<chrono::Utc> {
        let cutoff = chrono::Utc::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        cutoff
    }
}

/// `t` as an SQL timestamp literal's text.
fn literal(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_psycopg_read_the_demo_as_the_http_api_does() {
    let setup = Setup::start().await;
    let (pg, ca, base, client, certs) = (
        setup.pg,
        &setup.ca,
        &setup.base,
        &setup.client,
        &setup.certs,
    );

    // psql lists the tables through pg_catalog.
    let listed = psql(pg, ca, READ_TOKEN, "verify-full", &["-c", "\\dt"]);
    assert!(listed.ok, "\\dt failed: {}", listed.err);
    for table in ["energy_readings", "shares", "site_energy_1m"] {
        assert!(
            listed
                .out
                .lines()
                .any(|l| l.starts_with(&format!("public,{table},table"))),
            "{table} not listed:\n{}",
            listed.out
        );
    }
    // psql's description of a table lists its columns.
    let described = psql(
        pg,
        ca,
        READ_TOKEN,
        "verify-full",
        &["-c", "\\d energy_readings"],
    );
    assert!(described.ok, "\\d failed: {}", described.err);
    assert!(described.out.contains("site"), "{}", described.out);

    // The same join through psql and through HTTP, on rows that no longer change.
    let cutoff = setup.settled().await;
    let join = format!(
        "SELECT e.site, count(*) AS readings, min(s.machines) AS machines \
         FROM energy_readings e \
         JOIN (SELECT site, count(DISTINCT machine) AS machines FROM energy_readings \
               WHERE ts < TIMESTAMP '{c}' GROUP BY site) s ON e.site = s.site \
         WHERE e.ts < TIMESTAMP '{c}' GROUP BY e.site ORDER BY e.site",
        c = literal(cutoff)
    );
    let mut agreed = false;
    for _ in 0..5 {
        let by_pg = psql(pg, ca, READ_TOKEN, "verify-full", &["-c", &join]);
        assert!(by_pg.ok, "join failed: {}", by_pg.err);
        let (status, rows) = http(client, base, &join).await;
        assert_eq!(status, 200, "{rows}");
        let by_http: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{},{},{}",
                    r["site"].as_str().unwrap(),
                    r["readings"],
                    r["machines"]
                )
            })
            .collect();
        assert_eq!(by_http.len(), 2, "{rows}");
        if by_pg.out.lines().collect::<Vec<_>>() == by_http {
            agreed = true;
            break;
        }
        eprintln!(
            "psql {:?} vs HTTP {by_http:?}; a late row, trying again",
            by_pg.out
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(agreed, "psql and the HTTP API never agreed on the join");

    // psycopg: parameters bound on the server, typed values back, the same count as HTTP.
    let (_, rows) = http(
        client,
        base,
        "SELECT min(site) AS site FROM energy_readings",
    )
    .await;
    let site = rows[0]["site"].as_str().unwrap().to_string();
    let cutoff_text = cutoff.to_rfc3339();
    let counted = format!(
        "SELECT count(*) AS n FROM energy_readings WHERE site = '{site}' AND ts < TIMESTAMP '{}'",
        literal(cutoff)
    );
    let expected = http(client, base, &counted).await.1[0]["n"].clone();
    let out = Command::new("python3")
        .args(["-c", PSYCOPG, &pg.to_string(), READ_TOKEN])
        .arg(ca)
        .args([&site, &cutoff_text])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psycopg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["site"], site.as_str(), "{got}");
    assert_eq!(got["n"], expected, "{got}");
    assert_eq!(
        got["prepared"],
        serde_json::json!([expected, expected, expected]),
        "{got}"
    );
    assert_eq!(got["ts_type"], "datetime", "{got}");
    assert_eq!(
        got["ts_aware"], true,
        "timestamps come with their time zone: {got}"
    );
    assert_eq!(got["bool"], true, "{got}");
    assert_eq!(
        got["decimal"],
        serde_json::json!(["Decimal", "12.50"]),
        "{got}"
    );
    assert_eq!(got["null"], serde_json::Value::Null, "{got}");

    // The shipped Grafana dashboard over the tables runs through this port: every panel's SQL
    // and its variable's, with Grafana's macros expanded as its PostgreSQL data source does.
    for (title, sql) in grafana_queries() {
        let sql = sql
            .replace("$__timeFilter(", "grafana_time_filter(")
            .replace("$site", &format!("'{site}'"));
        let sql = expand_time_filter(&sql);
        let ran = psql(pg, ca, READ_TOKEN, "verify-full", &["-c", &sql]);
        assert!(
            ran.ok,
            "the Grafana panel {title:?} fails: {}\n{sql}",
            ran.err
        );
    }

    // Writes are refused and limits hold, as over HTTP, each with PostgreSQL's code.
    let long = dir_file(
        certs,
        "long.sql",
        &format!("SELECT {}1;", "1 + ".repeat(80_000)),
    );
    let cases: [(&str, &[&str], &str, u16); 5] = [
        ("a write", &["-c", "DELETE FROM shares"], "25006", 403),
        (
            "a table made",
            &["-c", "CREATE TABLE t (a INT)"],
            "25006",
            403,
        ),
        (
            "a file written",
            &["-c", "COPY shares TO '/tmp/adit-pg-copy.csv'"],
            "25006",
            403,
        ),
        (
            "the row limit",
            &["-c", "SELECT * FROM generate_series(1, 100000)"],
            "54000",
            422,
        ),
        (
            "the statement size",
            &["-f", long.to_str().unwrap()],
            "54001",
            400,
        ),
    ];
    for (what, args, code, status) in cases {
        let refused = psql(pg, ca, READ_TOKEN, "verify-full", args);
        assert!(!refused.ok, "{what} was let through: {}", refused.out);
        assert!(
            refused.err.contains(&format!("ERROR:  {code}")),
            "{what}: expected SQLSTATE {code}: {}",
            refused.err
        );
        let sql = match args {
            ["-f", path] => std::fs::read_to_string(path).unwrap(),
            [_, sql] => sql.to_string(),
            _ => unreachable!(),
        };
        let (got, body) = http(client, base, &sql).await;
        assert_eq!(got, status, "{what} over HTTP: {body}");
    }
    assert!(!Path::new("/tmp/adit-pg-copy.csv").exists());
    // The time limit stops a statement mid-way and says so.
    let slow = psql(
        pg,
        ca,
        READ_TOKEN,
        "verify-full",
        &[
            "-c",
            "SELECT count(*) FROM generate_series(1, 100000000000) WHERE value % 7 = 3",
        ],
    );
    assert!(
        !slow.ok && slow.err.contains("ERROR:  57014"),
        "{}",
        slow.err
    );
    // The connection survives a refused statement, and a transaction block is accepted.
    let after = psql(
        pg,
        ca,
        READ_TOKEN,
        "verify-full",
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            "BEGIN; SELECT 41 + 1; COMMIT;",
            "-c",
            "SHOW server_version",
        ],
    );
    assert!(
        after.out.contains("42") && after.out.contains("16.6"),
        "{} {}",
        after.out,
        after.err
    );

    // A wrong token, and a connection without TLS, are refused before any statement.
    let wrong = psql(pg, ca, "not-a-token", "verify-full", &["-c", "SELECT 1"]);
    assert!(
        !wrong.ok && wrong.err.contains("password authentication failed"),
        "{}",
        wrong.err
    );
    let plain = psql(pg, ca, READ_TOKEN, "disable", &["-c", "SELECT 1"]);
    assert!(
        !plain.ok && plain.err.contains("TLS connections only"),
        "{}",
        plain.err
    );
}

/// Every SQL query of `deploy/grafana/records.json`: (panel title or variable name, SQL).
fn grafana_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/records.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                target["rawSql"].as_str().unwrap().to_string(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(sql) = variable["query"]
            .as_str()
            .filter(|_| variable["type"] == "query")
        {
            queries.push((
                variable["name"].as_str().unwrap().to_string(),
                sql.to_string(),
            ));
        }
    }
    assert!(queries.len() >= 5, "{queries:?}");
    queries
}

/// `grafana_time_filter(column)` as Grafana's `$__timeFilter(column)` expands: the column
/// between the dashboard's range, as RFC 3339 text.
fn expand_time_filter(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("grafana_time_filter(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "grafana_time_filter(".len()..];
        let end = after.find(')').expect("a closed macro");
        out.push_str(&format!(
            "{} BETWEEN '2026-01-01T00:00:00Z' AND '2099-01-01T00:00:00Z'",
            &after[..end]
        ));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Writes `text` to `name` in `dir`; its path.
fn dir_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// What an ADBC client does over Flight SQL: log in with the token as the password, list the
/// tables, read a query into Arrow, run a prepared statement with a parameter, try a write;
/// then log in with a wrong password.
const ADBC: &str = r#"
import json, sys
import adbc_driver_flightsql.dbapi as flight_sql
port, token, ca, site, cutoff = sys.argv[1:6]
uri = f"grpc+tls://localhost:{port}"
def options(password):
    return {"username": "grafana", "password": password,
            "adbc.flight.sql.client_option.tls_root_certs": open(ca).read()}
out = {}
with flight_sql.connect(uri, db_kwargs=options(token)) as conn:
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    out["tables"] = sorted(t["table_name"] for c in objects for s in (c["catalog_db_schemas"] or [])
                           for t in (s["db_schema_tables"] or []))
    cur = conn.cursor()
    cur.execute(f"SELECT site, count(*) AS n FROM energy_readings WHERE ts < TIMESTAMP '{cutoff}' "
                "GROUP BY site ORDER BY site")
    table = cur.fetch_arrow_table()
    out["rows"] = table.to_pylist()
    out["types"] = [str(f.type) for f in table.schema]
    cur.execute(f"SELECT count(*) AS n FROM energy_readings WHERE site = $1 AND ts < TIMESTAMP '{cutoff}'",
                parameters=(site,))
    out["bound"] = cur.fetch_arrow_table().to_pylist()
    cur.execute("SELECT max(ts) AS newest FROM energy_readings")
    out["ts_type"] = str(cur.fetch_arrow_table().schema.field("newest").type)
    try:
        cur.execute("DELETE FROM shares")
        cur.fetchall()
        out["write"] = "let through"
    except Exception as e:
        out["write"] = str(e)
try:
    with flight_sql.connect(uri, db_kwargs=options("not-a-token")) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        out["wrong"] = "let in"
except Exception as e:
    out["wrong"] = str(e)
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adbc_flight_sql_client_reads_the_demo_as_the_http_api_does() {
    let setup = Setup::start().await;
    let (base, client) = (&setup.base, &setup.client);
    let cutoff = setup.settled().await;
    let by_site = format!(
        "SELECT site, count(*) AS n FROM energy_readings WHERE ts < TIMESTAMP '{}' \
         GROUP BY site ORDER BY site",
        literal(cutoff)
    );
    let (status, expected) = http(client, base, &by_site).await;
    assert_eq!(status, 200, "{expected}");
    let site = expected[0]["site"].as_str().unwrap().to_string();
    let out = Command::new("python3")
        .args(["-c", ADBC, &setup.flight.to_string(), READ_TOKEN])
        .arg(&setup.ca)
        .args([site.as_str(), literal(cutoff).as_str()])
        .output()
        .expect("python3 runs (scripts/setup.sh installs adbc-driver-flightsql)");
    assert!(
        out.status.success(),
        "the ADBC client failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        setup.demo.log()
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tables: Vec<&str> = got["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for table in ["energy_readings", "shares", "site_energy_1m"] {
        assert!(tables.contains(&table), "{table} not listed: {tables:?}");
    }
    assert_eq!(got["rows"], expected, "Flight SQL and HTTP disagree");
    // DataFusion's strings are Arrow's string views; either is a string to an Arrow reader.
    assert!(
        got["types"] == serde_json::json!(["string_view", "int64"])
            || got["types"] == serde_json::json!(["string", "int64"]),
        "{got}"
    );
    let one_site = expected
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["site"] == site.as_str())
        .unwrap()["n"]
        .clone();
    assert_eq!(
        got["bound"],
        serde_json::json!([{ "n": one_site }]),
        "{got}"
    );
    assert!(
        got["ts_type"]
            .as_str()
            .unwrap()
            .starts_with("timestamp[us, tz="),
        "timestamps keep their zone: {got}"
    );
    assert!(
        got["write"].as_str().unwrap().contains("read-only"),
        "{}",
        got["write"]
    );
    let wrong = got["wrong"].as_str().unwrap();
    assert!(
        wrong.contains("Unauthenticated") || wrong.contains("UNAUTHENTICATED"),
        "{wrong}"
    );
}
