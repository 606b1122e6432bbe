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
//! utility's OpenADR 2.0b VTN (openleadr's).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod ballista;
mod feed;
pub mod jwt;
mod monerod;
pub mod mosquitto;
mod nats_cluster;
mod nats_operator;
pub mod snmpd;
pub mod sql_grammar;
pub mod tail;
mod vtn;
mod wallet;

pub use feed::Feed;
pub use monerod::{Monerod, json_rpc, monerod_binary};
pub use mosquitto::Mosquitto;
pub use nats_cluster::NatsCluster;
pub use nats_operator::NatsOperator;
pub use snmpd::Snmpd;
pub use vtn::Vtn;
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

/// A free TCP port on 127.0.0.1, never one this process was given before: the kernel may
/// hand a just-released port out again, and a test that asks for two ports (the demo's HTTP
/// and Flight SQL ports) must not get the same one twice.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Cases per property of a `hostile_*` boundary test: `ADIT_FUZZ_CASES` for a long run
/// (`scripts/fuzz.sh`), else `ci`, CI's share.
pub fn fuzz_cases(ci: u32) -> u32 {
    std::env::var("ADIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

/// Path of the nats-server binary: `$ADIT_NATS_SERVER`, else `nats-server` on PATH, else
/// `/usr/sbin/nats-server`.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("ADIT_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.exists()).expect(
        "nats-server not found: install it (apt-get install nats-server) or set ADIT_NATS_SERVER",
    )
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
        let child = Command::new(nats_server_binary())
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
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "nats-server exited with {status} before listening on port {} (port taken?)",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
