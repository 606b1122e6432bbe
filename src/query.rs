//! The `[query]` section: the settings of the SQL service, one engine behind three doors (the
//! HTTP API and its web page, `adit_api` and `adit_web`; the PostgreSQL and Flight SQL ports,
//! `adit_wire`), with the tokens, TLS, statement slots and lockout they share.

use adit_api::{JwtConfig, TokenConfig, Tokens};
use adit_sql::SqlLimits;
use serde::Deserialize;

/// The SQL service's settings; from config (`[query]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Address to listen on.
    pub listen: String,
    /// Per-query limits.
    pub limits: SqlLimits,
    /// How stale a table's snapshot may be when a query starts; each table's log is checked
    /// for new commits at most this often (zero: before every query).
    #[serde(with = "humantime_serde")]
    pub snapshot_refresh: std::time::Duration,
    /// Show the landed tables' rows not committed yet (read from their streams here) after
    /// each snapshot, so an event is visible within milliseconds of its publish; local engine
    /// only.
    pub fresh_reads: bool,
    /// The last-value tables (`latest_energy_readings`, `recent_sensor_readings`…): the
    /// newest readings per machine, sensor and worker, kept in memory here; local engine only.
    pub latest: adit_pipelines::latest::LatestConfig,
    /// Where the API's statements run: here, or on a Ballista cluster.
    pub engine: adit_sql::QueryEngine,
    /// Static bearer tokens; with none and no `jwt`, auth is off.
    pub tokens: Vec<TokenConfig>,
    /// JWT bearer tokens signed by this key, besides the static ones.
    pub jwt: Option<JwtConfig>,
    /// Serve HTTPS with this certificate and key (PEM) instead of HTTP.
    pub tls: Option<adit_protocol::TlsFiles>,
    /// Most live (SSE) subscribers at once; more get a 429.
    pub live_max_subscribers: usize,
    /// SQL statements running at once, per token role.
    pub concurrency: adit_sql::admission::ConcurrencyConfig,
    /// monerod's RPC URL, for the confirmations in the blocks view (default: the pool's node
    /// when it is monerod).
    pub node: Option<String>,
    /// Where users open the API and dashboard when it is not by IP address or `localhost`
    /// (e.g. `https://adit.farm.example`): its host is served and its pages may change things.
    pub public_url: Option<String>,
    /// More host names the API is reached by (checked against each request's `Host`).
    pub allowed_hosts: Vec<String>,
    /// Failed authentications that ban an address, and for how long.
    pub lockout: adit_auth::lockout::LockoutConfig,
    /// Serve PostgreSQL clients too (`[query.postgres]`).
    pub postgres: Option<adit_wire::postgres::PostgresConfig>,
    /// Serve Arrow Flight SQL clients too (`[query.flight]`).
    pub flight: Option<adit_wire::flight::FlightConfig>,
    /// The networks `/metrics` and `/ready` answer to (CIDRs or addresses, e.g.
    /// `["10.0.0.0/8", "127.0.0.1"]`); empty: any. `/health` and `/live` answer everyone.
    pub ops_networks: Vec<String>,
    /// Distinct custom-metric series (name, source and labels) HTTP ingest admits per
    /// process; a point of a new series beyond it is refused (1 to 1 000 000).
    pub custom_metric_series: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            limits: SqlLimits::default(),
            snapshot_refresh: std::time::Duration::from_millis(250),
            fresh_reads: true,
            latest: adit_pipelines::latest::LatestConfig::default(),
            engine: adit_sql::QueryEngine::Local,
            tokens: Vec::new(),
            jwt: None,
            tls: None,
            live_max_subscribers: 256,
            concurrency: adit_sql::admission::ConcurrencyConfig::default(),
            node: None,
            public_url: None,
            allowed_hosts: Vec::new(),
            lockout: adit_auth::lockout::LockoutConfig::default(),
            postgres: None,
            flight: None,
            ops_networks: Vec::new(),
            custom_metric_series: 10_000,
        }
    }
}

impl QueryConfig {
    /// The browser policy these settings make (hosts served, origins allowed to change
    /// things); an error names the setting that does not parse.
    pub fn origin_policy(
        &self,
    ) -> std::result::Result<adit_api::origin::OriginPolicy, adit_config::Invalid> {
        adit_api::origin::OriginPolicy::new(self.public_url.as_deref(), &self.allowed_hosts)
    }

    /// `ops_networks` parsed (an address is its own /32 or /128); an error names the entry.
    pub fn ops_networks(&self) -> std::result::Result<Vec<ipnet::IpNet>, adit_config::Invalid> {
        self.ops_networks
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        adit_config::Invalid::new(
                            format!("query.ops_networks[{i}]"),
                            format!("{text:?} is not a network like 10.0.0.0/8 or an address"),
                        )
                    })
            })
            .collect()
    }

    /// The API's URL on this machine: `https://` with `tls`, `http://` without.
    pub fn local_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.listen)
    }

    /// The tokens the API accepts (static and JWT, the JWT key read now); an error names the
    /// setting. A worker's token (`worker = …`) is the coordinator's, not the API's.
    pub fn tokens(&self) -> std::result::Result<Tokens, adit_auth::Invalid> {
        if let Some(i) = self.tokens.iter().position(|t| t.worker.is_some()) {
            return Err(adit_auth::Invalid {
                key: format!("query.tokens[{i}].worker"),
                reason:
                    "a worker's token is for [cluster.rest] tokens; the API has no worker scope"
                        .into(),
            });
        }
        Tokens::new("query", &self.tokens, self.jwt.as_ref())
    }

    /// The TLS acceptor for HTTPS when `tls` is set (the files read now); an error names the
    /// setting.
    pub fn tls_acceptor(
        &self,
    ) -> std::result::Result<Option<adit_protocol::https::TlsAcceptor>, adit_config::Invalid> {
        self.tls_acceptor_for(&[])
    }

    /// [`QueryConfig::tls_acceptor`] naming `protocols` in the handshake (ALPN), for the
    /// PostgreSQL and Flight SQL ports.
    pub fn tls_acceptor_for(
        &self,
        protocols: &[&[u8]],
    ) -> std::result::Result<Option<adit_protocol::https::TlsAcceptor>, adit_config::Invalid> {
        self.tls
            .as_ref()
            .map(|files| adit_protocol::tls::acceptor_for(files, None, protocols))
            .transpose()
            .map_err(|e| adit_config::Invalid::new("query.tls", e.to_string()))
    }
}
