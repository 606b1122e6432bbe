//! Property tests of the device boundary (issue 22): whatever a miner's cgminer API, an
//! IotaWatt, a RoomAlert, a PDU, the utility's demand-response and price feeds or an MQTT sensor
//! sends (any bytes, JSON of any shape, the keys each parser looks for holding hostile values),
//! the pure parsers in `adapters` read it or refuse it with `Garbage` or `OutOfRange`, never a
//! panic; and what they read holds: finite figures in their plausible ranges, one reading per
//! outlet, timestamps and ids the schemas accept, nothing invented. Plausible replies built the
//! way the devices build them read back exactly.

use adit_ingest::adapters::DeviceError;
use adit_ingest::adapters::cgminer::{MinerReport, decode_reply, parse_report};
use adit_ingest::adapters::error::EXCERPT_BYTES;
use adit_ingest::adapters::http_json::{
    DrMessage, DrMode, FieldMap, RoomAlertSensor, dr_reply, parse_dr_signal, parse_iotawatt,
    parse_pdu, parse_price_signal, parse_roomalert, pdu_reply, roomalert_reply,
};
use adit_ingest::adapters::mqtt::{MappedError, TopicMap, map_message};
use adit_schemas::events::MAX_ID_BYTES;
use adit_schemas::names::is_token;
use adit_schemas::validate::check_text;
use adit_schemas::{
    Event as _, GridSignal, GridSignalKind, MinerState, MinerStatus, SensorKind, SensorReading,
    ValidationPolicy,
};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
fn cases(ci: u32) -> u32 {
    std::env::var("ADIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

// ---------------------------------------------------------------------------------------------
// Hostile values.
// ---------------------------------------------------------------------------------------------

/// Keys the parsers look for, so that JSON of any shape often holds them.
const KEYS: &[&str] = &[
    // cgminer
    "STATUS",
    "Msg",
    "Code",
    "id",
    "SUMMARY",
    "STATS",
    "DEVS",
    "POOLS",
    "TEMPS",
    "FANS",
    "TUNERSTATUS",
    "summary",
    "stats",
    "devs",
    "pools",
    "GHS 5s",
    "MHS 5s",
    "MHS 1m",
    "GHS av",
    "MHS 20s",
    "Temperature",
    "temp1",
    "temp2_1",
    "temp_chip",
    "temp_pcb1",
    "Chip Temp Max",
    "Board",
    "Chip",
    "fan1",
    "Fan Speed In",
    "RPM",
    "Power",
    "chain_power",
    "ApproximateMinerPowerConsumption",
    "chain",
    "Enabled",
    "Status",
    // IotaWatt, RoomAlert, PDU
    "data",
    "sensor",
    "internal_sen",
    "lab",
    "label",
    "tc",
    "tf",
    "h",
    "outlets",
    "outlet",
    "power_w",
    "meta",
    "readings",
    "active_power",
    // grid feeds, MQTT
    "event_id",
    "mode",
    "target_kw",
    "deadline",
    "issued",
    "interval_start",
    "interval_id",
    "price_per_mwh",
    "ts",
    "temperature",
    "rpm",
];

/// Text with a meaning to some parser: statuses, modes, numbers as text, markers.
const WORDS: &[&str] = &[
    "S",
    "I",
    "W",
    "E",
    "F",
    "X",
    "",
    "-",
    "Alive",
    "Dead",
    "Sick",
    "NoStart",
    "N",
    "Y",
    "Invalid command",
    "curtail",
    "normal",
    "panic",
    " 24.50 ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "infinity",
    "1e999",
    "-1e999",
    "1e308",
    "-0",
    "3250 W",
    "3250W",
    " W",
    "55-55-71-71",
    "60-nan-61",
    "--",
    "1-",
    "0-0-0",
];

/// Numbers at the edges of what the parsers accept, and just past them.
const EDGE_NUMBERS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    f64::MIN_POSITIVE,
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    4e-320,
    1e8,
    1e11,
    1e17,
    1.000_000_1e17,
    150.0,
    150.000_001,
    -60.0,
    -60.000_001,
    100.0,
    100.000_001,
    1e5,
    1e6,
    1e7,
    1.000_000_1e7,
    -1e6,
    212.0,
    302.0,
    -76.0,
];

/// Times, RFC 3339 and not: near the MQTT tests' `received`, far from it, malformed.
const TIMES: &[&str] = &[
    "2026-03-01T12:00:00Z",
    "2026-03-01T11:59:59.999Z",
    "2026-03-01T12:04:59Z",
    "2026-03-01T12:05:01Z",
    "2026-01-30T12:00:01Z",
    "2026-01-29T11:59:59Z",
    "2026-03-01T12:00:00+14:00",
    "2026-03-01T12:00:00-12:00",
    "2026-07-01T16:45:00Z",
    "2026-07-01T17:00:00Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T12:00:60Z",
    "2026-03-01",
    "yesterday",
    "",
];

/// Control characters, a line separator and a right-to-left override.
const CONTROL: &str = "\u{0}\r\n\t\u{1b}[2J\u{7f}\u{85}\u{2028}\u{202e}\u{fffd}";

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => prop::sample::select(TIMES).prop_map(str::to_owned),
        1 => "[0-9a-fA-F.eE+-]{0,24}",
        1 => Just("x".repeat(10_000)),
        1 => Just(CONTROL.to_owned()),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

/// `list`'s entries most of the time, hostile text otherwise.
fn pick(list: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(list).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

/// JSON numbers of every size and sign, and the texts devices send for numbers.
fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<f64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-100.0f64..200.0).prop_map(Value::from),
        (0.0f64..1e8).prop_map(Value::from),
        prop::sample::select(EDGE_NUMBERS).prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        4 => number(),
        4 => text().prop_map(Value::from),
    ]
    .boxed()
}

/// An object of up to `most` entries (a repeated key keeps its last value).
fn object(
    key: BoxedStrategy<String>,
    value: BoxedStrategy<Value>,
    most: usize,
) -> BoxedStrategy<Value> {
    prop::collection::vec((key, value), 0..most)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
        .boxed()
}

/// JSON of any shape, with hostile leaves and the parsers' keys.
fn json() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                object(key(), inner, 10),
            ]
        })
        .boxed()
}

/// A JSON object of any content.
fn object_json() -> BoxedStrategy<Value> {
    object(key(), json(), 8)
}

fn bytes() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..4096).boxed()
}

/// Bytes the damage inserts or writes.
const MANGLE: &[u8] = b",:{}[]\"\\\0 \n-.e0";

/// JSON with one fault: cut off, a byte inserted, removed or overwritten.
fn near_json() -> BoxedStrategy<Vec<u8>> {
    (
        prop_oneof![object_json(), json()],
        any::<prop::sample::Index>(),
        prop::sample::select(MANGLE),
        0u8..4,
    )
        .prop_map(|(value, at, byte, how)| {
            let mut text = value.to_string().into_bytes();
            let i = at.index(text.len() + 1);
            match how {
                0 => text.truncate(i),
                1 => text.insert(i, byte),
                2 if i < text.len() => {
                    text.remove(i);
                }
                3 if i < text.len() => text[i] = byte,
                _ => {}
            }
            text
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Shaped the way each device answers.
// ---------------------------------------------------------------------------------------------

const CG_STATUS: &[&str] = &["S", "I", "W", "E", "F", "X", "", "s"];
const CG_CODES: &[i64] = &[11, 14, 45, 300, 0, -1, i64::MAX];
const CG_SECTIONS: &[&str] = &[
    "SUMMARY",
    "STATS",
    "DEVS",
    "POOLS",
    "TEMPS",
    "FANS",
    "TUNERSTATUS",
    "VERSION",
    "CONFIG",
    "id",
];
const CG_COMMANDS: &[&str] = &["summary", "stats", "devs", "pools", "bogus", "id"];
const CG_FIELDS: &[&str] = &[
    "GHS 5s",
    "MHS 5s",
    "GHS 1m",
    "MHS 1m",
    "GHS av",
    "MHS av",
    "MHS 20s",
    "GHS 30s",
    "MHS s",
    "MHS 5x",
    "Temperature",
    "temp_max",
    "Chip Temp Max",
    "temp1",
    "temp6",
    "temp2_1",
    "temp3_4",
    "temp_chip",
    "temp_chip1",
    "temp_pcb2",
    "temp_num",
    "temp",
    "Board",
    "Chip",
    "TopLeft",
    "BottomRight",
    "fan1",
    "fan_num",
    "Fan Speed In",
    "Fan Speed Out",
    "RPM",
    "Power",
    "chain_power",
    "ApproximateMinerPowerConsumption",
    "Enabled",
    "Status",
    "chain",
];

fn cg_field() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::sample::select(CG_FIELDS).prop_map(str::to_owned),
        1 => key(),
    ]
    .boxed()
}

fn cg_value() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => number(),
        2 => text().prop_map(Value::from),
        1 => prop::collection::vec(number(), 0..6).prop_map(Value::from),
        // `chain`: per-board entries.
        1 => prop::collection::vec(object(cg_field(), number(), 5), 0..3).prop_map(Value::from),
        1 => json(),
    ]
    .boxed()
}

/// One command's `STATUS`: cgminer's array of one object, Whatsminer's plain string, or junk.
fn cg_status() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (
            prop::sample::select(CG_STATUS),
            prop_oneof![prop::sample::select(CG_CODES), any::<i64>()],
            prop_oneof![Just("Invalid command".to_owned()), text()],
        )
            .prop_map(|(status, code, msg)| json!([{"STATUS": status, "Code": code, "Msg": msg}])),
        2 => prop::sample::select(CG_STATUS).prop_map(Value::from),
        1 => json(),
    ]
    .boxed()
}

/// One command's reply: a status and data sections of entries.
fn cg_command() -> BoxedStrategy<Value> {
    let section = prop_oneof![
        4 => prop::sample::select(CG_SECTIONS).prop_map(str::to_owned),
        1 => key(),
    ];
    let entries = prop_oneof![
        5 => prop::collection::vec(object(cg_field(), cg_value(), 8), 0..4).prop_map(Value::from),
        1 => json(),
    ];
    (cg_status(), prop::collection::vec((section, entries), 0..5))
        .prop_map(|(status, sections)| {
            let mut reply: Map<String, Value> = sections.into_iter().collect();
            reply.insert("STATUS".to_owned(), status);
            Value::Object(reply)
        })
        .boxed()
}

/// A single reply, a joined one (`{"summary":[…],"stats":[…],"id":1}`), or junk.
fn cg_reply() -> BoxedStrategy<Value> {
    let command = prop_oneof![
        4 => prop::sample::select(CG_COMMANDS).prop_map(str::to_owned),
        1 => key(),
    ];
    let answer = prop_oneof![
        5 => cg_command().prop_map(|c| json!([c])),
        1 => json(),
    ];
    prop_oneof![
        2 => cg_command(),
        2 => prop::collection::vec((command, answer), 0..5)
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        1 => json(),
    ]
    .boxed()
}

/// IotaWatt columns and a `/query` body whose rows have as many cells (or one more, the time).
fn iotawatt_case() -> BoxedStrategy<(Vec<String>, Vec<u8>)> {
    prop::collection::vec(text(), 0..6)
        .prop_flat_map(|columns| {
            let n = columns.len();
            let cell = prop_oneof![
                4 => number(),
                1 => Just(Value::Null),
                1 => text().prop_map(Value::from),
                1 => json(),
            ];
            (
                Just(columns),
                prop::collection::vec(prop::collection::vec(cell, n..=n + 1), 0..4),
                any::<bool>(),
                prop::collection::vec((key(), json()), 0..2),
            )
        })
        .prop_map(|(columns, rows, header, extra)| {
            let rows: Vec<Value> = rows.into_iter().map(Value::from).collect();
            let body = if header {
                let mut top: Map<String, Value> = extra.into_iter().collect();
                top.insert("data".to_owned(), Value::from(rows));
                Value::Object(top)
            } else {
                Value::from(rows)
            };
            (columns, body.to_string().into_bytes())
        })
        .boxed()
}

const RA_FIELDS: &[&str] = &["lab", "label", "tc", "tf", "h", "status", "hic"];

/// A RoomAlert `/getData.json` body: `internal_sen` and `sensor` arrays of entries.
fn roomalert_body() -> BoxedStrategy<Vec<u8>> {
    let entry = prop_oneof![
        8 => object(
            pick(RA_FIELDS),
            prop_oneof![3 => number(), 1 => text().prop_map(Value::from)].boxed(),
            6,
        ),
        1 => json(),
    ]
    .boxed();
    (
        prop::option::weighted(0.4, prop::collection::vec(entry.clone(), 0..5)),
        prop::option::weighted(0.9, prop::collection::vec(entry, 0..5)),
        prop::collection::vec((key(), json()), 0..3),
    )
        .prop_map(|(internal, sensor, extra)| {
            let mut top: Map<String, Value> = extra.into_iter().collect();
            if let Some(internal) = internal {
                top.insert("internal_sen".to_owned(), Value::from(internal));
            }
            if let Some(sensor) = sensor {
                top.insert("sensor".to_owned(), Value::from(sensor));
            }
            Value::Object(top).to_string().into_bytes()
        })
        .boxed()
}

/// A PDU field map whose pointers lead into the outlet entries below.
fn pointer_map() -> FieldMap {
    FieldMap {
        items: String::new(),
        id: "/meta/id".into(),
        power_w: "/readings/active_power".into(),
    }
}

const POINTERS: &[&str] = &[
    "",
    "/",
    "//",
    "~",
    "/~0",
    "/~1",
    "/~2",
    "/~01",
    "/0",
    "/-",
    "/01",
    "/a/0",
    "/outlets",
    "outlet",
    "power_w",
    "/meta/id",
    "/readings/active_power",
    "/temperature",
    "/rpm",
    "/ts",
];

fn field_map() -> BoxedStrategy<FieldMap> {
    prop_oneof![
        2 => Just(FieldMap::default()),
        1 => Just(pointer_map()),
        2 => (pick(POINTERS), pick(POINTERS), pick(POINTERS))
            .prop_map(|(items, id, power_w)| FieldMap { items, id, power_w }),
    ]
    .boxed()
}

/// An outlet entry with its id and power both by name and under the pointers of `pointer_map`.
fn pdu_outlet() -> BoxedStrategy<Value> {
    let id = prop_oneof![
        3 => any::<u32>().prop_map(Value::from),
        3 => text().prop_map(Value::from),
        1 => number(),
        1 => json(),
    ];
    (
        prop::option::weighted(0.9, id),
        prop::option::weighted(0.9, number()),
        prop::collection::vec((key(), json()), 0..3),
    )
        .prop_map(|(id, power, extra)| {
            let mut outlet: Map<String, Value> = extra.into_iter().collect();
            if let Some(id) = id {
                outlet.insert("outlet".to_owned(), id.clone());
                outlet.insert("meta".to_owned(), json!({ "id": id }));
            }
            if let Some(power) = power {
                outlet.insert("power_w".to_owned(), power.clone());
                outlet.insert("readings".to_owned(), json!({ "active_power": power }));
            }
            Value::Object(outlet)
        })
        .boxed()
}

fn pdu_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(pdu_outlet(), 0..6)
            .prop_map(|outlets| json!({ "outlets": outlets }).to_string().into_bytes()),
        1 => prop::collection::vec(pdu_outlet(), 0..6)
            .prop_map(|outlets| Value::from(outlets).to_string().into_bytes()),
        1 => json().prop_map(|v| v.to_string().into_bytes()),
    ]
    .boxed()
}

/// When the MQTT tests' messages arrive: 2026-03-01T12:00:00Z.
fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A `ts`: RFC 3339 text, unix seconds around `received` (whole or fractional), junk.
fn ts_value() -> BoxedStrategy<Value> {
    let at = received().timestamp();
    prop_oneof![
        2 => prop::sample::select(TIMES).prop_map(Value::from),
        2 => (-40 * 86_400i64..86_400).prop_map(move |d| Value::from(at + d)),
        2 => (-40.0 * 86_400.0f64..86_400.0).prop_map(move |d| Value::from(at as f64 + d)),
        1 => number(),
        1 => text().prop_map(Value::from),
        1 => Just(Value::Null),
    ]
    .boxed()
}

fn ts_text() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(TIMES).prop_map(Value::from),
        1 => ts_value(),
    ]
    .boxed()
}

const MODES: &[&str] = &["curtail", "normal", "Curtail", "panic", ""];

/// Sets each present field of a message over some extra entries.
fn message(extra: Vec<(String, Value)>, fields: Vec<(&str, Option<Value>)>) -> Vec<u8> {
    let mut message: Map<String, Value> = extra.into_iter().collect();
    for (field, value) in fields {
        if let Some(value) = value {
            message.insert(field.to_owned(), value);
        }
    }
    Value::Object(message).to_string().into_bytes()
}

/// A demand-response message: each field usually there, with hostile values.
fn dr_body() -> BoxedStrategy<Vec<u8>> {
    (
        prop::option::weighted(
            0.9,
            prop_oneof![4 => text().prop_map(Value::from), 1 => number(), 1 => json()],
        ),
        prop::option::weighted(
            0.95,
            prop_oneof![4 => prop::sample::select(MODES).prop_map(Value::from), 1 => json()],
        ),
        prop::option::weighted(0.8, number()),
        prop::option::weighted(0.8, ts_text()),
        prop::option::weighted(0.95, ts_text()),
        prop::collection::vec((key(), json()), 0..3),
    )
        .prop_map(|(event_id, mode, target_kw, deadline, issued, extra)| {
            message(
                extra,
                vec![
                    ("event_id", event_id),
                    ("mode", mode),
                    ("target_kw", target_kw),
                    ("deadline", deadline),
                    ("issued", issued),
                ],
            )
        })
        .boxed()
}

/// A price message: each field usually there, with hostile values.
fn price_body() -> BoxedStrategy<Vec<u8>> {
    (
        prop::option::weighted(0.95, ts_text()),
        prop::option::weighted(
            0.9,
            prop_oneof![4 => text().prop_map(Value::from), 1 => number(), 1 => json()],
        ),
        prop::option::weighted(0.9, number()),
        prop::collection::vec((key(), json()), 0..3),
    )
        .prop_map(|(start, id, price, extra)| {
            message(
                extra,
                vec![
                    ("interval_start", start),
                    ("interval_id", id),
                    ("price_per_mwh", price),
                ],
            )
        })
        .boxed()
}

fn site() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just("north".to_owned()),
        1 => text(),
    ]
    .boxed()
}

/// Topic maps that pass `TopicMap::validate`, one per kind and payload form.
fn mapped_maps() -> Vec<TopicMap> {
    vec![
        TopicMap {
            pattern: "farm/+/sensors/+".into(),
            site: "{1}".into(),
            sensor: "{2}".into(),
            kind: SensorKind::Temperature,
            value: Some("/temperature".into()),
        },
        TopicMap {
            pattern: "farm/+/humidity/+".into(),
            site: "site-{1}".into(),
            sensor: "h{2}".into(),
            kind: SensorKind::Humidity,
            value: None,
        },
        TopicMap {
            pattern: "+/fan".into(),
            site: "north".into(),
            sensor: "{1}".into(),
            kind: SensorKind::Fan,
            value: Some("/rpm".into()),
        },
    ]
}

/// One level of a topic (no `/`), as a sensor names itself.
fn capture() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[A-Za-z0-9_-]{1,20}",
        3 => text().prop_map(|s| s.replace('/', "_")),
        1 => Just(String::new()),
        1 => Just("$SYS".to_owned()),
        1 => Just("x".repeat(70)),
    ]
    .boxed()
}

/// An MQTT payload: bytes, text, a bare number, a JSON reading with a `ts`, any JSON.
fn mqtt_payload() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => bytes(),
        1 => text().prop_map(String::into_bytes),
        2 => (-100.0f64..200.0).prop_map(|v| v.to_string().into_bytes()),
        2 => (
            number(),
            number(),
            prop::option::of(ts_value()),
            prop::collection::vec((key(), json()), 0..3),
        )
            .prop_map(|(temperature, rpm, ts, extra)| {
                let mut payload: Map<String, Value> = extra.into_iter().collect();
                payload.insert("temperature".to_owned(), temperature);
                payload.insert("rpm".to_owned(), rpm);
                if let Some(ts) = ts {
                    payload.insert("ts".to_owned(), ts);
                }
                Value::Object(payload).to_string().into_bytes()
            }),
        1 => json().prop_map(|v| v.to_string().into_bytes()),
    ]
    .boxed()
}

const PATTERNS: &[&str] = &[
    "farm/+/sensors/+",
    "+",
    "+/+",
    "#",
    "farm/#",
    "",
    "/",
    "+/fan",
    "$SYS/+",
    "a+/b",
    "farm/+/+/+/+",
];
const TEMPLATES: &[&str] = &[
    "{1}",
    "{2}",
    "{0}",
    "{3}",
    "{",
    "}",
    "{}",
    "{1}{2}",
    "x{1}y",
    "{99999999999999999999}",
    "{-1}",
    "{1",
    "{1}}",
    "{{1}",
    "site-{1}",
    "north",
    "",
];
const KINDS: &[SensorKind] = &[
    SensorKind::Temperature,
    SensorKind::Humidity,
    SensorKind::Fan,
];
const TOPICS: &[&str] = &[
    "$SYS/x",
    "farm//sensors/",
    "/",
    "",
    "farm/a/sensors/b/c",
    "+/fan",
];

/// A topic map as config could hold it, not validated (`map_message` does not require it).
fn topic_map() -> BoxedStrategy<TopicMap> {
    (
        pick(PATTERNS),
        pick(TEMPLATES),
        pick(TEMPLATES),
        prop::sample::select(KINDS),
        prop::option::of(pick(POINTERS)),
    )
        .prop_map(|(pattern, site, sensor, kind, value)| TopicMap {
            pattern,
            site,
            sensor,
            kind,
            value,
        })
        .boxed()
}

fn topic() -> BoxedStrategy<String> {
    prop_oneof![
        2 => text(),
        2 => (capture(), capture()).prop_map(|(a, b)| format!("farm/{a}/sensors/{b}")),
        1 => capture().prop_map(|a| format!("{a}/fan")),
        1 => capture(),
        1 => prop::sample::select(TOPICS).prop_map(str::to_owned),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// What must hold of every outcome.
// ---------------------------------------------------------------------------------------------

/// A pure parser refuses only with `Garbage` (a reason and a short excerpt) or `OutOfRange`.
fn check_refusal(e: &DeviceError) -> Result<(), TestCaseError> {
    prop_assert!(!e.to_string().is_empty());
    match e {
        DeviceError::Garbage { reason, excerpt } => {
            prop_assert!(!reason.is_empty());
            let chars = excerpt.chars().count();
            prop_assert!(chars <= EXCERPT_BYTES, "an excerpt of {chars} characters");
        }
        DeviceError::OutOfRange { .. } => {}
        other => {
            return Err(TestCaseError::fail(format!(
                "a pure parser answered {other:?}"
            )));
        }
    }
    Ok(())
}

/// A miner's report: figures finite and plausible, a state that fits the hashrate, and a
/// `MinerStatus` built from it (as the poller builds it) valid.
fn check_report(r: &MinerReport) -> Result<(), TestCaseError> {
    prop_assert!(
        r.hashrate_hs.is_finite() && r.hashrate_hs >= 0.0,
        "hashrate {}",
        r.hashrate_hs
    );
    if let Some(t) = r.temp_c {
        // bmminer's 0 for an absent sensor is skipped, never reported.
        prop_assert!((-60.0..=150.0).contains(&t) && t != 0.0, "temperature {t}");
    }
    if let Some(rpm) = r.fan_rpm {
        prop_assert!((0.0..=100_000.0).contains(&rpm), "fan {rpm}");
    }
    if let Some(w) = r.power_w {
        prop_assert!((0.0..=100_000.0).contains(&w), "power {w}");
    }
    match r.state {
        MinerState::Sleeping => prop_assert!(r.hashrate_hs == 0.0, "asleep at {}", r.hashrate_hs),
        MinerState::Mining => prop_assert!(r.hashrate_hs > 0.0, "mining at 0"),
        MinerState::Offline => {
            return Err(TestCaseError::fail("a reply said the miner is offline"));
        }
        MinerState::Idle | MinerState::Error => {}
    }
    let now = Utc::now();
    let status = MinerStatus {
        site: "north".into(),
        machine: "m1".into(),
        ts: now,
        hashrate_hs: r.hashrate_hs,
        temp_c: r.temp_c,
        fan_rpm: r.fan_rpm,
        power_w: r.power_w,
        state: r.state,
    };
    let checked = status.validate(&ValidationPolicy::default(), now);
    prop_assert!(checked.is_ok(), "{checked:?} for {r:?}");
    Ok(())
}

/// IotaWatt: the columns read are asked-for columns, in order, each at most once per position,
/// with watts in 0..=10 MW.
fn check_iotawatt(columns: &[String], read: &[(String, f64)]) -> Result<(), TestCaseError> {
    prop_assert!(read.len() <= columns.len());
    let mut rest = columns.iter();
    for (name, watts) in read {
        prop_assert!(
            rest.any(|c| c == name),
            "{name:?} is not a column, in order"
        );
        prop_assert!((0.0..=1e7).contains(watts), "{name:?}: {watts}");
    }
    Ok(())
}

/// RoomAlert: at most one sensor per entry, each with a temperature or a humidity, in range.
fn check_roomalert(body: &[u8], sensors: &[RoomAlertSensor]) -> Result<(), TestCaseError> {
    let sent: Value = serde_json::from_slice(body)?;
    let entries: usize = ["internal_sen", "sensor"]
        .iter()
        .filter_map(|k| sent.get(*k)?.as_array())
        .map(Vec::len)
        .sum();
    prop_assert!(
        sensors.len() <= entries,
        "{} sensors from {entries} entries",
        sensors.len()
    );
    for s in sensors {
        prop_assert!(s.temp_c.is_some() || s.humidity_pct.is_some(), "{s:?}");
        if let Some(t) = s.temp_c {
            prop_assert!((-60.0..=150.0).contains(&t), "{s:?}");
        }
        if let Some(h) = s.humidity_pct {
            prop_assert!((0.0..=100.0).contains(&h), "{s:?}");
        }
    }
    Ok(())
}

/// PDU: exactly one reading per outlet entry (none dropped: an outlet that stopped reporting
/// must not look like one drawing nothing), each with an id and watts in 0..=10 MW.
fn check_pdu(body: &[u8], map: &FieldMap, read: &[(String, f64)]) -> Result<(), TestCaseError> {
    let sent: Value = serde_json::from_slice(body)?;
    let outlets = sent
        .pointer(&map.items)
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    prop_assert_eq!(read.len(), outlets);
    for (id, watts) in read {
        prop_assert!(!id.is_empty());
        prop_assert!((0.0..=1e7).contains(watts), "outlet {id:?}: {watts}");
    }
    Ok(())
}

/// A grid signal: the kind its feed gives, with the figures that kind needs, in range; valid
/// as of its own time wherever the parser's site and id would pass the schema.
fn check_signal(signal: &GridSignal, site: &str, price_feed: bool) -> Result<(), TestCaseError> {
    prop_assert_eq!(signal.site.as_str(), site);
    prop_assert!(!signal.event_id.is_empty());
    match signal.kind {
        GridSignalKind::Curtail => {
            prop_assert!(!price_feed);
            let kw = signal.target_kw.unwrap_or(f64::NAN);
            prop_assert!(
                (0.0..=1e7).contains(&kw),
                "target_kw {:?}",
                signal.target_kw
            );
            prop_assert!(
                signal.deadline.is_some_and(|d| d >= signal.ts),
                "deadline {:?}, issued {}",
                signal.deadline,
                signal.ts
            );
            prop_assert!(signal.price_per_mwh.is_none());
        }
        GridSignalKind::Normal => {
            prop_assert!(!price_feed);
            prop_assert!(
                signal.target_kw.is_none()
                    && signal.deadline.is_none()
                    && signal.price_per_mwh.is_none(),
                "{signal:?}"
            );
        }
        GridSignalKind::Price => {
            prop_assert!(price_feed);
            let price = signal.price_per_mwh.unwrap_or(f64::NAN);
            prop_assert!(
                (-1e6..=1e6).contains(&price),
                "price {:?}",
                signal.price_per_mwh
            );
            prop_assert!(signal.target_kw.is_none() && signal.deadline.is_none());
        }
    }
    // The parser leaves the site (config) and the id's length and characters to the schema.
    if is_token(site)
        && check_text("event_id", &signal.event_id, MAX_ID_BYTES).is_ok()
        && (1000..=9000).contains(&signal.ts.year())
    {
        let checked = signal.validate(&ValidationPolicy::default(), signal.ts);
        prop_assert!(checked.is_ok(), "{checked:?} for {signal:?}");
    }
    Ok(())
}

/// An MQTT outcome: a reading has token ids, a value in its kind's range and a `ts` the default
/// policy accepts at `received`; a refusal names the topic and keeps a short excerpt.
fn check_mapped(
    outcome: &Result<Option<SensorReading>, MappedError>,
    topic: &str,
    received: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    match outcome {
        Ok(None) => {}
        Ok(Some(r)) => {
            prop_assert!(is_token(&r.site) && is_token(&r.sensor), "{r:?}");
            // The ranges `SensorReading` accepts.
            let (lo, hi): (f64, f64) = match r.kind {
                SensorKind::Temperature => (-60.0, 150.0),
                SensorKind::Humidity => (0.0, 100.0),
                SensorKind::Fan => (0.0, 100_000.0),
            };
            prop_assert!((lo..=hi).contains(&r.value), "{r:?}");
            let policy = ValidationPolicy::default();
            let window = received - policy.max_past..=received + policy.max_future;
            prop_assert!(window.contains(&r.ts), "{r:?}");
            let checked = r.validate(&policy, received);
            prop_assert!(checked.is_ok(), "{checked:?} for {r:?}");
        }
        Err(e) => {
            prop_assert_eq!(e.topic.as_str(), topic);
            prop_assert!(!e.reason.is_empty());
            // 64 characters and an ellipsis.
            prop_assert!(e.excerpt.chars().count() <= 65, "{:?}", e.excerpt);
        }
    }
    Ok(())
}

/// Every parser on one body, each outcome checked.
fn read_everything(body: &[u8]) -> Result<(), TestCaseError> {
    match decode_reply(body) {
        Ok(reply) => {
            prop_assert!(reply.is_object(), "decoded {reply}");
            match parse_report(&reply) {
                Ok(report) => check_report(&report)?,
                Err(e) => check_refusal(&e)?,
            }
        }
        Err(e) => check_refusal(&e)?,
    }
    let columns = ["Input_1".to_owned(), "Input_2".to_owned()];
    match parse_iotawatt(body, &columns) {
        Ok(read) => check_iotawatt(&columns, &read)?,
        Err(e) => check_refusal(&e)?,
    }
    match parse_roomalert(body) {
        Ok(sensors) => check_roomalert(body, &sensors)?,
        Err(e) => check_refusal(&e)?,
    }
    for map in [FieldMap::default(), pointer_map()] {
        match parse_pdu(body, &map) {
            Ok(read) => check_pdu(body, &map, &read)?,
            Err(e) => check_refusal(&e)?,
        }
    }
    match parse_dr_signal(body, "north") {
        Ok(signal) => check_signal(&signal, "north", false)?,
        Err(e) => check_refusal(&e)?,
    }
    match parse_price_signal(body, "north") {
        Ok(signal) => check_signal(&signal, "north", true)?,
        Err(e) => check_refusal(&e)?,
    }
    let maps = mapped_maps();
    let at = received();
    for topic in [
        "farm/north/sensors/t1",
        "farm/north/humidity/h1",
        "rack4/fan",
    ] {
        check_mapped(&map_message(&maps, topic, body, at), topic, at)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1_000)))]

    #[test]
    fn any_bytes_are_read_or_refused(body in bytes()) {
        read_everything(&body)?;
    }

    #[test]
    fn plausible_iotawatt_rows_read_back(
        cells in prop::collection::vec(
            ("[A-Za-z0-9_]{1,12}", prop::option::weighted(0.8, 0.0f64..1e7)),
            0..6,
        ),
        with_time in any::<bool>(),
        header in any::<bool>(),
    ) {
        let columns: Vec<String> = cells.iter().map(|(c, _)| c.clone()).collect();
        let mut row: Vec<Value> = Vec::new();
        if with_time {
            row.push(Value::from("2026-03-01T12:00:00"));
        }
        row.extend(cells.iter().map(|(_, v)| v.map_or(Value::Null, Value::from)));
        let rows = json!([row]);
        let value = if header { json!({"range": [1, 2], "data": rows}) } else { rows };
        let body = value.to_string();
        let read = parse_iotawatt(body.as_bytes(), &columns)?;
        let sent: Value = serde_json::from_str(&body)?;
        let last = if header { &sent["data"][0] } else { &sent[0] };
        let skip = usize::from(with_time);
        let want: Vec<(String, f64)> = cells
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.is_some())
            .map(|(i, (c, _))| (c.clone(), last[skip + i].as_f64().unwrap_or(f64::NAN)))
            .collect();
        prop_assert_eq!(read, want);
    }

    #[test]
    fn roomalert_replies_read_back(
        name in text(),
        sensors in prop::collection::vec(
            (text(), prop::option::of(-60.0f64..150.0), prop::option::of(0.0f64..100.0)),
            0..6,
        ),
    ) {
        let sensors: Vec<RoomAlertSensor> = sensors
            .into_iter()
            .filter(|(_, t, h)| t.is_some() || h.is_some())
            .map(|(label, temp_c, humidity_pct)| RoomAlertSensor { label, temp_c, humidity_pct })
            .collect();
        let body = roomalert_reply(&name, &sensors).to_string();
        let read = parse_roomalert(body.as_bytes())?;
        // The device prints two decimals.
        let printed = |v: f64| format!("{v:.2}").parse::<f64>().unwrap_or(f64::NAN);
        let want: Vec<RoomAlertSensor> = sensors
            .iter()
            .map(|s| RoomAlertSensor {
                label: s.label.clone(),
                temp_c: s.temp_c.map(printed),
                humidity_pct: s.humidity_pct.map(printed),
            })
            .collect();
        prop_assert_eq!(read, want);
    }

    #[test]
    fn pdu_replies_read_back(outlets in prop::collection::vec((any::<u32>(), 0.0f64..1e7), 0..8)) {
        let body = pdu_reply(&outlets).to_string();
        let read = parse_pdu(body.as_bytes(), &FieldMap::default())?;
        let sent: Value = serde_json::from_str(&body)?;
        let want: Vec<(String, f64)> = outlets
            .iter()
            .enumerate()
            .map(|(i, (outlet, _))| {
                (outlet.to_string(), sent["outlets"][i]["power_w"].as_f64().unwrap_or(f64::NAN))
            })
            .collect();
        prop_assert_eq!(read, want);
    }

    #[test]
    fn curtail_messages_read_back(
        event_id in text(),
        target in 0.0f64..1e7,
        issued in 0i64..253_000_000_000,
        ahead in 0i64..31_536_000,
        site in "[a-z][a-z0-9-]{0,20}",
    ) {
        let issued = DateTime::from_timestamp(issued, 0)
            .ok_or_else(|| TestCaseError::fail("issued out of range"))?;
        let deadline = issued + chrono::Duration::seconds(ahead);
        let sent = DrMessage {
            event_id: event_id.clone(),
            mode: DrMode::Curtail,
            target_kw: Some(target),
            deadline: Some(deadline),
            issued,
        };
        let body = dr_reply(&sent).to_string();
        // An event id the schemas would refuse (empty, too long, control characters) is
        // refused at the parser, before it can name a message.
        if check_text("event_id", &event_id, MAX_ID_BYTES).is_err() {
            prop_assert!(parse_dr_signal(body.as_bytes(), &site).is_err());
            return Ok(());
        }
        let signal = parse_dr_signal(body.as_bytes(), &site)?;
        check_signal(&signal, &site, false)?;
        let reparsed: Value = serde_json::from_str(&body)?;
        prop_assert_eq!(signal.kind, GridSignalKind::Curtail);
        prop_assert_eq!(&signal.event_id, &event_id);
        prop_assert_eq!(signal.target_kw, reparsed["target_kw"].as_f64());
        prop_assert_eq!(signal.deadline, Some(deadline));
        prop_assert_eq!(signal.ts, issued);
    }

    #[test]
    fn plausible_mqtt_readings_are_accepted(
        first in "[A-Za-z0-9_-]{1,20}",
        second in "[A-Za-z0-9_-]{1,20}",
        humidity in 0.0f64..=100.0,
        // Inside the range by more than serde_json's last-digit rounding of the reparsed value.
        temperature in -59.0f64..149.0,
        ago in -300i64..86_400,
    ) {
        let maps = mapped_maps();
        let at = received();

        let topic = format!("farm/{first}/humidity/{second}");
        let read = map_message(&maps, &topic, humidity.to_string().as_bytes(), at);
        let want = SensorReading {
            site: format!("site-{first}"),
            sensor: format!("h{second}"),
            kind: SensorKind::Humidity,
            value: humidity,
            ts: at,
        };
        prop_assert_eq!(read, Ok(Some(want)));

        let topic = format!("farm/{first}/sensors/{second}");
        let ts = at.timestamp() - ago;
        let payload = json!({"temperature": temperature, "ts": ts}).to_string();
        let read = map_message(&maps, &topic, payload.as_bytes(), at);
        let sent: Value = serde_json::from_str(&payload)?;
        let want = SensorReading {
            site: first.clone(),
            sensor: second.clone(),
            kind: SensorKind::Temperature,
            value: sent["temperature"].as_f64().unwrap_or(f64::NAN),
            ts: DateTime::from_timestamp(ts, 0).ok_or_else(|| TestCaseError::fail("ts"))?,
        };
        prop_assert_eq!(read, Ok(Some(want)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2_000)))]

    #[test]
    fn any_json_is_read_or_refused(value in json()) {
        read_everything(value.to_string().as_bytes())?;
        match parse_report(&value) {
            Ok(report) => check_report(&report)?,
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn damaged_json_is_read_or_refused(body in near_json()) {
        read_everything(&body)?;
    }

    #[test]
    fn objects_decode_as_serde_reads_them(
        value in object_json(),
        pretty in any::<bool>(),
        lead in "[ \\t\\r\\n\\x00]{0,3}",
        trail in "[ \\t\\r\\n\\x00]{0,3}",
    ) {
        let text = if pretty { serde_json::to_string_pretty(&value)? } else { value.to_string() };
        let expected: Value = serde_json::from_str(&text)?;
        let raw = format!("{lead}{text}{trail}");
        prop_assert_eq!(decode_reply(raw.as_bytes()).map_err(|e| e.to_string()), Ok(expected));
    }

    #[test]
    fn bmminer_separator_faults_are_repaired(
        key in text(),
        items in prop::collection::vec(object_json(), 0..5),
        comma_first in any::<bool>(),
        comma_last in any::<bool>(),
    ) {
        // `[,{…}{…},]`: the objects back to back, a comma after `[` and before `]`.
        let joined: String = items.iter().map(Value::to_string).collect();
        let raw = format!(
            "{{{}:[{}{joined}{}]}}",
            Value::from(key.clone()),
            if comma_first { "," } else { "" },
            if comma_last { "," } else { "" },
        );
        let mut whole = Map::new();
        whole.insert(key, Value::from(items));
        let expected: Value = serde_json::from_str(&Value::Object(whole).to_string())?;
        prop_assert_eq!(decode_reply(raw.as_bytes()).map_err(|e| e.to_string()), Ok(expected));
    }

    #[test]
    fn plausible_summaries_are_read_exactly(
        mhs in 0.0f64..1e11,
        temps in prop::collection::vec(-60.0f64..150.0, 0..6),
        fans in prop::collection::vec(0.0f64..100_000.0, 0..4),
        power in prop::option::of(0.0f64..100_000.0),
        pool_alive in any::<bool>(),
    ) {
        let mut summary = Map::new();
        summary.insert("MHS 5s".to_owned(), Value::from(mhs));
        for (i, t) in temps.iter().enumerate() {
            summary.insert(format!("temp{}", i + 1), Value::from(*t));
        }
        for (i, rpm) in fans.iter().enumerate() {
            summary.insert(format!("fan{}", i + 1), Value::from(*rpm));
        }
        if let Some(w) = power {
            summary.insert("Power".to_owned(), Value::from(w));
        }
        let pool = if pool_alive { "Alive" } else { "Dead" };
        let reply = json!({
            "STATUS": [{"STATUS": "S", "Code": 11, "Msg": "Summary"}],
            "SUMMARY": [Value::Object(summary)],
            "POOLS": [{"Status": pool}],
            "id": 1,
        });
        let report = parse_report(&reply)?;
        check_report(&report)?;
        prop_assert_eq!(report.hashrate_hs, mhs * 1e6);
        let hottest = temps.iter().copied().filter(|t| *t != 0.0).reduce(f64::max);
        prop_assert_eq!(report.temp_c, hottest);
        prop_assert_eq!(report.fan_rpm, fans.iter().copied().reduce(f64::max));
        prop_assert_eq!(report.power_w, power);
        let state = if mhs > 0.0 && pool_alive { MinerState::Mining } else { MinerState::Idle };
        prop_assert_eq!(report.state, state);
    }

    #[test]
    fn iotawatt_tables_are_read_or_refused((columns, body) in iotawatt_case()) {
        match parse_iotawatt(&body, &columns) {
            Ok(read) => check_iotawatt(&columns, &read)?,
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn roomalert_bodies_are_read_or_refused(body in roomalert_body()) {
        match parse_roomalert(&body) {
            Ok(sensors) => check_roomalert(&body, &sensors)?,
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn pdu_bodies_are_read_or_refused(body in pdu_body(), map in field_map()) {
        match parse_pdu(&body, &map) {
            Ok(read) => check_pdu(&body, &map, &read)?,
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn mqtt_messages_under_any_maps_are_read_or_refused(
        maps in prop::collection::vec(topic_map(), 0..4),
        topic in topic(),
        payload in mqtt_payload(),
    ) {
        let at = received();
        let outcome = map_message(&maps, &topic, &payload, at);
        check_mapped(&outcome, &topic, at)?;
        if maps.is_empty() {
            prop_assert!(matches!(outcome, Ok(None)), "{outcome:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3_000)))]

    #[test]
    fn cgminer_replies_are_read_or_refused(reply in cg_reply(), nuls in 0usize..3) {
        match parse_report(&reply) {
            Ok(report) => check_report(&report)?,
            Err(e) => check_refusal(&e)?,
        }
        // The same reply off the wire, NUL-terminated, decodes to what it says.
        let text = reply.to_string();
        let expected: Value = serde_json::from_str(&text)?;
        let mut raw = text.into_bytes();
        raw.extend(std::iter::repeat_n(0u8, nuls));
        match decode_reply(&raw) {
            Ok(decoded) => prop_assert_eq!(decoded, expected),
            Err(e) => {
                check_refusal(&e)?;
                prop_assert!(!expected.is_object(), "refused an object: {e}");
            }
        }
    }

    #[test]
    fn demand_response_messages_are_read_or_refused(body in dr_body(), site in site()) {
        match parse_dr_signal(&body, &site) {
            Ok(signal) => check_signal(&signal, &site, false)?,
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn price_messages_are_read_or_refused(body in price_body(), site in site()) {
        match parse_price_signal(&body, &site) {
            Ok(signal) => check_signal(&signal, &site, true)?,
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn mqtt_messages_on_mapped_topics_are_read_or_refused(
        which in 0usize..3,
        first in capture(),
        second in capture(),
        payload in mqtt_payload(),
    ) {
        let maps = mapped_maps();
        let at = received();
        let topic = match which {
            0 => format!("farm/{first}/sensors/{second}"),
            1 => format!("farm/{first}/humidity/{second}"),
            _ => format!("{first}/fan"),
        };
        let outcome = map_message(&maps, &topic, &payload, at);
        check_mapped(&outcome, &topic, at)?;
        // As MQTT requires, a leading wildcard does not match a `$` topic; every other topic
        // built from a pattern matches it (and only it).
        if which == 2 && first.starts_with('$') {
            prop_assert!(matches!(outcome, Ok(None)), "{outcome:?}");
            return Ok(());
        }
        prop_assert!(!matches!(outcome, Ok(None)), "{topic:?} matched no map");
        if let Ok(Some(r)) = &outcome {
            let map = &maps[which];
            prop_assert_eq!(r.kind, map.kind);
            let (site, sensor) = match which {
                0 => (first.clone(), second.clone()),
                1 => (format!("site-{first}"), format!("h{second}")),
                _ => ("north".to_owned(), first.clone()),
            };
            prop_assert_eq!(&r.site, &site);
            prop_assert_eq!(&r.sensor, &sensor);
            match &map.value {
                None => {
                    let sent = std::str::from_utf8(&payload)
                        .ok()
                        .and_then(|t| t.trim().parse::<f64>().ok());
                    prop_assert_eq!(Some(r.value), sent);
                    prop_assert_eq!(r.ts, at);
                }
                Some(pointer) => {
                    let sent: Value = serde_json::from_slice(&payload)?;
                    prop_assert_eq!(sent.pointer(pointer).and_then(Value::as_f64), Some(r.value));
                    if sent.get("ts").is_none_or(Value::is_null) {
                        prop_assert_eq!(r.ts, at);
                    }
                }
            }
        }
    }
}
