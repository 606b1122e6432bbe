//! One function per subcommand.

mod backup;
mod cluster;
mod compliance;
mod control;
pub mod replay;
mod selftest;
mod sql;
mod token;
mod verify;

use std::time::Duration;

use adit_ingest::simulate::{Farm, SimConfig};
use tokio_util::sync::CancellationToken;

use crate::cli::{BenchWhat, Cli, Command, ReplayWhat, Role, SimulateArgs};
use crate::config::Config;
use crate::wiring;

/// Runs the parsed command.
pub async fn dispatch(cli: Cli, config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    match cli.command {
        Command::Demo(args) => {
            let mut config = config;
            if let Some(c) = args.chain {
                config.pool.chain = c.into();
            }
            demo(&config, args.duration, shutdown).await
        }
        Command::Run(args) => {
            wiring::cancel_on_signal(shutdown.clone());
            wiring::run_roles(&config, &args.roles, config.simulate.clone(), shutdown).await
        }
        Command::Pipelines => {
            wiring::cancel_on_signal(shutdown.clone());
            wiring::run_roles(
                &config,
                &[Role::Pipelines],
                config.simulate.clone(),
                shutdown,
            )
            .await
        }
        Command::Query => {
            wiring::cancel_on_signal(shutdown.clone());
            wiring::run_roles(&config, &[Role::Query], config.simulate.clone(), shutdown).await
        }
        Command::Pool(args) => {
            let mut config = config;
            if let Some(c) = args.chain {
                config.pool.chain = c.into();
            }
            if let Some(n) = args.node {
                config.pool.node = n;
            }
            if let Some(w) = args.wallet {
                config.pool.wallet = w;
            }
            if let Some(l) = args.stratum_listen {
                config.pool.listen = l;
            }
            config.validate()?;
            wiring::cancel_on_signal(shutdown.clone());
            wiring::run_roles(
                &config,
                &[Role::Pool, Role::Query],
                config.simulate.clone(),
                shutdown,
            )
            .await
        }
        Command::Simulate(args) => simulate(&config, &args, shutdown).await,
        Command::Sql(args) => sql::run(&config, &args).await,
        Command::Compliance(args) => compliance::run(&config, &args).await,
        Command::Coordinator(args) => {
            let config = cluster::coordinator_config(config, args)?;
            wiring::cancel_on_signal(shutdown.clone());
            wiring::run_roles(
                &config,
                &[Role::Coordinator],
                config.simulate.clone(),
                shutdown,
            )
            .await
        }
        Command::Worker(args) if args.pool.is_some() => {
            wiring::cancel_on_signal(shutdown.clone());
            cluster::mine_pool(&config, args, shutdown).await
        }
        Command::Worker(args) => {
            let worker = cluster::worker_config(&config, args)?;
            wiring::cancel_on_signal(shutdown.clone());
            adit_coopmine::run_worker(worker, shutdown).await?;
            Ok(())
        }
        Command::Certs(args) => cluster::certs(&args),
        Command::Token(args) => token::run(&args),
        Command::Backup(args) => backup::backup(&config, &args).await,
        Command::Restore(args) => backup::restore(&config, &args).await,
        Command::Payments(args) => backup::payments(&config, &args).await,
        Command::Verify(args) => verify::run(&args).await,
        Command::Selftest(args) => selftest::run(&config, &args).await,
        Command::Control(args) => control::run(&config, &args).await,
        Command::Replay(args) => match args.what {
            ReplayWhat::Decisions(args) => replay::decisions(&config, &args).await,
        },
        Command::Bench(args) => match args.what {
            BenchWhat::Ingest {
                events,
                rate,
                latency_for,
                rounds,
            } => {
                crate::bench::ingest(&config, events, rate, latency_for, usize::from(rounds)).await
            }
            BenchWhat::Pool {
                threads,
                connections,
                shares,
                rounds,
                mut idle,
                probes,
                probe_shares,
                servers,
            } => {
                idle.sort_unstable();
                crate::bench::pool(crate::bench::PoolBench {
                    threads,
                    connections,
                    shares,
                    rounds: usize::from(rounds),
                    idle,
                    probes,
                    probe_shares,
                    servers: usize::from(servers),
                })
                .await
            }
            BenchWhat::IdleClients {
                addr,
                offset,
                stride,
            } => crate::bench::idle_clients(addr, offset, stride).await,
            BenchWhat::PoolServer {
                port,
                threads,
                admit,
            } => crate::bench::pool_server(port, threads, admit).await,
            BenchWhat::Cluster {
                workers,
                threads,
                seconds,
                difficulty,
                light,
            } => {
                crate::bench::cluster(crate::bench::ClusterBench {
                    workers,
                    threads,
                    seconds,
                    difficulty,
                    light,
                })
                .await
            }
            BenchWhat::Split {
                shares,
                miners,
                rounds,
            } => crate::bench::split_bench(shares, miners, rounds),
        },
    }
}

fn sim_config(config: &Config, args: &SimulateArgs) -> SimConfig {
    let mut sim = config.simulate.clone();
    if let Some(s) = args.seed {
        sim.seed = s;
    }
    if let Some(s) = args.sites {
        sim.sites = s;
    }
    if let Some(m) = args.machines {
        sim.machines_per_site = m;
    }
    if let Some(i) = args.interval {
        sim.interval = i;
    }
    if let Some(m) = args.pool_miners {
        sim.pool_miners = m;
    }
    if let Some(b) = args.block_every {
        sim.block_every = b;
    }
    sim
}

async fn simulate(
    config: &Config,
    args: &SimulateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    wiring::cancel_on_signal(shutdown.clone());
    let services = crate::services::connect(config).await?;
    let mut sim = sim_config(config, args);
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate > 0.0 && rate.is_finite(),
            "--rate must be a positive number of events per second"
        );
        let per_tick = Farm::new(sim.clone()).events_per_tick() as f64;
        sim.interval = Duration::try_from_secs_f64(per_tick / rate).unwrap_or(Duration::ZERO);
    }
    sim.validate()
        .map_err(|e| anyhow::anyhow!("{} (from the flags)", e.under("simulate")))?;
    let farm = Farm::new(sim.clone());
    let registry = adit_bus::registry::Registry::open(services.js.clone()).await?;
    let changed = adit_ingest::simulate::register(&farm, &registry, "simulator").await?;
    tracing::info!(changed, "simulated farm registered");
    let per_s = farm.events_per_tick() as f64 / sim.interval.as_secs_f64();
    tracing::info!(
        sites = sim.sites,
        machines_per_site = sim.machines_per_site,
        pool_miners = sim.pool_miners,
        events_per_s = per_s,
        "simulating"
    );
    let n =
        adit_ingest::simulate::run(farm, services.publisher.clone(), args.ticks, shutdown).await?;
    println!("published {n} events");
    services.close().await;
    Ok(())
}

/// The demo miner's pace: five hashes a second, a fraction of one core (flat out, one
/// light-mode thread took a whole core for 15 to 30 H/s, and every test of the demo with it).
const DEMO_PACE: Duration = Duration::from_millis(200);

/// The difficulty the demo's miner fixes in its login: a share every two seconds or so at its
/// pace.
const DEMO_DIFFICULTY: u64 = 10;

/// Hashes per block on the Monero demo's simulated chain: at the demo miner's pace, a block
/// every 12 seconds on average, so a newcomer sees blocks and payouts while looking. (A block's
/// wait is exponential: at ten times the mean a demo went four minutes without one a third of
/// the time.)
const DEMO_MONERO_BLOCK_DIFFICULTY: u64 = 60;

/// Hashes per block on the OpenSY demo's simulated node: below the share difficulty, so each
/// of the demo miner's shares is a block and one is 100 deep and paid from a few minutes in.
const DEMO_OPENSY_BLOCK_DIFFICULTY: u64 = 6;

/// The demo's simulated miner: one light-mode RandomX thread mining on the pool at
/// [`DEMO_PACE`] (so the demo leaves the cores to everything else).
fn demo_miners(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let addr: std::net::SocketAddr = config.pool.listen.parse()?;
    let stop = shutdown.clone();
    let chain = config.pool.chain;
    let miner = std::thread::Builder::new()
        .name("demo-miner".into())
        .spawn(move || {
            let wallet = match chain {
                adit_stratum::Chain::Monero => {
                    "4DemoMinerWallet00000000000000000000000000000000000000000000000".to_string()
                }
                adit_stratum::Chain::OpenSy => adit_stratum::opensy::simnode::unowned_address(),
            };
            let login = format!("{wallet}+{DEMO_DIFFICULTY}.demo-rig");
            // In the team `demo`, so the public team page (/pool) has a team from the start.
            let url = adit_stratum::PoolUrl {
                host: addr.ip().to_string(),
                port: addr.port(),
                tls: false,
            };
            let options = adit_stratum::ClientOptions {
                pass: "team=demo".into(),
                pace: Some(DEMO_PACE),
                ..Default::default()
            };
            match adit_stratum::mine_pool(&url, &options, &login, stop) {
                Ok(n) => tracing::info!(accepted = n, "demo miner stopped"),
                Err(e) => tracing::warn!(error = %e, "demo miner failed"),
            }
        })?;
    Ok(vec![miner])
}

async fn demo(
    config: &Config,
    duration: Option<Duration>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    wiring::cancel_on_signal(shutdown.clone());
    if let Some(d) = duration {
        let token = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            token.cancel();
        });
    }
    let url = config.query.local_url();
    eprintln!(
        "adit demo: simulated farm devices → adapters → NATS JetStream → pipelines → Delta tables under {}\n\
         \x20          the curtailment controller's commands → actuators → the simulated devices\n\
         \n  dashboard  {url}/\n  API        {url}/api/v1/sql?q=select%201\n  live       {url}/api/v1/live?subjects=results.%3E\n  metrics    {url}/metrics\n  health     {url}/health\n\
         \n  try:       adit sql \"select site, count(*) from energy_readings group by site\"\n\
         \x20            adit sql \"select * from site_energy_1m order by minute desc limit 10\"\n\
         \x20            adit sql \"select miner, worker, count(*), sum(difficulty) from shares group by miner, worker\"\n\
         \n  pool       stratum+tcp://{} ({} on its simulated node; a demo miner of team `demo` is mining on it)\n\
         \x20 teams      {url}/pool?pool={}\n",
        config.tables_root(),
        config.pool.listen,
        match config.pool.chain {
            adit_stratum::Chain::Monero => "Monero",
            adit_stratum::Chain::OpenSy => "OpenSY",
        },
        config.pool.server.pool,
    );
    let miners = demo_miners(config, &shutdown)?;
    let mut roles = vec![
        Role::Pipelines,
        Role::Query,
        Role::Simulate,
        Role::Adapters,
        Role::Actuators,
        Role::Alerts,
        Role::Compliance,
        Role::Pool,
    ];
    // The demo evaluates the shipped alert rules, and its one light-mode miner fixes a low
    // difficulty (`DEMO_DIFFICULTY`) so shares show within seconds: the pool's floor for fixed
    // difficulties is lowered to it (never raised). Its simulated devices and grid feeds
    // listen on loopback, which the devices' and feeds' egress rules are widened to reach.
    let mut config = config.clone();
    config.alerts.default_rules = true;
    for allowed in [&mut config.egress.devices, &mut config.egress.feeds] {
        if !allowed.iter().any(|e| e == "loopback") {
            allowed.push("loopback".into());
        }
    }
    let vardiff = &mut config.pool.server.vardiff;
    vardiff.min_difficulty = vardiff.min_difficulty.min(DEMO_DIFFICULTY);
    // On OpenSY the simulated node's wallet, which the pool's coinbases fund, pays the demo
    // miner once a block is 100 deep (`select * from payments`): each of the demo miner's
    // shares is a block, one every two seconds or so, so that is a few minutes in.
    if config.pool.chain == adit_stratum::Chain::Monero && config.pool.node == "sim" {
        config.pool.sim_difficulty = config.pool.sim_difficulty.min(DEMO_MONERO_BLOCK_DIFFICULTY);
    }
    if config.pool.chain == adit_stratum::Chain::OpenSy && config.pool.node == "sim" {
        config.pool.sim_difficulty = config.pool.sim_difficulty.min(DEMO_OPENSY_BLOCK_DIFFICULTY);
        roles.push(Role::Payments);
        let payments = &mut config.payments;
        payments.chain = adit_stratum::Chain::OpenSy;
        payments.node = "sim".into();
        payments.interval = Duration::from_secs(10);
        payments.confirmations = 1;
    }
    let result =
        wiring::run_roles(&config, &roles, config.simulate.clone(), shutdown.clone()).await;
    shutdown.cancel();
    for m in miners {
        let _ = m.join();
    }
    result
}
