//! Registry records: their defaults and limits, bad and unknown fields named, keys and references
//! in their layout, and entries applied to a view recording what they replaced.

use super::*;

fn machine() -> Machine {
    Machine {
        id: "m-001".into(),
        site: "site-01".into(),
        pool: Some("main".into()),
        model: "S19".into(),
        rack: None,
        pdu: None,
        outlet: None,
        nominal_hashrate_hs: 110e12,
        nominal_power_w: 3250.0,
        adapter: Adapter {
            kind: AdapterKind::Cgminer,
            address: Some("10.0.0.5:4028".into()),
            channel: None,
        },
        mines_as: None,
        customer: None,
        power_target_min_w: None,
    }
}

#[test]
fn a_power_target_minimum_lies_within_the_nameplate() {
    let mut m = machine();
    for (min, ok) in [
        (Some(1300.0), true),
        (Some(3250.0), true),
        (Some(3251.0), false),
        (Some(0.0), false),
        (Some(f64::NAN), false),
        (None, true),
    ] {
        m.power_target_min_w = min;
        assert_eq!(m.validate().is_ok(), ok, "{min:?}");
    }
}

#[test]
fn a_site_gets_the_default_limits() {
    let site: Site = serde_json::from_str(r#"{"id":"site-01","allocation_kw":500}"#).unwrap();
    assert_eq!(site, Site::new("site-01", 500.0));
    assert!(Record::Site(site).validate().is_ok());
}

#[test]
fn bad_fields_are_named() {
    let cases: Vec<(Record, &str)> = vec![
        (Record::Site(Site::new("a.b", 1.0)), "id"),
        (Record::Site(Site::new("violation", 1.0)), "id"),
        (Record::Site(Site::new("s", 0.0)), "allocation_kw"),
        (Record::Site(Site::new("s", f64::NAN)), "allocation_kw"),
        (
            Record::Site(Site {
                timezone: "Mars/Olympus".into(),
                ..Site::new("s", 1.0)
            }),
            "timezone",
        ),
        (
            Record::Site(Site {
                warning_pct: 96.0,
                ..Site::new("s", 1.0)
            }),
            "critical_pct",
        ),
        (
            Record::Site(Site {
                emergency_temp_c: 30.0,
                ..Site::new("s", 1.0)
            }),
            "emergency_temp_c",
        ),
        (
            Record::Site(Site {
                settlement_minutes: 7,
                ..Site::new("s", 1.0)
            }),
            "settlement_minutes",
        ),
        (
            Record::Machine(Machine {
                nominal_power_w: -1.0,
                ..machine()
            }),
            "nominal_power_w",
        ),
        (
            Record::Machine(Machine {
                adapter: Adapter {
                    kind: AdapterKind::Cgminer,
                    address: Some("10.0.0.5".into()),
                    channel: None,
                },
                ..machine()
            }),
            "adapter.address",
        ),
        (
            Record::Machine(Machine {
                adapter: Adapter {
                    kind: AdapterKind::Pdu,
                    address: Some("http://pdu/outlets".into()),
                    channel: None,
                },
                ..machine()
            }),
            "adapter.channel",
        ),
        (
            Record::Machine(Machine {
                mines_as: Some(MinesAs {
                    miner: "4Wallet".into(),
                    worker: None,
                }),
                pool: None,
                ..machine()
            }),
            "mines_as",
        ),
        (
            Record::Machine(Machine {
                customer: Some("a b".into()),
                ..machine()
            }),
            "customer",
        ),
        (
            Record::Site(Site {
                tariff_per_mwh: Some(f64::NAN),
                ..Site::new("s", 1.0)
            }),
            "tariff_per_mwh",
        ),
    ];
    for (record, field) in cases {
        let err = record.validate().expect_err(field);
        assert_eq!(err.field, field, "{err}");
    }
    assert!(Record::Machine(machine()).validate().is_ok());
}

#[test]
fn unknown_fields_are_refused_with_their_name() {
    let err = Record::parse(
        RecordKind::Site,
        br#"{"id":"s","allocation_kw":1,"alocation":2}"#,
    )
    .unwrap_err();
    assert!(err.reason.contains("alocation"), "{err}");
}

#[test]
fn every_kind_of_record_round_trips_through_json() {
    let sensor = Record::Sensor(Sensor {
        id: "t1".into(),
        site: "s".into(),
        kind: SensorKind::Temperature,
        adapter: Adapter::default(),
    });
    let meter = Record::Meter(Meter {
        id: "main".into(),
        site: "s".into(),
        machine: None,
        adapter: Adapter::default(),
    });
    let pool = Record::Pool(Pool {
        id: "p".into(),
        name: String::new(),
        allocation_kw: Some(5.0),
        coin: Some("XMR".into()),
        operator: Some("op-7".into()),
        location: Some("Lyngdal, NO2".into()),
    });
    for record in [
        Record::Site(Site::new("s", 1.0)),
        pool,
        Record::Machine(Machine {
            pool: Some("p".into()),
            mines_as: Some(MinesAs {
                miner: "4Wallet".into(),
                worker: None,
            }),
            customer: Some("acme".into()),
            ..machine()
        }),
        sensor,
        meter,
    ] {
        let json = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record, "{json}");
        let kind = record.kind();
        assert_eq!(
            Record::parse(kind, json.as_bytes()).ok(),
            None,
            "type is not a field"
        );
    }
}

#[test]
fn keys_and_references_follow_the_layout() {
    let m = Record::Machine(machine());
    assert_eq!(m.key(), "machine.site-01.m-001");
    assert_eq!(
        m.references(),
        vec![
            ("site", "site.site-01".to_string()),
            ("pool", "pool.main".to_string())
        ]
    );
}

#[test]
fn entries_apply_to_a_view_and_record_what_they_replaced() {
    let mut view = RegistryView::default();
    let put = |allocation_kw| RegistryEntry {
        key: "site.s".into(),
        op: ChangeOp::Put,
        by: "ops".into(),
        at: Utc::now(),
        record: Some(Record::Site(Site::new("s", allocation_kw))),
    };
    assert_eq!(view.apply(&put(100.0)), None);
    let replaced = view.apply(&put(80.0)).unwrap();
    let change = put(80.0).change(Some(&replaced));
    assert!(change.before.unwrap().contains("100"));
    assert_eq!(view.site("s").unwrap().allocation_kw, 80.0);
    let delete = RegistryEntry {
        key: "site.s".into(),
        op: ChangeOp::Delete,
        by: "ops".into(),
        at: Utc::now(),
        record: None,
    };
    delete.check().unwrap();
    assert!(view.apply(&delete).is_some());
    assert!(view.site("s").is_none());
    let mismatched = RegistryEntry {
        key: "site.other".into(),
        ..put(1.0)
    };
    assert_eq!(mismatched.check().unwrap_err().field, "key");
}
