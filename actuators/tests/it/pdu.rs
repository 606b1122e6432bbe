//! The actuators role switching PDU outlets over SNMP against a real agent (Net-SNMP's
//! `snmpd`, answering APC's outlet-control column): commands on a real JetStream CONTROL
//! stream switch a machine's outlet off and on, a cycle keeps it off for at least the PDU's
//! `min_off` and ends on, a PDU configured with the wrong community fails with a reason
//! (after every attempt), and a machine without an outlet is refused; every attempt is
//! reported as an outcome.

use std::time::Duration;

use adit_actuators::{self as actuators, ActuatorsConfig};
use adit_bus::publish::Publisher;
use adit_bus::registry::Registry;
use adit_bus::setup::{ensure_buckets, ensure_streams};
use adit_devices::pdu_snmp::{PduConfig, PduKind};
use adit_schemas::control::{Command, CommandAction, CommandOutcome, OutcomeStatus};
use adit_schemas::registry::{Machine, Record, Site};
use adit_schemas::{AnyEvent, names};
use adit_testkit::snmpd::{OUTLET_CONTROL, WRITE_COMMUNITY};
use adit_testkit::tail::Tail;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

fn machine(id: &str, pdu: Option<&str>, outlet: Option<u32>) -> Record {
    Record::Machine(Machine {
        pdu: pdu.map(str::to_string),
        outlet,
        ..Machine::new(id, "s1", "S19", 110e12, 3250.0)
    })
}

fn pdu(name: &str, address: &str, community: &str) -> PduConfig {
    PduConfig {
        name: name.into(),
        kind: PduKind::Snmp,
        address: address.into(),
        community: community.into(),
        oid: OUTLET_CONTROL.into(),
        on: 1,
        off: 2,
        min_off: Duration::from_secs(2),
    }
}

fn command(id: &str, target: &str, action: CommandAction, value: Option<f64>) -> Command {
    Command {
        id: id.into(),
        site: "s1".into(),
        target: target.into(),
        action,
        value,
        rule: "operator".into(),
        ts: Utc::now(),
    }
}

/// The outcomes of command `id` so far.
fn outcomes<'a>(events: &'a [AnyEvent], id: &str) -> Vec<&'a CommandOutcome> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::CommandOutcome(o) if o.id == id => Some(o),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn outlets_are_switched_and_cycled_over_snmp_and_failures_say_why() {
    let agent = adit_testkit::Snmpd::start();
    let nats = adit_testkit::NatsServer::start();
    let js = nats.jetstream().await;
    ensure_streams(&js, &Default::default())
        .await
        .expect("streams");
    ensure_buckets(&js, 1).await.expect("buckets");
    let registry = Registry::open(js.clone()).await.expect("registry");
    for record in [
        Record::Site(Site::new("s1", 100.0)),
        machine("m-1", Some("rack-a"), Some(4)),
        machine("m-2", Some("rack-b"), Some(1)),
        machine("m-3", None, None),
    ] {
        registry.put(record, "test", None).await.expect("put");
    }
    let config = ActuatorsConfig {
        timeout: Duration::from_millis(500),
        attempts: 2,
        retry_after: Duration::from_millis(100),
        pdus: vec![
            pdu("rack-a", &agent.address(), WRITE_COMMUNITY),
            // The read-only community: the agent answers the SET with an error.
            pdu("rack-b", &agent.address(), "public"),
        ],
        ..ActuatorsConfig::default()
    };
    config.validate().expect("config");
    let shutdown = CancellationToken::new();
    let publisher = Publisher::new(js.clone());
    let role = tokio::spawn(actuators::run(
        config,
        adit_testkit::tail::loopback_egress(),
        registry,
        publisher.clone(),
        shutdown.clone(),
    ));
    let mut control = Tail::open(&js, names::STREAM_CONTROL).await;

    // Off, then on: two SETs of outlet 4, each acknowledged.
    for (id, on) in [("off-1", 0.0), ("on-1", 1.0)] {
        let c = command(id, "m-1", CommandAction::Outlet, Some(on));
        publisher
            .publish(&AnyEvent::Command(c))
            .await
            .expect("publish");
        control.until(id, |e| !outcomes(e, id).is_empty()).await;
        let events = control.events();
        let got = outcomes(&events, id);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].status, OutcomeStatus::Acked, "{got:?}");
        assert_eq!(got[0].actuator, "pdu");
    }
    let sets = agent.sets();
    assert_eq!(
        sets.iter().map(|s| (s.outlet, s.value)).collect::<Vec<_>>(),
        [(4, 2), (4, 1)],
        "{sets:?}"
    );

    // A cycle asked for 1 s is off for the PDU's 2 s at least, and ends on.
    let c = command("cycle-1", "m-1", CommandAction::OutletCycle, Some(1.0));
    publisher
        .publish(&AnyEvent::Command(c))
        .await
        .expect("publish");
    control
        .until("the cycle", |e| !outcomes(e, "cycle-1").is_empty())
        .await;
    let events = control.events();
    let cycle = outcomes(&events, "cycle-1");
    assert_eq!(cycle[0].status, OutcomeStatus::Acked, "{cycle:?}");
    assert!(cycle[0].reply.contains("2 s off"), "{cycle:?}");
    let sets = agent.sets();
    let (off, on) = (&sets[2], &sets[3]);
    assert_eq!((off.outlet, off.value, on.outlet, on.value), (4, 2, 4, 1));
    let off_for = on.at - off.at;
    assert!(off_for >= 2.0, "the outlet was off for only {off_for} s");

    // The read-only community: refused by the agent, after each attempt, with its reason.
    let c = command("denied", "m-2", CommandAction::Outlet, Some(0.0));
    publisher
        .publish(&AnyEvent::Command(c))
        .await
        .expect("publish");
    control
        .until("the refused SET", |e| outcomes(e, "denied").len() == 2)
        .await;
    let events = control.events();
    for o in outcomes(&events, "denied") {
        assert_eq!(o.status, OutcomeStatus::Failed);
        assert!(
            o.reply.contains("noAccess") || o.reply.contains("did not answer"),
            "{o:?}"
        );
    }
    // A machine without an outlet: refused at once, nothing sent.
    let c = command("no-outlet", "m-3", CommandAction::OutletCycle, Some(5.0));
    publisher
        .publish(&AnyEvent::Command(c))
        .await
        .expect("publish");
    control
        .until("the refusal", |e| !outcomes(e, "no-outlet").is_empty())
        .await;
    let events = control.events();
    let refused = outcomes(&events, "no-outlet");
    assert_eq!(refused[0].status, OutcomeStatus::Failed);
    assert!(
        refused[0].reply.contains("no pdu and outlet"),
        "{refused:?}"
    );
    assert_eq!(agent.sets().len(), 4, "no further SET reached the agent");

    shutdown.cancel();
    role.await.expect("join").expect("the role ends cleanly");
}
