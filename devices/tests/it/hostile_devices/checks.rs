//! What must hold of every outcome of a device parser: refusals that say why, readings in
//! range and valid, nothing invented.

use super::*;

/// A pure parser refuses only with `Garbage` (a reason and a short excerpt) or `OutOfRange`.
pub(crate) fn check_refusal(e: &DeviceError) -> Result<(), TestCaseError> {
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
pub(crate) fn check_report(r: &MinerReport) -> Result<(), TestCaseError> {
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
pub(crate) fn check_iotawatt(
    columns: &[String],
    read: &[(String, f64)],
) -> Result<(), TestCaseError> {
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
pub(crate) fn check_roomalert(
    body: &[u8],
    sensors: &[RoomAlertSensor],
) -> Result<(), TestCaseError> {
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
pub(crate) fn check_pdu(
    body: &[u8],
    map: &FieldMap,
    read: &[(String, f64)],
) -> Result<(), TestCaseError> {
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
pub(crate) fn check_signal(
    signal: &GridSignal,
    site: &str,
    price_feed: bool,
) -> Result<(), TestCaseError> {
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
pub(crate) fn check_mapped(
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
pub(crate) fn read_everything(body: &[u8]) -> Result<(), TestCaseError> {
    match decode_reply(body) {
        Ok(reply) => {
            prop_assert!(reply.is_object(), "decoded {reply}");
            match parse_report(&reply) {
                Ok(report) => check_report(&report)?,
                Err(e) => check_refusal(&e)?,
            }
            // What the actuators take from a miner's reply to a change: its verdict, bounded,
            // and a LuxOS session id safe to put into the next request.
            if let Ok(msg) = adit_devices::cgminer::judge(&reply) {
                prop_assert!(msg.chars().count() <= 200, "{msg:?}");
            }
            if let Ok(id) = adit_devices::luxos::session_id(&reply) {
                prop_assert!(
                    !id.is_empty()
                        && id.len() <= 64
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                    "{id:?}"
                );
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
    for pointer in ["/monero/usd", "", "/0"] {
        match parse_coin_price(body, pointer) {
            Ok(price) => prop_assert!(
                price.is_finite() && (0.0..=adit_schemas::market::MAX_COIN_PRICE).contains(&price),
                "price {price}"
            ),
            Err(e) => check_refusal(&e)?,
        }
    }
    for (map, price) in feed_maps() {
        match feed_map::read(&map, price, body) {
            Ok(read) => check_feed_reading(&read, price)?,
            Err(e) => check_refusal(&e)?,
        }
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

/// Feed maps of every layout, for signals and for prices (`true`).
fn feed_maps() -> Vec<(FeedMap, bool)> {
    let text = "format = \"text\"\ntarget_kw = 15.0\nvalues = { CURTAIL = \"curtail\", \"1\" = \"curtail\", NORMAL = \"normal\" }";
    let json = "format = \"json\"\nsignal = \"/event/state\"\ntarget = \"/event/limit_kw\"\n\
                deadline = \"/event/by\"\nevent_id = \"/event/id\"";
    let csv = "format = \"csv\"\nsignal = \"status\"\ntarget = \"target_kw\"\ntarget_kw = 10.0";
    let price = "format = \"csv\"\nprice = \"price\"";
    let text_price = "format = \"text\"";
    [
        (text, false),
        (json, false),
        (csv, false),
        (price, true),
        (text_price, true),
    ]
    .into_iter()
    .map(|(toml_text, price)| {
        let map: FeedMap = toml::from_str(toml_text).expect("a valid feed map");
        assert_eq!(map.validate(price), Ok(()));
        (map, price)
    })
    .collect()
}

/// What a mapped feed read is what a grid signal may carry: a price alone for a price feed,
/// a curtailment with a target in range, ids the schemas accept.
fn check_feed_reading(read: &Mapped, price: bool) -> Result<(), TestCaseError> {
    if price {
        prop_assert!(read.asks.is_none());
        let p = read.price_per_mwh.expect("a price feed reads a price");
        prop_assert!(p.is_finite() && p.abs() <= 1e6, "price {p}");
    } else {
        prop_assert!(read.price_per_mwh.is_none());
        match read.asks {
            Some(Asks::Curtail) => {
                let kw = read.target_kw.expect("a curtailment has a target");
                prop_assert!(kw.is_finite() && (0.0..=1e7).contains(&kw), "target {kw}");
            }
            Some(Asks::Normal) => prop_assert!(read.target_kw.is_none()),
            None => prop_assert!(false, "a signal feed read no signal"),
        }
    }
    if let Some(id) = &read.event_id {
        prop_assert!(check_text("event_id", id, MAX_ID_BYTES).is_ok(), "{id:?}");
    }
    prop_assert!(read.made_id().starts_with("feed-"));
    Ok(())
}
