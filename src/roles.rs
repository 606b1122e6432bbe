//! One function per role of `adit run`. Each takes what the roles share ([`Shared`], built once
//! per process: the connections, the table store, the metrics, the vital signs, one SQL
//! catalog) and spawns its tasks into the process's set; [`crate::wiring::run_roles`] picks
//! them and waits.

use std::sync::{Arc, OnceLock};

use adit_api::AppState;
use adit_ingest::http::IngestState;
use adit_ingest::simulate::devices::Devices;
use adit_ingest::simulate::{Farm, SimConfig};
use adit_pipelines::PipelineContext;
use adit_schemas::ValidationPolicy;
use adit_sinks::TableStore;
use adit_sql::{Catalog, SqlEngine};
use adit_supervise::Vitals;
use anyhow::Context;
use async_nats::jetstream;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::OnceCell;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::services::Services;

/// The running roles' tasks; each ends with its role's name, or the error that stops the
/// process.
pub type Tasks = JoinSet<anyhow::Result<&'static str>>;

/// What every role is started with, built once per process.
pub struct Shared<'a> {
    config: &'a Config,
    services: &'a Services,
    store: TableStore,
    metrics: Option<PrometheusHandle>,
    /// What the supervisors of long-lived tasks report, read by `/ready`.
    vitals: Vitals,
    shutdown: CancellationToken,
    /// The snapshots of every table, shared by the API and the alert rules so that a rule
    /// sees what the same statement in the API sees, and each table is cached once.
    catalog: OnceLock<Arc<Catalog>>,
    /// The alert buckets' handles, opened on first use and shared by the API, `alerts` and
    /// `notify` when they run in one process.
    rules: OnceCell<adit_alerts::RuleStore>,
    silences: OnceCell<adit_alerts::notify::Silences>,
    managed: OnceCell<adit_alerts::notify::ManagedStore>,
}

impl<'a> Shared<'a> {
    /// Opens the table store and installs the metrics recorder.
    pub fn new(
        config: &'a Config,
        services: &'a Services,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            config,
            services,
            store: config.table_store()?,
            metrics: crate::exporter::install(&config.metrics),
            vitals: Vitals::with_faults(injected_faults()?),
            shutdown,
            catalog: OnceLock::new(),
            rules: OnceCell::new(),
            silences: OnceCell::new(),
            managed: OnceCell::new(),
        })
    }

    /// The one SQL catalog, made on first use.
    fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .get_or_init(|| Arc::new(api_catalog(self.config, &self.store, &self.services.js)))
            .clone()
    }

    /// The alert rules' bucket, opened on first use.
    async fn rules(&self) -> anyhow::Result<adit_alerts::RuleStore> {
        let open =
            || adit_alerts::RuleStore::open(&self.services.js, self.config.query.limits.text());
        Ok(self.rules.get_or_try_init(open).await?.clone())
    }

    /// The silences, opened on first use.
    async fn silences(&self) -> anyhow::Result<adit_alerts::notify::Silences> {
        let open = || adit_alerts::notify::Silences::open(&self.services.js);
        Ok(self.silences.get_or_try_init(open).await?.clone())
    }

    /// The receivers and route managed through the API, opened on first use.
    async fn managed(&self) -> anyhow::Result<adit_alerts::notify::ManagedStore> {
        let open = || adit_alerts::notify::ManagedStore::open(&self.services.js);
        Ok(self.managed.get_or_try_init(open).await?.clone())
    }
}

/// The pipelines, under their supervisor.
pub fn pipelines(shared: &Shared, tasks: &mut Tasks) {
    let config = shared.config;
    let ctx = PipelineContext {
        js: shared.services.js.clone(),
        publisher: shared.services.publisher.clone(),
        store: shared.store.clone(),
        config: config.pipelines.runtime(),
        policy: ValidationPolicy::default(),
        holder: adit_bus::lease::holder_name(),
        vitals: shared.vitals.clone(),
        progress: Default::default(),
    };
    let pipelines = adit_pipelines::catalog::all(&config.pipelines);
    let token = shared.shutdown.clone();
    tasks.spawn(async move {
        adit_pipelines::run_all(ctx, pipelines, token).await?;
        Ok("pipelines")
    });
}

/// The HTTP API, and the PostgreSQL and Flight SQL ports when configured, over one SQL engine.
pub async fn query(shared: &Shared<'_>, tasks: &mut Tasks) -> anyhow::Result<()> {
    let config = shared.config;
    let listener = tokio::net::TcpListener::bind(&config.query.listen)
        .await
        .with_context(|| format!("query.listen: binding {}", config.query.listen))?;
    tracing::info!(listen = %config.query.listen, engine = ?config.query.engine, "HTTP API listening");
    let engine = Arc::new(SqlEngine::on(
        config.query.engine.clone(),
        shared.catalog(),
        config.query.limits.clone(),
    ));
    let admission = Arc::new(adit_sql::admission::Admission::new(
        config.query.concurrency.clone(),
    ));
    let lockout = Arc::new(adit_auth::lockout::Lockout::new(
        config.query.lockout.clone(),
    ));
    if let Some(postgres) = &config.query.postgres {
        let server = adit_wire::postgres::Postgres::new(
            postgres,
            engine.clone(),
            Arc::new(config.query.tokens()?),
            admission.clone(),
            lockout.clone(),
            config.query.tls_acceptor_for(&[b"postgresql"])?,
        )
        .map_err(anyhow::Error::msg)?;
        let listener = tokio::net::TcpListener::bind(&postgres.listen)
            .await
            .with_context(|| format!("query.postgres.listen: binding {}", postgres.listen))?;
        tracing::info!(listen = %postgres.listen, "PostgreSQL port listening");
        let (server, token) = (Arc::new(server), shared.shutdown.clone());
        tasks.spawn(async move {
            adit_wire::postgres::serve(listener, server, async move { token.cancelled().await })
                .await?;
            Ok("postgres")
        });
    }
    if let Some(flight) = &config.query.flight {
        let server = Arc::new(adit_wire::flight::Flight {
            engine: engine.clone(),
            tokens: Arc::new(config.query.tokens()?),
            admission: admission.clone(),
            lockout: lockout.clone(),
            config: flight.clone(),
        });
        let listener = tokio::net::TcpListener::bind(&flight.listen)
            .await
            .with_context(|| format!("query.flight.listen: binding {}", flight.listen))?;
        tracing::info!(listen = %flight.listen, "Flight SQL port listening");
        let tls = config.query.tls_acceptor_for(&[b"h2"])?;
        let token = shared.shutdown.clone();
        tasks.spawn(async move {
            adit_wire::flight::serve(
                listener,
                server,
                tls,
                async move { token.cancelled().await },
            )
            .await?;
            Ok("flight")
        });
    }
    let state = api_state(shared, engine, admission, lockout).await?;
    let services = shared.services;
    let ingest = adit_ingest::http::router(IngestState {
        publisher: services.publisher.clone(),
        policy: ValidationPolicy::default(),
        series: Arc::new(adit_ingest::http::SeriesBudget::new(
            config.query.custom_metric_series,
        )),
    });
    let router = adit_api::router(
        state,
        config.query.tokens()?,
        config.query.origin_policy()?,
        ingest,
    );
    let tls = config.query.tls_acceptor()?;
    let token = shared.shutdown.clone();
    tasks.spawn(async move {
        adit_api::serve(
            listener,
            router,
            tls,
            async move { token.cancelled().await },
        )
        .await?;
        Ok("query")
    });
    Ok(())
}

/// What the API's handlers share: the engine, and the buckets and stores they read and write.
async fn api_state(
    shared: &Shared<'_>,
    engine: Arc<SqlEngine>,
    admission: Arc<adit_sql::admission::Admission>,
    lockout: Arc<adit_auth::lockout::Lockout>,
) -> anyhow::Result<AppState> {
    let (config, services) = (shared.config, shared.services);
    Ok(AppState {
        engine,
        metrics: shared.metrics.clone(),
        vitals: shared.vitals.clone(),
        nats: Some(services.client.clone()),
        node: chain_tip(config)?,
        registry: Some(services.registry.clone()),
        publisher: Some(services.publisher.clone()),
        rules: Some(shared.rules().await?),
        silences: Some(shared.silences().await?),
        notifier: Some(Arc::new(
            adit_alerts::notify::Notifier::new(config.notify.clone(), &config.egress)?
                .with_managed(shared.managed().await?),
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
        live: Some(adit_api::hub::Live::new(
            services.js.clone(),
            config.query.live_max_subscribers,
        )),
        notices: Some(adit_alerts::notify::workers::Subscriptions::open(&services.js).await?),
        signatures: (config.payments.chain == adit_stratum::Chain::Monero)
            .then(|| config.payments.wallet_rpc.clone()),
        ops_networks: Arc::new(config.query.ops_networks()?),
    })
}

/// The Stratum pool; returns its node, whose reachability `/ready` reports.
pub async fn pool(shared: &Shared<'_>, tasks: &mut Tasks) -> anyhow::Result<adit_stratum::Node> {
    let config = &shared.config.pool;
    adit_protocol::randomx::use_large_pages(config.server.huge_pages);
    let node = pool_node(config, &shared.shutdown).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("pool.listen: binding {}", config.listen))?;
    let mut pool = config.clone();
    // The fee the payouts take is the one the pool publishes with its terms.
    pool.fee_bps = shared
        .config
        .pipelines
        .pplns
        .rules(&pool.server.pool, 0)
        .fee_bps;
    let asked = pool.server.limits.max_connections;
    let room = crate::descriptors::room_for(asked);
    if room.connections < asked {
        tracing::warn!(
            asked,
            admitted = room.connections,
            open_files = room.limit,
            "pool.server.limits.max_connections lowered: this process may open only {} files and keeps {} for the rest; raise its limit (LimitNOFILE, ulimit -Hn) to admit more",
            room.limit,
            crate::descriptors::RESERVED.min(room.limit / 2)
        );
        pool.server.limits.max_connections = room.connections;
    }
    if pool.chain == adit_stratum::Chain::OpenSy && pool.node == "sim" && pool.wallet.is_empty() {
        // The simulated node's own wallet, which a payer on `node = "sim"` pays from.
        pool.wallet = adit_stratum::opensy::simnode::wallet_address();
    }
    let (pool, publisher, token, vitals) = (
        pool,
        shared.services.publisher.clone(),
        shared.shutdown.clone(),
        shared.vitals.clone(),
    );
    let mined_on = node.clone();
    tasks.spawn(async move {
        adit_stratum::run_pool(pool, mined_on, listener, publisher, vitals, token).await?;
        Ok("pool")
    });
    Ok(node)
}

/// The payer, under supervision. On `payments.node = "sim"` it pays from the wallet of the
/// simulated OpenSY node the pool role started in this process (`pool_node`).
pub fn payments(
    shared: &Shared,
    tasks: &mut Tasks,
    pool_node: Option<&adit_stratum::Node>,
) -> anyhow::Result<()> {
    let config = shared.config;
    let mut payments = config.payments.clone();
    if pool_node.is_some() && payments.chain != config.pool.chain {
        anyhow::bail!(
            "payments.chain = {:?} is not the chain the pool in this process mines (pool.chain = {:?}): the payer would pay balances in the wrong coin",
            payments.chain.as_str(),
            config.pool.chain.as_str()
        );
    }
    if payments.node == "sim" {
        let Some(adit_stratum::Node::OpenSy(node)) =
            pool_node.filter(|_| config.pool.node == "sim")
        else {
            anyhow::bail!(
                "payments.node = \"sim\" pays from the simulated OpenSY node, which needs the pool role in the same process with pool.chain = \"opensy\" and pool.node = \"sim\""
            );
        };
        payments.node = node.rpc.endpoint().to_string();
        payments.wallet = adit_stratum::opensy::simnode::wallet::WALLET_NAME.to_string();
    }
    let ctx = adit_payments::payer::PayerContext {
        store: shared.store.clone(),
        maintenance: config.pipelines.maintenance.clone(),
        js: shared.services.js.clone(),
        holder: adit_bus::lease::holder_name(),
        lease_ttl: config.pipelines.lease_ttl,
    };
    let (token, vitals) = (shared.shutdown.clone(), shared.vitals.clone());
    tasks.spawn(async move {
        supervised("payments", &vitals, || {
            adit_payments::run(payments.clone(), ctx.clone(), token.clone())
        })
        .await
    });
    Ok(())
}

/// The simulated farm. With `as_devices` (the adapters run too) it serves its machines as
/// devices on real sockets, registered for the adapters to read like a real farm, and returns
/// its grid feeds for them; without, it publishes its readings itself.
pub async fn simulate(
    shared: &Shared<'_>,
    tasks: &mut Tasks,
    sim: SimConfig,
    as_devices: bool,
) -> anyhow::Result<Vec<adit_ingest::adapters::poll::GridFeed>> {
    let farm = Farm::new(sim.clone());
    let registry = shared.services.registry.clone();
    if as_devices {
        let devices = Devices::start(farm, "127.0.0.1", shared.shutdown.clone())
            .await
            .context("starting the simulated devices")?;
        let changed = devices
            .register(&registry, "simulator")
            .await
            .context("registering the simulated devices")?;
        let feeds = devices.grid_feeds();
        tracing::info!(
            changed,
            url = devices.base_url(),
            "simulated devices serving"
        );
        tasks.spawn(async move {
            devices.stopped().await;
            Ok("simulate")
        });
        return Ok(feeds);
    }
    let changed = adit_ingest::simulate::register(&farm, &registry, "simulator")
        .await
        .context("registering the simulated farm")?;
    tracing::info!(changed, "simulated farm registered");
    let (publisher, token, vitals) = (
        shared.services.publisher.clone(),
        shared.shutdown.clone(),
        shared.vitals.clone(),
    );
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
    Ok(Vec::new())
}

/// The device adapters reading `adapters` (the configured ones and any the simulator serves).
pub fn adapters(
    shared: &Shared,
    tasks: &mut Tasks,
    adapters: adit_ingest::adapters::poll::AdaptersConfig,
) {
    let registry = shared.services.registry.clone();
    let (publisher, token, vitals) = (
        shared.services.publisher.clone(),
        shared.shutdown.clone(),
        shared.vitals.clone(),
    );
    let egress = shared.config.egress.clone();
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

/// The alert rules' evaluator, reading the process's one SQL catalog on the local engine.
pub async fn alerts(shared: &Shared<'_>, tasks: &mut Tasks) -> anyhow::Result<()> {
    let config = shared.config;
    let rules = shared.rules().await?;
    let engine = Arc::new(SqlEngine::new(
        shared.catalog(),
        config.query.limits.clone(),
    ));
    let (publisher, token, vitals) = (
        shared.services.publisher.clone(),
        shared.shutdown.clone(),
        shared.vitals.clone(),
    );
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
    Ok(())
}

/// The nightly compliance job.
pub fn compliance(shared: &Shared, tasks: &mut Tasks) {
    let registry = shared.services.registry.clone();
    let (store, token, vitals) = (
        shared.store.clone(),
        shared.shutdown.clone(),
        shared.vitals.clone(),
    );
    let (compliance, reports) = (
        shared.config.compliance.clone(),
        shared.config.reports_dir(),
    );
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

/// Scheduled backups to `backup.to`.
pub fn backup(shared: &Shared, tasks: &mut Tasks) -> anyhow::Result<()> {
    let config = shared.config;
    let to = config.backup.to.clone().ok_or_else(|| {
        anyhow::anyhow!("the backup role needs backup.to (a folder or s3://bucket/prefix)")
    })?;
    let job = adit_backup::schedule::Scheduled {
        config: config.backup.clone(),
        client: shared.services.client.clone(),
        tables: shared.store.clone(),
        config_file: config.file.clone(),
    };
    let token = shared.shutdown.clone();
    tasks.spawn(async move {
        adit_backup::schedule::run(job, to, token).await?;
        Ok("backup")
    });
    Ok(())
}

/// The cooperative mining cluster's coordinator.
pub fn coordinator(shared: &Shared, tasks: &mut Tasks) {
    let cluster = shared.config.cluster.clone();
    let publisher = shared.services.publisher.clone();
    let render = shared
        .metrics
        .clone()
        .map(|handle| Arc::new(move || handle.render()) as adit_coopmine::MetricsRender);
    let (token, vitals) = (shared.shutdown.clone(), shared.vitals.clone());
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

/// The notifier, sending alerts to their receivers.
pub async fn notify(shared: &Shared<'_>, tasks: &mut Tasks) -> anyhow::Result<()> {
    let silences = shared.silences().await?;
    let managed = shared.managed().await?;
    let (publisher, token, vitals) = (
        shared.services.publisher.clone(),
        shared.shutdown.clone(),
        shared.vitals.clone(),
    );
    let (notify, egress) = (shared.config.notify.clone(), shared.config.egress.clone());
    if notify.workers.enabled {
        worker_notices(shared, tasks).await?;
    }
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
    Ok(())
}

/// Worker-down notices to the miners who asked (`[notify.workers]`), beside the notify role.
async fn worker_notices(shared: &Shared<'_>, tasks: &mut Tasks) -> anyhow::Result<()> {
    use adit_alerts::notify::workers;
    let config = shared.config;
    let engine = Arc::new(SqlEngine::new(
        shared.catalog(),
        config.query.limits.clone(),
    ));
    let subscriptions = workers::Subscriptions::open(&shared.services.js).await?;
    let http = config
        .egress
        .outbound(adit_egress::Purpose::Notify, "notify", None)?;
    let (publisher, token, vitals) = (
        shared.services.publisher.clone(),
        shared.shutdown.clone(),
        shared.vitals.clone(),
    );
    let notify = config.notify.clone();
    tasks.spawn(async move {
        supervised("worker-notices", &vitals, || {
            let ctx = workers::NoticeContext {
                notify: notify.clone(),
                http: http.clone(),
                engine: engine.clone(),
                subscriptions: subscriptions.clone(),
                publisher: publisher.clone(),
            };
            workers::run(ctx, token.clone())
        })
        .await
    });
    Ok(())
}

/// The actuators, carrying the controller's commands to the devices.
pub fn actuators(shared: &Shared, tasks: &mut Tasks) {
    let registry = shared.services.registry.clone();
    let (publisher, token, vitals) = (
        shared.services.publisher.clone(),
        shared.shutdown.clone(),
        shared.vitals.clone(),
    );
    let (actuators, egress) = (
        shared.config.actuators.clone(),
        shared.config.egress.clone(),
    );
    tasks.spawn(async move {
        supervised("actuators", &vitals, || {
            adit_actuators::run(
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

/// The health watch every process runs: its volumes, NATS, the pool's `node` when it mines,
/// and, when it `writes_tables`, the table store; beside it, the watch on the runtime's stalls.
pub fn health(
    shared: &Shared,
    tasks: &mut Tasks,
    node: Option<adit_stratum::Node>,
    writes_tables: bool,
) {
    let config = shared.config;
    let (health, vitals, token) = (
        config.health.clone(),
        shared.vitals.clone(),
        shared.shutdown.clone(),
    );
    let (volumes, js) = (watched_volumes(config), shared.services.js.clone());
    let tables = writes_tables.then(|| (shared.store.clone(), adit_bus::lease::holder_name()));
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
    let (vitals, token) = (shared.vitals.clone(), shared.shutdown.clone());
    tasks.spawn(async move {
        supervised("stalls", &vitals, || crate::stalls::watch(token.clone())).await
    });
}

/// The node the pool mines on, from `pool.chain` and `pool.node`: a chain's simulated node
/// (`sim`, started here until `shutdown`) or its node's RPC.
pub(crate) async fn pool_node(
    config: &adit_stratum::PoolConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<adit_stratum::Node> {
    use adit_stratum::opensy::{OpenSyNode, OpenSyRpc, SimNode, SimNodeConfig};
    use adit_stratum::{Chain, Node, RpcConfig};
    match (config.chain, config.node.as_str()) {
        (Chain::Monero, "sim") => {
            let sim = adit_stratum::SimConfig {
                difficulty: config.sim_difficulty,
                ..Default::default()
            };
            Ok(Node::Sim(adit_stratum::SimChain::new(sim)?))
        }
        (Chain::Monero, url) => {
            if config.wallet.is_empty() {
                anyhow::bail!("pool.wallet must be set when mining on monerod (--wallet)");
            }
            Ok(Node::Monerod(adit_stratum::MoneroRpc::new(
                url,
                RpcConfig::default(),
            )?))
        }
        (Chain::OpenSy, node) => {
            let url = if node == "sim" {
                let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                let blocks = SimNodeConfig::with_difficulty(config.sim_difficulty);
                let sim = SimNode::start(listen, blocks, shutdown.clone()).await?;
                sim.url()
            } else {
                node.to_string()
            };
            let rpc = OpenSyRpc::new(&url, config.rpc.to_rpc(), RpcConfig::default())?;
            Ok(Node::OpenSy(OpenSyNode::new(rpc)))
        }
    }
}

/// The API's catalog: every table under the root, with the last-value tables and fresh reads
/// of the landed tables when they are on and statements run here (a cluster's executors could
/// not read the tails).
fn api_catalog(config: &Config, store: &TableStore, js: &jetstream::Context) -> Catalog {
    let mut catalog = Catalog::new(store.clone(), config.query.snapshot_refresh);
    if !matches!(config.query.engine, adit_sql::QueryEngine::Local) {
        return catalog;
    }
    if config.query.latest.enabled {
        catalog = catalog.with_memory(Arc::new(adit_pipelines::latest::LatestValues::start(
            js,
            &ValidationPolicy::default(),
            config.query.latest,
        )));
    }
    if !config.query.fresh_reads {
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

/// The node the blocks view asks for the chain's height: `query.node`, else the pool's node
/// when it is monerod.
fn chain_tip(config: &Config) -> anyhow::Result<Option<adit_api::chain::ChainTip>> {
    let node = config.query.node.clone().or_else(|| {
        let pool = &config.pool.node;
        pool.starts_with("http").then(|| pool.clone())
    });
    Ok(node
        .map(|n| adit_api::chain::ChainTip::new(&n))
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

/// The dashboards bucket, with the shipped dashboards written into it the first time.
async fn dashboards(
    js: &async_nats::jetstream::Context,
    config: &Config,
) -> anyhow::Result<adit_web::store::DashboardStore> {
    use adit_web::{builtin, store::DashboardStore};
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

/// Panics to inject into supervised parts, from `ADIT_FAULTS` (e.g. `adapters,pipeline:landing=2`),
/// for the tests that kill each part from inside. Read in debug builds only: a release build
/// ignores it, so no environment variable can make a deployed process kill itself.
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
