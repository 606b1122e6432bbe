//! Bearer tokens with roles: read < operate < admin; and, around every guarded route, the
//! lockout of addresses that fail to authenticate ([`crate::lockout`]) and the audit trail:
//! every change (any method but GET, HEAD, OPTIONS) behind the operate or admin role, every
//! refusal of one for want of a role, and every failed authentication is an
//! [`AuditEntry`] published for the `audit` table.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use adit_ingest::publish::Outgoing;
use adit_schemas::{AuditEntry, Event};
use axum::extract::ConnectInfo;
use axum::http::Method;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::QueryError;

/// What a token may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Query and watch.
    Read,
    /// Also push data and act (ingest, overrides).
    Operate,
    /// Also manage the registry, rules and tokens.
    Admin,
}

impl Role {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
            Self::Admin => "admin",
        }
    }
}

/// One configured token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (for logs).
    pub name: String,
    /// The secret.
    pub token: String,
    /// Its role.
    pub role: Role,
}

/// The configured tokens. With none configured, auth is off (a warning is logged at start).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// All tokens.
    tokens: Vec<TokenConfig>,
}

impl Tokens {
    /// Tokens from config.
    pub fn new(tokens: Vec<TokenConfig>) -> Self {
        Self { tokens }
    }

    /// Whether auth is enforced.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks that `authorization` (the header value) grants `needed`; returns who it is.
    pub fn check(&self, authorization: Option<&str>, needed: Role) -> Result<Caller, QueryError> {
        let caller = self.identify(authorization)?;
        if caller.role < needed {
            return Err(QueryError::Forbidden {
                needed: needed.name(),
                has: caller.role.name(),
            });
        }
        Ok(caller)
    }

    /// Who `authorization` (the header value) names, whatever the route needs.
    pub fn identify(&self, authorization: Option<&str>) -> Result<Caller, QueryError> {
        if !self.enabled() {
            return Ok(Caller::anonymous());
        }
        let presented = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(QueryError::Unauthorized)?;
        // Every token is compared, each through its digest: the time taken tells neither
        // which token nor how much of one matched, nor a token's length.
        let presented = digest(presented.as_bytes());
        let token = self
            .tokens
            .iter()
            .fold(None, |found, t| {
                let same: bool = digest(t.token.as_bytes()).ct_eq(&presented).into();
                found.or(same.then_some(t))
            })
            .ok_or(QueryError::Unauthorized)?;
        Ok(Caller {
            name: token.name.clone(),
            role: token.role,
        })
    }
}

/// A token's SHA-256: fixed length, so comparing two says nothing of their lengths.
fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Who made a request: the token's name and role (a request extension set by [`require`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The token's name; `anonymous` when auth is off.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// The caller when no tokens are configured.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Admin,
        }
    }
}

/// What every guard shares: who has failed to authenticate, and where the audit trail goes.
pub struct Trail {
    /// Failed authentications per address.
    pub lockout: crate::lockout::Lockout,
    /// Publishes the audit entries (none without NATS: nothing is recorded).
    pub publisher: Option<adit_ingest::Publisher>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_checked() {
        let tokens = Tokens::new(vec![
            TokenConfig {
                name: "r".into(),
                token: "rt".into(),
                role: Role::Read,
            },
            TokenConfig {
                name: "a".into(),
                token: "at".into(),
                role: Role::Admin,
            },
        ]);
        assert_eq!(
            tokens.check(Some("Bearer rt"), Role::Read).unwrap().name,
            "r"
        );
        assert!(matches!(
            tokens.check(Some("Bearer rt"), Role::Operate),
            Err(QueryError::Forbidden { .. })
        ));
        assert!(tokens.check(Some("Bearer at"), Role::Operate).is_ok());
        assert!(matches!(
            tokens.check(None, Role::Read),
            Err(QueryError::Unauthorized)
        ));
        assert!(matches!(
            tokens.check(Some("Bearer nope"), Role::Read),
            Err(QueryError::Unauthorized)
        ));
        assert!(Tokens::default().check(None, Role::Admin).is_ok());
    }
}
