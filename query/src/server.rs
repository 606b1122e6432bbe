//! The HTTP server: routes, shared state, and serving until shutdown.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::AsArray;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router, middleware};
use futures::{StreamExt, stream};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::auth::{Caller, Guard, JwtConfig, Role, TokenConfig, Tokens, require};
use crate::error::{QueryError, Result};
use crate::format::{Encoder, Format};
use crate::{views, violations};
use adit_sql::{SqlEngine, SqlLimits};

/// Query server settings; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Address to listen on.
    pub listen: String,
    /// Per-query limits.
    pub limits: SqlLimits,
    /// How stale a table's snapshot may be when a query starts; each table's log is checked
    /// for new commits at most this often (zero: before every query).
    #[serde(with = "humantime_serde")]
    pub snapshot_refresh: std::time::Duration,
    /// Show the landed tables' rows not committed yet (read from their streams here) after
    /// each snapshot, so an event is visible within milliseconds of its publish; local engine
    /// only.
    pub fresh_reads: bool,
    /// Where the API's statements run: here, or on a Ballista cluster.
    pub engine: adit_sql::QueryEngine,
    /// Static bearer tokens; with none and no `jwt`, auth is off.
    pub tokens: Vec<TokenConfig>,
    /// JWT bearer tokens signed by this key, besides the static ones.
    pub jwt: Option<JwtConfig>,
    /// Serve HTTPS with this certificate and key (PEM) instead of HTTP.
    pub tls: Option<adit_protocol::TlsFiles>,
    /// Most live (SSE) subscribers at once; more get a 429.
    pub live_max_subscribers: usize,
    /// SQL statements running at once, per token role.
    pub concurrency: crate::admission::ConcurrencyConfig,
    /// monerod's RPC URL, for the confirmations in the blocks view (default: the pool's node
    /// when it is monerod).
    pub node: Option<String>,
    /// Where users open the API and dashboard when it is not by IP address or `localhost`
    /// (e.g. `https://adit.farm.example`): its host is served and its pages may change things.
    pub public_url: Option<String>,
    /// More host names the API is reached by (checked against each request's `Host`).
    pub allowed_hosts: Vec<String>,
    /// Failed authentications that ban an address, and for how long.
    pub lockout: crate::lockout::LockoutConfig,
    /// Serve PostgreSQL clients too (`[query.postgres]`).
    pub postgres: Option<crate::postgres::PostgresConfig>,
    /// Serve Arrow Flight SQL clients too (`[query.flight]`).
    pub flight: Option<crate::flight::FlightConfig>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            limits: SqlLimits::default(),
            snapshot_refresh: std::time::Duration::from_millis(250),
            fresh_reads: true,
            engine: adit_sql::QueryEngine::Local,
            tokens: Vec::new(),
            jwt: None,
            tls: None,
            live_max_subscribers: 256,
            concurrency: crate::admission::ConcurrencyConfig::default(),
            node: None,
            public_url: None,
            allowed_hosts: Vec::new(),
            lockout: crate::lockout::LockoutConfig::default(),
            postgres: None,
            flight: None,
        }
    }
}

impl QueryConfig {
    /// The browser policy these settings make (hosts served, origins allowed to change
    /// things); an error names the setting that does not parse.
    pub fn origin_policy(&self) -> std::result::Result<crate::origin::OriginPolicy, String> {
        crate::origin::OriginPolicy::new(self.public_url.as_deref(), &self.allowed_hosts)
    }

    /// The API's URL on this machine: `https://` with `tls`, `http://` without.
    pub fn local_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.listen)
    }

    /// The tokens the API accepts (static and JWT, the JWT key read now); an error names the
    /// setting. A worker's token (`worker = …`) is the coordinator's, not the API's.
    pub fn tokens(&self) -> std::result::Result<Tokens, adit_auth::Invalid> {
        if let Some(i) = self.tokens.iter().position(|t| t.worker.is_some()) {
            return Err(adit_auth::Invalid {
                key: format!("query.tokens[{i}].worker"),
                reason:
                    "a worker's token is for [cluster.rest] tokens; the API has no worker scope"
                        .into(),
            });
        }
        Tokens::new("query", &self.tokens, self.jwt.as_ref())
    }

    /// The TLS acceptor for HTTPS when `tls` is set (the files read now); an error names the
    /// setting.
    pub fn tls_acceptor(
        &self,
    ) -> std::result::Result<Option<adit_protocol::https::TlsAcceptor>, String> {
        self.tls_acceptor_for(&[])
    }

    /// [`QueryConfig::tls_acceptor`] naming `protocols` in the handshake (ALPN), for the
    /// PostgreSQL and Flight SQL ports.
    pub fn tls_acceptor_for(
        &self,
        protocols: &[&[u8]],
    ) -> std::result::Result<Option<adit_protocol::https::TlsAcceptor>, String> {
        self.tls
            .as_ref()
            .map(|files| adit_protocol::tls::acceptor_for(files, None, protocols))
            .transpose()
            .map_err(|e| format!("query.tls: {e}"))
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Runs SQL.
    pub engine: Arc<SqlEngine>,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// The supervised parts of the process, for `/ready`.
    pub vitals: adit_supervise::Vitals,
    /// The NATS connection, for readiness.
    pub nats: Option<async_nats::Client>,
    /// The node whose chain height gives blocks their confirmations.
    pub node: Option<views::ChainTip>,
    /// The registry bucket (none without NATS: its routes answer 503).
    pub registry: Option<adit_bus::registry::Registry>,
    /// Publishes operators' notes (manual violations) to the pipelines.
    pub publisher: Option<adit_bus::Publisher>,
    /// The alert rules bucket (none without NATS: its routes answer 503).
    pub rules: Option<adit_alerts::RuleStore>,
    /// The silences (none without NATS).
    pub silences: Option<adit_alerts::notify::Silences>,
    /// The receivers, for test messages (none without `[notify] receivers`: 503).
    pub notifier: Option<Arc<adit_alerts::notify::Notifier>>,
    /// The Stratum bans bucket (none without NATS: its routes answer 503).
    pub bans: Option<async_nats::jetstream::kv::Store>,
    /// Live subscriptions (none without NATS: the route answers 503).
    pub live: Option<crate::live::Live>,
    /// Slots for SQL statements per role.
    pub admission: Arc<crate::admission::Admission>,
    /// Failed authentications that ban an address (shared with the PostgreSQL port).
    pub lockout: Arc<crate::lockout::Lockout>,
    /// Users' dashboards (none without NATS: their routes answer 503).
    pub dashboards: Option<crate::dashboards::store::DashboardStore>,
}

/// Routes another crate mounts, for the OpenAPI document: (path, method, summary).
pub type ExtraRoutes = &'static [(&'static str, &'static str, &'static str)];

/// The full router: public health, metrics and OpenAPI document, SQL and pool views behind
/// `read`, `extra_operate` (e.g. HTTP ingest, described by `extra_docs`) behind `operate`;
/// every route behind `origins` (what a browser may ask, checked before the token).
pub fn router(
    state: AppState,
    tokens: Tokens,
    origins: crate::origin::OriginPolicy,
    extra_operate: Router,
    extra_docs: ExtraRoutes,
) -> Router {
    let tokens = Arc::new(tokens);
    if !tokens.enabled() {
        tracing::warn!("no API tokens configured: the API is open to anyone who can reach it");
    }
    let trail = Arc::new(crate::auth::Trail {
        lockout: state.lockout.clone(),
        publisher: state.publisher.clone(),
    });
    let guard = |needed| Guard {
        tokens: tokens.clone(),
        needed,
        trail: trail.clone(),
    };
    let read = Router::new()
        .route("/api/v1/sql", get(sql_get).post(sql_post))
        .route("/api/v1/tables", get(list_tables))
        .route("/api/v1/pools/{pool}", get(views::pool_stats))
        .route("/api/v1/pools/{pool}/blocks", get(views::pool_blocks))
        .route("/api/v1/pools/{pool}/payments", get(views::pool_payments))
        .route("/api/v1/pools/{pool}/miners/{miner}", get(views::miner))
        .route(
            "/api/v1/pools/{pool}/miners/{miner}/workers",
            get(views::workers),
        )
        .route("/api/v1/violations", get(violations::list))
        .route("/api/v1/control/overrides", get(crate::overrides::list))
        .route("/api/v1/alerts", get(crate::alerts::list))
        .route("/api/v1/alerts/silences", get(crate::alerts::list_silences))
        .route("/api/v1/live", get(crate::live::live))
        .route(
            "/api/v1/reports/compliance",
            get(crate::reports::compliance),
        )
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(guard(Role::Read), require));
    let notes = Router::new()
        .route(
            "/api/v1/violations",
            axum::routing::post(violations::create),
        )
        .route(
            "/api/v1/violations/{id}/resolve",
            axum::routing::post(violations::resolve),
        )
        .route(
            "/api/v1/control/overrides",
            axum::routing::post(crate::overrides::create),
        )
        .route(
            "/api/v1/control/overrides/{site}/{id}/cancel",
            axum::routing::post(crate::overrides::cancel),
        )
        .route(
            "/api/v1/control/commands",
            axum::routing::post(crate::commands::create),
        )
        .route(
            "/api/v1/alerts/silences",
            axum::routing::post(crate::alerts::silence),
        )
        .route(
            "/api/v1/alerts/acknowledge",
            axum::routing::post(crate::alerts::acknowledge),
        )
        .route(
            "/api/v1/alerts/resolve",
            axum::routing::post(crate::alerts::resolve),
        )
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(
            guard(Role::Operate),
            require,
        ));
    let operate = extra_operate.layer(middleware::from_fn_with_state(
        guard(Role::Operate),
        require,
    ));
    let registry = registry_routes(state.clone(), &guard);
    let rules = rule_routes(state.clone(), &guard);
    let bans = ban_routes(state.clone(), &guard);
    let dashboards = dashboard_routes(state.clone(), &guard);
    let doc = Arc::new(crate::openapi::document(extra_docs));
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .route("/health", get(health))
        .route("/live", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(read)
        .merge(operate)
        .merge(registry)
        .merge(notes)
        .merge(rules)
        .merge(bans)
        .merge(dashboards)
        .merge(crate::dashboard::routes())
        .layer(middleware::from_fn_with_state(
            Arc::new(origins),
            crate::origin::guard,
        ))
}

/// The alert rules' routes: read to list, read and evaluate, admin to write and delete; and
/// where alerts go ([`receiver_routes`]).
fn rule_routes(state: AppState, guard: &dyn Fn(Role) -> Guard) -> Router {
    use crate::alerts as a;
    let layer = |role| middleware::from_fn_with_state(guard(role), require);
    let one = get(a::group)
        .layer(layer(Role::Read))
        .merge(axum::routing::put(a::put).layer(layer(Role::Admin)))
        .merge(axum::routing::delete(a::delete).layer(layer(Role::Admin)));
    Router::new()
        .route(
            "/api/v1/alerts/rules",
            get(a::groups).layer(layer(Role::Read)),
        )
        .route("/api/v1/alerts/rules/{group}", one)
        .route(
            "/api/v1/alerts/evaluate",
            axum::routing::post(a::evaluate).layer(layer(Role::Read)),
        )
        .with_state(state.clone())
        .merge(receiver_routes(state, guard))
}

/// Where alerts go: the receivers and the route (admin, reading included: they hold
/// addresses and phone numbers), and test messages.
fn receiver_routes(state: AppState, guard: &dyn Fn(Role) -> Guard) -> Router {
    use crate::receivers as r;
    let admin = middleware::from_fn_with_state(guard(Role::Admin), require);
    Router::new()
        .route("/api/v1/alerts/receivers", get(r::list))
        .route(
            "/api/v1/alerts/receivers/{name}",
            axum::routing::put(r::put).delete(r::delete),
        )
        .route(
            "/api/v1/alerts/receivers/{name}/test",
            axum::routing::post(r::test),
        )
        .route(
            "/api/v1/alerts/route",
            axum::routing::put(r::put_route).delete(r::delete_route),
        )
        .with_state(state)
        .layer(admin)
}

/// The dashboards' routes: read to list, open and run panels, operate to create, replace and
/// delete (the owner's or, for admins, any); a public dashboard's link needs no token.
fn dashboard_routes(state: AppState, guard: &dyn Fn(Role) -> Guard) -> Router {
    use crate::dashboards as d;
    let layer = |role| middleware::from_fn_with_state(guard(role), require);
    let one = get(d::get_one)
        .layer(layer(Role::Read))
        .merge(axum::routing::put(d::put).layer(layer(Role::Operate)))
        .merge(axum::routing::delete(d::delete).layer(layer(Role::Operate)));
    let read = Router::new()
        .route("/api/v1/dashboards", get(d::list))
        .route("/api/v1/dashboards/{id}/revisions", get(d::revisions))
        .route(
            "/api/v1/dashboards/{id}/panels/{panel}/query",
            axum::routing::post(d::query_panel),
        )
        .route(
            "/api/v1/dashboards/{id}/variables/{name}/values",
            axum::routing::post(d::variable_values),
        )
        .layer(layer(Role::Read));
    let public = Router::new()
        .route("/api/v1/public/dashboards/{link}", get(d::public_get))
        .route(
            "/api/v1/public/dashboards/{link}/panels/{panel}/query",
            axum::routing::post(d::public_query_panel),
        )
        .route(
            "/api/v1/public/dashboards/{link}/variables/{name}/values",
            axum::routing::post(d::public_variable_values),
        );
    Router::new()
        .route("/api/v1/dashboards/{id}", one)
        .merge(read)
        .merge(public)
        .with_state(state)
}

/// The Stratum bans' routes: admin only, reading included (they name attackers' addresses).
fn ban_routes(state: AppState, guard: &dyn Fn(Role) -> Guard) -> Router {
    use crate::bans as b;
    Router::new()
        .route("/api/v1/bans", get(b::list))
        .route(
            "/api/v1/bans/{network}",
            axum::routing::put(b::add).delete(b::lift),
        )
        .layer(middleware::from_fn_with_state(guard(Role::Admin), require))
        .with_state(state)
}

/// The registry's routes: read to list and read, operate to write, admin to delete.
fn registry_routes(state: AppState, guard: &dyn Fn(Role) -> Guard) -> Router {
    use crate::registry as r;
    use axum::routing::{delete, put};
    let layer = |role| middleware::from_fn_with_state(guard(role), require);
    let top = get(r::get_top)
        .layer(layer(Role::Read))
        .merge(put(r::put_top).layer(layer(Role::Operate)))
        .merge(delete(r::delete_top).layer(layer(Role::Admin)));
    let scoped = get(r::get_scoped)
        .layer(layer(Role::Read))
        .merge(put(r::put_scoped).layer(layer(Role::Operate)))
        .merge(delete(r::delete_scoped).layer(layer(Role::Admin)));
    Router::new()
        .route(
            "/api/v1/registry/{kind}",
            get(r::list).layer(layer(Role::Read)),
        )
        .route("/api/v1/registry/{kind}/{id}", top)
        .route("/api/v1/registry/{kind}/{site}/{id}", scoped)
        .with_state(state)
}

/// Serves `router` on `listener` (HTTPS with `tls`) until `shutdown` completes, then drains
/// open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<adit_protocol::https::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The client's address reaches the handlers (the lockout and the audit trail read it).
    adit_protocol::https::serve(listener, router, tls, shutdown).await
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "{\"status\":\"ok\"}")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: NATS is connected and every supervised part of the process runs (a part being
/// restarted after a failure is named in `down`).
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, description = "NATS is not connected, or a part is down (named in `down`)")))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let nats_ok = state
        .nats
        .as_ref()
        .is_none_or(|c| c.connection_state() == async_nats::connection::State::Connected);
    let down = state.vitals.down();
    let ready = nats_ok && down.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "ready": ready,
            "nats": nats_ok,
            "down": down,
            "parts": state.vitals.parts(),
        })),
    )
        .into_response()
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

/// Every table with its columns and their types.
#[utoipa::path(get, path = "/api/v1/tables", tag = "sql",
    responses((status = 200, description = "{table: [{name, type}]}"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list_tables(State(state): State<AppState>) -> Result<Json<serde_json::Value>> {
    let result = state
        .engine
        .query("SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
        .await?;
    let mut out = serde_json::Map::new();
    for batch in &result.batches {
        let column = |i: usize| {
            arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| QueryError::Internal(e.to_string()))
        };
        let (tables, columns, types) = (column(0)?, column(1)?, column(2)?);
        let (tables, columns, types) = (
            tables.as_string::<i32>(),
            columns.as_string::<i32>(),
            types.as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            let entry = out
                .entry(tables.value(row))
                .or_insert(serde_json::json!([]));
            if let Some(cols) = entry.as_array_mut() {
                cols.push(
                    serde_json::json!({"name": columns.value(row), "type": types.value(row)}),
                );
            }
        }
    }
    Ok(Json(serde_json::Value::Object(out)))
}

/// Query-string parameters of `GET /api/v1/sql`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SqlParams {
    /// The SQL (GET only).
    q: Option<String>,
    /// Result format: json (default), ndjson, csv, arrow or parquet; or use `Accept`.
    format: Option<String>,
    /// Stream the rows as they are made, without the row limit (not for json).
    stream: Option<bool>,
}

/// JSON body of `POST /api/v1/sql` (a `text/plain` body is the SQL itself).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SqlBody {
    /// The SQL.
    sql: String,
    /// Result format.
    format: Option<String>,
    /// Stream without the row limit.
    stream: Option<bool>,
}

fn choose_format(explicit: Option<&str>, headers: &HeaderMap) -> Result<Format> {
    if let Some(name) = explicit {
        return Format::from_name(name);
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::from_accept)
        .unwrap_or(Format::Json))
}

/// Runs one read-only SQL statement given as `q`.
#[utoipa::path(get, path = "/api/v1/sql", tag = "sql", params(SqlParams),
    responses((status = 200, description = "The rows, in the format asked for; header x-adit-rows"),
              (status = 400, description = "{error: {code, message}}: the statement is invalid or not read-only"),
              (status = 401), (status = 403),
              (status = 422, description = "over the time, memory or row limit")),
    security(("bearer" = [])))]
pub async fn sql_get(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Query(p): Query<SqlParams>,
) -> Response {
    let Some(sql) = p.q else {
        return QueryError::BadRequest("missing query parameter q".into()).into_response();
    };
    let ask = Ask {
        role: role_of(caller),
        format: choose_format(p.format.as_deref(), &headers),
        stream: p.stream.unwrap_or(false),
    };
    respond(&state, &sql, ask).await
}

/// What the caller asked for besides the SQL.
struct Ask {
    role: Role,
    format: Result<Format>,
    stream: bool,
}

fn role_of(caller: Option<Extension<Caller>>) -> Role {
    caller.map_or(Role::Admin, |Extension(c)| c.role)
}

/// Runs one read-only SQL statement given as the body.
#[utoipa::path(post, path = "/api/v1/sql", tag = "sql", params(SqlParams),
    request_body(content = SqlBody, description = "JSON, or the SQL as text/plain"),
    responses((status = 200, description = "The rows, in the format asked for; header x-adit-rows"),
              (status = 400, description = "{error: {code, message}}"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn sql_post(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Query(p): Query<SqlParams>,
    body: bytes::Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (sql, format, stream) = if is_json {
        match serde_json::from_slice::<SqlBody>(&body) {
            Ok(b) => (b.sql, b.format.or(p.format), b.stream.or(p.stream)),
            Err(e) => {
                return QueryError::BadRequest(format!(
                    "body must be {{\"sql\": \"...\", \"format\"?: \"...\"}}: {e}"
                ))
                .into_response();
            }
        }
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(sql) => (sql, p.format, p.stream),
            Err(_) => return QueryError::BadRequest("body is not UTF-8".into()).into_response(),
        }
    };
    let ask = Ask {
        role: role_of(caller),
        format: choose_format(format.as_deref(), &headers),
        stream: stream.unwrap_or(false),
    };
    respond(&state, &sql, ask).await
}

async fn respond(state: &AppState, sql: &str, ask: Ask) -> Response {
    let started = Instant::now();
    let outcome = match ask.format {
        Ok(format) => match state.admission.admit(ask.role).await {
            Ok(slot) if ask.stream => run_streamed(state, sql, format, slot).await,
            Ok(slot) => run(state, sql, format, slot).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let status = match &outcome {
        Ok(_) => "ok",
        Err(e) => e.status_code().1,
    };
    metrics::counter!("adit_query_requests_total", "status" => status).increment(1);
    metrics::histogram!("adit_query_seconds").record(started.elapsed().as_secs_f64());
    if let Err(e) = &outcome {
        tracing::info!(error = %e, "query refused");
    }
    outcome.unwrap_or_else(IntoResponse::into_response)
}

/// Runs `sql` and sends its collected rows; the slot is held until the client has read the
/// last byte (the rows stay in memory until then).
async fn run(
    state: &AppState,
    sql: &str,
    format: Format,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response> {
    let result = state.engine.query(sql).await?;
    let rows: usize = result.batches.iter().map(|b| b.num_rows()).sum();
    let (mut encoder, opening) = Encoder::new(format, &result.schema)?;
    let mut batches = result.batches.into_iter();
    // The first batch is encoded before the answer starts, so a result the format cannot
    // carry (most results are one batch) is a clear error, not a cut connection.
    let first = batches.next().map(|b| encoder.batch(&b)).transpose()?;
    // Encode the rest lazily, one batch per chunk, as the client reads.
    let rest = stream::unfold(
        (Some(encoder), batches, Some(slot)),
        |(encoder, mut batches, slot)| async move {
            let mut encoder = encoder?;
            match batches.next() {
                Some(batch) => {
                    let chunk = encoder.batch(&batch);
                    Some((chunk, (Some(encoder), batches, slot)))
                }
                None => Some((encoder.finish(), (None, batches, None))),
            }
        },
    );
    let chunks = stream::iter([Ok(opening)].into_iter().chain(first.map(Ok)))
        .chain(rest)
        .map(cut_on_error);
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header("x-adit-rows", rows)
        .body(Body::from_stream(chunks))
        .map_err(|e| QueryError::Internal(e.to_string()))
}

/// A chunk of an answer under way; an error can no longer change the status, so it cuts the
/// connection (the client sees an incomplete body) and is logged, never silent.
fn cut_on_error(chunk: Result<bytes::Bytes>) -> std::io::Result<bytes::Bytes> {
    chunk.map_err(|e| {
        tracing::warn!(error = %e, "answer cut: a later part of the result could not be sent");
        std::io::Error::other(e.to_string())
    })
}

/// Streams the rows of `sql` as they are made (no row limit); the slot is held until the
/// client has read the last byte or gone away, and the statement stops with it.
async fn run_streamed(
    state: &AppState,
    sql: &str,
    format: Format,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response> {
    if format == Format::Json {
        return Err(QueryError::BadRequest(
            "stream=true is for ndjson, csv, arrow or parquet; a JSON result keeps the row limit"
                .into(),
        ));
    }
    let rows = state.engine.query_stream(sql).await?;
    let (encoder, opening) = Encoder::new(format, &rows.schema)?;
    let rest = stream::unfold(Some((encoder, rows, slot)), |state| async move {
        let (mut encoder, mut rows, slot) = state?;
        match rows.next().await {
            Some(Ok(batch)) => {
                let chunk = encoder.batch(&batch);
                Some((chunk, Some((encoder, rows, slot))))
            }
            // Logged by `cut_on_error`.
            Some(Err(e)) => Some((Err(QueryError::from(e)), None)),
            None => Some((encoder.finish(), None)),
        }
    });
    let chunks = stream::once(async move { Ok(opening) })
        .chain(rest)
        .map(cut_on_error);
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Body::from_stream(chunks))
        .map_err(|e| QueryError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, TokenConfig, Tokens};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app(dir: &std::path::Path) -> Router {
        app_with(dir, adit_supervise::Vitals::new())
    }

    fn app_with(dir: &std::path::Path, vitals: adit_supervise::Vitals) -> Router {
        let store = adit_sinks::TableStore::new(dir.to_str().unwrap(), Default::default()).unwrap();
        let state = AppState {
            engine: Arc::new(SqlEngine::new(
                Arc::new(adit_sql::Catalog::new(store, std::time::Duration::ZERO)),
                SqlLimits::default(),
            )),
            metrics: None,
            vitals,
            nats: None,
            node: None,
            registry: None,
            publisher: None,
            rules: None,
            silences: None,
            notifier: None,
            bans: None,
            live: None,
            admission: Arc::new(crate::admission::Admission::new(Default::default())),
            lockout: Arc::new(crate::lockout::Lockout::new(Default::default())),
            dashboards: None,
        };
        let tokens = Tokens::new(
            "query",
            &[
                TokenConfig::new("r", "reader-token-0000", Role::Read),
                TokenConfig::new("a", "admin-token-00000", Role::Admin),
            ],
            None,
        )
        .unwrap();
        let operate = Router::new().route(
            "/api/v1/ingest/{kind}",
            axum::routing::post(|| async { "ingested" }),
        );
        router(state, tokens, Default::default(), operate, &[])
    }

    async fn call(
        app: Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = app
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let text = if json.is_null() {
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            ctype
        };
        (status, json, text)
    }

    #[tokio::test]
    async fn auth_roles_and_refusals_map_to_their_status_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _, _) = call(app(dir.path()), "GET", "/health", None, "").await;
        assert_eq!(s, StatusCode::OK, "health needs no token");
        let (s, body, _) = call(app(dir.path()), "POST", "/api/v1/sql", None, "SELECT 1").await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        let (s, body, _) = call(
            app(dir.path()),
            "POST",
            "/api/v1/ingest/energy",
            Some("reader-token-0000"),
            "{}",
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden"))
        );
        let (s, _, text) = call(
            app(dir.path()),
            "POST",
            "/api/v1/ingest/energy",
            Some("admin-token-00000"),
            "{}",
        )
        .await;
        assert_eq!(
            (s, text.as_str()),
            (StatusCode::OK, "ingested"),
            "admin includes operate"
        );
        let (s, body, _) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql",
            Some("reader-token-0000"),
            "DROP TABLE x",
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "read_only");
        let (s, body, _) = call(
            app(dir.path()),
            "GET",
            "/api/v1/sql",
            Some("reader-token-0000"),
            "",
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
        let (s, body, _) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql?format=yaml",
            Some("reader-token-0000"),
            "SELECT 1",
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
    }

    /// Issue 22: while a supervised part is down (restarting after a panic), `/ready` says
    /// which and answers 503; once it runs again, 200.
    #[tokio::test]
    async fn ready_names_a_part_that_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let vitals = adit_supervise::Vitals::new();
        let gave_up = adit_supervise::supervise(
            "pool_publisher",
            &vitals,
            adit_supervise::Policy {
                first_backoff: std::time::Duration::from_millis(1),
                max_backoff: std::time::Duration::from_millis(1),
                max_restarts: 0,
                window: std::time::Duration::from_secs(60),
            },
            || async { panic!("injected") },
        )
        .await;
        assert!(gave_up.is_err());
        let (s, body, _) = call(app_with(dir.path(), vitals), "GET", "/ready", None, "").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["down"], serde_json::json!(["pool_publisher"]));
        assert_eq!(body["parts"]["pool_publisher"]["last_error"], "injected");
        let (s, body, _) = call(app(dir.path()), "GET", "/ready", None, "").await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    #[tokio::test]
    async fn formats_follow_the_parameter_or_the_accept_header() {
        let dir = tempfile::tempdir().unwrap();
        let sql = "SELECT 1 AS one, 'a' AS s";
        let (s, body, _) = call(
            app(dir.path()),
            "GET",
            "/api/v1/sql?q=SELECT%201%20AS%20one",
            Some("reader-token-0000"),
            "",
        )
        .await;
        assert_eq!((s, body), (StatusCode::OK, serde_json::json!([{"one": 1}])));
        let (s, _, text) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql?format=csv",
            Some("reader-token-0000"),
            sql,
        )
        .await;
        assert_eq!((s, text.as_str()), (StatusCode::OK, "one,s\n1,a\n"));
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/sql")
            .header(header::AUTHORIZATION, "Bearer reader-token-0000")
            .header(header::ACCEPT, "application/x-ndjson")
            .body(Body::from(sql))
            .unwrap();
        let resp = app(dir.path()).oneshot(req).await.unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/x-ndjson");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"{\"one\":1,\"s\":\"a\"}\n");
        let (s, _, text) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql?format=csv",
            Some("reader-token-0000"),
            "SELECT 1 AS one WHERE false",
        )
        .await;
        assert_eq!(
            (s, text.as_str()),
            (StatusCode::OK, "one\n"),
            "an empty result still has its header"
        );
    }

    /// Found by `scripts/hostile.py`: a map with integer keys cannot be written as JSON or CSV;
    /// the encoding error cut the connection with no answer and no log line.
    #[tokio::test]
    async fn a_result_the_format_cannot_carry_is_a_400_naming_the_formats_that_can() {
        let dir = tempfile::tempdir().unwrap();
        let sql = "SELECT map([1, 2], 3) AS m";
        for format in ["json", "ndjson", "csv"] {
            let (s, body, _) = call(
                app(dir.path()),
                "POST",
                &format!("/api/v1/sql?format={format}"),
                Some("reader-token-0000"),
                sql,
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{format}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("arrow and parquet"), "{format}: {body}");
        }
        let (s, _, _) = call(
            app(dir.path()),
            "POST",
            "/api/v1/sql?format=arrow",
            Some("reader-token-0000"),
            sql,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_openapi_document_covers_every_route() {
        let dir = tempfile::tempdir().unwrap();
        let (s, doc, _) = call(app(dir.path()), "GET", "/api/v1/openapi.json", None, "").await;
        assert_eq!(s, StatusCode::OK);
        let paths = doc["paths"].as_object().expect("paths");
        for route in [
            "/api/v1/sql",
            "/api/v1/tables",
            "/api/v1/pools/{pool}",
            "/api/v1/pools/{pool}/blocks",
            "/api/v1/pools/{pool}/payments",
            "/api/v1/pools/{pool}/miners/{miner}",
            "/api/v1/pools/{pool}/miners/{miner}/workers",
            "/health",
            "/ready",
            "/metrics",
        ] {
            assert!(paths.contains_key(route), "{route} in {:?}", paths.keys());
        }
        assert!(paths["/api/v1/sql"]["post"].is_object());
        assert!(doc["components"]["schemas"]["PoolStats"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[tokio::test]
    async fn pool_views_of_tables_not_yet_written_are_empty_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let token = Some("reader-token-0000");
        let (s, stats, _) = call(app(dir.path()), "GET", "/api/v1/pools/p1", token, "").await;
        assert_eq!(s, StatusCode::OK, "{stats}");
        assert_eq!(stats["blocks_found"], 0);
        assert_eq!(stats["last_block"], serde_json::Value::Null);
        for uri in [
            "/api/v1/pools/p1/blocks",
            "/api/v1/pools/p1/payments?limit=5",
            "/api/v1/pools/p1/miners/some'one/workers",
        ] {
            let (s, body, _) = call(app(dir.path()), "GET", uri, token, "").await;
            assert_eq!(
                (s, body.clone()),
                (StatusCode::OK, serde_json::json!([])),
                "{uri}"
            );
        }
        let (s, _, _) = call(app(dir.path()), "GET", "/api/v1/pools/p1", None, "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "views need the read role");
        let (s, body, _) = call(
            app(dir.path()),
            "GET",
            "/api/v1/pools/p1/blocks?limit=abc",
            token,
            "",
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_workers_view_joins_what_its_machines_report() {
        use adit_schemas::{AnyEvent, EventKind, HashrateSample, Share};
        let dir = tempfile::tempdir().unwrap();
        let store =
            adit_sinks::TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let now = chrono::Utc::now();
        let share = |worker: &str| Share {
            pool: "p1".into(),
            miner: "m".into(),
            worker: worker.into(),
            job_id: "j".into(),
            nonce: "00".into(),
            difficulty: 10,
            height: 1,
            accepted: true,
            reason: None,
            ts: now,
        };
        let sample = |cluster: &str, worker: &str, hs: f64| HashrateSample {
            cluster: cluster.into(),
            worker: worker.into(),
            ts: now,
            hashrate_hs: hs,
        };
        let shares = [
            (1, AnyEvent::Share(share("coop"))),
            (2, AnyEvent::Share(share("solo"))),
        ];
        let samples = [
            (1, AnyEvent::Hashrate(sample("coop", "w1", 100.0))),
            (2, AnyEvent::Hashrate(sample("coop", "w1", 300.0))),
            (3, AnyEvent::Hashrate(sample("coop", "w2", 50.0))),
            (4, AnyEvent::Hashrate(sample("other", "w1", 999.0))),
        ];
        for (kind, rows) in [
            (EventKind::Share, &shares[..]),
            (EventKind::Hashrate, &samples[..]),
        ] {
            let mut table = adit_sinks::ExactlyOnceTable::open(
                &store,
                kind.table(),
                &kind.table_schema(),
                &["date"],
                "t",
                adit_sinks::Maintenance::default(),
            )
            .await
            .unwrap();
            let batch = kind.batch(rows).unwrap();
            table.commit(vec![batch], 1).await.unwrap();
        }
        let (s, body, _) = call(
            app(dir.path()),
            "GET",
            "/api/v1/pools/p1/miners/m/workers",
            Some("reader-token-0000"),
            "",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let by_name = |w: &str| {
            body.as_array()
                .unwrap()
                .iter()
                .find(|r| r["worker"] == w)
                .cloned()
                .unwrap()
        };
        // w1's mean (200) + w2's (50); another cluster's machines do not count.
        assert_eq!(by_name("coop")["reported_hs"], 250.0);
        assert_eq!(by_name("solo")["reported_hs"], serde_json::Value::Null);
        assert_eq!(by_name("coop")["accepted_24h"], 1);
    }
}
