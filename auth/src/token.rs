//! Static bearer tokens from config. A token may be kept in config as its SHA-256 (`sha256 =
//! "…"`), so whoever reads the config file cannot use it. Every presented token is compared
//! with every configured one through its digest, in constant time: the time taken tells
//! neither which token nor how much of one matched, nor a token's length.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Caller, Invalid, Role, plain_name};

/// The shortest static token accepted: 16 characters.
const MIN_TOKEN_CHARS: usize = 16;

/// One configured token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (logs and the audit table).
    pub name: String,
    /// The secret itself.
    #[serde(default)]
    pub token: Option<String>,
    /// Or its SHA-256 in hex (`adit token new` prints both).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Its role.
    pub role: Role,
    /// For a cluster coordinator's token: the one worker it may see.
    #[serde(default)]
    pub worker: Option<String>,
}

/// A configured token, ready to compare.
pub(crate) struct Static {
    digest: [u8; 32],
    caller: Caller,
}

impl TokenConfig {
    /// A plain token for `name` with `role`.
    pub fn new(name: &str, token: &str, role: Role) -> Self {
        Self {
            name: name.into(),
            token: Some(token.into()),
            sha256: None,
            role,
            worker: None,
        }
    }

    /// Checks every field (naming `key`, e.g. `query.tokens[0]`) and keeps the digest.
    pub(crate) fn compile(&self, key: &str) -> Result<Static, Invalid> {
        if !plain_name(&self.name) {
            return Err(Invalid::new(
                format!("{key}.name"),
                format!(
                    "{:?}: a name is 1 to 64 letters, digits, '-', '_', '.' or '@'",
                    self.name.chars().take(80).collect::<String>()
                ),
            ));
        }
        if let Some(worker) = &self.worker
            && !plain_name(worker)
        {
            return Err(Invalid::new(
                format!("{key}.worker"),
                "a worker id is 1 to 64 letters, digits, '-', '_', '.' or '@'",
            ));
        }
        let digest = match (&self.token, &self.sha256) {
            (Some(token), None) => {
                if token.chars().count() < MIN_TOKEN_CHARS {
                    return Err(Invalid::new(
                        format!("{key}.token"),
                        format!(
                            "({}) must be at least {MIN_TOKEN_CHARS} characters; `adit token new` makes one",
                            self.name
                        ),
                    ));
                }
                digest(token)
            }
            (None, Some(hex_digest)) => parse_digest(hex_digest).ok_or_else(|| {
                Invalid::new(
                    format!("{key}.sha256"),
                    "must be a SHA-256 in 64 hex digits (`adit token new` prints it)",
                )
            })?,
            _ => {
                return Err(Invalid::new(
                    key,
                    "set exactly one of token (the secret) or sha256 (its digest)",
                ));
            }
        };
        Ok(Static {
            digest,
            caller: Caller {
                name: self.name.clone(),
                role: self.role,
                worker: self.worker.clone(),
            },
        })
    }
}

/// The caller whose token is `presented`, comparing it with every configured one.
pub(crate) fn find(statics: &[Static], presented: &str) -> Option<Caller> {
    let presented = digest(presented);
    statics
        .iter()
        .fold(None, |found, s| {
            let same: bool = s.digest.ct_eq(&presented).into();
            found.or(same.then_some(s))
        })
        .map(|s| s.caller.clone())
}

/// A token's SHA-256.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A token's SHA-256 in lowercase hex, as `sha256 = "…"` keeps it.
pub fn digest_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// 64 hex digits (either case) as a digest.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}
