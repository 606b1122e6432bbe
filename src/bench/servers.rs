//! The pool server of `adit bench pool` spread over processes that share one port
//! (`SO_REUSEPORT`, the kernel spreading connections between them): the bench's own and
//! `adit bench pool-server` children, each the same server (config, limits, its own simulated
//! chain), so more idle miners than one process may hold descriptors for are held on one
//! machine and their memory is summed over the processes.

use std::net::SocketAddr;

use std::time::Duration;

use adit_stratum::{GuardConfig, Node, Pool, ServerConfig, SimChain, SimConfig, fetch_work, serve};
use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::children::Children;
use super::idle::raise_fd_limit;
use super::procfs::{cpu_seconds, proc_kib};

/// A listener on `addr` that other processes of this user may bind too.
pub(super) fn shared_listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(4096)?)
}

/// The child servers on one shared port.
pub(super) struct Servers {
    children: Children,
}

impl Servers {
    /// `count` servers on `port` of 127.0.0.1 with `threads` verification threads each,
    /// admitting `admitted` connections each; back once each listens.
    pub(super) fn start(
        port: u16,
        count: usize,
        threads: usize,
        admitted: usize,
    ) -> anyhow::Result<Self> {
        let children = Children::start(count, "pool server", |_| {
            let args = [
                "bench",
                "pool-server",
                "--port",
                &port.to_string(),
                "--threads",
                &threads.to_string(),
                "--admit",
                &admitted.to_string(),
            ];
            args.map(String::from).to_vec()
        })?;
        let mut servers = Self { children };
        servers.held(&format!("ready {port}"), "start")?;
        Ok(servers)
    }

    /// Has each push `count` new jobs to its connections; the connections each holds. (Jobs
    /// pushed together reach a connection as one, the newest: push one, then wait for it.)
    pub(super) fn push(&mut self, count: usize) -> anyhow::Result<Vec<usize>> {
        self.children.say(|_| format!("push {count}"))?;
        self.held(&format!("pushed {count}"), "push")
    }

    /// Their resident memory, summed, bytes.
    pub(super) fn rss(&self) -> u64 {
        self.children
            .pids()
            .map(|pid| proc_kib(&format!("/proc/{pid}/status"), "VmRSS:") * 1024)
            .sum()
    }

    /// The CPU time they have used so far, summed, seconds.
    pub(super) fn cpu_seconds(&self) -> f64 {
        self.children
            .pids()
            .filter_map(|pid| cpu_seconds(&pid.to_string()))
            .sum()
    }

    /// Each one's answer `done N`: the N connections it holds.
    fn held(&mut self, done: &str, after: &str) -> anyhow::Result<Vec<usize>> {
        let answers = self.children.answers()?;
        answers
            .iter()
            .enumerate()
            .map(|(i, answer)| {
                answer
                    .strip_prefix(done)
                    .and_then(|rest| rest.trim().parse().ok())
                    .with_context(|| format!("pool server {i} answered {answer:?} to {after}"))
            })
            .collect()
    }

    pub(super) fn stop(self) {
        self.children.stop();
    }
}

/// A pool server on `port` of 127.0.0.1 shared with others: prints `ready PORT 0` once it
/// listens; on each line of standard input `push K` pushes K new jobs (new work from its
/// chain) and prints `pushed K N`, N the connections it holds. It ends when standard input
/// closes.
pub async fn pool_server(port: u16, threads: usize, admitted: usize) -> anyhow::Result<()> {
    raise_fd_limit(admitted + 256, "a pool server's connections")?;
    let node = bench_node()?;
    let work = fetch_work(&node, "bench").await?;
    let seed = work.seed_hash;
    let (work_tx, work_rx) = watch::channel(work);
    let (ev_tx, mut ev_rx) = mpsc::channel(1024);
    // Its miners are idle: what few events come are dropped here, with nothing to land them.
    tokio::spawn(async move { while ev_rx.recv().await.is_some() {} });
    let (bl_tx, _bl_rx) = mpsc::channel(16);
    let pool = Pool::new(server_config(threads, admitted), work_rx, ev_tx, bl_tx)?;
    pool.prepare(seed).await?;
    let listener = shared_listener(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, pool.clone(), stop.clone()));
    println!("ready {port} 0");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let Some(("push", k)) = line.split_once(' ') else {
            anyhow::bail!("not `push K`: {line:?}");
        };
        let count: usize = k.trim().parse().with_context(|| format!("{line:?}"))?;
        for _ in 0..count {
            work_tx.send_replace(fetch_work(&node, "bench").await?);
        }
        println!("pushed {count} {}", pool.open_connections());
    }
    stop.cancel();
    let _ = server.await;
    Ok(())
}

/// The simulated chain the server processes take work from: every hash a share, none a block.
pub(super) fn bench_node() -> anyhow::Result<Node> {
    Ok(Node::Sim(SimChain::new(SimConfig {
        difficulty: u64::MAX / 2,
        ..Default::default()
    })?))
}

/// The server's config: `threads` verification threads, `admitted` connections admitted
/// (from one address too), no rate limits, and every miner's difficulty fixed at 1 (every
/// hash a share to verify).
pub(super) fn server_config(threads: usize, admitted: usize) -> ServerConfig {
    let limits = GuardConfig {
        submits_per_s: 1e9,
        logins_per_s: 1e9,
        max_per_ip: admitted,
        max_connections: admitted,
        ..GuardConfig::default()
    };
    ServerConfig {
        verify_threads: threads,
        limits,
        login_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(3600),
        vardiff: adit_stratum::VardiffConfig {
            min_difficulty: 1,
            ..Default::default()
        },
        ..ServerConfig::default()
    }
}
