//! Property tests of the HTTP API (issue 22): random requests go through the real router in
//! process (`tower::ServiceExt::oneshot`): every route's path with hostile text in its
//! parameters (control characters, `..`, text that is not UTF-8 once decoded, 5000
//! characters), random paths, random query strings, headers (tokens of each role, random and
//! very long values) and bodies (random bytes, JSON of the routes' shapes with hostile values,
//! JSON nested 10 000 deep, bodies over the size limit, SQL of every kind).
//!
//! Whatever comes, the router answers within a minute, never with a 500 (over an empty table
//! root and without NATS nothing on our side can fail, so a 500 is a request we mishandled),
//! and every error it answers in JSON has the API's one shape, `{"error": {"code",
//! "message"}}` (`field` besides when one is named).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use adit_api::{AppState, Role, TokenConfig, Tokens, router};
use adit_sql::{Catalog, SqlEngine, SqlLimits};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use proptest::prelude::*;
use serde_json::Value;
use tower::ServiceExt;

const READ: &str = "reader-token-0000";
const OPERATE: &str = "operate-token-000";
const ADMIN: &str = "admin-token-00000";

/// The router, built once per test process over an empty table root of its own.
fn app() -> Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| {
        let store = adit_testkit::empty_tables(env!("CARGO_TARGET_TMPDIR"), "hostile-http-");
        let limits = SqlLimits {
            timeout: Duration::from_secs(30),
            threads: 2,
            ..SqlLimits::default()
        };
        let state = AppState::bare(Arc::new(SqlEngine::new(
            Arc::new(Catalog::new(store, Duration::ZERO)),
            limits,
        )));
        let tokens = Tokens::new(
            "query",
            &[
                TokenConfig::new("r", READ, Role::Read),
                TokenConfig::new("o", OPERATE, Role::Operate),
                TokenConfig::new("a", ADMIN, Role::Admin),
            ],
            None,
        )
        .unwrap();
        // As the binary mounts HTTP ingest: behind the operate role.
        let operate = utoipa_axum::router::OpenApiRouter::new().route(
            "/api/v1/ingest/{kind}",
            axum::routing::post(|| async { "ingested" }),
        );
        router(state, tokens, Default::default(), operate)
    })
    .clone()
}

/// Every route of `adit_api::router` (and the ingest route mounted beside them), with the
/// methods it answers.
const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/dashboard/{file}", &["GET"]),
    ("/health", &["GET"]),
    ("/live", &["GET"]),
    ("/ready", &["GET"]),
    ("/metrics", &["GET"]),
    ("/api/v1/openapi.json", &["GET"]),
    ("/api/v1/sql", &["GET", "POST"]),
    ("/api/v1/tables", &["GET"]),
    ("/api/v1/pools/{pool}", &["GET"]),
    ("/api/v1/pools/{pool}/blocks", &["GET"]),
    ("/api/v1/pools/{pool}/payments", &["GET"]),
    ("/api/v1/pools/{pool}/miners/{miner}", &["GET"]),
    ("/api/v1/pools/{pool}/miners/{miner}/workers", &["GET"]),
    ("/api/v1/violations", &["GET", "POST"]),
    ("/api/v1/violations/{id}/resolve", &["POST"]),
    ("/api/v1/control/overrides", &["GET", "POST"]),
    ("/api/v1/control/overrides/{site}/{id}/cancel", &["POST"]),
    ("/api/v1/control/commands", &["POST"]),
    ("/api/v1/alerts", &["GET"]),
    ("/api/v1/alerts/silences", &["GET", "POST"]),
    ("/api/v1/alerts/acknowledge", &["POST"]),
    ("/api/v1/alerts/resolve", &["POST"]),
    ("/api/v1/alerts/rules", &["GET"]),
    ("/api/v1/alerts/rules/{group}", &["GET", "PUT", "DELETE"]),
    ("/api/v1/alerts/evaluate", &["POST"]),
    ("/api/v1/alerts/receivers", &["GET"]),
    ("/api/v1/alerts/receivers/{name}", &["PUT", "DELETE"]),
    ("/api/v1/alerts/receivers/{name}/test", &["POST"]),
    ("/api/v1/alerts/route", &["PUT", "DELETE"]),
    ("/api/v1/bans", &["GET"]),
    ("/api/v1/bans/{network}", &["PUT", "DELETE"]),
    ("/api/v1/live", &["GET"]),
    ("/api/v1/reports/compliance", &["GET"]),
    ("/api/v1/registry/{kind}", &["GET"]),
    ("/api/v1/registry/{kind}/{id}", &["GET", "PUT", "DELETE"]),
    (
        "/api/v1/registry/{kind}/{site}/{id}",
        &["GET", "PUT", "DELETE"],
    ),
    ("/api/v1/ingest/{kind}", &["POST"]),
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Paths near the real ones.
const ODD_PATHS: &[&str] = &[
    "//api/v1/sql",
    "/api/v1/sql/",
    "/API/V1/SQL",
    "/api/v1/../v1/sql",
    "/api/v1/./sql",
    "/api/v1/sql%00",
    "/api/v1/%2e%2e/v1/sql",
    "/dashboard/",
    "/dashboard/..%2F..%2Fsrc%2Fserver.rs",
    "/api/v1/registry/",
    "/api/v1/pools//miners//workers",
    "/api/v1/alerts/rules/",
    "*",
];

/// Statements of every kind: valid ones with every result type, ones over each limit, ones
/// that would write or read outside the tables.
const STATEMENTS: &[&str] = &[
    "SELECT 1",
    "SELECT 1/0",
    "SELECT 1 % 0",
    "SELECT 9223372036854775807 + 1",
    "SELECT CAST('x' AS INT)",
    "SELECT repeat('x', 1000000000)",
    "SELECT lpad('x', 2147483647)",
    "SELECT range(1, 1000000000)",
    "SELECT * FROM generate_series(1, 3000000)",
    "SELECT count(*) FROM generate_series(1, 1000000)",
    "SELECT * FROM shares",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM information_schema.df_settings",
    "SHOW ALL",
    "SHOW TABLES",
    "EXPLAIN SELECT 1",
    "EXPLAIN ANALYZE SELECT 1",
    "DESCRIBE shares",
    "DROP TABLE shares",
    "DELETE FROM shares",
    "INSERT INTO shares VALUES (1)",
    "CREATE TABLE x AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
    "COPY (SELECT 1) TO '/tmp/adit-hostile-http.csv'",
    "SET datafusion.execution.batch_size = 1",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT 1; SELECT 2",
    ";",
    "",
    "   ",
    "--",
    "/*",
    "SELECT",
    "SELECT INTERVAL '1 day' AS i, [1, 2] AS l, named_struct('a', 1) AS st, NULL AS n, X'00ff' AS b, \
     CAST(1.5 AS DECIMAL(10, 2)) AS d, now() AS ts, DATE '2026-11-23' AS day, \
     arrow_cast('a', 'Dictionary(Int32, Utf8)') AS dict, map(['k'], [1]) AS m",
    "SELECT CAST('NaN' AS DOUBLE) AS nan, CAST('inf' AS DOUBLE) AS inf, -0.0 AS z",
    "SELECT [[1, 2], NULL, []] AS nested, named_struct('a', [1], 'b', NULL) AS st",
    "SELECT s FROM (VALUES ('a'), (NULL), ('\u{0}\r\n\"')) t(s)",
    "SELECT 1 AS \"\u{0}\", 2 AS \"a,b\", 3 AS \"\"\"\"",
];

/// Keys the routes' JSON bodies and query strings use.
const KEYS: &[&str] = &[
    "sql",
    "format",
    "stream",
    "site",
    "kind",
    "severity",
    "subject",
    "note",
    "machine",
    "value",
    "duration",
    "reason",
    "matchers",
    "comment",
    "id",
    "name",
    "interval",
    "rules",
    "alert",
    "expr",
    "for",
    "labels",
    "annotations",
    "type",
    "revision",
    "timezone",
    "allocation_kw",
    "pool",
    "model",
    "nominal_power_w",
    "q",
    "limit",
    "offset",
    "status",
    "from",
    "to",
    "active",
    "state",
    "rule",
    "subjects",
    "date",
    "scope",
    "source",
];

/// Values the routes know, and some they must refuse.
const VALUES: &[&str] = &[
    "json",
    "ndjson",
    "csv",
    "arrow",
    "parquet",
    "PARQUET",
    "yaml",
    "html",
    "true",
    "false",
    "1",
    "0",
    "-1",
    "18446744073709551616",
    "open",
    "resolved",
    "firing",
    "2026-11-23",
    "9999-12-31",
    "2026-11-23T12:00:00Z",
    "results.>",
    "mining.block.>",
    ">",
    "",
    "2h",
    "0s",
    "999999999999999h",
    "target",
    "hold",
    "power_limit",
    "cancel",
    "critical",
    "Europe/Oslo",
    "not/a/zone",
    "manual:site:x:kind:1",
    "::::",
    "sites",
    "machines",
    "p1",
    "\r\n",
    "SELECT 1",
    "DROP TABLE shares",
];

/// `text` percent-encoded but for the unreserved characters: always a valid URI part.
fn encode(text: &str) -> String {
    encode_bytes(text.as_bytes())
}

fn encode_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One path segment, as it appears in the URI.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>().prop_map(|s| encode(&s)),
        2 => "[a-z0-9_-]{1,12}",
        3 => prop::sample::select(vec![
            "sites", "pools", "machines", "sensors", "meters", "p1", "app.js", "index.html",
            "style.css", "icon.svg", "g1", "north",
        ])
        .prop_map(String::from),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just("%2e%2e".to_string()),
        1 => Just("..%2F..%2F..%2Fetc%2Fpasswd".to_string()),
        // Not UTF-8 once decoded; not an escape at all.
        1 => Just("%FF%FE".to_string()),
        1 => Just("%".to_string()),
        1 => Just("%zz".to_string()),
        1 => Just("%00%0D%0A%1B%7F".to_string()),
        1 => Just("x".repeat(5000)),
        1 => Just(encode(&"é".repeat(5000))),
        1 => Just(encode("'; DROP TABLE shares; --")),
        1 => Just(encode("s'1\"\\")),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| encode_bytes(&b)),
    ]
}

/// `template` with each `{param}` replaced by the next of `segments`.
fn fill(template: &str, segments: &[String]) -> String {
    let mut out = String::new();
    let mut rest = template;
    let mut next = segments.iter();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(next.next().map_or("x", String::as_str));
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// A method and a path: mostly a real route with the method it answers, else anything.
fn target() -> impl Strategy<Value = (String, String)> {
    let routed = (
        0..ROUTES.len(),
        prop::collection::vec(segment(), 3),
        any::<prop::sample::Index>(),
        0u8..5,
        prop::sample::select(METHODS),
    )
        .prop_map(|(route, segments, pick, usual, other)| {
            let (template, methods) = ROUTES[route];
            let method = if usual > 0 { pick.get(methods) } else { &other };
            (method.to_string(), fill(template, &segments))
        });
    prop_oneof![
        8 => routed,
        1 => (
            prop::sample::select(METHODS),
            prop::collection::vec(segment(), 0..6),
        )
            .prop_map(|(m, s)| (m.to_string(), format!("/{}", s.join("/")))),
        // Raw text: what is not a URI is skipped when the request is built.
        1 => (prop::sample::select(METHODS), "[ -~]{0,120}")
            .prop_map(|(m, p)| (m.to_string(), format!("/{p}"))),
        1 => (prop::sample::select(METHODS), prop::sample::select(ODD_PATHS))
            .prop_map(|(m, p)| (m.to_string(), p.to_string())),
    ]
}

/// Statements, as a query string's `q`, a body, or a JSON body's `sql`.
fn sql() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => prop::sample::select(STATEMENTS).prop_map(String::from),
        2 => any::<String>(),
        3 => any::<String>().prop_map(|s| format!("SELECT '{}' AS s", s.replace('\'', "''"))),
        1 => Just(format!("SELECT 1{}", " + 1".repeat(300))),
        1 => Just(format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100))),
        1 => Just(format!("SELECT '{}'", "x".repeat(300 * 1024))),
        1 => Just(format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(200))),
    ]
}

/// A value for a query-string key.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(String::from),
        3 => any::<String>(),
        2 => sql(),
        1 => Just("x".repeat(5000)),
    ]
}

/// `?…` or nothing.
fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(String::from),
        1 => any::<String>(),
    ];
    prop_oneof![
        3 => Just(String::new()),
        8 => prop::collection::vec((key, param_value()), 1..5).prop_map(|pairs| {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            format!("?{}", pairs.join("&"))
        }),
        1 => prop::sample::select(vec![
            "?", "?&&=&==", "?q", "?q=", "?q=%FF", "?limit=1&limit=2", "?format=csv&format=json",
            "?stream=maybe", "?revision=x", "?q=SELECT%201&stream=true&format=ndjson",
            "?q=SELECT%20*%20FROM%20generate_series(1%2C%203000000)&stream=true&format=csv",
        ])
        .prop_map(String::from),
    ]
}

/// A header's value: bytes `HeaderValue::from_bytes` may refuse (then it is left out).
type HeaderBytes = Option<Vec<u8>>;

fn authorization() -> impl Strategy<Value = HeaderBytes> {
    prop_oneof![
        1 => Just(None::<Vec<u8>>),
        4 => prop::sample::select(vec![
            "Bearer reader-token-0000",
            "Bearer operate-token-000",
            "Bearer admin-token-00000",
            "Bearer  admin-token-00000 ",
            "bearer admin-token-00000",
            "Bearer admin-token-0000",
            "Bearer ",
            "Basic YWRtaW46YWRtaW4=",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => any::<String>().prop_map(|s| Some(format!("Bearer {s}").into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        1 => Just(Some(format!("Bearer {}", "a".repeat(10_000)).into_bytes())),
    ]
}

fn content_type() -> impl Strategy<Value = HeaderBytes> {
    prop_oneof![
        2 => Just(None::<Vec<u8>>),
        4 => prop::sample::select(vec![
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/yaml",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Some),
    ]
}

fn accept() -> impl Strategy<Value = HeaderBytes> {
    prop_oneof![
        3 => Just(None::<Vec<u8>>),
        3 => prop::sample::select(vec![
            "application/x-ndjson",
            "text/csv",
            "application/vnd.apache.arrow.stream",
            "application/vnd.apache.parquet",
            "application/json",
            "*/*",
            "text/csv, application/json;q=0.1",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => any::<String>().prop_map(|s| Some(s.into_bytes())),
        1 => Just(Some("text/csv,".repeat(2000).into_bytes())),
    ]
}

fn other_header() -> impl Strategy<Value = HeaderBytes> {
    prop_oneof![
        3 => Just(None::<Vec<u8>>),
        2 => prop::sample::select(vec![
            "0",
            "\"7\"",
            "W/\"1\"",
            "-1",
            "18446744073709551616",
            "RESULTS:42,MINING:x",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        1 => Just(Some(vec![b'9'; 10_000])),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    (
        authorization(),
        content_type(),
        accept(),
        other_header(),
        other_header(),
    )
        .prop_map(|(auth, ctype, accept, if_match, last_event)| {
            [
                ("authorization", auth),
                ("content-type", ctype),
                ("accept", accept),
                ("if-match", if_match),
                ("last-event-id", last_event),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect()
        })
}

/// A JSON value at a leaf: any scalar, or a value some route knows.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::sample::select(VALUES).prop_map(Value::from),
        sql().prop_map(Value::from),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// JSON of any shape, mostly an object with the keys the routes read.
fn json() -> impl Strategy<Value = Value> {
    let any_json = json_leaf()
        .prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(json_key(), inner, 0..10)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed();
    prop_oneof![
        3 => prop::collection::btree_map(json_key(), any_json.clone(), 0..10)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => any_json,
    ]
}

/// A rule group as YAML, with hostile pieces.
fn yaml_group() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[a-zA-Z_][a-zA-Z0-9_-]{0,10}",
        1 => any::<String>(),
        1 => sql(),
        1 => Just("[[[[[[[[".to_string()),
        1 => Just("&a [*a, *a, *a]".to_string()),
    ]
    .boxed();
    (piece.clone(), piece.clone(), piece.clone(), piece).prop_map(
        |(name, interval, alert, expr)| {
            format!(
                "name: {name}\ninterval: {interval}\nrules:\n- alert: {alert}\n  expr: {expr}\n"
            )
        },
    )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::<u8>::new()),
        3 => prop::collection::vec(any::<u8>(), 0..512),
        2 => any::<String>().prop_map(String::into_bytes),
        4 => sql().prop_map(String::into_bytes),
        8 => json().prop_map(|v| v.to_string().into_bytes()),
        2 => yaml_group().prop_map(String::into_bytes),
        1 => Just(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
        1 => Just(format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes()),
        1 => Just(format!("{}a", "- ".repeat(5_000)).into_bytes()),
        // About a megabyte of JSON, then more than the 2 MB body limit.
        1 => Just(format!("[{}0]", "1,".repeat(500_000)).into_bytes()),
        1 => Just(vec![b'x'; 3 << 20]),
    ]
}

/// One request, kept as parts so that what cannot be a request (a URI `http` refuses) is
/// skipped, and shown short when a case fails.
#[derive(Clone)]
struct Hostile {
    method: String,
    path: String,
    uri: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

impl Hostile {
    fn new(
        (method, path): (String, String),
        query: String,
        headers: Vec<(&'static str, Vec<u8>)>,
        body: Vec<u8>,
    ) -> Self {
        Self {
            uri: format!("{path}{query}"),
            method,
            path,
            headers,
            body,
        }
    }

    /// The request, or `None` when its method or URI is not one (headers `http` refuses are
    /// left out).
    fn build(&self) -> Option<Request<Body>> {
        let mut builder = Request::builder()
            .method(Method::from_bytes(self.method.as_bytes()).ok()?)
            .uri(Uri::try_from(self.uri.as_str()).ok()?);
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                builder = builder.header(*name, value);
            }
        }
        builder.body(Body::from(self.body.clone())).ok()
    }
}

/// `text` cut to a few hundred characters, for messages.
fn clip(text: &str) -> String {
    adit_testkit::clip(text, 300)
}

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(name, value)| (*name, clip(&String::from_utf8_lossy(value))))
            .collect();
        f.debug_struct("Hostile")
            .field("method", &self.method)
            .field("uri", &clip(&self.uri))
            .field("headers", &headers)
            .field("body_bytes", &self.body.len())
            .field("body", &clip(&String::from_utf8_lossy(&self.body)))
            .finish()
    }
}

fn request() -> impl Strategy<Value = Hostile> {
    (target(), query(), headers(), body())
        .prop_map(|(target, query, headers, body)| Hostile::new(target, query, headers, body))
}

/// Requests for the SQL routes: GET with `q`, POST with the SQL as text or in JSON, formats
/// and streaming asked for every way.
fn sql_request() -> impl Strategy<Value = Hostile> {
    let format = prop::option::of(prop::sample::select(vec![
        "json", "ndjson", "csv", "arrow", "parquet", "PARQUET", "yaml", "",
    ]));
    let stream = prop::option::of(prop::sample::select(vec!["true", "false", "1", "yes"]));
    let token = prop::sample::select(vec![Some(READ), Some(ADMIN), Some(OPERATE), None]);
    (0u8..3, sql(), format, stream, accept(), token).prop_map(
        |(shape, sql, format, stream, accept, token)| {
            let mut params = Vec::new();
            if let Some(f) = format {
                params.push(format!("format={}", encode(f)));
            }
            if let Some(s) = stream {
                params.push(format!("stream={s}"));
            }
            let mut headers = Vec::new();
            if let Some(t) = token {
                headers.push(("authorization", format!("Bearer {t}").into_bytes()));
            }
            if let Some(a) = accept {
                headers.push(("accept", a));
            }
            let (method, body) = match shape {
                0 => {
                    params.push(format!("q={}", encode(&sql)));
                    ("GET", Vec::new())
                }
                1 => {
                    headers.push(("content-type", b"text/plain".to_vec()));
                    ("POST", sql.into_bytes())
                }
                _ => {
                    headers.push(("content-type", b"application/json".to_vec()));
                    let mut body = serde_json::json!({ "sql": sql });
                    if let Some(f) = format {
                        body["format"] = Value::from(f);
                    }
                    if let Some(s) = stream {
                        body["stream"] = Value::from(s == "true");
                    }
                    ("POST", body.to_string().into_bytes())
                }
            };
            let query = if params.is_empty() {
                String::new()
            } else {
                format!("?{}", params.join("&"))
            };
            Hostile::new(
                (method.to_string(), "/api/v1/sql".to_string()),
                query,
                headers,
                body,
            )
        },
    )
}

/// Whether `body` is the API's error shape: `{"error": {"code", "message"[, "field"]}}`.
fn is_error_body(body: &Value) -> bool {
    let Some(top) = body.as_object() else {
        return false;
    };
    let Some(error) = top.get("error").and_then(Value::as_object) else {
        return false;
    };
    top.len() == 1
        && error.get("code").is_some_and(Value::is_string)
        && error.get("message").is_some_and(Value::is_string)
        && error.get("field").is_none_or(Value::is_string)
        && error
            .keys()
            .all(|k| matches!(k.as_str(), "code" | "message" | "field"))
}

/// Most of a body read: a streamed result (`stream=true`) has no end of its own.
const READ_AT_MOST: usize = 8 << 20;

/// Sends `request` through the router and checks the answer.
fn answered(request: &Hostile) -> Result<(), TestCaseError> {
    let Some(built) = request.build() else {
        return Ok(());
    };
    let app = app();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(format!("no runtime: {e}")))?;
    let answer = runtime.block_on(async move {
        tokio::time::timeout(Duration::from_secs(60), async move {
            let response = match app.oneshot(built).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let (parts, body) = response.into_parts();
            let bytes: Result<Bytes, String> = axum::body::to_bytes(body, READ_AT_MOST)
                .await
                .map_err(|e| e.to_string());
            (parts, bytes)
        })
        .await
    });
    let Ok((parts, bytes)) = answer else {
        return Err(TestCaseError::fail(format!(
            "{request:?}: no answer within 60 s"
        )));
    };
    let status = parts.status;
    let shown = || match &bytes {
        Ok(b) => clip(&String::from_utf8_lossy(b)),
        Err(e) => format!("(the body broke off: {e})"),
    };
    // 500 is what `QueryError::Internal` and the storage and engine failures of `SqlError`
    // answer: none of them can be the request's doing over an empty table root.
    prop_assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{:?} answered {}",
        request,
        shown()
    );
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // `/ready`'s 503 has a shape of its own (`ready`, `nats`, `down`, `parts`), documented
    // on the route; with no NATS and nothing supervised it answers 200 here anyway.
    if json && (status.is_client_error() || status.is_server_error()) && request.path != "/ready" {
        let bytes = bytes.as_ref().map_err(|e| {
            TestCaseError::fail(format!("{request:?}: the {status} body broke off: {e}"))
        })?;
        let body: Value = serde_json::from_slice(bytes).map_err(|e| {
            TestCaseError::fail(format!(
                "{request:?}: a {status} in JSON that is not JSON ({e}): {}",
                shown()
            ))
        })?;
        prop_assert!(
            is_error_body(&body),
            "{:?} answered {} with {}",
            request,
            status,
            clip(&body.to_string())
        );
    }
    // A 2xx whose body breaks off is left alone: rows are encoded as they are sent, so an
    // encoding that cannot hold a type (CSV and lists, Parquet and nanosecond intervals) can
    // only stop the stream.
    Ok(())
}

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
use adit_testkit::fuzz_cases as cases;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(200)))]

    #[test]
    fn any_request_is_answered_without_a_500(request in request()) {
        answered(&request)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(60)))]

    #[test]
    fn any_statement_is_answered_without_a_500(request in sql_request()) {
        answered(&request)?;
    }
}

/// The fixture itself answers: a read token reaches the SQL route, a wrong one does not, so
/// the properties above are about requests that get through as well as ones refused.
#[test]
fn the_router_answers_a_plain_query() {
    let ok = Hostile::new(
        ("GET".into(), "/api/v1/sql".into()),
        "?q=SELECT%201%20AS%20one".into(),
        vec![("authorization", format!("Bearer {READ}").into_bytes())],
        Vec::new(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let status = |request: &Hostile| {
        let built = request.build().expect("a request");
        runtime.block_on(async { app().oneshot(built).await.map(|r| r.status()) })
    };
    assert_eq!(status(&ok), Ok(StatusCode::OK));
    let mut refused = ok.clone();
    refused.headers = vec![("authorization", b"Bearer nope".to_vec())];
    assert_eq!(status(&refused), Ok(StatusCode::UNAUTHORIZED));
    assert!(answered(&refused).is_ok());
}
