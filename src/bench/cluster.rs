//! `adit bench cluster`: the cluster's hashrate as the upstream pool measures it (the work of
//! the shares it accepts) and as the workers count it, beside the same workers hashing alone
//! with the same threads, in one run. Everything runs in this process on loopback: a pool on a
//! simulated chain (so the job never changes), a coordinator over mutual TLS, and the workers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use adit_coopmine::certs::{CertsPlan, make};
use adit_coopmine::{ClusterConfig, HashMode, WorkerConfig};
use adit_schemas::AnyEvent;
use adit_stratum::{Node, Pool, RandomXMode, ServerConfig, SimChain, SimConfig, fetch_work, serve};
use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How long the backlog of shares found during the warm-up is given to clear.
const SETTLE: Duration = Duration::from_secs(20);

/// A stand-in wallet: the simulated chain takes any login.
const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// What the benchmark is asked for.
#[derive(Debug, Clone, Copy)]
pub struct ClusterBench {
    /// Workers.
    pub workers: usize,
    /// Threads per worker.
    pub threads: usize,
    /// Length of each measured phase.
    pub seconds: u64,
    /// Share difficulty, upstream and internal.
    pub difficulty: u64,
    /// Light mode instead of fast.
    pub light: bool,
}

/// Runs the benchmark and prints its report.
pub async fn cluster(bench: ClusterBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        bench.workers >= 1 && bench.threads >= 1,
        "at least one worker and thread"
    );
    let mode = if bench.light {
        HashMode::Light
    } else {
        HashMode::Fast
    };
    let window = Duration::from_secs(bench.seconds);
    let node = Node::Sim(SimChain::new(SimConfig {
        difficulty: u64::MAX / 2,
        ..Default::default()
    })?);
    let work = fetch_work(&node, "bench").await?;
    let seed = work.seed_hash;
    let blob = work.template.with_extra_nonce(&[])?.hashing_blob().to_vec();

    eprintln!(
        "standalone: {} worker(s) × {} thread(s), {} mode, {} s…",
        bench.workers,
        bench.threads,
        mode.name(),
        bench.seconds
    );
    let standalone = {
        let tasks: Vec<_> = (0..bench.workers)
            .map(|_| {
                let blob = blob.clone();
                tokio::task::spawn_blocking(move || {
                    adit_coopmine::miner::standalone_hashrate(
                        bench.threads,
                        mode,
                        &seed,
                        &blob,
                        window,
                    )
                })
            })
            .collect();
        let mut sum = 0.0;
        for t in tasks {
            sum += t.await??;
        }
        sum
    };

    let stop = CancellationToken::new();
    let (pool_addr, mut shares) = start_pool(work, seed, mode, &stop).await?;
    let dir = tempfile::tempdir()?;
    let names: Vec<String> = (1..=bench.workers).map(|i| format!("bench{i}")).collect();
    make(&CertsPlan {
        out: dir.path().to_owned(),
        server_names: vec!["127.0.0.1".into()],
        workers: names.clone(),
        cluster: "bench".into(),
    })?;
    let mut config = ClusterConfig {
        id: "bench".into(),
        share_difficulty: bench.difficulty,
        verify_mode: mode,
        heartbeat: Duration::from_secs(1),
        ..ClusterConfig::default()
    };
    config.pool.address = vec![format!("stratum+tcp://{pool_addr}")];
    config.pool.wallet = format!("{WALLET}+{}.bench", bench.difficulty);
    config.grpc.listen = "127.0.0.1:0".into();
    config.rest.listen = "127.0.0.1:0".into();
    config.grpc.cert = dir.path().join("coordinator.pem");
    config.grpc.key = dir.path().join("coordinator.key");
    config.grpc.ca = dir.path().join("ca.pem");
    let (ready, bound) = tokio::sync::oneshot::channel();
    let coordinator = tokio::spawn(adit_coopmine::run_coordinator(
        config,
        None,
        None,
        Some(ready),
        stop.clone(),
    ));
    let bound = bound.await.context("the coordinator did not start")?;
    for name in &names {
        let worker = WorkerConfig {
            coordinator: bound.grpc.to_string(),
            name: name.clone(),
            certs: dir.path().to_owned(),
            threads: bench.threads,
            mode,
            ..WorkerConfig::default()
        };
        tokio::spawn(adit_coopmine::run_worker(worker, stop.clone()));
    }
    eprintln!("cluster: waiting for every worker to hash and the first share to be accepted…");
    let rest = format!("http://{}", bound.rest);
    let started = wait_warm(&rest, bench.workers, &mut shares).await?;
    eprintln!("cluster: measuring {} s…", bench.seconds);
    let t0 = Instant::now();
    let hashes_before = worker_hashes(&rest).await?;
    let valid_before = coordinator_valid(&rest).await?;
    let (mut accepted_work, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    let deadline = tokio::time::Instant::now() + window;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            event = shares.recv() => match event {
                Some(AnyEvent::Share(s)) if s.accepted => {
                    accepted += 1;
                    accepted_work += s.difficulty;
                }
                Some(AnyEvent::Share(_)) => rejected += 1,
                Some(_) => {}
                None => anyhow::bail!("the pool stopped"),
            },
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let hashes_after = worker_hashes(&rest).await?;
    let valid = coordinator_valid(&rest).await? - valid_before;
    stop.cancel();
    coordinator.await??;

    let pool_rate = accepted_work as f64 / elapsed;
    // Each worker's hashes between two heartbeats, over the time between them.
    let counted: f64 = hashes_before
        .iter()
        .filter_map(|(name, h0, t0)| {
            let (_, h1, t1) = hashes_after.iter().find(|(n, _, _)| n == name)?;
            let seconds = (*t1 - *t0).as_seconds_f64();
            (seconds > 0.0).then(|| (h1 - h0) as f64 / seconds)
        })
        .sum();
    let spread = if accepted > 0 {
        2.0 / (accepted as f64).sqrt()
    } else {
        1.0
    };
    println!(
        "cluster benchmark ({} worker(s) × {} thread(s), {} mode, share difficulty {}, warm-up {:.0} s)",
        bench.workers,
        bench.threads,
        mode.name(),
        bench.difficulty,
        started.as_secs_f64()
    );
    println!("  standalone, sum of workers      {standalone:>10.1} H/s   (baseline)");
    println!(
        "  cluster, as the pool measures   {pool_rate:>10.1} H/s   ratio {:.3} ± {:.3} (2σ, {accepted} shares accepted, {rejected} refused)",
        pool_rate / standalone,
        spread * pool_rate / standalone
    );
    println!(
        "  cluster, as the workers count   {counted:>10.1} H/s   ratio {:.3}",
        counted / standalone
    );
    let expected = counted * elapsed / bench.difficulty as f64;
    println!(
        "  shares: {valid} valid at the coordinator, {accepted} accepted by the pool; {expected:.0} expected from the hashes counted"
    );
    Ok(())
}

/// An in-process pool on the simulated chain, verifying in `mode`; its share events come back
/// on the receiver.
async fn start_pool(
    work: std::sync::Arc<adit_stratum::Work>,
    seed: [u8; 32],
    mode: HashMode,
    stop: &CancellationToken,
) -> anyhow::Result<(SocketAddr, mpsc::Receiver<AnyEvent>)> {
    let config = ServerConfig {
        verify_threads: 1,
        randomx_mode: match mode {
            HashMode::Fast => RandomXMode::Fast,
            HashMode::Light => RandomXMode::Light,
        },
        // The cluster fixes its upstream difficulty (`--difficulty`), whatever it is.
        vardiff: adit_stratum::VardiffConfig {
            min_difficulty: 1,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let (work_tx, work_rx) = watch::channel(work);
    let (events_tx, events) = mpsc::channel::<AnyEvent>(1_000_000);
    let (blocks_tx, _blocks) = mpsc::channel(16);
    let pool = Pool::new(config, work_rx, events_tx, blocks_tx)?;
    pool.prepare(seed).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let token = stop.clone();
    tokio::spawn(async move {
        // The job never changes: keep the sender alive for the whole run.
        let _work = work_tx;
        serve(listener, pool, token).await
    });
    Ok((addr, events))
}

/// Waits until `n` workers report hashes and a share has been checked by the coordinator and
/// accepted by the pool (so every RandomX dataset is built before the clock starts); returns
/// how long that took. The pool's events until then are dropped.
async fn wait_warm(
    rest: &str,
    n: usize,
    shares: &mut mpsc::Receiver<AnyEvent>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wait_hashing(rest, n, started).await?;
    loop {
        let mut accepted = false;
        while let Ok(event) = shares.try_recv() {
            accepted |= matches!(event, AnyEvent::Share(s) if s.accepted);
        }
        if accepted {
            // The shares found while the datasets were built queue up at the coordinator and
            // then the pool, and clear within seconds: let them, and drop them, so the window
            // counts only shares found in it.
            tokio::time::sleep(SETTLE).await;
            while shares.try_recv().is_ok() {}
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "no share accepted by the pool after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until `n` workers report hashes.
async fn wait_hashing(rest: &str, n: usize, started: Instant) -> anyhow::Result<()> {
    loop {
        let workers: Vec<serde_json::Value> = reqwest::get(format!("{rest}/api/workers"))
            .await?
            .json()
            .await?;
        let hashing = workers
            .iter()
            .filter(|w| w["hashes_total"].as_u64() > Some(0))
            .count();
        if hashing >= n {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {hashing} of {n} workers hashing after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Valid shares the coordinator has counted.
async fn coordinator_valid(rest: &str) -> anyhow::Result<u64> {
    let stats: serde_json::Value = reqwest::get(format!("{rest}/api/stats"))
        .await?
        .json()
        .await?;
    stats["shares_valid"].as_u64().context("shares_valid")
}

/// Each worker's reported hash count and when it reported it (its last heartbeat).
async fn worker_hashes(
    rest: &str,
) -> anyhow::Result<Vec<(String, u64, chrono::DateTime<chrono::Utc>)>> {
    let workers: Vec<serde_json::Value> = reqwest::get(format!("{rest}/api/workers"))
        .await?
        .json()
        .await?;
    workers
        .iter()
        .map(|w| {
            let name = w["worker"].as_str().context("worker")?.to_owned();
            let hashes = w["hashes_total"].as_u64().context("hashes_total")?;
            let at = w["last_seen"].as_str().context("last_seen")?.parse()?;
            Ok((name, hashes, at))
        })
        .collect()
}
