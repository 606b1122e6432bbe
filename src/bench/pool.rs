//! `adit bench pool`: shares verified per second through the real TCP server (many connections
//! submitting valid shares) beside the raw `randomx-rs` hash rate with the same mode and thread
//! count, the two alternated over several rounds (each round's ratio against the mean of the raw
//! runs either side of it; the median reported: the machine's speed drifts); then, at each count
//! of idle logged-in connections asked for (`--idle 0,10000,100000`, held by client processes
//! from several loopback addresses, each sent new work until it holds as many jobs as a miner
//! keeps), what one costs the server's processes and the kernel, and how long honest shares
//! take meanwhile: submit → accepted answer, and submit → share event out of the pool (what
//! the landing is handed). With `--servers N` the server is N processes sharing one port, so
//! more connections than one process may hold descriptors for are held on one machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use adit_schemas::AnyEvent;
use adit_stratum::{
    JOBS_KEPT, Pool, RandomXHasher, StratumClient, decode_target, fetch_work, serve,
};
use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::idle::{IdleClients, raise_fd_limit};
use super::median;
use super::procfs::{cpu_seconds, proc_kib};
use super::servers::{Servers, bench_node, server_config, shared_listener};

/// Offset of the nonce in a hashing blob.
const NONCE_OFFSET: usize = 39;

/// One raw run: hashes done, and this process's CPU seconds and the wall seconds while the
/// threads hashed.
struct RawRun {
    hashes: usize,
    cpu_s: f64,
    wall_s: f64,
}

/// The raw baseline's hashing threads. Each builds its light-mode hasher once and keeps it for
/// every run, as the server's verification threads keep theirs: measured against hashers built
/// afresh for each run, a verification thread's hash took 5–15 % more CPU than a raw one.
struct RawHashers {
    /// Each thread's orders: hash for this long.
    runs: Vec<std::sync::mpsc::Sender<Duration>>,
    /// Each thread's count at the end of a run.
    done: std::sync::Mutex<std::sync::mpsc::Receiver<anyhow::Result<usize>>>,
    /// Where the threads and the caller meet at the start of a run, so the clock and the CPU
    /// count start together.
    start: std::sync::Arc<std::sync::Barrier>,
}

impl RawHashers {
    /// `threads` threads hashing `blob` (a new nonce each hash) under `seed`.
    fn start(seed: [u8; 32], blob: &[u8], threads: usize) -> Self {
        let start = std::sync::Arc::new(std::sync::Barrier::new(threads + 1));
        let (done_tx, done) = std::sync::mpsc::channel();
        let runs = (0..threads)
            .map(|t| {
                let (tx, rx) = std::sync::mpsc::channel::<Duration>();
                let (mut blob, start, done_tx) = (blob.to_vec(), start.clone(), done_tx.clone());
                std::thread::spawn(move || {
                    let hasher = RandomXHasher::light(&seed);
                    let mut nonce = (t as u32) << 24;
                    for length in rx {
                        start.wait();
                        let hashed = hasher
                            .as_ref()
                            .map_err(|e| anyhow::anyhow!("{e}"))
                            .and_then(|hasher| {
                                let started = Instant::now();
                                let mut n = 0usize;
                                while started.elapsed() < length {
                                    blob[NONCE_OFFSET..NONCE_OFFSET + 4]
                                        .copy_from_slice(&nonce.to_le_bytes());
                                    hasher.hash(&blob)?;
                                    nonce = nonce.wrapping_add(1);
                                    n += 1;
                                }
                                Ok(n)
                            });
                        if done_tx.send(hashed).is_err() {
                            return;
                        }
                    }
                });
                tx
            })
            .collect();
        Self {
            runs,
            done: std::sync::Mutex::new(done),
            start,
        }
    }

    /// Every thread hashes for `length`; what they did.
    fn run(&self, length: Duration) -> anyhow::Result<RawRun> {
        for run in &self.runs {
            run.send(length).context("a raw hashing thread stopped")?;
        }
        self.start.wait();
        let (at, cpu) = (Instant::now(), cpu_seconds("self").unwrap_or(f64::NAN));
        let done = self
            .done
            .lock()
            .map_err(|_| anyhow::anyhow!("a raw run panicked"))?;
        let mut hashes = 0;
        for _ in &self.runs {
            hashes += done.recv().context("a raw hashing thread stopped")??;
        }
        Ok(RawRun {
            hashes,
            cpu_s: cpu_seconds("self").unwrap_or(f64::NAN) - cpu,
            wall_s: at.elapsed().as_secs_f64(),
        })
    }
}

/// Where the machine's time went over one timed run: this process's CPU and the other server
/// processes', against the wall clock.
#[derive(Debug, Clone, Copy)]
struct Busy {
    /// Cores this process kept busy (CPU seconds over wall seconds).
    own_cores: f64,
    /// Cores the other server processes kept busy.
    others_cores: f64,
    /// This process's CPU per hash or share, ms.
    ms_per_op: f64,
}

/// The clock and the CPU used so far, where a timed run starts.
#[derive(Debug, Clone, Copy)]
struct CpuMark {
    at: Instant,
    own: f64,
    others: f64,
}

impl CpuMark {
    fn now(others: &Servers) -> Self {
        Self {
            at: Instant::now(),
            own: cpu_seconds("self").unwrap_or(f64::NAN),
            others: others.cpu_seconds(),
        }
    }

    /// What the run since this mark used, over its `ops` hashes or shares.
    fn since(self, ops: usize, others: &Servers) -> Busy {
        let end = Self::now(others);
        let wall = end.at.duration_since(self.at).as_secs_f64();
        Busy {
            own_cores: (end.own - self.own) / wall,
            others_cores: (end.others - self.others) / wall,
            ms_per_op: (end.own - self.own) * 1e3 / ops as f64,
        }
    }
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

/// The process's resident memory (`/proc/self/status`'s `VmRSS`), bytes.
fn rss_bytes() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:") * 1024
}

/// What `adit bench pool` runs.
#[derive(Debug, Clone)]
pub struct PoolBench {
    /// Verification threads (and raw hashing threads).
    pub threads: usize,
    /// Submitting connections of the throughput phase.
    pub connections: usize,
    /// Shares per connection of each round of the throughput phase.
    pub shares: usize,
    /// Rounds of the throughput phase, each between two raw runs.
    pub rounds: usize,
    /// The counts of idle logged-in connections measured, rising.
    pub idle: Vec<usize>,
    /// Honest miners submitting one share after another at each idle count.
    pub probes: usize,
    /// Shares each honest miner submits at each idle count.
    pub probe_shares: usize,
    /// Processes of the server sharing the idle connections' port (1: the bench's own).
    pub servers: usize,
}

/// One idle count's figures.
struct Level {
    idle: usize,
    /// The connections each server process held (this one's first).
    held: Vec<usize>,
    rss: u64,
    slab: u64,
    tcp_pages: u64,
    answer: Vec<Duration>,
    event: Vec<Duration>,
}

/// Runs the pool benchmark and prints its report.
pub async fn pool(bench: PoolBench) -> anyhow::Result<()> {
    let PoolBench {
        threads,
        connections,
        shares,
        ..
    } = bench;
    anyhow::ensure!(bench.servers >= 1, "--servers must be at least 1");
    let most_idle = bench.idle.iter().copied().max().unwrap_or(0);
    // Each server process holds its share of the idle connections; the kernel spreads them
    // about evenly, so a quarter more is room for the unevenness.
    let share = match bench.servers {
        1 => most_idle,
        n => most_idle.div_ceil(n) * 5 / 4,
    };
    let admitted = share + connections + bench.probes + 10;
    raise_fd_limit(admitted + 1024, "the pool server's connections")?;
    let node = bench_node()?;
    let work = fetch_work(&node, "bench").await?;
    let seed = work.seed_hash;
    let blob = work.template.with_extra_nonce(&[])?.hashing_blob().to_vec();

    let config = server_config(threads, admitted);
    let (work_tx, work_rx) = watch::channel(work);
    let (ev_tx, mut ev_rx) = mpsc::channel::<AnyEvent>(1_000_000);
    let (bl_tx, _bl_rx) = mpsc::channel(16);
    // When each honest probe's share came out of the pool, by (miner, nonce).
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<((String, String), Instant)>();
    tokio::spawn(async move {
        while let Some(event) = ev_rx.recv().await {
            if let AnyEvent::Share(share) = event
                && share.miner.starts_with("probe")
            {
                // The receiver is gone only once the bench has stopped timing: nothing is
                // left to forward then. A probe's event that never arrives is caught there
                // (it waits for every one and fails naming the count).
                if out_tx
                    .send(((share.miner, share.nonce), Instant::now()))
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    let pool = Pool::new(config, work_rx, ev_tx, bl_tx)?;
    pool.prepare(seed).await?;
    // The submitting miners and the honest ones reach this process on a port of its own; the
    // idle ones on the port it shares with the other server processes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, pool.clone(), stop.clone()));
    let shared = shared_listener(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let idle_addr = shared.local_addr()?;
    let shared_server = tokio::spawn(serve(shared, pool.clone(), stop.clone()));
    let mut others = Servers::start(idle_addr.port(), bench.servers - 1, threads, admitted)?;

    anyhow::ensure!(bench.rounds >= 1, "--rounds must be at least 1");
    // The machine's speed drifts: raw and server runs alternate, each server run judged
    // against the mean of the raw runs either side of it.
    // Beside each rate, where the time went: the CPU this process used per hash or share and
    // the cores it kept busy, and the cores the other server processes took meanwhile.
    let hashers = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || RawHashers::start(seed, &blob, threads)).await?,
    );
    let raw = || {
        let (others, hashers) = (&others, hashers.clone());
        async move {
            let (at, before) = (Instant::now(), others.cpu_seconds());
            let run = tokio::task::spawn_blocking(move || hashers.run(RAW_RUN)).await??;
            let busy = Busy {
                own_cores: run.cpu_s / run.wall_s,
                others_cores: (others.cpu_seconds() - before) / at.elapsed().as_secs_f64(),
                ms_per_op: run.cpu_s * 1e3 / run.hashes as f64,
            };
            anyhow::Ok((run.hashes as f64 / RAW_RUN.as_secs_f64(), busy))
        }
    };
    eprintln!("raw randomx-rs light mode on {threads} thread(s)…");
    let mut raws = vec![raw().await?];
    let mut throughs = Vec::new();
    for round in 0..bench.rounds {
        throughs.push(throughput(addr, connections, shares, round, &others).await?);
        eprintln!("raw randomx-rs again…");
        raws.push(raw().await?);
    }

    let mut levels = Vec::new();
    let mut clients = IdleClients::start(idle_addr, most_idle)?;
    for (level, &idle) in bench.idle.iter().enumerate() {
        eprintln!(
            "holding {idle} idle logged-in connections on {} server process(es)…",
            bench.servers
        );
        clients.open(idle)?;
        // Every connection holds as many jobs as a miner does between blocks: new work at the
        // same height, pushed until the oldest kept job is one pushed here. One at a time,
        // each seen by every connection before the next: a connection is sent the newest work,
        // so work pushed in a burst reaches it as one job.
        let mut held = Vec::new();
        for _ in 1..JOBS_KEPT {
            work_tx.send_replace(fetch_work(&node, "bench").await?);
            held = vec![pool.open_connections()];
            held.extend(others.push(1)?);
            clients.jobs(1)?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss, slab, tcp_pages) = (rss_bytes() + others.rss(), slab_bytes(), tcp_pages());
        // The honest miners log in after the pushes: their jobs are the newest.
        let mut probes = Vec::new();
        for i in 0..bench.probes {
            let i = level * bench.probes + i;
            probes.push(Probe::login(addr, i, bench.probe_shares).await?);
        }
        let mut answer = Vec::new();
        let mut sent = HashMap::new();
        let runs = probes.iter_mut().map(|p| p.submit(bench.probe_shares));
        for (times, at) in futures::future::try_join_all(runs).await? {
            answer.extend(times);
            sent.extend(at);
        }
        let mut event = Vec::new();
        while event.len() < sent.len() {
            let got = tokio::time::timeout(Duration::from_secs(10), out_rx.recv()).await;
            let Ok(Some((key, at))) = got else {
                anyhow::bail!(
                    "{} of {} honest shares came out of the pool",
                    event.len(),
                    sent.len()
                );
            };
            if let Some(submitted) = sent.get(&key) {
                event.push(at.saturating_duration_since(*submitted));
            }
        }
        levels.push(Level {
            idle,
            held,
            rss,
            slab,
            tcp_pages,
            answer,
            event,
        });
    }
    clients.stop();
    others.stop();
    stop.cancel();
    let _ = server.await;
    let _ = shared_server.await;
    report(&bench, &raws, &throughs, &levels);
    Ok(())
}

/// How long each raw run hashes.
const RAW_RUN: Duration = Duration::from_secs(8);

/// Shares verified per second through the server in `round`: `connections` miners (new ones
/// each round, their nonces apart from every other round's) each submitting `shares` valid
/// shares, one after another.
async fn throughput(
    addr: SocketAddr,
    connections: usize,
    shares: usize,
    round: usize,
    others: &Servers,
) -> anyhow::Result<(f64, Busy)> {
    eprintln!(
        "round {}: preparing {connections} miners × {shares} valid shares…",
        round + 1
    );
    let mut miners = Vec::new();
    for i in 0..connections {
        let m = StratumClient::login(addr, &format!("bench{round}x{i}+1")).await?;
        let (job, session) = (m.job.clone(), m.session.clone());
        let job_id = job.job_id.clone();
        let salt = u32::try_from(round * connections + i)?;
        anyhow::ensure!(
            salt < 1 << 12,
            "too many rounds × connections for distinct nonces"
        );
        let pairs = tokio::task::spawn_blocking(move || precompute(&job, shares, salt)).await??;
        // Pre-built request lines: the clock measures the server, not the client's JSON.
        let lines: Vec<Vec<u8>> = pairs
            .iter()
            .enumerate()
            .map(|(n, (nonce, result))| submit_line(n, &session, &job_id, nonce, result))
            .collect();
        miners.push((m.into_parts(), lines));
    }
    eprintln!("submitting through the TCP server…");
    let mark = CpuMark::now(others);
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
    anyhow::ensure!(
        accepted == connections * shares,
        "only {accepted} of {} shares accepted",
        connections * shares
    );
    let rate = accepted as f64 / mark.at.elapsed().as_secs_f64();
    Ok((rate, mark.since(accepted, others)))
}

/// A submit request line for share `n`.
fn submit_line(n: usize, session: &str, job_id: &str, nonce: &str, result: &str) -> Vec<u8> {
    let req = json!({"id": n + 10, "jsonrpc": "2.0", "method": "submit",
        "params": {"id": session, "job_id": job_id, "nonce": nonce, "result": result}});
    format!("{req}\n").into_bytes()
}

/// An honest miner whose shares are timed while idle connections are held.
struct Probe {
    miner: String,
    reader: BufReader<tokio::io::ReadHalf<Box<dyn adit_protocol::client::Io>>>,
    writer: tokio::io::WriteHalf<Box<dyn adit_protocol::client::Io>>,
    /// Its shares not submitted yet: (nonce, request line).
    shares: Vec<(String, Vec<u8>)>,
}

impl Probe {
    /// Logs in probe `i` with `count` valid shares made ahead.
    async fn login(addr: SocketAddr, i: usize, count: usize) -> anyhow::Result<Self> {
        let miner = format!("probe{i}");
        let m = StratumClient::login(addr, &format!("{miner}+1")).await?;
        let (job, session) = (m.job.clone(), m.session.clone());
        let salt = 0x800 + i as u32;
        let pairs = tokio::task::spawn_blocking(move || precompute(&job, count, salt)).await??;
        let shares = pairs
            .iter()
            .enumerate()
            .map(|(n, (nonce, result))| {
                (
                    nonce.clone(),
                    submit_line(n, &session, &m.job.job_id, nonce, result),
                )
            })
            .rev()
            .collect();
        let (reader, writer) = m.into_parts();
        Ok(Self {
            miner,
            reader,
            writer,
            shares,
        })
    }

    /// Submits `count` shares one after another: each one's time to its accepted answer, and
    /// when each was sent, by (miner, nonce).
    async fn submit(
        &mut self,
        count: usize,
    ) -> anyhow::Result<(Vec<Duration>, Vec<((String, String), Instant)>)> {
        let (mut times, mut sent) = (Vec::new(), Vec::new());
        let mut reply = String::new();
        for _ in 0..count {
            let (nonce, line) = self.shares.pop().context("no share made ahead")?;
            let at = Instant::now();
            self.writer.write_all(&line).await?;
            reply.clear();
            self.reader.read_line(&mut reply).await?;
            anyhow::ensure!(
                !reply.contains("\"method\":\"job\""),
                "a job was pushed while honest shares were timed: {reply}"
            );
            anyhow::ensure!(
                reply.contains("\"status\":\"OK\""),
                "an honest share was refused: {reply}"
            );
            times.push(at.elapsed());
            sent.push(((self.miner.clone(), nonce), at));
        }
        Ok((times, sent))
    }
}

/// The `q` quantile of `times`, milliseconds.
fn quantile_ms(times: &[Duration], q: f64) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Prints the report: the throughput rounds (`raws` has one more run than `throughs`: one
/// before each round and one after the last), then each idle level.
fn report(bench: &PoolBench, raws: &[(f64, Busy)], throughs: &[(f64, Busy)], levels: &[Level]) {
    let PoolBench {
        threads,
        connections,
        shares,
        probes,
        probe_shares,
        ..
    } = bench;
    println!(
        "adit bench pool (light mode, {threads} verification thread(s), debug={})",
        cfg!(debug_assertions)
    );
    let (raw_busy, through_busy): (Vec<Busy>, Vec<Busy>) = (
        raws.iter().map(|r| r.1).collect(),
        throughs.iter().map(|t| t.1).collect(),
    );
    let (raws, throughs): (Vec<f64>, Vec<f64>) = (
        raws.iter().map(|r| r.0).collect(),
        throughs.iter().map(|t| t.0).collect(),
    );
    let (raws, throughs) = (raws.as_slice(), throughs.as_slice());
    let ratios: Vec<f64> = throughs
        .iter()
        .zip(raws.windows(2))
        .map(|(through, raw)| through / ((raw[0] + raw[1]) / 2.0))
        .collect();
    let rounds = throughs.len();
    let list = |v: &[f64], digits: usize| {
        v.iter()
            .map(|x| format!("{x:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  raw randomx-rs hash rate       {:>10.1} hashes/s   (baseline, same mode and threads, median of {}: {})",
        median(raws),
        raws.len(),
        list(raws, 1)
    );
    println!(
        "  verified through TCP server    {:>10.1} shares/s   (median of {rounds} rounds of {connections} connections × {shares} shares: {})",
        median(throughs),
        list(throughs, 1)
    );
    println!(
        "  ratio server / raw             {:>10.3}              (target ≥ 0.95; median of the rounds' ratios: {})",
        median(&ratios),
        list(&ratios, 3)
    );
    for (what, busy) in [
        ("CPU per hash, raw             ", &raw_busy),
        ("CPU per share, through server ", &through_busy),
    ] {
        let of = |f: fn(&Busy) -> f64| median(&busy.iter().map(f).collect::<Vec<_>>());
        println!(
            "  {what} {:>7.2} ms            (medians: this process kept {:.2} cores busy, the other server processes {:.2})",
            of(|b| b.ms_per_op),
            of(|b| b.own_cores),
            of(|b| b.others_cores),
        );
    }
    println!(
        "  idle logged-in connections ({probes} honest miners × {probe_shares} shares timed at each count; memory per connection against the first count):"
    );
    println!(
        "  {:>8} {:>12} {:>14} {:>14} {:>11} {:>11} {:>11} {:>11}  held by each server process",
        "idle",
        "process B",
        "kernel slab B",
        "tcp buffers B",
        "answer p50",
        "answer p99",
        "event p50",
        "event p99"
    );
    let first = levels.first();
    for level in levels {
        let per = |now: u64, then: u64| match first {
            Some(f) if level.idle > f.idle => {
                format!(
                    "{:.0}",
                    now.saturating_sub(then) as f64 / (level.idle - f.idle) as f64
                )
            }
            _ => "-".into(),
        };
        let base = first.map_or((0, 0, 0), |f| (f.rss, f.slab, f.tcp_pages));
        println!(
            "  {:>8} {:>12} {:>14} {:>14} {:>9.2}ms {:>9.2}ms {:>9.2}ms {:>9.2}ms  {}",
            level.idle,
            per(level.rss, base.0),
            per(level.slab, base.1),
            per(level.tcp_pages * 4096, base.2 * 4096),
            quantile_ms(&level.answer, 0.5),
            quantile_ms(&level.answer, 0.99),
            quantile_ms(&level.event, 0.5),
            quantile_ms(&level.event, 0.99),
            level
                .held
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" + "),
        );
    }
    println!(
        "  (process: the RSS growth per connection of the server's {} process(es), summed, target ≤ 2 KB; kernel: slab growth per connection, both ends on loopback; tcp buffers: /proc/net/sockstat's TCP mem)",
        bench.servers
    );
}

/// The kernel's slab memory (`/proc/meminfo`'s `Slab`), bytes.
fn slab_bytes() -> u64 {
    proc_kib("/proc/meminfo", "Slab:") * 1024
}

/// Pages the kernel's TCP sockets hold in buffers (`/proc/net/sockstat`'s `TCP: … mem N`).
fn tcp_pages() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_string();
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "mem")?;
            words.get(at + 1)?.parse().ok()
        })
        .unwrap_or(0)
}
