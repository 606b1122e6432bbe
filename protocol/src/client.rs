//! A Stratum client in XMRig's dialect, over TCP or TLS: log in, follow `job` pushes, submit,
//! keep alive. Requests are the codec's typed messages and replies are read through its bounded
//! [`LineDecoder`], so a pool cannot make it buffer without limit.
//!
//! The cluster's coordinator uses it as its upstream connection; the tests and benchmarks use it
//! as a real miner ([`StratumClient::mine`] hashes in light mode on the calling thread).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf,
};
use tokio::net::{TcpSocket, TcpStream};

use crate::codec::{
    ALGO_MONERO, ALGO_OPENSY, Call, Id, Job, LineDecoder, LoginParams, LoginResult, Request,
    Response, SessionParams, StatusResult, SubmitParams, to_line,
};
use crate::error::{Error, Result};
use crate::randomx::RandomXHasher;
use crate::target::{decode_target, meets_difficulty};
use crate::tls;
use crate::work::{job_nonce_offset, nonce_hex, put_nonce};

/// The longest line accepted from a pool: a job with its blob is well under 1 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// How long a connection attempt (TCP and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Any byte stream a client can run over (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A boxed connection.
pub type Connection = Box<dyn Io>;

/// A pool's address: `stratum+tcp://host:port`, `stratum+ssl://host:port` (or `+tls`), or a
/// bare `host:port` (plain TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUrl {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl FromStr for PoolUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Client {
            reason: format!("pool URL {s:?}: {reason}"),
        };
        let (tls, rest) = match s.split_once("://") {
            None => (false, s),
            Some(("stratum+tcp" | "tcp", rest)) => (false, rest),
            Some(("stratum+ssl" | "stratum+tls" | "ssl" | "tls", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(invalid(&format!(
                    "unknown scheme {scheme:?} (stratum+tcp or stratum+ssl)"
                )));
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("no port (host:port)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = port.parse().map_err(|_| invalid("port is not a number"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl std::fmt::Display for PoolUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls {
            "stratum+ssl"
        } else {
            "stratum+tcp"
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// How the client connects and identifies itself.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest line accepted from the pool.
    pub max_line: usize,
    /// The user agent sent at login.
    pub agent: String,
    /// A CA to trust for `stratum+ssl` (a pool with its own CA); the Web PKI's roots without.
    pub tls_ca: Option<PathBuf>,
    /// The password [`mine_pool`] logs in with (XMRig's `-p`: `x`, a worker's name, or
    /// `team=NAME` on an adit pool).
    pub pass: String,
    /// The least time one hash takes: [`StratumClient::mine`] waits out the rest, so a miner
    /// meant to use part of a core (the demo's) does; `None` hashes flat out.
    pub pace: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            agent: concat!("adit/", env!("CARGO_PKG_VERSION")).to_owned(),
            tls_ca: None,
            pass: "x".to_owned(),
            pace: None,
        }
    }
}

/// An I/O error as a client error.
fn io(e: std::io::Error) -> Error {
    Error::Client {
        reason: e.to_string(),
    }
}

/// Opens a connection to `url`, with TLS when it says so.
pub async fn connect(url: &PoolUrl, options: &ClientOptions) -> Result<Connection> {
    let attempt = async {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        if !url.tls {
            return Ok(Box::new(tcp) as Connection);
        }
        let connector = tls::connector(options.tls_ca.as_deref(), None)?;
        let name =
            rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| Error::Tls {
                reason: format!("server name {}: {e}", url.host),
            })?;
        let stream = connector.connect(name, tcp).await.map_err(|e| Error::Tls {
            reason: format!("handshake with {url}: {e}"),
        })?;
        Ok(Box::new(stream) as Connection)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| Error::Client {
            reason: format!("connecting to {url} timed out"),
        })?
}

/// A connected, logged-in miner.
pub struct StratumClient {
    /// Read half of the connection.
    reader: ReadHalf<Connection>,
    /// Write half.
    writer: WriteHalf<Connection>,
    /// Splits what the pool sends into bounded lines.
    decoder: LineDecoder,
    /// Read buffer.
    buf: Box<[u8]>,
    /// Session id from the login.
    pub session: String,
    /// The current job (the login's, or the last pushed).
    pub job: Job,
    /// Next request id.
    next_id: i64,
    /// Last nonce tried by [`StratumClient::mine`].
    nonce: u32,
    /// [`ClientOptions::pace`].
    pace: Option<Duration>,
}

thread_local! {
    /// The light-mode hasher [`StratumClient::mine`] uses on this thread. RandomX VMs cannot
    /// move between threads, and a client must (it is used across `.await`), so the VM stays
    /// with the thread that hashes, rekeyed when the job's seed changes.
    static HASHER: std::cell::RefCell<Option<RandomXHasher>> = const { std::cell::RefCell::new(None) };
}

impl std::fmt::Debug for StratumClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StratumClient")
            .field("session", &self.session)
            .field("job", &self.job.job_id)
            .finish()
    }
}

impl StratumClient {
    /// Connects from `source` (any loopback address works on Linux; tests use several to act
    /// as different miners) to `addr`.
    pub async fn connect_from(addr: SocketAddr, source: [u8; 4]) -> Result<TcpStream> {
        let socket = TcpSocket::new_v4().map_err(io)?;
        socket.bind(SocketAddr::from((source, 0))).map_err(io)?;
        socket.connect(addr).await.map_err(io)
    }

    /// Connects to `addr` over plain TCP and logs in as `login`.
    pub async fn login(addr: SocketAddr, login: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await.map_err(io)?;
        Self::login_on(stream, login).await
    }

    /// Connects to `url` and logs in as `login` with `pass`.
    pub async fn login_url(
        url: &PoolUrl,
        login: &str,
        pass: &str,
        options: &ClientOptions,
    ) -> Result<Self> {
        let connection = connect(url, options).await?;
        Self::start(connection, login, pass, options).await
    }

    /// Logs in as `login` on an open connection, with default options.
    pub async fn login_on(stream: impl Io + 'static, login: &str) -> Result<Self> {
        Self::start(Box::new(stream), login, "x", &ClientOptions::default()).await
    }

    /// Logs in on `connection`.
    async fn start(
        connection: Connection,
        login: &str,
        pass: &str,
        options: &ClientOptions,
    ) -> Result<Self> {
        let (reader, writer) = tokio::io::split(connection);
        let mut client = Self {
            reader,
            writer,
            decoder: LineDecoder::new(options.max_line),
            buf: vec![0; 8 * 1024].into_boxed_slice(),
            session: String::new(),
            job: Job {
                blob: String::new(),
                job_id: String::new(),
                target: String::new(),
                algo: String::new(),
                nonce_offset: None,
                height: 0,
                seed_hash: String::new(),
                next_seed_hash: None,
            },
            next_id: 1,
            nonce: 0,
            pace: options.pace,
        };
        let params = LoginParams {
            login: login.to_owned(),
            pass: pass.to_owned(),
            agent: options.agent.clone(),
            algo: vec![ALGO_MONERO.to_owned(), ALGO_OPENSY.to_owned()],
            rigid: None,
        };
        let result: LoginResult = client.request(Call::Login(params)).await?;
        client.session = result.id;
        client.job = result.job;
        Ok(client)
    }

    /// Writes raw bytes (for tests of bad input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).await.map_err(io)
    }

    /// The next line from the pool, bounded; `None` when it closed the connection.
    async fn read_line(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.decoder.next_line()? {
                return Ok(Some(line.to_vec()));
            }
            let n = self.reader.read(&mut self.buf).await.map_err(io)?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.push(&self.buf[..n]);
        }
    }

    /// The next message from the pool as JSON (pushed jobs update [`StratumClient::job`]), or
    /// `None` when it closed the connection. Cancel-safe: no line is lost to a dropped call.
    pub async fn read(&mut self) -> Result<Option<Value>> {
        let Some(line) = self.read_line().await? else {
            return Ok(None);
        };
        let message: Value = serde_json::from_slice(&line).map_err(|e| Error::Client {
            reason: format!("pool sent invalid JSON: {e}"),
        })?;
        if message["method"] == "job" {
            self.job =
                serde_json::from_value(message["params"].clone()).map_err(|e| Error::Client {
                    reason: format!("pool sent an invalid job: {e}"),
                })?;
        }
        Ok(Some(message))
    }

    /// Sends `call` and waits for its response, as raw JSON.
    async fn exchange(&mut self, call: Call) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let line = to_line(&Request {
            id: Id::Number(id),
            call,
        })?;
        self.send_and_wait(&line, id).await
    }

    /// Writes a request line and reads until the response to `id`; jobs pushed meanwhile
    /// update [`StratumClient::job`].
    async fn send_and_wait(&mut self, line: &[u8], id: i64) -> Result<Value> {
        self.send_raw(line).await?;
        loop {
            let message = self.read().await?.ok_or_else(|| Error::Client {
                reason: "pool closed the connection".into(),
            })?;
            if message.get("method").is_none() && message["id"] == id {
                return Ok(message);
            }
        }
    }

    /// Sends `call` and returns its typed result, or the pool's error as [`Error::Refused`].
    async fn request<T: serde::de::DeserializeOwned>(&mut self, call: Call) -> Result<T> {
        let method = call.method();
        let raw = self.exchange(call).await?;
        let not_understood = |e: serde_json::Error| Error::Client {
            reason: format!("pool's answer to {method} is not understood: {e}"),
        };
        let response: Response = serde_json::from_value(raw).map_err(not_understood)?;
        match (response.error, response.result) {
            (Some(error), _) => Err(Error::Refused {
                method,
                code: error.code,
                message: error.message,
            }),
            (None, Some(result)) => serde_json::from_value(result).map_err(not_understood),
            (None, None) => Err(Error::Client {
                reason: format!("pool answered {method} with neither result nor error"),
            }),
        }
    }

    /// Sends any request in the dialect and returns the response as raw JSON (tests check
    /// error answers this way).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        /// A request of any method.
        #[derive(Serialize)]
        struct Raw<'a> {
            /// Request id.
            id: i64,
            /// Always "2.0".
            jsonrpc: &'static str,
            /// Method name.
            method: &'a str,
            /// Parameters.
            params: Value,
        }
        let line = to_line(&Raw {
            id,
            jsonrpc: "2.0",
            method,
            params,
        })?;
        self.send_and_wait(&line, id).await
    }

    /// Submits a share for `job_id`; the pool's refusal is [`Error::Refused`] with its reason.
    pub async fn submit_share(
        &mut self,
        job_id: &str,
        nonce: &str,
        result: &str,
    ) -> Result<StatusResult> {
        let params = self.submit_params(job_id, nonce, result);
        self.request(Call::Submit(params)).await
    }

    /// The `submit` parameters of this session for a share.
    fn submit_params(&self, job_id: &str, nonce: &str, result: &str) -> SubmitParams {
        SubmitParams {
            id: self.session.clone(),
            job_id: job_id.to_owned(),
            nonce: nonce.to_owned(),
            result: result.to_owned(),
            algo: Some(self.job.algo.clone()).filter(|a| !a.is_empty()),
        }
    }

    /// Tells the pool the connection is alive.
    pub async fn keepalive(&mut self) -> Result<StatusResult> {
        let params = SessionParams {
            id: self.session.clone(),
        };
        self.request(Call::Keepalived(params)).await
    }

    /// Submits `nonce` and `result` for the current job; the raw response.
    pub async fn submit(&mut self, nonce: &str, result: &str) -> Result<Value> {
        let job_id = self.job.job_id.clone();
        self.submit_to(&job_id, nonce, result).await
    }

    /// Submits `nonce` and `result` for `job_id`; the raw response.
    pub async fn submit_to(&mut self, job_id: &str, nonce: &str, result: &str) -> Result<Value> {
        let params = self.submit_params(job_id, nonce, result);
        self.exchange(Call::Submit(params)).await
    }

    /// Finds the next nonce meeting the current job's target, a hash per
    /// [`ClientOptions::pace`] at most; returns (nonce, result) in hex.
    pub fn mine(&mut self) -> Result<(String, String)> {
        let bad = |what: &str, e: &dyn std::fmt::Display| Error::Client {
            reason: format!("job {what}: {e}"),
        };
        let seed = hex::decode(&self.job.seed_hash).map_err(|e| bad("seed_hash", &e))?;
        let difficulty = decode_target(&self.job.target)?;
        let mut blob = hex::decode(&self.job.blob).map_err(|e| bad("blob", &e))?;
        let offset = job_nonce_offset(self.job.nonce_offset, &blob)?;
        HASHER.with_borrow_mut(|hasher| {
            loop {
                let started = std::time::Instant::now();
                self.nonce = self.nonce.wrapping_add(1);
                put_nonce(&mut blob, offset, self.nonce);
                let hash = crate::randomx::hash_with(hasher, &seed, &blob)?;
                if let Some(rest) = self.pace.and_then(|p| p.checked_sub(started.elapsed())) {
                    std::thread::sleep(rest);
                }
                if meets_difficulty(&hash, difficulty) {
                    return Ok((nonce_hex(self.nonce), hex::encode(hash)));
                }
            }
        })
    }

    /// The last nonce tried.
    pub fn last_nonce(&self) -> u32 {
        self.nonce
    }

    /// The connection's halves, for callers that drive the protocol themselves (the benchmark
    /// submits pre-built lines without this client's parsing).
    pub fn into_parts(self) -> (BufReader<ReadHalf<Connection>>, WriteHalf<Connection>) {
        (BufReader::new(self.reader), self.writer)
    }

    /// The write half, for tests that write past the protocol.
    pub fn writer(&mut self) -> &mut WriteHalf<Connection> {
        &mut self.writer
    }
}

/// Mines with one light-mode thread until `stop` is cancelled: logs in to `addr` as `login`
/// (retrying until the pool is up, and again whenever the connection ends), finds shares for
/// the current job and submits them. Blocks
/// the calling thread (RandomX VMs are not `Send`), so run it on a thread of its own. Returns
/// the number of accepted shares.
pub fn mine_until(
    addr: SocketAddr,
    login: &str,
    stop: tokio_util::sync::CancellationToken,
) -> Result<u64> {
    let url = PoolUrl {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: false,
    };
    mine_pool(&url, &ClientOptions::default(), login, stop)
}

/// [`mine_until`] on a pool named by its URL (`stratum+tcp://` or `stratum+ssl://`), either
/// chain: the nonce goes where each job says (`nonce_offset`) or, for Monero, after its
/// header's varints.
pub fn mine_pool(
    url: &PoolUrl,
    options: &ClientOptions,
    login: &str,
    stop: tokio_util::sync::CancellationToken,
) -> Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    runtime.block_on(async {
        let mut accepted = 0;
        // As XMRig does: a connection the pool closed (a restart, a ban, a network blip) is
        // followed by a new login, until told to stop.
        while let Some(mut client) = login_until(url, options, login, &stop).await {
            match mine_on(&mut client, &stop, &mut accepted).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the pool connection ended; logging in again");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                    }
                }
            }
        }
        Ok(accepted)
    })
}

/// How long a miner waits before logging in again after its connection ended.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// A logged-in client, retrying every half second until the pool answers; `None` once `stop`
/// is cancelled.
async fn login_until(
    url: &PoolUrl,
    options: &ClientOptions,
    login: &str,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<StratumClient> {
    while !stop.is_cancelled() {
        let logged_in = match connect(url, options).await {
            Ok(connection) => StratumClient::start(connection, login, &options.pass, options).await,
            Err(e) => Err(e),
        };
        match logged_in {
            Ok(client) => return Some(client),
            Err(e) => {
                tracing::debug!(error = %e, %url, "the pool did not take the login; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    None
}

/// Mines on `client` until `stop` (`Ok`) or until the connection fails (the error), counting
/// accepted shares into `accepted`.
async fn mine_on(
    client: &mut StratumClient,
    stop: &tokio_util::sync::CancellationToken,
    accepted: &mut u64,
) -> Result<()> {
    while !stop.is_cancelled() {
        let (nonce, result) = client.mine()?;
        let job_id = client.job.job_id.clone();
        match client.submit_share(&job_id, &nonce, &result).await {
            Ok(_) => *accepted += 1,
            // A stale or low-difficulty share is the pool's verdict, not a failure.
            Err(Error::Refused { .. }) => {}
            // The pool going away at shutdown is the normal end.
            Err(_) if stop.is_cancelled() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pool_urls() {
        let url: PoolUrl = "stratum+ssl://pool.example:443".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.tls),
            ("pool.example", 443, true)
        );
        let url: PoolUrl = "stratum+tcp://127.0.0.1:3333/".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.tls),
            ("127.0.0.1", 3333, false)
        );
        let url: PoolUrl = "[::1]:3333".parse().unwrap();
        assert_eq!((url.host.as_str(), url.tls), ("::1", false));
        assert_eq!(url.to_string(), "stratum+tcp://[::1]:3333");
        for bad in [
            "http://x:1",
            "stratum+tcp://x",
            "stratum+tcp://:1",
            "x:port",
        ] {
            assert!(bad.parse::<PoolUrl>().is_err(), "{bad}");
        }
    }
}
