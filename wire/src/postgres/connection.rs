//! One PostgreSQL client's conversation: its authentication (an API token as the password),
//! then its statements over the simple and the extended query protocol.
//!
//! Every statement is read by [`super::catalog::PgParser`]; a session command is answered by
//! [`super::commands`], anything else runs on the engine as over HTTP: planned read-only in a
//! session of its own with `pg_catalog` added, in a statement slot of the caller's role, its
//! rows streamed to the client within the row and time limits. A refused statement gets an
//! error with the SQLSTATE a PostgreSQL client acts on (25006 for a write, 57014 for the time
//! limit…); the connection goes on.

use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use adit_auth::Caller;
use adit_sql::{Description, Planned, SqlError, StatementOptions};
use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use futures::{Sink, SinkExt, Stream, StreamExt, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, DefaultClient, ErrorHandler,
    PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use pgwire::types::format::FormatOptions;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::Framed;

use super::Postgres;
use super::catalog::ParseError;
use super::commands::{self, Command, Settings};
use super::frames::Checked;
use crate::conns::{ConnSlot, Refusal};

/// Serves one client until it leaves.
pub(super) async fn run(socket: TcpStream, peer: SocketAddr, server: Arc<Postgres>) {
    let ip = super::client_ip(peer);
    if let Some(until) = server.lockout.banned(ip, Instant::now()) {
        tracing::info!(client = %ip, until = ?until, "a banned address tried the PostgreSQL port");
        return;
    }
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    // Only well-formed messages reach pgwire (its decoder panics on some malformed ones).
    let max_statement = server.engine.limits().max_statement_bytes;
    let permit = server.connections.admit(ip);
    let bounds = super::frames::Bounds {
        max_statement,
        idle: server.idle_timeout,
        password: server.tokens.enabled(),
    };
    let Some(guarded) = super::frames::guard(socket, server.tls.clone(), bounds).await else {
        return;
    };
    let connection = Conn(Arc::new(Session {
        permit,
        server: server.clone(),
        ip,
        secure: guarded.secure,
        caller: OnceLock::new(),
        settings: Mutex::default(),
    }));
    if let Err(e) = converse(guarded.stream, peer, guarded.secure, connection).await {
        tracing::debug!(client = %ip, error = %e, "PostgreSQL connection ended");
    }
}

/// pgwire's conversation with the client over its checked stream: pgwire's own loop for a
/// socket (which takes only sockets), each message to its handler and an error answered as
/// pgwire answers it; then the guard's refusal, if it ended the input, and the close.
async fn converse(stream: Checked, peer: SocketAddr, secure: bool, conn: Conn) -> io::Result<()> {
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(peer, secure));
    let mut socket = Framed::new(stream, codec);
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    let (startup, simple) = (conn.startup_handler(), conn.simple_query_handler());
    let (extended, copy) = (conn.extended_query_handler(), conn.copy_handler());
    let (cancel, errors) = (conn.cancel_handler(), conn.error_handler());
    while let Some(message) = socket.next().await {
        let message = match message {
            Ok(PgWireFrontendMessage::Terminate(_)) => break,
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(client = %peer.ip(), error = %e, "a PostgreSQL message pgwire could not read");
                break;
            }
        };
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended_query) => extended_query,
            _ => message.is_extended_query(),
        };
        let handled = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut e) = handled {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, extended_query).await?;
        }
    }
    SinkExt::<PgWireBackendMessage>::flush(&mut socket)
        .await
        .map_err(io::Error::other)?;
    let mut stream = socket.into_inner();
    if let Some(fatal) = stream.refusal() {
        // The client may be gone already; then nobody reads the reason.
        drop(stream.write_all(&fatal).await);
    }
    stream.shutdown().await
}

/// What one connection knows.
struct Session {
    server: Arc<Postgres>,
    /// Where it comes from.
    ip: std::net::IpAddr,
    /// Its place among the connections (or why it has none: refused at startup).
    permit: Result<ConnSlot, Refusal>,
    /// Whether it speaks TLS.
    secure: bool,
    /// Who it authenticated as; set once.
    caller: OnceLock<Caller>,
    /// What its `SET`s said.
    settings: Mutex<Settings>,
}

/// A connection's handlers: every pgwire handler is this one value.
#[derive(Clone)]
struct Conn(Arc<Session>);

impl PgWireServerHandlers for Conn {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.clone())
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.clone())
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(self.clone())
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(self.clone())
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.0.server.cancels.clone()))
    }
}

impl ErrorHandler for Conn {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        tracing::debug!(client = %self.0.ip, error = %error, "PostgreSQL error sent");
    }
}

/// An error the client sees, with its SQLSTATE.
fn refused(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.into(),
        code.into(),
        message.into(),
    )))
}

/// The SQLSTATE for why the engine refused or stopped a statement.
fn sql_error(e: &SqlError) -> PgWireError {
    let code = match e {
        SqlError::Empty | SqlError::InvalidSql(_) => "42601",
        SqlError::ReadOnly(_) => "25006",
        SqlError::TooComplex(_) => "54001",
        SqlError::Timeout { .. } => "57014",
        SqlError::MemoryLimit { .. } => "53200",
        SqlError::RowLimit { .. } => "54000",
        _ => "XX000",
    };
    if code == "XX000" {
        tracing::warn!(error = %e, "a PostgreSQL client's statement failed on our side");
    }
    refused("ERROR", code, e.to_string())
}

/// One statement of a client's, as it leaves the parser: a session command, or the SQL the
/// engine plans; never the parsed tree, which stays on the parser's big stack.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    /// A session command, answered without the engine.
    Command(Command),
    /// A query, rendered for the engine.
    Query(String),
}

impl Conn {
    fn session(&self) -> &Session {
        &self.0
    }

    /// Who is calling; only an authenticated connection reaches the query handlers.
    fn caller(&self) -> PgWireResult<&Caller> {
        self.session()
            .caller
            .get()
            .ok_or_else(|| refused("FATAL", "28000", "not authenticated"))
    }

    /// `sql` read into statements, within the text limits.
    /// On one of the engine's threads, whose stacks hold the deepest tree the limits allow.
    async fn parse(&self, sql: &str) -> PgWireResult<Vec<Parsed>> {
        let server = &self.session().server;
        let (parser, limits, sql) = (
            server.parser.clone(),
            server.engine.limits().text(),
            sql.to_string(),
        );
        server
            .engine
            .on_deep_stack(move || {
                parser.parse(&sql, limits, |s| match commands::command(s) {
                    Some(command) => Parsed::Command(command),
                    None => Parsed::Query(s.to_string()),
                })
            })
            .await
            .unwrap_or_else(|| {
                Err(ParseError::Syntax(
                    "could not be read: no thread for it".into(),
                ))
            })
            .map_err(|e| match e {
                ParseError::TooComplex(reason) => refused("ERROR", "54001", reason),
                ParseError::Syntax(reason) => refused("ERROR", "42601", reason),
            })
    }

    /// How the engine reads a PostgreSQL client's statement.
    fn options(&self, params: Option<ParamValues>) -> StatementOptions {
        StatementOptions {
            dialect: adit_sql::syntax::Dialect::Postgres,
            session: Some(self.session().server.session.clone()),
            params,
        }
    }

    /// Answers a session command.
    fn answer(&self, command: Command, format: &Format) -> PgWireResult<Response> {
        let mut settings = self
            .session()
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(match command {
            Command::Set(Some((name, value))) => {
                settings
                    .set(name, value)
                    .map_err(|reason| refused("ERROR", "54000", reason))?;
                Response::Execution(Tag::new("SET"))
            }
            Command::Set(None) => Response::Execution(Tag::new("SET")),
            Command::Show(name) if name == "all" => {
                let rows = settings.all();
                text_rows(
                    &["name", "setting"],
                    rows.into_iter().map(|(n, v)| vec![n, v]),
                    format,
                )?
            }
            Command::Show(name) => {
                let value = settings
                    .show(&name)
                    .map_err(|reason| refused("ERROR", "42704", reason))?;
                text_rows(&[name.as_str()], [vec![value]], format)?
            }
            Command::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Command::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            Command::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            Command::Done(tag) => Response::Execution(Tag::new(tag)),
        })
    }

    /// A statement slot of the caller's role (53000 when none comes in time).
    async fn slot(&self) -> PgWireResult<OwnedSemaphorePermit> {
        let role = self.caller()?.role;
        self.session()
            .server
            .admission
            .admit(role)
            .await
            .map_err(|e| refused("ERROR", "53000", e.to_string()))
    }

    /// Runs `sql` in a statement slot and streams its rows in `format`: from `planned` when
    /// it is the same statement's plan, made by its `Parse` (see [`KeptPlan`]).
    async fn run(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        planned: Option<Planned>,
        format: &Format,
        options: &FormatOptions,
    ) -> PgWireResult<Response> {
        let server = &self.session().server;
        let slot = self.slot().await?;
        let started = Instant::now();
        let rows = match planned {
            Some(planned) => server.engine.run_planned(planned).await,
            None => {
                server
                    .engine
                    .query_stream_with(sql, self.options(params))
                    .await
            }
        };
        metrics::counter!("adit_query_postgres_statements_total", "status" => if rows.is_ok() { "ok" } else { "refused" })
            .increment(1);
        let rows = rows.map_err(|e| {
            tracing::info!(client = %self.session().ip, error = %e, "PostgreSQL statement refused");
            sql_error(&e)
        })?;
        result_formats(format, rows.schema.fields().len())?;
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &rows.schema,
            format,
            Some(Arc::new(options.clone())),
        )?);
        let limits = server.engine.limits();
        let deadline = tokio::time::Instant::from_std(started) + limits.timeout;
        let data = Rows {
            rows,
            fields: fields.clone(),
            seen: 0,
            max_rows: limits.max_rows,
            limit_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            deadline,
            done: false,
            _slot: slot,
        };
        Ok(Response::Query(QueryResponse::new(fields, data.stream())))
    }
}

/// Refuses result format codes that are neither one for all columns nor one per column, as
/// PostgreSQL does (pgwire indexes them by column and panics past a shorter list).
fn result_formats(format: &Format, columns: usize) -> PgWireResult<()> {
    match format {
        Format::Individual(codes) if codes.len() != columns => Err(refused(
            "ERROR",
            "08P01",
            format!(
                "bind message has {} result formats but query has {columns} columns",
                codes.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// A one-column-per-name text result (for `SHOW`).
fn text_rows(
    names: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
    format: &Format,
) -> PgWireResult<Response> {
    result_formats(format, names.len())?;
    let fields = Arc::new(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                FieldInfo::new(n.to_string(), None, None, Type::TEXT, format.format_for(i))
            })
            .collect::<Vec<_>>(),
    );
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut encoded = Vec::new();
    for row in rows {
        for value in &row {
            encoder.encode_field(value)?;
        }
        encoded.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(encoded),
    )))
}

/// A statement's rows on their way to the client: within the row limit and the time limit
/// from the statement's start, holding its statement slot until the last row or an error.
struct Rows {
    rows: adit_sql::engine::RowStream,
    fields: Arc<Vec<FieldInfo>>,
    seen: usize,
    max_rows: usize,
    limit_ms: u64,
    deadline: tokio::time::Instant,
    done: bool,
    _slot: OwnedSemaphorePermit,
}

impl Rows {
    fn stream(self) -> impl Stream<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send {
        stream::unfold(self, |mut rows| async move {
            if rows.done {
                return None;
            }
            let next = tokio::time::timeout_at(rows.deadline, rows.rows.next()).await;
            let batch = match next {
                Ok(None) => return None,
                Ok(Some(Ok(batch))) => batch,
                Ok(Some(Err(e))) => {
                    rows.done = true;
                    return Some((vec![Err(sql_error(&e))], rows));
                }
                Err(_) => {
                    rows.done = true;
                    let e = SqlError::Timeout {
                        limit_ms: rows.limit_ms,
                    };
                    return Some((vec![Err(sql_error(&e))], rows));
                }
            };
            rows.seen += batch.num_rows();
            if rows.seen > rows.max_rows {
                rows.done = true;
                let e = SqlError::RowLimit {
                    limit: rows.max_rows,
                };
                return Some((vec![Err(sql_error(&e))], rows));
            }
            let encoded: Vec<_> = encode_recordbatch(rows.fields.clone(), batch).collect();
            Some((encoded, rows))
        })
        .flat_map(stream::iter)
    }
}

#[async_trait]
impl StartupHandler for Conn {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session();
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if let Err(refusal) = &session.permit {
                    return Err(refused(
                        "FATAL",
                        "53300",
                        match refusal {
                            Refusal::Full => {
                                "sorry, too many clients already (query.postgres.max_connections)"
                            }
                            Refusal::PerAddress => {
                                "sorry, too many clients from this address already (query.postgres.max_per_address)"
                            }
                        },
                    ));
                }
                if session.server.tls.is_some() && !session.secure {
                    return Err(refused(
                        "FATAL",
                        "28000",
                        "this server takes TLS connections only (sslmode=require)",
                    ));
                }
                if session.server.tokens.enabled() {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::CleartextPassword,
                        ))
                        .await?;
                } else {
                    self.let_in(client, Caller::anonymous()).await?;
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?.password;
                let tokens = &session.server.tokens;
                match tokens.identify(Some(&format!("Bearer {password}"))) {
                    Ok(caller) => self.let_in(client, caller).await?,
                    Err(e) => {
                        let struck = session.server.lockout.fail(session.ip, Instant::now());
                        tracing::info!(client = %session.ip, error = %e, "PostgreSQL authentication failed");
                        tokio::time::sleep(struck.delay).await;
                        return Err(refused(
                            "FATAL",
                            "28P01",
                            format!(
                                "password authentication failed: {e} (the password is an API token)"
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Conn {
    /// Lets the client in as `caller`: its cancel key, the server's parameters, ready.
    async fn let_in<C>(&self, client: &mut C, caller: Caller) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.session();
        tracing::debug!(client = %session.ip, caller = %caller.name, "PostgreSQL client in");
        if session.caller.set(caller).is_err() {
            return Err(refused("FATAL", "08P01", "authenticated twice"));
        }
        let (pid, key) = RandomPidSecretKeyGenerator::default().generate(client);
        client.set_pid_and_secret_key(pid, key.clone());
        let (handle, guard) = session.server.cancels.register(pid, key);
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert(guard);
        finish_authentication(client, &server_parameters()).await
    }
}

/// What the client is told about the server at startup.
fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = super::catalog::SERVER_VERSION.into();
    parameters.is_superuser = false;
    parameters.default_transaction_read_only = true;
    parameters.time_zone = "UTC".into();
    parameters
}

#[async_trait]
impl SimpleQueryHandler for Conn {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.caller()?;
        let options = FormatOptions::from_client_metadata(client.metadata());
        let mut responses = Vec::new();
        for statement in self.parse(query).await? {
            let response = match statement {
                Parsed::Command(command) => self.answer(command, &Format::UnifiedText)?,
                Parsed::Query(sql) => {
                    self.run(&sql, None, None, &Format::UnifiedText, &options)
                        .await?
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }
}

/// A statement of the extended protocol, as parsed and planned.
#[derive(Clone, Debug)]
enum Prepared {
    /// A query: its SQL for the engine, its placeholders and row schema, and the plan its
    /// `Parse` made.
    Query {
        sql: String,
        description: Description,
        planned: KeptPlan,
    },
    /// A session command.
    Command(Command),
}

/// How long the plan a statement's `Parse` made serves its first `Execute`: a driver sends
/// the two together (psycopg, JDBC, ADBC's PostgreSQL driver), and the plan reads the tables'
/// snapshots of its making, so one made longer ago is not used (a named statement executed
/// later is planned again, on the snapshots of then).
const PLAN_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The plan of a statement without parameters, made by its `Parse` and kept for its first
/// `Execute`, so a statement sent by the extended protocol is planned once, not twice.
#[derive(Clone, Default)]
struct KeptPlan(Arc<Mutex<Option<(Instant, Planned)>>>);

impl KeptPlan {
    fn new(planned: Planned) -> Self {
        Self(Arc::new(Mutex::new(Some((Instant::now(), planned)))))
    }

    /// The plan, once, if it is young enough.
    fn take(&self) -> Option<Planned> {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.take()
            .filter(|(made, _)| made.elapsed() < PLAN_KEPT_FOR)
            .map(|(_, planned)| planned)
    }
}

impl Debug for KeptPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptPlan")
    }
}

#[async_trait]
impl QueryParser for Conn {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.caller()?;
        let mut statements = self.parse(sql).await?;
        let statement = match (statements.pop(), statements.is_empty()) {
            (None, _) => return Ok(None),
            (Some(s), true) => s,
            (Some(_), false) => {
                return Err(refused(
                    "ERROR",
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                ));
            }
        };
        let sql = match statement {
            Parsed::Command(command) => return Ok(Some(Prepared::Command(command))),
            Parsed::Query(sql) => sql,
        };
        // Planning is work like running: it takes a statement slot of the caller's role.
        let server = &self.session().server;
        let _slot = self.slot().await?;
        let planned = server
            .engine
            .plan(&sql, self.options(None))
            .await
            .map_err(|e| sql_error(&e))?;
        let description = planned.description.clone();
        let planned = if description.params.is_empty() {
            KeptPlan::new(planned)
        } else {
            KeptPlan::default()
        };
        Ok(Some(Prepared::Query {
            sql,
            description,
            planned,
        }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        match statement {
            Prepared::Query { description, .. } => description
                .params
                .iter()
                .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
                .collect(),
            Prepared::Command(_) => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match statement {
            Prepared::Query { description, .. } => {
                result_formats(format, description.schema.fields().len())?;
                arrow_schema_to_pg_fields(&description.schema, format, None)
            }
            Prepared::Command(Command::Show(name)) if name == "all" => {
                result_formats(format, 2)?;
                Ok(["name", "setting"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        FieldInfo::new(n.to_string(), None, None, Type::TEXT, format.format_for(i))
                    })
                    .collect())
            }
            Prepared::Command(Command::Show(name)) => {
                result_formats(format, 1)?;
                Ok(vec![FieldInfo::new(
                    name.clone(),
                    None,
                    None,
                    Type::TEXT,
                    format.format_for(0),
                )])
            }
            Prepared::Command(_) => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Conn {
    type Statement = Prepared;
    type QueryParser = Conn;

    fn query_parser(&self) -> Arc<Conn> {
        Arc::new(self.clone())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.caller()?;
        match &portal.statement.statement {
            Prepared::Command(command) => {
                self.answer(command.clone(), &portal.result_column_format)
            }
            Prepared::Query {
                sql,
                description,
                planned,
            } => {
                let types: Vec<_> = description.params.iter().map(Option::as_ref).collect();
                let params = deserialize_parameters(portal, &types)?;
                let options = FormatOptions::from_client_metadata(client.metadata());
                let params = (!description.params.is_empty()).then_some(params);
                let format = &portal.result_column_format;
                self.run(sql, params, planned.take(), format, &options)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use adit_sql::{Catalog, SqlEngine, SqlLimits};

    #[tokio::test]
    async fn a_parses_plan_serves_its_first_execute_once_and_only_while_young() -> anyhow::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let store = adit_sinks::TableStore::new(dir.path().to_str().unwrap(), Default::default())?;
        let engine = SqlEngine::new(
            Arc::new(Catalog::new(store, Duration::ZERO)),
            SqlLimits::default(),
        );
        let kept = KeptPlan::new(engine.plan("SELECT 1", StatementOptions::default()).await?);
        let again = kept.clone();
        assert!(
            kept.take().is_some(),
            "the first execute runs the parse's plan"
        );
        assert!(again.take().is_none(), "a later one plans again");
        assert!(KeptPlan::default().take().is_none());

        let planned = engine.plan("SELECT 1", StatementOptions::default()).await?;
        let old = Instant::now()
            .checked_sub(PLAN_KEPT_FOR)
            .expect("a clock past the window");
        let stale = KeptPlan(Arc::new(Mutex::new(Some((old, planned)))));
        assert!(
            stale.take().is_none(),
            "a plan on snapshots older than the window is not run"
        );
        Ok(())
    }
}
