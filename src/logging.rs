//! Where adit's log goes (`[log]`): standard error and/or a file rotated hourly or daily with
//! the newest `keep` files kept, as text or JSON (one object per line, for a log shipper).
//! Colour codes only on a terminal. `ADIT_LOG` (an `EnvFilter` directive) overrides `level`.
//! The file is written by a background thread that never drops a line: when it falls behind,
//! logging waits.

use std::io::IsTerminal;
use std::path::PathBuf;

use adit_config::{Checked, Invalid, check};
use anyhow::Context;
use serde::Deserialize;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Filters that keep the libraries' chatter out of an `info` log.
const QUIET_LIBRARIES: &str = "datafusion=warn,deltalake=warn,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn,async_nats=warn";

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the fields.
    Json,
}

/// When the file starts anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogRotation {
    /// Every hour.
    Hourly,
    /// Every day (UTC).
    Daily,
    /// Never: one file that grows.
    Never,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Text or JSON, for every destination.
    pub format: LogFormat,
    /// Write to standard error.
    pub stderr: bool,
    /// Also write to this file: `/var/log/adit/adit.log` becomes `adit.<date>.log` files in
    /// `/var/log/adit` (created if missing).
    pub file: Option<PathBuf>,
    /// When the file starts anew.
    pub rotation: LogRotation,
    /// Rotated files kept (1 to 1000); older ones are deleted.
    pub keep: usize,
    /// Level and per-target filters (`info`, `debug`, `info,adit_stratum=debug`); `ADIT_LOG`
    /// overrides it. Default: `info` (`warn` for `adit sql`).
    pub level: Option<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            stderr: true,
            file: None,
            rotation: LogRotation::Daily,
            keep: 14,
            level: None,
        }
    }
}

impl LogConfig {
    /// Checks every value, naming the key.
    pub fn validate(&self) -> Checked {
        check(
            self.stderr || self.file.is_some(),
            "log.file",
            "must be set when log.stderr = false, or nothing is logged anywhere",
        )?;
        check(
            (1..=1000).contains(&self.keep),
            "log.keep",
            format!("must be 1 to 1000 files, not {}", self.keep),
        )?;
        if let Some(file) = &self.file {
            check(
                file.file_name().is_some(),
                "log.file",
                format!("{} names no file", file.display()),
            )?;
        }
        if let Some(level) = &self.level
            && let Err(e) = EnvFilter::try_new(level)
        {
            return Err(Invalid::new(
                "log.level",
                format!("{level:?} is not a filter like info or info,adit_stratum=debug ({e})"),
            ));
        }
        Ok(())
    }

    /// The filter: `ADIT_LOG`, else `level`, else `default_level` with the libraries quiet.
    fn filter(&self, default_level: &str) -> anyhow::Result<EnvFilter> {
        if let Ok(filter) = EnvFilter::try_from_env("ADIT_LOG") {
            return Ok(filter);
        }
        let directive = match &self.level {
            Some(level) => level.clone(),
            None => format!("{default_level},{QUIET_LIBRARIES}"),
        };
        EnvFilter::try_new(&directive).with_context(|| format!("log.level {directive:?}"))
    }

    /// The rotated file appender, creating its folder.
    fn appender(&self, file: &std::path::Path) -> anyhow::Result<RollingFileAppender> {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("log.file: creating {}", dir.display()))?;
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "adit".into());
        let mut builder = RollingFileAppender::builder()
            .rotation(match self.rotation {
                LogRotation::Hourly => Rotation::HOURLY,
                LogRotation::Daily => Rotation::DAILY,
                LogRotation::Never => Rotation::NEVER,
            })
            .filename_prefix(stem)
            .max_log_files(self.keep);
        if let Some(ext) = file.extension() {
            builder = builder.filename_suffix(ext.to_string_lossy().into_owned());
        }
        builder
            .build(&dir)
            .with_context(|| format!("log.file: opening a log file in {}", dir.display()))
    }
}

/// Keeps the file writer running; dropping it writes what is left.
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// One destination's layer in `format`.
fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base.json().flatten_event(true).boxed(),
    }
}

/// Installs the log as `config` says; `default_level` when neither `ADIT_LOG` nor
/// `log.level` is set. Hold the guard until the process ends.
pub fn init(config: &LogConfig, default_level: &str) -> anyhow::Result<LogGuard> {
    let mut layers = Vec::new();
    if config.stderr {
        let ansi = config.format == LogFormat::Text && std::io::stderr().is_terminal();
        layers.push(layer(config.format, std::io::stderr, ansi));
    }
    let mut guard = None;
    if let Some(file) = &config.file {
        let (writer, worker) = NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("adit-log")
            .finish(config.appender(file)?);
        layers.push(layer(config.format, writer, false));
        guard = Some(worker);
    }
    let installed = tracing_subscriber::registry()
        .with(layers)
        .with(config.filter(default_level)?)
        .try_init();
    if let Err(e) = installed {
        // Only a second init in one process (tests) gets here; the first one stays.
        eprintln!("adit: the log was already set up: {e}");
    }
    Ok(LogGuard { _writer: guard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_log_nowhere_or_cannot_parse_are_refused() {
        let nowhere = LogConfig {
            stderr: false,
            ..LogConfig::default()
        };
        assert!(
            nowhere
                .validate()
                .unwrap_err()
                .to_string()
                .contains("log.file")
        );
        let hoarder = LogConfig {
            keep: 0,
            ..LogConfig::default()
        };
        assert!(
            hoarder
                .validate()
                .unwrap_err()
                .to_string()
                .contains("log.keep")
        );
        let garbled = LogConfig {
            level: Some("info,=[".into()),
            ..LogConfig::default()
        };
        assert!(
            garbled
                .validate()
                .unwrap_err()
                .to_string()
                .contains("log.level")
        );
        assert!(LogConfig::default().validate().is_ok());
    }

    #[test]
    fn the_file_appender_writes_into_its_folder() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            file: Some(dir.path().join("logs/adit.log")),
            rotation: LogRotation::Never,
            ..LogConfig::default()
        };
        let mut appender = config.appender(config.file.as_deref().unwrap()).unwrap();
        writeln!(appender, "a line").unwrap();
        appender.flush().unwrap();
        let written = std::fs::read_to_string(dir.path().join("logs/adit.log")).unwrap();
        assert_eq!(written, "a line\n");
    }
}
