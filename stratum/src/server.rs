//! The Stratum server: accept loop with admission control, and one task per connection that
//! reads lines, answers XMRig's methods, verifies shares off the runtime, and pushes new jobs.
//!
//! `serve(listener, pool, shutdown)` runs until `shutdown` is cancelled, then stops accepting,
//! lets every connection finish the request in hand (including its RandomX verification), and
//! returns when they have closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adit_schemas::{AnyEvent, Share};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::codec::{
    Call, Id, JobNotification, LineDecoder, LoginResult, Response, SubmitParams, parse_request,
    to_line,
};
use crate::guard::{Guard, GuardConfig};
use crate::jobs::{JobFactory, Work};
use crate::session::{Candidate, Reject, Session, Verdict, judge, parse_login};
use crate::vardiff::VardiffConfig;
use crate::verify::Verifier;

/// Server settings; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Pool id used in subjects and tables.
    pub pool: String,
    /// Starting share difficulty (a `+difficulty` login overrides it).
    pub start_difficulty: u64,
    /// Longest accepted line, bytes; a longer one closes the connection.
    pub max_line: usize,
    /// Time allowed from connect to login.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// A connection silent this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// RandomX verification threads (0 = one per core).
    pub verify_threads: usize,
    /// `light` (default) or `fast` (shared ~2 GiB dataset per seed).
    pub randomx_mode: crate::verify::RandomXMode,
    /// Vardiff.
    pub vardiff: VardiffConfig,
    /// Admission limits.
    pub limits: GuardConfig,
    /// Serve Stratum over TLS with this certificate and key.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            pool: "main".into(),
            start_difficulty: 10_000,
            max_line: 16 * 1024,
            login_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(600),
            verify_threads: 0,
            randomx_mode: crate::verify::RandomXMode::Light,
            vardiff: VardiffConfig::default(),
            limits: GuardConfig::default(),
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Checks every value; the message starts with the key (under `pool.server.`).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !adit_schemas::names::is_token(&self.pool) {
            return Err(format!(
                "pool {:?} must be 1–64 of A-Z a-z 0-9 _ - (it is a subject token)",
                self.pool
            ));
        }
        if self.start_difficulty == 0 {
            return Err("start_difficulty must be at least 1".into());
        }
        if self.max_line < 512 {
            return Err(format!(
                "max_line must be at least 512 bytes (a login line is longer), not {}",
                self.max_line
            ));
        }
        if self.login_timeout.is_zero() {
            return Err("login_timeout must be more than 0".into());
        }
        if self.idle_timeout.is_zero() {
            return Err("idle_timeout must be more than 0".into());
        }
        if self.verify_threads > 1024 {
            return Err(format!(
                "verify_threads must be at most 1024, not {}",
                self.verify_threads
            ));
        }
        self.vardiff
            .validate()
            .map_err(|e| format!("vardiff: {e}"))?;
        self.limits.validate().map_err(|e| format!("limits.{e}"))
    }
}

/// A share that is also a block, for the node to judge.
#[derive(Debug, Clone)]
pub struct BlockFound {
    /// The full block blob (hex) to submit.
    pub blob_hex: String,
    /// Its id (hex).
    pub hash: String,
    /// Height.
    pub height: u64,
    /// Miner who found it.
    pub miner: String,
    /// Worker who found it.
    pub worker: String,
    /// Job of the share that found it.
    pub job_id: String,
    /// Nonce of the share that found it, as recorded in the share event.
    pub nonce: String,
    /// Reward in atomic units.
    pub reward: u64,
    /// Network difficulty.
    pub network_difficulty: u64,
}

/// How often a connection checks whether its miner's difficulty should change on time alone.
const RETARGET_TICK: Duration = Duration::from_secs(5);

/// What every connection shares.
pub struct Pool {
    /// Settings.
    config: ServerConfig,
    /// Job ids and extra nonces.
    factory: JobFactory,
    /// RandomX threads.
    verifier: Verifier,
    /// The current work; a change is pushed to every miner.
    work: watch::Receiver<Arc<Work>>,
    /// Share events, for the publisher.
    events: mpsc::Sender<AnyEvent>,
    /// Block candidates, for the node submitter.
    blocks: mpsc::Sender<BlockFound>,
    /// Admission state.
    guard: Mutex<Guard>,
    /// Session id counter.
    sessions: std::sync::atomic::AtomicU64,
    /// TLS, when configured.
    tls: Option<TlsAcceptor>,
}

impl Pool {
    /// A pool mining `work`, sending share events to `events` and block candidates to `blocks`.
    pub fn new(
        config: ServerConfig,
        work: watch::Receiver<Arc<Work>>,
        events: mpsc::Sender<AnyEvent>,
        blocks: mpsc::Sender<BlockFound>,
    ) -> crate::error::Result<Arc<Self>> {
        let tls = config
            .tls
            .as_ref()
            .map(|files| crate::tls::acceptor(files, None))
            .transpose()?;
        let threads = if config.verify_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.verify_threads
        };
        let prefix = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros()) as u32)
            ^ std::process::id();
        Ok(Arc::new(Self {
            tls,
            guard: Mutex::new(Guard::new(config.limits.clone())),
            factory: JobFactory::new(prefix),
            verifier: Verifier::new(threads, config.randomx_mode),
            config,
            work,
            events,
            blocks,
            sessions: std::sync::atomic::AtomicU64::new(1),
        }))
    }

    /// Builds the verification threads' RandomX caches for `seed` before shares need them.
    pub async fn prepare(&self, seed: [u8; 32]) -> crate::error::Result<()> {
        self.verifier.prepare(seed).await
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, Guard> {
        self.guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Accepts miners on `listener` until `shutdown`, then drains the connections.
pub async fn serve(listener: TcpListener, pool: Arc<Pool>, shutdown: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
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
        if let Err(refusal) = pool.guard().admit(ip, Instant::now()) {
            metrics::counter!("adit_pool_connections_refused_total", "reason" => refusal.reason())
                .increment(1);
            drop(stream);
            continue;
        }
        let (pool, token) = (pool.clone(), shutdown.clone());
        stream.set_nodelay(true).ok();
        conns.spawn(async move {
            match &pool.tls {
                None => connection(stream, peer, &pool, token).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(pool.config.login_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => connection(tls, peer, &pool, token).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            pool.guard().release(ip);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// What a handled line asks the connection to do next.
enum Next {
    /// Keep going.
    Continue,
    /// Close the connection.
    Close,
}

/// One connection's state.
struct Conn<'a, W> {
    /// The shared pool.
    pool: &'a Pool,
    /// Peer address.
    ip: IpAddr,
    /// The socket's write half.
    out: W,
    /// The logged-in session.
    session: Option<Session>,
    /// The current work, as this connection last saw it.
    work: watch::Receiver<Arc<Work>>,
}

async fn connection<S>(stream: S, peer: SocketAddr, pool: &Pool, shutdown: CancellationToken)
where
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
    let mut buf = vec![0u8; 1024];
    let mut deadline = Instant::now() + pool.config.login_timeout;
    let mut retarget = tokio::time::interval(RETARGET_TICK);
    retarget.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => break,
            changed = conn.work.changed() => {
                if changed.is_err() || conn.push_job().await.is_err() {
                    break;
                }
            }
            _ = retarget.tick() => {
                if conn.retarget_on_time().await.is_err() {
                    break;
                }
            }
            read = rd.read(&mut buf) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                decoder.push(&buf[..n]);
                if matches!(conn.drain(&mut decoder).await, Next::Close) {
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
    async fn send<T: serde::Serialize>(&mut self, message: &T) -> std::io::Result<()> {
        let line = to_line(message).map_err(std::io::Error::other)?;
        self.out.write_all(&line).await
    }

    async fn error(&mut self, id: Id, message: &str) -> std::io::Result<()> {
        self.send(&Response::<serde_json::Value>::error(id, -1, message))
            .await
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
    fn penalise(&self) -> Next {
        if self.pool.guard().record(self.ip, true, Instant::now()) {
            tracing::info!(ip = %self.ip, "banned for invalid input");
            Next::Close
        } else {
            Next::Continue
        }
    }

    async fn line(&mut self, line: &[u8]) -> Next {
        let request = match parse_request(line) {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("adit_pool_protocol_errors_total", "kind" => "bad_request")
                    .increment(1);
                let id = e.request_id().cloned().unwrap_or(Id::Null);
                if self.error(id, &e.to_string()).await.is_err() {
                    return Next::Close;
                }
                return self.penalise();
            }
        };
        let id = request.id.clone();
        let result = match request.call {
            Call::Login(params) => return self.login(id, &params).await,
            Call::GetJob(p) => {
                if self.session.as_ref().is_none_or(|s| s.id != p.id) {
                    self.error(id, Reject::Unauthenticated.message()).await
                } else {
                    match self.job() {
                        Some(job) => self.send(&Response::ok(id, job)).await,
                        None => self.error(id, "No work available").await,
                    }
                }
            }
            Call::Submit(params) => return self.submit(id, params).await,
            Call::Keepalived(_) => {
                self.send(&Response::ok(id, json!({"status": "KEEPALIVED"})))
                    .await
            }
        };
        if result.is_err() {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// A new job for the session from the current work.
    fn job(&mut self) -> Option<crate::codec::Job> {
        let work = self.work.borrow_and_update().clone();
        let session = self.session.as_mut()?;
        match session.new_job(&self.pool.factory, &work) {
            Ok(job) => Some(job),
            Err(e) => {
                tracing::error!(error = %e, "cannot cut a job from the template");
                None
            }
        }
    }

    /// Retargets a miner that has gone quiet (a difficulty too high for it, before or after
    /// its first share) and sends it a new job when the difficulty changed.
    async fn retarget_on_time(&mut self) -> std::io::Result<()> {
        let network = self.work.borrow().network_difficulty;
        let changed = self
            .session
            .as_mut()
            .and_then(|s| s.tick(&self.pool.config.vardiff, now_ms(), network));
        match changed {
            Some(_) => self.push_job().await,
            None => Ok(()),
        }
    }

    async fn push_job(&mut self) -> std::io::Result<()> {
        if self.session.is_none() {
            self.work.borrow_and_update();
            return Ok(());
        }
        match self.job() {
            Some(job) => self.send(&JobNotification(job)).await,
            None => Ok(()),
        }
    }

    async fn login(&mut self, id: Id, params: &crate::codec::LoginParams) -> Next {
        if !self.pool.guard().allow_login(self.ip, Instant::now()) {
            let _ = self.error(id, "Too many logins, slow down").await;
            return Next::Close;
        }
        if !params.algo.is_empty() && !params.algo.iter().any(|a| a == "rx/0" || a == "randomx") {
            let _ = self
                .error(id, "Unsupported algorithm: this pool mines rx/0")
                .await;
            return Next::Close;
        }
        let Some(identity) = parse_login(params) else {
            let _ = self
                .error(id, "Invalid login: expected a wallet address")
                .await;
            return self.penalise();
        };
        if self.session.is_none() {
            metrics::gauge!("adit_pool_miners_connected").increment(1.0);
            metrics::gauge!("pool_active_miners").increment(1.0);
        }
        let n = self
            .pool
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let difficulty = identity
            .fixed_difficulty
            .unwrap_or(self.pool.config.start_difficulty);
        let session_id = format!("{n:016x}");
        self.session = Some(Session::new(
            session_id.clone(),
            identity,
            self.pool.factory.extra_nonce(),
            difficulty,
            now_ms(),
        ));
        let Some(job) = self.job() else {
            let _ = self.error(id, "No work available").await;
            return Next::Close;
        };
        let result = LoginResult {
            id: session_id,
            job,
            extensions: vec!["keepalive".into()],
            status: "OK".into(),
        };
        if self.send(&Response::ok(id, result)).await.is_err() {
            Next::Close
        } else {
            Next::Continue
        }
    }

    async fn submit(&mut self, id: Id, params: SubmitParams) -> Next {
        if !self.pool.guard().allow_submit(self.ip, Instant::now()) {
            let _ = self.error(id, "Too many shares, slow down").await;
            return Next::Close;
        }
        let tip = self.work.borrow().height;
        let Some(session) = self.session.as_mut() else {
            let _ = self.error(id, Reject::Unauthenticated.message()).await;
            return self.penalise();
        };
        let checked = session.precheck(&params, tip);
        let verdict = match &checked {
            Err(reject) => Verdict::Rejected(*reject),
            Ok(candidate) => match self
                .pool
                .verifier
                .hash(candidate.seed_hash, candidate.hashing_blob.clone())
                .await
            {
                Ok(hash) => judge(candidate, &hash),
                Err(e) => {
                    tracing::error!(error = %e, "verification failed");
                    let _ = self.error(id, "Internal error, try again").await;
                    return Next::Close;
                }
            },
        };
        self.record(&params, checked.as_ref().ok(), verdict).await;
        let sent = match verdict {
            Verdict::Rejected(r) => self.error(id, r.message()).await,
            Verdict::Share | Verdict::Block => {
                self.send(&Response::ok(id, json!({"status": "OK"}))).await
            }
        };
        if sent.is_err() {
            return Next::Close;
        }
        match verdict {
            Verdict::Rejected(r) if r.is_invalid() => self.penalise(),
            Verdict::Rejected(_) => Next::Continue,
            Verdict::Share | Verdict::Block => {
                self.pool.guard().record(self.ip, false, Instant::now());
                let network = self.work.borrow().network_difficulty;
                let difficulty = checked.map_or(0, |c| c.difficulty);
                let changed = self.session.as_mut().and_then(|s| {
                    s.accepted(difficulty, &self.pool.config.vardiff, now_ms(), network)
                });
                if changed.is_some() && self.push_job().await.is_err() {
                    return Next::Close;
                }
                Next::Continue
            }
        }
    }

    /// Publishes the share event (and hands a block to the node), and counts it.
    async fn record(
        &mut self,
        params: &SubmitParams,
        candidate: Option<&Candidate>,
        verdict: Verdict,
    ) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let (accepted, reason) = match verdict {
            Verdict::Rejected(r) => (false, Some(r.reason().to_string())),
            Verdict::Share | Verdict::Block => (true, None),
        };
        metrics::counter!("adit_pool_shares_total", "result" => reason.clone().unwrap_or_else(|| "accepted".into())).increment(1);
        // What the share was judged against: its job's difficulty and height, also for a stale
        // or duplicate share whose job the session still remembers.
        let (difficulty, height) = candidate
            .map(|c| (c.difficulty, c.height))
            .or_else(|| session.jobs.judged_against(&params.job_id))
            .unwrap_or_else(|| (session.vardiff.difficulty, self.work.borrow().height));
        if accepted {
            metrics::counter!("adit_pool_accepted_difficulty_total").increment(difficulty);
        }
        let share = Share {
            pool: self.pool.config.pool.clone(),
            miner: session.identity.miner.clone(),
            worker: session.identity.worker.clone(),
            job_id: params.job_id.chars().take(64).collect(),
            nonce: params
                .nonce
                .chars()
                .take(16)
                .collect::<String>()
                .to_ascii_lowercase(),
            difficulty,
            height,
            accepted,
            reason,
            ts: chrono::Utc::now(),
        };
        if share.job_id.is_empty() || share.nonce.is_empty() {
            // Refused at parsing (no job or nonce): nothing a share event could name.
            return;
        }
        let (job_id, nonce) = (share.job_id.clone(), share.nonce.clone());
        if let Err(lost) = self.pool.events.send(AnyEvent::Share(share)).await {
            // Only at shutdown, after the publisher has stopped: say so, with the event.
            metrics::counter!("adit_pool_events_lost_total").increment(1);
            tracing::error!(event = ?lost.0, "share event not recorded: the publisher has stopped");
        }
        if let (Verdict::Block, Some(c)) = (verdict, candidate) {
            metrics::counter!("adit_pool_blocks_found_total").increment(1);
            metrics::counter!("pool_blocks_found_total").increment(1);
            let found = BlockFound {
                blob_hex: hex::encode(&c.block_blob),
                hash: hex::encode(crate::blob::block_id(&c.hashing_blob)),
                height: c.height,
                miner: session.identity.miner.clone(),
                worker: session.identity.worker.clone(),
                job_id,
                nonce,
                reward: c.reward,
                network_difficulty: c.network_difficulty,
            };
            tracing::info!(height = found.height, hash = %found.hash, miner = %found.miner, "block found");
            if let Err(lost) = self.pool.blocks.send(found).await {
                // Only at shutdown: the blob is logged so an operator can still submit it.
                metrics::counter!("adit_pool_events_lost_total").increment(1);
                tracing::error!(height = lost.0.height, blob = %lost.0.blob_hex, "block candidate not submitted: the submitter has stopped; submit this blob to the node by hand");
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
