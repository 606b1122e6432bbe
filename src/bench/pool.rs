//! `adit bench pool`: shares verified per second through the real TCP server (many connections
//! submitting valid shares) beside the raw `randomx-rs` hash rate with the same mode and thread
//! count, and the memory an idle logged-in connection costs at 10 000 connections.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use adit_schemas::AnyEvent;
use adit_stratum::{
    GuardConfig, Node, Pool, RandomXHasher, ServerConfig, SimChain, SimConfig, StratumClient,
    decode_target, fetch_work, serve,
};
use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Offset of the nonce in a hashing blob.
const NONCE_OFFSET: usize = 39;

/// Raw light-mode hashes per second on `threads` threads for `length`.
fn raw_rate(
    seed: [u8; 32],
    blob: Vec<u8>,
    threads: usize,
    length: Duration,
) -> anyhow::Result<f64> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut blob = blob.clone();
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let hasher = RandomXHasher::light(&seed)?;
                let started = Instant::now();
                let mut n = 0u64;
                while started.elapsed() < length {
                    let nonce = (t as u32) << 24 | n as u32;
                    blob[NONCE_OFFSET..NONCE_OFFSET + 4].copy_from_slice(&nonce.to_le_bytes());
                    hasher.hash(&blob)?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow::anyhow!("hash thread panicked"))??;
    }
    Ok(total as f64 / length.as_secs_f64())
}

/// Valid (nonce, result) pairs for a difficulty-1 job, computed before the clock starts.
fn precompute(
    job: &adit_stratum::Job,
    count: usize,
    salt: u32,
) -> anyhow::Result<Vec<(String, String)>> {
    let seed = hex::decode(&job.seed_hash)?;
    let mut blob = hex::decode(&job.blob)?;
    anyhow::ensure!(
        decode_target(&job.target)? == 1,
        "bench jobs are difficulty 1"
    );
    let offset = adit_protocol::nonce_offset(&blob)?;
    let hasher = RandomXHasher::light(&seed)?;
    (0..count as u32)
        .map(|i| {
            let nonce = salt << 20 | i;
            adit_protocol::put_nonce(&mut blob, offset, nonce);
            Ok((
                hex::encode(nonce.to_le_bytes()),
                hex::encode(hasher.hash(&blob)?),
            ))
        })
        .collect()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs the pool benchmark and prints its report.
pub async fn pool(
    threads: usize,
    connections: usize,
    shares: usize,
    idle: usize,
) -> anyhow::Result<()> {
    let node = Node::Sim(SimChain::new(SimConfig {
        difficulty: u64::MAX / 2,
        ..Default::default()
    })?);
    let work = fetch_work(&node, "bench").await?;
    let seed = work.seed_hash;
    let blob = work.template.with_extra_nonce(&[])?.hashing_blob().to_vec();

    let limits = GuardConfig {
        submits_per_s: 1e9,
        logins_per_s: 1e9,
        max_per_ip: idle + connections + 10,
        max_connections: idle + connections + 10,
        ..GuardConfig::default()
    };
    let config = ServerConfig {
        verify_threads: threads,
        limits,
        login_timeout: Duration::from_secs(600),
        // The miners fix their difficulty at 1: every hash is a share to verify.
        vardiff: adit_stratum::VardiffConfig {
            min_difficulty: 1,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let (_work_tx, work_rx) = watch::channel(work);
    let (ev_tx, mut ev_rx) = mpsc::channel::<AnyEvent>(1_000_000);
    let (bl_tx, _bl_rx) = mpsc::channel(16);
    tokio::spawn(async move { while ev_rx.recv().await.is_some() {} });
    let pool = Pool::new(config, work_rx, ev_tx, bl_tx)?;
    pool.prepare(seed).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, pool, stop.clone()));

    eprintln!("raw randomx-rs light mode on {threads} thread(s)…");
    let raw_blob = blob.clone();
    let raw_before = tokio::task::spawn_blocking(move || {
        raw_rate(seed, raw_blob, threads, Duration::from_secs(10))
    })
    .await??;

    eprintln!("preparing {connections} miners × {shares} valid shares…");
    let mut miners = Vec::new();
    for i in 0..connections {
        let m = StratumClient::login(addr, &format!("bench{i}+1")).await?;
        let (job, session) = (m.job.clone(), m.session.clone());
        let job_id = job.job_id.clone();
        let salt = i as u32;
        let pairs = tokio::task::spawn_blocking(move || precompute(&job, shares, salt)).await??;
        // Pre-built request lines: the clock measures the server, not the client's JSON.
        let lines: Vec<Vec<u8>> = pairs
            .iter()
            .enumerate()
            .map(|(n, (nonce, result))| {
                let req = json!({"id": n + 10, "jsonrpc": "2.0", "method": "submit",
                    "params": {"id": session, "job_id": job_id, "nonce": nonce, "result": result}});
                format!("{req}\n").into_bytes()
            })
            .collect();
        miners.push((m.into_parts(), lines));
    }
    eprintln!("submitting through the TCP server…");
    let started = Instant::now();
    let tasks: Vec<_> = miners
        .into_iter()
        .map(|((mut reader, mut writer), lines)| {
            tokio::spawn(async move {
                let mut ok = 0usize;
                let mut reply = String::new();
                for line in lines {
                    writer.write_all(&line).await?;
                    reply.clear();
                    reader.read_line(&mut reply).await?;
                    if reply.contains("\"status\":\"OK\"") {
                        ok += 1;
                    }
                }
                anyhow::Ok(ok)
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await??;
    }
    let through = accepted as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted == connections * shares,
        "only {accepted} of {} shares accepted",
        connections * shares
    );
    // The machine's speed drifts; the baseline is the mean of a run before and one after.
    eprintln!("raw randomx-rs again, after…");
    let raw_after =
        tokio::task::spawn_blocking(move || raw_rate(seed, blob, threads, Duration::from_secs(10)))
            .await??;
    let raw = (raw_before + raw_after) / 2.0;

    eprintln!("opening {idle} idle logged-in connections from a second process…");
    let before = rss_bytes();
    let mut clients = std::process::Command::new(std::env::current_exe()?)
        .args([
            "bench",
            "idle-clients",
            "--addr",
            &addr.to_string(),
            "--count",
            &idle.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the idle clients")?;
    let mut ready = String::new();
    if let Some(out) = clients.stdout.as_mut() {
        use std::io::BufRead;
        std::io::BufReader::new(out).read_line(&mut ready)?;
    }
    anyhow::ensure!(
        ready.trim() == format!("ready {idle}"),
        "idle clients failed: {ready:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    let per_conn = after.saturating_sub(before) as f64 / idle as f64;
    drop(clients.stdin.take());
    let _ = clients.wait();
    stop.cancel();
    let _ = server.await;

    println!(
        "adit bench pool (light mode, {threads} verification thread(s), debug={})",
        cfg!(debug_assertions)
    );
    println!(
        "  raw randomx-rs hash rate       {raw:>10.1} hashes/s   (baseline, same mode and threads: {raw_before:.1} before, {raw_after:.1} after)"
    );
    println!(
        "  verified through TCP server    {through:>10.1} shares/s   ({connections} connections × {shares} shares)"
    );
    println!(
        "  ratio server / raw             {:>10.3}              (target ≥ 0.95)",
        through / raw
    );
    println!(
        "  memory per idle connection     {:>10.0} bytes      server RSS growth / {idle} logged-in connections (target ≤ 4 KB)",
        per_conn
    );
    Ok(())
}

fn raise_fd_limit(want: usize) -> anyhow::Result<()> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    let want = want as u64;
    if soft < want {
        rlimit::Resource::NOFILE.set(want, hard.max(want)).with_context(|| {
            format!("need {want} open files for the idle-connection test; the limit is {soft} (hard {hard}): raise it with ulimit -n, or pass a smaller --idle")
        })?;
    }
    Ok(())
}

/// Opens `count` logged-in connections to `addr`, prints `ready <count>`, and holds them until
/// standard input closes.
pub async fn idle_clients(addr: SocketAddr, count: usize) -> anyhow::Result<()> {
    raise_fd_limit(count + 256)?;
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connection {i}"))?;
        let (r, mut w) = stream.into_split();
        let login = json!({"id": 1, "jsonrpc": "2.0", "method": "login", "params": {"login": format!("idle{i}"), "pass": "x", "agent": "bench"}});
        w.write_all(format!("{login}\n").as_bytes()).await?;
        let mut reader = BufReader::new(r);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        anyhow::ensure!(
            line.contains("\"status\":\"OK\""),
            "idle login {i} failed: {line}"
        );
        conns.push((reader.into_inner(), w));
    }
    println!("ready {count}");
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    drop(conns);
    Ok(())
}
