//! Property tests of the device boundary (issue 22): whatever a miner's cgminer API, an
//! IotaWatt, a RoomAlert, a PDU, the utility's demand-response and price feeds or an MQTT sensor
//! sends, or a utility's feed read through a map in config (any bytes, JSON of any shape, the
//! keys each parser looks for holding hostile values), the pure parsers in `adapters` read it or refuse it with `Garbage` or `OutOfRange`, never a
//! panic; and what they read holds: finite figures in their plausible ranges, one reading per
//! outlet, timestamps and ids the schemas accept, nothing invented. Plausible replies, built
//! here in each device's shape, read back exactly.

use adit_devices::DeviceError;
use adit_devices::cgminer::{MinerReport, decode_reply, parse_report};
use adit_devices::error::EXCERPT_BYTES;
use adit_devices::feed_map::{self, Asks, FeedMap, Mapped};
use adit_devices::http_json::{
    FieldMap, RoomAlertSensor, parse_coin_price, parse_dr_signal, parse_iotawatt, parse_pdu,
    parse_price_signal, parse_roomalert,
};
use adit_devices::mqtt::{MappedError, TopicMap, map_message};
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
use adit_testkit::fuzz_cases as cases;

mod checks;
mod shapes;
mod values;

use checks::*;
use shapes::*;
use values::*;

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
    fn utility_feeds_with_hostile_values_where_the_maps_look_are_read_or_refused(
        state in pick(&["CURTAIL", "normal", "1", "shed"]),
        limit in leaf(),
        by in leaf(),
        id in leaf(),
        cells in prop::collection::vec(text(), 0..4),
    ) {
        let event = json!({"event": {"state": state, "limit_kw": limit, "by": by, "id": id}});
        read_everything(event.to_string().as_bytes())?;
        let row = cells.join(",");
        read_everything(format!("status,target_kw,price\n{row}\n").as_bytes())?;
        read_everything(format!("{state}\n{row}").as_bytes())?;
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
        // As the device sends them: two decimals in strings, temperature in both scales.
        let fixed = |v: f64| Value::from(format!("{v:.2}"));
        let entries: Vec<Value> = sensors
            .iter()
            .map(|s| {
                let mut e = Map::new();
                e.insert("lab".to_owned(), Value::from(s.label.clone()));
                if let Some(c) = s.temp_c {
                    e.insert("tc".to_owned(), fixed(c));
                    e.insert("tf".to_owned(), fixed(c * 9.0 / 5.0 + 32.0));
                }
                if let Some(h) = s.humidity_pct {
                    e.insert("h".to_owned(), fixed(h));
                }
                Value::Object(e)
            })
            .collect();
        let body = json!({"name": name, "serial": name, "scale": 0, "sensor": entries}).to_string();
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
        let entries: Vec<Value> = outlets
            .iter()
            .map(|&(outlet, power_w)| {
                let state = if power_w > 0.0 { "on" } else { "off" };
                json!({"outlet": outlet, "power_w": power_w, "state": state})
            })
            .collect();
        let body = json!({"outlets": entries}).to_string();
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
        let body = json!({
            "event_id": event_id,
            "mode": "curtail",
            "target_kw": target,
            "deadline": deadline.to_rfc3339(),
            "issued": issued.to_rfc3339(),
        })
        .to_string();
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
