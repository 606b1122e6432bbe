//! The device families the adapters poll, one file each: which registry records it reads,
//! how one of its devices is read, what the reply becomes, and the fake the simulator serves
//! for it. Adding a family is a file here and a line in [`all`] (and, for a family the
//! registry names, its `AdapterKind`).

mod coin;
mod grid;
mod iotawatt;
mod meters;
mod miner;
mod pdu;
mod roomalert;

pub use grid::{INITIAL_EVENT_ID, INITIAL_PRICE_ID, INITIAL_PRICE_PER_MWH};

use super::device::Family;
use crate::fake::Routes;

/// Every family, made once per run of the role (a family may remember what its devices said
/// across registry changes: the grid feeds' last signals).
pub(super) fn all() -> Vec<Box<dyn Family>> {
    vec![
        Box::new(miner::Cgminer),
        Box::new(iotawatt::Iotawatt),
        Box::new(roomalert::Roomalert),
        Box::new(pdu::Pdu),
        Box::new(grid::Grid::default()),
        Box::new(coin::Coins::default()),
    ]
}

/// Every family's fake ([`Family::fake`]), each under `/<name>/` (`/iotawatt/<site>/query`,
/// `/grid/<site>/price`): what the simulator serves as the farm's HTTP devices.
pub(crate) fn fakes() -> Routes {
    all()
        .iter()
        .fold(Routes::new(), |routes, family| match family.fake() {
            Some(fake) => routes.nest(&format!("/{}", family.name()), fake),
            None => routes,
        })
}

/// The instant the families' tests read their devices at.
#[cfg(test)]
fn at() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2026, 7, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::poll::config::{AdaptersConfig, GridFeed, GridFeedKind};
    use crate::adapters::poll::device::targets;
    use adit_schemas::SensorKind;
    use adit_schemas::registry::{
        Adapter, AdapterKind, Machine, Meter, Record, RegistryView, Sensor, Site,
    };

    fn adapter(kind: AdapterKind, address: &str, channel: Option<&str>) -> Adapter {
        Adapter {
            kind,
            address: Some(address.into()),
            channel: channel.map(str::to_string),
        }
    }

    fn machine(id: &str, adapter: Adapter) -> Machine {
        Machine {
            id: id.into(),
            site: "s1".into(),
            pool: None,
            model: "S9".into(),
            rack: None,
            pdu: None,
            outlet: None,
            nominal_hashrate_hs: 13.5e12,
            nominal_power_w: 1350.0,
            adapter,
            mines_as: None,
            customer: None,
            power_target_min_w: None,
        }
    }

    fn meter(id: &str, machine: Option<&str>, adapter: Adapter) -> Meter {
        Meter {
            id: id.into(),
            site: "s1".into(),
            machine: machine.map(str::to_string),
            adapter,
        }
    }

    fn view(records: Vec<Record>) -> RegistryView {
        RegistryView {
            records: records.into_iter().map(|r| (r.key(), r)).collect(),
        }
    }

    #[test]
    fn devices_come_from_the_registry_grouped_by_url() {
        let iw = "http://10.0.0.5";
        let v = view(vec![
            Record::Site(Site::new("s1", 100.0)),
            Record::Machine(machine(
                "m1",
                adapter(AdapterKind::Cgminer, "10.0.0.7:4028", None),
            )),
            Record::Machine(machine("m2", Adapter::default())),
            Record::Machine(machine(
                "m3",
                adapter(AdapterKind::Pdu, "http://pdu", Some("1")),
            )),
            Record::Meter(meter(
                "sub1",
                Some("m1"),
                adapter(AdapterKind::Iotawatt, iw, Some("Input_1")),
            )),
            Record::Meter(meter(
                "main",
                None,
                adapter(AdapterKind::Iotawatt, iw, Some("Main")),
            )),
            Record::Meter(meter(
                "o2",
                Some("m2"),
                adapter(AdapterKind::Pdu, "http://pdu/api", Some("2")),
            )),
            Record::Sensor(Sensor {
                id: "t1".into(),
                site: "s1".into(),
                kind: SensorKind::Temperature,
                adapter: adapter(AdapterKind::Roomalert, "http://ra", None),
            }),
        ]);
        let grid = [GridFeed {
            site: "s1".into(),
            kind: GridFeedKind::Price,
            url: "http://grid/price".into(),
            map: None,
        }];
        let config = AdaptersConfig {
            grid: grid.to_vec(),
            ..AdaptersConfig::default()
        };
        let t = targets(&all(), &v, &config);
        let families: Vec<(&str, &str)> = t
            .devices
            .keys()
            .map(|k| (k.family, k.address.as_str()))
            .collect();
        assert_eq!(
            families,
            [
                ("cgminer", "10.0.0.7:4028"),
                ("grid", "http://grid/price"),
                ("iotawatt", "http://10.0.0.5/"),
                ("pdu", "http://pdu/api"),
                ("roomalert", "http://ra/getData.json"),
            ]
        );
        // The IotaWatt's two meters are one device, read for both, in registry order.
        let iotawatt = t
            .devices
            .iter()
            .find(|(k, _)| k.family == "iotawatt")
            .map(|(_, d)| format!("{d:?}"))
            .expect("one IotaWatt");
        let main = iotawatt.find("machine: \"main\"").expect("main meter");
        let sub = iotawatt.find("machine: \"m1\"").expect("sub meter");
        assert!(main < sub, "{iotawatt}");
        assert!(iotawatt.contains("channel: \"Input_1\""), "{iotawatt}");
        assert_eq!(t.skipped.len(), 1, "{:?}", t.skipped);
        assert!(t.skipped[0].contains("machine s1/m3"), "{:?}", t.skipped);
        let roomalert = t
            .devices
            .iter()
            .find(|(k, _)| k.family == "roomalert")
            .map(|(_, d)| format!("{d:?}"))
            .expect("one RoomAlert");
        assert!(roomalert.contains("label: \"t1\""), "{roomalert}");
    }
}
