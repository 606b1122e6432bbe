//! A private `monerod --regtest --offline` on free loopback ports with a temporary data dir, for
//! tests that need a real Monero node: its RPC answers before [`Monerod::start`] returns, it can
//! be killed and restarted on the same ports (a node that goes away and comes back), and it is
//! killed on drop.
//!
//! A missing `monerod` is a test failure with a clear message, never a silent skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long monerod may take to answer RPC after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// The most blocks one `generateblocks` call asks for. monerod answers only once all of them
/// are mined, and a loaded machine mines a regtest block in up to about a second (on CI's
/// machine, with five tests beside it, 200 in one call outran the 120-s read timeout of
/// [`json_rpc`]); a long run is asked for in chunks that each answer well inside it.
const GENERATE_CHUNK: u64 = 20;

/// A running private regtest monerod; killed on drop.
pub struct Monerod {
    /// The process.
    child: Child,
    /// Its JSON-RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// Its (unused, offline) P2P port on 127.0.0.1, taken so it cannot clash with another node.
    pub p2p_port: u16,
    /// The fixed difficulty of every block.
    pub difficulty: u64,
    /// Data dir and logs, removed on drop.
    dir: tempfile::TempDir,
}

/// Path of the monerod binary: `$ADIT_MONEROD`, else `monerod` on PATH, else `/usr/bin/monerod`.
/// Panics with install instructions when there is none.
pub fn monerod_binary() -> PathBuf {
    crate::program(
        "ADIT_MONEROD",
        "monerod",
        "/usr/bin",
        "apt-get install monero",
    )
}

impl Monerod {
    /// Starts `monerod --regtest --offline --fixed-difficulty 1` (any hash is a block) and waits
    /// until its RPC answers `get_info`.
    pub fn start() -> Self {
        Self::start_with_difficulty(1)
    }

    /// Starts a regtest monerod whose every block has `difficulty`, and waits until its RPC
    /// answers `get_info`.
    pub fn start_with_difficulty(difficulty: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for monerod");
        let rpc_port = free_port();
        let mut p2p_port = free_port();
        while p2p_port == rpc_port {
            p2p_port = free_port();
        }
        let child = spawn(dir.path(), rpc_port, p2p_port, difficulty);
        let mut node = Self {
            child,
            rpc_port,
            p2p_port,
            difficulty,
            dir,
        };
        node.wait_ready();
        node
    }

    /// SIGKILLs the node (its ports close at once), as a crashed or unplugged node looks.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again on the same ports and chain after [`Monerod::kill`], and waits
    /// until its RPC answers.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(
            self.dir.path(),
            self.rpc_port,
            self.p2p_port,
            self.difficulty,
        );
        self.wait_ready();
    }

    /// `http://127.0.0.1:<rpc_port>`, the base URL of its RPC.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// The last lines monerod printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The data dir (holds the chain and the logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Polls `get_info` until it reports OK; panics with the log if monerod exits or is slow.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "monerod exited with {status} before its RPC answered on port {}:\n{}",
                    self.rpc_port,
                    self.log_tail()
                );
            }
            if get_info_ok(self.rpc_port) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "monerod did not answer RPC on port {} within {STARTUP_TIMEOUT:?}:\n{}",
                    self.rpc_port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Spawns `monerod --regtest --offline` on `rpc_port` and `p2p_port` with its chain and logs in
/// `dir`; panics with install instructions when it cannot run.
fn spawn(dir: &Path, rpc_port: u16, p2p_port: u16, difficulty: u64) -> Child {
    let binary = monerod_binary();
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stdout.log"))
        .expect("monerod log");
    let errors = output.try_clone().expect("monerod log");
    Command::new(&binary)
        .args(["--regtest", "--offline", "--fixed-difficulty"])
        .arg(difficulty.to_string())
        .args([
            "--non-interactive",
            "--no-zmq",
            "--no-igd",
            "--rpc-bind-ip",
            "127.0.0.1",
            "--rpc-bind-port",
            &rpc_port.to_string(),
            "--p2p-bind-ip",
            "127.0.0.1",
            "--p2p-bind-port",
            &p2p_port.to_string(),
            "--log-level",
            "0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg("--log-file")
        .arg(dir.join("monerod.log"))
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {}: {err} (install monerod: apt-get install monero)",
                binary.display()
            )
        })
}

/// True when a `get_info` JSON-RPC call on `port` answers with status OK.
fn get_info_ok(port: u16) -> bool {
    json_rpc(port, "get_info", serde_json::json!({}))
        .is_ok_and(|r| r.get("status").and_then(|s| s.as_str()) == Some("OK"))
}

/// Calls JSON-RPC `method` on the monerod or monero-wallet-rpc listening on `port` (a bare
/// HTTP/1.0 request, so the harness needs no HTTP client): its `result`, or the error text.
pub fn json_rpc(
    port: u16,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    post_json_rpc(port, "/json_rpc", "", method, params)
}

/// Posts a JSON-RPC call of `method` to `path` on loopback `port`, with `headers` (each line
/// ending in CRLF) added to the request: its `result`, or the error text. A `null` error is
/// none (Bitcoin Core writes it so).
pub(crate) fn post_json_rpc(
    port: u16,
    path: &str,
    headers: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": "0", "method": method, "params": params})
        .to_string();
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send {method}: {e}"))?;
    let json = read_http_body(&mut stream).map_err(|e| format!("read {method}: {e}"))?;
    let json = json.as_str();
    let mut reply: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("{method}: {e}: {json}"))?;
    match reply.get("error") {
        Some(error) if !error.is_null() => Err(format!("{method}: {error}")),
        _ => Ok(reply["result"].take()),
    }
}

/// Reads one HTTP response's body by its `Content-Length` (the servers keep the connection
/// open, so reading to the end would wait for the timeout).
pub(crate) fn read_http_body(stream: &mut TcpStream) -> Result<String, String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if let Some(length) = length
            && raw.len() >= end + 4 + length
        {
            return Ok(String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned());
        }
    }
    // Closed by the server: the body is whatever follows the headers.
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .ok_or_else(|| format!("not an HTTP response: {text}"))
}

impl Monerod {
    /// Calls JSON-RPC `method`; panics with the error.
    pub fn call(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        json_rpc(self.rpc_port, method, params)
            .unwrap_or_else(|e| panic!("monerod {e}\n{}", self.log_tail()))
    }

    /// Mines `blocks` blocks paying `address` (regtest's `generateblocks`), at most
    /// [`GENERATE_CHUNK`] to a call.
    pub fn generate(&self, blocks: u64, address: &str) {
        let mut left = blocks;
        while left > 0 {
            let chunk = left.min(GENERATE_CHUNK);
            self.call(
                "generateblocks",
                serde_json::json!({"amount_of_blocks": chunk, "wallet_address": address}),
            );
            left -= chunk;
        }
    }
}

impl Drop for Monerod {
    fn drop(&mut self) {
        self.kill();
    }
}
