//! The audit trail (issue 23): every action taken through the API with the operate or admin
//! role (a change of the registry, an override, a silence, a note, a rule, an ingest), and
//! every refusal of one for want of a role, as one event: who (the token's name), with which
//! role, what (method and path), how it ended (the status), from where (the client's address, `client`)
//! and when. Published on `control.audit.<role>` and landed in the `audit` table by the
//! `audit` landing pipeline.

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::{i64_field, ts_field, utf8};
use crate::record::Event;
use crate::validate::{Invalid, ValidationPolicy, check_text};

/// The second token of the audit subject (`control.audit.<role>`): no site may be named so.
pub const AUDIT_TOKEN: &str = "audit";

/// One action through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Unique to this action: `<µs since the epoch>-<64 random bits, hex>`.
    pub id: String,
    /// The token's name (`anonymous` when the API has no tokens).
    pub who: String,
    /// The token's role: `read`, `operate` or `admin`.
    pub role: String,
    /// The HTTP method.
    pub method: String,
    /// The path asked for, without its query string.
    pub path: String,
    /// The HTTP status answered.
    pub status: i64,
    /// The client's address, as the server saw it.
    pub client: String,
    /// When the answer was given.
    pub ts: DateTime<Utc>,
}

impl Event for AuditEntry {
    fn dedupe_id(&self) -> String {
        format!("audit:{}", self.id)
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_text("id", &self.id, 64)?;
        check_text("who", &self.who, 256)?;
        if self.method.is_empty()
            || self.method.len() > 16
            || !self.method.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(Invalid::new("method must be 1-16 uppercase letters"));
        }
        check_text("path", &self.path, 2048)?;
        check_text("client", &self.client, 64)?;
        if !(100..=599).contains(&self.status) {
            return Err(Invalid::new("status must be an HTTP status, 100-599"));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("id"),
            utf8("who"),
            utf8("role"),
            utf8("method"),
            utf8("path"),
            i64_field("status"),
            utf8("client"),
            ts_field("ts"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            id: "1-ab".into(),
            who: "ops".into(),
            role: "operate".into(),
            method: "PUT".into(),
            path: "/api/v1/registry/sites/s1".into(),
            status: 200,
            client: "10.0.0.5".into(),
            ts: Utc::now(),
        }
    }

    #[test]
    fn an_entry_is_checked_field_by_field() {
        let policy = ValidationPolicy::default();
        let now = Utc::now();
        assert!(entry().validate(&policy, now).is_ok());
        assert_eq!(entry().subject(), "control.audit.operate");
        let bad = [
            AuditEntry {
                who: String::new(),
                ..entry()
            },
            AuditEntry {
                role: "op erate".into(),
                ..entry()
            },
            AuditEntry {
                method: "put".into(),
                ..entry()
            },
            AuditEntry {
                path: "/a\nb".into(),
                ..entry()
            },
            AuditEntry {
                path: "x".repeat(3000),
                ..entry()
            },
            AuditEntry {
                status: 42,
                ..entry()
            },
            AuditEntry {
                client: String::new(),
                ..entry()
            },
        ];
        for e in bad {
            assert!(e.validate(&policy, now).is_err(), "{e:?}");
        }
    }
}
