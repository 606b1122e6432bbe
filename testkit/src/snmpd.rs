//! A private Net-SNMP agent (`snmpd`) standing in for a rack PDU, for tests of outlet control:
//! it listens on a free loopback UDP port with a read community (`public`) and a write
//! community (`private`), and answers the outlet-control column of APC's PowerNet MIB
//! through a `pass` script that keeps each outlet's state in a file and logs every SET with
//! its time. Killed on drop. A missing `snmpd` is a test failure with a clear message, never
//! a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long the agent may take to start answering.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// The column the agent answers (APC PowerNet-MIB `sPDUOutletCtl`).
pub const OUTLET_CONTROL: &str = "1.3.6.1.4.1.318.1.1.4.4.2.1.3";
/// The community allowed to write.
pub const WRITE_COMMUNITY: &str = "private";

/// A running private snmpd; killed on drop.
pub struct Snmpd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// One SET the agent took: when (seconds since the epoch), the outlet, the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// The outlet's index.
    pub outlet: u32,
    /// The value written.
    pub value: i64,
}

/// Path of the snmpd binary: `$ADIT_SNMPD`, else `snmpd` on PATH, else `/usr/sbin/snmpd`.
/// Panics with install instructions when there is none.
pub fn snmpd_binary() -> PathBuf {
    crate::program(
        "ADIT_SNMPD",
        "snmpd",
        "/usr/sbin",
        "apt-get install snmpd, or run scripts/setup.sh",
    )
}

/// The `pass` script: GET and SET of `<column>.<n>`, each outlet's state in `<dir>/state/<n>`,
/// every SET appended to `<dir>/state/log` as `<epoch seconds> <n> <value>`.
fn pass_script(dir: &Path) -> String {
    format!(
        r#"#!/bin/sh
BASE=.{OUTLET_CONTROL}
STATE="{state}"
mkdir -p "$STATE"
n="${{2#$BASE.}}"
case "$n" in *[!0-9]*|"") [ "$1" = -s ] && echo not-writable; exit 0;; esac
case "$1" in
  -g) echo "$2"; echo integer; cat "$STATE/$n" 2>/dev/null || echo 1 ;;
  -s) [ "$3" = integer ] || {{ echo wrong-type; exit 0; }}
      echo "$4" > "$STATE/$n"; echo "$(date +%s.%N) $n $4" >> "$STATE/log" ;;
esac
"#,
        state = dir.join("state").display()
    )
}

impl Snmpd {
    /// Starts the agent on 127.0.0.1 and a free UDP port, and waits until it says it runs.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for snmpd");
        let script = dir.path().join("pass.sh");
        std::fs::write(&script, pass_script(dir.path())).expect("pass script");
        let port = free_port();
        let conf = dir.path().join("snmpd.conf");
        std::fs::write(
            &conf,
            format!(
                "agentAddress udp:127.0.0.1:{port}\nrocommunity public 127.0.0.1\n\
                 rwcommunity {WRITE_COMMUNITY} 127.0.0.1\npass .{OUTLET_CONTROL} /bin/sh {}\n",
                script.display()
            ),
        )
        .expect("snmpd.conf");
        let log = dir.path().join("snmpd.log");
        let child = Command::new(snmpd_binary())
            .arg("-f")
            .arg("-C")
            .arg("-c")
            .arg(&conf)
            .arg("-Lf")
            .arg(&log)
            .arg("-p")
            .arg(dir.path().join("snmpd.pid"))
            .env("SNMP_PERSISTENT_DIR", dir.path())
            .env("MIBS", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn snmpd");
        let mut agent = Self { child, port, dir };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !agent.log().contains("NET-SNMP version") {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("snmpd exited ({status}); log:\n{}", agent.log());
            }
            assert!(
                Instant::now() < deadline,
                "snmpd did not start in {STARTUP_TIMEOUT:?}; log:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The agent's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("snmpd.log")).unwrap_or_default()
    }

    /// Every SET taken so far, oldest first.
    pub fn sets(&self) -> Vec<Set> {
        let text = std::fs::read_to_string(self.dir.path().join("state/log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                Some(Set {
                    at: parts.next()?.parse().ok()?,
                    outlet: parts.next()?.parse().ok()?,
                    value: parts.next()?.parse().ok()?,
                })
            })
            .collect()
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
