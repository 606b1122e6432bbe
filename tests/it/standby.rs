//! High availability without a home-made cluster (issue 6): two `adit` processes on one NATS
//! and one table root. One holds each pipeline's lease, the other stands by; killing the
//! holder with SIGKILL hands the work over within seconds, and every event lands exactly once.
//! With partitions, the instances spread over both processes and write the same tables
//! concurrently, still exactly once. A rolling restart (SIGTERM, the other takes over, start
//! again; then the other) is an upgrade without a pause, and drops nothing either.

use crate::common;

use std::time::{Duration, Instant};

use adit_bus::publish::Outgoing;
use adit_schemas::{AnyEvent, EnergyReading, EnergySource};
use common::*;
use rand::{Rng, SeedableRng};

/// Who holds lease `key` (the holder name carries the pid), if anyone.
async fn holder(js: &async_nats::jetstream::Context, key: &str) -> Option<String> {
    let kv = js.get_key_value("adit_leases").await.ok()?;
    let value = kv.get(key).await.ok()??;
    Some(String::from_utf8_lossy(&value).into_owned())
}

fn holds(app: &App, holder: &Option<String>) -> bool {
    match (app.pid(), holder) {
        (Some(pid), Some(h)) => h.contains(&format!("-{pid}-")),
        _ => false,
    }
}

/// Two `pipelines` processes with `extra_toml` on a private NATS, in `root/a` and `root/b` of
/// a temp dir `root`, sharing the table root `root/tables`; and a publisher on that NATS.
async fn two_processes(
    extra_toml: &str,
) -> (
    NatsServer,
    adit_bus::Publisher,
    async_nats::jetstream::Context,
    tempfile::TempDir,
    [App; 2],
) {
    let nats = NatsServer::start();
    let (publisher, js) = publisher(&nats).await;
    let root = tempfile::tempdir().unwrap();
    let apps = ["a", "b"].map(|name| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        App::start_on(
            &nats.url(),
            &dir,
            &root.path().join("tables"),
            "pipelines",
            extra_toml,
        )
    });
    (nats, publisher, js, root, apps)
}

/// Waits until `standby` holds the telemetry lease.
async fn wait_takeover(js: &async_nats::jetstream::Context, standby: &App) {
    eventually(
        Duration::from_secs(60),
        "the standby to take over",
        || async { holds(standby, &holder(js, "telemetry").await) },
    )
    .await;
}

/// Stops each app with SIGTERM: each must exit cleanly.
fn assert_clean_exits<'a>(apps: impl IntoIterator<Item = &'a mut App>) {
    for app in apps {
        assert!(app.terminate(), "clean exit; log:\n{}", app.log());
    }
}

fn reading(i: usize, sites: usize, base: chrono::DateTime<chrono::Utc>) -> Outgoing {
    Outgoing::event(&AnyEvent::Energy(EnergyReading {
        site: format!("site-{:02}", i % sites),
        machine: format!("m-{:03}", i % 40),
        ts: base + chrono::Duration::milliseconds(i as i64),
        power_w: 1000.0,
        energy_wh: None,
        source: EnergySource::Pdu,
    }))
}

/// Publishes `n` readings over `sites` in the background, in chunks.
fn produce(publisher: adit_bus::Publisher, n: usize, sites: usize) -> tokio::task::JoinHandle<()> {
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    tokio::spawn(async move {
        for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
            let msgs = chunk.iter().map(|i| reading(*i, sites, base)).collect();
            publisher.publish_all(msgs).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// Waits for one of `a` and `b` to lead the telemetry pipeline (and work a little); the
/// leader, then the standby.
async fn leader_and_standby<'x>(
    js: &async_nats::jetstream::Context,
    a: &'x mut App,
    b: &'x mut App,
) -> (&'x mut App, &'x mut App) {
    eventually(Duration::from_secs(30), "a telemetry leader", || async {
        let h = holder(js, "telemetry").await;
        holds(a, &h) || holds(b, &h)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    if holds(a, &holder(js, "telemetry").await) {
        (a, b)
    } else {
        (b, a)
    }
}

async fn assert_exactly_once(tables: &std::path::Path, n: usize, apps: &[&App]) {
    let t = ["energy_readings"];
    let deadline = Instant::now() + Duration::from_secs(180);
    while scalar(tables, &t, "SELECT count(*) FROM energy_readings").await < n as i64 {
        assert!(
            Instant::now() < deadline,
            "not all events landed; logs:\n{}",
            apps.iter()
                .map(|a| a.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = n as i64;
    assert_eq!(
        scalar(tables, &t, "SELECT count(*) FROM energy_readings").await,
        n,
        "rows"
    );
    assert_eq!(
        scalar(
            tables,
            &t,
            "SELECT count(DISTINCT seq) FROM energy_readings"
        )
        .await,
        n,
        "each stream sequence once"
    );
    assert_eq!(
        scalar(tables, &t, "SELECT sum(seq) FROM energy_readings").await,
        n * (n + 1) / 2,
        "checksum over stream sequences 1..=N"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leader_is_killed() {
    const EVENTS: usize = 100_000;
    let (_nats, publisher, js, root, [mut a, mut b]) = two_processes("").await;
    let tables = root.path().join("tables");
    let producer = produce(publisher, EVENTS, 3);

    let mut takeovers = Vec::new();
    for round in 0..5 {
        let (leader, standby) = leader_and_standby(&js, &mut a, &mut b).await;
        leader.kill();
        let killed = Instant::now();
        wait_takeover(&js, standby).await;
        let took = killed.elapsed();
        eprintln!("round {round}: standby took over {took:?} after SIGKILL of the leader");
        takeovers.push(took);
        leader.restart();
    }
    producer.await.unwrap();
    assert_exactly_once(&tables, EVENTS, &[&a, &b]).await;
    takeovers.sort();
    eprintln!(
        "takeover after SIGKILL (lease_ttl 3s): min {:?}, median {:?}, max {:?}",
        takeovers[0],
        takeovers[takeovers.len() / 2],
        takeovers[takeovers.len() - 1]
    );
    assert_clean_exits([&mut a, &mut b]);
}

/// An upgrade as the book tells it (docs/src/operate/backups.md), done as a rolling restart: each process in turn is
/// stopped with SIGTERM (it finishes its batch and releases its leases), the other takes its
/// work over, and it is started again (the new binary) before the next one is stopped. Events
/// flow throughout; every one lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_hands_over_on_sigterm_and_drops_nothing() {
    const EVENTS: usize = 60_000;
    let (_nats, publisher, js, root, [mut a, mut b]) = two_processes("").await;
    let tables = root.path().join("tables");
    let producer = produce(publisher, EVENTS, 3);
    for round in 0..2 {
        let (leader, standby) = leader_and_standby(&js, &mut a, &mut b).await;
        let stopped = Instant::now();
        assert!(leader.terminate(), "clean exit; log:\n{}", leader.log());
        wait_takeover(&js, standby).await;
        eprintln!(
            "round {round}: the standby took over {:?} after SIGTERM of the leader",
            stopped.elapsed()
        );
        leader.restart();
    }
    producer.await.unwrap();
    assert_exactly_once(&tables, EVENTS, &[&a, &b]).await;
    assert_clean_exits([&mut a, &mut b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partitions_in_two_processes_stay_exactly_once_under_sigkill() {
    const EVENTS: usize = 80_000;
    let partitions = "[pipelines.partitions]\ntelemetry = [\"site-00\", \"site-01\"]\n";
    let (_nats, publisher, js, root, mut apps) = two_processes(partitions).await;
    let tables = root.path().join("tables");
    let producer = produce(publisher, EVENTS, 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut spread = false;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(800..2500))).await;
        let (h0, h1) = (
            holder(&js, "telemetry.site-00").await,
            holder(&js, "telemetry.site-01").await,
        );
        spread |= (holds(&apps[0], &h0) && holds(&apps[1], &h1))
            || (holds(&apps[1], &h0) && holds(&apps[0], &h1));
        let victim = rng.random_range(0..2);
        apps[victim].kill();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
        apps[victim].restart();
    }
    producer.await.unwrap();
    assert_exactly_once(&tables, EVENTS, &[&apps[0], &apps[1]]).await;
    let per_site = scalar(
        &tables,
        &["energy_readings"],
        "SELECT count(DISTINCT site) FROM energy_readings",
    )
    .await;
    assert_eq!(per_site, 2, "both partitions landed");
    eprintln!("partitions were held by different processes at some point: {spread}");
    assert_clean_exits(&mut apps);
}
