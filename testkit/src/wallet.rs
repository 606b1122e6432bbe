//! A private `monero-wallet-rpc` against a regtest [`Monerod`], with one fresh wallet open, on a
//! free loopback port; killed on drop, and restartable (the wallet file stays).
//!
//! A missing `monero-wallet-rpc` is a test failure with a clear message, never a silent skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::monerod::{Monerod, json_rpc};

/// How long the wallet RPC may take to answer after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running monero-wallet-rpc with wallet `w` open.
pub struct WalletRpc {
    /// The process, while it runs.
    child: Option<Child>,
    /// Its RPC port on 127.0.0.1.
    pub port: u16,
    /// The node's RPC port.
    node_port: u16,
    /// The wallet's primary address.
    pub address: String,
    /// Wallet files and logs, removed on drop.
    dir: tempfile::TempDir,
}

/// Path of monero-wallet-rpc: `$ADIT_MONERO_WALLET_RPC`, else on PATH, else `/usr/bin`.
pub fn wallet_rpc_binary() -> PathBuf {
    crate::program(
        "ADIT_MONERO_WALLET_RPC",
        "monero-wallet-rpc",
        "/usr/bin",
        "apt-get install monero",
    )
}

impl WalletRpc {
    /// Starts a wallet RPC on `node` and creates a new wallet in it.
    pub fn start(node: &Monerod) -> Self {
        let mut wallet = Self {
            child: None,
            port: free_port(),
            node_port: node.rpc_port,
            address: String::new(),
            dir: tempfile::tempdir().expect("temp dir for the wallet"),
        };
        wallet.launch();
        wallet.call(
            "create_wallet",
            serde_json::json!({"filename": "w", "password": "", "language": "English"}),
        );
        wallet.address =
            wallet.call("get_address", serde_json::json!({"account_index": 0}))["address"]
                .as_str()
                .expect("an address")
                .to_string();
        wallet
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("stdout.log")).expect("wallet log");
        let child = Command::new(wallet_rpc_binary())
            .args(["--daemon-address"])
            .arg(format!("127.0.0.1:{}", self.node_port))
            .args([
                "--trusted-daemon",
                "--disable-rpc-login",
                "--non-interactive",
            ])
            .args(["--rpc-bind-ip", "127.0.0.1", "--rpc-bind-port"])
            .arg(self.port.to_string())
            .arg("--wallet-dir")
            .arg(self.dir.path())
            .arg("--log-file")
            .arg(self.dir.path().join("wallet.log"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("wallet log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run monero-wallet-rpc: {e} (apt-get install monero)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while json_rpc(self.port, "get_version", serde_json::json!({})).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "monero-wallet-rpc exited with {status}:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "monero-wallet-rpc did not answer within {STARTUP_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the process (SIGKILL) and starts it again with the wallet open.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
        self.call(
            "open_wallet",
            serde_json::json!({"filename": "w", "password": ""}),
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Calls JSON-RPC `method`; panics with the error.
    pub fn call(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        json_rpc(self.port, method, params)
            .unwrap_or_else(|e| panic!("wallet {e}\n{}", self.log_tail()))
    }

    /// The last lines it printed.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for WalletRpc {
    fn drop(&mut self) {
        self.kill();
    }
}
