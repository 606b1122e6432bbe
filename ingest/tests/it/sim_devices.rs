//! The simulated farm read through the adapters over real sockets: a 1-site × 4-machine farm's
//! devices ([`Devices`]: a cgminer server per machine, the site's IotaWatt, PDU, RoomAlert and
//! grid feeds over HTTP, humidity pushed to a private Mosquitto), its records registered, and
//! the `adapters` role polling them into a private nats-server.
//!
//! Shows: every machine's status and firmware power, an energy reading per machine (`meter`
//! for the metered ones, `pdu` for the others) and every sensor reach TELEMETRY through the
//! adapters, each value one the farm reported (to the device's precision: a twin farm with the
//! same seed gives the same sequence of values); no reply is refused; the grid feeds' initial
//! signal and price and the farm's curtailment reach GRID; a miner whose server stops is
//! reported `offline`; a miner answering cut-off replies is dead-lettered; a restarted miner
//! reports again.

use std::time::Duration;

use adit_ingest::adapters::poll::{AdaptersConfig, HEADER_DLQ_ADAPTER, HEADER_DLQ_DEVICE};
use adit_ingest::adapters::poll::{
    GridFeedKind, INITIAL_EVENT_ID, INITIAL_PRICE_ID, INITIAL_PRICE_PER_MWH, MqttConfig,
};
use adit_ingest::simulate::devices::Devices;
use adit_ingest::simulate::{Farm, SimConfig};
use adit_schemas::registry::{AdapterKind, Record};
use adit_schemas::{
    AnyEvent, EnergySource, GridSignal, GridSignalKind, MinerState, MinerStatus, SensorKind, names,
};
use adit_testkit::tail::{Tail, WAIT, header, statuses};
use adit_testkit::{Mosquitto, NatsServer};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::common::{bus, loopback, spawn_role, stopped};

/// The site.
const SITE: &str = "site-01";
/// The machines: odd ones metered (IotaWatt), even ones on the PDU.
const MACHINES: [&str; 4] = ["m-001", "m-002", "m-003", "m-004"];
/// The sensors.
const SENSORS: [&str; 3] = ["temp-01", "temp-02", "hum-01"];
/// Ticks of the twin farm: far more than the test runs.
const TWIN_TICKS: usize = 5000;

fn sim_config() -> SimConfig {
    SimConfig {
        seed: 7,
        sites: 1,
        machines_per_site: 4,
        sensors_per_site: 2,
        interval: Duration::from_millis(200),
        grid_every: 5,
        ..SimConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the streams back.
// ---------------------------------------------------------------------------------------------

/// `machine`'s power readings from `source`, watts.
fn power(events: &[AnyEvent], machine: &str, source: EnergySource) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Energy(r) if r.machine == machine && r.source == source => Some(r.power_w),
            _ => None,
        })
        .collect()
}

fn sensor_values(events: &[AnyEvent], sensor: &str) -> Vec<(SensorKind, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Sensor(r) if r.sensor == sensor => Some((r.kind, r.value)),
            _ => None,
        })
        .collect()
}

fn grid_signals(events: &[AnyEvent]) -> Vec<&GridSignal> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Grid(g) => Some(g),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What the farm reported: a twin with the same seed.
// ---------------------------------------------------------------------------------------------

/// Every tick of a farm with the same config. Its values depend only on the seed and the tick
/// count (not on the time), so the devices' farm reports the same sequence.
fn twin_ticks() -> Vec<Vec<AnyEvent>> {
    let mut twin = Farm::new(sim_config());
    let t0 = Utc::now();
    (0..TWIN_TICKS)
        .map(|k| twin.tick(t0 + chrono::Duration::milliseconds(200 * k as i64)))
        .collect()
}

fn close(a: f64, b: f64, within: f64) -> bool {
    (a - b).abs() <= within
}

/// Whether some tick reported `status` for its machine, to the precision of the cgminer API:
/// hashrate in GH/s with two decimals, temperature with two, fan and power in whole units.
fn reported_status(twin: &[Vec<AnyEvent>], status: &MinerStatus) -> bool {
    let opt = |a: Option<f64>, b: Option<f64>, within: f64| match (a, b) {
        (Some(a), Some(b)) => close(a, b, within),
        _ => false,
    };
    twin.iter().flatten().any(|e| match e {
        AnyEvent::Miner(s) if s.machine == status.machine => {
            close(s.hashrate_hs, status.hashrate_hs, 5.01e6)
                && opt(s.temp_c, status.temp_c, 0.0051)
                && opt(s.fan_rpm, status.fan_rpm, 0.51)
                && opt(s.power_w, status.power_w, 0.51)
                && s.state == status.state
        }
        _ => false,
    })
}

/// Whether some tick reported `machine` drawing `watts` (`within`: the device's precision).
fn reported_power(twin: &[Vec<AnyEvent>], machine: &str, watts: f64, within: f64) -> bool {
    twin.iter().flatten().any(|e| match e {
        AnyEvent::Energy(r) if r.machine == machine => close(r.power_w, watts, within),
        _ => false,
    })
}

/// Whether some tick reported `sensor` reading `value`.
fn reported_sensor(twin: &[Vec<AnyEvent>], sensor: &str, value: f64, within: f64) -> bool {
    twin.iter().flatten().any(|e| match e {
        AnyEvent::Sensor(r) if r.sensor == sensor => close(r.value, value, within),
        _ => false,
    })
}

// ---------------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_simulated_farm_is_read_through_the_adapters_over_real_sockets() {
    let nats = NatsServer::start();
    let broker = Mosquitto::start();
    let (js, registry) = bus(&nats).await;

    let shutdown = CancellationToken::new();
    let mut devices = Devices::start(Farm::new(sim_config()), "127.0.0.1", shutdown.clone())
        .await
        .expect("the devices start");
    devices
        .publish_mqtt(&broker.url())
        .expect("humidity over MQTT");

    // The records name every device, over the protocol it speaks.
    let records = devices.records();
    let adapter_kinds: Vec<(String, AdapterKind)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Machine(m) => Some((m.id.clone(), m.adapter.kind)),
            Record::Meter(m) => Some((m.id.clone(), m.adapter.kind)),
            Record::Sensor(s) => Some((s.id.clone(), s.adapter.kind)),
            Record::Site(_) | Record::Pool(_) => None,
        })
        .collect();
    let kind_of = |id: &str| {
        adapter_kinds
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, k)| *k)
            .unwrap_or_else(|| panic!("no record {id}"))
    };
    for m in MACHINES {
        assert_eq!(kind_of(m), AdapterKind::Cgminer, "{m}");
    }
    assert_eq!(kind_of("meter-m-001"), AdapterKind::Iotawatt);
    assert_eq!(kind_of("meter-m-002"), AdapterKind::Pdu);
    assert_eq!(kind_of("meter-m-003"), AdapterKind::Iotawatt);
    assert_eq!(kind_of("meter-m-004"), AdapterKind::Pdu);
    assert_eq!(kind_of("temp-01"), AdapterKind::Roomalert);
    assert_eq!(kind_of("hum-01"), AdapterKind::Mqtt);
    let registered = devices.register(&registry, "test").await.expect("register");
    assert_eq!(registered, records.len());
    // Every record is in the registry as given, meters included, though they name machines
    // the same batch wrote just before them.
    let stored = registry.snapshot().await.expect("snapshot");
    for record in &records {
        let found = stored.iter().find(|(k, _)| *k == record.key());
        assert_eq!(
            found.map(|(_, v)| &v.record),
            Some(record),
            "{}",
            record.key()
        );
    }
    // A second registration changes nothing.
    let again = devices
        .register(&registry, "test")
        .await
        .expect("register again");
    assert_eq!(again, 0);
    assert_eq!(registry.snapshot().await.expect("snapshot"), stored);

    let feeds = devices.grid_feeds();
    assert_eq!(
        feeds.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [GridFeedKind::Signal, GridFeedKind::Price]
    );
    let config = AdaptersConfig {
        grid: feeds,
        mqtt: Some(MqttConfig {
            url: broker.url(),
            client_id: "adit-adapters-sim-devices".into(),
            maps: devices.mqtt_maps(),
        }),
        ..loopback()
    };
    let stop_role = CancellationToken::new();
    let role = spawn_role(config, registry.clone(), &js, &stop_role);

    // Every device's readings arrive through the adapters.
    let mut dlq = Tail::open(&js, names::STREAM_DLQ).await;
    let mut telemetry = Tail::open(&js, names::STREAM_TELEMETRY).await;
    telemetry
        .until("a reading from every device", |e| {
            MACHINES.iter().enumerate().all(|(i, m)| {
                let own = if i % 2 == 0 {
                    EnergySource::Meter
                } else {
                    EnergySource::Pdu
                };
                !statuses(e, m).is_empty()
                    && !power(e, m, EnergySource::Firmware).is_empty()
                    && !power(e, m, own).is_empty()
            }) && SENSORS.iter().all(|s| !sensor_values(e, s).is_empty())
        })
        .await;
    dlq.drain_for(Duration::from_millis(500)).await;
    assert!(
        dlq.seen.is_empty(),
        "every reply of the simulated devices is accepted: {:?}",
        dlq.seen
            .iter()
            .map(|m| header(m, names::HEADER_DLQ_REASON))
            .collect::<Vec<_>>()
    );

    // Each value is one the farm reported, to the device's precision.
    let twin = twin_ticks();
    let events = telemetry.events();
    assert!(events.iter().all(|e| match e {
        AnyEvent::Miner(x) => x.site == SITE,
        AnyEvent::Energy(x) => x.site == SITE,
        AnyEvent::Sensor(x) => x.site == SITE,
        _ => false,
    }));
    for (i, m) in MACHINES.iter().enumerate() {
        for status in statuses(&events, m) {
            assert_eq!(status.state, MinerState::Mining, "{status:?}");
            assert!(reported_status(&twin, status), "not the farm's: {status:?}");
        }
        for watts in power(&events, m, EnergySource::Firmware) {
            assert!(
                reported_power(&twin, m, watts, 0.51),
                "{m} firmware {watts}"
            );
        }
        // IotaWatt and PDU replies carry the farm's figure exactly.
        let (own, other) = if i % 2 == 0 {
            (EnergySource::Meter, EnergySource::Pdu)
        } else {
            (EnergySource::Pdu, EnergySource::Meter)
        };
        for watts in power(&events, m, own) {
            assert!(reported_power(&twin, m, watts, 1e-9), "{m} {own:?} {watts}");
        }
        assert!(power(&events, m, other).is_empty(), "{m} has one meter");
    }
    for sensor in SENSORS {
        for (kind, value) in sensor_values(&events, sensor) {
            let want = if sensor.starts_with("hum") {
                SensorKind::Humidity
            } else {
                SensorKind::Temperature
            };
            assert_eq!(kind, want, "{sensor}");
            // RoomAlert prints two decimals; MQTT carries the JSON number as it is.
            assert!(
                reported_sensor(&twin, sensor, value, 0.0051),
                "{sensor} {value}"
            );
        }
    }

    // The grid feeds: the initial signal and price, then the farm's curtailment (tick 5).
    let twin_curtail = twin
        .iter()
        .flatten()
        .find_map(|e| match e {
            AnyEvent::Grid(g) if g.kind == GridSignalKind::Curtail => Some(g.clone()),
            _ => None,
        })
        .expect("the twin curtails");
    let mut grid = Tail::open(&js, names::STREAM_GRID).await;
    grid.until("the farm's curtailment", |e| {
        grid_signals(e)
            .iter()
            .any(|g| g.kind == GridSignalKind::Curtail)
    })
    .await;
    let events = grid.events();
    let signals = grid_signals(&events);
    assert!(signals.iter().all(|g| g.site == SITE));
    assert!(
        signals
            .iter()
            .any(|g| g.kind == GridSignalKind::Normal && g.event_id == INITIAL_EVENT_ID),
        "{signals:?}"
    );
    assert!(
        signals.iter().any(|g| g.kind == GridSignalKind::Price
            && g.event_id == INITIAL_PRICE_ID
            && g.price_per_mwh == Some(INITIAL_PRICE_PER_MWH)),
        "{signals:?}"
    );
    let curtail = signals
        .iter()
        .find(|g| g.kind == GridSignalKind::Curtail)
        .expect("curtailment");
    assert_eq!(curtail.event_id, twin_curtail.event_id);
    assert_eq!(curtail.target_kw, twin_curtail.target_kw);
    assert!(curtail.deadline.is_some_and(|d| d > curtail.ts));

    // A miner whose server stops is reported offline.
    let is_offline = |s: &&MinerStatus| s.state == MinerState::Offline;
    let before = statuses(&telemetry.events(), "m-002").len();
    devices
        .stop_machine(SITE, "m-002")
        .await
        .expect("stop m-002");
    telemetry
        .until("m-002 reported offline", |e| {
            statuses(e, "m-002")[before..].iter().any(is_offline)
        })
        .await;
    let offline_at = statuses(&telemetry.events(), "m-002")
        .into_iter()
        .find(is_offline)
        .map(|s| s.ts)
        .expect("offline");
    let others = statuses(&telemetry.events(), "m-001").len();
    telemetry
        .until("m-001 still reporting", |e| {
            statuses(e, "m-001").len() > others
        })
        .await;

    // A miner answering replies cut in half is dead-lettered, naming it.
    let m3 = devices
        .miner_address(SITE, "m-003")
        .expect("m-003")
        .to_string();
    devices.garble(SITE, "m-003").await.expect("garble m-003");
    dlq.until_raw("m-003's cut reply dead-lettered", |seen| {
        seen.iter()
            .any(|m| header(m, HEADER_DLQ_DEVICE) == Some(m3.as_str()))
    })
    .await;
    let letter = dlq
        .seen
        .iter()
        .find(|m| header(m, HEADER_DLQ_DEVICE) == Some(m3.as_str()))
        .expect("letter");
    assert_eq!(letter.subject.as_str(), "dlq.adapters");
    assert_eq!(header(letter, HEADER_DLQ_ADAPTER), Some("cgminer"));
    let reason = header(letter, names::HEADER_DLQ_REASON).expect("reason");
    assert!(reason.contains("ends early"), "{reason}");

    // Restarted on the same port: it reports again.
    devices
        .restart_machine(SITE, "m-002")
        .await
        .expect("restart m-002");
    telemetry
        .until("m-002 answering again", |e| {
            statuses(e, "m-002")
                .iter()
                .any(|s| s.ts > offline_at && s.state == MinerState::Mining)
        })
        .await;

    stop_role.cancel();
    stopped(role).await;
    shutdown.cancel();
    tokio::time::timeout(WAIT, devices.stopped())
        .await
        .expect("the devices stop on shutdown");
}
