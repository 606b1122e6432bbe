//! The managed nats-server: without a NATS URL, adit starts its own (JetStream on, loopback
//! only, store under the data folder), restarts it if it dies, and stops it on exit.
//!
//! Its URL is written to `<data_dir>/nats/url`, so other adit processes with the same data
//! folder (say `adit simulate` beside `adit run`) find and share it instead of starting a
//! second one.
//!
//! It lives and dies with the adit that started it, however adit dies (issue 22): the kernel
//! sends it SIGTERM when its parent goes (`PR_SET_PDEATHSIG`, SIGKILL of adit included), and
//! `<data_dir>/nats/pid` names it and its owner, so a start that finds a server whose owner is
//! gone stops it before starting its own, instead of a second server on the same store.
//!
//! Only adit gets in (issue 23): each server it starts has a new random password, kept in
//! `<data_dir>/nats/auth.conf` (the server's) and in the URL file (the clients'), both created
//! 0600, so another local user cannot publish shares or blocks on its bus. Logs and errors show
//! the URL without it ([`adit_bus::setup::without_credentials`]).
//!
//! Its port is one the kernel says is free, which any process may take before the server binds
//! it (every outgoing connection takes its source port from the same range): a server that
//! exits before listening is started again on another port, a few times.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// A nats-server this process started; stopped when [`ManagedNats::stop`] is called or the
/// handle is dropped.
pub struct ManagedNats {
    /// `nats://adit:<password>@127.0.0.1:<port>`.
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

/// Writes `text` to `path`, readable by this user only (created so, before a byte is in it).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An older file keeps its mode when opened: narrowed too.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("narrowing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A new password for the server, written to its config `auth` (0600).
fn new_credentials(auth: &Path) -> anyhow::Result<String> {
    let password = hex::encode(rand::random::<[u8; 32]>());
    write_private(
        auth,
        &format!("authorization {{\n  user: adit\n  password: \"{password}\"\n}}\n"),
    )?;
    Ok(password)
}

fn spawn(
    binary: &Path,
    port: u16,
    store: &Path,
    auth: &Path,
    pid_file: &Path,
) -> anyhow::Result<Child> {
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(auth)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid), allocating nothing.
    unsafe {
        command.pre_exec(move || die_with_parent(parent));
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    if let Some(pid) = child.id() {
        std::fs::write(pid_file, format!("{pid} {parent}\n"))
            .with_context(|| format!("writing {}", pid_file.display()))?;
    }
    Ok(child)
}

/// In the child before exec: ask the kernel for SIGTERM when the parent dies, and give up if
/// it already has (then the child would be adopted by init and never told).
fn die_with_parent(parent: u32) -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid cannot fail.
    if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
        return Err(std::io::Error::other(
            "adit exited before nats-server started",
        ));
    }
    Ok(())
}

/// Whether process `pid` is alive (and not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Whether process `pid` runs a nats-server (so a stale pid file never stops a stranger).
fn is_nats_server(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| {
            cmd.split(|b| *b == 0)
                .next()
                .is_some_and(|exe| exe.ends_with(b"nats-server"))
        })
        .unwrap_or(false)
}

/// The server `pid_file` names, when it is alive and its owner is not: stopped (SIGTERM, then
/// SIGKILL after 5 s) so the store is free. Returns whether one was stopped.
async fn stop_orphan(pid_file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let mut fields = text.split_whitespace().map(|f| f.parse::<u32>().ok());
    let (Some(Some(server)), Some(Some(owner))) = (fields.next(), fields.next()) else {
        return false;
    };
    if !alive(server) || !is_nats_server(server) || alive(owner) {
        return false;
    }
    tracing::warn!(
        pid = server,
        owner,
        "a managed nats-server outlived the adit that started it; stopping it"
    );
    for (signal, wait) in [(libc::SIGTERM, 50), (libc::SIGKILL, 50)] {
        let Ok(pid) = i32::try_from(server) else {
            return false;
        };
        // SAFETY: kill has no memory effects; the pid was checked to be a nats-server.
        unsafe { libc::kill(pid, signal) };
        for _ in 0..wait {
            if !alive(server) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    !alive(server)
}

/// How many ports a start tries: the port is free when chosen, but until nats-server binds it
/// any process on the machine may take it (an outgoing connection takes its source port from
/// the same range), and then the server exits at once.
const START_TRIES: usize = 5;

/// A new nats-server listening on a free port that is none of `avoid`: when it exits before
/// listening (its port was taken between the choice and its bind), another port is tried.
async fn start_listening(
    binary: &Path,
    store: &Path,
    auth: &Path,
    pid_file: &Path,
    avoid: &[u16],
) -> anyhow::Result<(Child, u16)> {
    for _ in 0..START_TRIES {
        let port = free_port(avoid)?;
        let mut child = spawn(binary, port, store, auth, pid_file)?;
        match wait_listening(&mut child, port).await? {
            None => return Ok((child, port)),
            Some(status) => tracing::warn!(
                port,
                %status,
                "nats-server exited before listening (its port taken?); trying another port"
            ),
        }
    }
    bail!("nats-server exited before listening on each of {START_TRIES} ports")
}

/// Waits until `child` listens on `port`: `None` once it does, its exit status if it exits
/// first.
async fn wait_listening(
    child: &mut Child,
    port: u16,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(None);
        }
        if let Some(status) = child.try_wait().context("waiting on nats-server")? {
            return Ok(Some(status));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("nats-server did not start listening on 127.0.0.1:{port}")
}

/// A port free on 127.0.0.1 now and not one of `avoid` (the ports this process will listen
/// on, perhaps free this instant, which the kernel may hand out as well).
fn free_port(avoid: &[u16]) -> anyhow::Result<u16> {
    port_not_in(avoid, || std::net::TcpListener::bind("127.0.0.1:0"))
}

/// The port of the first listener `bind` gives that is none of `avoid`. Every refused
/// listener is held until then, so the kernel hands out another port each time.
fn port_not_in(
    avoid: &[u16],
    mut bind: impl FnMut() -> std::io::Result<std::net::TcpListener>,
) -> anyhow::Result<u16> {
    let mut refused = Vec::new();
    loop {
        let listener = bind()?;
        let port = listener.local_addr()?.port();
        if !avoid.contains(&port) {
            return Ok(port);
        }
        refused.push(listener);
    }
}

/// A running managed server for `data_dir`: the one another adit process already runs there,
/// or a new one, on a port that is none of `avoid`. Returns the URL and, if this process
/// started it, its handle.
pub async fn ensure(
    data_dir: &Path,
    binary: Option<&Path>,
    avoid: &[u16],
) -> anyhow::Result<(String, Option<ManagedNats>)> {
    let dir = data_dir.join("nats");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let url_file = dir.join("url");
    let pid_file = dir.join("pid");
    stop_orphan(&pid_file).await;
    if let Ok(url) = std::fs::read_to_string(&url_file) {
        let url = url.trim().to_string();
        if let Some(port) = url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok())
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            let shown = adit_bus::setup::without_credentials(&url);
            tracing::info!(url = %shown, "using the nats-server already running for this data folder");
            return Ok((url, None));
        }
    }
    let binary = find_binary(binary)?;
    let store = dir.join("store");
    let auth = dir.join("auth.conf");
    let password = new_credentials(&auth)?;
    let (mut child, port) = start_listening(&binary, &store, &auth, &pid_file, avoid).await?;
    let url = format!("nats://adit:{password}@127.0.0.1:{port}");
    write_private(&url_file, &url)?;
    tracing::info!(url = %format!("nats://127.0.0.1:{port}"), store = %store.display(), "started managed nats-server");
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
                    match spawn(&binary, port, &store, &auth, &pid_file) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A port to avoid that the kernel hands out is refused, and the next one taken.
    #[test]
    fn the_managed_port_is_none_of_the_ports_to_avoid() {
        let port = || {
            TcpListener::bind("127.0.0.1:0")?
                .local_addr()
                .map(|a| a.port())
        };
        let (avoided, next) = (port().unwrap(), port().unwrap());
        let mut handed = [avoided, next].into_iter();
        let chosen = port_not_in(&[avoided], || {
            TcpListener::bind(("127.0.0.1", handed.next().expect("asked a third time")))
        })
        .unwrap();
        assert_eq!(chosen, next);
        assert_ne!(free_port(&[chosen]).unwrap(), chosen);
    }

    /// A server whose port another process took between its choice and the server's bind is
    /// seen to exit, not waited on for seconds, so the start tries another port.
    #[tokio::test]
    async fn a_server_whose_port_is_taken_is_seen_to_exit() {
        // Bound and not listening, as an outgoing connection's source port is.
        let taken = tokio::net::TcpSocket::new_v4().unwrap();
        taken.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth.conf");
        new_credentials(&auth).unwrap();
        let binary = find_binary(None).expect("nats-server (scripts/setup.sh installs it)");
        let mut child = spawn(
            &binary,
            port,
            &dir.path().join("store"),
            &auth,
            &dir.path().join("pid"),
        )
        .unwrap();
        let status = wait_listening(&mut child, port).await.unwrap();
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    }
}
