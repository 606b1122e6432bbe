//! A private `monerod --regtest --offline` on free loopback ports with a temporary data dir, for
//! tests that need a real Monero node: its RPC answers before [`Monerod::start`] returns, and it
//! is killed on drop.
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
    if let Ok(p) = std::env::var("ADIT_MONEROD") {
        return PathBuf::from(p);
    }
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("monerod"))
        .chain([PathBuf::from("/usr/bin/monerod")])
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.exists()).expect(
        "monerod not found: install it (apt-get install monero) or set ADIT_MONEROD to its path",
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
        let binary = monerod_binary();
        let dir = tempfile::tempdir().expect("temp dir for monerod");
        let rpc_port = free_port();
        let mut p2p_port = free_port();
        while p2p_port == rpc_port {
            p2p_port = free_port();
        }
        let output = std::fs::File::create(dir.path().join("stdout.log")).expect("monerod log");
        let errors = output.try_clone().expect("monerod log");
        let child = Command::new(&binary)
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
            .arg(dir.path().join("data"))
            .arg("--log-file")
            .arg(dir.path().join("monerod.log"))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {}: {err} (install monerod: apt-get install monero)",
                    binary.display()
                )
            });
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

/// True when a `get_info` JSON-RPC call on `port` answers with status OK (a bare HTTP/1.0
/// request, so the harness needs no HTTP client).
fn get_info_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let body = r#"{"jsonrpc":"2.0","id":"0","method":"get_info"}"#;
    let request = format!(
        "POST /json_rpc HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.") && response.contains(r#""status": "OK""#)
}

impl Drop for Monerod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
