//! The protocols of the farm's devices, as clients, pure parsers and small I/O helpers, shared
//! downward by what reads the devices (`adit-ingest`'s adapters) and what commands them
//! (`adit-actuators`).
//!
//! Each module parses what a real device of one family sends into plain figures. The
//! simulator's fake devices are not here: each family's fake builds its replies beside its
//! poller in `adit-ingest` (`adapters/poll/family/`, the fake miner `simulate/cgminer/`), and
//! its tests read them back through these parsers, so a poller is tested against what it will
//! meet on site. Nothing here polls on a schedule, publishes or touches NATS: the adapters and
//! actuators wire these functions to a schedule and to JetStream.
//!
//! - [`cgminer`]: the cgminer / bmminer / BOSminer API on TCP 4028 (miners).
//! - [`luxos`]: power targets on LuxOS miners, through the same API (a session, then
//!   `profileset` by watts).
//! - [`http_json`]: JSON over HTTP: IotaWatt power meters, RoomAlert-style environment
//!   monitors, PDUs with a configurable field mapping, utility demand-response and price feeds.
//! - [`feed_map`]: grid feeds in the utility's own shape (JSON, CSV, plain text), read by a
//!   map in config.
//! - [`mqtt`]: devices that publish to an MQTT broker, mapped topic by topic to readings.
//! - [`pdu_snmp`]: a PDU's outlets switched over SNMP v2c (the actuators' driver).
//!
//! Every failure is a [`DeviceError`]; garbage and implausible values are refused here, before
//! they become events.

pub mod cgminer;
pub mod error;
pub mod feed_map;
pub mod http_json;
pub mod luxos;
pub mod mqtt;
pub mod pdu_snmp;

pub use error::DeviceError;

use reqwest::Url;
use serde_json::Value;

/// `url` parsed, if it is an `http://` or `https://` URL with a host.
pub fn http_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    Ok(parsed)
}

/// Parses a device's JSON body, telling a reply that was cut off from one that is not JSON.
pub(crate) fn decode_json(body: &[u8]) -> Result<Value, DeviceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DeviceError::garbage("the body is empty", body));
    }
    serde_json::from_slice(body).map_err(|e| json_garbage(&e, body))
}

/// The [`DeviceError::Garbage`] for a body serde_json refused.
pub(crate) fn json_garbage(e: &serde_json::Error, body: &[u8]) -> DeviceError {
    let reason = if e.is_eof() {
        format!(
            "the reply ends early, after {} bytes (cut off?): {e}",
            body.len()
        )
    } else {
        format!("not JSON: {e}")
    };
    DeviceError::garbage(reason, body)
}

/// A JSON number, or a string holding one (devices send `"24.50"` as often as `24.5`).
///
/// An empty string or `"-"` (how several firmwares mark a missing sensor) is no value. `"nan"`
/// and `"inf"` parse, so that the range check refuses them by name.
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || s == "-" {
                None
            } else {
                s.parse().ok()
            }
        }
        _ => None,
    }
}

/// `value` if it is finite and within `lo..=hi`, else [`DeviceError::OutOfRange`] for `field`.
pub(crate) fn in_range(field: &str, value: f64, lo: f64, hi: f64) -> Result<f64, DeviceError> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(DeviceError::OutOfRange {
            field: field.to_string(),
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_come_as_numbers_or_strings() {
        assert_eq!(number(&json!(24.5)), Some(24.5));
        assert_eq!(number(&json!(" 24.50 ")), Some(24.5));
        assert_eq!(number(&json!("-")), None);
        assert_eq!(number(&json!("")), None);
        assert_eq!(number(&json!(null)), None);
        assert_eq!(number(&json!("hot")), None);
        assert!(number(&json!("nan")).is_some_and(f64::is_nan));
    }

    #[test]
    fn ranges_refuse_nan_and_out_of_bounds() {
        assert_eq!(in_range("t", 20.0, 0.0, 100.0).ok(), Some(20.0));
        for bad in [f64::NAN, f64::INFINITY, -1.0, 101.0] {
            match in_range("t", bad, 0.0, 100.0) {
                Err(DeviceError::OutOfRange { field, .. }) => assert_eq!(field, "t"),
                other => panic!("{bad}: expected OutOfRange, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_cut_body_is_told_from_a_wrong_one() {
        let cut = decode_json(br#"{"a":[1,2"#).unwrap_err();
        assert!(cut.to_string().contains("ends early"), "{cut}");
        let wrong = decode_json(b"<html>").unwrap_err();
        assert!(wrong.to_string().contains("not JSON"), "{wrong}");
        let empty = decode_json(b" \n").unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
    }
}
