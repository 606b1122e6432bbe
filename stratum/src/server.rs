//! The Stratum server's settings and the state every connection shares ([`Pool`]). The accept
//! loop and each connection's I/O are in `connection`, what each request does in `handlers`,
//! and every decision about a share in `session`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use adit_schemas::AnyEvent;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::guard::{Guard, GuardConfig};
use crate::jobs::{JobFactory, Work};
use crate::session::BlockFound;
use crate::vardiff::VardiffConfig;
use crate::verify::Verifier;

/// Server settings; from config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Pool id used in subjects and tables.
    pub pool: String,
    /// Starting share difficulty (a `+difficulty` login overrides it).
    pub start_difficulty: u64,
    /// Longest accepted line, bytes; a longer one closes the connection.
    pub max_line: usize,
    /// Time allowed from connect to login.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// A connection silent this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// RandomX verification threads (0 = one per core).
    pub verify_threads: usize,
    /// `light` (default) or `fast` (shared ~2 GiB dataset per seed).
    pub randomx_mode: crate::verify::RandomXMode,
    /// Build RandomX's caches, datasets and VMs in large pages where the OS grants them (a
    /// clear log line, and normal pages, where it does not).
    pub huge_pages: bool,
    /// Vardiff.
    pub vardiff: VardiffConfig,
    /// Admission limits.
    pub limits: GuardConfig,
    /// Serve Stratum over TLS with this certificate and key.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            pool: "main".into(),
            start_difficulty: 10_000,
            max_line: 16 * 1024,
            login_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(600),
            verify_threads: 0,
            randomx_mode: crate::verify::RandomXMode::Light,
            huge_pages: false,
            vardiff: VardiffConfig::default(),
            limits: GuardConfig::default(),
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Checks every value; the key is relative to `[pool.server]` (the caller puts it
    /// [`Invalid::under`] `server`).
    pub fn validate(&self) -> Checked {
        if !adit_schemas::names::is_token(&self.pool) {
            return Err(Invalid::new(
                "pool",
                format!(
                    "{:?} must be 1–64 of A-Z a-z 0-9 _ - (it is a subject token)",
                    self.pool
                ),
            ));
        }
        check(
            self.start_difficulty != 0,
            "start_difficulty",
            "must be at least 1",
        )?;
        check(
            self.max_line >= 512,
            "max_line",
            format!(
                "must be at least 512 bytes (a login line is longer), not {}",
                self.max_line
            ),
        )?;
        check(
            !self.login_timeout.is_zero(),
            "login_timeout",
            "must be more than 0",
        )?;
        check(
            !self.idle_timeout.is_zero(),
            "idle_timeout",
            "must be more than 0",
        )?;
        check(
            self.verify_threads <= 1024,
            "verify_threads",
            format!("must be at most 1024, not {}", self.verify_threads),
        )?;
        self.vardiff.validate().map_err(|e| e.under("vardiff"))?;
        self.limits.validate().map_err(|e| e.under("limits"))
    }
}

/// What every connection shares.
pub struct Pool {
    /// Settings.
    pub(crate) config: ServerConfig,
    /// Blob ids, and so job ids.
    pub(crate) factory: JobFactory,
    /// RandomX threads.
    pub(crate) verifier: Verifier,
    /// The current work; a change is pushed to every miner.
    pub(crate) work: watch::Receiver<Arc<Work>>,
    /// Share events, for the publisher.
    pub(crate) events: mpsc::Sender<AnyEvent>,
    /// Block candidates, for the node submitter.
    pub(crate) blocks: mpsc::Sender<BlockFound>,
    /// Admission state.
    pub(crate) guard: Mutex<Guard>,
    /// The bans every pool process applies (the KV bucket's, mirrored by `bans::sync`).
    pub(crate) bans: crate::Bans,
    /// The receiver of this pool's own bans, until `run` takes it for `bans::sync`.
    auto_bans: Mutex<Option<tokio::sync::mpsc::Receiver<adit_schemas::bans::Ban>>>,
    /// Session id counter.
    pub(crate) sessions: std::sync::atomic::AtomicU64,
    /// TLS, when configured.
    pub(crate) tls: Option<TlsAcceptor>,
}

impl Pool {
    /// A pool mining `work`, sending share events to `events` and block candidates to `blocks`.
    pub fn new(
        config: ServerConfig,
        work: watch::Receiver<Arc<Work>>,
        events: mpsc::Sender<AnyEvent>,
        blocks: mpsc::Sender<BlockFound>,
    ) -> crate::error::Result<Arc<Self>> {
        let tls = config
            .tls
            .as_ref()
            .map(|files| crate::tls::acceptor(files, None))
            .transpose()?;
        let threads = if config.verify_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.verify_threads
        };
        let (bans, auto_bans) = crate::Bans::new();
        Ok(Arc::new(Self {
            tls,
            guard: Mutex::new(Guard::new(config.limits.clone())),
            bans,
            auto_bans: Mutex::new(Some(auto_bans)),
            factory: JobFactory::random(),
            verifier: Verifier::new(threads, config.randomx_mode),
            config,
            work,
            events,
            blocks,
            sessions: std::sync::atomic::AtomicU64::new(1),
        }))
    }

    /// Builds the verification threads' RandomX caches for `seed` before shares need them.
    pub async fn prepare(&self, seed: [u8; 32]) -> crate::error::Result<()> {
        self.verifier.prepare(seed).await
    }

    /// The bans in force, and (once) the receiver of the pool's own, for `bans::sync`.
    pub fn bans(
        &self,
    ) -> (
        crate::Bans,
        Option<tokio::sync::mpsc::Receiver<adit_schemas::bans::Ban>>,
    ) {
        let auto = self
            .auto_bans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        (self.bans.clone(), auto)
    }

    /// The admission state.
    pub(crate) fn guard(&self) -> std::sync::MutexGuard<'_, Guard> {
        self.guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connections open now (admitted, not yet closed).
    pub fn open_connections(&self) -> usize {
        self.guard().open()
    }
}
