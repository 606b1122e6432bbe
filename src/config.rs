//! Configuration: a TOML file, overridden by `ADIT_*` environment variables and flags, then
//! validated into one [`Config`] that is passed down explicitly. Errors name the key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::query::QueryConfig;
use adit_actuators::ActuatorsConfig;
use adit_alerts::AlertsConfig;
use adit_alerts::notify::NotifyConfig;
use adit_bus::StreamSettings;
use adit_config::{Checked, Invalid, check};
use adit_ingest::adapters::poll::AdaptersConfig;
use adit_ingest::simulate::SimConfig;
use adit_payments::PaymentsConfig;
use adit_pipelines::PipelinesConfig;
use adit_stratum::PoolConfig;
use anyhow::Context;
use serde::Deserialize;

use crate::cli::GlobalArgs;

/// NATS settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL, or a cluster's: a comma-separated string or a list of URLs; absent =
    /// start a managed nats-server.
    #[serde(deserialize_with = "one_or_many")]
    pub url: Option<String>,
    /// A `.creds` file for an operator-mode cluster (JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// PEM root certificates the servers must present a chain to (TLS is then required).
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Stream limits.
    pub streams: StreamSettings,
    /// The nats-server binary for the managed server (default: found on PATH or /usr/sbin).
    pub server_binary: Option<PathBuf>,
}

impl NatsConfig {
    /// How the client proves itself and checks the servers.
    pub fn auth(&self) -> adit_bus::NatsAuth {
        adit_bus::NatsAuth {
            credentials: self.credentials.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// A URL (`"nats://n1:4222,nats://n2:4222"`) or a list of them, as one comma-separated string.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match Urls::deserialize(deserializer)? {
        Urls::One(url) => url,
        Urls::Many(urls) => urls.join(","),
    }))
}

/// Table settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// Root folder or object-store URL; default `<data_dir>/tables`.
    pub root: Option<String>,
    /// Object-store options (e.g. `aws_region`, `aws_endpoint`, `aws_access_key_id`; the
    /// store's own server-side encryption: `aws_server_side_encryption`, `aws_sse_kms_key_id`,
    /// `aws_sse_customer_key_base64`).
    pub options: HashMap<String, String>,
    /// A file holding the key every table file, log entry and checkpoint is encrypted with
    /// (64 hexadecimal digits: `openssl rand -hex 32`); none: the tables are not encrypted.
    /// Without the key the files are unreadable, adit's included: keep it backed up apart.
    pub encryption_key_file: Option<PathBuf>,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Local state folder.
    pub data_dir: Option<PathBuf>,
    /// NATS.
    pub nats: NatsConfig,
    /// Tables.
    pub tables: TablesConfig,
    /// Pipelines.
    pub pipelines: PipelinesConfig,
    /// HTTP API.
    pub query: QueryConfig,
    /// Farm simulator.
    pub simulate: SimConfig,
    /// Stratum pool.
    pub pool: PoolConfig,
    /// Payments through monero-wallet-rpc.
    pub payments: PaymentsConfig,
    /// Device adapters (the `adapters` role).
    pub adapters: AdaptersConfig,
    /// Command actuators (the `actuators` role).
    pub actuators: ActuatorsConfig,
    /// Alert rules (the `alerts` role).
    pub alerts: AlertsConfig,
    /// Notifications (the `notify` role).
    pub notify: NotifyConfig,
    /// Where outbound requests may go, per purpose (devices, grid feeds, notifications).
    pub egress: adit_egress::EgressConfig,
    /// Compliance reports (the `compliance` role and `adit compliance`).
    pub compliance: adit_reports::ComplianceConfig,
    /// The cluster coordinator (`adit coordinator`).
    pub cluster: adit_coopmine::ClusterConfig,
    /// A cluster worker (`adit worker`).
    pub worker: adit_coopmine::WorkerConfig,
    /// Where the log goes.
    pub log: crate::logging::LogConfig,
    /// The vital signs sampled and the free space a volume needs.
    pub health: crate::health::HealthConfig,
    /// `/metrics`: on or off, and the environment label.
    pub metrics: crate::exporter::MetricsConfig,
    /// Backups (`adit backup` and the `backup` role).
    pub backup: adit_backup::BackupConfig,
    /// The file this config was read from (what a backup keeps).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// Prefix of the environment variables that set config keys: `ADIT_` then the dotted path
/// with `__` for each dot, e.g. `ADIT_PIPELINES__ENERGY__MAX_GAP=3m` sets
/// `pipelines.energy.max_gap`. Derived from the path, so every key is reachable.
pub const ENV_PREFIX: &str = "ADIT_";

/// `adit demo`'s own defaults ([`Config::load_over`]): its simulated devices report every
/// second (`simulate.interval`), so an energy minute is closed 10 s past its end rather than
/// the 2 minutes real devices' gaps need, and the first one shows within a minute of the start.
pub const DEMO_DEFAULTS: &[(&str, &str)] = &[("pipelines.energy.max_gap", "\"10s\"")];

impl Config {
    /// Reads the file (if any), applies the `ADIT_*__*` variables of `env` and the flags, and
    /// validates the result.
    pub fn load_from(
        args: &GlobalArgs,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        Self::load_over(args, &[], env)
    }

    /// [`Config::load_from`] over a command's own `defaults` (dotted key, TOML value), each
    /// taken only where the file leaves its key unset; the environment and flags still
    /// override it.
    pub fn load_over(
        args: &GlobalArgs,
        defaults: &[(&str, &str)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut tree = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in defaults {
            let path: Vec<String> = key.split('.').map(str::to_string).collect();
            if lookup(&tree, &path).is_none() {
                set_path(&mut tree, &path, value)
                    .with_context(|| format!("the command's default for {key}"))?;
            }
        }
        for (name, value) in env {
            if let Some(path) = env_key(&name) {
                set_path(&mut tree, &path, &value)
                    .with_context(|| format!("environment variable {name}"))?;
            }
        }
        let mut config: Config = toml::Value::Table(tree)
            .try_into()
            .context("configuration (file and ADIT_* variables)")?;
        config.file = args.config.clone();
        if let Some(d) = &args.data_dir {
            config.data_dir = Some(d.clone());
        }
        if let Some(u) = &args.nats_url {
            config.nats.url = Some(u.clone());
        }
        if let Some(t) = &args.tables {
            config.tables.root = Some(t.clone());
        }
        if let Some(l) = &args.listen {
            config.query.listen = l.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that parses but cannot work, naming the key. Call after every
    /// override. Each section checks its own values; the keys of the sections that name them
    /// relative to themselves get their section's name here.
    pub fn validate(&self) -> Checked {
        self.pipelines.validate()?;
        self.adapters.validate()?;
        self.signal_stale_outlasts_confirmations()?;
        self.actuators.validate()?;
        self.alerts.validate()?;
        self.notify.validate()?;
        self.compliance.validate()?;
        self.cluster.validate()?;
        self.worker.validate()?;
        self.backup.validate()?;
        self.validate_nats()?;
        self.validate_query()?;
        self.simulate.validate().map_err(|e| e.under("simulate"))?;
        self.pool.validate().map_err(|e| e.under("pool"))?;
        self.payments.validate()?;
        self.egress.validate()?;
        self.log.validate()?;
        self.metrics.validate()?;
        self.health.validate()
    }

    /// A grid feed with nothing new is confirmed only every `grid_confirm + interval +
    /// timeout`, so the controller must not call it silent sooner.
    fn signal_stale_outlasts_confirmations(&self) -> Checked {
        let Some(stale) = self.pipelines.curtailment.signal_stale else {
            return Ok(());
        };
        let quiet = self.adapters.grid_confirm + self.adapters.interval + self.adapters.timeout;
        check(
            self.adapters.grid.is_empty() || stale > quiet,
            "pipelines.curtailment.signal_stale",
            format!(
                "({stale:?}) must be more than adapters.grid_confirm + interval + timeout \
                 ({quiet:?}): a grid feed with nothing new is confirmed only that often, so the \
                 controller would call it silent between two confirmations"
            ),
        )
    }

    fn validate_nats(&self) -> Checked {
        let streams = &self.nats.streams;
        check(
            (1..=5).contains(&streams.replicas),
            "nats.streams.replicas",
            "must be between 1 and 5",
        )?;
        check(
            !streams.duplicate_window.is_zero(),
            "nats.streams.duplicate_window",
            "must be more than 0 (it is how retried publishes are stored once)",
        )?;
        if let Some(url) = &self.nats.url {
            adit_bus::setup::server_addrs(url).map_err(|e| {
                Invalid::new(
                    "nats.url",
                    format!("{e} (a URL like nats://host:4222, or several)"),
                )
            })?;
        }
        self.nats.auth().validate()
    }

    fn validate_query(&self) -> Checked {
        let query = &self.query;
        let listen = query.listen.parse::<SocketAddr>().map_err(|_| {
            Invalid::new(
                "query.listen",
                format!("{:?} is not an address like 127.0.0.1:8080", query.listen),
            )
        })?;
        query.origin_policy()?;
        query.ops_networks()?;
        check(
            (1..=1_000_000).contains(&query.custom_metric_series),
            "query.custom_metric_series",
            "must be from 1 to 1000000",
        )?;
        let tokens = query.tokens()?;
        check(
            tokens.enabled() || listen.ip().is_loopback(),
            "query.listen",
            format!(
                "{listen} can be reached from other machines, but no query.tokens are set, so \
                 anyone who reaches it could act as admin. Add tokens ([[query.tokens]] with \
                 name, token or sha256, and role read, operate or admin; `adit token new` makes \
                 one), or [query.jwt], or listen on 127.0.0.1"
            ),
        )?;
        let wire = [
            (
                "postgres",
                query.postgres.as_ref().map(|p| &p.listen),
                "5432",
            ),
            ("flight", query.flight.as_ref().map(|f| &f.listen), "8815"),
        ];
        for (section, listen, port) in wire {
            let Some(listen) = listen else { continue };
            let key = format!("query.{section}.listen");
            let addr = listen.parse::<SocketAddr>().map_err(|_| {
                Invalid::new(
                    &key,
                    format!("{listen:?} is not an address like 127.0.0.1:{port}"),
                )
            })?;
            check(
                tokens.enabled() || addr.ip().is_loopback(),
                &key,
                format!(
                    "{addr} can be reached from other machines, but no query.tokens are set, so \
                     anyone who reaches it could read every table. Add tokens (a client gives \
                     one as its password), or listen on 127.0.0.1"
                ),
            )?;
        }
        query.tls_acceptor()?;
        if let Some(node) = &query.node {
            check(
                node.starts_with("http://") || node.starts_with("https://"),
                "query.node",
                format!("{node:?} is not monerod's RPC URL like http://127.0.0.1:18081"),
            )?;
        }
        check(
            (1..=100_000).contains(&query.live_max_subscribers),
            "query.live_max_subscribers",
            format!("must be 1 to 100000, not {}", query.live_max_subscribers),
        )?;
        query.limits.validate()?;
        query.concurrency.validate()?;
        check(
            query.snapshot_refresh <= std::time::Duration::from_secs(3600),
            "query.snapshot_refresh",
            "must be at most 1h (it is how stale a table may be when a query starts)",
        )?;
        check(
            (1..=1_000).contains(&query.latest.keep),
            "query.latest.keep",
            format!("must be 1 to 1000 rows per key, not {}", query.latest.keep),
        )?;
        check(
            (1..=10_000_000).contains(&query.latest.max_keys),
            "query.latest.max_keys",
            format!("must be 1 to 10000000, not {}", query.latest.max_keys),
        )?;
        check(
            query.latest.seed <= std::time::Duration::from_secs(3600),
            "query.latest.seed",
            "must be at most 1h (every message stored that long before is read at a start)",
        )?;
        query.lockout.validate()?;
        if let Some(postgres) = &query.postgres {
            postgres.validate()?;
        }
        match &query.flight {
            Some(flight) => flight.validate(),
            None => Ok(()),
        }
    }

    /// The local state folder.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("adit-data"))
    }

    /// The ports of the addresses this config listens on (API, PostgreSQL, Flight SQL, pool,
    /// the cluster's gRPC and REST): a managed nats-server must not take one of them, or the
    /// listener that binds after it fails.
    pub fn listen_ports(&self) -> Vec<u16> {
        let query = &self.query;
        [
            Some(&query.listen),
            query.postgres.as_ref().map(|p| &p.listen),
            query.flight.as_ref().map(|f| &f.listen),
            Some(&self.pool.listen),
            Some(&self.cluster.grpc.listen),
            Some(&self.cluster.rest.listen),
        ]
        .into_iter()
        .flatten()
        .filter_map(|listen| listen.parse::<SocketAddr>().ok())
        .map(|addr| addr.port())
        .filter(|port| *port != 0)
        .collect()
    }

    /// Where compliance reports are written.
    pub fn reports_dir(&self) -> PathBuf {
        self.compliance
            .reports_dir
            .as_ref()
            .map_or_else(|| self.data_dir().join("reports"), PathBuf::from)
    }

    /// The tables: their root, the store's options and, when set, the key they are encrypted
    /// with.
    pub fn table_store(&self) -> anyhow::Result<adit_sinks::TableStore> {
        let store = adit_sinks::TableStore::new(&self.tables_root(), self.tables.options.clone())?;
        Ok(match &self.tables.encryption_key_file {
            None => store,
            Some(path) => store.encrypted(
                adit_sinks::AtRestKey::from_file(path)
                    .map_err(|e| anyhow::anyhow!("tables.encryption_key_file: {e}"))?,
            ),
        })
    }

    /// The table root.
    pub fn tables_root(&self) -> String {
        self.tables.root.clone().unwrap_or_else(|| {
            self.data_dir()
                .join("tables")
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// The config path an environment variable sets, if it is one of ours: `ADIT_A__B_C` →
/// `["a", "b_c"]`. Variables without `__` are the flags' own (`ADIT_NATS_URL`…).
fn env_key(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if !rest.contains("__") {
        return None;
    }
    Some(rest.split("__").map(str::to_ascii_lowercase).collect())
}

/// The value at `path` in `tree`, if it is there.
fn lookup<'t>(tree: &'t toml::Table, path: &[String]) -> Option<&'t toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = tree.get(first)?;
    match rest {
        [] => Some(value),
        _ => lookup(value.as_table()?, rest),
    }
}

/// Sets `path` in `tree` to `raw`, read as a TOML value when it is one (`5`, `true`,
/// `["a","b"]`) and as a string otherwise (`3m`, `0.0.0.0:8080`).
fn set_path(tree: &mut toml::Table, path: &[String], raw: &str) -> anyhow::Result<()> {
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = path.split_last().context("empty key")?;
    let mut node = tree;
    for (depth, key) in parents.iter().enumerate() {
        let entry = node
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .with_context(|| format!("{} is a value, not a section", path[..=depth].join(".")))?;
    }
    node.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_readme_example_config_is_valid() {
        let example = include_str!("../docs/src/reference/adit.example.toml");
        let config: Config = toml::from_str(example).expect("adit.example.toml parses");
        config.validate().expect("adit.example.toml validates");
        assert_eq!(config.pipelines.batch_max_rows, 50_000);
        assert_eq!(config.query.tokens.len(), 2);
        let tokens = config.query.tokens().unwrap();
        let grafana = tokens
            .identify(Some("Bearer a-long-random-secret"))
            .unwrap();
        assert_eq!(grafana.name, "grafana");
    }

    /// A cluster's servers as a TOML list or one comma-separated string come out the same.
    #[test]
    fn a_cluster_is_a_list_or_a_comma_separated_url() {
        let list: Config =
            toml::from_str("[nats]\nurl = [\"nats://n1:4222\", \"nats://n2:4222\"]\n").unwrap();
        let text: Config =
            toml::from_str("[nats]\nurl = \"nats://n1:4222,nats://n2:4222\"\n").unwrap();
        assert_eq!(
            list.nats.url.as_deref(),
            Some("nats://n1:4222,nats://n2:4222")
        );
        assert_eq!(list, text);
        list.validate().unwrap();
        assert_eq!(
            Config::default().nats.url,
            None,
            "absent: the managed server"
        );
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let err = toml::from_str::<Config>("[pipelines]\nbatch_max_rowz = 5\n").unwrap_err();
        assert!(err.to_string().contains("batch_max_rowz"), "{err}");
        let c: Config = toml::from_str("[pipelines]\nbatch_max_rows = 0\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("pipelines.batch_max_rows")
        );
        let c: Config = toml::from_str("[query]\nlisten = \"nowhere\"\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("query.listen")
        );
        let c: Config = toml::from_str("[query]\npublic_url = \"adit.example\"\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("query.public_url")
        );
        let c: Config = toml::from_str(
            "[pipelines]\nbatch_max_wait = \"250ms\"\n[nats.streams]\nmax_age = \"30d\"\n",
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.nats.streams.max_age.as_secs(), 30 * 86400);
    }

    /// Every address adit listens on is a port the managed nats-server keeps clear of.
    #[test]
    fn every_listen_port_is_listed() {
        let c: Config = toml::from_str(
            "[query]\nlisten = \"127.0.0.1:1001\"\n\
             [query.postgres]\nlisten = \"127.0.0.1:1002\"\n\
             [query.flight]\nlisten = \"127.0.0.1:1003\"\n\
             [pool]\nlisten = \"127.0.0.1:1004\"\n\
             [cluster.grpc]\nlisten = \"0.0.0.0:1005\"\n\
             [cluster.rest]\nlisten = \"127.0.0.1:1006\"\n",
        )
        .unwrap();
        let mut ports = c.listen_ports();
        ports.sort_unstable();
        assert_eq!(ports, [1001, 1002, 1003, 1004, 1005, 1006]);
    }

    /// Without tokens everyone is admin, so only this machine may reach the API (issue 23).
    #[test]
    fn an_open_api_listens_only_on_loopback() {
        let open = |listen: &str| {
            toml::from_str::<Config>(&format!("[query]\nlisten = \"{listen}\"\n"))
                .unwrap()
                .validate()
        };
        for local in ["127.0.0.1:8080", "[::1]:8080"] {
            assert!(open(local).is_ok(), "{local}");
        }
        for reachable in ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:8080"] {
            let e = open(reachable).unwrap_err().to_string();
            assert!(e.contains("query.tokens") && e.contains("127.0.0.1"), "{e}");
        }
        let guarded: Config = toml::from_str(
            "[query]\nlisten = \"0.0.0.0:8080\"\n\
             tokens = [{ name = \"ops\", token = \"a-long-random-secret\", role = \"admin\" }]\n",
        )
        .unwrap();
        assert!(guarded.validate().is_ok());
    }

    fn args(file: Option<&Path>) -> GlobalArgs {
        GlobalArgs {
            config: file.map(Path::to_path_buf),
            data_dir: None,
            nats_url: None,
            tables: None,
            listen: None,
        }
    }

    /// Every value that used to panic or spin is refused at start with its key (issue 6).
    #[test]
    fn bad_values_are_refused_naming_their_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[pool.server.vardiff]\nmin_difficulty = 5000\nmax_difficulty = 100\n",
                "pool.server.vardiff",
            ),
            ("[pool]\ntip_poll = \"0s\"\n", "pool.tip_poll"),
            ("[pool]\nrefresh = \"0s\"\n", "pool.refresh"),
            ("[pool]\nlisten = \"nowhere\"\n", "pool.listen"),
            ("[pool]\nsim_difficulty = 0\n", "pool.sim_difficulty"),
            (
                "[pool.server]\nstart_difficulty = 0\n",
                "pool.server.start_difficulty",
            ),
            ("[pool.server]\nmax_line = 0\n", "pool.server.max_line"),
            ("[pool.server]\npool = \"a.b\"\n", "pool.server.pool"),
            (
                "[pool.server]\nidle_timeout = \"0s\"\n",
                "pool.server.idle_timeout",
            ),
            (
                "[pool.server.vardiff]\ntarget_share_time_ms = 0\n",
                "pool.server.vardiff",
            ),
            (
                "[pool.server.limits]\nsubmits_per_s = 0.0\n",
                "pool.server.limits.submits_per_s",
            ),
            (
                "[pool.server.limits]\nlogins_per_s = nan\n",
                "pool.server.limits.logins_per_s",
            ),
            (
                "[pool.server.limits]\nban_for = \"0s\"\n",
                "pool.server.limits.ban_for",
            ),
            (
                "[pool.server.limits]\nmax_per_ip = 0\n",
                "pool.server.limits.max_per_ip",
            ),
            ("[simulate]\ninterval = \"0s\"\n", "simulate.interval"),
            (
                "[simulate]\nmachines_per_site = 0\n",
                "simulate.machines_per_site",
            ),
            (
                "[pipelines]\nbatch_max_rows = 0\n",
                "pipelines.batch_max_rows",
            ),
            (
                "[pipelines]\nbatch_max_wait = \"0s\"\n",
                "pipelines.batch_max_wait",
            ),
            ("[pipelines]\nlease_ttl = \"0s\"\n", "pipelines.lease_ttl"),
            (
                "[pipelines.energy]\ntick = \"0s\"\n",
                "pipelines.energy.tick",
            ),
            (
                "[pipelines.energy]\nmax_gap = \"0s\"\n",
                "pipelines.energy.max_gap",
            ),
            (
                "[pipelines.energy]\ngrace = \"10m\"\nidle = \"1m\"\n",
                "pipelines.energy.idle",
            ),
            (
                "[pipelines.maintenance]\nvacuum_retention = \"0s\"\n",
                "pipelines.maintenance",
            ),
            (
                "[pipelines.partitions]\ntelemetry = []\n",
                "pipelines.partitions.telemetry",
            ),
            (
                "[pipelines.partitions]\nnope = [\"a\"]\n",
                "pipelines.partitions.nope",
            ),
            (
                "[pipelines.partitions]\ntelemetry = [\"a.b\"]\n",
                "pipelines.partitions.telemetry",
            ),
            ("[nats.streams]\nreplicas = 0\n", "nats.streams.replicas"),
            ("[nats]\nurl = \"nats://n1:4222,nats://n2:x\"\n", "nats.url"),
            ("[nats]\nurl = []\n", "nats.url"),
            ("[nats]\ncert = \"/etc/hostname\"\n", "nats.cert"),
            (
                "[nats.streams]\nduplicate_window = \"0s\"\n",
                "nats.streams.duplicate_window",
            ),
            ("[query.limits]\ntimeout = \"0s\"\n", "query.limits.timeout"),
            ("[query.limits]\nmax_rows = 0\n", "query.limits.max_rows"),
            (
                "[query.limits]\npartitions = 5000\n",
                "query.limits.partitions",
            ),
            (
                "[query]\nsnapshot_refresh = \"2h\"\n",
                "query.snapshot_refresh",
            ),
            (
                "[pipelines.pplns]\nfee_bps = 10000\n",
                "pipelines.pplns.fee_bps",
            ),
            (
                "[pipelines.pplns.pools.p1]\nfee_bps = 12000\n",
                "pipelines.pplns.pools.p1.fee_bps",
            ),
            (
                "[pipelines.pplns]\nmax_window_shares = 0\n",
                "pipelines.pplns.max_window_shares",
            ),
            (
                "[pool]\nmetrics_per_miner = 100000\n",
                "pool.metrics_per_miner",
            ),
            ("[pool]\nconfirmations = 0\n", "pool.confirmations"),
            (
                "[pool]\nchain = \"opensy\"\nnode = \"http://127.0.0.1:19642\"\nwallet = \"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A\"\n",
                "pool.wallet",
            ),
            ("[pool]\nnode = \"127.0.0.1:18081\"\n", "pool.node"),
            (
                "[pool.rpc]\nuser = \"u\"\ncookie = \"/tmp/.cookie\"\n",
                "pool.rpc.user",
            ),
            ("[pool.rpc]\npassword = \"p\"\n", "pool.rpc.password"),
            (
                "[pipelines.hashrate]\nidle = \"10s\"\n",
                "pipelines.hashrate.idle",
            ),
            (
                "[adapters]\ngrid_confirm = \"0s\"\n",
                "adapters.grid_confirm",
            ),
            (
                "[adapters]\ngrid_confirm = \"2m\"\n[[adapters.grid]]\nsite = \"s1\"\nkind = \"signal\"\n\
                 url = \"https://coop.example/power-signal\"\n\
                 [adapters.grid.map]\nformat = \"text\"\ntarget_kw = 5.0\n\
                 [pipelines.curtailment]\nsignal_stale = \"1m\"\n",
                "pipelines.curtailment.signal_stale",
            ),
            (
                "[[adapters.grid]]\nsite = \"s1\"\nkind = \"signal\"\nurl = \"https://coop.example/x\"\n\
                 [adapters.grid.map]\nformat = \"json\"\nsignal = \"state\"\ntarget_kw = 5.0\n",
                "adapters.grid[0].map.signal",
            ),
        ];
        for (toml_text, key) in cases {
            let config: Config =
                toml::from_str(toml_text).unwrap_or_else(|e| panic!("{toml_text}: {e}"));
            let err = config.validate().expect_err(toml_text).to_string();
            assert!(
                err.contains(key),
                "{toml_text:?} should name {key}, said: {err}"
            );
            eprintln!("{key:<40} {err}");
        }
    }

    #[test]
    fn every_key_is_reachable_from_the_environment_and_validated_after() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let config = Config::load_from(
            &args(None),
            env(&[
                ("ADIT_PIPELINES__ENERGY__MAX_GAP", "3m"),
                ("ADIT_POOL__SERVER__VARDIFF__MIN_DIFFICULTY", "77"),
                (
                    "ADIT_PIPELINES__PARTITIONS__TELEMETRY",
                    "[\"site-01\", \"site-02\"]",
                ),
                ("ADIT_QUERY__LISTEN", "127.0.0.1:9999"),
                ("ADIT_NATS_URL", "ignored: a flag's variable, read by clap"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(config.pipelines.energy.max_gap.as_secs(), 180);
        assert_eq!(config.pool.server.vardiff.min_difficulty, 77);
        assert_eq!(
            config.pipelines.partitions["telemetry"],
            vec!["site-01", "site-02"]
        );
        assert_eq!(config.query.listen, "127.0.0.1:9999");
        // Overrides are validated like the file is.
        let err = Config::load_from(&args(None), env(&[("ADIT_POOL__TIP_POLL", "0s")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pool.tip_poll"), "{err}");
        // A misspelt key is an error naming it, not silently ignored.
        let err = format!(
            "{:#}",
            Config::load_from(&args(None), env(&[("ADIT_PIPELINES__BATCH_MAX_ROWZ", "5")]))
                .unwrap_err()
        );
        assert!(err.contains("batch_max_rowz"), "{err}");
        // A query engine that is neither local nor a scheduler is refused as it is read.
        let err = format!(
            "{:#}",
            Config::load_from(
                &args(None),
                env(&[("ADIT_QUERY__ENGINE", "http://scheduler:50050")])
            )
            .unwrap_err()
        );
        assert!(err.contains("query.engine"), "{err}");
        // The environment overrides the file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("adit.toml");
        std::fs::write(&file, "[pipelines]\nbatch_max_rows = 10\n").unwrap();
        let config = Config::load_from(
            &args(Some(&file)),
            env(&[("ADIT_PIPELINES__BATCH_MAX_ROWS", "20")]),
        )
        .unwrap();
        assert_eq!(config.pipelines.batch_max_rows, 20);
    }

    /// A command's defaults (the demo's) sit under the file and the environment: taken where
    /// neither sets the key, and only there.
    #[test]
    fn a_commands_defaults_give_way_to_the_file_and_the_environment() {
        let gap = |args: &GlobalArgs, env: &[(&str, &str)]| {
            let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            Config::load_over(args, DEMO_DEFAULTS, env)
                .unwrap()
                .pipelines
                .energy
                .max_gap
                .as_secs()
        };
        assert_eq!(gap(&args(None), &[]), 10, "the demo's own");
        assert_eq!(
            Config::load_from(&args(None), std::iter::empty())
                .unwrap()
                .pipelines
                .energy
                .max_gap
                .as_secs(),
            120,
            "everyone else's default"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("adit.toml");
        std::fs::write(&file, "[pipelines.energy]\nmax_gap = \"45s\"\n").unwrap();
        assert_eq!(gap(&args(Some(&file)), &[]), 45, "the file's");
        let env = [("ADIT_PIPELINES__ENERGY__MAX_GAP", "50s")];
        assert_eq!(gap(&args(Some(&file)), &env), 50, "the environment's");
        // A file with the section but not the key still gets the default.
        std::fs::write(&file, "[pipelines.energy]\ngrace = \"6s\"\n").unwrap();
        assert_eq!(gap(&args(Some(&file)), &[]), 10);
    }
}
