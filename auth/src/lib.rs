//! Who is calling adit's APIs (the SQL API, its PostgreSQL and Flight SQL ports, the cluster
//! coordinator's REST), and the [`lockout`] of addresses that fail to say. A bearer token names
//! a caller and the role it holds: a static token from config (kept there plainly or as its
//! SHA-256) or a JWT signed by the configured key, with its role and expiry in its claims. One
//! set of rules for every API, so a token means the same wherever it is shown:
//! [`Tokens::identify`] is the one decision of who a credential names, and a cluster worker's
//! token (a static one with `worker`, or a JWT with a `worker` claim) names a caller only where
//! the tokens were given a worker scope (the coordinator's REST, [`Tokens::with_worker_scope`]).

mod jwt;
pub mod lockout;
mod role;
mod token;

pub use jwt::JwtConfig;
pub use role::Role;
pub use token::{TokenConfig, digest_hex};

/// Why a request is not let in. Every variant is a 401: the caller is told what to fix, never
/// which token came close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("a bearer token is required (Authorization: Bearer <token>)")]
    Missing,
    /// A token that is neither a configured one nor a JWT this server accepts.
    #[error("the bearer token is not valid here")]
    Unknown,
    /// A JWT past its `exp`.
    #[error("the bearer token has expired")]
    Expired,
    /// A JWT that is refused for another reason (signature, issuer, audience, claims).
    #[error("the bearer token is refused: {0}")]
    Refused(&'static str),
    /// A cluster worker's token shown to an API without a worker scope (issue 56): it is for
    /// the coordinator's REST only, like a JWT for another audience.
    #[error("a cluster worker's token is for the coordinator's REST API only")]
    WorkerToken,
}

/// A setting that cannot be used, named by its key: the one config error every section gives.
pub use adit_config::Invalid;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, or a JWT's `sub`; `anonymous` when auth is off.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The one cluster worker this caller may see, when the token is a worker's.
    pub worker: Option<String>,
}

impl Caller {
    /// The caller when no tokens are configured (only reachable from this machine).
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Admin,
            worker: None,
        }
    }
}

/// The tokens one API accepts. With neither static tokens nor a JWT key, auth is off.
#[derive(Default)]
pub struct Tokens {
    /// The configured static tokens.
    statics: Vec<token::Static>,
    /// The JWT verifier, when a key is configured.
    jwt: Option<jwt::Verifier>,
    /// Whether a worker's token names a caller here: only the coordinator's REST, where it
    /// sees its one worker, has a worker scope; every other API refuses one.
    worker_scope: bool,
}

impl Tokens {
    /// The tokens of `tokens` and `jwt` (whose key file is read now); `section` prefixes the
    /// keys an error names (e.g. `query`).
    pub fn new(
        section: &str,
        tokens: &[TokenConfig],
        jwt: Option<&JwtConfig>,
    ) -> Result<Self, Invalid> {
        let statics = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| t.compile(&format!("{section}.tokens[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let jwt = jwt
            .map(|j| j.verifier(&format!("{section}.jwt")))
            .transpose()?;
        Ok(Self {
            statics,
            jwt,
            worker_scope: false,
        })
    }

    /// These tokens for an API with a worker scope (the coordinator's REST): a worker's token
    /// names a caller that may see its one worker, which the API must then hold it to.
    pub fn with_worker_scope(self) -> Self {
        Self {
            worker_scope: true,
            ..self
        }
    }

    /// Whether any token is required.
    pub fn enabled(&self) -> bool {
        !self.statics.is_empty() || self.jwt.is_some()
    }

    /// Who `authorization` (an `Authorization` header's value) names. With auth off, everyone
    /// is [`Caller::anonymous`]. Every port of an API decides through this one function, so a
    /// worker's token is refused alike on each where the API has no worker scope (issue 56).
    pub fn identify(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let caller = self.named(authorization)?;
        if caller.worker.is_some() && !self.worker_scope {
            return Err(AuthError::WorkerToken);
        }
        Ok(caller)
    }

    /// Who `authorization` names, whatever its scope.
    fn named(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        if !self.enabled() {
            return Ok(Caller::anonymous());
        }
        let presented = authorization
            .and_then(bearer)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        if let Some(caller) = token::find(&self.statics, presented) {
            return Ok(caller);
        }
        match &self.jwt {
            Some(verifier) if jwt::looks_like_jwt(presented) => verifier.verify(presented),
            _ => Err(AuthError::Unknown),
        }
    }
}

/// The token of a `Bearer` credential (the scheme's case does not matter, RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `name` can name a caller or a worker in logs, the audit table and routes: 1 to 64
/// letters, digits, `-`, `_`, `.` or `@`.
pub(crate) fn plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, role: Role) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            token: Some(secret.into()),
            sha256: None,
            role,
            worker: None,
        }
    }

    #[test]
    fn roles_are_ordered_and_names_found() {
        let tokens = Tokens::new(
            "query",
            &[
                token("r", "read-token-0123456789", Role::Read),
                token("a", "admin-token-0123456789", Role::Admin),
            ],
            None,
        )
        .unwrap();
        let r = tokens
            .identify(Some("Bearer read-token-0123456789"))
            .unwrap();
        assert_eq!((r.name.as_str(), r.role), ("r", Role::Read));
        let a = tokens
            .identify(Some("bearer admin-token-0123456789"))
            .unwrap();
        assert_eq!(a.role, Role::Admin);
        assert!(Role::Read < Role::Operate && Role::Operate < Role::Admin);
        assert_eq!(tokens.identify(None), Err(AuthError::Missing));
        assert_eq!(tokens.identify(Some("Bearer ")), Err(AuthError::Missing));
        assert_eq!(
            tokens.identify(Some("Basic read-token-0123456789")),
            Err(AuthError::Missing)
        );
        assert_eq!(
            tokens.identify(Some("Bearer read-token-012345678")),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            Tokens::default().identify(None).unwrap(),
            Caller::anonymous()
        );
    }

    #[test]
    fn a_token_kept_as_its_digest_lets_its_holder_in() {
        let secret = "the-holders-secret-token";
        let kept = TokenConfig {
            name: "ops".into(),
            token: None,
            sha256: Some(digest_hex(secret).to_uppercase()),
            role: Role::Operate,
            worker: None,
        };
        let tokens = Tokens::new("query", std::slice::from_ref(&kept), None).unwrap();
        let caller = tokens.identify(Some(&format!("Bearer {secret}"))).unwrap();
        assert_eq!((caller.name.as_str(), caller.role), ("ops", Role::Operate));
        // The digest itself is not a token.
        let digest = kept.sha256.clone().unwrap();
        assert_eq!(
            tokens.identify(Some(&format!("Bearer {digest}"))),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let cases = [
            (token("ops", "short", Role::Read), "at least 16"),
            (
                TokenConfig {
                    sha256: Some("abc".into()),
                    ..token("ops", "long-enough-token-here", Role::Read)
                },
                "one of",
            ),
            (
                TokenConfig {
                    token: None,
                    sha256: Some("zz".repeat(32)),
                    ..token("ops", "", Role::Read)
                },
                "64 hex",
            ),
            (
                TokenConfig {
                    token: None,
                    ..token("ops", "", Role::Read)
                },
                "one of",
            ),
            (token("a b\n", "long-enough-token-here", Role::Read), "name"),
            (
                TokenConfig {
                    worker: Some("../x".into()),
                    ..token("w", "long-enough-token-here", Role::Read)
                },
                "worker",
            ),
        ];
        for (config, needle) in cases {
            let e = Tokens::new("query", std::slice::from_ref(&config), None)
                .err()
                .unwrap_or_else(|| panic!("{config:?} was accepted"));
            assert!(e.key.starts_with("query.tokens[0]"), "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
        }
    }
}
