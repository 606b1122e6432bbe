//! Hostile values for the device-boundary properties: text, keys, numbers and JSON of any
//! shape, often holding the keys the parsers look for.

use super::*;

/// Keys the parsers look for, so that JSON of any shape often holds them: cgminer's status
/// keys, sections, commands and fields, and the other devices' keys.
pub(crate) fn keys() -> Vec<&'static str> {
    let status: &[&str] = &["STATUS", "Msg", "Code"];
    [status, CG_SECTIONS, CG_COMMANDS, CG_FIELDS, DEVICE_KEYS].concat()
}

/// The keys the other devices' parsers look for.
const DEVICE_KEYS: &[&str] = &[
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
pub(crate) const WORDS: &[&str] = &[
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
pub(crate) const EDGE_NUMBERS: &[f64] = &[
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
pub(crate) const TIMES: &[&str] = &[
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
pub(crate) const CONTROL: &str = "\u{0}\r\n\t\u{1b}[2J\u{7f}\u{85}\u{2028}\u{202e}\u{fffd}";

pub(crate) fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => prop::sample::select(keys()).prop_map(str::to_owned),
        1 => prop::sample::select(TIMES).prop_map(str::to_owned),
        1 => "[0-9a-fA-F.eE+-]{0,24}",
        1 => Just("x".repeat(10_000)),
        1 => Just(CONTROL.to_owned()),
    ]
    .boxed()
}

pub(crate) fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(keys()).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

/// `list`'s entries most of the time, hostile text otherwise.
pub(crate) fn pick(list: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(list).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

/// JSON numbers of every size and sign, and the texts devices send for numbers.
pub(crate) fn number() -> BoxedStrategy<Value> {
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

pub(crate) fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        4 => number(),
        4 => text().prop_map(Value::from),
    ]
    .boxed()
}

/// An object of up to `most` entries (a repeated key keeps its last value).
pub(crate) fn object(
    key: BoxedStrategy<String>,
    value: BoxedStrategy<Value>,
    most: usize,
) -> BoxedStrategy<Value> {
    prop::collection::vec((key, value), 0..most)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
        .boxed()
}

/// JSON of any shape, with hostile leaves and the parsers' keys.
pub(crate) fn json() -> BoxedStrategy<Value> {
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
pub(crate) fn object_json() -> BoxedStrategy<Value> {
    object(key(), json(), 8)
}

pub(crate) fn bytes() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..4096).boxed()
}

/// Bytes the damage inserts or writes.
pub(crate) const MANGLE: &[u8] = b",:{}[]\"\\\0 \n-.e0";

/// JSON with one fault: cut off, a byte inserted, removed or overwritten.
pub(crate) fn near_json() -> BoxedStrategy<Vec<u8>> {
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
