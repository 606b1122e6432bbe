//! A private three-node (or n-node) NATS JetStream cluster on loopback, each node with its own
//! store, client, route and monitoring ports, for the tests that kill nodes under load: any
//! node can be SIGKILLed and started again on the same ports and store, and the harness says
//! which node leads a stream and which leads the JetStream meta group.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, nats_server_binary};

/// One node of a [`NatsCluster`].
struct Node {
    /// Its server name, `n1`, `n2`, …
    name: String,
    /// Client port on 127.0.0.1.
    port: u16,
    /// Route (cluster) port on 127.0.0.1.
    route_port: u16,
    /// HTTP monitoring port on 127.0.0.1 (`/jsz` names the meta leader).
    monitor_port: u16,
    /// The process, while it runs.
    child: Option<Child>,
}

/// A running NATS cluster; every node is killed on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
    /// Stores and logs of every node (`<name>/`, `<name>.log`), kept across restarts.
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` clustered nodes with JetStream and waits until they have elected a meta
    /// leader (JetStream answers through any of them).
    pub fn start(size: usize) -> Self {
        let nodes = (1..=size)
            .map(|i| Node {
                name: format!("n{i}"),
                port: free_port(),
                route_port: free_port(),
                monitor_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            nodes,
            dir: tempfile::tempdir().expect("temp dir for the cluster"),
        };
        for i in 0..size {
            cluster.launch(i);
        }
        cluster.wait_meta_leader(Duration::from_secs(60));
        cluster
    }

    /// Every node's client URL, comma-separated: what adit's `--nats-url` takes.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server names, `n1`…
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The node called `name`'s index.
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in {:?}", self.names()))
    }

    /// SIGKILLs node `i`; its store is kept.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts node `i` again on its ports with its store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
    }

    /// The meta group's leader as a running node's `/jsz` reports it, if one is elected.
    pub fn meta_leader(&self) -> Option<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|n| {
                let jsz = http_get(n.monitor_port, "/jsz").ok()?;
                let leader = jsz["meta_cluster"]["leader"].as_str()?.to_string();
                (!leader.is_empty()).then_some(leader)
            })
    }

    /// Waits up to `limit` for a meta leader; panics with the nodes' logs if none is elected.
    pub fn wait_meta_leader(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(leader) = self.meta_leader() {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "the NATS cluster elected no meta leader in {limit:?}:\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A JetStream context connected to every node.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let urls: Vec<String> = self.url().split(',').map(str::to_string).collect();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(urls)
            .await
            .expect("connect to the test cluster");
        async_nats::jetstream::new(client)
    }

    /// The server that leads `stream` now, if it has a leader.
    pub async fn stream_leader(
        js: &async_nats::jetstream::Context,
        stream: &str,
    ) -> Option<String> {
        let mut stream = js.get_stream(stream).await.ok()?;
        let info = stream.info().await.ok()?;
        info.cluster.as_ref()?.leader.clone()
    }

    /// The last lines of every node's log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", n.name)))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {} ---\n{}",
                    n.name,
                    lines[lines.len().saturating_sub(15)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn launch(&mut self, i: usize) {
        let routes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.route_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[i];
        let log = self.dir.path().join(format!("{}.log", node.name));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("node log");
        writeln!(file, "=== starting {} ===", node.name).ok();
        let mut child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-n", &node.name, "--cluster_name", "adit-test"])
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", node.route_port))
            .args(["--routes", &routes])
            .args(["-m", &node.monitor_port.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path().join(&node.name))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn nats-server");
        let what = format!("nats-server {}", node.name);
        let port = node.port;
        crate::wait_listening(&mut child, &what, port, Duration::from_secs(20), || {
            self.log_tails()
        });
        self.nodes[i].child = Some(child);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// GET `path` from the monitoring port, as JSON.
fn http_get(port: u16, path: &str) -> Result<serde_json::Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let body = crate::monerod::read_http_body(&mut stream)?;
    serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))
}
