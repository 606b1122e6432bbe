//! Every event kind through JSON and Arrow and back, onto its own subject, stream and table, and
//! its bad values refused with a reason.

use super::*;
use arrow::array::{Array, Int64Array};

/// The allow-list by stream: money (MINING) never over HTTP; what adit decides or records
/// itself (CONTROL, RESULTS, the registry) from nobody outside.
#[test]
fn only_readings_and_signals_are_pushed_over_http() {
    for &kind in EventKind::ALL {
        let allowed: &[Push] = match kind.stream() {
            names::STREAM_TELEMETRY | names::STREAM_GRID => &[Push::Http, Push::Never],
            names::STREAM_MINING => &[Push::Simulator, Push::Never],
            _ => &[Push::Never],
        };
        assert!(
            allowed.contains(&kind.push()),
            "{kind:?} is {:?}",
            kind.push()
        );
        assert_eq!(kind.http_pushable(), kind.push() == Push::Http, "{kind:?}");
    }
}

fn energy(power_w: f64) -> EnergyReading {
    EnergyReading {
        site: "s1".into(),
        machine: "m1".into(),
        ts: Utc::now(),
        power_w,
        energy_wh: None,
        source: EnergySource::Pdu,
    }
}

/// A reading's identity (what the stream deduplicates by) is everything that makes it another
/// reading: one machine's firmware and meter at the same instant are two, one reading sent
/// twice is one.
#[test]
fn readings_of_one_machine_from_two_sources_at_one_instant_are_two() {
    let firmware = EnergyReading {
        source: EnergySource::Firmware,
        ..energy(1350.0)
    };
    let meter = EnergyReading {
        source: EnergySource::Meter,
        ts: firmware.ts,
        ..energy(1400.5)
    };
    assert_eq!(firmware.ts, meter.ts);
    assert_ne!(firmware.dedupe_id(), meter.dedupe_id());
    assert_eq!(firmware.dedupe_id(), firmware.clone().dedupe_id());
}

/// The class of that loss: for every kind of reading a device or worker sends, each text field
/// (who measured, what, how) and the time tell one reading from another, the numbers are what
/// was measured. Each such field changed alone, to another value the kind accepts, gives
/// another message id; the same reading decoded twice gives the same one. (A miner's `state`
/// is a measurement: one machine at one instant is in one state.)
#[test]
fn every_text_field_and_the_time_of_a_reading_are_in_its_identity() {
    const VALUES: &[&str] = &["meter", "pdu", "firmware", "temperature", "humidity", "fan"];
    let (policy, now) = (ValidationPolicy::default(), Utc::now());
    let id = |kind: EventKind, json: &serde_json::Value| {
        let body = serde_json::to_vec(json).unwrap();
        kind.decode(&body, &policy, now)
            .ok()
            .map(|e| e.to_message().1)
    };
    let readings = [
        EventKind::Energy,
        EventKind::Sensor,
        EventKind::Miner,
        EventKind::Hashrate,
        EventKind::Metric,
    ];
    for kind in readings {
        let json: serde_json::Value = serde_json::from_str(&sample_json(kind)).unwrap();
        let own = id(kind, &json).unwrap_or_else(|| panic!("{kind:?}: the sample decodes"));
        assert_eq!(
            id(kind, &json).as_ref(),
            Some(&own),
            "{kind:?}: one reading, one id"
        );
        let fields = json.as_object().unwrap();
        for (field, value) in fields {
            let Some(text) = value.as_str() else { continue };
            if kind == EventKind::Miner && field == "state" {
                continue;
            }
            let others: Vec<String> = match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(ts) => vec![(ts + chrono::Duration::microseconds(1)).to_rfc3339()],
                Err(_) => VALUES
                    .iter()
                    .map(|v| v.to_string())
                    .chain([format!("{text}2")])
                    .filter(|v| v != text)
                    .collect(),
            };
            let changed = others.iter().find_map(|other| {
                let mut json = json.clone();
                json[field] = serde_json::Value::String(other.clone());
                id(kind, &json)
            });
            let changed =
                changed.unwrap_or_else(|| panic!("{kind:?}.{field}: no other value accepted"));
            assert_ne!(
                changed, own,
                "{kind:?}: a reading with another {field} has the same id"
            );
        }
    }
}

#[test]
fn energy_round_trips_through_json_and_arrow() {
    let e = energy(3200.0);
    let json = serde_json::to_vec(&e).unwrap();
    let back = EventKind::Energy
        .decode(&json, &ValidationPolicy::default(), Utc::now())
        .unwrap();
    assert_eq!(back, AnyEvent::Energy(e.clone()));
    let batch = EventKind::Energy
        .batch(&[(7, back), (9, e.into_any())])
        .unwrap();
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(batch.schema(), EventKind::Energy.table_schema());
    let seq = batch
        .column_by_name("seq")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(seq.values(), &[7, 9]);
    assert_eq!(batch.column_by_name("energy_wh").unwrap().null_count(), 2);
}

#[test]
fn bad_values_are_refused_with_a_reason() {
    let policy = ValidationPolicy::default();
    let now = Utc::now();
    for (body, needle) in [
        (r#"{"site":"s1"}"#.to_string(), "missing field"),
        (
            serde_json::to_string(&energy(-5.0)).unwrap(),
            "power_w = -5",
        ),
        (
            r#"{"site":"s1","machine":"m1","ts":"2026-01-01T00:00:00Z","power_w":"x","source":"pdu"}"#
                .to_string(),
            "invalid type",
        ),
        (
            r#"{"site":"s1","machine":"m1","ts":"2026-01-01T00:00:00Z","power_w":1,"source":"nuclear"}"#
                .to_string(),
            "unknown variant",
        ),
        ("not json".to_string(), "invalid energy JSON"),
    ] {
        let err = EventKind::Energy
            .decode(body.as_bytes(), &policy, now)
            .unwrap_err();
        assert!(err.reason.contains(needle), "{body}: {}", err.reason);
    }
    let mut far = energy(1.0);
    far.ts = now + chrono::Duration::hours(1);
    assert!(
        far.validate(&policy, now)
            .unwrap_err()
            .reason
            .contains("future")
    );
}

/// One valid event of `kind`, with every optional field set.
fn sample(kind: EventKind) -> AnyEvent {
    let json = sample_json(kind);
    kind.decode(json.as_bytes(), &ValidationPolicy::default(), Utc::now())
        .unwrap_or_else(|e| panic!("{} sample: {}", kind.name(), e.reason))
}

/// [`sample`]'s JSON.
fn sample_json(kind: EventKind) -> String {
    // Microseconds: what a table keeps.
    let ts = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6).to_rfc3339();
    // An override may last a week at most.
    let in_an_hour = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
        .checked_add_signed(chrono::Duration::hours(1))
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    match kind {
        EventKind::Share => format!(
            r#"{{"pool":"p1","miner":"w","worker":"r","job_id":"j","nonce":"0a0b0c0d","difficulty":300,"height":12,"accepted":false,"reason":"stale","ts":"{ts}"}}"#
        ),
        EventKind::Block => format!(
            r#"{{"pool":"p1","height":12,"hash":"{}","miner":"w","worker":"r","job_id":"j","nonce":"0a0b0c0d","reward":600000000000,"network_difficulty":1000,"status":"rejected","error":"orphan","ts":"{ts}"}}"#,
            "ab".repeat(32)
        ),
        EventKind::Network => format!(
            r#"{{"pool":"p1","height":12,"network_difficulty":300000000000,"reward":600000000000,"subsidy":590000000000,"ts":"{ts}"}}"#
        ),
        EventKind::CoinPrice => format!(
            r#"{{"coin":"XMR","price":152.25,"decimals":12,"source":"api.coingecko.com","ts":"{ts}"}}"#
        ),
        EventKind::Energy => format!(
            r#"{{"site":"s1","machine":"m1","ts":"{ts}","power_w":3200.5,"energy_wh":12.25,"source":"meter"}}"#
        ),
        EventKind::Sensor => format!(
            r#"{{"site":"s1","sensor":"t1","kind":"temperature","value":31.5,"ts":"{ts}"}}"#
        ),
        EventKind::Miner => format!(
            r#"{{"site":"s1","machine":"m1","ts":"{ts}","hashrate_hs":1.5e14,"temp_c":70.0,"fan_rpm":4800.0,"power_w":3250.0,"state":"mining"}}"#
        ),
        EventKind::Hashrate => {
            format!(r#"{{"cluster":"c1","worker":"w1","ts":"{ts}","hashrate_hs":2500.0}}"#)
        }
        EventKind::ClusterShare => format!(
            r#"{{"cluster":"c1","worker":"w1","job_id":"j1","nonce":"0a0b0c0d","difficulty":5000,"valid":true,"reason":null,"forwarded":true,"upstream_verdict":"accepted","upstream":"stratum+tcp://p:3333","ts":"{ts}"}}"#
        ),
        EventKind::ClusterUpstream => format!(
            r#"{{"cluster":"c1","upstream":"stratum+tcp://p:3333","state":"connected","reason":null,"ts":"{ts}"}}"#
        ),
        EventKind::Metric => format!(
            r#"{{"name":"custom_fuel_pct","source":"s1","labels":{{"tank":"t1"}},"value":42.5,"ts":"{ts}"}}"#
        ),
        EventKind::Grid => format!(
            r#"{{"site":"s1","event_id":"e1","kind":"curtail","target_kw":500.0,"deadline":"{ts}","price_per_mwh":80.5,"ts":"{ts}"}}"#
        ),
        EventKind::ViolationNote => format!(
            r#"{{"site":"s1","action":"open","id":"x","kind":"noise","severity":"warning","subject":"m1","note":"loud","by":"ops","ts":"{ts}"}}"#
        ),
        EventKind::Alert => format!(
            r#"{{"id":"g/HighTemp/ab12","group":"g","rule":"HighTemp","state":"firing","severity":"critical","labels":"{{\"site\":\"s1\"}}","annotations":"{{}}","value":41.5,"active_at":"{ts}","ts":"{ts}","by":"ops","note":"on it"}}"#
        ),
        EventKind::Notification => format!(
            r#"{{"id":"ops:1:1","receiver":"ops","channel":"webhook","group":"ops:{{}}","status":"failed","attempt":1,"summary":"[FIRING:1] X","alerts":1,"error":"refused","ts":"{ts}"}}"#
        ),
        EventKind::Override => format!(
            r#"{{"id":"s1:grid:1","site":"s1","kind":"grid","machine":"m1","value":50.0,"cancels":"x","reason":"test","by":"ops","ts":"{ts}","expires":"{in_an_hour}"}}"#
        ),
        EventKind::Audit => format!(
            r#"{{"id":"1-ab","who":"ops","role":"operate","method":"PUT","path":"/api/v1/registry/sites/s1","status":200,"client":"10.0.0.5","ts":"{ts}"}}"#
        ),
        EventKind::Inspection => format!(
            r#"{{"id":"1-ab","scope":"site","target":"s1","inspector":"K. Berg","inspected_at":"{ts}","outcome":"pass","findings":"seals intact","recorded_by":"ops","ts":"{ts}"}}"#
        ),
        EventKind::Competition => format!(
            r#"{{"id":"cup","pool":"p1","name":"Winter cup","starts":"{ts}","ends":"{in_an_hour}","by":"ops","ts":"{ts}"}}"#
        ),
        EventKind::Command => format!(
            r#"{{"id":"s1:1:0","site":"s1","target":"fans","action":"fan_level","value":9.0,"rule":"fan_band","ts":"{ts}"}}"#
        ),
        EventKind::CommandOutcome => format!(
            r#"{{"id":"s1:1:0","site":"s1","target":"fans","action":"fan_level","status":"acked","attempt":1,"reply":"ok","actuator":"fan_relay","ts":"{ts}"}}"#
        ),
        EventKind::Registry => format!(
            r#"{{"key":"site.s1","op":"put","by":"ops","at":"{ts}","record":{{"type":"site","id":"s1","allocation_kw":500.0}}}}"#
        ),
    }
}

#[test]
fn every_field_of_every_kind_reaches_its_table_and_back() {
    // The registry's rows are the registry pipeline's (with the value each change
    // replaced); its own test covers them.
    for &kind in EventKind::ALL.iter().filter(|k| **k != EventKind::Registry) {
        let event = sample(kind);
        // Encoding is strict: a field missing from the Arrow schema fails here.
        let batch = kind.batch(&[(5, event.clone())]).unwrap();
        let mut writer = arrow::json::ArrayWriter::new(Vec::new());
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let rows: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&writer.into_inner()).unwrap();
        let mut row = rows.into_iter().next().unwrap();
        assert_eq!(row.remove("seq"), Some(5.into()), "{}", kind.name());
        assert!(row.remove("date").is_some(), "{}", kind.name());
        let back = kind
            .decode(
                &serde_json::to_vec(&row).unwrap(),
                &ValidationPolicy::default(),
                Utc::now(),
            )
            .unwrap_or_else(|e| panic!("{}: {}", kind.name(), e.reason));
        assert_eq!(
            back,
            event,
            "{} changed on its way through Arrow",
            kind.name()
        );
    }
}

#[test]
fn an_event_is_on_its_own_subject_and_no_other() {
    for &kind in EventKind::ALL.iter() {
        let event = sample(kind);
        let subject = event.subject();
        assert!(event.is_on(&subject), "{}: {subject}", kind.name());
        let mut tokens: Vec<&str> = subject.split('.').collect();
        for other in [
            format!("{subject}x"),
            format!("{subject}.x"),
            format!("x{subject}"),
            subject[..subject.len() - 1].to_string(),
            subject.replacen('.', "_", 1),
            {
                tokens.swap(0, 1);
                tokens.join(".")
            },
        ] {
            assert!(!event.is_on(&other), "{}: {other}", kind.name());
        }
    }
}

/// The subjects the kind table builds are the ones on the wire (streams, consumers and
/// other deployments already hold them), each kind is found again from its subject, and
/// its filters (whole, and one partition's) match it.
#[test]
fn subjects_from_the_table_are_the_wire_subjects() {
    for &kind in EventKind::ALL {
        let subject = sample(kind).subject();
        let expected = match kind {
            EventKind::Share => "mining.share.p1",
            EventKind::Block => "mining.block.p1",
            EventKind::Network => "mining.network.p1",
            EventKind::CoinPrice => "grid.coin.XMR",
            EventKind::Energy => "telemetry.energy.s1.m1",
            EventKind::Sensor => "telemetry.sensor.s1.t1",
            EventKind::Miner => "telemetry.miner.s1.m1",
            EventKind::Hashrate => "telemetry.hashrate.c1.w1",
            EventKind::ClusterShare => "telemetry.cluster_share.c1.w1",
            EventKind::ClusterUpstream => "telemetry.cluster_upstream.c1.coordinator",
            EventKind::Metric => "telemetry.metric.s1.custom_fuel_pct",
            EventKind::Grid => "grid.signal.s1",
            EventKind::Registry => "$KV.adit_registry.site.s1",
            EventKind::ViolationNote => "control.violation.s1",
            EventKind::Alert => "results.alert.critical",
            EventKind::Notification => "results.notification.ops",
            EventKind::Override => "control.override.s1",
            EventKind::Audit => "control.audit.operate",
            EventKind::Inspection => "control.inspection.s1",
            EventKind::Competition => "control.competition.p1",
            EventKind::CommandOutcome => "control.outcome.s1",
            EventKind::Command => "control.s1.fans",
        };
        assert_eq!(subject, expected, "{}", kind.name());
        assert_eq!(EventKind::from_subject(&subject), Some(kind), "{subject}");
        assert!(
            names::filter_matches(&kind.filter(None), &subject),
            "{}",
            kind.name()
        );
        if kind == EventKind::Registry {
            // Its key spans tokens; every partition reads the whole bucket.
            continue;
        }
        let part = subject
            .strip_prefix(kind.route_prefix())
            .and_then(|rest| rest.split('.').nth(1))
            .unwrap();
        let one = kind.filter(Some(part));
        assert!(
            names::filter_matches(&one, &subject),
            "{}: {one}",
            kind.name()
        );
        assert!(
            !names::filter_matches(&kind.filter(Some("other")), &subject),
            "{}",
            kind.name()
        );
    }
}

/// A record whose subject token is not one token is refused naming the field, before its
/// values are looked at.
#[test]
fn subject_tokens_are_checked_by_name() {
    let mut reading = energy(10.0);
    reading.machine = "m.1".into();
    let err = reading
        .validate(&ValidationPolicy::default(), reading.ts)
        .unwrap_err();
    assert!(err.reason.contains("machine"), "{}", err.reason);
    let mut command = match sample(EventKind::Command) {
        AnyEvent::Command(c) => c,
        _ => unreachable!(),
    };
    command.target = "*".into();
    let err = command
        .validate(&ValidationPolicy::default(), command.ts)
        .unwrap_err();
    assert!(err.reason.contains("target"), "{}", err.reason);
}

#[test]
fn every_kind_maps_subject_stream_and_table() {
    for &kind in EventKind::ALL.iter() {
        assert_eq!(EventKind::from_name(kind.name()), Some(kind));
        assert!(kind.table_schema().field_with_name("seq").is_ok());
    }
    assert_eq!(
        EventKind::from_subject("telemetry.sensor.s1.t1"),
        Some(EventKind::Sensor)
    );
    assert_eq!(EventKind::from_subject("telemetry.bogus.s1"), None);
    assert_eq!(EventKind::Grid.stream(), names::STREAM_GRID);
}

#[test]
fn a_stream_s_kinds_are_every_kind_on_it_and_no_other() {
    let telemetry = EventKind::on_stream(names::STREAM_TELEMETRY);
    assert!(telemetry.contains(&EventKind::Energy) && telemetry.contains(&EventKind::ClusterShare));
    for kind in EventKind::ALL {
        assert_eq!(
            telemetry.contains(kind),
            kind.stream() == names::STREAM_TELEMETRY,
            "{kind:?}"
        );
    }
    assert!(EventKind::on_stream("NOPE").is_empty());
}

#[test]
fn grid_curtail_needs_target_and_deadline() {
    let now = Utc::now();
    let g = GridSignal {
        site: "s1".into(),
        event_id: "e1".into(),
        kind: GridSignalKind::Curtail,
        target_kw: None,
        deadline: Some(now),
        price_per_mwh: None,
        ts: now,
    };
    let err = g.validate(&ValidationPolicy::default(), now).unwrap_err();
    assert!(err.reason.contains("target_kw"));
}
