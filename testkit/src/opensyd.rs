//! A real OpenSY node for the opt-in tests of issue 58: `$ADIT_OPENSYD -regtest
//! -randomxforkheight=1` on free loopback ports with a temporary data dir. The node is built by
//! hand from its public source (`opensyria/OpenSyria`); the project never builds or ships it,
//! so CI cannot have one. Where `ADIT_OPENSYD` is unset, [`Opensyd::from_env`] says loudly that
//! the test did not run and gives `None`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::free_port;
use crate::monerod::post_json_rpc;

/// How long the node may take to answer its first call.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `opensyd -regtest`, stopped on drop.
#[derive(Debug)]
pub struct Opensyd {
    child: Child,
    /// Its RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// Data dir and log, removed on drop.
    dir: tempfile::TempDir,
}

impl Opensyd {
    /// The node at `$ADIT_OPENSYD`, started and answering; `None`, said on stderr as a test
    /// that did not run, when the variable is unset.
    pub fn from_env(test: &str) -> Option<Self> {
        let Some(binary) = std::env::var_os("ADIT_OPENSYD") else {
            eprintln!(
                "NOT RUN: {test} needs a real OpenSY node: build opensyd by hand from the \
                 opensyria/OpenSyria source and set ADIT_OPENSYD=/path/to/opensyd"
            );
            return None;
        };
        Some(Self::start(Path::new(&binary)))
    }

    fn start(binary: &Path) -> Self {
        let dir = tempfile::tempdir().expect("a data dir for opensyd");
        let rpc_port = free_port();
        let p2p_port = free_port();
        let log = std::fs::File::create(dir.path().join("stdout.log")).expect("a log file");
        let child = Command::new(binary)
            .arg("-regtest")
            .arg("-randomxforkheight=1")
            .arg(format!("-datadir={}", dir.path().display()))
            .arg(format!("-rpcport={rpc_port}"))
            .arg(format!("-port={p2p_port}"))
            .args([
                "-listen=0",
                "-server",
                "-fallbackfee=0.0001",
                "-printtoconsole",
            ])
            .stdout(Stdio::from(log.try_clone().expect("the log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("ADIT_OPENSYD={} does not run: {e}", binary.display()));
        let mut node = Self {
            child,
            rpc_port,
            dir,
        };
        node.wait_ready();
        node
    }

    /// `http://127.0.0.1:<rpc_port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// The node's cookie file, for `[pool.rpc] cookie`.
    pub fn cookie(&self) -> PathBuf {
        self.dir.path().join("regtest").join(".cookie")
    }

    /// The last lines the node printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// One RPC call (at `path`: `/` for the node, `/wallet/<name>` for a wallet); the result,
    /// or the node's error as text.
    pub fn rpc(
        &self,
        path: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let cookie = std::fs::read_to_string(self.cookie()).map_err(|e| e.to_string())?;
        let auth = base64::engine::general_purpose::STANDARD.encode(cookie.trim());
        post_json_rpc(
            self.rpc_port,
            path,
            &format!("Authorization: Basic {auth}\r\n"),
            method,
            params,
        )
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("opensyd exited with {status}:\n{}", self.log_tail());
            }
            if self
                .rpc("/", "getblockchaininfo", serde_json::json!([]))
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "opensyd did not answer within {STARTUP_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Opensyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
