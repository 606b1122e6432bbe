//! The OpenADR 3.1 objects the VEN reads and writes, as the VTN's REST API carries them (JSON,
//! camelCase; the shapes of OpenLEADR's `openleadr-wire` 0.2.8, which its VTN serves). Only the
//! fields the VEN uses are read; unknown ones are ignored, as the specification allows.
//!
//! Every value comes from outside: ids and names are bounded when read, durations are ISO 8601
//! (`PT15M`, or the long form `P0Y0M0DT0H15M0S` OpenLEADR writes) and parsed into whole
//! seconds, bounded; a value that does not parse makes the interval unusable, never a panic.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest id or name taken from the VTN.
pub const MAX_ID_BYTES: usize = 128;
/// Longest duration taken: a year (OpenADR's "infinite", `P9999Y`, is read as this).
pub const MAX_DURATION_S: i64 = 366 * 86_400;

/// A program, as listed by `GET /programs`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Program {
    /// The VTN's id.
    pub id: String,
    /// Its name.
    pub program_name: String,
}

/// An event, as listed by `GET /events?programID=…`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The VTN's id.
    pub id: String,
    /// Its program.
    #[serde(rename = "programID")]
    pub program_id: String,
    /// Its name, if it has one.
    #[serde(default)]
    pub event_name: Option<String>,
    /// Lower is more important (0 the most); none: unspecified.
    #[serde(default)]
    pub priority: Option<u32>,
    /// When the VTN last changed it.
    #[serde(default)]
    pub modification_date_time: Option<DateTime<Utc>>,
    /// The period its intervals fall in, unless an interval has its own.
    #[serde(default)]
    pub interval_period: Option<IntervalPeriod>,
    /// What each payload type means (units).
    #[serde(default)]
    pub payload_descriptors: Option<Vec<PayloadDescriptor>>,
    /// Its intervals.
    #[serde(default)]
    pub intervals: Vec<EventInterval>,
}

/// A period: a start and a duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntervalPeriod {
    /// When it starts.
    pub start: DateTime<Utc>,
    /// How long it lasts (ISO 8601); none: the event's, or open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// One interval of an event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventInterval {
    /// Its id within the event.
    pub id: i64,
    /// Its own period, when not the event's.
    #[serde(default)]
    pub interval_period: Option<IntervalPeriod>,
    /// What it asks.
    #[serde(default)]
    pub payloads: Vec<Payload>,
}

/// One payload: a type (`IMPORT_CAPACITY_LIMIT`, `SIMPLE`, `PRICE`, …) and its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// The payload type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its values (numbers, integers, text…).
    #[serde(default)]
    pub values: Vec<serde_json::Value>,
}

/// The units of a payload type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadDescriptor {
    /// The payload type described.
    pub payload_type: String,
    /// Its units (`KW`, `W`, …), if stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    /// Its currency (prices), if stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// A report the VEN posts (`POST /reports`): what one resource measured over intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequest {
    /// The event reported on.
    #[serde(rename = "eventID")]
    pub event_id: String,
    /// This VEN's name.
    pub client_name: String,
    /// The report's name.
    pub report_name: String,
    /// What the payloads are.
    pub payload_descriptors: Vec<ReportDescriptor>,
    /// The resources reported (the site).
    pub resources: Vec<ReportResource>,
}

/// A report payload's type, reading type and units.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportDescriptor {
    /// `USAGE`, `DEMAND`, …
    pub payload_type: String,
    /// `DIRECT_READ`, `AVERAGE`, …
    pub reading_type: String,
    /// `KW`, `KWH`, …
    pub units: String,
}

/// One resource's intervals in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResource {
    /// The resource (the site's name).
    pub resource_name: String,
    /// The intervals' period: the first one's start and each one's duration.
    pub interval_period: IntervalPeriod,
    /// The intervals, one after the other.
    pub intervals: Vec<ReportInterval>,
}

/// One interval of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportInterval {
    /// Its index.
    pub id: i64,
    /// Its own period (when each sample's time is told).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_period: Option<IntervalPeriod>,
    /// Its payloads.
    pub payloads: Vec<Payload>,
}

/// Whole seconds of an ISO 8601 duration (`PT15M`, `P1D`, `P0Y0M0DT1H0M0S`, `P9999Y`), at most
/// [`MAX_DURATION_S`]; `None` when it does not parse or is negative. Years count 365 days and
/// months 30, as a duration without a date can only mean.
pub fn duration_s(text: &str) -> Option<i64> {
    if text.len() > 64 {
        return None;
    }
    let d = iso8601_duration::Duration::parse(text.trim()).ok()?;
    let seconds = f64::from(d.year) * 365.0 * 86_400.0
        + f64::from(d.month) * 30.0 * 86_400.0
        + f64::from(d.day) * 86_400.0
        + f64::from(d.hour) * 3_600.0
        + f64::from(d.minute) * 60.0
        + f64::from(d.second);
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some((seconds.round() as i64).min(MAX_DURATION_S))
}

/// Whether `text` is an id or name the VEN takes: 1 to [`MAX_ID_BYTES`] bytes, no control
/// characters.
pub fn is_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_ID_BYTES && !text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_either_form_are_whole_bounded_seconds() {
        assert_eq!(duration_s("PT15M"), Some(900));
        assert_eq!(duration_s("PT1H"), Some(3_600));
        assert_eq!(duration_s("P0Y0M0DT1H0M0S"), Some(3_600));
        assert_eq!(duration_s("P0Y0M0DT0H0M0.5S"), Some(1));
        assert_eq!(duration_s("P1D"), Some(86_400));
        assert_eq!(duration_s("P9999Y"), Some(MAX_DURATION_S));
        for bad in ["", "15m", "P-1D", "x", &"P1D".repeat(40)] {
            assert_eq!(duration_s(bad), None, "{bad:?}");
        }
    }

    /// An event as OpenLEADR's VTN 0.2.8 serves it (its `Event` with `EventRequest` flattened,
    /// durations in the long form).
    #[test]
    fn an_event_of_the_vtn_reads() {
        let json = r#"{
            "id": "0e5a1a47-4e1c-4bd7-9d4b-9b1b0c5d8f11",
            "createdDateTime": "2026-11-28T10:00:00Z",
            "modificationDateTime": "2026-11-28T10:00:01Z",
            "objectType": "EVENT",
            "programID": "5c1f2d9e-1111-4a4a-9d9d-000000000001",
            "eventName": "cap",
            "priority": 0,
            "targets": [],
            "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}],
            "intervalPeriod": {"start": "2026-11-28T11:00:00Z", "duration": "P0Y0M0DT1H0M0S"},
            "intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [5.0]}]}]
        }"#;
        let event: Event = serde_json::from_str(json).unwrap();
        assert_eq!(event.event_name.as_deref(), Some("cap"));
        assert_eq!(event.priority, Some(0));
        let period = event.interval_period.as_ref().unwrap();
        assert_eq!(duration_s(period.duration.as_deref().unwrap()), Some(3_600));
        assert_eq!(event.intervals[0].payloads[0].kind, "IMPORT_CAPACITY_LIMIT");
        assert_eq!(
            event.payload_descriptors.unwrap()[0].units.as_deref(),
            Some("KW")
        );
    }
}
