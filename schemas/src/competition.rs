//! A time-boxed competition between a pool's teams (issue 61): a name and a window, set by an
//! operator over the API (`POST /api/v1/pools/{pool}/competitions`) with the token that set it,
//! published on `control.competition.<pool>` and landed in the `competitions` table by its own
//! landing. Its standings are the teams' accepted work inside the window — SQL over `shares`,
//! whose `team` each miner's session names at login — shown on the public pool page.

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::{ts_field, utf8};
use crate::record::Event;
use crate::validate::{Invalid, ValidationPolicy, check_text, check_token};

/// The second token of the competitions' subject (`control.competition.<pool>`): no site may
/// be named so.
pub const COMPETITION_TOKEN: &str = "competition";

/// The longest a competition may run, days.
pub const MAX_COMPETITION_DAYS: i64 = 366;

/// Most bytes of a competition's name.
pub const NAME_BYTES: usize = 120;

/// One competition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Competition {
    /// Its id, unique within the pool (a token: it is in the page's links).
    pub id: String,
    /// The pool whose teams compete.
    pub pool: String,
    /// Its name, as the page shows it.
    pub name: String,
    /// When the shares start to count.
    pub starts: DateTime<Utc>,
    /// When they stop (exclusive).
    pub ends: DateTime<Utc>,
    /// The name of the token that set it.
    pub by: String,
    /// When it was set.
    pub ts: DateTime<Utc>,
}

impl Event for Competition {
    fn dedupe_id(&self) -> String {
        format!("competition:{}:{}", self.pool, self.id)
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_token("id", &self.id)?;
        check_token("pool", &self.pool)?;
        check_text("name", &self.name, NAME_BYTES)?;
        if self.name.trim().is_empty() {
            return Err(Invalid::new("name must not be blank"));
        }
        check_text("by", &self.by, 256)?;
        if self.ends <= self.starts {
            return Err(Invalid::new("ends must be after starts"));
        }
        if self.ends - self.starts > chrono::Duration::days(MAX_COMPETITION_DAYS) {
            return Err(Invalid::new(format!(
                "ends: a competition runs at most {MAX_COMPETITION_DAYS} days"
            )));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("id"),
            utf8("pool"),
            utf8("name"),
            ts_field("starts"),
            ts_field("ends"),
            utf8("by"),
            ts_field("ts"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn competition() -> Competition {
        let ts = Utc::now();
        Competition {
            id: "winter-cup".into(),
            pool: "main".into(),
            name: "Winter cup ❄".into(),
            starts: ts,
            ends: ts + chrono::Duration::days(7),
            by: "operator".into(),
            ts,
        }
    }

    #[test]
    fn a_sound_competition_checks_and_each_bad_field_is_refused() {
        let policy = ValidationPolicy::default();
        let now = Utc::now();
        competition().check_values(&policy, now).unwrap();
        type Spoil = fn(&mut Competition);
        let bad: [(&str, Spoil); 6] = [
            ("id", |c| c.id = "winter cup".into()),
            ("pool", |c| c.pool = "main.x".into()),
            ("name", |c| c.name = "  ".into()),
            ("name", |c| c.name = "x".repeat(NAME_BYTES + 1)),
            ("ends", |c| c.ends = c.starts),
            ("ends", |c| c.ends = c.starts + chrono::Duration::days(400)),
        ];
        for (field, spoil) in bad {
            let mut c = competition();
            spoil(&mut c);
            let e = c.check_values(&policy, now).unwrap_err();
            assert!(e.reason.contains(field), "{field}: {}", e.reason);
        }
    }
}
