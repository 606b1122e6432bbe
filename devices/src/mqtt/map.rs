//! A message on a topic → a sensor reading, pure: the first [`TopicMap`] whose pattern matches
//! decodes the payload, and the reading is validated like any other (or refused with a
//! [`MappedError`]).

use adit_config::{Checked, Invalid, check};
use adit_schemas::{Event as _, SensorKind, SensorReading, ValidationPolicy};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::topic::{check_template, match_topic, pattern_wildcards, render};

/// Characters of a refused payload kept in [`MappedError::excerpt`].
const EXCERPT_CHARS: usize = 64;

/// How messages on matching topics become sensor readings.
///
/// `site` and `sensor` are templates: `{1}` is the value of the pattern's first `+` wildcard,
/// `{2}` the second, and anything else is literal (`"north"`, `"rack-{1}"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMap {
    /// MQTT topic filter with `+` wildcards, e.g. `farm/+/sensors/+` (`#` is not supported: a
    /// site or sensor is one level).
    pub pattern: String,
    /// Template for the reading's site, e.g. `{1}`.
    pub site: String,
    /// Template for the reading's sensor id, e.g. `{2}`.
    pub sensor: String,
    /// What the sensors on these topics measure.
    pub kind: SensorKind,
    /// JSON pointer to the value in a JSON payload, e.g. `/temperature`; `None` when the payload
    /// is a bare number such as `21.5`.
    pub value: Option<String>,
}

impl TopicMap {
    /// Checks the pattern, the templates and the pointer; the key is the field's, relative to
    /// the map.
    pub fn validate(&self) -> Checked {
        let wildcards = pattern_wildcards(&self.pattern)
            .map_err(|r| Invalid::new("pattern", format!("{:?}: {r}", self.pattern)))?;
        for (field, template) in [("site", &self.site), ("sensor", &self.sensor)] {
            check_template(template, wildcards)
                .map_err(|r| Invalid::new(field, format!("{template:?}: {r}")))?;
        }
        if let Some(pointer) = &self.value {
            check(
                pointer.starts_with('/'),
                "value",
                format!(
                    "{pointer:?}: a JSON pointer starts with / (leave value unset for bare-number payloads)"
                ),
            )?;
        }
        Ok(())
    }

    /// The reading `payload` on `topic` stands for; `captures` are the wildcard values.
    fn reading(
        &self,
        captures: &[&str],
        payload: &[u8],
        received: DateTime<Utc>,
    ) -> Result<SensorReading, String> {
        let site = render(&self.site, captures).map_err(|r| format!("site template: {r}"))?;
        let sensor = render(&self.sensor, captures).map_err(|r| format!("sensor template: {r}"))?;
        let (value, ts) = match &self.value {
            None => {
                let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8 text")?;
                let value = text.trim().parse::<f64>().map_err(|_| {
                    "payload is not a bare number (set value to a JSON pointer for JSON payloads)"
                })?;
                (value, received)
            }
            Some(pointer) => {
                let json: serde_json::Value = serde_json::from_slice(payload)
                    .map_err(|e| format!("payload is not JSON: {e}"))?;
                let value = json
                    .pointer(pointer)
                    .ok_or_else(|| format!("payload has no {pointer}"))?;
                let value = value
                    .as_f64()
                    .ok_or_else(|| format!("{pointer} is {value}, not a number"))?;
                let ts = match json.get("ts") {
                    None | Some(serde_json::Value::Null) => received,
                    Some(ts) => parse_ts(ts)?,
                };
                (value, ts)
            }
        };
        let reading = SensorReading {
            site,
            sensor,
            kind: self.kind,
            value,
            ts,
        };
        reading
            .validate(&ValidationPolicy::default(), received)
            .map_err(|e| e.reason)?;
        Ok(reading)
    }
}

/// A message that matched a [`TopicMap`] but is not a valid reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MQTT message on {topic}: {reason} (payload {excerpt:?})")]
pub struct MappedError {
    /// What is wrong, naming the field.
    pub reason: String,
    /// The topic it arrived on.
    pub topic: String,
    /// The start of the payload (lossy UTF-8, at most 64 characters and an ellipsis).
    pub excerpt: String,
}

/// Maps one message with the first map whose pattern matches `topic`.
///
/// `Ok(None)` when no map matches. Otherwise the value comes from the payload (a bare number,
/// or the map's JSON pointer), and `ts` from the JSON payload's top-level `ts` (RFC 3339 text or
/// unix seconds) when it has one, else `received`. The reading is then checked like any
/// [`SensorReading`] under the default [`ValidationPolicy`] with `received` as now.
pub fn map_message(
    maps: &[TopicMap],
    topic: &str,
    payload: &[u8],
    received: DateTime<Utc>,
) -> Result<Option<SensorReading>, MappedError> {
    let Some((map, captures)) = maps
        .iter()
        .find_map(|m| match_topic(&m.pattern, topic).map(|c| (m, c)))
    else {
        return Ok(None);
    };
    map.reading(&captures, payload, received)
        .map(Some)
        .map_err(|reason| MappedError {
            reason,
            topic: topic.to_string(),
            excerpt: excerpt(payload),
        })
}

/// A payload `ts`: RFC 3339 text, or unix seconds (integer or fractional).
fn parse_ts(ts: &serde_json::Value) -> Result<DateTime<Utc>, String> {
    let parsed = match ts {
        serde_json::Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(secs) => DateTime::from_timestamp(secs, 0),
            None => n
                .as_f64()
                .filter(|secs| secs.is_finite())
                .and_then(|secs| DateTime::from_timestamp_micros((secs * 1e6).round() as i64)),
        },
        _ => None,
    };
    parsed.ok_or_else(|| format!("ts {ts} is neither an RFC 3339 time nor unix seconds"))
}

/// The start of `payload` as text, for error messages.
fn excerpt(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn temperature_map() -> TopicMap {
        TopicMap {
            pattern: "farm/+/sensors/+".into(),
            site: "{1}".into(),
            sensor: "{2}".into(),
            kind: SensorKind::Temperature,
            value: Some("/temperature".into()),
        }
    }

    fn humidity_map() -> TopicMap {
        TopicMap {
            pattern: "farm/+/humidity/+".into(),
            site: "site-{1}".into(),
            sensor: "h{2}".into(),
            kind: SensorKind::Humidity,
            value: None,
        }
    }

    fn maps() -> Vec<TopicMap> {
        vec![temperature_map(), humidity_map()]
    }

    fn mapped(topic: &str, payload: &str) -> Result<Option<SensorReading>, MappedError> {
        map_message(&maps(), topic, payload.as_bytes(), now())
    }

    fn refused(topic: &str, payload: &str) -> MappedError {
        match mapped(topic, payload) {
            Err(err) => err,
            other => panic!("{topic} {payload:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(temperature_map().validate(), Ok(()));
        assert_eq!(humidity_map().validate(), Ok(()));
        let cases: Vec<(TopicMap, &str)> = vec![
            (
                TopicMap {
                    pattern: String::new(),
                    ..temperature_map()
                },
                "pattern",
            ),
            (
                TopicMap {
                    pattern: "farm/#".into(),
                    ..temperature_map()
                },
                "pattern",
            ),
            (
                TopicMap {
                    pattern: "farm/a+/x/+".into(),
                    ..temperature_map()
                },
                "pattern",
            ),
            (
                TopicMap {
                    site: "{3}".into(),
                    ..temperature_map()
                },
                "site",
            ),
            (
                TopicMap {
                    site: "bad site".into(),
                    ..temperature_map()
                },
                "site",
            ),
            (
                TopicMap {
                    sensor: String::new(),
                    ..temperature_map()
                },
                "sensor",
            ),
            (
                TopicMap {
                    sensor: "{2".into(),
                    ..temperature_map()
                },
                "sensor",
            ),
            (
                TopicMap {
                    value: Some("temperature".into()),
                    ..temperature_map()
                },
                "value",
            ),
        ];
        for (map, field) in cases {
            let err = map
                .validate()
                .expect_err(&format!("{map:?} should be invalid"));
            assert_eq!(err.key, field, "{err:?} should name {field}");
        }
    }

    #[test]
    fn json_payloads_take_value_by_pointer_and_ts_from_the_payload() {
        let ts = Utc.with_ymd_and_hms(2026, 3, 1, 11, 59, 30).unwrap();
        let cases = [
            (
                r#"{"temperature": 21.5, "ts": "2026-03-01T11:59:30Z"}"#,
                21.5,
                ts,
            ),
            (
                r#"{"temperature": 21, "ts": "2026-03-01T12:59:30+01:00"}"#,
                21.0,
                ts,
            ),
            (r#"{"temperature": -4.25, "ts": 1772366370}"#, -4.25, ts),
            (
                r#"{"temperature": 30, "ts": 1772366370.25}"#,
                30.0,
                ts + chrono::Duration::milliseconds(250),
            ),
            (r#"{"temperature": 30, "ts": null}"#, 30.0, now()),
            (r#"{"temperature": 30, "humidity": 99}"#, 30.0, now()),
        ];
        for (payload, value, ts) in cases {
            let reading = mapped("farm/north/sensors/t1", payload).unwrap().unwrap();
            assert_eq!(
                reading,
                SensorReading {
                    site: "north".into(),
                    sensor: "t1".into(),
                    kind: SensorKind::Temperature,
                    value,
                    ts,
                },
                "{payload}"
            );
        }
    }

    #[test]
    fn nested_pointers_reach_into_objects_and_arrays() {
        let map = TopicMap {
            value: Some("/readings/1/c".into()),
            ..temperature_map()
        };
        let payload = br#"{"readings": [{"c": 1}, {"c": 19.5}]}"#;
        let reading = map_message(&[map], "farm/a/sensors/b", payload, now())
            .unwrap()
            .unwrap();
        assert_eq!(reading.value, 19.5);
    }

    #[test]
    fn bare_numbers_are_read_at_receive_time() {
        let reading = mapped("farm/south/humidity/7", " 55.5\n").unwrap().unwrap();
        assert_eq!(
            reading,
            SensorReading {
                site: "site-south".into(),
                sensor: "h7".into(),
                kind: SensorKind::Humidity,
                value: 55.5,
                ts: now(),
            }
        );
    }

    #[test]
    fn unmatched_topics_are_not_readings() {
        assert_eq!(mapped("farm/north/fans/f1", "1200"), Ok(None));
        assert_eq!(mapped("other", "garbage"), Ok(None));
        assert_eq!(map_message(&[], "farm/a/sensors/b", b"1", now()), Ok(None));
    }

    #[test]
    fn the_first_matching_map_wins() {
        let literal = TopicMap {
            pattern: "farm/north/sensors/+".into(),
            site: "n".into(),
            sensor: "{1}".into(),
            kind: SensorKind::Fan,
            value: None,
        };
        let maps = [literal, temperature_map()];
        let reading = map_message(&maps, "farm/north/sensors/f1", b"1200", now())
            .unwrap()
            .unwrap();
        assert_eq!(
            (reading.site.as_str(), reading.kind),
            ("n", SensorKind::Fan)
        );
        let reading = map_message(
            &maps,
            "farm/south/sensors/t1",
            br#"{"temperature": 1}"#,
            now(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (reading.site.as_str(), reading.kind),
            ("south", SensorKind::Temperature)
        );
    }

    #[test]
    fn bad_payloads_are_refused_with_reason_topic_and_excerpt() {
        let cases = [
            ("farm/a/sensors/t", "not json{", "not JSON"),
            ("farm/a/sensors/t", r#"{"temp": 1}"#, "no /temperature"),
            (
                "farm/a/sensors/t",
                r#"{"temperature": "warm"}"#,
                "not a number",
            ),
            ("farm/a/sensors/t", "21.5", "no /temperature"),
            ("farm/a/sensors/t", r#"{"temperature": 500}"#, "value = 500"),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": "yesterday"}"#,
                "ts",
            ),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": true}"#,
                "ts",
            ),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": 1e300}"#,
                "ts",
            ),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": "2026-03-02T00:00:00Z"}"#,
                "future",
            ),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": 0}"#,
                "past",
            ),
            ("farm/a.b/sensors/t", r#"{"temperature": 20}"#, "site"),
            ("farm/a/humidity/1", "{\"h\": 5}", "bare number"),
            ("farm/a/humidity/1", "101", "value = 101"),
            ("farm/a/humidity/1", "NaN", "finite"),
            ("farm/a/humidity/1", "", "bare number"),
        ];
        for (topic, payload, reason) in cases {
            let err = refused(topic, payload);
            assert!(
                err.reason.contains(reason),
                "{payload:?}: {:?} should mention {reason:?}",
                err.reason
            );
            assert_eq!(err.topic, topic);
            assert_eq!(err.excerpt, payload);
        }
        let err = map_message(&maps(), "farm/a/humidity/1", &[0xff, 0xfe], now()).unwrap_err();
        assert_eq!(
            (err.reason.as_str(), err.excerpt.as_str()),
            ("payload is not UTF-8 text", "\u{fffd}\u{fffd}")
        );
    }

    #[test]
    fn long_payloads_are_cut_in_the_excerpt() {
        let payload = format!("{{\"temperature\": \"{}\"}}", "é".repeat(100));
        let err = refused("farm/a/sensors/t", &payload);
        assert_eq!(err.excerpt.chars().count(), EXCERPT_CHARS + 1);
        assert!(err.excerpt.ends_with('…'));
        assert!(err.to_string().contains("farm/a/sensors/t"));
    }
}
