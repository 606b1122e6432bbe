//! Property tests of the PostgreSQL and Flight SQL ports (issue 28): the real servers, in
//! process over an empty table root, fed what a stranger on the internet could send.
//!
//! PostgreSQL: random bytes instead of a startup packet; startup packets with random lengths,
//! versions and parameters; passwords of every shape; and, once authenticated, random
//! frontend messages (Query, Parse with random SQL and parameter types, Bind with random
//! values and formats, Describe, Execute, Close, Sync, unknown types, lying lengths).
//! Flight SQL: random tickets, random prepared-statement handles (raw and wrapped in the
//! command that carries them), random `authorization` values, and parameter rows sent as
//! Arrow IPC with bytes changed anywhere (plain and compressed).
//!
//! Whatever comes, nothing in the process panics (a panic hook counts every panic), and a
//! well-behaved client is still answered `SELECT 1` on both ports afterwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use adit_auth::lockout::{Lockout, LockoutConfig};
use adit_auth::{Role, TokenConfig, Tokens};
use adit_sql::admission::Admission;
use adit_sql::{Catalog, SqlEngine, SqlLimits};
use adit_wire::flight::Flight;
use adit_wire::postgres::{Postgres, PostgresConfig};
use arrow_flight::Ticket;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandPreparedStatementQuery, ProstMessageExt, TicketStatementQuery};
use proptest::prelude::*;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "wire-token-000000";

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
use adit_testkit::fuzz_cases as cases;

/// Panics anywhere in the process since it started.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// What the first panics said, so a failure names the panic and where it was (a CI log
/// may be cut before the hook's own output).
static PANIC_TEXT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The panics so far, as the assertion's message.
fn panics() -> String {
    PANIC_TEXT
        .lock()
        .map(|t| t.join("\n"))
        .unwrap_or_else(|e| e.into_inner().join("\n"))
}

/// Both servers, started once per test process on a runtime of their own.
struct Servers {
    pg: SocketAddr,
    flight: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

impl Servers {
    /// Both ports still answer a well-behaved client.
    fn assert_both_answer(&self) {
        assert!(
            self.runtime.block_on(pg_answers()),
            "the PostgreSQL port stopped answering"
        );
        assert!(
            self.runtime.block_on(flight_answers()),
            "the Flight SQL port stopped answering"
        );
    }
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut text) = PANIC_TEXT.lock()
                && text.len() < 8
            {
                text.push(info.to_string());
            }
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let store = adit_testkit::empty_tables(env!("CARGO_TARGET_TMPDIR"), "hostile-wire-");
        let limits = SqlLimits {
            timeout: Duration::from_secs(10),
            threads: 2,
            ..SqlLimits::default()
        };
        let tokens = || {
            Arc::new(
                Tokens::new("query", &[TokenConfig::new("r", TOKEN, Role::Read)], None)
                    .expect("tokens"),
            )
        };
        let (pg, flight) = runtime.block_on(async {
            let engine = Arc::new(SqlEngine::new(
                Arc::new(Catalog::new(store, Duration::ZERO)),
                limits,
            ));
            let admission = Arc::new(Admission::new(Default::default()));
            // Failures count, but never ban the test's own address.
            let lockout = Arc::new(Lockout::new(LockoutConfig {
                limit: u32::MAX,
                window: Duration::from_millis(1),
                ban_for: Duration::from_millis(1),
            }));
            let postgres = Arc::new(
                Postgres::new(
                    &PostgresConfig::default(),
                    engine.clone(),
                    tokens(),
                    admission.clone(),
                    lockout.clone(),
                    None,
                )
                .expect("the PostgreSQL state"),
            );
            let flight = Arc::new(Flight {
                engine,
                tokens: tokens(),
                admission,
                lockout,
                config: Default::default(),
            });
            let pg_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let flight_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addrs = (
                pg_listener.local_addr().unwrap(),
                flight_listener.local_addr().unwrap(),
            );
            tokio::spawn(adit_wire::postgres::serve(
                pg_listener,
                postgres,
                std::future::pending(),
            ));
            tokio::spawn(adit_wire::flight::serve(
                flight_listener,
                flight,
                None,
                std::future::pending(),
            ));
            addrs
        });
        Servers {
            pg,
            flight,
            runtime,
        }
    })
}

/// A frontend message: type byte, then its length (itself included) and body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A startup packet for protocol 3.0 with `params`.
fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608_u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = (body.len() as u32 + 4).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// `s` NUL-terminated.
fn cstr(s: &[u8]) -> Vec<u8> {
    let mut out = s.to_vec();
    out.push(0);
    out
}

/// Reads what the server says for up to `wait`, returning it (the reading stops at EOF).
async fn drain(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(wait, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() > 1 << 20 {
            break;
        }
    }
    got
}

/// Sends `bytes` to the PostgreSQL port (after `prefix`), reads the answer briefly, closes.
async fn send_pg(prefix: &[u8], bytes: &[u8]) {
    let Ok(mut stream) = TcpStream::connect(servers().pg).await else {
        return;
    };
    // The server may close at any point; a write error is one of its answers.
    if stream.write_all(prefix).await.is_ok() && stream.write_all(bytes).await.is_ok() {
        drain(&mut stream, Duration::from_millis(200)).await;
    }
}

/// A logged-in connection's opening bytes: startup and the token as the password.
fn logged_in() -> Vec<u8> {
    let mut out = startup(&[("user", "fuzz"), ("database", "adit")]);
    out.extend(message(b'p', &cstr(TOKEN.as_bytes())));
    out
}

/// Whether a well-behaved client logs in and gets `SELECT 1` answered with a row holding 1.
async fn pg_answers() -> bool {
    let Ok(mut stream) = TcpStream::connect(servers().pg).await else {
        return false;
    };
    let mut out = logged_in();
    out.extend(message(b'Q', &cstr(b"SELECT 1 AS one")));
    if stream.write_all(&out).await.is_err() {
        return false;
    }
    let got = drain(&mut stream, Duration::from_secs(3)).await;
    // DataRow 'D' with one column of length 1 holding "1", then ReadyForQuery.
    got.windows(7).any(|w| w == [b'D', 0, 0, 0, 11, 0, 1])
        && got.ends_with(&[b'Z', 0, 0, 0, 5, b'I'])
}

/// A gRPC client of the Flight SQL port.
async fn flight_client() -> Option<FlightServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", servers().flight))
        .ok()?
        .connect()
        .await
        .ok()?;
    Some(FlightServiceClient::new(channel))
}

/// Sends `sql` as a Flight SQL statement ticket with the token; returns how many messages
/// came back (0: refused, or no connection).
async fn flight_statement(sql: &str) -> usize {
    let Some(mut client) = flight_client().await else {
        return 0;
    };
    let ticket = TicketStatementQuery {
        statement_handle: sql.to_string().into(),
    };
    let mut request = tonic::Request::new(Ticket::new(ticket.as_any().encode_to_vec()));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let mut messages = 0;
    if let Ok(response) = client.do_get(request).await {
        let mut stream = response.into_inner();
        while let Ok(Some(_)) = stream.message().await {
            messages += 1;
        }
    }
    messages
}

/// Whether a Flight SQL client with the token gets `SELECT 1` answered.
async fn flight_answers() -> bool {
    flight_statement("SELECT 1 AS one").await >= 2
}

/// A frontend message of a random kind with a random or structured body.
fn frontend() -> impl Strategy<Value = Vec<u8>> {
    let sql = prop_oneof![
        Just("SELECT 1".to_string()),
        Just("SELECT $1::bigint + $2".to_string()),
        Just("DELETE FROM t".to_string()),
        Just("SET x = 1; SHOW x; BEGIN; COMMIT".to_string()),
        Just("SELECT * FROM pg_catalog.pg_class".to_string()),
        "[ -~]{0,200}",
        ".{0,200}",
    ];
    prop_oneof![
        sql.clone().prop_map(|s| message(b'Q', &cstr(s.as_bytes()))),
        (sql, prop::collection::vec(any::<u32>(), 0..4)).prop_map(|(s, types)| {
            let mut body = cstr(b"s1");
            body.extend(cstr(s.as_bytes()));
            body.extend_from_slice(&(types.len() as u16).to_be_bytes());
            for t in types {
                body.extend_from_slice(&t.to_be_bytes());
            }
            message(b'P', &body)
        }),
        (
            prop::collection::vec(any::<i16>(), 0..3),
            prop::collection::vec(
                prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
                0..3
            )
        )
            .prop_map(|(formats, values)| {
                let mut body = cstr(b"");
                body.extend(cstr(b"s1"));
                body.extend_from_slice(&(formats.len() as u16).to_be_bytes());
                for f in &formats {
                    body.extend_from_slice(&f.to_be_bytes());
                }
                body.extend_from_slice(&(values.len() as u16).to_be_bytes());
                for v in &values {
                    match v {
                        Some(v) => {
                            body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                            body.extend_from_slice(v);
                        }
                        None => body.extend_from_slice(&(-1_i32).to_be_bytes()),
                    }
                }
                body.extend_from_slice(&(formats.len() as u16).to_be_bytes());
                for f in &formats {
                    body.extend_from_slice(&f.to_be_bytes());
                }
                message(b'B', &body)
            }),
        Just(message(b'D', b"S\0")),
        Just(message(b'D', b"Ps1\0")),
        any::<i32>().prop_map(|n| {
            let mut body = cstr(b"");
            body.extend_from_slice(&n.to_be_bytes());
            message(b'E', &body)
        }),
        Just(message(b'S', b"")),
        Just(message(b'H', b"")),
        Just(message(b'C', b"Ss1\0")),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(kind, body)| message(kind, &body)),
        // A length that lies about what follows.
        (
            any::<u8>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(kind, len, body)| {
                let mut out = vec![kind];
                out.extend_from_slice(&len.to_be_bytes());
                out.extend(body);
                out
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn random_bytes_and_startups_end_in_errors_not_panics(
        raw in prop::collection::vec(any::<u8>(), 0..256),
        user in ".{0,40}",
        password in prop::collection::vec(any::<u8>(), 0..80),
        version in any::<u32>(),
    ) {
        let s = servers();
        s.runtime.block_on(async {
            send_pg(b"", &raw).await;
            let mut odd = (version.max(8)).to_be_bytes().to_vec();
            odd.extend_from_slice(&raw);
            send_pg(b"", &odd).await;
            let mut out = startup(&[("user", &user), ("database", "adit")]);
            out.extend(message(b'p', &cstr(&password)));
            send_pg(b"", &out).await;
        });
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics: {}", panics());
    }

    #[test]
    fn random_messages_after_login_end_in_errors_not_panics(
        messages in prop::collection::vec(frontend(), 1..8),
    ) {
        let s = servers();
        s.runtime.block_on(send_pg(&logged_in(), &messages.concat()));
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics: {}", panics());
    }

    #[test]
    fn random_tickets_handles_and_tokens_end_in_errors_not_panics(
        ticket in prop::collection::vec(any::<u8>(), 0..256),
        handle in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            ".{0,100}".prop_map(|sql| format!("{{\"sql\":{sql:?},\"params\":\"AAAA\"}}").into_bytes()),
        ],
        authorization in prop_oneof![
            Just(format!("Bearer {TOKEN}")),
            "[ -~]{0,60}",
            "[A-Za-z0-9+/=]{0,40}".prop_map(|b| format!("Basic {b}")),
        ],
    ) {
        let s = servers();
        s.runtime.block_on(async {
            let Some(mut client) = flight_client().await else {
                return;
            };
            let prepared = CommandPreparedStatementQuery {
                prepared_statement_handle: handle.into(),
            };
            for bytes in [ticket, prepared.as_any().encode_to_vec()] {
                let mut request = tonic::Request::new(Ticket::new(bytes));
                if let Ok(value) = authorization.parse() {
                    request.metadata_mut().insert("authorization", value);
                }
                if let Ok(response) = client.do_get(request).await {
                    let mut stream = response.into_inner();
                    while let Ok(Some(_)) = stream.message().await {}
                }
            }
        });
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics: {}", panics());
    }
}

/// One row of parameters of several types.
fn parameter_row() -> arrow::array::RecordBatch {
    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("0", Arc::new(StringArray::from(vec![Some("site-01")]))),
        ("1", Arc::new(Int64Array::from(vec![Some(42)]))),
        ("2", Arc::new(BooleanArray::from(vec![None]))),
        ("3", Arc::new(Float64Array::from(vec![Some(0.5)]))),
    ];
    arrow::array::RecordBatch::try_from_iter(columns).unwrap()
}

fn write_options(compressed: bool) -> arrow::ipc::writer::IpcWriteOptions {
    arrow::ipc::writer::IpcWriteOptions::default()
        .try_with_compression(compressed.then_some(arrow::ipc::CompressionType::LZ4_FRAME))
        .unwrap()
}

/// The Flight messages of [`parameter_row`], plain or compressed: the schema, then the batch.
fn parameter_messages(compressed: bool) -> Vec<arrow_flight::FlightData> {
    let encoded = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_options(write_options(compressed))
        .build(futures::stream::iter(vec![Ok(parameter_row())]));
    futures::executor::block_on(futures::TryStreamExt::try_collect(encoded)).unwrap()
}

/// [`parameter_row`] as an Arrow IPC stream, as a bound handle carries it.
fn parameter_stream(compressed: bool) -> Vec<u8> {
    let batch = parameter_row();
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new_with_options(
        &mut out,
        &batch.schema(),
        write_options(compressed),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// A prepared statement's parameters sent as Arrow IPC with any bytes changed, in the
    /// schema's message or the batch's header or body, plain or compressed (Arrow alone
    /// allocates what a compressed buffer declares, and panics on a misplaced buffer): an
    /// error, never a panic, and the port answers on.
    #[test]
    fn mutated_parameter_batches_end_in_errors_not_panics(
        compressed in any::<bool>(),
        edits in prop::collection::vec((0usize..2, any::<bool>(), any::<usize>(), any::<u8>()), 0..6),
    ) {
        let mut messages = parameter_messages(compressed);
        let count = messages.len();
        let edits_made = edits.len();
        for (which, header, at, value) in edits {
            let message = &mut messages[which % count];
            let bytes = if header { &mut message.data_header } else { &mut message.data_body };
            if !bytes.is_empty() {
                let mut changed = bytes.to_vec();
                let at = at % changed.len();
                changed[at] = value;
                *bytes = changed.into();
            }
        }
        let handle = CommandPreparedStatementQuery {
            prepared_statement_handle: br#"{"sql":"SELECT $1, $2, $3, $4"}"#.to_vec().into(),
        };
        messages[0].flight_descriptor =
            Some(arrow_flight::FlightDescriptor::new_cmd(handle.as_any().encode_to_vec()));
        let unchanged = edits_made == 0 && !compressed;
        let s = servers();
        let bound = s.runtime.block_on(async {
            let Some(mut client) = flight_client().await else {
                return false;
            };
            let mut request = tonic::Request::new(futures::stream::iter(messages));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            let mut answered = false;
            if let Ok(response) = client.do_put(request).await {
                let mut stream = response.into_inner();
                while let Ok(Some(_)) = stream.message().await {
                    answered = true;
                }
            }
            answered
        });
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics: {}", panics());
        if unchanged {
            prop_assert!(bound, "the unchanged plain row was not bound");
        }
    }

    /// The same row as a bound handle carries it back (an Arrow IPC stream, base64, in the
    /// handle the client holds), with any bytes changed: an error, never a panic.
    #[test]
    fn mutated_handle_parameters_end_in_errors_not_panics(
        compressed in any::<bool>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<usize>()),
    ) {
        use base64::Engine;
        let mut ipc = parameter_stream(compressed);
        for (at, value) in edits {
            let at = at % ipc.len();
            ipc[at] = value;
        }
        if let Some(cut) = cut {
            ipc.truncate(cut % (ipc.len() + 1));
        }
        let handle = serde_json::json!({
            "sql": "SELECT $1, $2, $3, $4",
            "params": base64::engine::general_purpose::STANDARD.encode(&ipc),
        });
        let prepared = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.to_string().into_bytes().into(),
        };
        let s = servers();
        s.runtime.block_on(async {
            let Some(mut client) = flight_client().await else {
                return;
            };
            let mut request = tonic::Request::new(Ticket::new(prepared.as_any().encode_to_vec()));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            if let Ok(response) = client.do_get(request).await {
                let mut stream = response.into_inner();
                while let Ok(Some(_)) = stream.message().await {}
            }
        });
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics: {}", panics());
    }
}

#[test]
fn well_behaved_clients_are_answered_after_the_hostile_ones() {
    let s = servers();
    // Some hostile traffic first, in case this test runs before the properties.
    s.runtime.block_on(async {
        send_pg(
            &logged_in(),
            &message(b'Q', &cstr(b"SELECT * FROM nowhere")),
        )
        .await;
        send_pg(b"", &[0xff; 64]).await;
    });
    s.assert_both_answer();
    // A wrong password is refused, and refusing it broke nothing.
    let refused = s.runtime.block_on(async {
        let mut stream = TcpStream::connect(s.pg).await.unwrap();
        let mut out = startup(&[("user", "x")]);
        out.extend(message(b'p', &cstr(b"wrong")));
        stream.write_all(&out).await.unwrap();
        drain(&mut stream, Duration::from_secs(2)).await
    });
    assert!(
        refused.windows(5).any(|w| w == b"28P01"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    assert!(s.runtime.block_on(pg_answers()));
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics: {}", panics());
}

/// Issue 56: every production of the grammar (`adit_testkit::sql_grammar`) nested 4 and 400
/// deep, through the PostgreSQL simple protocol (Query), the extended one (Parse, Describe,
/// Sync) and a Flight SQL statement. Nothing panics, nothing overflows a stack (that would
/// abort this process), and both ports still answer.
#[test]
fn every_production_nested_deep_is_survived_on_both_ports() {
    use adit_testkit::sql_grammar::Generator;
    let s = servers();
    let mut generator = Generator::new(5656);
    let mut sent = 0;
    for p in Generator::nestable() {
        for times in [4, 400] {
            let sql = generator.nested(p, times).expect("a nestable production");
            // Simple, then extended, then Terminate: the server closes once it has answered.
            let mut frames = message(b'Q', &cstr(sql.as_bytes()));
            frames.extend(message(
                b'P',
                &[&cstr(b"")[..], &cstr(sql.as_bytes()), &[0, 0]].concat(),
            ));
            frames.extend(message(b'D', &cstr(b"S")));
            frames.extend(message(b'S', b""));
            frames.extend(message(b'X', b""));
            s.runtime.block_on(async {
                send_pg(&logged_in(), &frames).await;
                flight_statement(&sql).await;
            });
            sent += 1;
        }
    }
    assert!(sent > 100, "{sent} statements");
    s.assert_both_answer();
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics: {}", panics());
}

/// Format codes that name neither one format for all nor one per parameter or column, and
/// codes other than text and binary, as CI's random messages once sent: pgwire indexed its
/// list by parameter and by column and panicked past its end. Each is refused with
/// PostgreSQL's SQLSTATE 08P01 and the port still answers.
#[test]
fn format_codes_that_match_nothing_are_refused_not_panicked_on() {
    let s = servers();
    let bind = |params: &[i16], values: u16, results: &[i16]| {
        let mut body = cstr(b"");
        body.extend(cstr(b"f"));
        body.extend_from_slice(&(params.len() as u16).to_be_bytes());
        for f in params {
            body.extend_from_slice(&f.to_be_bytes());
        }
        body.extend_from_slice(&values.to_be_bytes());
        for _ in 0..values {
            body.extend_from_slice(&1_i32.to_be_bytes());
            body.push(b'7');
        }
        body.extend_from_slice(&(results.len() as u16).to_be_bytes());
        for f in results {
            body.extend_from_slice(&f.to_be_bytes());
        }
        message(b'B', &body)
    };
    let cases: [(&[u8], Vec<u8>); 4] = [
        (b"SELECT $1::bigint + $2 + $3 AS a", bind(&[0, 1], 3, &[])),
        (b"SELECT $1::bigint AS a", bind(&[7], 1, &[])),
        (b"SELECT 1 AS a, 2 AS b, 3 AS c", bind(&[], 0, &[0, 1])),
        (b"SHOW ALL", bind(&[], 0, &[0, 0, 0])),
    ];
    for (sql, bind) in cases {
        let mut frames = message(b'P', &[&cstr(b"f")[..], &cstr(sql), &[0, 0]].concat());
        frames.extend(bind);
        frames.extend(message(b'D', b"P\0"));
        frames.extend(message(b'E', &[&cstr(b"")[..], &[0, 0, 0, 0]].concat()));
        frames.extend(message(b'S', b""));
        let answer = s.runtime.block_on(async {
            let mut stream = TcpStream::connect(s.pg).await.expect("the port");
            stream.write_all(&logged_in()).await.expect("login");
            stream.write_all(&frames).await.expect("frames");
            drain(&mut stream, Duration::from_secs(2)).await
        });
        assert!(
            answer.windows(5).any(|w| w == b"08P01"),
            "{}: {}",
            String::from_utf8_lossy(sql),
            String::from_utf8_lossy(&answer)
        );
    }
    assert!(s.runtime.block_on(pg_answers()));
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics: {}", panics());
}
