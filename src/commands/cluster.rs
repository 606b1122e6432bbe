//! `adit coordinator`, `adit worker` and `adit certs`: the cluster's flags applied over the
//! config (then validated again), and the certificate tool's report.

use adit_coopmine::certs::{CertsPlan, make};
use adit_coopmine::{HashMode, WorkerConfig};
use anyhow::Context;

use crate::cli::{CertsArgs, CoordinatorArgs, WorkerArgs};
use crate::config::Config;

/// The config with `adit coordinator`'s flags applied, validated.
pub(super) fn coordinator_config(
    mut config: Config,
    args: CoordinatorArgs,
) -> anyhow::Result<Config> {
    let cluster = &mut config.cluster;
    if let Some(id) = args.cluster {
        cluster.id = id;
    }
    if !args.pool.is_empty() {
        cluster.pool.address = args.pool;
    }
    if let Some(wallet) = args.wallet {
        cluster.pool.wallet = wallet;
    }
    if let Some(listen) = args.grpc_listen {
        cluster.grpc.listen = listen;
    }
    if let Some(listen) = args.rest_listen {
        cluster.rest.listen = listen;
    }
    if let Some(dir) = args.certs {
        cluster.grpc.cert = dir.join("coordinator.pem");
        cluster.grpc.key = dir.join("coordinator.key");
        cluster.grpc.ca = dir.join("ca.pem");
    }
    config.validate()?;
    config.cluster.upstream()?;
    Ok(config)
}

/// `[worker]` with `adit worker`'s flags applied, validated.
pub(super) fn worker_config(config: &Config, args: WorkerArgs) -> anyhow::Result<WorkerConfig> {
    let mut worker = config.worker.clone();
    if let Some(c) = args.coordinator {
        worker.coordinator = c;
    }
    if let Some(t) = args.threads {
        worker.threads = t;
    }
    if let Some(n) = args.name {
        worker.name = n;
    }
    if let Some(c) = args.certs {
        worker.certs = c;
    }
    if args.light {
        worker.mode = HashMode::Light;
    }
    if args.server_name.is_some() {
        worker.server_name = args.server_name;
    }
    worker.validate()?;
    Ok(worker)
}

/// `adit worker --pool URL --login LOGIN`: `worker.threads` light-mode threads mining the pool
/// until Ctrl-C or SIGTERM, each logged in as `LOGIN` (its worker name suffixed with the
/// thread's number when there are several); prints the accepted shares.
pub(super) async fn mine_pool(
    config: &Config,
    args: WorkerArgs,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let url: adit_stratum::PoolUrl = args.pool.as_deref().unwrap_or_default().parse()?;
    let login = args.login.unwrap_or_default();
    let threads = match args.threads {
        Some(t) if t > 0 => t,
        _ => config.worker.hashing_threads(),
    };
    let mut miners = Vec::new();
    for i in 0..threads {
        let login = match (threads, login.split_once('.')) {
            (1, _) => login.clone(),
            (_, Some((address, worker))) => format!("{address}.{worker}-{i}"),
            (_, None) => format!("{login}.t{i}"),
        };
        let (url, stop) = (url.clone(), shutdown.clone());
        // Each miner blocks its thread (RandomX VMs are not `Send`).
        miners.push(tokio::task::spawn_blocking(move || {
            adit_stratum::mine_pool(&url, &Default::default(), &login, stop)
        }));
    }
    eprintln!("adit worker: {threads} thread(s) mining {url}");
    let mut accepted = 0;
    for miner in miners {
        match miner.await? {
            Ok(n) => accepted += n,
            Err(e) => tracing::warn!(error = %e, "a mining thread ended"),
        }
    }
    println!("accepted shares: {accepted}");
    Ok(())
}

/// Writes the certificates and says where.
pub(super) fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.server.is_empty() || !args.worker.is_empty(),
        "name the coordinator's host (--server) or at least one worker (--worker)"
    );
    let written = make(&CertsPlan {
        out: args.out.clone(),
        server_names: args.server.clone(),
        workers: args.worker.clone(),
        cluster: args.cluster.clone(),
    })
    .context("making the cluster's certificates")?;
    if written.reused_ca {
        println!("reused the CA in {}", args.out.display());
    }
    for file in &written.files {
        println!("wrote {}", file.display());
    }
    Ok(())
}
