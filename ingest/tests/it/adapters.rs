//! The `adapters` role against real sockets: fake cgminer miners on TCP, an IotaWatt, a
//! RoomAlert, two PDUs (one answering garbage) and a demand-response feed over HTTP, a private
//! nats-server with adit's streams and the registry bucket.
//!
//! Shows: each device's readings land on TELEMETRY with their values, sources, sites and
//! machines; the garbage PDU is dead-lettered on `dlq.adapters` (reason, device, body) while
//! the rest keep flowing; an unchanged grid signal polled many times is stored once; a miner
//! added to the registry while running is polled, follows its address when it moves, and stops
//! being polled when removed; a miner whose server stops turns stale and is reported `offline`
//! once, and reports again when its server is back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use adit_ingest::adapters::poll::{
    AdaptersConfig, GridFeed, GridFeedKind, HEADER_DLQ_ADAPTER, HEADER_DLQ_DEVICE,
};
use adit_ingest::simulate::cgminer::{self, CgminerSnapshot};
use adit_schemas::registry::{Adapter, AdapterKind, Machine, Meter, Record, Sensor, Site};
use adit_schemas::{
    AnyEvent, EnergyReading, EnergySource, GridSignalKind, MinerState, MinerStatus, SensorKind,
    SensorReading, names,
};
use adit_testkit::tail::{Tail, WAIT, header, statuses};
use axum::Json;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{SubsecRound, Utc};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{bus, loopback, spawn_role, stopped};

/// The body the broken PDU answers: cut off half-way.
const GARBAGE: &str = r#"{"outlets":[{"outlet":1,"pow"#;

// ---------------------------------------------------------------------------------------------
// Fake devices.
// ---------------------------------------------------------------------------------------------

fn snapshot(hashrate_hs: f64, power_w: Option<f64>) -> CgminerSnapshot {
    CgminerSnapshot {
        hashrate_hs,
        temps_c: vec![70.0, 74.75],
        fans_rpm: vec![6000.0, 5880.0],
        power_w,
        state: MinerState::Mining,
        elapsed_s: 86_400,
        pool_url: "stratum+tcp://pool.example:3333".into(),
    }
}

/// A fake miner serving on its own port until stopped.
struct Miner {
    /// Where it answers.
    addr: SocketAddr,
    /// Stops its server.
    stop: CancellationToken,
    /// Its server.
    task: JoinHandle<()>,
}

impl Miner {
    async fn start(snap: CgminerSnapshot) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address"), snap).await
    }

    async fn start_on(addr: SocketAddr, snap: CgminerSnapshot) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind a miner");
        let addr = listener.local_addr().expect("miner address");
        let stop = CancellationToken::new();
        let task = tokio::spawn(cgminer::serve(listener, move || snap.clone(), stop.clone()));
        Self { addr, stop, task }
    }

    async fn stop(self) -> SocketAddr {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the miner stops")
            .expect("no panic");
        self.addr
    }
}

/// IotaWatt inputs and their watts.
fn iotawatt_inputs() -> HashMap<&'static str, f64> {
    HashMap::from([("Input_1", 1400.5), ("Main", 5000.0)])
}

/// IotaWatt's `/query`: one row with the selected inputs' watts.
async fn iotawatt(
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    if q.get("group").map(String::as_str) != Some("all")
        || q.get("format").map(String::as_str) != Some("json")
    {
        return Err(bad(format!("expected group=all&format=json: {q:?}")));
    }
    let select = q
        .get("select")
        .and_then(|s| s.strip_prefix('['))
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| bad("select=[…] missing".into()))?;
    let mut columns = select.split(',');
    if columns.next() != Some("time.iso") {
        return Err(bad("the first column is not time.iso".into()));
    }
    let inputs = iotawatt_inputs();
    let values = columns
        .map(|c| {
            c.strip_suffix(".watts")
                .and_then(|name| inputs.get(name).copied())
                .ok_or_else(|| bad(format!("unknown column {c}")))
        })
        .collect::<Result<Vec<f64>, _>>()?;
    let mut row = vec![json!(Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string())];
    row.extend(values.into_iter().map(Value::from));
    Ok(Json(json!([row])))
}

/// Starts the HTTP devices; returns their base URL.
async fn start_http_devices(stop: CancellationToken) -> String {
    let issued = Utc::now().trunc_subsecs(0);
    let dr = json!({
        "event_id": "dr-1",
        "mode": "curtail",
        "target_kw": 120.0,
        "deadline": (issued + chrono::Duration::hours(1)).to_rfc3339(),
        "issued": issued.to_rfc3339(),
    });
    let app = axum::Router::new()
        .route("/query", get(iotawatt))
        .route(
            "/getData.json",
            get(|| async {
                Json(json!({
                    "name": "RA3E-1",
                    "sensor": [
                        {"lab": "Internal Sensor", "tc": "21.00", "tf": "69.80"},
                        {"lab": "Ext Sensor 1", "tc": "24.50", "tf": "76.10", "h": "41.00"},
                    ],
                }))
            }),
        )
        .route(
            "/pdu",
            get(|| async {
                Json(json!({"outlets": [
                    {"outlet": 1, "power_w": 1290.0, "state": "on"},
                    {"outlet": 2, "power_w": 1320.0, "state": "on"},
                ]}))
            }),
        )
        .route("/bad-pdu", get(|| async { GARBAGE }))
        .route("/dr", get(move || async move { Json(dr) }));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the HTTP devices");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .expect("HTTP devices serve");
    });
    base
}

// ---------------------------------------------------------------------------------------------
// Registry records.
// ---------------------------------------------------------------------------------------------

fn adapter(kind: AdapterKind, address: &str, channel: Option<&str>) -> Adapter {
    Adapter {
        kind,
        address: Some(address.into()),
        channel: channel.map(str::to_string),
    }
}

fn machine(id: &str, miner: SocketAddr) -> Record {
    Record::Machine(Machine {
        adapter: adapter(AdapterKind::Cgminer, &miner.to_string(), None),
        ..Machine::new(id, "s1", "Antminer S9", 13.5e12, 1350.0)
    })
}

fn meter(id: &str, machine: Option<&str>, adapter: Adapter) -> Record {
    Record::Meter(Meter {
        id: id.into(),
        site: "s1".into(),
        machine: machine.map(str::to_string),
        adapter,
    })
}

fn sensor(id: &str, kind: SensorKind, adapter: Adapter) -> Record {
    Record::Sensor(Sensor {
        id: id.into(),
        site: "s1".into(),
        kind,
        adapter,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading the streams back.
// ---------------------------------------------------------------------------------------------

fn energy<'a>(
    events: &'a [AnyEvent],
    machine: &str,
    source: EnergySource,
) -> Vec<&'a EnergyReading> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Energy(r) if r.machine == machine && r.source == source => Some(r),
            _ => None,
        })
        .collect()
}

fn sensors<'a>(events: &'a [AnyEvent], id: &str) -> Vec<&'a SensorReading> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Sensor(r) if r.sensor == id => Some(r),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn devices_are_polled_over_real_sockets_with_faults_and_live_registry_changes() {
    let nats = adit_testkit::NatsServer::start();
    let (js, registry) = bus(&nats).await;

    let devices_stop = CancellationToken::new();
    let base = start_http_devices(devices_stop.clone()).await;
    let m1 = Miner::start(snapshot(13.5e12, Some(1350.0))).await;
    let m2 = Miner::start(snapshot(14.0e12, None)).await;

    let iotawatt_at = |channel| adapter(AdapterKind::Iotawatt, &base, Some(channel));
    let roomalert_at = |label| adapter(AdapterKind::Roomalert, &base, Some(label));
    let records = [
        Record::Site(Site::new("s1", 100.0)),
        machine("m1", m1.addr),
        machine("m2", m2.addr),
        meter("m1-iw", Some("m1"), iotawatt_at("Input_1")),
        meter("main", None, iotawatt_at("Main")),
        meter(
            "m2-pdu",
            Some("m2"),
            adapter(AdapterKind::Pdu, &format!("{base}/pdu"), Some("2")),
        ),
        meter(
            "broken",
            None,
            adapter(AdapterKind::Pdu, &format!("{base}/bad-pdu"), Some("1")),
        ),
        sensor("t1", SensorKind::Temperature, roomalert_at("Ext Sensor 1")),
        sensor("h1", SensorKind::Humidity, roomalert_at("Ext Sensor 1")),
    ];
    for record in records {
        registry.put(record, "test", None).await.expect("put");
    }

    let config = AdaptersConfig {
        grid: vec![GridFeed {
            site: "s1".into(),
            kind: GridFeedKind::Signal,
            url: format!("{base}/dr"),
            map: None,
        }],
        ..loopback()
    };
    let shutdown = CancellationToken::new();
    let role = spawn_role(config, registry.clone(), &js, &shutdown);

    // Every device's readings, with their values, sources, sites and machines.
    let mut telemetry = Tail::open(&js, names::STREAM_TELEMETRY).await;
    telemetry
        .until("a reading from every device", |e| {
            !statuses(e, "m1").is_empty()
                && !statuses(e, "m2").is_empty()
                && !energy(e, "m1", EnergySource::Firmware).is_empty()
                && !energy(e, "m1", EnergySource::Meter).is_empty()
                && !energy(e, "main", EnergySource::Meter).is_empty()
                && !energy(e, "m2", EnergySource::Pdu).is_empty()
                && !sensors(e, "t1").is_empty()
                && !sensors(e, "h1").is_empty()
        })
        .await;
    let events = telemetry.events();
    assert!(events.iter().all(|e| match e {
        AnyEvent::Miner(x) => x.site == "s1",
        AnyEvent::Energy(x) => x.site == "s1",
        AnyEvent::Sensor(x) => x.site == "s1",
        _ => false,
    }));
    let s1 = statuses(&events, "m1")[0];
    assert_eq!(s1.state, MinerState::Mining);
    assert_eq!(s1.hashrate_hs, 13.5e12);
    assert_eq!((s1.temp_c, s1.fan_rpm), (Some(74.75), Some(6000.0)));
    assert_eq!(s1.power_w, Some(1350.0));
    let s2 = statuses(&events, "m2")[0];
    assert_eq!((s2.hashrate_hs, s2.power_w), (14.0e12, None));
    assert!(
        energy(&events, "m2", EnergySource::Firmware).is_empty(),
        "m2 reports no power"
    );
    assert_eq!(
        energy(&events, "m1", EnergySource::Firmware)[0].power_w,
        1350.0
    );
    assert_eq!(
        energy(&events, "m1", EnergySource::Meter)[0].power_w,
        1400.5
    );
    assert_eq!(
        energy(&events, "main", EnergySource::Meter)[0].power_w,
        5000.0
    );
    assert_eq!(energy(&events, "m2", EnergySource::Pdu)[0].power_w, 1320.0);
    let t1 = sensors(&events, "t1")[0];
    assert_eq!((t1.kind, t1.value), (SensorKind::Temperature, 24.5));
    let h1 = sensors(&events, "h1")[0];
    assert_eq!((h1.kind, h1.value), (SensorKind::Humidity, 41.0));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, AnyEvent::Energy(r) if r.machine == "broken")),
        "the broken PDU gave no reading"
    );

    // The garbage PDU is dead-lettered with its reason, device and body.
    let mut dlq = Tail::open(&js, names::STREAM_DLQ).await;
    dlq.until_raw("a dead letter from the broken PDU", |seen| !seen.is_empty())
        .await;
    let letter = &dlq.seen[0];
    assert_eq!(letter.subject.as_str(), "dlq.adapters");
    let reason = header(letter, names::HEADER_DLQ_REASON).expect("reason header");
    assert!(reason.contains("ends early"), "{reason}");
    assert_eq!(
        header(letter, HEADER_DLQ_DEVICE),
        Some(format!("{base}/bad-pdu").as_str())
    );
    assert_eq!(header(letter, HEADER_DLQ_ADAPTER), Some("pdu"));
    assert_eq!(&letter.payload[..], GARBAGE.as_bytes());

    // … and polling goes on, for it and for the others.
    let seen_m1 = statuses(&telemetry.events(), "m1").len();
    telemetry
        .until("m1 polled again after the dead letter", |e| {
            statuses(e, "m1").len() >= seen_m1 + 3
        })
        .await;
    dlq.until_raw("the broken PDU polled again", |seen| seen.len() >= 2)
        .await;
    let m1_ts: Vec<_> = statuses(&telemetry.events(), "m1")
        .iter()
        .map(|s| s.ts)
        .collect();
    assert!(m1_ts.windows(2).all(|w| w[0] < w[1]), "{m1_ts:?}");
    assert!(
        m1_ts
            .iter()
            .all(|ts| ts.timestamp_subsec_nanos() % 1_000_000 == 0),
        "poll times are whole milliseconds: {m1_ts:?}"
    );

    // The grid signal: polled every interval, stored once.
    let mut grid = Tail::open(&js, names::STREAM_GRID).await;
    grid.until("the demand-response signal", |e| !e.is_empty())
        .await;
    grid.drain_for(Duration::from_secs(1)).await;
    match grid.events().as_slice() {
        [AnyEvent::Grid(signal)] => {
            assert_eq!(signal.site, "s1");
            assert_eq!(signal.event_id, "dr-1");
            assert_eq!(signal.kind, GridSignalKind::Curtail);
            assert_eq!(signal.target_kw, Some(120.0));
        }
        other => panic!("expected the signal once, got {other:?}"),
    }

    // A machine added while running is polled without a restart …
    let m3 = Miner::start(snapshot(10.0e12, None)).await;
    registry
        .put(machine("m3", m3.addr), "test", None)
        .await
        .expect("add m3");
    telemetry
        .until("the added machine", |e| !statuses(e, "m3").is_empty())
        .await;
    assert_eq!(statuses(&telemetry.events(), "m3")[0].hashrate_hs, 10.0e12);
    // … follows its address when it moves …
    let m4 = Miner::start(snapshot(20.0e12, None)).await;
    registry
        .put(machine("m3", m4.addr), "test", None)
        .await
        .expect("move m3");
    telemetry
        .until("the moved machine at its new address", |e| {
            statuses(e, "m3").iter().any(|s| s.hashrate_hs == 20.0e12)
        })
        .await;
    // … and is no longer polled once removed.
    registry
        .delete("machine.s1.m3", "test", None)
        .await
        .expect("remove m3");
    telemetry.drain_for(Duration::from_secs(1)).await;
    let after_removal = statuses(&telemetry.events(), "m3").len();
    telemetry.drain_for(Duration::from_secs(1)).await;
    assert_eq!(
        statuses(&telemetry.events(), "m3").len(),
        after_removal,
        "a removed machine is not polled"
    );

    // A miner that stops answering turns stale: reported offline, once.
    let is_offline = |s: &&MinerStatus| s.state == MinerState::Offline;
    let before = statuses(&telemetry.events(), "m2").len();
    let m2_addr = m2.stop().await;
    telemetry
        .until("m2 reported offline", |e| {
            statuses(e, "m2")[before..].iter().any(is_offline)
        })
        .await;
    let seen_m1 = statuses(&telemetry.events(), "m1").len();
    // Longer than stale_after and the backoff: a still-silent miner is not reported again.
    telemetry.drain_for(Duration::from_secs(2)).await;
    let events = telemetry.events();
    let offline: Vec<_> = statuses(&events, "m2")[before..]
        .iter()
        .copied()
        .filter(is_offline)
        .collect();
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(
        (offline[0].hashrate_hs, offline[0].temp_c),
        (0.0, None),
        "an offline miner reports nothing"
    );
    assert!(
        statuses(&events, "m1").len() > seen_m1,
        "the other miners keep reporting"
    );

    // Back on the same address: it reports again.
    let m2 = Miner::start_on(m2_addr, snapshot(14.0e12, None)).await;
    let offline_at = offline[0].ts;
    telemetry
        .until("m2 answering again", |e| {
            statuses(e, "m2")
                .iter()
                .any(|s| s.ts > offline_at && s.state == MinerState::Mining)
        })
        .await;

    shutdown.cancel();
    stopped(role).await;
    devices_stop.cancel();
    for miner in [m1, m2, m3, m4] {
        miner.stop().await;
    }
}
