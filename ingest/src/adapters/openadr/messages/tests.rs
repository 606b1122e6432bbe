//! The payloads against a golden file and the schema's element order, and every reply
//! read, refused or bounded.

use super::super::xml::{self, Element};
use super::*;

#[test]
fn iso_durations_read_and_write() {
    for (text, secs) in [
        ("PT5M", 300.0),
        ("P1DT2H", 93_600.0),
        ("PT0.5S", 0.5),
        ("PT0S", 0.0),
        ("P1W", 604_800.0),
    ] {
        assert_eq!(parse_duration(text), Ok(Duration::from_secs_f64(secs)));
    }
    for bad in [
        "",
        "P",
        "5M",
        "PT5",
        "P1Y",
        "-PT5M",
        "PTxS",
        "P9999999999DT",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(iso_duration(Duration::from_millis(1500)), "PT1.500S");
    assert_eq!(
        parse_duration(&iso_duration(Duration::from_secs(90))),
        Ok(Duration::from_secs(90))
    );
}

/// Each builder's payload for fixed inputs, text that needs escaping among them.
fn fixed_payloads() -> Vec<String> {
    let t0 = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.250Z")
        .unwrap()
        .to_utc();
    let s = chrono::Duration::seconds;
    let opt = |request_id: &str, event_id: &str, modification, opt_in| OptResponse {
        request_id: request_id.into(),
        event_id: event_id.into(),
        modification,
        opt_in,
    };
    let opts = [
        opt("dist-1", "ev-1", 2, true),
        opt("dist-1", "ev&2", 0, false),
    ];
    let samples = [(t0, 12.5), (t0 + s(10), 0.0), (t0 + s(20), -3.25)];
    let (min, max) = (Duration::from_secs(10), Duration::from_millis(1500));
    vec![
        create_party_registration("reg-1", "site <a> & \"b\" 'c'", None, None),
        create_party_registration("reg-2", "site-a", Some("ven-7"), Some("r-9")),
        request_event("req-3", "ven-7"),
        poll("ven-7"),
        created_event("ven-7", &[]),
        created_event("ven-7", &opts),
        register_report("req-4", "ven-7", "site-a", min, max, t0),
        registered_report("req-5", "ven-7"),
        created_report("req-6", "ven-7", &[]),
        created_report("req-6", "ven-7", &["rr-1".into(), "rr-2".into()]),
        update_report("req-7", "ven-7", "rr-1", &[], t0),
        update_report("req-7", "ven-7", "rr-1", &samples, t0 + s(25)),
    ]
}

#[test]
fn payloads_are_byte_for_byte_what_the_format_strings_wrote() {
    let golden: Vec<&str> = include_str!("../messages_golden.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    let written = fixed_payloads();
    assert_eq!(written.len(), golden.len());
    for (i, (written, golden)) in written.iter().zip(golden).enumerate() {
        assert_eq!(written, golden, "payload {i} of fixed_payloads()");
    }
}

/// Text that is markup if written raw, and that text escaped.
const HOSTILE: &str = "a<b>&amp;\"c\"'d']]></ei:venID>é";
const ESCAPED: &str = "a&lt;b&gt;&amp;amp;&quot;c&quot;&apos;d&apos;]]&gt;&lt;/ei:venID&gt;é";

/// Every element's text in `e`, depth first.
fn texts(e: &Element) -> Vec<&str> {
    let below = e.children.iter().flat_map(texts);
    std::iter::once(e.text.as_str()).chain(below).collect()
}

/// Issue 57: every text a caller gives is escaped by the writer and reads back the same.
#[test]
fn hostile_text_in_every_field_is_escaped_and_reads_back_the_same() {
    let h = HOSTILE;
    let (at, d) = (DateTime::<Utc>::UNIX_EPOCH, Duration::from_secs(1));
    let opt = OptResponse {
        request_id: h.into(),
        event_id: h.into(),
        modification: 1,
        opt_in: true,
    };
    // Each payload with every text field given `h`, and how many fields that is.
    let cases = [
        (create_party_registration(h, h, Some(h), Some(h)), 4),
        (request_event(h, h), 2),
        (poll(h), 1),
        (created_event(h, &[opt]), 3),
        (register_report(h, h, h, d, d, at), 3),
        (registered_report(h, h), 2),
        (created_report(h, h, &[h.into()]), 3),
        (update_report(h, h, h, &[(at, 1.0)], at), 4),
    ];
    let report_id = format!("{h}-0");
    for (payload, fields) in cases {
        let root = xml::parse(payload.as_bytes()).expect("well-formed XML");
        let read = texts(&root);
        let back = read.iter().filter(|t| [h, &report_id].contains(t));
        assert_eq!(back.count(), fields, "{payload}");
        assert_eq!(payload.matches(ESCAPED).count(), fields, "{payload}");
        assert!(
            !payload.contains("<b>") && !payload.contains("]]>"),
            "{payload}"
        );
    }
}

const DISTRIBUTE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<oadr:oadrPayload xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07">
<oadr:oadrSignedObject xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07" oadr:Id="oadrSignedObject">
  <oadr:oadrDistributeEvent ei:schemaVersion="2.0b" xmlns:ei="http://docs.oasis-open.org/ns/energyinterop/201110">
<requestID xmlns="http://docs.oasis-open.org/ns/energyinterop/201110/payloads">req-9</requestID>
<ei:vtnID>vtn</ei:vtnID>
<oadr:oadrEvent><ei:eiEvent>
  <ei:eventDescriptor><ei:eventID>ev-1</ei:eventID><ei:modificationNumber>2</ei:modificationNumber>
    <ei:eventStatus>far</ei:eventStatus></ei:eventDescriptor>
  <ei:eiActivePeriod><properties xmlns="urn:ietf:params:xml:ns:icalendar-2.0">
    <dtstart><date-time>2026-11-24T10:05:00Z</date-time></dtstart>
    <duration><duration>PT10M</duration></duration>
    <ei:x-eiRampUp><duration>PT2M</duration></ei:x-eiRampUp>
  </properties><components xmlns="urn:ietf:params:xml:ns:icalendar-2.0"/></ei:eiActivePeriod>
  <ei:eiEventSignals><ei:eiEventSignal>
    <strm:intervals xmlns:strm="urn:ietf:params:xml:ns:icalendar-2.0:stream" xmlns:xcal="urn:ietf:params:xml:ns:icalendar-2.0">
      <ei:interval><xcal:duration><xcal:duration>PT5M</xcal:duration></xcal:duration>
        <ei:signalPayload><ei:payloadFloat><ei:value>15.5</ei:value></ei:payloadFloat></ei:signalPayload></ei:interval>
      <ei:interval><xcal:duration><xcal:duration>PT5M</xcal:duration></xcal:duration>
        <ei:signalPayload><ei:payloadFloat><ei:value>8</ei:value></ei:payloadFloat></ei:signalPayload></ei:interval>
    </strm:intervals>
    <ei:signalName>LOAD_DISPATCH</ei:signalName><ei:signalType>setpoint</ei:signalType><ei:signalID>s</ei:signalID>
    <power:powerReal xmlns:power="http://docs.oasis-open.org/ns/emix/2011/06/power" xmlns:scale="http://docs.oasis-open.org/ns/emix/2011/06/siscale">
      <power:itemDescription>RealPower</power:itemDescription><power:itemUnits>W</power:itemUnits><scale:siScaleCode>k</scale:siScaleCode>
    </power:powerReal>
  </ei:eiEventSignal></ei:eiEventSignals>
</ei:eiEvent><oadr:oadrResponseRequired>always</oadr:oadrResponseRequired></oadr:oadrEvent>
  </oadr:oadrDistributeEvent>
</oadr:oadrSignedObject></oadr:oadrPayload>"#;

#[test]
fn a_distributed_event_is_read_with_its_intervals_one_after_another() {
    let Reply::Events { request_id, events } = parse_reply(DISTRIBUTE.as_bytes()).unwrap() else {
        panic!("not events");
    };
    assert_eq!(request_id, "req-9");
    let e = &events[0];
    assert_eq!((e.id.as_str(), e.modification), ("ev-1", 2));
    assert_eq!(e.status, "far");
    assert_eq!(e.ramp_up, Some(Duration::from_secs(120)));
    assert_eq!(e.duration, Duration::from_secs(600));
    let s = &e.signals[0];
    assert_eq!(
        (s.name.as_str(), s.kind.as_str()),
        ("LOAD_DISPATCH", "setpoint")
    );
    assert_eq!(s.kw_per_unit, Some(1.0));
    assert_eq!(s.intervals.len(), 2);
    assert_eq!(s.intervals[0].start, e.start);
    assert_eq!(s.intervals[1].start, s.intervals[0].end());
    assert_eq!(s.intervals[1].value, 8.0);
}

#[test]
fn a_refusal_or_a_broken_event_is_an_error_that_says_why() {
    let refused = DISTRIBUTE.replace(
        "<requestID xmlns=\"http://docs.oasis-open.org/ns/energyinterop/201110/payloads\">req-9</requestID>",
        "<ei:eiResponse><ei:responseCode>452</ei:responseCode><ei:responseDescription>bad id</ei:responseDescription></ei:eiResponse>",
    );
    let e = parse_reply(refused.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("452") && e.contains("bad id"), "{e}");
    for (from, to) in [
        ("<ei:value>8</ei:value>", "<ei:value>NaN</ei:value>"),
        ("PT10M", "PT10"),
        ("2026-11-24T10:05:00Z", "yesterday"),
        ("<ei:eventID>ev-1</ei:eventID>", "<ei:eventID></ei:eventID>"),
    ] {
        let broken = DISTRIBUTE.replace(from, to);
        assert!(parse_reply(broken.as_bytes()).is_err(), "{to}");
    }
    assert!(matches!(parse_reply(b"  "), Ok(Reply::Ok)));
}
