//! A private Mosquitto MQTT broker on a free loopback port with a generated config in a
//! temporary dir, for tests of the MQTT adapter: it accepts connections before
//! [`Mosquitto::start`] returns, can be stopped and restarted on the same port, and is killed on
//! drop.
//!
//! It never uses port 1883, where a system broker may already run. A missing `mosquitto` is a
//! test failure with a clear message, never a silent skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;

/// How long the broker may take to accept connections after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// MQTT's well-known port, which a system broker on this machine may hold.
const SYSTEM_PORT: u16 = 1883;

/// A running private Mosquitto broker; killed on drop.
pub struct Mosquitto {
    /// The process, while it runs.
    child: Option<Child>,
    /// Its listener port on 127.0.0.1, kept across restarts.
    port: u16,
    /// The generated config and the broker's log, removed on drop.
    dir: tempfile::TempDir,
}

/// Path of the mosquitto binary: `$ADIT_MOSQUITTO`, else `mosquitto` on PATH, else
/// `/usr/sbin/mosquitto`. Panics with install instructions when there is none.
pub fn mosquitto_binary() -> PathBuf {
    crate::program(
        "ADIT_MOSQUITTO",
        "mosquitto",
        "/usr/sbin",
        "apt-get install mosquitto, or run scripts/setup.sh",
    )
}

impl Mosquitto {
    /// Starts a broker listening on 127.0.0.1 only, on a free port, with anonymous access and no
    /// persistence, and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for mosquitto");
        let mut port = free_port();
        while port == SYSTEM_PORT {
            port = free_port();
        }
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
        );
        std::fs::write(dir.path().join("mosquitto.conf"), config).expect("write mosquitto.conf");
        let mut broker = Self {
            child: None,
            port,
            dir,
        };
        broker.launch();
        broker
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The last lines the broker logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Spawns the broker (appending to its log) and waits until its port accepts connections;
    /// panics with the log if it exits or is slow.
    fn launch(&mut self) {
        let binary = mosquitto_binary();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .expect("mosquitto log");
        let errors = log.try_clone().expect("mosquitto log");
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {}: {err} (install mosquitto: apt-get install mosquitto, or run scripts/setup.sh)",
                    binary.display()
                )
            });
        crate::wait_listening(&mut child, "mosquitto", self.port, STARTUP_TIMEOUT, || {
            self.log_tail()
        });
        self.child = Some(child);
    }

    /// Kills the broker (SIGKILL) and waits for it to exit; clients see their connection drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already gone is as good as stopped.
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Kills the broker and starts it again on the same port with the same config. It keeps no
    /// state, so clients must reconnect and subscribe again.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}
