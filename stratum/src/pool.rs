//! The pool as a process role: keeps the work fresh from the node, runs the server, publishes
//! every share and block to the MINING stream, and submits block candidates to the node.
//!
//! A block candidate is always recorded: the node's refusal becomes a `rejected` block event
//! carrying the node's message, a node that stays unreachable while the block's template is
//! current an `unreachable` one, never a silent drop.

use std::sync::Arc;
use std::time::Duration;

use adit_bus::Publisher;
use adit_bus::publish::Outgoing;
use adit_config::{Checked, Invalid, check};
use adit_jsonrpc::Credentials as RpcCredentials;
use adit_schemas::chain::Chain;
use adit_schemas::{AnyEvent, Block, BlockStatus};
use adit_supervise::{Essentials, Vitals};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use adit_retry::Backoff;

use crate::chain::Tip;
use crate::connection::serve;
use crate::error::{Error, Result};
use crate::jobs::Work;
use crate::node::{Node, watch_tip};
use crate::server::{Pool, ServerConfig};
use crate::session::BlockFound;
use crate::stats::PoolStats;

/// Pool settings; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Address miners connect to.
    pub listen: String,
    /// The chain mined: `monero` or `opensy`.
    pub chain: Chain,
    /// Wallet the block reward goes to (for `opensy`, an OpenSY address; the simulated node
    /// pays a fixed regtest address when it is empty).
    pub wallet: String,
    /// `sim` for the chain's built-in simulated node, or its node's RPC URL (monerod's,
    /// `http://127.0.0.1:18081`; OpenSY's, `http://127.0.0.1:19642` on regtest).
    pub node: String,
    /// The node's RPC credentials (OpenSY's node requires them).
    pub rpc: RpcCredentials,
    /// How often the chain tip is polled.
    #[serde(with = "humantime_serde")]
    pub tip_poll: Duration,
    /// How often the template is refreshed even without a new block (new transactions).
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// Network difficulty of the simulated node (OpenSY's: blocks about this many hashes
    /// apart, never easier than regtest's limit).
    pub sim_difficulty: u64,
    /// A block is confirmed (its payouts final) this many blocks deep; by default the chain's
    /// coinbase maturity (see [`PoolConfig::confirmations`]).
    pub confirmations: Option<u64>,
    /// Miners with Prometheus series of their own (`miner_hashrate`, `miner_online`,
    /// `miner_shares_*`): the first this many seen; the rest count as `miner="other"`. 0: none.
    pub metrics_per_miner: usize,
    /// The Stratum server.
    pub server: ServerConfig,
    /// The pool's fee, basis points, as the payouts take it (`pipelines.pplns`): given by the
    /// binary, not a `[pool]` key; published with each height's terms (`network`).
    #[serde(skip)]
    pub fee_bps: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3333".into(),
            chain: Chain::Monero,
            wallet: String::new(),
            node: "sim".into(),
            rpc: RpcCredentials::default(),
            tip_poll: Duration::from_secs(1),
            refresh: Duration::from_secs(30),
            sim_difficulty: 5_000,
            confirmations: None,
            metrics_per_miner: 0,
            server: ServerConfig::default(),
            fee_bps: 0,
        }
    }
}

impl PoolConfig {
    /// How deep a block is confirmed: `confirmations` when set, else the chain's coinbase
    /// maturity (Monero's 60, OpenSY's 100).
    pub fn confirmations(&self) -> u64 {
        self.confirmations.unwrap_or(match self.chain {
            Chain::Monero => 60,
            Chain::OpenSy => 100,
        })
    }

    /// Checks every value after all overrides; the key is relative to `[pool]` (the caller
    /// puts it [`Invalid::under`] `pool`), so no value a user can type panics or spins later.
    pub fn validate(&self) -> Checked {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(Invalid::new(
                "listen",
                format!("{:?} is not an address like 0.0.0.0:3333", self.listen),
            ));
        }
        check(
            self.tip_poll >= Duration::from_millis(10),
            "tip_poll",
            format!("must be at least 10ms, not {:?}", self.tip_poll),
        )?;
        check(
            self.refresh >= Duration::from_millis(100),
            "refresh",
            format!("must be at least 100ms, not {:?}", self.refresh),
        )?;
        check(
            self.sim_difficulty != 0,
            "sim_difficulty",
            "must be at least 1",
        )?;
        check(
            self.node == "sim"
                || self.node.starts_with("http://")
                || self.node.starts_with("https://"),
            "node",
            format!(
                "{:?} is neither sim nor an http(s) URL of the node's RPC",
                self.node
            ),
        )?;
        if self.chain == Chain::OpenSy && !(self.node == "sim" && self.wallet.is_empty()) {
            let networks = [
                crate::opensy::Network::Main,
                crate::opensy::Network::Test,
                crate::opensy::Network::Regtest,
            ];
            check(
                networks
                    .iter()
                    .any(|n| crate::opensy::script_for(&self.wallet, *n).is_ok()),
                "wallet",
                format!(
                    "{:?} is not an OpenSY address (syl1…, tsyl1…, rsyl1…, or base58)",
                    self.wallet
                ),
            )?;
        }
        self.rpc.validate().map_err(|e| e.under("rpc"))?;
        check(
            (1..=10_000).contains(&self.confirmations()),
            "confirmations",
            format!("must be between 1 and 10000, not {}", self.confirmations()),
        )?;
        check(
            self.metrics_per_miner <= 10_000,
            "metrics_per_miner",
            format!(
                "must be at most 10000 (each miner is 5 series), not {}",
                self.metrics_per_miner
            ),
        )?;
        self.server.validate().map_err(|e| e.under("server"))
    }
}

/// Fetches a template from `node` and turns it into work.
pub async fn fetch_work(node: &Node, wallet: &str) -> Result<Arc<Work>> {
    Ok(Arc::new(node.work(wallet).await?))
}

/// Runs the pool on `listener` until `shutdown`: stops accepting, lets in-flight
/// verifications finish, submits and publishes what is pending, then returns.
pub async fn run(
    config: PoolConfig,
    node: Node,
    listener: TcpListener,
    publisher: Publisher,
    vitals: Vitals,
    shutdown: CancellationToken,
) -> Result<()> {
    let first = loop {
        match fetch_work(&node, &config.wallet).await {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!(error = %e, "no block template yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tracing::info!(
        height = first.height,
        difficulty = first.network_difficulty,
        "mining on the node's template"
    );
    let seed = first.seed_hash;
    let first_terms = terms(&config, &first);
    let (work_tx, work_rx) = watch::channel(first);
    let work_rx_for_submit = work_rx.clone();
    let (events_tx, events_rx) = mpsc::channel::<AnyEvent>(100_000);
    let (blocks_tx, blocks_rx) = mpsc::channel::<BlockFound>(64);
    let refresh_now = Arc::new(Notify::new());
    let pool = Pool::new(config.server.clone(), work_rx, events_tx.clone(), blocks_tx)?;
    // Queued before any share: the terms the first shares are priced on come first.
    if events_tx.send(first_terms).await.is_err() {
        tracing::warn!("the first template's terms were not queued: the publisher is gone");
    }
    pool.prepare(seed).await?;

    let pending =
        crate::maturity::pending_from_stream(publisher.jetstream(), &config.server.pool).await?;
    if !pending.is_empty() {
        tracing::info!(blocks = pending.len(), "blocks waiting for confirmation");
    }
    let (accepted_tx, accepted_rx) = mpsc::channel::<Block>(64);
    let js = publisher.jetstream().clone();
    let publishing = tokio::spawn(supervised_publisher(
        events_rx,
        publisher,
        config.metrics_per_miner,
        vitals.clone(),
    ));
    // The other tasks own channels or state that die with them, so they are not restarted:
    // one that fails stops the server (`serving`), and the pool reports it, so the process
    // exits non-zero instead of taking shares it can no longer turn into blocks.
    let serving = shutdown.child_token();
    let mut parts = Essentials::new(&vitals, serving.clone());
    parts.spawn(
        "pool_block_submitter",
        submit_blocks(
            blocks_rx,
            node.clone(),
            config.server.pool.clone(),
            events_tx.clone(),
            work_rx_for_submit,
            accepted_tx,
            refresh_now.clone(),
        ),
    );
    let (tip_tx, tip_rx) = watch::channel::<Option<Tip>>(None);
    let stop_side = CancellationToken::new();
    parts.spawn(
        "pool_tip_watcher",
        watch_tip(node.clone(), config.tip_poll, tip_tx, stop_side.clone()),
    );
    parts.spawn(
        "pool_maturity",
        crate::maturity::run(
            node.clone(),
            config.confirmations(),
            pending,
            accepted_rx,
            events_tx.clone(),
            tip_rx.clone(),
            stop_side.clone(),
        ),
    );
    parts.spawn(
        "pool_work_refresher",
        refresh_work(
            node,
            config.clone(),
            tip_rx,
            work_tx,
            refresh_now,
            pool.clone(),
            events_tx,
            stop_side.clone(),
        ),
    );
    // The bans every pool process applies, in force before the first miner is let in, and
    // this pool's own shared with them.
    let (bans, auto_bans) = pool.bans();
    match crate::bans::load(&js, &bans).await {
        Ok(count) => tracing::info!(count, "bans loaded"),
        Err(e) => tracing::warn!(error = %e, "bans not loaded before serving; applied once read"),
    }
    let auto_bans = auto_bans.unwrap_or_else(|| mpsc::channel(1).1);
    parts.spawn(
        "pool_bans",
        crate::bans::sync(
            js,
            bans,
            auto_bans,
            stop_side.clone(),
            crate::bans::SWEEP_EVERY,
        ),
    );

    tracing::info!(listen = %config.listen, pool = %config.server.pool, "stratum listening");
    serve(listener, pool, serving).await;
    // The server and its connections are gone: no more shares or blocks can arrive. Stop the
    // tip watcher and the refresher first: the refresher holds the last handle on the pool,
    // whose channels must close for the submitter and the publisher to drain and finish.
    stop_side.cancel();
    let mut failed = parts.join().await;
    match publishing.await {
        Ok(Ok(())) => {}
        Ok(Err(gave_up)) => failed.push(gave_up.to_string()),
        Err(e) => failed.push(format!("share publisher: {e}")),
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::TaskFailed(failed.join("; ")))
    }
}

/// The share publisher under supervision: a panic restarts it with the same channel, so
/// miners' shares keep flowing, and `/ready` says the publisher is down meanwhile. The batch in
/// hand when it died is logged event by event and counted lost, never dropped unseen.
/// Returns `Err` when it keeps dying: the pool then stops the process.
async fn supervised_publisher(
    events: mpsc::Receiver<AnyEvent>,
    publisher: Publisher,
    per_miner: usize,
    vitals: Vitals,
) -> std::result::Result<(), adit_supervise::GaveUp> {
    let state = Arc::new(tokio::sync::Mutex::new(PublisherState {
        events,
        in_hand: Vec::with_capacity(1024),
    }));
    adit_supervise::supervise(
        "pool_publisher",
        &vitals,
        adit_supervise::Policy::default(),
        || publish_events(state.clone(), publisher.clone(), per_miner),
    )
    .await
}

/// What outlives one incarnation of the publisher.
struct PublisherState {
    /// The pool's events.
    events: mpsc::Receiver<AnyEvent>,
    /// The batch being published; not empty at a start only if the last incarnation died
    /// with it.
    in_hand: Vec<AnyEvent>,
}

/// The terms `work` mines on under `config`, as the pool's event (`network`).
fn terms(config: &PoolConfig, work: &Work) -> AnyEvent {
    AnyEvent::Network(adit_schemas::NetworkState {
        pool: config.server.pool.clone(),
        height: work.height,
        network_difficulty: work.network_difficulty,
        reward: work.reward,
        subsidy: work.subsidy,
        fee_bps: config.fee_bps,
        ts: chrono::Utc::now(),
    })
}

/// Replaces the work on every new tip, on request (after a block), and every `refresh`; the
/// terms of each new height (or new difficulty or reward) go out as a `network` event.
#[allow(clippy::too_many_arguments)]
async fn refresh_work(
    node: Node,
    config: PoolConfig,
    mut tip: watch::Receiver<Option<Tip>>,
    work: watch::Sender<Arc<Work>>,
    now: Arc<Notify>,
    pool: Arc<Pool>,
    events: mpsc::Sender<AnyEvent>,
    stop: CancellationToken,
) {
    let mut prepared: Option<[u8; 32]> = None;
    let said = |w: &Work| (w.height, w.network_difficulty, w.reward);
    let mut last_said = said(&work.borrow());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = tip.changed() => if changed.is_err() { return },
            _ = now.notified() => {}
            _ = tokio::time::sleep(config.refresh) => {}
        }
        match fetch_work(&node, &config.wallet).await {
            Ok(w) => {
                tracing::debug!(height = w.height, "new work");
                // Build the next epoch's caches before the chain switches to it.
                if let Some(next) = w.next_seed_hash.filter(|n| prepared != Some(*n)) {
                    prepared = Some(next);
                    let pool = pool.clone();
                    tokio::spawn(async move { pool.prepare(next).await });
                }
                if said(&w) != last_said {
                    last_said = said(&w);
                    if events.send(terms(&config, &w)).await.is_err() {
                        return;
                    }
                }
                work.send_replace(w);
            }
            Err(e) => {
                tracing::warn!(error = %e, "template refresh failed; miners keep the current work")
            }
        }
    }
}

/// How often the pool's figures are brought up to date when no share arrives, so the hashrate
/// falls to zero once every miner has gone.
const STATS_TICK: Duration = Duration::from_secs(10);

/// Publishes share and block events in batches until the channel closes, and keeps the pool's
/// figures ([`PoolStats`]).
async fn publish_events(
    state: Arc<tokio::sync::Mutex<PublisherState>>,
    publisher: Publisher,
    per_miner: usize,
) {
    let mut state = state.lock().await;
    let PublisherState {
        events: rx,
        in_hand: buf,
    } = &mut *state;
    for lost in buf.drain(..) {
        metrics::counter!("adit_pool_events_lost_total").increment(1);
        tracing::error!(event = ?lost, "event not recorded: publishing it made the publisher fail");
    }
    let mut stats = PoolStats::new(tokio::time::Instant::now(), per_miner);
    let mut tick = tokio::time::interval(STATS_TICK);
    loop {
        tokio::select! {
            received = rx.recv_many(buf, 1024) => if received == 0 { break },
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        for e in buf.iter() {
            stats.observe(now, e);
        }
        stats.export(now);
        if buf.is_empty() {
            continue;
        }
        let msgs: Vec<Outgoing> = buf.iter().map(Outgoing::event).collect();
        // Shares are money: keep retrying (dedupe ids make retries safe); while NATS is down
        // the channel fills and miners' submissions wait instead of shares being dropped.
        while let Err(e) = publisher.publish_all(msgs.clone()).await {
            tracing::error!(error = %e, pending = msgs.len(), "cannot publish share events; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        buf.clear();
    }
}

/// How long a block whose node cannot be reached is retried while its template is current: a
/// Monero block time, after which another block at its height is all but certain.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(120);

/// Submits each candidate to the node and records the outcome as a block event. A node that
/// cannot be reached (down, or its circuit breaker open) is retried while the block's template
/// is still the current work; only then is the block recorded `unreachable`. A node's refusal
/// is recorded `rejected` with its message.
async fn submit_blocks(
    mut rx: mpsc::Receiver<BlockFound>,
    node: Node,
    pool: String,
    events: mpsc::Sender<AnyEvent>,
    work: watch::Receiver<Arc<Work>>,
    accepted: mpsc::Sender<Block>,
    refresh: Arc<Notify>,
) {
    while let Some(found) = rx.recv().await {
        let current = || work.borrow().height <= found.height;
        let (status, error) = submit_while_current(&node, &found, current).await;
        match status {
            BlockStatus::Submitted => {
                // New work at once, so miners stop hashing on a height that is over.
                refresh.notify_one();
                tracing::info!(height = found.height, hash = %found.hash, "block accepted by the node");
            }
            _ => {
                tracing::warn!(height = found.height, hash = %found.hash, ?status, error = ?error, "block not accepted")
            }
        }
        let label = match status {
            BlockStatus::Submitted => "accepted",
            BlockStatus::Rejected => "rejected",
            _ => "unreachable",
        };
        metrics::counter!("adit_pool_blocks_submitted_total", "status" => label).increment(1);
        let block = Block {
            pool: pool.clone(),
            height: found.height,
            hash: found.hash,
            miner: found.miner,
            worker: found.worker,
            job_id: found.job_id,
            nonce: found.nonce,
            reward: found.reward,
            network_difficulty: found.network_difficulty,
            status,
            error,
            ts: chrono::Utc::now(),
        };
        if block.status == BlockStatus::Submitted
            && let Err(lost) = accepted.send(block.clone()).await
        {
            tracing::error!(hash = %lost.0.hash, "maturity is not followed: the tracker has stopped");
        }
        if let Err(lost) = events.send(AnyEvent::Block(block)).await {
            metrics::counter!("adit_pool_events_lost_total").increment(1);
            tracing::error!(event = ?lost.0, "block event not recorded: the publisher has stopped");
        }
        refresh.notify_one();
    }
}

/// Submits `found` until the node answers (accepted or refused), `current` says its template
/// is over (the work moved past its height), or [`SUBMIT_PATIENCE`] runs out; returns the
/// status to record and the last error.
async fn submit_while_current(
    node: &Node,
    found: &BlockFound,
    current: impl Fn() -> bool,
) -> (BlockStatus, Option<String>) {
    let started = tokio::time::Instant::now();
    let mut delays = SUBMIT_RETRY.waits();
    loop {
        let error = match node.submit_block(&found.blob_hex).await {
            Ok(()) => return (BlockStatus::Submitted, None),
            Err(e @ (Error::NodeUnreachable { .. } | Error::NodeUnavailable { .. })) => e,
            Err(e) => return (BlockStatus::Rejected, Some(e.to_string())),
        };
        let delay = delays.next_wait();
        if !current() || started.elapsed() + delay > SUBMIT_PATIENCE {
            return (BlockStatus::Unreachable, Some(error.to_string()));
        }
        tracing::warn!(height = found.height, error = %error, ?delay, "node unreachable; retrying the block");
        tokio::time::sleep(delay).await;
    }
}

/// How a found block is submitted again while the node is away: 250 ms doubling to 5 s, with
/// jitter.
const SUBMIT_RETRY: Backoff =
    Backoff::new(Duration::from_millis(250), Duration::from_secs(5)).with_jitter();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monerod::MoneroRpc;
    use adit_jsonrpc::RpcConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn found(height: u64) -> BlockFound {
        BlockFound {
            blob_hex: "00".into(),
            hash: "ab".repeat(32),
            height,
            miner: "m".into(),
            worker: "w".into(),
            job_id: "j".into(),
            nonce: "0a0b0c0d".into(),
            reward: 1,
            network_difficulty: 1,
        }
    }

    /// Answers every JSON-RPC request on `listener` with `{"status":"OK"}`.
    async fn fake_node(listener: TcpListener) {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = socket.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                }
                let body = r#"{"jsonrpc":"2.0","id":"0","result":{"status":"OK"}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(reply.as_bytes()).await.expect("reply");
            });
        }
    }

    #[test]
    fn a_bad_value_is_named_by_its_key_under_pool() {
        assert_eq!(PoolConfig::default().validate(), Ok(()));
        let mut bad = PoolConfig {
            listen: "nowhere".into(),
            ..PoolConfig::default()
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.key, "listen");
        assert!(
            err.to_string().starts_with("listen: \"nowhere\" is not"),
            "{err}"
        );
        bad = PoolConfig::default();
        bad.server.max_line = 10;
        assert_eq!(bad.validate().unwrap_err().key, "server.max_line");
        bad = PoolConfig::default();
        bad.server.vardiff.max_step = 1;
        assert_eq!(bad.validate().unwrap_err().key, "server.vardiff.max_step");
        bad = PoolConfig::default();
        bad.server.limits.submits_per_s = f64::NAN;
        let err = bad.validate().unwrap_err().under("pool");
        assert_eq!(err.key, "pool.server.limits.submits_per_s");
        assert!(err.reason.contains("NaN"), "{err}");
    }

    #[tokio::test]
    async fn a_block_is_retried_through_a_node_outage_while_its_template_is_current() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let node =
            Node::Monerod(MoneroRpc::new(&format!("http://{addr}"), RpcConfig::default()).unwrap());
        let submitting =
            tokio::spawn(async move { submit_while_current(&node, &found(10), || true).await });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!submitting.is_finished(), "gave up during a short outage");
        tokio::spawn(fake_node(TcpListener::bind(addr).await.unwrap()));
        let (status, error) = tokio::time::timeout(Duration::from_secs(30), submitting)
            .await
            .expect("submitted once the node was back")
            .unwrap();
        assert_eq!((status, error), (BlockStatus::Submitted, None));
    }

    #[tokio::test]
    async fn a_block_whose_height_is_over_is_recorded_unreachable_not_rejected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let node =
            Node::Monerod(MoneroRpc::new(&format!("http://{addr}"), RpcConfig::default()).unwrap());
        let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let submitting = tokio::spawn({
            let over = over.clone();
            async move {
                submit_while_current(&node, &found(10), || {
                    !over.load(std::sync::atomic::Ordering::SeqCst)
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(
            !submitting.is_finished(),
            "gave up while the template was current"
        );
        over.store(true, std::sync::atomic::Ordering::SeqCst);
        let (status, error) = tokio::time::timeout(Duration::from_secs(30), submitting)
            .await
            .expect("gave up once the chain moved on")
            .unwrap();
        assert_eq!(status, BlockStatus::Unreachable);
        assert!(error.is_some());
    }
}
