//! The managed nats-server: without a NATS URL, adit starts its own (JetStream on, loopback
//! only, store under the data folder), restarts it if it dies, and stops it on exit.
//!
//! Its URL is written to `<data_dir>/nats/url`, so other adit processes with the same data
//! folder (say `adit simulate` beside `adit run`) find and share it instead of starting a
//! second one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// A nats-server this process started; stopped when [`ManagedNats::stop`] is called or the
/// handle is dropped.
pub struct ManagedNats {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// Stops the supervisor and the server.
    stop: CancellationToken,
    /// The supervisor task.
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The nats-server binary: configured, on PATH, or /usr/sbin.
pub fn find_binary(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|d| PathBuf::from(d).join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|p| p.exists())
        .context("nats-server not found: install it (apt-get install nats-server), set nats.server_binary, or give --nats-url")
}

fn spawn(binary: &Path, port: u16, store: &Path) -> anyhow::Result<Child> {
    Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

async fn wait_listening(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("nats-server did not start listening on 127.0.0.1:{port}")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running managed server for `data_dir`: the one another adit process already runs there,
/// or a new one. Returns the URL and, if this process started it, its handle.
pub async fn ensure(
    data_dir: &Path,
    binary: Option<&Path>,
) -> anyhow::Result<(String, Option<ManagedNats>)> {
    let dir = data_dir.join("nats");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let url_file = dir.join("url");
    if let Ok(url) = std::fs::read_to_string(&url_file) {
        let url = url.trim().to_string();
        if let Some(port) = url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok())
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            tracing::info!(%url, "using the nats-server already running for this data folder");
            return Ok((url, None));
        }
    }
    let binary = find_binary(binary)?;
    let port = free_port()?;
    let store = dir.join("store");
    let mut child = spawn(&binary, port, &store)?;
    wait_listening(port).await?;
    let url = format!("nats://127.0.0.1:{port}");
    std::fs::write(&url_file, &url).with_context(|| format!("writing {}", url_file.display()))?;
    tracing::info!(%url, store = %store.display(), "started managed nats-server");
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => {
                    let _ = child.kill().await;
                    return;
                }
                status = child.wait() => {
                    tracing::error!(?status, "managed nats-server exited; restarting it");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match spawn(&binary, port, &store) {
                        Ok(c) => child = c,
                        Err(e) => {
                            tracing::error!(error = %e, "could not restart nats-server");
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok((
        url.clone(),
        Some(ManagedNats {
            url,
            stop,
            task: Some(task),
        }),
    ))
}

impl ManagedNats {
    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ManagedNats {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
