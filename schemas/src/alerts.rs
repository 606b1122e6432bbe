//! An alert's change of state (`results.alert.<severity>`, landed in `alerts`): a rule's series
//! went `pending`, `firing` or `resolved`, with its labels, annotations and value.

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::{f64_opt, ts_field, utf8};
use crate::record::Event;
use crate::validate::{Invalid, ValidationPolicy, check_token};

/// The severities an alert may have (its `severity` label), least to most severe: `error`
/// sits between a warning and a page-someone-now critical (the pool-monitoring system's four).
pub const SEVERITIES: [&str; 4] = ["info", "warning", "error", "critical"];

/// One transition of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertEvent {
    /// The alert: `<group>/<rule>/<fingerprint of its labels>`.
    pub id: String,
    /// The rule group.
    pub group: String,
    /// The rule (`alert:` name).
    pub rule: String,
    /// `pending`, `firing`, `resolved`, or `acknowledged` (an operator's, over the API).
    pub state: String,
    /// `info`, `warning`, `error` or `critical`.
    pub severity: String,
    /// Its labels (the rule's and the row's columns), a JSON object with sorted keys.
    pub labels: String,
    /// The rule's annotations, a JSON object.
    pub annotations: String,
    /// The row's `value` column, when it has one.
    #[serde(default)]
    pub value: Option<f64>,
    /// Since when its condition has held.
    pub active_at: DateTime<Utc>,
    /// When this transition was seen.
    pub ts: DateTime<Utc>,
    /// The token name of the operator who acknowledged or resolved it (none: the rules did).
    #[serde(default)]
    pub by: Option<String>,
    /// The operator's note.
    #[serde(default)]
    pub note: Option<String>,
}

impl Event for AlertEvent {
    fn dedupe_id(&self) -> String {
        match &self.by {
            // An operator's act is its own event, at its own time.
            Some(by) => format!(
                "alert:{}:{}:{by}:{}",
                self.id,
                self.state,
                self.ts.timestamp_micros()
            ),
            None => format!(
                "alert:{}:{}:{}",
                self.id,
                self.state,
                self.active_at.timestamp_micros()
            ),
        }
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        if self.id.is_empty() {
            return Err(Invalid::new("an alert needs its id"));
        }
        check_token("rule", &self.rule)?;
        if !matches!(
            self.state.as_str(),
            "pending" | "firing" | "resolved" | "acknowledged"
        ) {
            return Err(Invalid::new(format!(
                "state {:?} must be pending, firing, resolved or acknowledged",
                self.state
            )));
        }
        if !SEVERITIES.contains(&self.severity.as_str()) {
            return Err(Invalid::new(format!(
                "severity {:?} must be info, warning, error or critical",
                self.severity
            )));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("id"),
            utf8("group"),
            utf8("rule"),
            utf8("state"),
            utf8("severity"),
            utf8("labels"),
            utf8("annotations"),
            f64_opt("value"),
            ts_field("active_at"),
            ts_field("ts"),
            crate::arrow_rows::utf8_opt("by"),
            crate::arrow_rows::utf8_opt("note"),
        ]
    }
}

/// One attempt to notify a receiver (`results.notification.<receiver>`, landed in
/// `notifications`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationAttempt {
    /// `<receiver>:<notification µs>:<attempt>`: unique to this attempt.
    pub id: String,
    /// The receiver.
    pub receiver: String,
    /// `webhook`, `telegram`, `email`, `sms`.
    pub channel: String,
    /// The group notified (`<receiver>:<group labels>`), or `heartbeat`.
    pub group: String,
    /// `sent`, `failed` or `silenced`.
    pub status: String,
    /// Which attempt (from 1; 0 for a silenced one).
    pub attempt: i64,
    /// The one-line text.
    pub summary: String,
    /// Alerts in it.
    pub alerts: i64,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// When.
    pub ts: DateTime<Utc>,
}

impl Event for NotificationAttempt {
    fn dedupe_id(&self) -> String {
        format!("notification:{}", self.id)
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        if !matches!(self.status.as_str(), "sent" | "failed" | "silenced") {
            return Err(Invalid::new("status must be sent, failed or silenced"));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("id"),
            utf8("receiver"),
            utf8("channel"),
            utf8("group"),
            utf8("status"),
            crate::arrow_rows::i64_field("attempt"),
            utf8("summary"),
            crate::arrow_rows::i64_field("alerts"),
            crate::arrow_rows::utf8_opt("error"),
            ts_field("ts"),
        ]
    }
}
