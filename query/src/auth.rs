//! Bearer tokens with roles: read < operate < admin.

use axum::extract::{Request, State};
use axum::http::header;
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
        if token.role < needed {
            return Err(QueryError::Forbidden {
                needed: needed.name(),
                has: token.role.name(),
            });
        }
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

/// Middleware state: the tokens and the role a group of routes needs.
#[derive(Clone)]
pub struct Guard {
    /// Configured tokens.
    pub tokens: std::sync::Arc<Tokens>,
    /// Role required.
    pub needed: Role,
}

/// Refuses requests whose bearer token does not grant the guard's role.
pub async fn require(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match guard.tokens.check(header, guard.needed) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
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
