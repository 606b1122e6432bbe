//! A custom metric (issue 61): a value someone measured that adit has no kind for — a
//! container's inlet pressure, a generator's fuel level, a business figure — posted over HTTP
//! ingest (`POST /api/v1/ingest/metric`) as `{name, source, labels, value, ts}`, landed in
//! `custom_metrics`, read back by name and time range (`GET /api/v1/metrics/custom`) and in
//! SQL, so alert rules and dashboards use it like any table.
//!
//! Bounded by construction: the name lives in the `custom_` name space (it can never pass for
//! one of adit's own), a point carries at most [`MAX_LABELS`] labels of plain names and short
//! printable values, and the API holds at most `query.custom_metric_series` distinct series
//! (name and labels) per process, refusing new ones beyond. The labels are kept as one JSON
//! object with sorted keys, so a series reads the same however it was posted.

use std::collections::BTreeMap;

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::arrow_rows::{f64_field, ts_field, utf8};
use crate::record::Event;
use crate::time::micros;
use crate::validate::{Invalid, ValidationPolicy, check_range, check_text, check_token};

/// The name space every custom metric's name starts with.
pub const PREFIX: &str = "custom_";
/// Most labels on one point.
pub const MAX_LABELS: usize = 8;
/// Longest label value, bytes.
pub const MAX_LABEL_VALUE: usize = 128;

/// A point's labels: a JSON object of label names to text, kept with sorted keys. Posted as an
/// object (or as the text of one); stored and sent on as the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Labels(String);

impl Default for Labels {
    /// No labels: `{}`.
    fn default() -> Self {
        Self::of(&BTreeMap::new())
    }
}

impl Labels {
    /// The canonical text of `labels`.
    pub fn of(labels: &BTreeMap<String, String>) -> Self {
        Self(serde_json::to_string(labels).unwrap_or_else(|_| "{}".into()))
    }

    /// The labels as a map (empty when the text is not an object of texts).
    pub fn map(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Posted {
            Object(BTreeMap<String, String>),
            Text(String),
        }
        let map = match Posted::deserialize(d)? {
            Posted::Object(map) => map,
            Posted::Text(text) => serde_json::from_str(&text).map_err(|_| {
                serde::de::Error::custom("labels must be a JSON object of label names to text")
            })?,
        };
        Ok(Self::of(&map))
    }
}

/// One point of a custom metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMetric {
    /// Its name: `custom_` then lowercase letters, digits and `_` (at most 64 in all).
    pub name: String,
    /// Who measured it (a site, a host, a script), a subject token.
    pub source: String,
    /// Its labels (at most 8; names as Prometheus's, values 1-128 printable bytes).
    #[serde(default)]
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// When it was measured.
    #[serde(deserialize_with = "crate::time::deserialize_rfc3339")]
    pub ts: DateTime<Utc>,
}

impl CustomMetric {
    /// Whether `name` is a custom metric's name.
    pub fn is_name(name: &str) -> bool {
        name.len() <= 64
            && name.strip_prefix(PREFIX).is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
    }
}

/// Whether `name` is a label name: a letter or `_`, then letters, digits or `_`, at most 64.
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Event for CustomMetric {
    fn dedupe_id(&self) -> String {
        format!(
            "metric:{}:{}:{}:{}",
            self.name,
            self.source,
            self.labels.as_str(),
            micros(self.ts)
        )
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        if !CustomMetric::is_name(&self.name) {
            return Err(Invalid::new(format!(
                "name {:?} must be {PREFIX} then lowercase letters, digits or _, at most 64 in all",
                self.name
            )));
        }
        check_token("source", &self.source)?;
        let labels = self.labels.map();
        if labels.len() > MAX_LABELS {
            return Err(Invalid::new(format!(
                "labels: at most {MAX_LABELS}, not {}",
                labels.len()
            )));
        }
        for (name, value) in &labels {
            if !is_label_name(name) {
                return Err(Invalid::new(format!(
                    "labels: {name:?} is not a label name (a letter or _, then letters, digits or _)"
                )));
            }
            check_text(&format!("labels.{name}"), value, MAX_LABEL_VALUE)?;
        }
        check_range("value", self.value, f64::MIN, f64::MAX)?;
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("name"),
            utf8("source"),
            utf8("labels"),
            f64_field("value"),
            ts_field("ts"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(json: &str) -> Result<CustomMetric, String> {
        let m: CustomMetric = serde_json::from_str(json).map_err(|e| e.to_string())?;
        m.check_values(&ValidationPolicy::default(), Utc::now())
            .map_err(|e| e.reason)?;
        Ok(m)
    }

    #[test]
    fn labels_read_the_same_however_posted() {
        let ts = Utc::now().to_rfc3339();
        let a = point(&format!(
            r#"{{"name":"custom_inlet_kpa","source":"site-01","labels":{{"loop":"b","container":"c7"}},"value":101.3,"ts":"{ts}"}}"#
        ))
        .unwrap();
        let b = point(&format!(
            r#"{{"name":"custom_inlet_kpa","source":"site-01","labels":"{{\"container\":\"c7\",\"loop\":\"b\"}}","value":101.3,"ts":"{ts}"}}"#
        ))
        .unwrap();
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.labels.as_str(), r#"{"container":"c7","loop":"b"}"#);
        assert_eq!(a.dedupe_id(), b.dedupe_id());
        // What is sent on reads back the same, with labels or without.
        let bare = point(&format!(
            r#"{{"name":"custom_inlet_kpa","source":"site-01","value":101.3,"ts":"{ts}"}}"#
        ))
        .unwrap();
        assert_eq!(bare.labels.as_str(), "{}");
        for m in [a, bare] {
            let sent = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<CustomMetric>(&sent).unwrap(), m);
        }
    }

    #[test]
    fn names_labels_and_values_outside_the_bounds_are_refused() {
        let ts = Utc::now().to_rfc3339();
        let with = |name: &str, labels: &str, value: &str| {
            point(&format!(
                r#"{{"name":"{name}","source":"s1","labels":{labels},"value":{value},"ts":"{ts}"}}"#
            ))
        };
        assert!(with("custom_fuel_pct", "{}", "42").is_ok());
        for bad in [
            "adit_pool_hashrate",
            "custom_",
            "custom_Fuel",
            "custom_a.b",
            "pool_x",
        ] {
            let e = with(bad, "{}", "1").unwrap_err();
            assert!(e.contains("name"), "{bad}: {e}");
        }
        let nine: Vec<String> = (0..9).map(|i| format!(r#""l{i}":"v""#)).collect();
        let e = with("custom_x", &format!("{{{}}}", nine.join(",")), "1").unwrap_err();
        assert!(e.contains("at most 8"), "{e}");
        let e = with("custom_x", r#"{"9bad":"v"}"#, "1").unwrap_err();
        assert!(e.contains("label name"), "{e}");
        let long = "v".repeat(129);
        let e = with("custom_x", &format!(r#"{{"k":"{long}"}}"#), "1").unwrap_err();
        assert!(e.contains("labels.k"), "{e}");
        let e = with("custom_x", r#"{"k":"a\nb"}"#, "1").unwrap_err();
        assert!(e.contains("control"), "{e}");
        assert!(
            with("custom_x", r#"{"k":1}"#, "1").is_err(),
            "a number as a label value"
        );
        assert!(with("custom_x", "[]", "1").is_err(), "labels not an object");
    }
}
