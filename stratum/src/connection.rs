//! The Stratum server's I/O: the accept loop with admission control, and one task per
//! connection that reads bounded lines, hands each to its handler, pushes new jobs and retargets
//! on time, and writes the answers.
//!
//! `serve(listener, pool, shutdown)` runs until `shutdown` is cancelled, then stops accepting,
//! lets every connection finish the request in hand (including its RandomX verification), and
//! returns when they have closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{Id, LineDecoder, Response, to_line};
use crate::jobs::Work;
use crate::server::Pool;
use crate::session::Session;

/// How often a connection checks whether its miner's difficulty should change on time alone.
const RETARGET_TICK: Duration = Duration::from_secs(5);
/// Room made for each read from a miner. The room is held by every idle connection while it
/// waits (the decoder gives its buffer back once every line in it is handled), so it is small:
/// a share or login line of 150–300 bytes takes four or five reads (the buffer doubles as a
/// line outgrows it), microseconds beside the milliseconds of hashing it asks for. 32 bytes
/// against 64: the server's memory per idle miner went from 2 064 to 2 040 bytes over 100 000
/// of them (`adit bench pool --idle 0,10000,100000 --servers 7`, release, 2026-12-02).
const READ_ROOM: usize = 32;

/// Accepts miners on `listener` until `shutdown`, then drains the connections.
pub async fn serve(listener: TcpListener, pool: Arc<Pool>, shutdown: CancellationToken) {
    // A tracker, not a set of handles: it counts the connections to wait for at shutdown
    // without a node per connection.
    let conns = TaskTracker::new();
    let poke = poker(&pool, shutdown.clone());
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.ip();
        let lifted = pool.bans.take_lifted();
        if !lifted.is_empty() {
            pool.guard()
                .pardon(|ip| lifted.iter().any(|net| net.contains(ip)));
        }
        if pool.bans.covers(ip, chrono::Utc::now()) {
            metrics::counter!("adit_pool_connections_refused_total", "reason" => "banned")
                .increment(1);
            drop(stream);
            continue;
        }
        if let Err(refusal) = pool.guard().admit(ip, Instant::now()) {
            metrics::counter!("adit_pool_connections_refused_total", "reason" => refusal.reason())
                .increment(1);
            drop(stream);
            continue;
        }
        let (pool, token, poked) = (pool.clone(), shutdown.clone(), poke.subscribe());
        stream.set_nodelay(true).ok();
        // Each path boxed on its own, so a plain connection's task does not carry the size of
        // a TLS handshake, nor a TLS one a plain one's (the task is most of what an idle miner
        // costs).
        conns.spawn(async move {
            match &pool.tls {
                None => Box::pin(connection(stream, peer, &pool, token, poked)).await,
                Some(acceptor) => {
                    Box::pin(async {
                        let handshake = tokio::time::timeout(
                            pool.config.login_timeout,
                            acceptor.accept(stream),
                        );
                        match handshake.await {
                            Ok(Ok(tls)) => {
                                Box::pin(connection(tls, peer, &pool, token, poked)).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    })
                    .await
                }
            }
            pool.guard().release(ip);
        });
    }
    drop(listener);
    drop(poke);
    conns.close();
    conns.wait().await;
}

/// One signal for every connection that something it waits on changed: new work, the bans,
/// or shutdown. A connection then looks at which: one future waiting in each idle miner's
/// task instead of three (a waiter of tokio's is ~100 bytes, and 100 000 miners hold one each).
fn poker(pool: &Arc<Pool>, shutdown: CancellationToken) -> watch::Sender<()> {
    let (poke, _) = watch::channel(());
    let (mut work, mut bans, sender) = (pool.work.clone(), pool.bans.subscribe(), poke.clone());
    tokio::spawn(async move {
        loop {
            let last = tokio::select! {
                _ = shutdown.cancelled() => true,
                changed = work.changed() => changed.is_err(),
                Ok(()) = bans.changed() => false,
            };
            sender.send_replace(());
            if last {
                break;
            }
        }
    });
    poke
}

/// What a handled line asks the connection to do next.
pub(crate) enum Next {
    /// Keep going.
    Continue,
    /// Close the connection.
    Close,
}

/// One connection's state.
pub(crate) struct Conn<'a, W> {
    /// The shared pool.
    pub(crate) pool: &'a Pool,
    /// Peer address.
    pub(crate) ip: IpAddr,
    /// The socket's write half.
    pub(crate) out: W,
    /// The logged-in session.
    pub(crate) session: Option<Session>,
    /// The current work, as this connection last saw it.
    pub(crate) work: watch::Receiver<Arc<Work>>,
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    pool: &Pool,
    shutdown: CancellationToken,
    mut poked: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut rd, out) = tokio::io::split(stream);
    let mut conn = Conn {
        pool,
        ip: peer.ip(),
        out,
        session: None,
        work: pool.work.clone(),
    };
    let mut decoder = LineDecoder::new(pool.config.max_line);
    let mut deadline = Instant::now() + pool.config.login_timeout;
    let mut retarget_at = Instant::now() + RETARGET_TICK;
    let mut bans_seen = pool.bans.version();
    // What waits here is what an idle miner costs: one signal for work, bans and shutdown
    // ([`poker`]), one timer for both the deadline and the retarget, and the handlers (which
    // hold JSON, hashing and publishing while they run) boxed, so their size is paid only
    // while one runs.
    loop {
        tokio::select! {
            poke = poked.changed() => {
                if poke.is_err() || shutdown.is_cancelled() {
                    break;
                }
                let bans = pool.bans.version();
                if bans != bans_seen {
                    bans_seen = bans;
                    if pool.bans.covers(conn.ip, chrono::Utc::now()) {
                        tracing::info!(ip = %conn.ip, "connection closed: its address was banned");
                        break;
                    }
                }
                match conn.work.has_changed() {
                    Ok(false) => {}
                    Ok(true) => {
                        if Box::pin(conn.push_job()).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            _ = tokio::time::sleep_until(deadline.min(retarget_at)) => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if now >= retarget_at {
                    retarget_at = now + RETARGET_TICK;
                    if Box::pin(conn.retarget_on_time()).await.is_err() {
                        break;
                    }
                }
            }
            read = rd.read_buf(decoder.read_buffer(READ_ROOM)) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break;
                }
                if matches!(Box::pin(conn.drain(&mut decoder)).await, Next::Close) {
                    break;
                }
                if conn.session.is_some() {
                    deadline = Instant::now() + pool.config.idle_timeout;
                }
            }
        }
    }
    if conn.session.is_some() {
        metrics::gauge!("adit_pool_miners_connected").decrement(1.0);
        metrics::gauge!("pool_active_miners").decrement(1.0);
    }
}

impl<W: AsyncWrite + Unpin> Conn<'_, W> {
    pub(crate) async fn send<T: serde::Serialize>(&mut self, message: &T) -> std::io::Result<()> {
        let line = to_line(message).map_err(std::io::Error::other)?;
        self.out.write_all(&line).await
    }

    pub(crate) async fn error(&mut self, id: Id, message: &str) -> std::io::Result<()> {
        self.send(&Response::<serde_json::Value>::error(id, -1, message))
            .await
    }

    /// An error answer sent just before closing or penalising: a miner already gone is only
    /// logged, as there is nothing left to tell it.
    pub(crate) async fn farewell(&mut self, id: Id, message: &str) {
        if let Err(e) = self.error(id, message).await {
            tracing::debug!(ip = %self.ip, error = %e, message, "a miner was gone before its answer");
        }
    }

    /// Handles every complete line in the decoder.
    async fn drain(&mut self, decoder: &mut LineDecoder) -> Next {
        loop {
            let line = match decoder.next_line() {
                Ok(Some(line)) => line.to_vec(),
                Ok(None) => return Next::Continue,
                Err(_) => {
                    metrics::counter!("adit_pool_protocol_errors_total", "kind" => "line_too_long")
                        .increment(1);
                    return Next::Close;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if matches!(self.line(&line).await, Next::Close) {
                return Next::Close;
            }
        }
    }

    /// Scores a bad message; closes the connection once the IP is banned.
    pub(crate) fn penalise(&self) -> Next {
        if self.pool.guard().record(self.ip, true, Instant::now()) {
            tracing::info!(ip = %self.ip, "banned for invalid input");
            let ban_for = self.pool.config.limits.ban_for;
            self.pool.bans.auto_ban(self.ip, ban_for, "invalid input");
            Next::Close
        } else {
            Next::Continue
        }
    }
}
