//! Test harness shared by adit's crates: a private `nats-server` with JetStream on a free
//! loopback port and a temporary store, which a test can stop and restart.
//!
//! A missing `nats-server` is a test failure with a clear message, never a silent skip.
//!
//! [`Monerod`] does the same for a regtest `monerod`, and [`WalletRpc`] for a
//! `monero-wallet-rpc` against it, and [`Mosquitto`] for a private MQTT broker. [`ballista`]
//! starts a Ballista scheduler and executor. [`NatsCluster`] runs several clustered
//! nats-servers whose nodes a test can kill and restart, and [`NatsOperator`] one in operator mode
//! whose clients prove themselves with `.creds` files. [`Feed`] serves a utility's feed
//! whose answer a test changes. [`Snmpd`] is a Net-SNMP agent standing in for a rack PDU, and [`Vtn`] a
//! utility's OpenADR 2.0b VTN (openleadr's). [`Opensyd`] starts a real OpenSY node for the opt-in
//! tests, only where one was built by hand and named by `ADIT_OPENSYD`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod ballista;
mod feed;
pub mod jsonrpc;
pub mod jwt;
mod monerod;
pub mod mosquitto;
mod nats_cluster;
mod nats_operator;
mod opensyd;
mod ports;
pub mod snmpd;
pub mod sql_grammar;
pub mod tail;
mod vtn;
mod vtn3;
mod wallet;

pub use feed::Feed;
pub use monerod::{Monerod, json_rpc, monerod_binary};
pub use mosquitto::Mosquitto;
pub use nats_cluster::NatsCluster;
pub use nats_operator::NatsOperator;
pub use opensyd::Opensyd;
pub use ports::free_port;
pub use snmpd::Snmpd;
pub use vtn::Vtn;
pub use vtn3::{VEN_CLIENT_ID, VEN_CLIENT_SECRET, Vtn3};
pub use wallet::{WalletRpc, wallet_rpc_binary};

/// A running private nats-server; killed on drop.
pub struct NatsServer {
    /// The process, while it runs.
    child: Option<Child>,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Its store, kept across restarts and removed on drop.
    store: tempfile::TempDir,
}

/// Cases per property of a `hostile_*` boundary test: `ADIT_FUZZ_CASES` for a long run
/// (`scripts/fuzz.sh`), else `ci`, CI's share.
pub fn fuzz_cases(ci: u32) -> u32 {
    std::env::var("ADIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

/// `text` cut to its first `max` characters (its length in bytes said after), for a hostile
/// input in a failure message.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}… ({} bytes)", text.len())
}

/// A store over an empty table root of its own, named `<prefix>…` under `parent`: a test
/// binary's `env!("CARGO_TARGET_TMPDIR")`, since the root is kept (a fixture in a static is
/// never dropped) and belongs in the target, not the system's temp.
pub fn empty_tables(parent: &str, prefix: &str) -> adit_sinks::TableStore {
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .expect("a table root")
        .keep();
    adit_sinks::TableStore::new(root.to_str().expect("a UTF-8 path"), Default::default())
        .expect("a table store")
}

/// Path of the nats-server binary: `$ADIT_NATS_SERVER`, else `nats-server` on PATH, else
/// `/usr/sbin/nats-server`.
pub fn nats_server_binary() -> PathBuf {
    program(
        "ADIT_NATS_SERVER",
        "nats-server",
        "/usr/sbin",
        "apt-get install nats-server",
    )
}

/// Path of a program a harness runs: `$<var>`, else `name` on PATH, else `name` in
/// `fallback_dir`. Panics saying how to `install` it when there is none.
fn program(var: &str, name: &str, fallback_dir: &str, install: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain([fallback_dir])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found: install it ({install}) or set {var} to its path")
        })
}

/// Waits until `child`, running `what`, listens on `port` of 127.0.0.1. Kills it and panics
/// with `log()` (what it wrote) if it is not listening within `timeout`, and panics with the
/// log if it exits first.
fn wait_listening(
    child: &mut Child,
    what: &str,
    port: u16,
    timeout: Duration,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening on port {port} (port taken?):\n{}",
                log()
            );
        }
        if Instant::now() >= deadline {
            // Already gone is as good as killed.
            child.kill().ok();
            child.wait().ok();
            panic!(
                "{what} did not listen on port {port} within {timeout:?}:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl NatsServer {
    /// Starts a server on a free port with a fresh store and waits until it accepts clients.
    pub fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temp store dir"),
        };
        server.launch();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let mut child = Command::new(nats_server_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        wait_listening(
            &mut child,
            "nats-server",
            self.port,
            Duration::from_secs(20),
            || "(its output is not kept)".to_string(),
        );
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL) and waits for it to exit; the store is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// A connected JetStream context.
    /// Retries for up to 20 s: a server that has just bound its port may not take clients yet,
    /// and a busy machine makes that window long.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match async_nats::connect(self.url()).await {
                Ok(client) => return async_nats::jetstream::new(client),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("test nats at {} not ready yet: {e}", self.url());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("connect to test nats at {}: {e}", self.url()),
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
