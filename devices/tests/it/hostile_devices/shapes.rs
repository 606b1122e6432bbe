//! Replies shaped the way each device answers (cgminer, IotaWatt, RoomAlert, PDU, the grid
//! and price feeds, MQTT), with hostile values where the parsers read.

use super::*;

pub(crate) const CG_STATUS: &[&str] = &["S", "I", "W", "E", "F", "X", "", "s"];
pub(crate) const CG_CODES: &[i64] = &[11, 14, 45, 300, 0, -1, i64::MAX];
pub(crate) const CG_SECTIONS: &[&str] = &[
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
pub(crate) const CG_COMMANDS: &[&str] = &["summary", "stats", "devs", "pools", "bogus", "id"];
pub(crate) const CG_FIELDS: &[&str] = &[
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

pub(crate) fn cg_field() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::sample::select(CG_FIELDS).prop_map(str::to_owned),
        1 => key(),
    ]
    .boxed()
}

pub(crate) fn cg_value() -> BoxedStrategy<Value> {
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
pub(crate) fn cg_status() -> BoxedStrategy<Value> {
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
pub(crate) fn cg_command() -> BoxedStrategy<Value> {
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
pub(crate) fn cg_reply() -> BoxedStrategy<Value> {
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
pub(crate) fn iotawatt_case() -> BoxedStrategy<(Vec<String>, Vec<u8>)> {
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

pub(crate) const RA_FIELDS: &[&str] = &["lab", "label", "tc", "tf", "h", "status", "hic"];

/// A RoomAlert `/getData.json` body: `internal_sen` and `sensor` arrays of entries.
pub(crate) fn roomalert_body() -> BoxedStrategy<Vec<u8>> {
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
pub(crate) fn pointer_map() -> FieldMap {
    FieldMap {
        items: String::new(),
        id: "/meta/id".into(),
        power_w: "/readings/active_power".into(),
    }
}

pub(crate) const POINTERS: &[&str] = &[
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

pub(crate) fn field_map() -> BoxedStrategy<FieldMap> {
    prop_oneof![
        2 => Just(FieldMap::default()),
        1 => Just(pointer_map()),
        2 => (pick(POINTERS), pick(POINTERS), pick(POINTERS))
            .prop_map(|(items, id, power_w)| FieldMap { items, id, power_w }),
    ]
    .boxed()
}

/// An outlet entry with its id and power both by name and under the pointers of `pointer_map`.
pub(crate) fn pdu_outlet() -> BoxedStrategy<Value> {
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

pub(crate) fn pdu_body() -> BoxedStrategy<Vec<u8>> {
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
pub(crate) fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A `ts`: RFC 3339 text, unix seconds around `received` (whole or fractional), junk.
pub(crate) fn ts_value() -> BoxedStrategy<Value> {
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

pub(crate) fn ts_text() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(TIMES).prop_map(Value::from),
        1 => ts_value(),
    ]
    .boxed()
}

pub(crate) const MODES: &[&str] = &["curtail", "normal", "Curtail", "panic", ""];

/// Sets each present field of a message over some extra entries.
pub(crate) fn message(extra: Vec<(String, Value)>, fields: Vec<(&str, Option<Value>)>) -> Vec<u8> {
    let mut message: Map<String, Value> = extra.into_iter().collect();
    for (field, value) in fields {
        if let Some(value) = value {
            message.insert(field.to_owned(), value);
        }
    }
    Value::Object(message).to_string().into_bytes()
}

/// A demand-response message: each field usually there, with hostile values.
pub(crate) fn dr_body() -> BoxedStrategy<Vec<u8>> {
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
pub(crate) fn price_body() -> BoxedStrategy<Vec<u8>> {
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

pub(crate) fn site() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just("north".to_owned()),
        1 => text(),
    ]
    .boxed()
}

/// Topic maps that pass `TopicMap::validate`, one per kind and payload form.
pub(crate) fn mapped_maps() -> Vec<TopicMap> {
    vec![
        crate::topic_maps::temperatures(),
        crate::topic_maps::humidities(),
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
pub(crate) fn capture() -> BoxedStrategy<String> {
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
pub(crate) fn mqtt_payload() -> BoxedStrategy<Vec<u8>> {
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

pub(crate) const PATTERNS: &[&str] = &[
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
pub(crate) const TEMPLATES: &[&str] = &[
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
pub(crate) const KINDS: &[SensorKind] = &[
    SensorKind::Temperature,
    SensorKind::Humidity,
    SensorKind::Fan,
];
pub(crate) const TOPICS: &[&str] = &[
    "$SYS/x",
    "farm//sensors/",
    "/",
    "",
    "farm/a/sensors/b/c",
    "+/fan",
];

/// A topic map as config could hold it, not validated (`map_message` does not require it).
pub(crate) fn topic_map() -> BoxedStrategy<TopicMap> {
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

pub(crate) fn topic() -> BoxedStrategy<String> {
    prop_oneof![
        2 => text(),
        2 => (capture(), capture()).prop_map(|(a, b)| format!("farm/{a}/sensors/{b}")),
        1 => capture().prop_map(|a| format!("{a}/fan")),
        1 => capture(),
        1 => prop::sample::select(TOPICS).prop_map(str::to_owned),
    ]
    .boxed()
}
