//! What the tests of every port's authentication share (issue 56): tokens as the API makes
//! them, verifying HS256 JWTs signed with one test secret and with no worker scope (or just
//! the JWT settings, for a port that takes its own static tokens besides), and JWTs signed for
//! them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adit_auth::{JwtConfig, Tokens};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// The secret the tests' JWTs are signed with.
const SECRET: &str = "the-ports-test-secret-of-32-bytes-or-more";

/// JWT settings that verify HS256 tokens signed with [`SECRET`]: no issuer, audience or
/// leeway.
pub fn config() -> JwtConfig {
    JwtConfig {
        algorithm: Algorithm::HS256,
        secret: Some(SECRET.into()),
        public_key: None,
        issuer: None,
        audience: None,
        leeway: Duration::ZERO,
    }
}

/// The API's tokens: JWTs signed with [`SECRET`], and no worker scope.
pub fn tokens() -> Tokens {
    Tokens::new("query", &[], Some(&config())).expect("the tests' JWT settings")
}

/// `claims` as an HS256 JWT signed with [`SECRET`].
pub fn sign(claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("a signed JWT")
}

/// A JWT naming `sub` with the admin role for ten minutes, with a cluster `worker` claim when
/// `worker` is given.
pub fn signed(sub: &str, worker: Option<&str>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock");
    let exp = now.as_secs() + 600;
    let mut claims = serde_json::json!({"sub": sub, "role": "admin", "exp": exp});
    if let Some(worker) = worker {
        claims["worker"] = worker.into();
    }
    sign(&claims)
}
