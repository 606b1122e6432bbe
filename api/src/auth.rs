//! Around every guarded route: who is calling (a static or JWT bearer token, [`adit_auth`]:
//! [`Tokens::identify`] decides, as it does for the PostgreSQL and Flight SQL ports, and refuses
//! a cluster worker's token, which is for the coordinator's REST only),
//! the lockout of addresses that fail to authenticate ([`adit_auth::lockout`]) and the audit
//! trail: every change (any method but GET, HEAD, OPTIONS) behind the operate or admin role,
//! every refusal of one for want of a role, and every failed authentication is an
//! [`AuditEntry`] published for the `audit` table.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use adit_bus::publish::Outgoing;
use adit_schemas::{AuditEntry, Kinded};
use axum::extract::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

pub use adit_auth::{Caller, JwtConfig, Role, TokenConfig, Tokens};

use crate::error::QueryError;

/// What every guard shares: who has failed to authenticate, and where the audit trail goes.
pub struct Trail {
    /// Failed authentications per address.
    pub lockout: Arc<adit_auth::lockout::Lockout>,
    /// Publishes the audit entries (none without NATS: nothing is recorded).
    pub publisher: Option<adit_bus::Publisher>,
}

/// Puts a group of routes behind a role: each route module says beside its handlers who may
/// call them (`access.at(Role::Read, routes)`).
#[derive(Clone)]
pub struct Access {
    tokens: Arc<Tokens>,
    trail: Arc<Trail>,
}

impl Access {
    /// Guards checking `tokens`, recording to `trail`.
    pub fn new(tokens: Arc<Tokens>, trail: Arc<Trail>) -> Self {
        Self { tokens, trail }
    }

    /// `routes`, answered only for a token of `role` or above (a 401 or 403 otherwise).
    pub fn at<S>(&self, role: Role, routes: OpenApiRouter<S>) -> OpenApiRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let guard = Guard {
            tokens: self.tokens.clone(),
            needed: role,
            trail: self.trail.clone(),
        };
        routes.route_layer(middleware::from_fn_with_state(guard, require))
    }
}

/// Middleware state: the tokens, the role a group of routes needs, the trail.
#[derive(Clone)]
pub struct Guard {
    /// Configured tokens.
    pub tokens: Arc<Tokens>,
    /// Role required.
    pub needed: Role,
    /// Lockout and audit trail.
    pub trail: Arc<Trail>,
}

/// Refuses requests whose bearer token does not grant the guard's role, and requests from a
/// banned address; records changes, refusals and failures in the audit trail.
pub async fn require(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let from = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(until) = from.and_then(|ip| guard.trail.lockout.banned(ip, now)) {
        let retry_after_s = until.duration_since(now).as_secs().max(1);
        return QueryError::Banned { retry_after_s }.into_response();
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let recorded = |who: &str, role: &str, status: StatusCode| Action {
        who: who.to_string(),
        role: role.to_string(),
        method: method.as_str().to_string(),
        path: path.clone(),
        status: status.as_u16(),
        from,
    };
    let caller = match guard.tokens.identify(header) {
        Ok(caller) => caller,
        Err(e) => {
            let e = QueryError::Unauthorized(e);
            let action = recorded("unknown", "none", StatusCode::UNAUTHORIZED);
            record(&guard.trail, action).await;
            if let Some(ip) = from {
                let struck = guard.trail.lockout.fail(ip, now);
                tokio::time::sleep(struck.delay).await;
            }
            return e.into_response();
        }
    };
    if caller.role < guard.needed {
        if changes {
            let action = recorded(&caller.name, caller.role.name(), StatusCode::FORBIDDEN);
            record(&guard.trail, action).await;
        }
        return QueryError::Forbidden {
            needed: guard.needed.name(),
            has: caller.role.name(),
        }
        .into_response();
    }
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    if changes && guard.needed >= Role::Operate {
        let action = recorded(&caller.name, caller.role.name(), response.status());
        record(&guard.trail, action).await;
    }
    response
}

/// One action for the trail.
struct Action {
    who: String,
    role: String,
    method: String,
    path: String,
    status: u16,
    from: Option<IpAddr>,
}

/// Publishes `action` to the audit trail. The action has happened whatever becomes of its
/// record, so a record that cannot be published is logged as an error and counted
/// (`adit_audit_lost_total`), not retried into the caller's answer.
async fn record(trail: &Trail, action: Action) {
    let Some(publisher) = &trail.publisher else {
        return;
    };
    let ts = chrono::Utc::now();
    let entry = AuditEntry {
        id: format!("{}-{:016x}", ts.timestamp_micros(), rand::random::<u64>()),
        who: action.who.chars().take(256).collect(),
        role: action.role,
        method: action.method.chars().take(16).collect(),
        path: action.path.chars().take(2048).collect(),
        status: i64::from(action.status),
        client: action
            .from
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
        ts,
    };
    if let Err(e) = publisher
        .publish_one(&Outgoing::event(&entry.clone().into_any()))
        .await
    {
        metrics::counter!("adit_audit_lost_total").increment(1);
        tracing::error!(error = %e, who = %entry.who, method = %entry.method, path = %entry.path, status = entry.status, "an action could not be recorded in the audit trail");
    }
}
