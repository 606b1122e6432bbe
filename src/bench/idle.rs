//! The idle logged-in miners of `adit bench pool`: connections held by child processes
//! (`adit bench idle-clients`), each under its descriptor limit, from several loopback source
//! addresses, each connection counting the jobs it is sent and nothing else.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::children::Children;

/// Connections one client process holds at most: under the 20 000 descriptors a process may
/// have on the machines this runs on, with room for the runtime's own.
pub(super) const PER_PROCESS: usize = 16_000;
/// Connections opened from one loopback source address: within Linux's default ephemeral
/// port range (32768–60999), so 100 000 connections need several addresses.
const PER_SOURCE: usize = 20_000;
/// Connections being opened at once by one process.
const OPENING: usize = 128;

/// The processes holding the idle connections: connection `i` of all is held by process
/// `i % processes`, so each source address is shared by all of them.
pub(super) struct IdleClients {
    children: Children,
}

impl IdleClients {
    /// Enough processes to hold `most` connections to `addr`.
    pub(super) fn start(addr: SocketAddr, most: usize) -> anyhow::Result<Self> {
        let processes = most.div_ceil(PER_PROCESS).max(1);
        let children = Children::start(processes, "idle clients", |offset| {
            ["bench", "idle-clients", "--addr", &addr.to_string()]
                .map(String::from)
                .into_iter()
                .chain(["--offset".into(), offset.to_string()])
                .chain(["--stride".into(), processes.to_string()])
                .collect()
        })?;
        Ok(Self { children })
    }

    /// Has them hold `count` logged-in connections in all.
    pub(super) fn open(&mut self, count: usize) -> anyhow::Result<()> {
        let stride = self.children.len();
        let mine = |offset: usize| count.saturating_sub(offset).div_ceil(stride);
        self.ask_each(|offset| {
            (
                format!("open {}", mine(offset)),
                format!("ready {}", mine(offset)),
            )
        })
    }

    /// Waits until each connection has been sent `count` more jobs since it last waited.
    pub(super) fn jobs(&mut self, count: usize) -> anyhow::Result<()> {
        self.ask_each(|_| (format!("jobs {count}"), format!("jobs {count}")))
    }

    /// Sends each process its command, then checks each answered what it was told to.
    fn ask_each(&mut self, says: impl Fn(usize) -> (String, String)) -> anyhow::Result<()> {
        self.children.say(|offset| says(offset).0)?;
        for (offset, answer) in self.children.answers()?.into_iter().enumerate() {
            let (command, done) = says(offset);
            anyhow::ensure!(
                answer == done,
                "idle clients {offset} failed {command:?}: {answer:?}"
            );
        }
        Ok(())
    }

    pub(super) fn stop(self) {
        self.children.stop();
    }
}

/// Raises this process's soft limit on open files to `want` (within the hard limit), or says
/// what to do.
pub(super) fn raise_fd_limit(want: usize, what: &str) -> anyhow::Result<()> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    let want = want as u64;
    if soft < want {
        rlimit::Resource::NOFILE.set(want, hard.max(want)).with_context(|| {
            format!("need {want} open files for {what}; the limit is {soft} (hard {hard}): raise it with ulimit -n, or pass smaller --idle counts or more --servers")
        })?;
    }
    Ok(())
}

/// Holds logged-in connections to `addr`, each counting the jobs it is sent; its `j`-th
/// connection is connection `offset + j × stride` of all (its login and source address). On
/// each line of standard input: `open N` opens connections until it holds N, then prints
/// `ready N`; `jobs K` waits until every connection has been sent K jobs since the last
/// `jobs`, then prints `jobs K`. It ends when standard input closes.
pub async fn idle_clients(addr: SocketAddr, offset: usize, stride: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        stride >= 1 && offset < stride,
        "offset must be below stride"
    );
    let mut conns = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.split_once(' ') {
            Some(("open", n)) => {
                let count: usize = n.trim().parse().with_context(|| format!("{line:?}"))?;
                raise_fd_limit(count + 256, "the idle connections")?;
                let opened: Vec<_> = futures::stream::iter(conns.len()..count)
                    .map(|j| open_idle(addr, offset + j * stride))
                    .buffer_unordered(OPENING)
                    .collect()
                    .await;
                for conn in opened {
                    conns.push(conn?);
                }
                println!("ready {count}");
            }
            Some(("jobs", k)) => {
                let count: usize = k.trim().parse().with_context(|| format!("{line:?}"))?;
                let started = Instant::now();
                while conns.iter().any(|c: &IdleConn| c.jobs() < count) {
                    anyhow::ensure!(
                        started.elapsed() < Duration::from_secs(300),
                        "{} of {} connections were not sent {count} jobs in 300 s",
                        conns.iter().filter(|c| c.jobs() < count).count(),
                        conns.len()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                conns.iter().for_each(IdleConn::reset);
                println!("jobs {count}");
            }
            _ => anyhow::bail!("not `open N` nor `jobs K`: {line:?}"),
        }
    }
    drop(conns);
    Ok(())
}

/// An idle connection's reader: counts the job notifications it is sent, nothing else.
struct IdleConn {
    jobs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    reader: tokio::task::JoinHandle<()>,
}

impl IdleConn {
    fn new(stream: BufReader<tokio::net::TcpStream>) -> Self {
        let jobs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = jobs.clone();
        let reader = tokio::spawn(async move {
            let mut lines = stream.lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("\"method\":\"job\"") {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Self { jobs, reader }
    }

    fn jobs(&self) -> usize {
        self.jobs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn reset(&self) {
        self.jobs.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for IdleConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Connection `i`: from its loopback source address, logged in.
async fn open_idle(addr: SocketAddr, i: usize) -> anyhow::Result<IdleConn> {
    let source = u8::try_from(1 + i / PER_SOURCE).context("at most 5 100 000 connections")?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, source), 0)))?;
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connection {i} from 127.0.0.{source}"))?;
    let login = json!({"id": 1, "jsonrpc": "2.0", "method": "login", "params": {"login": format!("idle{i}"), "pass": "x", "agent": "bench"}});
    let mut stream = BufReader::with_capacity(1024, stream);
    stream
        .get_mut()
        .write_all(format!("{login}\n").as_bytes())
        .await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    anyhow::ensure!(
        line.contains("\"status\":\"OK\""),
        "idle login {i} failed: {line}"
    );
    Ok(IdleConn::new(stream))
}
