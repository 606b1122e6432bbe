//! Property tests of the OpenADR boundary: whatever a VTN answers (any bytes, a distribute cut
//! anywhere, an event whose ids, numbers, times and durations hold hostile text), the VEN's
//! reader reads it or refuses it with an error, never a panic; what it reads holds (ids short
//! and printable, values finite, durations at most a year); and the book, fed what was read,
//! asks only finite, non-negative targets at any time. The same holds of OpenADR 3.1: any
//! bytes, and any event whose fields hold hostile values, are read or refused, and what the
//! events ask is a finite, non-negative target.

use std::time::Duration;

use adit_ingest::adapters::openadr::book::{Book, Policy};
use adit_ingest::adapters::openadr::messages::{MAX_ID_BYTES, Reply, parse_reply};
use adit_ingest::adapters::openadr3::events::asks;
use adit_ingest::adapters::openadr3::wire::Event;
use chrono::{DateTime, Utc};
use proptest::prelude::*;

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
use adit_testkit::fuzz_cases as cases;

/// A distribute in openleadr's shape with each field a placeholder.
const TEMPLATE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<oadr:oadrPayload xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07"><oadr:oadrSignedObject oadr:Id="oadrSignedObject">
<oadr:oadrDistributeEvent ei:schemaVersion="2.0b" xmlns:ei="http://docs.oasis-open.org/ns/energyinterop/201110">
<requestID xmlns="http://docs.oasis-open.org/ns/energyinterop/201110/payloads">REQ</requestID><ei:vtnID>vtn</ei:vtnID>
<oadr:oadrEvent><ei:eiEvent><ei:eventDescriptor><ei:eventID>EVENT</ei:eventID><ei:modificationNumber>MOD</ei:modificationNumber>
<ei:eventStatus>STATUS</ei:eventStatus></ei:eventDescriptor>
<ei:eiActivePeriod><properties xmlns="urn:ietf:params:xml:ns:icalendar-2.0"><dtstart><date-time>START</date-time></dtstart>
<duration><duration>DURATION</duration></duration><ei:x-eiRampUp><duration>RAMP</duration></ei:x-eiRampUp></properties></ei:eiActivePeriod>
<ei:eiEventSignals><ei:eiEventSignal><strm:intervals xmlns:strm="urn:ietf:params:xml:ns:icalendar-2.0:stream" xmlns:xcal="urn:ietf:params:xml:ns:icalendar-2.0">
<ei:interval><xcal:duration><xcal:duration>IDURATION</xcal:duration></xcal:duration><ei:signalPayload><ei:payloadFloat><ei:value>VALUE</ei:value></ei:payloadFloat></ei:signalPayload></ei:interval>
</strm:intervals><ei:signalName>NAME</ei:signalName><ei:signalType>TYPE</ei:signalType><ei:signalID>s</ei:signalID>
<power:powerReal xmlns:power="http://docs.oasis-open.org/ns/emix/2011/06/power" xmlns:scale="http://docs.oasis-open.org/ns/emix/2011/06/siscale">
<power:itemDescription>RealPower</power:itemDescription><power:itemUnits>UNITS</power:itemUnits><scale:siScaleCode>SCALE</scale:siScaleCode></power:powerReal>
</ei:eiEventSignal></ei:eiEventSignals></ei:eiEvent><oadr:oadrResponseRequired>always</oadr:oadrResponseRequired></oadr:oadrEvent>
</oadr:oadrDistributeEvent></oadr:oadrSignedObject></oadr:oadrPayload>"#;

/// Text a VTN might put in a field: plausible values, edge cases and garbage (escaped, so the
/// document stays XML and the field's reader is what is tested).
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("PT5M".to_string()),
        Just("P99999999DT".to_string()),
        Just("PT-5S".to_string()),
        Just("2026-11-24T10:00:00Z".to_string()),
        Just("+262143-12-31T23:59:59Z".to_string()),
        Just("SIMPLE".to_string()),
        Just("LOAD_DISPATCH".to_string()),
        Just("setpoint".to_string()),
        Just("delta".to_string()),
        Just("level".to_string()),
        Just("cancelled".to_string()),
        Just("W".to_string()),
        Just("k".to_string()),
        Just("4294967296".to_string()),
        "[ -~]{0,40}",
        "\\PC{0,200}",
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
    ]
    .prop_map(|s| quick_xml::escape::escape(s.as_str()).into_owned())
}

const FIELDS: [&str; 13] = [
    "REQ",
    "EVENT",
    "MOD",
    "STATUS",
    "START",
    "DURATION",
    "RAMP",
    "IDURATION",
    "VALUE",
    "NAME",
    "TYPE",
    "UNITS",
    "SCALE",
];

fn policy() -> Policy {
    Policy {
        opt_in: true,
        levels_kw: vec![20.0, 10.0, 0.0],
        capacity_kw: Some(40.0),
        lead: Duration::from_secs(600),
    }
}

/// What was read holds, and the book asks only sane targets at any time.
fn check(reply: &Reply, at: DateTime<Utc>) -> Result<(), TestCaseError> {
    let Reply::Events { events, .. } = reply else {
        return Ok(());
    };
    for e in events {
        prop_assert!(!e.id.is_empty() && e.id.len() <= MAX_ID_BYTES);
        prop_assert!(!e.id.chars().any(char::is_control));
        prop_assert!(e.duration <= Duration::from_secs(366 * 86_400));
        for s in &e.signals {
            prop_assert!(s.kw_per_unit.is_none_or(f64::is_finite));
            for i in &s.intervals {
                prop_assert!(i.value.is_finite());
            }
        }
    }
    let mut book = Book::default();
    book.take(events.clone(), &policy(), Some(30.0));
    for step in [-86_400i64, -600, 0, 60, 3_600, 86_400 * 400] {
        if let Some(ask) = book.asks(at + chrono::Duration::seconds(step), &policy()) {
            prop_assert!(ask.target_kw.is_finite() && ask.target_kw >= 0.0, "{ask:?}");
        }
    }
    book.forget_ended(at);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1_000)))]

    #[test]
    fn any_bytes_are_read_or_refused(body in prop::collection::vec(any::<u8>(), 0..2_000)) {
        if let Ok(reply) = parse_reply(&body) {
            check(&reply, Utc::now())?;
        }
    }

    #[test]
    fn a_distribute_cut_anywhere_is_read_or_refused(cut in 0usize..TEMPLATE.len()) {
        let body = TEMPLATE
            .replace("REQ", "r").replace("EVENT", "e").replace("MOD", "1").replace("STATUS", "far")
            .replace("IDURATION", "PT5M").replace("START", "2026-11-24T10:00:00Z")
            .replace("DURATION", "PT10M").replace("RAMP", "PT1M").replace("VALUE", "5")
            .replace("NAME", "LOAD_DISPATCH").replace("TYPE", "setpoint").replace("UNITS", "W")
            .replace("SCALE", "k");
        let cut = (0..=cut).rev().find(|&c| body.is_char_boundary(c)).unwrap_or(0);
        if let Ok(reply) = parse_reply(&body.as_bytes()[..cut]) {
            check(&reply, Utc::now())?;
        }
        prop_assert!(parse_reply(body.as_bytes()).is_ok(), "the whole one reads");
    }

    #[test]
    fn hostile_fields_are_read_or_refused(values in prop::collection::vec(field(), FIELDS.len())) {
        // IDURATION before DURATION: one placeholder holds the other.
        let mut body = TEMPLATE.to_string();
        let mut order: Vec<usize> = (0..FIELDS.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(FIELDS[i].len()));
        for i in order {
            body = body.replace(FIELDS[i], &values[i]);
        }
        if let Ok(reply) = parse_reply(body.as_bytes()) {
            check(&reply, Utc::now())?;
        }
    }

    #[test]
    fn any_bytes_are_read_or_refused_as_3_1_events(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
        if let Ok(events) = serde_json::from_slice::<Vec<Event>>(&bytes) {
            check3(&events)?;
        }
    }

    #[test]
    fn hostile_3_1_events_are_read_or_refused(values in prop::collection::vec(field(), 7), own in any::<bool>()) {
        let text = |v: &String| serde_json::to_string(v).unwrap();
        // Numbers where the VTN sends numbers, when the field is one; text otherwise.
        let number = |v: &String| v.parse::<f64>().ok().filter(|f| f.is_finite()).map_or_else(|| text(v), |f| f.to_string());
        let period = format!(r#"{{"start":{},"duration":{}}}"#, text(&values[0]), text(&values[1]));
        let body = format!(
            r#"{{"id":{},"programID":"p","intervalPeriod":{period},
                "payloadDescriptors":[{{"payloadType":"IMPORT_CAPACITY_LIMIT","units":{}}}],
                "intervals":[{{"id":{},{}"payloads":[{{"type":{},"values":[{}]}}]}}]}}"#,
            text(&values[2]),
            text(&values[3]),
            number(&values[4]),
            if own { format!(r#""intervalPeriod":{period},"#) } else { String::new() },
            text(&values[5]),
            number(&values[6]),
        );
        if let Ok(event) = serde_json::from_str::<Event>(&body) {
            check3(std::slice::from_ref(&event))?;
        }
    }
}

/// What 3.1 events ask, at any time, is a finite, non-negative target.
fn check3(events: &[Event]) -> Result<(), TestCaseError> {
    let policy = Policy {
        opt_in: true,
        levels_kw: vec![20.0, 10.0, 0.0],
        capacity_kw: None,
        lead: Duration::from_secs(600),
    };
    for at in [0i64, 1_800_000_000, 4_102_444_800] {
        let now = DateTime::<Utc>::from_timestamp(at, 0).unwrap();
        if let Some(ask) = asks(events, now, &policy) {
            prop_assert!(ask.target_kw.is_finite() && ask.target_kw >= 0.0, "{ask:?}");
        }
    }
    if let Some(ask) = asks(events, Utc::now(), &policy) {
        prop_assert!(ask.target_kw.is_finite() && ask.target_kw >= 0.0, "{ask:?}");
    }
    Ok(())
}
