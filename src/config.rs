//! Configuration: a TOML file, overridden by `ADIT_*` environment variables and flags, then
//! validated into one [`Config`] that is passed down explicitly. Errors name the key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use adit_ingest::StreamSettings;
use adit_ingest::simulate::SimConfig;
use adit_pipelines::PipelinesConfig;
use adit_query::QueryConfig;
use adit_stratum::PoolConfig;
use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::GlobalArgs;

/// NATS settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server or cluster URL; absent = start a managed nats-server.
    pub url: Option<String>,
    /// Stream limits.
    pub streams: StreamSettings,
    /// The nats-server binary for the managed server (default: found on PATH or /usr/sbin).
    pub server_binary: Option<PathBuf>,
}

/// Table settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// Root folder or object-store URL; default `<data_dir>/tables`.
    pub root: Option<String>,
    /// Object-store options (e.g. `aws_region`, `aws_endpoint`, `aws_access_key_id`).
    pub options: HashMap<String, String>,
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
}

impl Config {
    /// Reads the file (if any), applies environment and flags, and validates.
    pub fn load(args: &GlobalArgs) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
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

    /// Parses a TOML file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.pipelines.batch_max_rows == 0 {
            bail!("pipelines.batch_max_rows must be at least 1");
        }
        if self.pipelines.batch_max_wait.is_zero() {
            bail!("pipelines.batch_max_wait must be more than 0");
        }
        if self.nats.streams.replicas == 0 || self.nats.streams.replicas > 5 {
            bail!("nats.streams.replicas must be between 1 and 5");
        }
        if self.query.listen.parse::<SocketAddr>().is_err() {
            bail!(
                "query.listen {:?} is not an address like 127.0.0.1:8080",
                self.query.listen
            );
        }
        if self.query.limits.max_rows == 0 {
            bail!("query.limits.max_rows must be at least 1");
        }
        if self.query.limits.memory_bytes < 1024 * 1024 {
            bail!("query.limits.memory_bytes must be at least 1 MiB");
        }
        if self.simulate.sites == 0 || self.simulate.interval.is_zero() {
            bail!("simulate.sites must be at least 1 and simulate.interval more than 0");
        }
        for (i, t) in self.query.tokens.iter().enumerate() {
            if t.token.len() < 16 {
                bail!(
                    "query.tokens[{i}].token ({}) must be at least 16 characters",
                    t.name
                );
            }
        }
        if let Some(url) = &self.nats.url
            && !(url.starts_with("nats://") || url.starts_with("tls://") || url.contains(':'))
        {
            bail!("nats.url {url:?} is not a NATS URL like nats://host:4222");
        }
        Ok(())
    }

    /// The local state folder.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("adit-data"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_config_is_valid() {
        let readme = include_str!("../README.md");
        let start =
            readme.find("```toml\n").expect("README has a TOML example") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("closed block");
        let config: Config =
            toml::from_str(&readme[start..end]).expect("the README's config parses");
        config.validate().expect("the README's config validates");
        assert_eq!(config.pipelines.batch_max_rows, 20_000);
        assert_eq!(config.query.tokens.len(), 1);
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
        let c: Config = toml::from_str(
            "[pipelines]\nbatch_max_wait = \"250ms\"\n[nats.streams]\nmax_age = \"30d\"\n",
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.nats.streams.max_age.as_secs(), 30 * 86400);
    }
}
