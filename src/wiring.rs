//! Process wiring: connect (or start) NATS, set up streams, open the table store, and run the
//! chosen roles as tasks under one shutdown token.

use std::sync::Arc;
use std::time::Duration;

use adit_bus::registry::Registry;
use adit_bus::{Publisher, ensure_buckets, ensure_streams};
use adit_ingest::http::IngestState;
use adit_ingest::simulate::devices::Devices;
use adit_ingest::simulate::{Farm, SimConfig};
use adit_pipelines::PipelineContext;
use adit_query::{AppState, Catalog, SqlEngine};
use adit_schemas::ValidationPolicy;
use adit_sinks::TableStore;
use anyhow::Context;
use async_nats::jetstream;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::Role;
use crate::config::Config;
use crate::nats_server::{self, ManagedNats};

/// How long open work may take to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(20);

/// Connections every role uses.
pub struct Services {
    /// The NATS client.
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// Event publisher.
    pub publisher: Publisher,
    /// The registry bucket, opened once for every role that reads or changes it.
    pub registry: Registry,
    /// The managed nats-server, if this process started one.
    pub managed: Option<ManagedNats>,
}

/// Connects to the configured NATS (or starts the managed one) and creates the streams and
/// buckets.
pub async fn connect(config: &Config) -> anyhow::Result<Services> {
    let (client, managed) = connect_bare(config).await?;
    let js = jetstream::new(client.clone());
    // Each retried through a cluster's election or a node down; a permanent refusal says why.
    ensure_streams(&js, &config.nats.streams).await?;
    ensure_buckets(&js, config.nats.streams.replicas).await?;
    adit_pipelines::runtime::ensure_lease_bucket(
        &js,
        config.pipelines.lease_ttl,
        config.nats.streams.replicas,
    )
    .await?;
    Ok(Services {
        publisher: Publisher::new(js.clone()),
        registry: Registry::open(js.clone()).await?,
        client,
        js,
        managed,
    })
}

/// Connects to the configured NATS (or starts the managed one) and creates nothing.
pub async fn connect_bare(
    config: &Config,
) -> anyhow::Result<(async_nats::Client, Option<ManagedNats>)> {
    let (url, managed) = match &config.nats.url {
        Some(url) => (url.clone(), None),
        None => {
            nats_server::ensure(&config.data_dir(), config.nats.server_binary.as_deref()).await?
        }
    };
    Ok((
        adit_bus::connect_with(&url, &config.nats.auth()).await?,
        managed,
    ))
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutting down: finishing the batches in hand");
        token.cancel();
    });
}

/// The node the pool mines on, from `pool.node`.
fn pool_node(config: &adit_stratum::PoolConfig) -> anyhow::Result<adit_stratum::Node> {
    if config.node == "sim" {
        let sim = adit_stratum::SimConfig {
            difficulty: config.sim_difficulty,
            ..Default::default()
        };
        return Ok(adit_stratum::Node::Sim(adit_stratum::SimChain::new(sim)?));
    }
    if config.wallet.is_empty() {
        anyhow::bail!("pool.wallet must be set when mining on monerod (--wallet)");
    }
    Ok(adit_stratum::Node::Monerod(adit_stratum::MoneroRpc::new(
        &config.node,
        adit_stratum::RpcConfig::default(),
    )?))
}

/// Buckets for timings, in seconds: 0.5 ms to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for batch sizes.
const COUNT_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// Installs the Prometheus recorder and registers adit's metrics ([`crate::metrics_catalog`]).
/// Timings and sizes are histograms (Prometheus's convention: aggregatable across processes,
/// and never a stale quantile after a quiet spell).
/// The API's catalog: every table under the root, with fresh reads of the landed tables when
/// they are on and statements run here (a cluster's executors could not read the tails).
fn api_catalog(config: &Config, store: &TableStore, js: &jetstream::Context) -> Catalog {
    let catalog = Catalog::new(store.clone(), config.query.snapshot_refresh);
    if !config.query.fresh_reads || !matches!(config.query.engine, adit_query::QueryEngine::Local) {
        return catalog;
    }
    catalog.with_fresh(Arc::new(adit_pipelines::fresh::LandingTails::new(
        js.clone(),
        store.clone(),
        &config.pipelines,
        &ValidationPolicy::default(),
        adit_pipelines::fresh::TailLimits::default(),
    )))
}

fn install_metrics() -> Option<PrometheusHandle> {
    let built = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Prefix("adit_pipeline_batch_".into()),
                COUNT_BUCKETS,
            )
        })
        .and_then(|b| b.install_recorder());
    match built {
        Ok(handle) => {
            crate::metrics_catalog::register();
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics are off: the Prometheus recorder could not be installed");
            None
        }
    }
}

/// The node the blocks view asks for the chain's height: `query.node`, else the pool's node
/// when it is monerod.
fn chain_tip(config: &Config) -> anyhow::Result<Option<adit_query::chain::ChainTip>> {
    let node = config.query.node.clone().or_else(|| {
        let pool = &config.pool.node;
        pool.starts_with("http").then(|| pool.clone())
    });
    Ok(node
        .map(|n| adit_query::chain::ChainTip::new(&n))
        .transpose()?)
}

/// Runs role `name` under supervision: a panic (a bug) restarts it with a fresh `make()`,
/// counted and shown by `/ready`; one that keeps panicking, or returns an error, fails the
/// role and so stops the process with a non-zero exit.
async fn supervised<F, Fut, E>(
    name: &'static str,
    vitals: &adit_supervise::Vitals,
    make: F,
) -> anyhow::Result<&'static str>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    adit_supervise::supervise(name, vitals, adit_supervise::Policy::default(), make).await??;
    Ok(name)
}

/// Panics to inject into supervised parts, from `ADIT_FAULTS` (e.g. `adapters,pipeline:landing=2`),
/// for the tests that kill each part from inside. Read in debug builds only: a release build
/// ignores it, so no environment variable can make a deployed process kill itself.
/// The dashboards bucket, with the shipped dashboards written into it the first time.
async fn dashboards(
    js: &async_nats::jetstream::Context,
    config: &Config,
) -> anyhow::Result<adit_query::dashboards::store::DashboardStore> {
    use adit_query::dashboards::{builtin, store::DashboardStore};
    let store = DashboardStore::open(js)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let written = builtin::install(&store, config.query.limits.text())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !written.is_empty() {
        tracing::info!(dashboards = ?written, "built-in dashboards written");
    }
    Ok(store)
}

fn injected_faults() -> anyhow::Result<adit_supervise::Faults> {
    let spec = std::env::var("ADIT_FAULTS").unwrap_or_default();
    if !cfg!(debug_assertions) {
        if !spec.is_empty() {
            tracing::warn!("ADIT_FAULTS is ignored in release builds");
        }
        return Ok(adit_supervise::Faults::default());
    }
    adit_supervise::Faults::parse(&spec).map_err(|e| anyhow::anyhow!("ADIT_FAULTS: {e}"))
}

/// The volumes whose free space `/ready` watches: the table root when it is a folder, and the
/// data folder (the managed NATS store, the nonce journals).
fn watched_volumes(config: &Config) -> Vec<(&'static str, std::path::PathBuf)> {
    let mut volumes = vec![("data", config.data_dir())];
    let tables = config.tables_root();
    if !tables.contains("://") {
        volumes.push(("tables", std::path::PathBuf::from(tables)));
    }
    volumes
}

/// Runs `roles` until `shutdown`; the first role to fail cancels the rest and is returned.
pub async fn run_roles(
    config: &Config,
    roles: &[Role],
    sim: SimConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let services = connect(config).await?;
    let store = TableStore::new(&config.tables_root(), config.tables.options.clone())?;
    let metrics = install_metrics();
    // What the supervisors of long-lived tasks report, read by `/ready`.
    let vitals = adit_supervise::Vitals::with_faults(injected_faults()?);
    let mut tasks: JoinSet<anyhow::Result<&'static str>> = JoinSet::new();
    // The pool's node, for the vital signs (`/ready` names it while it cannot be reached).
    let mut pool_node_watched = None;
    if roles.contains(&Role::Pipelines) {
        let ctx = PipelineContext {
            js: services.js.clone(),
            publisher: services.publisher.clone(),
            store: store.clone(),
            config: config.pipelines.runtime(),
            policy: ValidationPolicy::default(),
            holder: adit_pipelines::runtime::holder_name(),
            vitals: vitals.clone(),
            progress: Default::default(),
        };
        let pipelines = adit_pipelines::catalog::all(&config.pipelines);
        let token = shutdown.clone();
        tasks.spawn(async move {
            adit_pipelines::run_all(ctx, pipelines, token).await?;
            Ok("pipelines")
        });
    }
    if roles.contains(&Role::Query) {
        let listener = tokio::net::TcpListener::bind(&config.query.listen)
            .await
            .with_context(|| format!("query.listen: binding {}", config.query.listen))?;
        tracing::info!(listen = %config.query.listen, engine = ?config.query.engine, "HTTP API listening");
        let engine = Arc::new(SqlEngine::on(
            config.query.engine.clone(),
            Arc::new(api_catalog(config, &store, &services.js)),
            config.query.limits.clone(),
        ));
        let admission = Arc::new(adit_query::admission::Admission::new(
            config.query.concurrency.clone(),
        ));
        let lockout = Arc::new(adit_query::lockout::Lockout::new(
            config.query.lockout.clone(),
        ));
        if let Some(postgres) = &config.query.postgres {
            let server = Arc::new(
                adit_query::postgres::Postgres::new(
                    postgres,
                    engine.clone(),
                    Arc::new(config.query.tokens()?),
                    admission.clone(),
                    lockout.clone(),
                    config
                        .query
                        .tls_acceptor_for(&[b"postgresql"])
                        .map_err(anyhow::Error::msg)?,
                )
                .map_err(anyhow::Error::msg)?,
            );
            let listener = tokio::net::TcpListener::bind(&postgres.listen)
                .await
                .with_context(|| format!("query.postgres.listen: binding {}", postgres.listen))?;
            tracing::info!(listen = %postgres.listen, "PostgreSQL port listening");
            let token = shutdown.clone();
            tasks.spawn(async move {
                adit_query::postgres::serve(
                    listener,
                    server,
                    async move { token.cancelled().await },
                )
                .await?;
                Ok("postgres")
            });
        }
        if let Some(flight) = &config.query.flight {
            let server = Arc::new(adit_query::flight::Flight {
                engine: engine.clone(),
                tokens: Arc::new(config.query.tokens()?),
                admission: admission.clone(),
                lockout: lockout.clone(),
            });
            let listener = tokio::net::TcpListener::bind(&flight.listen)
                .await
                .with_context(|| format!("query.flight.listen: binding {}", flight.listen))?;
            tracing::info!(listen = %flight.listen, "Flight SQL port listening");
            let tls = config
                .query
                .tls_acceptor_for(&[b"h2"])
                .map_err(anyhow::Error::msg)?;
            let token = shutdown.clone();
            tasks.spawn(async move {
                adit_query::flight::serve(
                    listener,
                    server,
                    tls,
                    async move { token.cancelled().await },
                )
                .await?;
                Ok("flight")
            });
        }
        let state = AppState {
            engine,
            metrics: metrics.clone(),
            vitals: vitals.clone(),
            nats: Some(services.client.clone()),
            node: chain_tip(config)?,
            registry: Some(services.registry.clone()),
            publisher: Some(services.publisher.clone()),
            rules: Some(
                adit_alerts::RuleStore::open(&services.js, config.query.limits.text()).await?,
            ),
            silences: Some(adit_alerts::notify::Silences::open(&services.js).await?),
            notifier: Some(Arc::new(
                adit_alerts::notify::Notifier::new(config.notify.clone(), &config.egress)?
                    .with_managed(adit_alerts::notify::ManagedStore::open(&services.js).await?),
            )),
            bans: Some(
                services
                    .js
                    .get_key_value(adit_schemas::names::KV_BANS)
                    .await?,
            ),
            admission,
            lockout,
            dashboards: Some(dashboards(&services.js, config).await?),
            live: Some(adit_query::hub::Live::new(
                services.js.clone(),
                config.query.live_max_subscribers,
            )),
        };
        let ingest = adit_ingest::http::router(IngestState {
            publisher: services.publisher.clone(),
            policy: ValidationPolicy::default(),
        });
        let router = adit_query::router(
            state,
            config.query.tokens()?,
            config.query.origin_policy().map_err(anyhow::Error::msg)?,
            ingest,
            adit_ingest::http::ROUTES,
        );
        let tls = config.query.tls_acceptor().map_err(anyhow::Error::msg)?;
        let token = shutdown.clone();
        tasks.spawn(async move {
            adit_query::serve(
                listener,
                router,
                tls,
                async move { token.cancelled().await },
            )
            .await?;
            Ok("query")
        });
    }
    if roles.contains(&Role::Pool) {
        let node = pool_node(&config.pool)?;
        pool_node_watched = Some(node.clone());
        let listener = tokio::net::TcpListener::bind(&config.pool.listen)
            .await
            .with_context(|| format!("pool.listen: binding {}", config.pool.listen))?;
        let (pool, publisher, token, vitals) = (
            config.pool.clone(),
            services.publisher.clone(),
            shutdown.clone(),
            vitals.clone(),
        );
        tasks.spawn(async move {
            adit_stratum::run_pool(pool, node, listener, publisher, vitals, token).await?;
            Ok("pool")
        });
    }
    if roles.contains(&Role::Payments) {
        let ctx = adit_payments::payer::PayerContext {
            store: store.clone(),
            maintenance: config.pipelines.maintenance.clone(),
            js: services.js.clone(),
            holder: adit_pipelines::runtime::holder_name(),
            lease_ttl: config.pipelines.lease_ttl,
        };
        let (payments, token, vitals) = (config.payments.clone(), shutdown.clone(), vitals.clone());
        tasks.spawn(async move {
            supervised("payments", &vitals, || {
                adit_payments::run(payments.clone(), ctx.clone(), token.clone())
            })
            .await
        });
    }
    let mut adapters = config.adapters.clone();
    if roles.contains(&Role::Simulate) {
        let farm = Farm::new(sim.clone());
        let registry = services.registry.clone();
        if roles.contains(&Role::Adapters) {
            // The farm as devices on real sockets, read by the adapters like a real one.
            let devices = Devices::start(farm, "127.0.0.1", shutdown.clone())
                .await
                .context("starting the simulated devices")?;
            let changed = devices
                .register(&registry, "simulator")
                .await
                .context("registering the simulated devices")?;
            adapters.grid.extend(devices.grid_feeds());
            tracing::info!(
                changed,
                url = devices.base_url(),
                "simulated devices serving"
            );
            tasks.spawn(async move {
                devices.stopped().await;
                Ok("simulate")
            });
        } else {
            let changed = adit_ingest::simulate::register(&farm, &registry, "simulator")
                .await
                .context("registering the simulated farm")?;
            tracing::info!(changed, "simulated farm registered");
            let (publisher, token) = (services.publisher.clone(), shutdown.clone());
            let vitals = vitals.clone();
            tasks.spawn(async move {
                // A restart simulates the same farm afresh (the simulation is seeded).
                supervised("simulate", &vitals, || {
                    let run = adit_ingest::simulate::run(
                        Farm::new(sim.clone()),
                        publisher.clone(),
                        None,
                        token.clone(),
                    );
                    async move { run.await.map(drop) }
                })
                .await
            });
        }
    }
    if roles.contains(&Role::Adapters) {
        let registry = services.registry.clone();
        let (publisher, token, vitals) =
            (services.publisher.clone(), shutdown.clone(), vitals.clone());
        let egress = config.egress.clone();
        tasks.spawn(async move {
            supervised("adapters", &vitals, || {
                adit_ingest::adapters::poll::run(
                    adapters.clone(),
                    egress.clone(),
                    registry.clone(),
                    publisher.clone(),
                    token.clone(),
                )
            })
            .await
        });
    }
    if roles.contains(&Role::Alerts) {
        let rules = adit_alerts::RuleStore::open(&services.js, config.query.limits.text()).await?;
        let engine = Arc::new(SqlEngine::new(
            Arc::new(Catalog::new(store.clone(), config.query.snapshot_refresh)),
            config.query.limits.clone(),
        ));
        let (publisher, token, vitals) =
            (services.publisher.clone(), shutdown.clone(), vitals.clone());
        let alerts = config.alerts.clone();
        tasks.spawn(async move {
            supervised("alerts", &vitals, || {
                adit_alerts::run(
                    alerts.clone(),
                    rules.clone(),
                    engine.clone(),
                    publisher.clone(),
                    token.clone(),
                )
            })
            .await
        });
    }
    if roles.contains(&Role::Compliance) {
        let registry = services.registry.clone();
        let (store, token, vitals) = (store.clone(), shutdown.clone(), vitals.clone());
        let (compliance, reports) = (config.compliance.clone(), config.reports_dir());
        tasks.spawn(async move {
            // Each start opens the job afresh (its state is read back from the tables).
            supervised("compliance", &vitals, || {
                let open = adit_reports::ComplianceJob::open(
                    store.clone(),
                    Some(registry.clone()),
                    compliance.clone(),
                    reports.clone(),
                );
                let token = token.clone();
                async move { open.await?.run(token).await }
            })
            .await
        });
    }
    if roles.contains(&Role::Backup) {
        let to = config.backup.to.clone().ok_or_else(|| {
            anyhow::anyhow!("the backup role needs backup.to (a folder or s3://bucket/prefix)")
        })?;
        let job = adit_backup::schedule::Scheduled {
            config: config.backup.clone(),
            client: services.client.clone(),
            tables: store.clone(),
            config_file: config.file.clone(),
        };
        let token = shutdown.clone();
        tasks.spawn(async move {
            adit_backup::schedule::run(job, to, token).await?;
            Ok("backup")
        });
    }
    if roles.contains(&Role::Coordinator) {
        let cluster = config.cluster.clone();
        let publisher = services.publisher.clone();
        let render = metrics
            .clone()
            .map(|handle| Arc::new(move || handle.render()) as adit_coopmine::MetricsRender);
        let (token, vitals) = (shutdown.clone(), vitals.clone());
        tasks.spawn(async move {
            supervised("coordinator", &vitals, || {
                adit_coopmine::run_coordinator(
                    cluster.clone(),
                    Some(publisher.clone()),
                    render.clone(),
                    None,
                    token.clone(),
                )
            })
            .await
        });
    }
    if roles.contains(&Role::Notify) {
        let silences = adit_alerts::notify::Silences::open(&services.js).await?;
        let managed = adit_alerts::notify::ManagedStore::open(&services.js).await?;
        let (publisher, token, vitals) =
            (services.publisher.clone(), shutdown.clone(), vitals.clone());
        let notify = config.notify.clone();
        let egress = config.egress.clone();
        tasks.spawn(async move {
            supervised("notify", &vitals, || {
                adit_alerts::notify::run(
                    notify.clone(),
                    egress.clone(),
                    silences.clone(),
                    managed.clone(),
                    publisher.clone(),
                    token.clone(),
                )
            })
            .await
        });
    }
    if roles.contains(&Role::Actuators) {
        let registry = services.registry.clone();
        let (publisher, token, vitals) =
            (services.publisher.clone(), shutdown.clone(), vitals.clone());
        let actuators = config.actuators.clone();
        let egress = config.egress.clone();
        tasks.spawn(async move {
            supervised("actuators", &vitals, || {
                adit_ingest::actuators::run(
                    actuators.clone(),
                    egress.clone(),
                    registry.clone(),
                    publisher.clone(),
                    token.clone(),
                )
            })
            .await
        });
    }
    {
        let (health, vitals, token) = (config.health.clone(), vitals.clone(), shutdown.clone());
        let (volumes, js) = (watched_volumes(config), services.js.clone());
        let node = pool_node_watched;
        // Only a process that writes tables depends on being able to.
        let tables = roles
            .contains(&Role::Pipelines)
            .then(|| (store.clone(), adit_pipelines::runtime::holder_name()));
        tasks.spawn(async move {
            supervised("health", &vitals, || {
                let watched = crate::health::Watched {
                    volumes: volumes.clone(),
                    js: Some(js.clone()),
                    node: node.clone(),
                    tables: tables.clone(),
                };
                crate::health::run(health.clone(), watched, vitals.clone(), token.clone())
            })
            .await
        });
    }
    let mut result = Ok(());
    let mut draining = false;
    loop {
        let joined = if draining {
            match tokio::time::timeout(DRAIN, tasks.join_next()).await {
                Ok(j) => j,
                Err(_) => {
                    tracing::warn!("roles did not finish within {DRAIN:?}; stopping them");
                    tasks.abort_all();
                    break;
                }
            }
        } else {
            tokio::select! {
                j = tasks.join_next() => j,
                _ = shutdown.cancelled() => { draining = true; continue; }
            }
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok(Ok(role)) => tracing::info!(role, "role finished"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "role failed; stopping the others");
                shutdown.cancel();
                draining = true;
                result = result.and(Err(e));
            }
            Err(e) => {
                shutdown.cancel();
                draining = true;
                result = result.and(Err(anyhow::anyhow!("a role panicked: {e}")));
            }
        }
    }
    if let Some(managed) = services.managed {
        managed.stop().await;
    }
    result
}
