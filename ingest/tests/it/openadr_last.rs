//! What a VEN reads at its start as the site's last demand-response signal, against a private
//! nats-server: prices published on the same subject after a curtailment are looked past
//! (however many of GRID's messages lie between), another site's signals are not the site's,
//! and a site with only prices, or nothing, has none.

use adit_bus::{Publisher, ensure_streams};
use adit_ingest::adapters::openadr::last::last_demand_response;
use adit_schemas::{AnyEvent, GridSignal, GridSignalKind};
use chrono::{TimeZone, Utc};

fn signal(site: &str, event_id: &str, kind: GridSignalKind, n: i64) -> AnyEvent {
    let curtail = kind == GridSignalKind::Curtail;
    AnyEvent::Grid(GridSignal {
        site: site.into(),
        event_id: event_id.into(),
        kind,
        target_kw: curtail.then_some(5.0),
        deadline: curtail.then(|| Utc.timestamp_opt(1_800_000_000, 0).unwrap()),
        price_per_mwh: (kind == GridSignalKind::Price).then_some(40.0 + n as f64),
        ts: Utc.timestamp_opt(1_790_000_000 + n, 0).unwrap(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_demand_response_signal_is_found_past_later_prices() {
    let nats = adit_testkit::NatsServer::start();
    let js = nats.jetstream().await;
    ensure_streams(&js, &Default::default()).await.unwrap();
    let publisher = Publisher::new(js.clone());
    let publish = |event: AnyEvent| {
        let publisher = publisher.clone();
        async move { publisher.publish(&event).await.unwrap() }
    };
    // The event id and kind of the site's last demand-response signal.
    let last = |site: &'static str| {
        let js = js.clone();
        async move {
            last_demand_response(&js, site)
                .await
                .unwrap()
                .map(|g: GridSignal| (g.event_id, g.kind))
        }
    };
    let curtailed = Some(("oadr-e-m0-i0".to_string(), GridSignalKind::Curtail));
    let other = Some(("other".to_string(), GridSignalKind::Normal));

    assert_eq!(last_demand_response(&js, "s1").await.unwrap(), None);
    publish(signal("s1", "p-0", GridSignalKind::Price, 0)).await;
    assert_eq!(
        last_demand_response(&js, "s1").await.unwrap(),
        None,
        "prices only"
    );

    publish(signal("s1", "oadr-e-m0-i0", GridSignalKind::Curtail, 1)).await;
    publish(signal("s2", "other", GridSignalKind::Normal, 2)).await;
    for n in 3..6 {
        publish(signal("s1", &format!("p-{n}"), GridSignalKind::Price, n)).await;
    }
    assert_eq!(last("s1").await, curtailed, "past three prices");
    assert_eq!(last("s2").await, other);

    // More of GRID than the first window between the curtailment and the site's last price.
    for n in 0..5_000 {
        publish(signal(
            "s2",
            &format!("p-s2-{n}"),
            GridSignalKind::Price,
            10 + n,
        ))
        .await;
    }
    publish(signal("s1", "p-late", GridSignalKind::Price, 6_000)).await;
    assert_eq!(
        last("s1").await,
        curtailed,
        "past 5 000 messages of another site"
    );
    assert_eq!(last("s2").await, other, "past its own 5 000 prices");

    publish(signal("s1", "oadr-e-m0-i0", GridSignalKind::Normal, 6_001)).await;
    publish(signal("s1", "p-last", GridSignalKind::Price, 6_002)).await;
    assert_eq!(
        last("s1").await,
        Some(("oadr-e-m0-i0".to_string(), GridSignalKind::Normal)),
        "the curtailment's end is the last"
    );
}
