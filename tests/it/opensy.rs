//! OpenSY end to end on the simulated OpenSY node (issue 58): `adit run --roles
//! pool,pipelines,query` with `pool.chain = "opensy"`, mined by `adit worker --pool` as a user
//! would run it: shares land in SQL, the node takes the pool's blocks, a block is confirmed
//! once it is 100 deep (OpenSY's coinbase maturity, the pool's default for the chain), and
//! PPLNS splits it. Then a two-worker cluster (`adit coordinator`, `adit worker` over mutual
//! TLS) mines the pool as one miner, the coordinator taking the nonce's place from the jobs.

use crate::common;

use std::time::Duration;

use common::*;

/// The worker's regtest address (P2WPKH of a key nobody holds).
const MINER: &str = "rsyl1qgfpyysjzgfpyysjzgfpyysjzgfpyysjzsernx9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adit_worker_mines_opensy_through_the_pool_and_its_blocks_mature_after_100() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let stratum_port = free_port();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pool,pipelines,query",
        &opensy_pool(stratum_port),
    );
    app.wait_http().await;

    let mut worker = std::process::Command::new(adit_binary())
        .args([
            "worker",
            "--pool",
            &format!("stratum+tcp://127.0.0.1:{stratum_port}"),
            "--login",
            &format!("{MINER}+1.w1"),
            "--threads",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("adit worker starts");

    let tables = dir.path().join("tables");
    let confirmed = eventually_value(Duration::from_secs(300), || async {
        let n = scalar(
            &tables,
            &["blocks"],
            "SELECT count(*) FROM blocks WHERE status = 'confirmed'",
        )
        .await;
        (n >= 1).then_some(n)
    })
    .await;
    let _ = worker.kill();
    let output = worker.wait_with_output().expect("the worker's output");
    let Some(confirmed) = confirmed else {
        panic!(
            "no block confirmed; worker:\n{}\n{}\npool log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            app.log()
        );
    };
    assert!(confirmed >= 1);

    // The worker's shares are in SQL under its address and name.
    let shares = scalar(
        &tables,
        &["shares"],
        &format!(
            "SELECT count(*) FROM shares WHERE accepted AND miner = '{MINER}' AND worker = 'w1'"
        ),
    )
    .await;
    assert!(shares >= 1, "accepted shares in SQL: {shares}");
    // The first confirmed block was 100 deep: the pool found at least 101 the node took.
    let rows = app
        .rows("SELECT min(height) AS first, max(height) AS last FROM blocks WHERE status = 'submitted'")
        .await;
    let (first, last) = (
        rows[0]["first"].as_i64().unwrap(),
        rows[0]["last"].as_i64().unwrap(),
    );
    let rows = app
        .rows("SELECT min(height) AS h FROM blocks WHERE status = 'confirmed'")
        .await;
    let first_confirmed = rows[0]["h"].as_i64().unwrap();
    assert!(first >= 1 && first_confirmed >= first);
    assert!(
        last >= first_confirmed + 100,
        "block {first_confirmed} was confirmed with the tip at {last}"
    );
    // PPLNS pays the one miner the confirmed block's reward (10 000 SYL less the fee).
    let paid = eventually_value(Duration::from_secs(60), || async {
        let n = scalar(
            &tables,
            &["payouts"],
            &format!("SELECT count(*) FROM payouts WHERE miner = '{MINER}'"),
        )
        .await;
        (n >= 1).then_some(n)
    })
    .await;
    assert!(
        paid.is_some(),
        "no payout to the miner; log:\n{}",
        app.log()
    );
}

/// The pool of the tests: OpenSY on its simulated node at regtest's target, a block about
/// every other hash.
fn opensy_pool(stratum_port: u16) -> String {
    format!(
        "[pool]\nchain = \"opensy\"\nnode = \"sim\"\nlisten = \"127.0.0.1:{stratum_port}\"\ntip_poll = \"200ms\"\nsim_difficulty = 1\n\
         [pool.server]\npool = \"syl\"\nverify_threads = 1\n[pool.server.vardiff]\nmin_difficulty = 1\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_worker_cluster_mines_opensy_through_the_pool_as_one_miner() {
    use crate::cluster::{Ports, coordinator_as, make_certs, try_rest, worker, worker_view};
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let stratum_port = free_port();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pool,pipelines,query",
        &opensy_pool(stratum_port),
    );
    app.wait_http().await;
    make_certs(dir.path(), "rig1,rig2");
    let ports = Ports {
        grpc: free_port(),
        rest: free_port(),
    };
    let upstream = vec![format!("stratum+tcp://127.0.0.1:{stratum_port}")];
    let login = format!("{MINER}+2.coop");
    let coord = coordinator_as(dir.path(), &nats.url(), &upstream, &ports, &login);
    eventually(
        Duration::from_secs(60),
        "the coordinator mines upstream",
        || async {
            try_rest(ports.rest, "/health")
                .await
                .is_some_and(|h| h["pool_connected"] == true)
        },
    )
    .await;
    let rig1 = worker(dir.path(), "rig1", ports.grpc);
    let _rig2 = worker(dir.path(), "rig2", ports.grpc);
    let tables = dir.path().join("tables");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let valid = |name: &'static str| async move {
            worker_view(ports.rest, name)
                .await
                .and_then(|w| w["shares_valid"].as_u64())
                .unwrap_or(0)
        };
        let blocks = scalar(
            &tables,
            &["blocks"],
            "SELECT count(*) FROM blocks WHERE status = 'submitted' AND worker = 'coop'",
        )
        .await;
        if blocks >= 1 && valid("rig1").await >= 1 && valid("rig2").await >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no OpenSY block from the cluster; coordinator:\n{}\nrig1:\n{}\npool:\n{}",
            coord.log(),
            rig1.log(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let miners = app.rows("SELECT DISTINCT miner FROM shares").await;
    assert_eq!(miners.len(), 1, "one miner upstream: {miners:?}");
    assert_eq!(miners[0]["miner"], MINER);
}

/// Polls `f` every 250 ms until it gives a value or `limit` passes.
async fn eventually_value<T, F, Fut>(limit: Duration, f: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}
