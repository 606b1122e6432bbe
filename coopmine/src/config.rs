//! The cluster's settings: `[cluster]` for the coordinator (its upstream pools, gRPC and REST
//! listeners, certificates, share rules) and `[worker]` for a worker. Validated after every
//! override, each error naming its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use adit_protocol::{PoolUrl, TlsFiles};
use serde::Deserialize;

use crate::cluster::Rules;
use crate::error::Result;

/// `[cluster]`: the coordinator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The cluster's id (a subject token).
    pub id: String,
    /// The upstream pools.
    pub pool: PoolSection,
    /// The gRPC service for workers.
    pub grpc: GrpcSection,
    /// The REST API, live stream and metrics.
    pub rest: RestSection,
    /// Internal share difficulty (capped by the upstream's).
    pub share_difficulty: u64,
    /// How often workers heartbeat.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A worker silent this long is dropped and its slice reused.
    #[serde(with = "humantime_serde")]
    pub dead_after: Duration,
    /// Score added per refused share.
    pub penalty: u32,
    /// Score at which a worker is banned.
    pub ban_score: u32,
    /// RandomX threads checking shares.
    pub verify_threads: usize,
    /// Their mode: `light` (256 MiB) or `fast` (a 2 GiB dataset, ~10× the checks per second).
    pub verify_mode: HashMode,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let rules = Rules::default();
        Self {
            id: "cluster".into(),
            pool: PoolSection::default(),
            grpc: GrpcSection::default(),
            rest: RestSection::default(),
            share_difficulty: rules.share_difficulty,
            heartbeat: Duration::from_secs(5),
            dead_after: Duration::from_secs(20),
            penalty: rules.penalty,
            ban_score: rules.ban_score,
            verify_threads: 1,
            verify_mode: HashMode::Light,
        }
    }
}

/// `[cluster.pool]`: where the cluster mines.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSection {
    /// Pools in order of preference: `stratum+tcp://host:port` or `stratum+ssl://host:port`.
    pub address: Vec<String>,
    /// The cluster's login (wallet address, with any pool-specific suffix).
    pub wallet: String,
    /// The password field.
    pub pass: String,
    /// A CA to trust for `stratum+ssl` pools with their own CA.
    pub tls_ca: Option<PathBuf>,
    /// Keepalive interval.
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// A pool that sends no new job for this long is left for the next.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// While on a later pool, how often the first is tried again.
    #[serde(with = "humantime_serde")]
    pub failback_every: Duration,
    /// How long a login may take.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// The longest wait between rounds of failed logins.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for PoolSection {
    fn default() -> Self {
        Self {
            address: vec!["stratum+tcp://127.0.0.1:3333".into()],
            wallet: String::new(),
            pass: "x".into(),
            tls_ca: None,
            keepalive: Duration::from_secs(60),
            job_timeout: Duration::from_secs(600),
            failback_every: Duration::from_secs(30),
            login_timeout: Duration::from_secs(10),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// `[cluster.grpc]`: the workers' service, mutual TLS only.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcSection {
    /// Listen address.
    pub listen: String,
    /// The coordinator's certificate (from `adit certs`).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The cluster CA workers' certificates must come from.
    pub ca: PathBuf,
    /// How often the certificate, key and CA files are looked at for a change (a renewed or
    /// rotated certificate is then served to new connections, without a restart).
    #[serde(with = "humantime_serde")]
    pub reload_every: std::time::Duration,
}

impl Default for GrpcSection {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".into(),
            cert: PathBuf::from("certs/coordinator.pem"),
            key: PathBuf::from("certs/coordinator.key"),
            ca: PathBuf::from("certs/ca.pem"),
            reload_every: std::time::Duration::from_secs(10),
        }
    }
}

/// `[cluster.rest]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestSection {
    /// Listen address of `/api/*`, `/health` and `/metrics`.
    pub listen: String,
    /// Static bearer tokens (as `[[query.tokens]]`; `worker = "id"` makes a worker's token,
    /// which sees only that worker). With none and no `jwt`, the REST API is open, so it must
    /// listen on loopback.
    pub tokens: Vec<adit_auth::TokenConfig>,
    /// JWT bearer tokens signed by this key (a `worker` claim scopes one to that worker).
    pub jwt: Option<adit_auth::JwtConfig>,
    /// Serve HTTPS with this certificate and key (PEM).
    pub tls: Option<TlsFiles>,
}

impl Default for RestSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
            tokens: Vec::new(),
            jwt: None,
            tls: None,
        }
    }
}

impl RestSection {
    /// The tokens the REST API accepts (the JWT key read now): the one API with a worker
    /// scope, where a worker's token sees its own worker (`rest::guard` holds it to that).
    pub fn tokens(&self) -> Result<adit_auth::Tokens, Invalid> {
        adit_auth::Tokens::new("cluster.rest", &self.tokens, self.jwt.as_ref())
            .map(adit_auth::Tokens::with_worker_scope)
    }

    /// The TLS acceptor when `tls` is set (the files read now).
    pub fn tls_acceptor(&self) -> Result<Option<adit_protocol::https::TlsAcceptor>, Invalid> {
        self.tls
            .as_ref()
            .map(|files| adit_protocol::tls::acceptor(files, None))
            .transpose()
            .map_err(|e| Invalid::new("cluster.rest.tls", e.to_string()))
    }
}

/// What the upstream task needs, parsed.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Pools in order.
    pub urls: Vec<PoolUrl>,
    /// Login.
    pub wallet: String,
    /// Password.
    pub pass: String,
    /// CA for TLS pools.
    pub tls_ca: Option<PathBuf>,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// Silence before failing over.
    pub job_timeout: Duration,
    /// Failback probe interval.
    pub failback_every: Duration,
    /// Login timeout.
    pub login_timeout: Duration,
    /// Longest backoff.
    pub retry_max: Duration,
}

/// A duration within `min..=max`.
fn check_duration(key: &str, value: Duration, min: Duration, max: Duration) -> Checked {
    check(
        min <= value && value <= max,
        key,
        format!("{value:?} is outside {min:?}..={max:?}"),
    )
}

/// Whether `s` can be a subject token (cluster and worker ids).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

impl ClusterConfig {
    /// Checks every value, naming the key; the key is the full one (`cluster.id`), so the
    /// caller adds no prefix.
    pub fn validate(&self) -> Checked {
        if !is_token(&self.id) {
            return Err(Invalid::new(
                "cluster.id",
                format!("{:?}: use 1-64 letters, digits, '-' or '_'", self.id),
            ));
        }
        self.pool_urls()?;
        let reload = std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600);
        if !reload.contains(&self.grpc.reload_every) {
            return Err(Invalid::new(
                "cluster.grpc.reload_every",
                "must be from 100ms to 1h",
            ));
        }
        self.grpc.listen.parse::<SocketAddr>().map_err(|e| {
            Invalid::new(
                "cluster.grpc.listen",
                format!("{:?}: {e}", self.grpc.listen),
            )
        })?;
        let rest = self.rest.listen.parse::<SocketAddr>().map_err(|e| {
            Invalid::new(
                "cluster.rest.listen",
                format!("{:?}: {e}", self.rest.listen),
            )
        })?;
        if !self.rest.tokens()?.enabled() && !rest.ip().is_loopback() {
            return Err(Invalid::new(
                "cluster.rest.listen",
                format!(
                    "{rest} can be reached from other machines, but no cluster.rest.tokens are \
                     set, so anyone who reaches it could read every worker. Add tokens \
                     ([[cluster.rest.tokens]]; `adit token new` makes one) or \
                     [cluster.rest.jwt], or listen on 127.0.0.1"
                ),
            ));
        }
        self.rest.tls_acceptor()?;
        check(
            self.share_difficulty != 0,
            "cluster.share_difficulty",
            "must be at least 1",
        )?;
        let (second, day) = (Duration::from_secs(1), Duration::from_secs(86_400));
        let ms = Duration::from_millis(100);
        check_duration(
            "cluster.heartbeat",
            self.heartbeat,
            ms,
            Duration::from_secs(600),
        )?;
        check_duration("cluster.dead_after", self.dead_after, second, day)?;
        check(
            self.dead_after >= self.heartbeat * 2,
            "cluster.dead_after",
            "must be at least twice cluster.heartbeat, or live workers are dropped",
        )?;
        check(
            self.penalty != 0 && self.ban_score != 0,
            "cluster.ban_score",
            "penalty and ban_score must be at least 1",
        )?;
        check(
            (1..=64).contains(&self.verify_threads),
            "cluster.verify_threads",
            "must be 1 to 64",
        )?;
        let p = &self.pool;
        check_duration("cluster.pool.keepalive", p.keepalive, second, day)?;
        check_duration("cluster.pool.job_timeout", p.job_timeout, second, day)?;
        check_duration("cluster.pool.failback_every", p.failback_every, second, day)?;
        check_duration(
            "cluster.pool.login_timeout",
            p.login_timeout,
            ms,
            Duration::from_secs(600),
        )?;
        check_duration("cluster.pool.retry_max", p.retry_max, second, day)?;
        Ok(())
    }

    /// The share rules.
    pub fn rules(&self) -> Rules {
        Rules {
            share_difficulty: self.share_difficulty,
            dead_after: self.dead_after,
            penalty: self.penalty,
            ban_score: self.ban_score,
            ..Rules::default()
        }
    }

    /// The pools, parsed.
    fn pool_urls(&self) -> Result<Vec<PoolUrl>, Invalid> {
        if self.pool.address.is_empty() {
            return Err(Invalid::new(
                "cluster.pool.address",
                "name at least one pool",
            ));
        }
        self.pool
            .address
            .iter()
            .map(|a| a.parse::<PoolUrl>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Invalid::new("cluster.pool.address", e.to_string()))
    }

    /// The upstream settings, with the pool URLs parsed; a coordinator needs the wallet set.
    pub fn upstream(&self) -> Result<UpstreamConfig> {
        let urls = self.pool_urls()?;
        if self.pool.wallet.trim().is_empty() {
            return Err(
                Invalid::new("cluster.pool.wallet", "the cluster's login must be set").into(),
            );
        }
        Ok(UpstreamConfig {
            urls,
            wallet: self.pool.wallet.clone(),
            pass: self.pool.pass.clone(),
            tls_ca: self.pool.tls_ca.clone(),
            keepalive: self.pool.keepalive,
            job_timeout: self.pool.job_timeout,
            failback_every: self.pool.failback_every,
            login_timeout: self.pool.login_timeout,
            retry_max: self.pool.retry_max,
        })
    }
}

/// RandomX mode of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "lowercase")]
pub enum HashMode {
    /// The 2 GiB dataset: several times faster per thread.
    Fast,
    /// The 256 MiB cache only.
    Light,
}

impl HashMode {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// `[worker]`: one worker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// The coordinator's gRPC address, host:port.
    pub coordinator: String,
    /// The name in the coordinator's certificate, when not the host of `coordinator`.
    pub server_name: Option<String>,
    /// The worker's name: its certificate and key default to `<certs>/<name>.pem|key`.
    pub name: String,
    /// Folder of `ca.pem` and the worker's certificate (from `adit certs`).
    pub certs: PathBuf,
    /// The worker's certificate and key, when not in `certs`.
    pub tls: Option<TlsFiles>,
    /// The cluster CA, when not `<certs>/ca.pem`.
    pub ca: Option<PathBuf>,
    /// Hashing threads (0: one per core, the default).
    pub threads: usize,
    /// RandomX mode.
    pub mode: HashMode,
    /// Build RandomX's caches, datasets and VMs in large pages where the OS grants them (a
    /// clear log line, and normal pages, where it does not).
    pub huge_pages: bool,
    /// A file to append every nonce range hashed to (`job first last stride` per line), for
    /// audits of the nonce split.
    pub nonce_log: Option<PathBuf>,
    /// Longest wait between reconnection attempts.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            coordinator: "127.0.0.1:50051".into(),
            server_name: None,
            name: "worker".into(),
            certs: PathBuf::from("certs"),
            tls: None,
            ca: None,
            threads: 0,
            mode: HashMode::Fast,
            huge_pages: false,
            nonce_log: None,
            retry_max: Duration::from_secs(10),
        }
    }
}

impl WorkerConfig {
    /// The threads it hashes on: `threads`, or one per core when that is 0.
    pub fn hashing_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// Checks every value, naming the key; the key is the full one (`worker.threads`), so the
    /// caller adds no prefix.
    pub fn validate(&self) -> Checked {
        let (host, port) = self
            .coordinator
            .rsplit_once(':')
            .ok_or_else(|| Invalid::new("worker.coordinator", "expected host:port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(Invalid::new(
                "worker.coordinator",
                format!("{:?}: expected host:port", self.coordinator),
            ));
        }
        if !is_token(&self.name) {
            return Err(Invalid::new(
                "worker.name",
                format!("{:?}: use 1-64 letters, digits, '-' or '_'", self.name),
            ));
        }
        check(
            self.threads <= 1024,
            "worker.threads",
            "must be 0 (one per core) to 1024",
        )?;
        check_duration(
            "worker.retry_max",
            self.retry_max,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )
    }

    /// The worker's certificate and key.
    pub fn identity(&self) -> TlsFiles {
        self.tls.clone().unwrap_or_else(|| TlsFiles {
            cert: self.certs.join(format!("{}.pem", self.name)),
            key: self.certs.join(format!("{}.key", self.name)),
        })
    }

    /// The cluster CA.
    pub fn ca_path(&self) -> PathBuf {
        self.ca.clone().unwrap_or_else(|| self.certs.join("ca.pem"))
    }

    /// The host and the TLS name of the coordinator.
    pub fn server_name(&self) -> String {
        self.server_name.clone().unwrap_or_else(|| {
            let host = self
                .coordinator
                .rsplit_once(':')
                .map_or(self.coordinator.as_str(), |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cannot_work_naming_the_key() {
        let ok = ClusterConfig {
            pool: PoolSection {
                wallet: "w".into(),
                ..PoolSection::default()
            },
            ..ClusterConfig::default()
        };
        ok.validate().unwrap();
        let cases: Vec<(ClusterConfig, &str)> = vec![
            (
                ClusterConfig {
                    id: "a.b".into(),
                    ..ok.clone()
                },
                "cluster.id",
            ),
            (
                ClusterConfig {
                    share_difficulty: 0,
                    ..ok.clone()
                },
                "cluster.share_difficulty",
            ),
            (
                ClusterConfig {
                    dead_after: Duration::from_secs(6),
                    ..ok.clone()
                },
                "cluster.dead_after",
            ),
            (
                ClusterConfig {
                    pool: PoolSection {
                        address: vec!["http://x:1".into()],
                        ..ok.pool.clone()
                    },
                    ..ok.clone()
                },
                "cluster.pool.address",
            ),
            (
                ClusterConfig {
                    grpc: GrpcSection {
                        listen: "nowhere".into(),
                        ..ok.grpc.clone()
                    },
                    ..ok.clone()
                },
                "cluster.grpc.listen",
            ),
        ];
        let no_wallet = ClusterConfig::default();
        no_wallet.validate().unwrap();
        let err = no_wallet.upstream().unwrap_err().to_string();
        assert!(err.contains("cluster.pool.wallet"), "{err}");
        for (config, key) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, key, "{err} should name {key}");
        }
        let worker = WorkerConfig::default();
        worker.validate().unwrap();
        assert_eq!(worker.server_name(), "127.0.0.1");
        assert!(worker.hashing_threads() >= 1, "0 is one per core");
        let bad = WorkerConfig {
            threads: 1025,
            ..worker
        };
        assert_eq!(bad.validate().unwrap_err().key, "worker.threads");
    }
}
