//! The trait every record type on the bus implements: its subject, dedupe id, time, checks
//! and columns. It names no kind and no other record, so each record module depends only on
//! this; the kind table in `events.rs` adds each type's kind on top.

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::validate::{Invalid, ValidationPolicy};

/// What every event type provides so that ingest and pipelines can treat them alike.
pub trait Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The subject it is published on.
    fn subject(&self) -> String;
    /// Whether `subject` is [`Event::subject`] (kinds read at volume answer without building
    /// it).
    fn is_on(&self, subject: &str) -> bool {
        self.subject() == subject
    }
    /// Its natural key, used as `Nats-Msg-Id` so a retried publish is stored once.
    fn dedupe_id(&self) -> String;
    /// When it happened.
    fn ts(&self) -> DateTime<Utc>;
    /// Checks its values, returning why it is refused.
    fn validate(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid>;
    /// Its own columns (without `seq` and `date`).
    fn fields() -> Vec<Field>;
}
