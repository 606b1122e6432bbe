//! A utility feed in its own shape, read by a map in config (issue 26): the `adapters` role
//! polls a plain-text power signal in the seed systems' style (`NORMAL`, `CURTAIL`) served
//! over real HTTP, with a private nats-server. Each change of the feed becomes one grid
//! signal on GRID (a curtailment with the configured target and a deadline `lead` after it was
//! first seen), an unchanged feed polled many times is one event, confirmed every
//! `grid_confirm` (so the controller can tell a silent feed), and a word the map does not
//! know is dead-lettered with its reason, unconfirmed, while polling goes on.

use std::time::Duration;

use adit_devices::feed_map::FeedMap;
use adit_ingest::adapters::poll::{AdaptersConfig, GridFeed, GridFeedKind};
use adit_schemas::{AnyEvent, GridSignal, GridSignalKind, names};
use adit_testkit::tail::{Tail, header};
use tokio_util::sync::CancellationToken;

use crate::common::{bus, loopback, spawn_role, stopped};

/// The distinct events the signals stand for (a confirmation repeats its event's id).
fn events(events: &[AnyEvent]) -> std::collections::BTreeSet<String> {
    signals(events).into_iter().map(|g| g.event_id).collect()
}

fn signals(events: &[AnyEvent]) -> Vec<GridSignal> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::Grid(g) => Some(g.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_text_power_signal_drives_grid_signals_through_its_map() {
    let nats = adit_testkit::NatsServer::start();
    let (js, registry) = bus(&nats).await;
    let feed = adit_testkit::Feed::start("/power-signal", "NORMAL\n").await;
    let map: FeedMap = toml::from_str(
        "format = \"text\"\ntarget_kw = 15.0\nlead = \"10m\"\n\
         values = { CURTAIL = \"curtail\", NORMAL = \"normal\" }\n",
    )
    .unwrap();
    let config = AdaptersConfig {
        grid_confirm: Duration::from_secs(1),
        grid: vec![GridFeed {
            site: "site-01".into(),
            kind: GridFeedKind::Signal,
            url: feed.url.clone(),
            map: Some(map),
        }],
        ..loopback()
    };
    config.validate().unwrap();
    let shutdown = CancellationToken::new();
    let role = spawn_role(config, registry, &js, &shutdown);

    let mut grid = Tail::open(&js, names::STREAM_GRID).await;
    grid.until("the normal signal", |e| events(e).len() == 1)
        .await;
    assert_eq!(signals(&grid.events())[0].kind, GridSignalKind::Normal);

    feed.set("CURTAIL");
    grid.until("the curtailment", |e| events(e).len() == 2)
        .await;
    // Polled every 300 ms for 2.5 s more: one event, confirmed about every second (not at
    // every poll), its id and deadline kept, received anew.
    grid.drain_for(Duration::from_millis(2500)).await;
    let seen = signals(&grid.events());
    assert_eq!(events(&grid.events()).len(), 2, "{seen:?}");
    let curtail = seen[1].clone();
    assert_eq!(curtail.kind, GridSignalKind::Curtail);
    assert_eq!(curtail.site, "site-01");
    assert_eq!(curtail.target_kw, Some(15.0));
    assert_eq!(
        curtail.deadline,
        Some(curtail.ts + chrono::Duration::minutes(10)),
        "lead after it was first seen"
    );
    assert!(curtail.event_id.starts_with("feed-"), "{curtail:?}");
    let confirmations = &seen[2..];
    assert!(
        (1..=4).contains(&confirmations.len()),
        "confirmed every second: {seen:?}"
    );
    for (earlier, c) in seen[1..].iter().zip(confirmations) {
        assert_eq!(
            (&c.event_id, c.deadline, c.target_kw),
            (&curtail.event_id, curtail.deadline, curtail.target_kw)
        );
        assert!(
            c.ts - earlier.ts >= chrono::Duration::milliseconds(900),
            "{seen:?}"
        );
    }

    // A word the map does not know: dead-lettered with the reason, no signal, and no more
    // confirmations (the feed says nothing adit can trust).
    let mut dlq = Tail::open(&js, names::STREAM_DLQ).await;
    feed.set("PEAK");
    dlq.until_raw("the unknown word dead-lettered", |seen| !seen.is_empty())
        .await;
    let reason = header(&dlq.seen[0], names::HEADER_DLQ_REASON).unwrap_or_default();
    assert!(reason.contains("\"PEAK\""), "{reason}");
    assert_eq!(&dlq.seen[0].payload[..], b"PEAK");
    grid.drain_for(Duration::from_millis(300)).await;
    let before = grid.events().len();
    grid.drain_for(Duration::from_millis(2500)).await;
    assert_eq!(
        grid.events().len(),
        before,
        "nothing confirmed while the feed is garbage"
    );

    // Back to normal: a third event.
    feed.set("normal");
    grid.until("back to normal", |e| events(e).len() == 3).await;
    assert_eq!(
        signals(&grid.events()).last().map(|g| g.kind),
        Some(GridSignalKind::Normal)
    );

    // Curtail again: a new event, not the first one over again.
    feed.set("CURTAIL");
    grid.until("the second curtailment", |e| events(e).len() == 4)
        .await;
    let again = signals(&grid.events()).last().cloned().unwrap();
    assert_eq!(again.kind, GridSignalKind::Curtail);
    assert_ne!(again.event_id, curtail.event_id, "a new episode, a new id");
    shutdown.cancel();
    stopped(role).await;
}
