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
pub mod metrics_catalog;
pub mod nats_server;
pub mod wiring;

/// Runs a parsed command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    init_tracing(&cli);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(commands::dispatch(cli))
}

fn init_tracing(cli: &cli::Cli) {
    let default = if matches!(cli.command, cli::Command::Sql(_)) {
        "warn"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ADIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},datafusion=warn,deltalake=warn,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn,async_nats=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
