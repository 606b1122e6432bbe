//! Timers that call a pipeline's step without input: periodic ticks (alert evaluation every
//! N s) and calendar ticks at a local time in a timezone (the nightly compliance run after a
//! site's midnight). Pure: `next_after(t)` is the first firing strictly after `t`.

use std::time::Duration;

use chrono::{DateTime, Days, LocalResult, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// When a timer fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Timer {
    /// Every `period`, aligned to multiples of it since the Unix epoch.
    Every {
        /// Name passed to the step.
        name: String,
        /// Period (more than zero: validated with the config).
        period: Duration,
    },
    /// Once a day at local time `at` in `tz`.
    Daily {
        /// Name passed to the step.
        name: String,
        /// Local time of day.
        at: NaiveTime,
        /// Timezone.
        tz: Tz,
    },
}

impl Timer {
    /// The timer's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Every { name, .. } | Self::Daily { name, .. } => name,
        }
    }

    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Every { period, .. } => {
                let p = (period.as_micros() as i64).max(1);
                let next = (t.timestamp_micros().div_euclid(p) + 1) * p;
                DateTime::from_timestamp_micros(next).unwrap_or(t)
            }
            Self::Daily { at, tz, .. } => {
                let local_day = t.with_timezone(tz).date_naive();
                (0..=2)
                    .filter_map(|d| local_day.checked_add_days(Days::new(d)))
                    .filter_map(|day| local_instant(tz, day.and_time(*at)))
                    .find(|fire| *fire > t)
                    .unwrap_or(t + chrono::Duration::days(1))
            }
        }
    }
}

/// The instant of a local time; in a spring-forward gap, the first instant after it; in a
/// fall-back overlap, the first of the two.
fn local_instant(tz: &Tz, local: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => {
            let next_hour =
                local.date().and_hms_opt(local.hour(), 0, 0)? + chrono::Duration::hours(1);
            tz.from_local_datetime(&next_hour)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn periodic_ticks_align_to_their_period() {
        let every = Timer::Every {
            name: "eval".into(),
            period: Duration::from_secs(15),
        };
        assert_eq!(
            every.next_after(utc("2026-11-22T10:00:07Z")),
            utc("2026-11-22T10:00:15Z")
        );
        assert_eq!(
            every.next_after(utc("2026-11-22T10:00:15Z")),
            utc("2026-11-22T10:00:30Z")
        );
    }

    #[test]
    fn daily_ticks_follow_the_sites_timezone() {
        let nightly = Timer::Daily {
            name: "compliance".into(),
            at: NaiveTime::from_hms_opt(0, 30, 0).unwrap(),
            tz: "America/Chicago".parse().unwrap(),
        };
        // 00:30 in Chicago (UTC-6 in November) is 06:30 UTC.
        assert_eq!(
            nightly.next_after(utc("2026-11-22T03:00:00Z")),
            utc("2026-11-22T06:30:00Z")
        );
        assert_eq!(
            nightly.next_after(utc("2026-11-22T06:30:00Z")),
            utc("2026-11-23T06:30:00Z")
        );
        // In July it is UTC-5.
        assert_eq!(
            nightly.next_after(utc("2026-07-01T12:00:00Z")),
            utc("2026-07-02T05:30:00Z")
        );
    }

    #[test]
    fn a_time_skipped_by_daylight_saving_fires_just_after_the_gap() {
        // 02:30 does not exist in New York on 2026-03-08; the tick comes at 03:00 EDT.
        let t = Timer::Daily {
            name: "x".into(),
            at: NaiveTime::from_hms_opt(2, 30, 0).unwrap(),
            tz: "America/New_York".parse().unwrap(),
        };
        assert_eq!(
            t.next_after(utc("2026-03-08T05:00:00Z")),
            utc("2026-03-08T07:00:00Z")
        );
    }
}
