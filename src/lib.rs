//! The `adit` process: subcommands, configuration, process wiring and the managed nats-server.
//!
//! Everything here is glue: the work is done by the library crates (`ingest`, `sinks`,
//! `pipelines`, `query`). This crate reads config (TOML, then `ADIT_*` environment, then flags),
//! validates it into a runtime [`config::Config`], connects or starts NATS, and runs the roles
//! the command asks for until Ctrl-C or SIGTERM.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod descriptors;
pub mod exporter;
pub mod health;
pub mod host;
pub mod logging;
pub mod metrics_catalog;
pub mod nats_server;
pub mod query;
pub mod roles;
pub mod services;
pub mod stalls;
pub mod wiring;

/// Runs a parsed command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let defaults = match cli.command {
        cli::Command::Demo(_) => config::DEMO_DEFAULTS,
        _ => &[],
    };
    let config = config::Config::load_over(&cli.global, defaults, std::env::vars())?;
    let default_level = if matches!(cli.command, cli::Command::Sql(_)) {
        "warn"
    } else {
        "info"
    };
    // Held to the end: dropping it writes what the log file has not yet.
    let _log = logging::init(&config.log, default_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(commands::dispatch(cli, config))
}
