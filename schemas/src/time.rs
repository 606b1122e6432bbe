//! The one way adit turns time into the microseconds its tables, dedupe ids and pure state
//! machines count in, and back.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// `t` as microseconds since the Unix epoch.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The instant `us` microseconds after the Unix epoch; one chrono cannot hold (past year
/// 262 143) reads as the epoch itself, so a corrupt value can never panic.
pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// `d` in microseconds, saturating at `i64::MAX` (about 292 000 years).
pub fn span_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_and_extremes_never_panic() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T18:30:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(from_micros(micros(t)), t);
        assert_eq!(from_micros(i64::MAX), DateTime::<Utc>::default());
        assert_eq!(span_micros(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(span_micros(Duration::MAX), i64::MAX);
    }
}
