//! Devices that answer JSON over HTTP: parsers for their bodies. No I/O: pollers fetch with
//! their HTTP client and hand the body here. The simulator's fakes build the same bodies
//! beside their pollers, in `ingest`'s `adapters/poll/family/` (each family's tests read its
//! fake's replies back through the parser here).
//!
//! - IotaWatt power monitors: the `/query` API ([`parse_iotawatt`]).
//! - AVTECH RoomAlert-style environment monitors: `/getData.json` ([`parse_roomalert`]).
//! - PDUs: per-outlet power at a configurable place in any JSON body ([`parse_pdu`]).
//! - The utility's demand-response signal and the market's price feed, in shapes adit
//!   documents here ([`DrMessage`], [`PriceMessage`]), read into [`GridSignal`]s.
//!
//! Every parser refuses a body that is not the expected JSON with [`DeviceError::Garbage`]
//! (saying whether it was cut off) and an implausible value with [`DeviceError::OutOfRange`],
//! naming the field as the device does.

use adit_schemas::{GridSignal, GridSignalKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{DeviceError, decode_json, in_range, number};

/// Most power believed on one meter channel or outlet, watts (`ValidationPolicy`'s default).
const MAX_POWER_W: f64 = 10_000_000.0;
/// Coldest plausible temperature, °C (the range `SensorReading` accepts).
const MIN_TEMP_C: f64 = -60.0;
/// Hottest plausible temperature, °C.
const MAX_TEMP_C: f64 = 150.0;
/// Relative humidity tops out at 100 %.
const MAX_HUMIDITY_PCT: f64 = 100.0;
/// Largest curtailment target believed, kW (10 GW).
const MAX_TARGET_KW: f64 = 1e7;
/// Price range believed, currency units per MWh (the range `GridSignal` accepts).
const MAX_ABS_PRICE_PER_MWH: f64 = 1e6;

fn garbage(reason: impl Into<String>, body: &[u8]) -> DeviceError {
    DeviceError::garbage(reason, body)
}

// ---------------------------------------------------------------------------------------------
// IotaWatt.
// ---------------------------------------------------------------------------------------------

/// Reads the watts of each column from an IotaWatt `/query` reply.
///
/// The request is `GET /query?select=[time.iso,Input_1.watts,Input_2.watts]&begin=s-10s&end=s
/// &group=all&format=json`, and the reply a table of rows, `[["2026-03-01T12:00:00",1234.5,
/// 567.8]]` (with `header=yes`, the same rows under `"data"` in an object). `columns` names the
/// selected series after the time column, in order; the time column may also be left out of
/// the query. The last row (the latest group) is read. A `null` (nothing logged in the
/// interval, e.g. just after a restart) leaves its column out of the result.
pub fn parse_iotawatt(body: &[u8], columns: &[String]) -> Result<Vec<(String, f64)>, DeviceError> {
    let value = decode_json(body)?;
    let rows = match &value {
        Value::Array(rows) => rows,
        Value::Object(o) => match o.get("data") {
            Some(Value::Array(rows)) => rows,
            _ => return Err(garbage("an object without a \"data\" array of rows", body)),
        },
        _ => return Err(garbage("not an array of rows", body)),
    };
    let Some(last) = rows.last() else {
        return Err(garbage(
            "no rows: nothing logged in the queried interval",
            body,
        ));
    };
    let Some(row) = last.as_array() else {
        return Err(garbage("a row is not an array", body));
    };
    let skip = if row.len() == columns.len() + 1 {
        1
    } else if row.len() == columns.len() {
        0
    } else {
        return Err(garbage(
            format!(
                "a row has {} values for {} columns (plus an optional time)",
                row.len(),
                columns.len()
            ),
            body,
        ));
    };
    let mut out = Vec::with_capacity(columns.len());
    for (column, v) in columns.iter().zip(&row[skip..]) {
        if v.is_null() {
            continue;
        }
        let Some(watts) = number(v) else {
            return Err(garbage(format!("{column} is not a number: {v}"), body));
        };
        out.push((column.clone(), in_range(column, watts, 0.0, MAX_POWER_W)?));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// RoomAlert.
// ---------------------------------------------------------------------------------------------

/// One sensor of an environment monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomAlertSensor {
    /// Its label as configured on the monitor (`Internal Sensor`, `Ext Sensor 1`).
    pub label: String,
    /// Temperature, °C, if the sensor measures it.
    pub temp_c: Option<f64>,
    /// Relative humidity, %, if the sensor measures it.
    pub humidity_pct: Option<f64>,
}

/// Reads the temperature and humidity sensors from a RoomAlert-style `/getData.json` body:
/// `{"name":"RA3E-129912",…,"sensor":[{"lab":"Internal Sensor","tc":"24.50","tf":"76.10",
/// "h":"40.00"},…]}`, with the `internal_sen` array of the newer "S" models read first.
///
/// The label is `lab` (AVTECH's key) or `label`; values are strings or numbers. Temperature
/// is `tc` (°C), or `tf` (°F) converted; humidity is `h`. A sensor with neither (a switch or
/// power sensor) is left out, as is a value of `""` or `"-"` (nothing connected).
pub fn parse_roomalert(body: &[u8]) -> Result<Vec<RoomAlertSensor>, DeviceError> {
    let value = decode_json(body)?;
    let Some(top) = value.as_object() else {
        return Err(garbage("not a JSON object", body));
    };
    let arrays: Vec<&Vec<Value>> = ["internal_sen", "sensor"]
        .iter()
        .filter_map(|k| top.get(*k)?.as_array())
        .collect();
    if arrays.is_empty() {
        return Err(garbage("no \"sensor\" array", body));
    }
    let mut out = Vec::new();
    for (i, entry) in arrays.into_iter().flatten().enumerate() {
        let Some(entry) = entry.as_object() else {
            return Err(garbage("a sensor entry is not an object", body));
        };
        if let Some(sensor) = roomalert_sensor(entry, i)? {
            out.push(sensor);
        }
    }
    Ok(out)
}

fn roomalert_sensor(
    entry: &Map<String, Value>,
    index: usize,
) -> Result<Option<RoomAlertSensor>, DeviceError> {
    let label = ["lab", "label"]
        .iter()
        .find_map(|k| entry.get(*k)?.as_str())
        .map_or_else(|| format!("sensor {}", index + 1), str::to_string);
    let field = |k: &str| entry.get(k).and_then(number);
    let temp_c = match (field("tc"), field("tf")) {
        (Some(c), _) => Some(in_range(&format!("{label}.tc"), c, MIN_TEMP_C, MAX_TEMP_C)?),
        (None, Some(f)) => {
            let c = (f - 32.0) * 5.0 / 9.0;
            if !(c.is_finite() && (MIN_TEMP_C..=MAX_TEMP_C).contains(&c)) {
                return Err(DeviceError::OutOfRange {
                    field: format!("{label}.tf"),
                    value: f,
                });
            }
            Some(c)
        }
        (None, None) => None,
    };
    let humidity_pct = field("h")
        .map(|h| in_range(&format!("{label}.h"), h, 0.0, MAX_HUMIDITY_PCT))
        .transpose()?;
    if temp_c.is_none() && humidity_pct.is_none() {
        return Ok(None);
    }
    Ok(Some(RoomAlertSensor {
        label,
        temp_c,
        humidity_pct,
    }))
}

// ---------------------------------------------------------------------------------------------
// PDU.
// ---------------------------------------------------------------------------------------------

/// Where a PDU's JSON puts its outlets and their power.
///
/// `id` and `power_w` name a field of each outlet entry, or, starting with `/`, a JSON pointer
/// into it (`/readings/active_power`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMap {
    /// JSON pointer to the array of outlets, e.g. `/outlets` (`""`: the body is the array).
    pub items: String,
    /// The field holding each outlet's id (a string or a number), e.g. `outlet`.
    pub id: String,
    /// The field holding each outlet's power in watts, e.g. `power_w` or `watts`.
    pub power_w: String,
}

impl Default for FieldMap {
    /// The common shape, which the simulator's fake PDU answers:
    /// `{"outlets":[{"outlet":1,"power_w":3210.5,…}]}`.
    fn default() -> Self {
        Self {
            items: "/outlets".into(),
            id: "outlet".into(),
            power_w: "power_w".into(),
        }
    }
}

/// Reads each outlet's id and power, watts, from a PDU's JSON body as `map` describes it.
///
/// An outlet without an id or a power figure is garbage: a PDU that stopped reporting an
/// outlet must not look like one drawing nothing.
pub fn parse_pdu(body: &[u8], map: &FieldMap) -> Result<Vec<(String, f64)>, DeviceError> {
    let value = decode_json(body)?;
    let Some(items) = value.pointer(&map.items).and_then(Value::as_array) else {
        return Err(garbage(
            format!("no array of outlets at {:?}", map.items),
            body,
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let id = match lookup(item, &map.id) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(garbage(
                    format!("outlet entry {i} has no id at {:?}", map.id),
                    body,
                ));
            }
        };
        let Some(watts) = lookup(item, &map.power_w).and_then(number) else {
            return Err(garbage(
                format!("outlet {id} has no power at {:?}", map.power_w),
                body,
            ));
        };
        let field = format!("outlet {id} {}", map.power_w);
        out.push((id, in_range(&field, watts, 0.0, MAX_POWER_W)?));
    }
    Ok(out)
}

/// A field of an outlet entry: by name, or by JSON pointer when it starts with `/`.
fn lookup<'a>(item: &'a Value, field: &str) -> Option<&'a Value> {
    if field.starts_with('/') {
        item.pointer(field)
    } else {
        item.get(field)
    }
}

// ---------------------------------------------------------------------------------------------
// Grid: demand response and prices.
// ---------------------------------------------------------------------------------------------

/// What a demand-response message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrMode {
    /// Bring the site's load down to `target_kw` by `deadline`.
    Curtail,
    /// The event is over.
    Normal,
}

/// The utility's demand-response message, as adit reads it from the utility's endpoint:
///
/// ```json
/// {"event_id":"dr-42","mode":"curtail","target_kw":120.0,
///  "deadline":"2026-07-01T17:00:00Z","issued":"2026-07-01T16:45:00Z"}
/// ```
///
/// `target_kw` and `deadline` are required for `curtail` and ignored for `normal`. The same
/// message polled twice gives the same signal (its dedupe id is the event id and `issued`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrMessage {
    /// The utility's id for the event; a `normal` message repeats the `curtail`'s id.
    pub event_id: String,
    /// Curtail or back to normal.
    pub mode: DrMode,
    /// Target site load, kW.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kw: Option<f64>,
    /// When the target must be met, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// When the utility issued the message, RFC 3339: the signal's time.
    pub issued: DateTime<Utc>,
}

/// The market's price for an interval, as adit reads it from the price feed:
///
/// ```json
/// {"interval_start":"2026-07-01T17:00:00Z","interval_id":"2026-07-01T17:00Z/PT15M",
///  "price_per_mwh":43.2}
/// ```
///
/// Prices may be negative (a surplus on the grid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceMessage {
    /// When the interval starts, RFC 3339: the signal's time.
    pub interval_start: DateTime<Utc>,
    /// The feed's id for the interval.
    pub interval_id: String,
    /// Price, currency units per MWh.
    pub price_per_mwh: f64,
}

/// Reads a [`DrMessage`] body into the [`GridSignal`] for `site` (kind `Curtail` or `Normal`).
///
/// A curtail message without `target_kw` or `deadline`, or whose deadline is before it was
/// issued, is garbage; a negative or absurd target is out of range.
pub fn parse_dr_signal(body: &[u8], site: &str) -> Result<GridSignal, DeviceError> {
    let msg: DrMessage = serde_json::from_value(decode_json(body)?)
        .map_err(|e| garbage(format!("not a demand-response message: {e}"), body))?;
    adit_schemas::validate::check_text(
        "event_id",
        &msg.event_id,
        adit_schemas::events::MAX_ID_BYTES,
    )
    .map_err(|e| garbage(e.to_string(), body))?;
    let (kind, target_kw, deadline) = match msg.mode {
        DrMode::Curtail => {
            let Some(kw) = msg.target_kw else {
                return Err(garbage("a curtail message needs target_kw", body));
            };
            let Some(deadline) = msg.deadline else {
                return Err(garbage("a curtail message needs a deadline", body));
            };
            if deadline < msg.issued {
                return Err(garbage(
                    format!("deadline {deadline} is before issued {}", msg.issued),
                    body,
                ));
            }
            let kw = in_range("target_kw", kw, 0.0, MAX_TARGET_KW)?;
            (GridSignalKind::Curtail, Some(kw), Some(deadline))
        }
        DrMode::Normal => (GridSignalKind::Normal, None, None),
    };
    Ok(GridSignal {
        site: site.to_string(),
        event_id: msg.event_id,
        kind,
        target_kw,
        deadline,
        price_per_mwh: None,
        ts: msg.issued,
    })
}

/// Reads a [`PriceMessage`] body into the [`GridSignal`] (kind `Price`) for `site`.
pub fn parse_price_signal(body: &[u8], site: &str) -> Result<GridSignal, DeviceError> {
    let msg: PriceMessage = serde_json::from_value(decode_json(body)?)
        .map_err(|e| garbage(format!("not a price message: {e}"), body))?;
    adit_schemas::validate::check_text(
        "interval_id",
        &msg.interval_id,
        adit_schemas::events::MAX_ID_BYTES,
    )
    .map_err(|e| garbage(e.to_string(), body))?;
    let price = in_range(
        "price_per_mwh",
        msg.price_per_mwh,
        -MAX_ABS_PRICE_PER_MWH,
        MAX_ABS_PRICE_PER_MWH,
    )?;
    Ok(GridSignal {
        site: site.to_string(),
        event_id: msg.interval_id,
        kind: GridSignalKind::Price,
        target_kw: None,
        deadline: None,
        price_per_mwh: Some(price),
        ts: msg.interval_start,
    })
}

/// Reads a coin's price from a market's JSON at `pointer` (`/monero/usd`, CoinGecko's simple
/// price): a number, or a string of one, within `0..=`[`MAX_COIN_PRICE`].
///
/// [`MAX_COIN_PRICE`]: adit_schemas::market::MAX_COIN_PRICE
pub fn parse_coin_price(body: &[u8], pointer: &str) -> Result<f64, DeviceError> {
    let value = decode_json(body)?;
    let found = value
        .pointer(pointer)
        .ok_or_else(|| garbage(format!("nothing at {pointer}"), body))?;
    let price = number(found)
        .ok_or_else(|| garbage(format!("{pointer} holds no number: {found}"), body))?;
    in_range("price", price, 0.0, adit_schemas::market::MAX_COIN_PRICE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::{Event as _, ValidationPolicy};
    use chrono::TimeZone;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn reason(result: Result<impl std::fmt::Debug, DeviceError>) -> String {
        match result {
            Err(DeviceError::Garbage { reason, .. }) => reason,
            other => panic!("expected Garbage, got {other:?}"),
        }
    }

    fn out_of_range(result: Result<impl std::fmt::Debug, DeviceError>) -> (String, f64) {
        match result {
            Err(DeviceError::OutOfRange { field, value }) => (field, value),
            other => panic!("expected OutOfRange, got {other:?}"),
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 7, 1, h, m, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn iotawatt_rows_give_watts_per_column() {
        let columns = cols(&["Input_1", "Input_2"]);
        let body = br#"[["2026-03-01T12:00:00",1234.5,567.8]]"#;
        assert_eq!(
            parse_iotawatt(body, &columns).expect("parses"),
            vec![("Input_1".into(), 1234.5), ("Input_2".into(), 567.8)]
        );
        // Several groups: the last is the latest. No time column. A null is left out.
        let body = br#"[[1.0,2.0],[3.5,null]]"#;
        assert_eq!(
            parse_iotawatt(body, &columns).expect("parses"),
            vec![("Input_1".into(), 3.5)]
        );
        // header=yes.
        let body = br#"{"range":[1,2],"labels":["Time","Input_1","Input_2"],"data":[["2026-03-01T12:00:00",10,20]]}"#;
        assert_eq!(parse_iotawatt(body, &columns).expect("parses").len(), 2);
    }

    #[test]
    fn iotawatt_garbage_and_bad_values_are_refused() {
        let columns = cols(&["Input_1", "Input_2"]);
        assert!(reason(parse_iotawatt(b"[]", &columns)).contains("no rows"));
        assert!(reason(parse_iotawatt(b"[[1,2,3,4]]", &columns)).contains("4 values"));
        assert!(reason(parse_iotawatt(br#"[["t","x",1]]"#, &columns)).contains("Input_1"));
        assert!(
            reason(parse_iotawatt(br#"[["2026-03-01T12:00:00",12"#, &columns))
                .contains("ends early")
        );
        assert!(reason(parse_iotawatt(br#"{"error":"bad select"}"#, &columns)).contains("data"));
        assert_eq!(
            out_of_range(parse_iotawatt(br#"[["t",1,-50]]"#, &columns)),
            ("Input_2".into(), -50.0)
        );
    }

    /// A Room Alert 3E with its internal sensor, a temperature/humidity probe and a switch.
    const ROOMALERT_3E: &str = r#"{"name":"RA3E-129912","date":"07/19/17 09:50:58","uptime":"1d 18:36:45","scale":0,"macaddr":"00:80:A3:93:EC:C8","serial":"RA3E-129912","refresh":60,"version":"v2.0.0","port":80,"ip":"10.0.0.152","sensor":[{"lab":"Internal Sensor","tc":"24.50","tf":"76.10"},{"lab":"Ext Sensor 1","tc":"22.06","tf":"71.71","h":"41.00","hic":"21.74","hif":"71.13"},{"lab":"Switch Sen 1","status":0}]}"#;

    #[test]
    fn roomalert_sensors_are_read() {
        let got = parse_roomalert(ROOMALERT_3E.as_bytes()).expect("parses");
        assert_eq!(
            got,
            vec![
                RoomAlertSensor {
                    label: "Internal Sensor".into(),
                    temp_c: Some(24.5),
                    humidity_pct: None,
                },
                RoomAlertSensor {
                    label: "Ext Sensor 1".into(),
                    temp_c: Some(22.06),
                    humidity_pct: Some(41.0),
                },
            ]
        );
        // Numbers instead of strings, `label`, Fahrenheit only, the S models' internal array.
        let body = br#"{"internal_sen":[{"label":"Internal","tf":212,"h":""}],"sensor":[{"label":"Rack 4","tc":30.5,"h":55}]}"#;
        let got = parse_roomalert(body).expect("parses");
        assert_eq!(got[0].label, "Internal");
        assert_eq!(got[0].temp_c, Some(100.0));
        assert_eq!(got[0].humidity_pct, None);
        assert_eq!(got[1].temp_c, Some(30.5));
        assert_eq!(got[1].humidity_pct, Some(55.0));
    }

    #[test]
    fn roomalert_garbage_and_bad_values_are_refused() {
        assert!(reason(parse_roomalert(br#"{"name":"x"}"#)).contains("sensor"));
        assert!(reason(parse_roomalert(br#"{"sensor":[1]}"#)).contains("not an object"));
        assert!(reason(parse_roomalert(&ROOMALERT_3E.as_bytes()[..100])).contains("ends early"));
        assert_eq!(
            out_of_range(parse_roomalert(
                br#"{"sensor":[{"lab":"Probe","tc":"21","h":"140"}]}"#
            )),
            ("Probe.h".into(), 140.0)
        );
        assert_eq!(
            out_of_range(parse_roomalert(
                br#"{"sensor":[{"lab":"Probe","tf":"900"}]}"#
            )),
            ("Probe.tf".into(), 900.0)
        );
        let (field, value) =
            out_of_range(parse_roomalert(br#"{"sensor":[{"lab":"P","tc":"nan"}]}"#));
        assert_eq!(field, "P.tc");
        assert!(value.is_nan());
    }

    #[test]
    fn pdu_outlets_are_read_through_the_field_map() {
        let body = br#"{"outlets":[{"outlet":1,"power_w":3210.5,"state":"on"},{"outlet":2,"power_w":0,"state":"off"}]}"#;
        assert_eq!(
            parse_pdu(body, &FieldMap::default()).expect("parses"),
            vec![("1".into(), 3210.5), ("2".into(), 0.0)]
        );
        let map = FieldMap {
            items: "/data/ports".into(),
            id: "name".into(),
            power_w: "watts".into(),
        };
        let body = br#"{"data":{"ports":[{"name":"A1","watts":"120.5"}]}}"#;
        assert_eq!(
            parse_pdu(body, &map).expect("parses"),
            vec![("A1".into(), 120.5)]
        );
        let map = FieldMap {
            items: String::new(),
            id: "/meta/id".into(),
            power_w: "/readings/active_power".into(),
        };
        let body = br#"[{"meta":{"id":7},"readings":{"active_power":99.5}}]"#;
        assert_eq!(
            parse_pdu(body, &map).expect("parses"),
            vec![("7".into(), 99.5)]
        );
    }

    #[test]
    fn pdu_garbage_and_bad_values_are_refused() {
        let map = FieldMap::default();
        assert!(reason(parse_pdu(br#"{"ports":[]}"#, &map)).contains("/outlets"));
        assert!(reason(parse_pdu(br#"{"outlets":[{"power_w":1}]}"#, &map)).contains("no id"));
        assert!(reason(parse_pdu(br#"{"outlets":[{"outlet":3}]}"#, &map)).contains("outlet 3"));
        assert!(
            reason(parse_pdu(
                br#"{"outlets":[{"outlet":3,"power_w":"off"}]}"#,
                &map
            ))
            .contains("no power")
        );
        assert!(reason(parse_pdu(br#"{"outlets":[{"outlet":3,"pow"#, &map)).contains("ends early"));
        assert_eq!(
            out_of_range(parse_pdu(
                br#"{"outlets":[{"outlet":3,"power_w":-1}]}"#,
                &map
            )),
            ("outlet 3 power_w".into(), -1.0)
        );
    }

    #[test]
    fn demand_response_messages_become_valid_grid_signals() {
        let body = br#"{"event_id":"dr-42","mode":"curtail","target_kw":120.0,"deadline":"2026-07-01T17:00:00Z","issued":"2026-07-01T16:45:00Z"}"#;
        let signal = parse_dr_signal(body, "north").expect("parses");
        assert_eq!(
            signal,
            GridSignal {
                site: "north".into(),
                event_id: "dr-42".into(),
                kind: GridSignalKind::Curtail,
                target_kw: Some(120.0),
                deadline: Some(at(17, 0)),
                price_per_mwh: None,
                ts: at(16, 45),
            }
        );
        assert!(
            signal
                .validate(&ValidationPolicy::default(), at(16, 46))
                .is_ok()
        );

        let body = br#"{"event_id":"dr-42","mode":"normal","issued":"2026-07-01T18:00:00Z"}"#;
        let signal = parse_dr_signal(body, "north").expect("parses");
        assert_eq!(signal.kind, GridSignalKind::Normal);
        assert_eq!((signal.target_kw, signal.deadline), (None, None));
        assert!(
            signal
                .validate(&ValidationPolicy::default(), at(18, 0))
                .is_ok()
        );
    }

    #[test]
    fn bad_demand_response_messages_are_refused() {
        let refused = [
            (&br#"{"event_id":"dr-1","mode":"curtail","deadline":"2026-07-01T17:00:00Z","issued":"2026-07-01T16:45:00Z"}"#[..], "target_kw"),
            (&br#"{"event_id":"dr-1","mode":"curtail","target_kw":5,"issued":"2026-07-01T16:45:00Z"}"#[..], "deadline"),
            (&br#"{"event_id":"dr-1","mode":"curtail","target_kw":5,"deadline":"2026-07-01T16:00:00Z","issued":"2026-07-01T16:45:00Z"}"#[..], "before issued"),
            (&br#"{"event_id":"dr-1","mode":"panic","issued":"2026-07-01T16:45:00Z"}"#[..], "unknown variant"),
            (&br#"{"event_id":"","mode":"normal","issued":"2026-07-01T16:45:00Z"}"#[..], "event_id"),
            (&br#"{"event_id":"dr-1","mode":"normal","issued":"yesterday"}"#[..], "demand-response"),
            (&br#"{"event_id":"dr-1","mode":"norm"#[..], "ends early"),
        ];
        for (body, why) in refused {
            let r = reason(parse_dr_signal(body, "north"));
            assert!(r.contains(why), "{r}");
        }
        let body = br#"{"event_id":"dr-1","mode":"curtail","target_kw":-5,"deadline":"2026-07-01T17:00:00Z","issued":"2026-07-01T16:45:00Z"}"#;
        assert_eq!(
            out_of_range(parse_dr_signal(body, "north")),
            ("target_kw".into(), -5.0)
        );
    }

    #[test]
    fn a_coin_price_is_read_at_its_pointer_and_only_there() {
        let body = br#"{"monero":{"usd":152.31},"opensy":{"usd":"0.042"}}"#;
        assert_eq!(parse_coin_price(body, "/monero/usd").unwrap(), 152.31);
        assert_eq!(parse_coin_price(body, "/opensy/usd").unwrap(), 0.042);
        for (body, pointer) in [
            (&body[..], "/monero/eur"),
            (&br#"{"monero":{"usd":-1}}"#[..], "/monero/usd"),
            (&br#"{"monero":{"usd":"NaN"}}"#[..], "/monero/usd"),
            (&br#"{"monero":{"usd":{}}}"#[..], "/monero/usd"),
            (&b"152"[..], "/monero/usd"),
        ] {
            assert!(
                parse_coin_price(body, pointer).is_err(),
                "{pointer} in {body:?}"
            );
        }
    }

    #[test]
    fn prices_become_valid_grid_signals() {
        let body = br#"{"interval_start":"2026-07-01T17:00:00Z","interval_id":"2026-07-01T17:00Z/PT15M","price_per_mwh":-12.5}"#;
        let signal = parse_price_signal(body, "north").expect("parses");
        assert_eq!(signal.kind, GridSignalKind::Price);
        assert_eq!(signal.event_id, "2026-07-01T17:00Z/PT15M");
        assert_eq!(signal.price_per_mwh, Some(-12.5));
        assert_eq!(signal.ts, at(17, 0));
        assert!(
            signal
                .validate(&ValidationPolicy::default(), at(17, 0))
                .is_ok()
        );

        let body =
            br#"{"interval_start":"2026-07-01T17:00:00Z","interval_id":"i","price_per_mwh":5e7}"#;
        assert_eq!(
            out_of_range(parse_price_signal(body, "north")),
            ("price_per_mwh".into(), 5e7)
        );
        let body = br#"{"interval_start":"2026-07-01T17:00:00Z","interval_id":"i","price_per_mwh":"cheap"}"#;
        assert!(reason(parse_price_signal(body, "north")).contains("price message"));
        let body =
            br#"{"interval_start":"2026-07-01T17:00:00Z","interval_id":"","price_per_mwh":1}"#;
        assert!(reason(parse_price_signal(body, "north")).contains("interval_id"));
    }
}
