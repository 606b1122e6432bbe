//! The one way adit turns time into the microseconds its tables, dedupe ids and pure state
//! machines count in, and back.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

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

/// Reads an event's time as chrono's serde would (`#[serde(deserialize_with = …)]`), with a
/// fast path for the form adit and nearly every producer write
/// (`2026-11-25T18:30:00.123456Z`, or an offset `±HH:MM`): chrono's own parser, which also
/// takes every looser spelling of RFC 3339, was a thirtieth of the landing's CPU in
/// `adit bench ingest`. Anything else goes to chrono, so what is accepted and what it means
/// are chrono's.
pub fn deserialize_rfc3339<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<DateTime<Utc>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 date and time")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            match parse_canonical(text.as_bytes()) {
                Some(t) => Ok(t),
                None => text.parse::<DateTime<Utc>>().map_err(E::custom),
            }
        }
    }
    deserializer.deserialize_str(Visitor)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction of 1 to 9 digits](Z|±HH:MM)`, or `None` for anything
/// else (a looser spelling, a leap second, an invalid date), which chrono then reads.
fn parse_canonical(b: &[u8]) -> Option<DateTime<Utc>> {
    fn digits(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0_u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if b.len() < 20 || !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':'))
    {
        return None;
    }
    let year = i32::try_from(digits(&b[0..4])?).ok()?;
    let (month, day) = (digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let mut rest = &b[19..];
    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&len) {
            return None;
        }
        nanos = digits(&fraction[..len])? * 10_u32.pow(9 - len as u32);
        rest = &fraction[len..];
    }
    let offset_seconds = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    if second > 59 {
        return None;
    }
    let local =
        NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)?;
    let utc = local.checked_sub_signed(TimeDelta::seconds(offset_seconds))?;
    Some(DateTime::from_naive_utc_and_offset(utc, Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the event's field reads `text` as: through the fast path, and through chrono.
    fn both(text: &str) -> (Result<DateTime<Utc>, String>, Result<DateTime<Utc>, String>) {
        #[derive(serde::Deserialize)]
        struct Fast {
            #[serde(deserialize_with = "deserialize_rfc3339")]
            ts: DateTime<Utc>,
        }
        #[derive(serde::Deserialize)]
        struct Chrono {
            ts: DateTime<Utc>,
        }
        let json = serde_json::json!({ "ts": text }).to_string();
        (
            serde_json::from_str::<Fast>(&json)
                .map(|f| f.ts)
                .map_err(|e| e.to_string()),
            serde_json::from_str::<Chrono>(&json)
                .map(|c| c.ts)
                .map_err(|e| e.to_string()),
        )
    }

    #[test]
    fn the_fast_path_reads_what_chrono_reads() {
        // The fast path takes the canonical forms, and leaves the rest to chrono.
        for canonical in ["2026-11-25T18:30:00.123456Z", "2026-11-25T18:30:00-08:00"] {
            assert!(
                parse_canonical(canonical.as_bytes()).is_some(),
                "{canonical}"
            );
        }
        for loose in [
            "2026-11-25 18:30:00Z",
            "2026-12-31T23:59:60Z",
            "2026-11-25T18:30:00+0530",
        ] {
            assert!(parse_canonical(loose.as_bytes()).is_none(), "{loose}");
        }
        for text in [
            "2026-11-25T18:30:00Z",
            "2026-11-25T18:30:00.123456Z",
            "2026-11-25T18:30:00.1Z",
            "2026-11-25T18:30:00.123456789Z",
            "2026-11-25T18:30:00.1234567891Z",
            "2026-11-25T18:30:00+05:30",
            "2026-11-25T18:30:00.5-08:00",
            "2026-11-25 18:30:00Z",
            "2026-11-25t18:30:00z",
            "2026-11-25T18:30:00+0530",
            "2026-12-31T23:59:60Z",
            "2026-02-29T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T18:30:00.Z",
            "2026-11-25T18:30:00+24:00",
            "0000-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-23:59",
            "2026-11-25T18:30:00",
            "",
            "not a time",
        ] {
            let (fast, chrono) = both(text);
            assert_eq!(
                fast.is_ok(),
                chrono.is_ok(),
                "{text:?}: {fast:?} vs {chrono:?}"
            );
            if let (Ok(fast), Ok(chrono)) = (fast, chrono) {
                assert_eq!(fast, chrono, "{text:?}");
            }
        }
    }

    proptest! {
        /// Any instant in any offset, written with any number of fraction digits, reads as
        /// the instant chrono reads; so does any string shaped almost like one.
        #[test]
        fn any_rfc3339_text_reads_as_chrono_reads_it(
            us in -62_135_510_400_000_000_i64..253_402_214_399_000_000,
            offset_minutes in -1439_i32..=1439,
            digits in 0_usize..=9,
            z in any::<bool>(),
        ) {
            let t = from_micros(us);
            let text = if z && offset_minutes == 0 {
                t.format("%Y-%m-%dT%H:%M:%S").to_string() + &fraction(t, digits) + "Z"
            } else {
                let offset = chrono::FixedOffset::east_opt(offset_minutes * 60).unwrap();
                let local = t.with_timezone(&offset);
                local.format("%Y-%m-%dT%H:%M:%S").to_string()
                    + &fraction(t, digits)
                    + &local.format("%:z").to_string()
            };
            let (fast, chrono) = both(&text);
            prop_assert_eq!(fast.clone(), chrono, "{}", text);
            prop_assert!(fast.is_ok(), "{}", text);
        }

        #[test]
        fn near_misses_read_as_chrono_reads_them(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[T t][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?(Z|z|[+-][0-9]{2}:?[0-9]{2})?") {
            let (fast, chrono) = both(&text);
            prop_assert_eq!(fast.is_ok(), chrono.is_ok(), "{}: {:?} vs {:?}", text, fast, chrono);
            if let (Ok(fast), Ok(chrono)) = (fast, chrono) {
                prop_assert_eq!(fast, chrono, "{}", text);
            }
        }
    }

    /// `.` and the first `digits` digits of `t`'s nanoseconds (nothing for 0 digits).
    fn fraction(t: DateTime<Utc>, digits: usize) -> String {
        if digits == 0 {
            return String::new();
        }
        let nanos = format!("{:09}", chrono::Timelike::nanosecond(&t));
        format!(".{}", &nanos[..digits])
    }

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
