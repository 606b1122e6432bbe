//! The simulated machines' cgminer APIs: a server per machine on its own port, answering as
//! `simulate::cgminer`'s fake Antminer from the farm's latest status, obeying `pause`,
//! `resume` and LuxOS's power targets, and, for the tests' hooks, silent (nothing listens) or
//! answering replies cut in half.
//!
//! Not a family's fake (`Family::fake`): each machine is its own TCP server, not a route over
//! the HTTP devices' shared server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use adit_devices::cgminer::REPORT_COMMAND;
use adit_schemas::MinerState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fake::Latest;
use crate::simulate::cgminer::{self, CgminerSnapshot, Control};
use crate::simulate::clock::Clock;
use crate::simulate::controls::Controls;

/// The pool the simulated miners report mining on.
const POOL_URL: &str = "stratum+tcp://pool.adit-sim.invalid:3333";
/// How long a garbled miner waits for a request before giving up on the connection.
const GARBLED_EXCHANGE: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How a simulated miner's API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MinerMode {
    /// As cgminer does, from the farm's latest status.
    Answering,
    /// Not at all: nothing listens on its port.
    Silent,
    /// With the first half of the reply, then the connection closes.
    Garbled,
}

/// A server answering on a miner's port.
struct Serving {
    /// Stops it.
    stop: CancellationToken,
    /// It, to wait until its port is free.
    task: JoinHandle<()>,
}

/// One simulated machine's API.
struct MinerServer {
    /// Where it answers (kept across stops, so the registry's address stays right).
    addr: SocketAddr,
    /// The server on it, if any (locked across a swap so two hooks do not race).
    serving: Mutex<Option<Serving>>,
}

/// What every miner's server shares.
#[derive(Clone)]
pub(super) struct Shared {
    /// The farm's latest readings.
    pub(super) latest: watch::Receiver<Latest>,
    /// When the devices started: the miners' uptime.
    pub(super) booted: Instant,
    /// Where obeyed commands go.
    pub(super) controls: Controls,
    /// The farm's clock (commands are timed on it).
    pub(super) clock: Clock,
}

/// What a miner's servers need.
#[derive(Clone)]
struct MinerCtx {
    /// (site, machine).
    key: (String, String),
    /// What every miner shares.
    shared: Shared,
}

impl MinerCtx {
    /// Obeys `pause` (sleep), `resume` (wake) or a power target.
    fn control(&self, control: Control) -> Option<String> {
        let (site, machine) = &self.key;
        let now = self.shared.clock.now();
        let said = match control {
            Control::Pause | Control::Resume => {
                let asleep = control == Control::Pause;
                self.shared.controls.set_asleep(site, machine, asleep, now);
                if asleep { "Paused" } else { "Resumed" }.to_string()
            }
            Control::PowerTarget(watts) => {
                self.shared
                    .controls
                    .set_power_target(site, machine, watts, now);
                format!("Target {watts} W")
            }
        };
        tracing::debug!(site, machine, ?control, "simulated miner obeys");
        Some(said)
    }

    fn snapshot(&self) -> CgminerSnapshot {
        miner_snapshot(
            &self.shared.latest.borrow(),
            &self.key,
            self.shared.booted.elapsed().as_secs(),
        )
    }
}

/// What `key`'s machine's API reports now, from `latest`.
fn miner_snapshot(latest: &Latest, key: &(String, String), elapsed_s: u64) -> CgminerSnapshot {
    let status = latest.miners.get(key);
    CgminerSnapshot {
        hashrate_hs: status.map_or(0.0, |s| s.hashrate_hs),
        temps_c: status.and_then(|s| s.temp_c).into_iter().collect(),
        fans_rpm: status.and_then(|s| s.fan_rpm).into_iter().collect(),
        power_w: status.and_then(|s| s.power_w),
        state: status.map_or(MinerState::Idle, |s| s.state),
        elapsed_s,
        pool_url: POOL_URL.into(),
    }
}

/// Every machine's API server, by (site, machine).
pub(super) struct Miners {
    /// The servers.
    servers: BTreeMap<(String, String), MinerServer>,
    /// What they share.
    shared: Shared,
    /// Stops every server.
    stop: CancellationToken,
    /// Where the servers run, to wait for at the end.
    tasks: TaskTracker,
}

impl Miners {
    /// Starts a server answering on each of `bound`'s listeners: (site, machine), the address
    /// it is reached at, the listener. They stop with `stop`.
    pub(super) fn start(
        bound: Vec<((String, String), SocketAddr, TcpListener)>,
        shared: Shared,
        stop: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Self {
        let mut servers = BTreeMap::new();
        for (key, addr, listener) in bound {
            let ctx = MinerCtx {
                key: key.clone(),
                shared: shared.clone(),
            };
            let serving = spawn(tasks, listener, ctx, MinerMode::Answering, stop);
            servers.insert(
                key,
                MinerServer {
                    addr,
                    serving: Mutex::new(Some(serving)),
                },
            );
        }
        Self {
            servers,
            shared,
            stop: stop.clone(),
            tasks: tasks.clone(),
        }
    }

    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.servers.len()
    }

    /// Where `machine`'s API answers (or would, while stopped).
    pub(super) fn address(&self, site: &str, machine: &str) -> Option<SocketAddr> {
        self.servers
            .get(&(site.to_string(), machine.to_string()))
            .map(|m| m.addr)
    }

    /// Makes `machine`'s API answer as `mode` says from now on, on the same port.
    pub(super) async fn set_mode(
        &self,
        site: &str,
        machine: &str,
        mode: MinerMode,
    ) -> Result<(), std::io::Error> {
        let key = (site.to_string(), machine.to_string());
        let server = self
            .servers
            .get(&key)
            .ok_or_else(|| not_found(site, machine))?;
        let mut serving = server.serving.lock().await;
        if let Some(old) = serving.take() {
            old.stop.cancel();
            old.task.await.map_err(std::io::Error::other)?;
        }
        if mode == MinerMode::Silent {
            tracing::info!(site, machine, "simulated miner stopped");
            return Ok(());
        }
        let listener = TcpListener::bind(server.addr).await?;
        let ctx = MinerCtx {
            key,
            shared: self.shared.clone(),
        };
        *serving = Some(spawn(&self.tasks, listener, ctx, mode, &self.stop));
        tracing::info!(site, machine, ?mode, "simulated miner serving");
        Ok(())
    }
}

fn not_found(site: &str, machine: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no simulated machine {site}/{machine}"),
    )
}

/// Starts the server for `mode` on `listener`, stopped by `parent` or by its own token.
fn spawn(
    tasks: &TaskTracker,
    listener: TcpListener,
    ctx: MinerCtx,
    mode: MinerMode,
    parent: &CancellationToken,
) -> Serving {
    let stop = parent.child_token();
    let task = match mode {
        MinerMode::Garbled => tasks.spawn(serve_cut_replies(listener, ctx, stop.clone())),
        MinerMode::Answering | MinerMode::Silent => {
            let obeys = ctx.clone();
            tasks.spawn(cgminer::serve_controlled(
                listener,
                move || ctx.snapshot(),
                move |control| obeys.control(control),
                stop.clone(),
            ))
        }
    };
    Serving { stop, task }
}

/// A broken miner: reads each request, answers the first half of the real reply, closes.
async fn serve_cut_replies(listener: TcpListener, ctx: MinerCtx, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let mut stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "simulated garbled miner: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let reply = cgminer::reply_for(REPORT_COMMAND, &ctx.snapshot());
        let half = &reply.as_bytes()[..reply.len() / 2];
        let exchange = async {
            let mut request = [0u8; 1024];
            if stream.read(&mut request).await? == 0 {
                return Ok(());
            }
            stream.write_all(half).await?;
            stream.shutdown().await
        };
        match tokio::time::timeout(GARBLED_EXCHANGE, exchange).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "simulated garbled miner: exchange failed"),
            Err(_) => tracing::debug!("simulated garbled miner: no request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Farm;
    use crate::simulate::devices::test_config;
    use chrono::Utc;

    #[test]
    fn a_miner_reports_its_latest_status() {
        let mut farm = Farm::new(test_config());
        let mut latest = Latest::default();
        let events = farm.tick(Utc::now());
        latest.apply(&events);
        let key = ("site-01".to_string(), "m-001".to_string());
        let snap = miner_snapshot(&latest, &key, 60);
        let status = latest.miners.get(&key).unwrap();
        assert_eq!(snap.hashrate_hs, status.hashrate_hs);
        assert_eq!(snap.temps_c, vec![status.temp_c.unwrap()]);
        assert_eq!(snap.power_w, status.power_w);
        assert_eq!(snap.state, MinerState::Mining);
        let unknown = miner_snapshot(&latest, &("x".into(), "y".into()), 0);
        assert_eq!(
            (unknown.hashrate_hs, unknown.state),
            (0.0, MinerState::Idle)
        );
    }
}
