//! Why a record is refused: the checks every event passes before it is stored.

use chrono::{DateTime, Duration, Utc};

/// A record that was refused, with the reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Invalid {
    /// What is wrong, naming the field.
    pub reason: String,
}

impl Invalid {
    /// A refusal with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// The limits that validation applies; passed in, so tests and config can change them.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationPolicy {
    /// How far ahead of now an event's timestamp may be (clock skew allowance).
    pub max_future: Duration,
    /// How far behind now an event's timestamp may be (late data allowance).
    pub max_past: Duration,
    /// The largest plausible power for one machine, in watts.
    pub max_power_w: f64,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self {
            max_future: Duration::minutes(5),
            max_past: Duration::days(30),
            max_power_w: 10_000_000.0,
        }
    }
}

impl ValidationPolicy {
    /// Checks that `ts` lies within the allowed window around `now`.
    pub fn check_ts(&self, ts: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Invalid> {
        if ts > now + self.max_future {
            return Err(Invalid::new(format!(
                "ts {ts} is more than {}s in the future",
                self.max_future.num_seconds()
            )));
        }
        if ts < now - self.max_past {
            return Err(Invalid::new(format!(
                "ts {ts} is more than {}s in the past",
                self.max_past.num_seconds()
            )));
        }
        Ok(())
    }
}

/// Checks that `value` of `field` is a finite number within `lo..=hi`.
pub fn check_range(field: &str, value: f64, lo: f64, hi: f64) -> Result<(), Invalid> {
    if !value.is_finite() {
        return Err(Invalid::new(format!("{field} is not a finite number")));
    }
    if value < lo || value > hi {
        return Err(Invalid::new(format!(
            "{field} = {value} is outside {lo}..={hi}"
        )));
    }
    Ok(())
}

/// Checks that `value` of `field` can stand as a subject token.
pub fn check_token(field: &str, value: &str) -> Result<(), Invalid> {
    if crate::names::is_token(value) {
        Ok(())
    } else {
        Err(Invalid::new(format!(
            "{field} {value:?} must be 1-64 characters of A-Z a-z 0-9 _ -"
        )))
    }
}

/// Free text from outside (a miner's job id, a feed's event id): 1 to `max` bytes and no
/// control character, so it can be recorded, logged and named in an id (issue 22).
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > max {
        return Err(Invalid::new(format!(
            "{field} must be 1-{max} bytes, not {}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::new(format!(
            "{field} must not hold control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_bounded_and_printable() {
        assert!(check_text("job_id", "17", 64).is_ok());
        assert!(check_text("job_id", "é", 64).is_ok());
        assert!(check_text("job_id", "", 64).is_err());
        assert!(check_text("job_id", &"x".repeat(65), 64).is_err());
        assert!(check_text("job_id", "a\r\nb", 64).is_err());
        assert!(check_text("job_id", "\u{85}", 64).is_err());
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let p = ValidationPolicy::default();
        let now = Utc::now();
        assert!(p.check_ts(now, now).is_ok());
        assert!(p.check_ts(now + Duration::minutes(6), now).is_err());
        assert!(p.check_ts(now - Duration::days(31), now).is_err());
    }

    #[test]
    fn ranges_refuse_nan_and_out_of_bounds() {
        assert!(check_range("power_w", f64::NAN, 0.0, 1.0).is_err());
        assert!(check_range("power_w", -1.0, 0.0, 1.0).is_err());
        assert!(check_range("power_w", 0.5, 0.0, 1.0).is_ok());
        let e = check_range("power_w", f64::INFINITY, 0.0, 1.0).unwrap_err();
        assert!(e.reason.contains("power_w"));
    }
}
