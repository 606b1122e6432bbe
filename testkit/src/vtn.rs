//! A real OpenADR 2.0b VTN for tests: openleadr's server (PyPI `openleadr`, installed by
//! `scripts/setup.sh`) on a free loopback port, driven through a small JSON control API
//! (`openadr_vtn.py`): add, modify and cancel events, silence the VTN, and read back what the
//! VEN sent it. Killed on drop. A missing openleadr is a test failure with a clear message.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::free_port;

/// The harness script, written next to the VTN's log.
const SCRIPT: &str = include_str!("openadr_vtn.py");
/// How long the VTN may take to start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running VTN; killed on drop.
pub struct Vtn {
    child: Child,
    port: u16,
    tls: bool,
    control: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Vtn {
    /// Starts a VTN over plain HTTP; panics with install instructions when openleadr is
    /// missing.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a VTN over HTTPS with its certificate and key (PEM files), requiring a client
    /// certificate signed by `ca`.
    pub async fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        Self::start_with(Some([cert, key, ca])).await
    }

    async fn start_with(tls: Option<[&Path; 3]>) -> Self {
        let has_openleadr = Command::new("python3")
            .args(["-c", "import openleadr"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            has_openleadr,
            "python3 with openleadr not found: run scripts/setup.sh (pip install openleadr)"
        );
        let dir = tempfile::tempdir().expect("a temporary directory for the VTN");
        let script = dir.path().join("openadr_vtn.py");
        std::fs::write(&script, SCRIPT).expect("write the VTN script");
        let log = std::fs::File::create(dir.path().join("vtn.log")).expect("the VTN's log");
        let (port, control_port) = (free_port(), free_port());
        let child = Command::new("python3")
            .arg(&script)
            .args([port.to_string(), control_port.to_string()])
            .args(tls.iter().flatten())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start python3 for the VTN");
        let vtn = Self {
            child,
            port,
            tls: tls.is_some(),
            control: format!("http://127.0.0.1:{control_port}"),
            dir,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while vtn
            .http
            .get(format!("{}/log", vtn.control))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the VTN did not start; its log:\n{}",
                vtn.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        vtn
    }

    /// The VTN's base URL (the services are below it).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/OpenADR2/Simple/2.0b", self.port)
    }

    /// What the VTN printed.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vtn.log")).unwrap_or_default()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the VTN's control API: {e}"));
        assert!(
            response.status().is_success(),
            "POST {path}: {}; log:\n{}",
            response.status(),
            self.output()
        );
        response.json().await.expect("a JSON answer")
    }

    /// Adds an event for a VEN: `{"event_id", "ven_id", "value", "start_in_s", "duration_s",
    /// "signal", "type", "ramp_up_s"}` (signal `LOAD_DISPATCH`/`setpoint` in kW by default).
    pub async fn add_event(&self, event: Value) {
        self.post("/events", event).await;
    }

    /// Modifies an event (new value and times); returns its modification number.
    pub async fn modify_event(&self, event_id: &str, change: Value) -> u64 {
        self.post(&format!("/events/{event_id}/modify"), change)
            .await["modification_number"]
            .as_u64()
            .expect("a modification number")
    }

    /// Cancels an event; returns its modification number.
    pub async fn cancel_event(&self, event_id: &str) -> u64 {
        self.post(&format!("/events/{event_id}/cancel"), Value::Null)
            .await["modification_number"]
            .as_u64()
            .expect("a modification number")
    }

    /// Makes the VTN hang on every request (`true`) or answer again.
    pub async fn silence(&self, on: bool) {
        self.post("/silence", serde_json::json!({ "on": on })).await;
    }

    /// What the VEN told the VTN: `messages` (types), `registrations`, `opts`
    /// (`event_id`, `modification_number`, `opt_type`), `report_offers`, `reports` (`value`).
    pub async fn seen(&self) -> Value {
        self.http
            .get(format!("{}/log", self.control))
            .send()
            .await
            .expect("the VTN's log")
            .json()
            .await
            .expect("JSON")
    }
}

impl Drop for Vtn {
    fn drop(&mut self) {
        // Killing a child that already exited fails harmlessly; wait reaps it either way.
        if self.child.kill().is_ok() {
            self.child.wait().ok();
        }
    }
}
