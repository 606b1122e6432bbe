//! adit on the engine it says it scales on (issue 30): a three-node NATS JetStream cluster
//! with every stream and bucket at three replicas, two `adit` pipelines processes given every
//! node's URL, readings and bad messages published while nodes are SIGKILLed one at a time
//! (the telemetry stream's leader, the meta leader, the lease bucket's leader), each restarted
//! and caught up before the next, then the adit process holding the pipelines. At the end
//! every reading landed once (rows, distinct stream sequences and the sum of the values), the
//! dead letters are exactly the bad messages published (filed by the landing alone, though
//! three other pipelines read and refuse them too), and no adit process stopped on its own.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adit_bus::Publisher;
use adit_bus::publish::Outgoing;
use adit_schemas::{AnyEvent, EnergyReading, EnergySource, names};
use adit_testkit::NatsCluster;
use common::*;

/// Reading `i`: its power is `i % 1000` W, so the sum over `0..n` is known.
fn reading(i: usize, base: chrono::DateTime<chrono::Utc>) -> Outgoing {
    Outgoing::event(&AnyEvent::Energy(EnergyReading {
        site: format!("site-{:02}", i % 3),
        machine: format!("m-{:03}", i % 40),
        ts: base + chrono::Duration::milliseconds(i as i64),
        power_w: (i % 1000) as f64,
        energy_wh: None,
        source: EnergySource::Pdu,
    }))
}

/// Who holds lease `key`, if anyone.
async fn holder(js: &async_nats::jetstream::Context, key: &str) -> Option<String> {
    let kv = js.get_key_value(names::KV_LEASES).await.ok()?;
    let value = kv.get(key).await.ok()??;
    Some(String::from_utf8_lossy(&value).into_owned())
}

/// Waits until `stream` has a leader; its name.
async fn leader_of(
    cluster: &NatsCluster,
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(leader) = NatsCluster::stream_leader(js, stream).await {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "{stream} has no leader:\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the cluster says of the telemetry stream, its consumers and the leases (for a
/// failure's message).
async fn telemetry_state(js: &async_nats::jetstream::Context) -> String {
    use futures::StreamExt;
    let mut out = String::new();
    let Ok(mut stream) = js.get_stream(names::STREAM_TELEMETRY).await else {
        return "TELEMETRY unavailable".into();
    };
    if let Ok(info) = stream.info().await {
        out += &format!(
            "TELEMETRY: last_seq={} cluster={:?}\n",
            info.state.last_sequence, info.cluster
        );
    }
    let mut consumers = stream.consumers();
    while let Some(Ok(c)) = consumers.next().await {
        out += &format!(
            "consumer {}: delivered={} ack_floor={} pending={} ack_pending={} redelivered={} cluster={:?}\n",
            c.name,
            c.delivered.stream_sequence,
            c.ack_floor.stream_sequence,
            c.num_pending,
            c.num_ack_pending,
            c.num_redelivered,
            c.cluster
        );
    }
    out += &format!("telemetry lease: {:?}\n", holder(js, "telemetry").await);
    out
}

/// Waits until `stream` has a leader and both other replicas are current.
async fn caught_up(cluster: &NatsCluster, js: &async_nats::jetstream::Context, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await
            && let Ok(info) = s.info().await
            && let Some(c) = info.cluster.as_ref()
            && c.leader.is_some()
            && c.replicas.len() == 2
            && c.replicas.iter().all(|p| p.current && !p.offline)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}'s replicas never caught up:\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The telemetry stream's leader, the meta leader and the lease bucket's leader killed in turn
/// under load, then the adit process holding the pipelines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_land_exactly_once_while_leaders_and_the_lease_holder_are_killed() {
    exercise(
        &[
            "telemetry stream leader",
            "meta leader",
            "lease bucket leader",
        ],
        true,
    )
    .await;
}

/// Publishes readings (and bad messages) while killing each node in `nodes`, one at a time
/// (and, with `kill_holder`, then the adit process holding the telemetry pipeline), and checks
/// that everything landed exactly once.
async fn exercise(nodes: &[&str], kill_holder: bool) {
    const BAD: usize = 25;
    let mut cluster = NatsCluster::start(3);
    let root = tempfile::tempdir().unwrap();
    let tables = root.path().join("tables");
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let r3 = "[nats.streams]\nreplicas = 3\n";
    // Leases at their default time to live: a lease bucket re-electing its leader takes
    // seconds, which the tests' usual 3 s would not survive.
    let ttl = [("ADIT_PIPELINES__LEASE_TTL", "10s")];
    let mut a = App::start_with_env(&cluster.url(), &da, &tables, "pipelines", r3, &ttl);
    let mut b = App::start_with_env(&cluster.url(), &db, &tables, "pipelines", r3, &ttl);
    let js = cluster.jetstream().await;

    // Every stream and bucket at three replicas, the leases included.
    let deadline = Instant::now() + Duration::from_secs(240);
    for stream in [
        names::STREAM_TELEMETRY.to_string(),
        names::STREAM_DLQ.to_string(),
        format!("KV_{}", names::KV_LEASES),
        format!("KV_{}", names::KV_REGISTRY),
    ] {
        let replicas = loop {
            if let Ok(mut s) = js.get_stream(&stream).await
                && let Ok(info) = s.info().await
            {
                break info.config.num_replicas;
            }
            assert!(
                Instant::now() < deadline,
                "{stream} never created; logs:\n{}\n{}",
                a.log(),
                b.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(replicas, 3, "{stream}");
    }

    // Bad messages first: each must be dead-lettered once, however many replays follow.
    for i in 0..BAD {
        let subject = format!("telemetry.energy.site-00.bad-{i}");
        // A stream just created may not answer yet on the node this client reached
        // ("stream not found" while its leader is elected): publish until acknowledged.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let acked = match js
                .publish(subject.clone(), format!("not json {i}").into())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            };
            match acked {
                Ok(()) => break,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "bad message {i} never acknowledged: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    // Readings in the background until the kills are done.
    let published = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (publisher, published, done) =
            (Publisher::new(js.clone()), published.clone(), done.clone());
        let base = chrono::Utc::now() - chrono::Duration::hours(1);
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let from = published.load(Ordering::SeqCst);
                let chunk = (from..from + 1_000).map(|i| reading(i, base)).collect();
                publisher.publish_all(chunk).await.unwrap();
                published.fetch_add(1_000, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // The longest time the landed rows stood still while readings waited; times from t0.
    let t0 = Instant::now();
    let longest_stall = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let watcher = {
        let (tables, published, longest_stall) =
            (tables.clone(), published.clone(), longest_stall.clone());
        tokio::spawn(async move {
            let (mut last, mut since) = (0i64, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if !tables.join("energy_readings").is_dir() {
                    continue;
                }
                // A read racing the log's clean-up fails now and then: skipped.
                let root = tables.clone();
                let read = async move { energy_rows(&root).await };
                let Ok(rows) = tokio::spawn(read).await else {
                    continue;
                };
                if last == 0 {
                    // Measured from the first rows landed: start-up is not a stall.
                    (last, since) = (rows, Instant::now());
                    continue;
                }
                if rows > last || rows as usize >= published.load(Ordering::SeqCst) {
                    let stalled = since.elapsed();
                    if stalled > Duration::from_secs(3) {
                        eprintln!(
                            "landed rows stood still for {stalled:?} until {:?}, at {rows}",
                            t0.elapsed()
                        );
                    }
                    let mut longest = longest_stall.lock().unwrap();
                    *longest = (*longest).max(stalled);
                    (last, since) = (rows, Instant::now());
                }
            }
        })
    };
    // Up: the telemetry pipeline held by one of them and landing. (Each stream's group
    // elects a leader on first creation, which on a loaded machine takes tens of seconds:
    // adit retries its setup meanwhile, and must not exit.)
    let up = Instant::now();
    eventually(
        Duration::from_secs(240),
        "the pipelines to start landing",
        || async {
            holder(&js, "telemetry").await.is_some()
                && tables.join("energy_readings").is_dir()
                && energy_rows(&tables).await > 0
        },
    )
    .await;
    eprintln!("adit up and landing after {:?}", up.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut kills = Vec::new();
    let telemetry_leader = leader_of(&cluster, &js, names::STREAM_TELEMETRY).await;
    for what in nodes.iter().copied() {
        let name = match what {
            "telemetry stream leader" => telemetry_leader.clone(),
            "meta leader" => cluster.wait_meta_leader(Duration::from_secs(60)),
            _ => leader_of(&cluster, &js, &format!("KV_{}", names::KV_LEASES)).await,
        };
        let i = cluster.index_of(&name);
        eprintln!("killing {name}, the {what}, at {:?}", t0.elapsed());
        cluster.kill(i);
        tokio::time::sleep(Duration::from_secs(8)).await;
        cluster.restart(i);
        kills.push(format!("{what} ({name})"));
        // As an operator would: the next node only once every replica has caught up.
        for stream in [
            names::STREAM_TELEMETRY.to_string(),
            format!("KV_{}", names::KV_LEASES),
        ] {
            caught_up(&cluster, &js, &stream).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // The process holding the telemetry pipeline, SIGKILLed and started again.
    if kill_holder {
        // The holder as the lease bucket now says (it may still be electing its leader).
        let deadline = Instant::now() + Duration::from_secs(60);
        let holding = loop {
            if let Some(h) = holder(&js, "telemetry").await {
                break h;
            }
            assert!(
                Instant::now() < deadline,
                "no one holds the telemetry lease"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let (leader, standby) = match (a.pid(), b.pid()) {
            (Some(pid), _) if holding.contains(&format!("-{pid}-")) => (&mut a, &mut b),
            _ => (&mut b, &mut a),
        };
        eprintln!("killing the adit process holding telemetry ({holding})");
        leader.kill();
        tokio::time::sleep(Duration::from_secs(4)).await;
        leader.restart();
        kills.push("the adit process holding the telemetry lease".to_string());
        assert!(standby.exited().is_none(), "{}", standby.log());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    done.store(true, Ordering::SeqCst);
    producer.await.unwrap();
    let n = published.load(Ordering::SeqCst);

    // Every reading landed, once.
    let deadline = Instant::now() + Duration::from_secs(180);
    let t = ["energy_readings"];
    while energy_rows(&tables).await < n as i64 {
        if Instant::now() >= deadline {
            panic!(
                "not all {n} readings landed ({} did); logs:\n{}\n---\n{}\n---\n{}\n---\n{}",
                energy_rows(&tables).await,
                a.log(),
                b.log(),
                cluster.log_tails(),
                telemetry_state(&js).await
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    watcher.abort();
    assert_eq!(energy_rows(&tables).await, n as i64, "rows");
    assert_eq!(
        scalar(
            &tables,
            &t,
            "SELECT count(DISTINCT seq) FROM energy_readings"
        )
        .await,
        n as i64,
        "each stream sequence once"
    );
    assert_eq!(
        scalar(
            &tables,
            &t,
            "SELECT count(DISTINCT ts) FROM energy_readings"
        )
        .await,
        n as i64,
        "each reading once"
    );
    let expected: i64 = (0..n).map(|i| (i % 1000) as i64).sum();
    assert_eq!(
        scalar(
            &tables,
            &t,
            "SELECT CAST(sum(power_w) AS BIGINT) FROM energy_readings"
        )
        .await,
        expected,
        "sum of the values"
    );
    // The dead letters: exactly the bad messages.
    let mut dlq = js.get_stream(names::STREAM_DLQ).await.unwrap();
    let dead = dlq.info().await.unwrap().state.messages;
    assert_eq!(dead, BAD as u64, "dead letters");
    assert!(a.exited().is_none(), "a exited on its own:\n{}", a.log());
    assert!(b.exited().is_none(), "b exited on its own:\n{}", b.log());
    let stall = *longest_stall.lock().unwrap();
    if std::env::var_os("ADIT_TEST_LOGS").is_some() {
        eprintln!("--- a ---\n{}\n--- b ---\n{}", a.log(), b.log());
    }
    eprintln!(
        "{n} readings and {BAD} bad messages through {} kills ({}): the longest stall of the landed rows was {stall:?}",
        kills.len(),
        kills.join(", ")
    );
}
