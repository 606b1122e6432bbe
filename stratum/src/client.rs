//! A Stratum client in XMRig's dialect: log in, follow jobs, mine with RandomX, submit.
//!
//! Used by the tests and benchmarks as a real miner, and by the cluster (coopmine) as its
//! upstream connection. Hashing is light mode on the calling thread: callers that mine for
//! long should do so from `spawn_blocking`.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::{Error, Result};
use crate::randomx::RandomXHasher;
use crate::target::{decode_target, meets_difficulty};

/// Offset of the 4-byte nonce in a Monero hashing blob.
const NONCE_OFFSET: usize = 39;

/// A connected, logged-in miner.
pub struct StratumClient {
    /// Buffered read half.
    reader: BufReader<OwnedReadHalf>,
    /// Write half.
    writer: OwnedWriteHalf,
    /// Session id from the login.
    pub session: String,
    /// The current job (`params` of the last job pushed or returned).
    pub job: Value,
    /// Next request id.
    next_id: u64,
    /// Last nonce tried.
    nonce: u32,
    /// Hasher for the current seed.
    hasher: Option<RandomXHasher>,
}

fn io(e: std::io::Error) -> Error {
    Error::Client {
        reason: e.to_string(),
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

    /// Connects to `addr` and logs in as `login`.
    pub async fn login(addr: SocketAddr, login: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await.map_err(io)?;
        Self::login_on(stream, login).await
    }

    /// Logs in as `login` on an open connection.
    pub async fn login_on(stream: TcpStream, login: &str) -> Result<Self> {
        let (r, w) = stream.into_split();
        let mut client = Self {
            reader: BufReader::new(r),
            writer: w,
            session: String::new(),
            job: Value::Null,
            next_id: 1,
            nonce: 0,
            hasher: None,
        };
        let reply = client
            .call(
                "login",
                json!({"login": login, "pass": "x", "agent": "adit-client/1.0", "algo": ["rx/0"]}),
            )
            .await?;
        if !reply["error"].is_null() {
            return Err(Error::Client {
                reason: format!("login refused: {}", reply["error"]),
            });
        }
        client.session = reply["result"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        client.job = reply["result"]["job"].clone();
        Ok(client)
    }

    /// Writes raw bytes (for tests of bad input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).await.map_err(io)
    }

    /// The next message from the pool, or `None` when it closed the connection.
    pub async fn read(&mut self) -> Result<Option<Value>> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).await {
            Ok(0) | Err(_) => Ok(None),
            Ok(_) => serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| Error::Client {
                    reason: format!("pool sent invalid JSON: {e}"),
                }),
        }
    }

    /// Sends a request and returns its response; job notifications that arrive meanwhile
    /// update [`StratumClient::job`].
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let line = format!(
            "{}\n",
            json!({"id": id, "jsonrpc": "2.0", "method": method, "params": params})
        );
        self.send_raw(line.as_bytes()).await?;
        loop {
            let msg = self.read().await?.ok_or_else(|| Error::Client {
                reason: "pool closed the connection".into(),
            })?;
            if msg["method"] == "job" {
                self.job = msg["params"].clone();
                continue;
            }
            if msg["id"] == id {
                return Ok(msg);
            }
        }
    }

    /// Finds the next nonce meeting the current job's target; returns (nonce, result) in hex.
    pub fn mine(&mut self) -> Result<(String, String)> {
        let field = |name: &str| self.job[name].as_str().unwrap_or_default().to_string();
        let seed = hex::decode(field("seed_hash")).map_err(|e| Error::Client {
            reason: format!("seed_hash: {e}"),
        })?;
        let difficulty = decode_target(&field("target"))?;
        let mut blob = hex::decode(field("blob")).map_err(|e| Error::Client {
            reason: format!("blob: {e}"),
        })?;
        if blob.len() < NONCE_OFFSET + 4 {
            return Err(Error::Client {
                reason: "job blob too short".into(),
            });
        }
        if self
            .hasher
            .as_ref()
            .is_none_or(|h| h.seed() != seed.as_slice())
        {
            self.hasher = Some(RandomXHasher::light(&seed)?);
        }
        let Some(hasher) = self.hasher.as_ref() else {
            return Err(Error::Client {
                reason: "no hasher".into(),
            });
        };
        loop {
            self.nonce = self.nonce.wrapping_add(1);
            blob[NONCE_OFFSET..NONCE_OFFSET + 4].copy_from_slice(&self.nonce.to_le_bytes());
            let hash = hasher.hash(&blob)?;
            if meets_difficulty(&hash, difficulty) {
                return Ok((hex::encode(self.nonce.to_le_bytes()), hex::encode(hash)));
            }
        }
    }

    /// Submits `nonce` and `result` for the current job.
    pub async fn submit(&mut self, nonce: &str, result: &str) -> Result<Value> {
        let job_id = self.job["job_id"].as_str().unwrap_or_default().to_string();
        self.submit_to(&job_id, nonce, result).await
    }

    /// Submits `nonce` and `result` for `job_id`.
    pub async fn submit_to(&mut self, job_id: &str, nonce: &str, result: &str) -> Result<Value> {
        let session = self.session.clone();
        self.call(
            "submit",
            json!({"id": session, "job_id": job_id, "nonce": nonce, "result": result, "algo": "rx/0"}),
        )
        .await
    }

    /// The last nonce tried.
    pub fn last_nonce(&self) -> u32 {
        self.nonce
    }

    /// The connection's halves, for callers that drive the protocol themselves (the benchmark
    /// submits pre-built lines without this client's parsing).
    pub fn into_parts(self) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.reader, self.writer)
    }

    /// The write half, for tests that write past the protocol.
    pub fn writer(&mut self) -> &mut OwnedWriteHalf {
        &mut self.writer
    }
}

/// Mines with one light-mode thread until `stop` is cancelled: logs in to `addr` as `login`
/// (retrying until the pool is up), finds shares for the current job and submits them. Blocks
/// the calling thread (RandomX VMs are not `Send`), so run it on a thread of its own. Returns
/// the number of accepted shares.
pub fn mine_until(
    addr: SocketAddr,
    login: &str,
    stop: tokio_util::sync::CancellationToken,
) -> Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    runtime.block_on(async {
        let mut client = loop {
            if stop.is_cancelled() {
                return Ok(0);
            }
            match StratumClient::login(addr, login).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        };
        let mut accepted = 0;
        while !stop.is_cancelled() {
            let (nonce, result) = client.mine()?;
            match client.submit(&nonce, &result).await {
                Ok(reply) if reply["result"]["status"] == "OK" => accepted += 1,
                Ok(_) => {}
                // The pool going away at shutdown is the normal end.
                Err(_) if stop.is_cancelled() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(accepted)
    })
}
