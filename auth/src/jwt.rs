//! JWT bearer tokens, for sites that issue their own (an identity provider, or `adit token
//! jwt`): signed with one configured key (HS256/384/512 with a shared secret; RS*, PS*, ES256,
//! ES384 or EdDSA with a public key file), carrying `sub` (who), `role` and `exp`, and
//! optionally `worker` for a cluster coordinator. The algorithm is the configured one, never
//! the token's choice, and a token without an expiry is refused.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::{AuthError, Caller, Invalid, Role, plain_name};

/// The shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash's size).
const MIN_SECRET_BYTES: usize = 32;

/// The most clock skew a leeway may forgive.
const MAX_LEEWAY: Duration = Duration::from_secs(600);

/// `[query.jwt]` / `[cluster.rest.jwt]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The one algorithm accepted: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384,
    /// PS512, ES256, ES384 or EdDSA.
    pub algorithm: Algorithm,
    /// The shared secret, for HS* (at least 32 bytes).
    #[serde(default)]
    pub secret: Option<String>,
    /// The PEM public key that verifies signatures, for every other algorithm.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// When set, a token's `iss` must be this.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, a token's `aud` must include this.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew forgiven on `exp` and `nbf` (at most 10 minutes).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

/// What a token must claim.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    #[serde(default)]
    worker: Option<String>,
}

/// Checks tokens against the configured key.
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtConfig {
    /// The verifier these settings make, reading the key file now; errors name `key`.
    pub(crate) fn verifier(&self, key: &str) -> Result<Verifier, Invalid> {
        if self.leeway > MAX_LEEWAY {
            return Err(Invalid::new(
                format!("{key}.leeway"),
                "must be at most 10m; fix the clocks instead",
            ));
        }
        let decoding = self.decoding_key(key)?;
        let mut validation = Validation::new(self.algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Verifier {
            key: decoding,
            validation,
        })
    }

    /// The key for the configured algorithm, and only the kind that algorithm uses.
    fn decoding_key(&self, key: &str) -> Result<DecodingKey, Invalid> {
        let hmac = matches!(
            self.algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        match (hmac, &self.secret, &self.public_key) {
            (true, Some(secret), None) => {
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(Invalid::new(
                        format!("{key}.secret"),
                        format!("must be at least {MIN_SECRET_BYTES} bytes"),
                    ));
                }
                Ok(DecodingKey::from_secret(secret.as_bytes()))
            }
            (false, None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Invalid::new(
                        format!("{key}.public_key"),
                        format!("reading {}: {e}", path.display()),
                    )
                })?;
                let parsed = match self.algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                };
                parsed.map_err(|e| {
                    Invalid::new(
                        format!("{key}.public_key"),
                        format!(
                            "{} is not a PEM public key for {:?}: {e}",
                            path.display(),
                            self.algorithm
                        ),
                    )
                })
            }
            (true, _, _) => Err(Invalid::new(
                key,
                format!("{:?} needs `secret` (and no public_key)", self.algorithm),
            )),
            (false, _, _) => Err(Invalid::new(
                key,
                format!(
                    "{:?} needs `public_key`, a PEM file (and no secret)",
                    self.algorithm
                ),
            )),
        }
    }
}

/// Whether `token` has a JWT's shape (three dot-separated parts).
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

impl Verifier {
    /// The caller `token` names, if its signature, expiry, issuer and audience hold.
    pub(crate) fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| refusal(e.kind()))?;
        let claims = data.claims;
        if !plain_name(&claims.sub) {
            return Err(AuthError::Refused(
                "sub must be 1 to 64 letters, digits, '-', '_', '.' or '@'",
            ));
        }
        if claims.worker.as_deref().is_some_and(|w| !plain_name(w)) {
            return Err(AuthError::Refused("worker is not a worker id"));
        }
        Ok(Caller {
            name: claims.sub,
            role: claims.role,
            worker: claims.worker,
        })
    }
}

/// What the caller is told about a refused JWT: enough to fix their issuer, nothing of ours.
fn refusal(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::Refused("not valid yet (nbf)"),
        ErrorKind::InvalidIssuer => AuthError::Refused("wrong issuer"),
        ErrorKind::InvalidAudience => AuthError::Refused("wrong audience"),
        ErrorKind::InvalidAlgorithm => AuthError::Refused("wrong algorithm"),
        ErrorKind::MissingRequiredClaim(_) => AuthError::Refused("exp and sub are required"),
        ErrorKind::Json(_) => {
            AuthError::Refused("claims need sub, role (read, operate or admin) and exp")
        }
        _ => AuthError::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tokens;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn hs256() -> JwtConfig {
        JwtConfig {
            algorithm: Algorithm::HS256,
            secret: Some(SECRET.into()),
            public_key: None,
            issuer: Some("farm-idp".into()),
            audience: Some("adit".into()),
            leeway: Duration::ZERO,
        }
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
        encode(&Header::new(alg), &claims, key).unwrap()
    }

    fn good(extra: serde_json::Value) -> serde_json::Value {
        let mut claims = json!({"sub": "alice", "role": "operate", "exp": now() + 600,
            "iss": "farm-idp", "aud": "adit"});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn an_hs256_token_names_its_subject_and_role_until_it_expires() {
        let tokens = Tokens::new("query", &[], Some(&hs256())).unwrap();
        assert!(tokens.enabled());
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let token = sign(Algorithm::HS256, &key, good(json!({})));
        let caller = tokens.identify(Some(&bearer(&token))).unwrap();
        assert_eq!(caller.name, "alice");
        assert_eq!(caller.role, Role::Operate);
        assert_eq!(caller.worker, None);

        let cases = [
            (good(json!({"exp": now() - 5})), AuthError::Expired),
            (
                good(json!({"nbf": now() + 600})),
                AuthError::Refused("not valid yet (nbf)"),
            ),
            (
                good(json!({"iss": "elsewhere"})),
                AuthError::Refused("wrong issuer"),
            ),
            (
                good(json!({"aud": "grafana"})),
                AuthError::Refused("wrong audience"),
            ),
            (
                good(json!({"role": "root"})),
                AuthError::Refused("claims need sub, role (read, operate or admin) and exp"),
            ),
            (
                good(json!({"sub": "x\ny"})),
                AuthError::Refused("sub must be 1 to 64 letters, digits, '-', '_', '.' or '@'"),
            ),
        ];
        for (claims, expected) in cases {
            let token = sign(Algorithm::HS256, &key, claims.clone());
            assert_eq!(
                tokens.identify(Some(&bearer(&token))),
                Err(expected),
                "{claims}"
            );
        }
        // No expiry at all.
        let mut forever = good(json!({}));
        forever.as_object_mut().unwrap().remove("exp");
        let token = sign(Algorithm::HS256, &key, forever);
        assert_eq!(
            tokens.identify(Some(&bearer(&token))),
            Err(AuthError::Refused("exp and sub are required"))
        );
        // Another secret.
        let other = EncodingKey::from_secret(b"another-secret-another-secret-another");
        let token = sign(Algorithm::HS256, &other, good(json!({})));
        assert_eq!(
            tokens.identify(Some(&bearer(&token))),
            Err(AuthError::Unknown)
        );
        // A tampered payload keeps the old signature.
        let token = sign(Algorithm::HS256, &key, good(json!({"role": "read"})));
        let parts: Vec<&str> = token.split('.').collect();
        let admin = sign(Algorithm::HS256, &other, good(json!({"role": "admin"})));
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            admin.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(
            tokens.identify(Some(&bearer(&forged))),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn the_token_cannot_choose_its_algorithm() {
        // alg "none", and HS256 signed with the public key's bytes (the classic confusion),
        // against a server that verifies EdDSA.
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let dir = std::env::temp_dir().join(format!("adit-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let public = dir.join("ed.pub.pem");
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        let config = JwtConfig {
            algorithm: Algorithm::EdDSA,
            secret: None,
            public_key: Some(public),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        };
        let tokens = Tokens::new("cluster.rest", &[], Some(&config))
            .unwrap()
            .with_worker_scope();
        let private = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
        let claims = json!({"sub": "rig-7", "role": "read", "worker": "rig-7", "exp": now() + 60});
        let token = sign(Algorithm::EdDSA, &private, claims.clone());
        let caller = tokens.identify(Some(&bearer(&token))).unwrap();
        assert_eq!(caller.worker.as_deref(), Some("rig-7"));

        let confused = EncodingKey::from_secret(pair.public_key_pem().as_bytes());
        let token = sign(Algorithm::HS256, &confused, claims.clone());
        assert_eq!(
            tokens.identify(Some(&bearer(&token))),
            Err(AuthError::Refused("wrong algorithm"))
        );
        let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
        let body = base64url(claims.to_string().as_bytes());
        let unsigned = format!("{header}.{body}.");
        assert!(tokens.identify(Some(&bearer(&unsigned))).is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    /// Issue 56: a JWT with a `worker` claim (and a static worker token) is a caller only
    /// where the API has a worker scope; the API's HTTP, PostgreSQL and Flight SQL ports all
    /// decide through `identify`, so each refuses it.
    #[test]
    fn a_worker_token_is_refused_by_an_api_without_a_worker_scope() {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let jwt = bearer(&sign(
            Algorithm::HS256,
            &key,
            good(json!({"role": "admin", "worker": "rig-7"})),
        ));
        let static_worker = crate::TokenConfig {
            worker: Some("rig-7".into()),
            ..crate::TokenConfig::new("rig", "a-worker-token-0123456789", Role::Admin)
        };
        let statics = std::slice::from_ref(&static_worker);
        let api = Tokens::new("query", statics, Some(&hs256())).unwrap();
        assert_eq!(api.identify(Some(&jwt)), Err(AuthError::WorkerToken));
        let presented = "Bearer a-worker-token-0123456789";
        assert_eq!(api.identify(Some(presented)), Err(AuthError::WorkerToken));
        // The same token without the claim is let in: the claim is what is refused.
        let plain = bearer(&sign(Algorithm::HS256, &key, good(json!({}))));
        assert_eq!(api.identify(Some(&plain)).unwrap().name, "alice");

        let coordinator = Tokens::new("cluster.rest", statics, Some(&hs256()))
            .unwrap()
            .with_worker_scope();
        let caller = coordinator.identify(Some(&jwt)).unwrap();
        assert_eq!(caller.worker.as_deref(), Some("rig-7"));
        let caller = coordinator.identify(Some(presented)).unwrap();
        assert_eq!(caller.worker.as_deref(), Some("rig-7"));
    }

    #[test]
    fn keys_that_do_not_fit_the_algorithm_are_named() {
        let short = JwtConfig {
            secret: Some("short".into()),
            ..hs256()
        };
        let e = Tokens::new("query", &[], Some(&short)).err().unwrap();
        assert_eq!(e.key, "query.jwt.secret");
        let rsa_without_key = JwtConfig {
            algorithm: Algorithm::RS256,
            ..hs256()
        };
        let e = Tokens::new("query", &[], Some(&rsa_without_key))
            .err()
            .unwrap();
        assert!(e.reason.contains("public_key"), "{e}");
        let missing = JwtConfig {
            algorithm: Algorithm::ES256,
            secret: None,
            public_key: Some("/nonexistent/key.pem".into()),
            ..hs256()
        };
        let e = Tokens::new("query", &[], Some(&missing)).err().unwrap();
        assert_eq!(e.key, "query.jwt.public_key");
        let lenient = JwtConfig {
            leeway: Duration::from_secs(3600),
            ..hs256()
        };
        let e = Tokens::new("query", &[], Some(&lenient)).err().unwrap();
        assert_eq!(e.key, "query.jwt.leeway");
    }

    /// Base64url without padding, for hand-made tokens.
    fn base64url(bytes: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
