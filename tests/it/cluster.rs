//! The cluster end to end on real parts (issue 11): `monerod --regtest` → `adit run --roles
//! pool,pipelines,query` → `adit coordinator` → `adit worker` processes over mutual TLS, all
//! hashing real RandomX in light mode. The pool sees one miner; monerod accepts the cluster's
//! block; per-worker figures are in SQL and REST; the workers' nonce journals never overlap; a
//! killed worker is dropped and its slice handed out again; a restarted coordinator gets its
//! workers back. A second test kills the first of two pools and checks the failover and back.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use adit_testkit::Monerod;
use common::*;
use serde_json::Value;

const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// The cluster's login: a fixed upstream difficulty of 50 (network: 100).
fn cluster_login() -> String {
    format!("{WALLET}+50.coop")
}

/// `adit certs` for the coordinator and `workers`.
pub(crate) fn make_certs(dir: &Path, workers: &str) -> PathBuf {
    let out = dir.join("certs");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_adit"))
        .args([
            "certs",
            "--out",
            out.to_str().unwrap(),
            "--server",
            "localhost,127.0.0.1",
        ])
        .args(["--worker", workers, "--cluster", "c1"])
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// Where a coordinator listens.
pub(crate) struct Ports {
    pub(crate) grpc: u16,
    pub(crate) rest: u16,
}

/// `adit coordinator` mining at `pools` as [`cluster_login`], publishing on `nats`.
fn coordinator(dir: &Path, nats: &str, pools: &[String], ports: &Ports) -> App {
    coordinator_as(dir, nats, pools, ports, &cluster_login())
}

/// `adit coordinator` mining at `pools` as `login`, publishing on `nats`.
pub(crate) fn coordinator_as(
    dir: &Path,
    nats: &str,
    pools: &[String],
    ports: &Ports,
    login: &str,
) -> App {
    let config = dir.join("coordinator.toml");
    std::fs::write(
        &config,
        "[cluster]\nshare_difficulty = 20\nheartbeat = \"1s\"\ndead_after = \"4s\"\n\
         [cluster.pool]\nfailback_every = \"2s\"\nretry_max = \"2s\"\nlogin_timeout = \"3s\"\n",
    )
    .unwrap();
    let args: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "--nats-url",
        nats,
        "--data-dir",
        dir.join("coordinator-data").to_str().unwrap(),
        "coordinator",
        "--cluster",
        "c1",
        "--pool",
        &pools.join(","),
        "--wallet",
        login,
        "--grpc-listen",
        &format!("127.0.0.1:{}", ports.grpc),
        "--rest-listen",
        &format!("127.0.0.1:{}", ports.rest),
        "--certs",
        dir.join("certs").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    App::command(dir, "coordinator", ports.rest, &args)
}

/// `adit worker --name <name>` (one light-mode thread), journalling its nonces.
pub(crate) fn worker(dir: &Path, name: &str, grpc: u16) -> App {
    let config = dir.join(format!("{name}.toml"));
    let journal = dir.join(format!("{name}.nonces"));
    std::fs::write(
        &config,
        format!("[worker]\nnonce_log = \"{}\"\n", journal.display()),
    )
    .unwrap();
    let args: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "worker",
        "--coordinator",
        &format!("127.0.0.1:{grpc}"),
        "--threads",
        "1",
        "--light",
        "--name",
        name,
        "--certs",
        dir.join("certs").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    App::command(dir, name, 0, &args)
}

/// GET a JSON document from the coordinator's REST API.
async fn rest(port: u16, path: &str) -> Value {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    r.json().await.unwrap()
}

/// GET that tolerates the coordinator being down.
async fn try_rest(port: u16, path: &str) -> Option<Value> {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits until the coordinator at `ports` is logged in at its pool.
pub(crate) async fn mining_upstream(ports: &Ports) {
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
}

/// One worker's view from `/api/workers/{name}`.
pub(crate) async fn worker_view(port: u16, name: &str) -> Option<Value> {
    try_rest(port, &format!("/api/workers/{name}"))
        .await
        .filter(|v| v.get("worker").is_some())
}

/// One journal line: a job and the nonces first, first+stride, …, last.
type Range = (String, u64, u64, u64);

/// Every range a journal holds.
fn journal(path: &Path) -> Vec<Range> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 4, "journal line {line:?}");
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

/// Checks that no nonce of any job was hashed by two workers; returns how many nonces were
/// hashed in all.
fn assert_no_overlap(journals: &[(&str, Vec<Range>)]) -> u64 {
    let mut by_job: HashMap<&str, Vec<(&str, u64, u64)>> = HashMap::new();
    let mut hashed = 0;
    for (worker, lines) in journals {
        for (job, first, last, stride) in lines {
            assert_eq!(*stride, 1, "one thread per worker in this test");
            assert!(first <= last);
            hashed += last - first + 1;
            by_job.entry(job).or_default().push((worker, *first, *last));
        }
    }
    for (job, mut ranges) in by_job {
        ranges.sort_by_key(|r| r.1);
        for pair in ranges.windows(2) {
            let ((w1, _, last1), (w2, first2, _)) = (pair[0], pair[1]);
            assert!(
                w1 == w2 || last1 < first2,
                "job {job}: {w1} hashed up to {last1} and {w2} from {first2}"
            );
            // A worker never leaves its slice (the nonce's top byte).
            assert_eq!(
                first2 >> 24,
                pair[1].2 >> 24,
                "job {job}: {w2} left its slice"
            );
        }
    }
    hashed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_mines_as_one_miner_and_monerod_accepts_its_block() {
    let monerod = Monerod::start_with_difficulty(100);
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let stratum_port = free_port();
    let pool = format!(
        "[pool]\nlisten = \"127.0.0.1:{stratum_port}\"\nnode = \"{}\"\nwallet = \"{WALLET}\"\ntip_poll = \"200ms\"\nconfirmations = 3\n\
         [pool.server]\npool = \"regtest\"\nverify_threads = 1\n[pool.server.vardiff]\nmin_difficulty = 1\n",
        monerod.rpc_url()
    );
    let app = App::start(&nats.url(), dir.path(), "pool,pipelines,query", &pool);
    app.wait_http().await;
    let start_height = monerod_height(&monerod.rpc_url()).await;

    make_certs(dir.path(), "rig1,rig2,rig3");
    let ports = Ports {
        grpc: free_port(),
        rest: free_port(),
    };
    let upstream = vec![format!("stratum+tcp://127.0.0.1:{stratum_port}")];
    let mut coord = coordinator(dir.path(), &nats.url(), &upstream, &ports);
    mining_upstream(&ports).await;
    let mut rig1 = worker(dir.path(), "rig1", ports.grpc);
    let mut rig2 = worker(dir.path(), "rig2", ports.grpc);

    // Both workers' shares count, shares go upstream under one login, and monerod takes a block.
    let start = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let stats = rest(ports.rest, "/api/stats").await;
        let rig2_valid = worker_view(ports.rest, "rig2")
            .await
            .map(|w| w["shares_valid"].as_u64());
        let rig1_valid = worker_view(ports.rest, "rig1")
            .await
            .map(|w| w["shares_valid"].as_u64());
        if monerod_height(&monerod.rpc_url()).await > start_height
            && stats["shares_accepted_upstream"].as_u64() >= Some(2)
            && rig1_valid.flatten() >= Some(1)
            && rig2_valid.flatten() >= Some(1)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no block from the cluster; stats {stats}\ncoordinator:\n{}\nrig1:\n{}\npool:\n{}",
            coord.log(),
            rig1.log(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let block_after = start.elapsed();
    let health = rest(ports.rest, "/health").await;
    assert_eq!(
        (health["status"].as_str(), health["workers"].as_u64()),
        (Some("ok"), Some(2))
    );

    // The pool saw one miner: the cluster's login; the block is in its table under that login.
    eventually(
        Duration::from_secs(60),
        "the pool's shares and block landed",
        || async {
            let miners = app
                .rows("SELECT DISTINCT miner FROM shares WHERE accepted")
                .await;
            let blocks = app
                .rows("SELECT count(*) AS n FROM blocks WHERE status = 'submitted'")
                .await;
            miners.len() == 1 && blocks[0]["n"].as_i64() >= Some(1)
        },
    )
    .await;
    let miners = app.rows("SELECT DISTINCT miner FROM shares").await;
    assert_eq!(miners.len(), 1, "{miners:?}");
    // The coordinator counts the pool's blocks as the cluster's, and each as its finder's (issue
    // 61). The workers go on finding blocks meanwhile, so the pool's table, the coordinator's
    // total and its per-worker counts are read together until one reading agrees.
    let seen = std::cell::RefCell::new(String::new());
    eventually(
        Duration::from_secs(60),
        "the coordinator counts the pool's blocks, each as its finder's",
        || async {
            let landed = app
                .rows("SELECT count(*) AS n FROM blocks WHERE status = 'submitted'")
                .await[0]["n"]
                .as_u64();
            let counted = rest(ports.rest, "/api/stats").await["blocks_found"].as_u64();
            let mut by_worker = 0;
            for w in ["rig1", "rig2", "rig3"] {
                if let Some(view) = worker_view(ports.rest, w).await {
                    by_worker += view["blocks_found"].as_u64().unwrap_or(0);
                }
            }
            *seen.borrow_mut() =
                format!("pool {landed:?}, coordinator {counted:?}, by worker {by_worker}");
            landed >= Some(1) && counted == landed && Some(by_worker) == counted
        },
    )
    .await;
    eprintln!("blocks: {}", seen.borrow());
    assert!(
        cluster_login().starts_with(miners[0]["miner"].as_str().unwrap()),
        "{miners:?}"
    );

    // Per-worker figures in SQL, landed by the pipelines from the coordinator's events.
    let per_worker = "SELECT worker, count(*) AS shares, sum(difficulty) AS work, \
                      sum(CASE WHEN forwarded THEN 1 ELSE 0 END) AS forwarded \
                      FROM cluster_shares WHERE valid AND cluster = 'c1' GROUP BY worker ORDER BY worker";
    eventually(
        Duration::from_secs(60),
        "cluster shares in SQL per worker",
        || async {
            let rows = app.rows(per_worker).await;
            rows.len() == 2
                && rows[0]["worker"] == "rig1"
                && rows[1]["worker"] == "rig2"
                && rows.iter().all(|r| r["work"].as_i64() >= Some(20))
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "worker hashrate samples in SQL",
        || async {
            let rows = app
                .rows(
                    "SELECT count(DISTINCT worker) AS n FROM hashrate_samples \
                 WHERE cluster = 'c1' AND hashrate_hs > 0",
                )
                .await;
            rows[0]["n"].as_i64() == Some(2)
        },
    )
    .await;
    let per_worker = app.rows(per_worker).await;
    eprintln!(
        "block accepted by monerod {:.1} s after the workers started; stats {}; per worker in SQL {per_worker:?}",
        block_after.as_secs_f64(),
        rest(ports.rest, "/api/stats").await
    );
    let upstream_rows = app
        .rows("SELECT state FROM cluster_upstream WHERE cluster = 'c1'")
        .await;
    assert!(upstream_rows.iter().any(|r| r["state"] == "connected"));
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", ports.rest))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("coopmine_workers_online 2"), "{metrics}");
    assert!(metrics.contains("coopmine_shares_total{status=\"upstream_accepted\"}"));

    // rig2 is killed: dropped after its heartbeat timeout, and its slice goes to a newcomer
    // from the next job on.
    let rig2_slice = worker_view(ports.rest, "rig2").await.unwrap()["slice"].clone();
    rig2.kill();
    eventually(Duration::from_secs(20), "rig2 dropped", || async {
        worker_view(ports.rest, "rig2")
            .await
            .is_some_and(|w| w["online"] == false)
    })
    .await;
    let job_at_drop = rest(ports.rest, "/api/jobs").await[0]["job_id"].clone();
    eventually(
        Duration::from_secs(120),
        "a new job after the drop",
        || async { rest(ports.rest, "/api/jobs").await[0]["job_id"] != job_at_drop },
    )
    .await;
    let mut rig3 = worker(dir.path(), "rig3", ports.grpc);
    eventually(
        Duration::from_secs(30),
        "rig3 takes rig2's slice",
        || async {
            worker_view(ports.rest, "rig3")
                .await
                .is_some_and(|w| w["online"] == true && w["slice"] == rig2_slice)
        },
    )
    .await;

    // The coordinator restarts: the workers reconnect and their shares count again.
    coord.restart();
    eventually(
        Duration::from_secs(90),
        "workers back after a coordinator restart",
        || async {
            let (Some(a), Some(b)) = (
                worker_view(ports.rest, "rig1").await,
                worker_view(ports.rest, "rig3").await,
            ) else {
                return false;
            };
            a["online"] == true
                && b["online"] == true
                && a["shares_valid"].as_u64() >= Some(1)
                && b["shares_valid"].as_u64() >= Some(1)
        },
    )
    .await;
    // The coordinator's own page shows the same, in Chromium (issue 61).
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-page");
    std::fs::create_dir_all(&shots).unwrap();
    let args = [
        "--url".to_string(),
        format!("http://127.0.0.1:{}/", ports.rest),
        "--cluster".into(),
        "c1".into(),
        "--workers".into(),
        "rig1,rig3".into(),
        "--shot".into(),
        shots.join("cluster.png").display().to_string(),
    ];
    let (status, said) = run_browser_script(
        "cluster.py",
        &args,
        &dir.path().join("cluster-page.log"),
        Duration::from_secs(120),
    );
    assert!(status.success(), "the coordinator's page: {said}");
    println!("{said}screenshot: {}", shots.join("cluster.png").display());
    assert!(
        rig1.terminate(),
        "rig1 stops cleanly on SIGTERM:\n{}",
        rig1.log()
    );
    assert!(
        rig3.terminate(),
        "rig3 stops cleanly on SIGTERM:\n{}",
        rig3.log()
    );
    assert!(
        coord.terminate(),
        "the coordinator stops cleanly:\n{}",
        coord.log()
    );

    // No nonce of any job was hashed twice.
    let journals: Vec<(&str, Vec<_>)> = ["rig1", "rig2", "rig3"]
        .iter()
        .map(|w| (*w, journal(&dir.path().join(format!("{w}.nonces")))))
        .collect();
    assert!(journals.iter().all(|(_, lines)| !lines.is_empty()));
    let hashed = assert_no_overlap(&journals);
    assert!(hashed > 100, "only {hashed} nonces hashed");
    let lines: usize = journals.iter().map(|(_, l)| l.len()).sum();
    eprintln!("{hashed} nonces hashed by 3 workers in {lines} journal ranges, none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_fails_over_to_the_second_pool_and_back() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut pools = Vec::new();
    let mut urls = Vec::new();
    for name in ["first", "second"] {
        let (port, http) = (free_port(), free_port());
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let args: Vec<String> = [
            "--nats-url",
            &nats.url(),
            "--data-dir",
            sub.join("data").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{http}"),
            "pool",
            "--node",
            "sim",
            "--wallet",
            WALLET,
            "--stratum-listen",
            &format!("127.0.0.1:{port}"),
        ]
        .map(String::from)
        .to_vec();
        let app = App::command(&sub, "pool", http, &args);
        app.wait_http().await;
        pools.push(app);
        urls.push(format!("stratum+tcp://127.0.0.1:{port}"));
    }
    make_certs(dir.path(), "rig1");
    let ports = Ports {
        grpc: free_port(),
        rest: free_port(),
    };
    let _coord = coordinator(dir.path(), &nats.url(), &urls, &ports);
    let _rig1 = worker(dir.path(), "rig1", ports.grpc);
    let rest_port = ports.rest;
    let on = |url: String| async move {
        try_rest(rest_port, "/api/stats").await.is_some_and(|s| {
            s["upstream"]["connected"] == true && s["upstream"]["url"] == url.as_str()
        })
    };
    eventually(Duration::from_secs(60), "mining on the first pool", || {
        on(urls[0].clone())
    })
    .await;

    pools[0].kill();
    let killed = std::time::Instant::now();
    eventually(
        Duration::from_secs(20),
        "failed over to the second pool",
        || on(urls[1].clone()),
    )
    .await;
    let failover = killed.elapsed();
    // Work goes on there: a job from the second pool reaches the worker and its shares count.
    let valid_before = rest(ports.rest, "/api/stats").await["shares_valid"]
        .as_u64()
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "shares on the second pool",
        || async {
            rest(ports.rest, "/api/stats").await["shares_valid"].as_u64() > Some(valid_before)
        },
    )
    .await;

    pools[0].restart();
    let back = std::time::Instant::now();
    eventually(Duration::from_secs(60), "back on the first pool", || {
        on(urls[0].clone())
    })
    .await;
    eprintln!(
        "failover took {:.3} s, failback {:.1} s",
        failover.as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
    // Every change is on the bus: connected to the first, lost it, connected to the second,
    // connected to the first again.
    let js = nats.jetstream().await;
    let states = upstream_states(&js).await;
    assert!(
        states.iter().filter(|s| s.as_str() == "connected").count() >= 3,
        "{states:?}"
    );
    assert!(states.iter().any(|s| s == "disconnected"), "{states:?}");
}

/// The states of every upstream change published on the TELEMETRY stream.
async fn upstream_states(js: &async_nats::jetstream::Context) -> Vec<String> {
    stream_messages(js, "TELEMETRY", "telemetry.cluster_upstream.c1.>", 100)
        .await
        .iter()
        .map(|m| {
            let event: Value = serde_json::from_slice(&m.payload).unwrap();
            event["state"].as_str().unwrap().to_owned()
        })
        .collect()
}
