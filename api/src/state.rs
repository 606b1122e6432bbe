//! What the HTTP handlers share: the SQL engine, the buckets and stores behind the routes,
//! the limits. Every route module takes it; it names none of them.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use adit_sql::SqlEngine;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Runs SQL.
    pub engine: Arc<SqlEngine>,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// The supervised parts of the process, for `/ready`.
    pub vitals: adit_supervise::Vitals,
    /// The NATS connection, for readiness.
    pub nats: Option<async_nats::Client>,
    /// The node whose chain height gives blocks their confirmations.
    pub node: Option<crate::chain::ChainTip>,
    /// The registry bucket (none without NATS: its routes answer 503).
    pub registry: Option<adit_bus::registry::Registry>,
    /// Publishes operators' notes (manual violations) to the pipelines.
    pub publisher: Option<adit_bus::Publisher>,
    /// The alert rules bucket (none without NATS: its routes answer 503).
    pub rules: Option<adit_alerts::RuleStore>,
    /// The silences (none without NATS).
    pub silences: Option<adit_alerts::notify::Silences>,
    /// The receivers, for test messages (none without `[notify] receivers`: 503).
    pub notifier: Option<Arc<adit_alerts::notify::Notifier>>,
    /// The Stratum bans bucket (none without NATS: its routes answer 503).
    pub bans: Option<async_nats::jetstream::kv::Store>,
    /// Live subscriptions (none without NATS: the route answers 503).
    pub live: Option<crate::hub::Live>,
    /// Slots for SQL statements per role.
    pub admission: Arc<adit_sql::admission::Admission>,
    /// Failed authentications that ban an address (shared with the PostgreSQL port).
    pub lockout: Arc<adit_auth::lockout::Lockout>,
    /// Users' dashboards (none without NATS: their routes answer 503).
    pub dashboards: Option<adit_web::store::DashboardStore>,
    /// Miners' worker-down notice subscriptions (none without NATS: the route answers 503).
    pub notices: Option<adit_alerts::notify::workers::Subscriptions>,
    /// The wallet RPC that checks a miner's signed request (`verify`): the payer's
    /// (`payments.wallet_rpc`); none where there is no Monero wallet (the route answers 503).
    pub signatures: Option<String>,
    /// The networks `/metrics` and `/ready` answer to (`query.ops_networks`); empty: any.
    pub ops_networks: Arc<Vec<ipnet::IpNet>>,
}

impl AppState {
    /// The SQL API alone over `engine`: no NATS (the routes over buckets and streams answer
    /// 503), no metrics, default statement slots and lockout. What a process without a bus
    /// serves, and what the tests of the routes start from.
    pub fn bare(engine: Arc<SqlEngine>) -> Self {
        Self {
            engine,
            metrics: None,
            vitals: adit_supervise::Vitals::new(),
            nats: None,
            node: None,
            registry: None,
            publisher: None,
            rules: None,
            silences: None,
            notifier: None,
            bans: None,
            live: None,
            admission: Arc::new(adit_sql::admission::Admission::new(Default::default())),
            lockout: Arc::new(adit_auth::lockout::Lockout::new(Default::default())),
            dashboards: None,
            notices: None,
            signatures: None,
            ops_networks: Arc::default(),
        }
    }
}
