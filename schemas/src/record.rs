//! The traits every record type on the bus implements: its subject (from the kind table),
//! dedupe id, time, checks and columns. It names no kind and no other record, so each record module depends only on
//! this; the kind table in `events.rs` adds each type's kind on top.

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::validate::{Invalid, ValidationPolicy};

/// Where a record is published: implemented for each row of the kind table (`events.rs`) from
/// the row's `subject … by …` tokens, never by hand, so a subject is spelled once.
pub trait Routed {
    /// The subject, built from the row's prefix and the record's tokens.
    fn route(&self) -> String;
    /// Whether `subject` is [`Routed::route`], without building it (kinds read at volume).
    fn route_is(&self, subject: &str) -> bool;
    /// Checks that each subject token the record supplies is one token (`names::is_token`),
    /// naming its field.
    fn check_route(&self) -> Result<(), Invalid>;
}

/// What every event type provides so that ingest and pipelines can treat them alike.
pub trait Event: Routed + Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The subject it is published on (from its row of the kind table).
    fn subject(&self) -> String {
        self.route()
    }
    /// Whether `subject` is [`Event::subject`].
    fn is_on(&self, subject: &str) -> bool {
        self.route_is(subject)
    }
    /// Its natural key, used as `Nats-Msg-Id` so a retried publish is stored once.
    fn dedupe_id(&self) -> String;
    /// When it happened.
    fn ts(&self) -> DateTime<Utc>;
    /// Checks its values beyond its subject's tokens, returning why it is refused.
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid>;
    /// Checks the whole record: its subject's tokens, then [`Event::check_values`].
    fn validate(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        self.check_route()?;
        self.check_values(policy, now)
    }
    /// Its own columns (without `seq` and `date`).
    fn fields() -> Vec<Field>;
}
