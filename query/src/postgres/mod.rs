//! PostgreSQL's wire protocol in front of the SQL engine, for the tools people already open:
//! psql, psycopg, JDBC tools (DBeaver, Metabase) and Grafana's PostgreSQL data source.
//!
//! What a statement may do is what `POST /api/v1/sql` lets it do: the same read-only engine,
//! limits, statement slots per role and lockout of addresses that fail to authenticate. A
//! connection authenticates with an API token as its password (any user name); with no tokens
//! configured it is let in as the HTTP API lets everyone in. With `query.tls` set the port
//! speaks TLS and refuses a connection that did not ask for it, before any password is sent.
//!
//! [`frames`] stands in front of pgwire and lets only well-formed messages through,
//! [`catalog`] adds `pg_catalog` to each statement's session (clients list tables through
//! it), [`commands`] answers the session commands clients send on connect (`SET`, `SHOW`,
//! `BEGIN`…) without reaching the engine, and [`connection`] is one client's conversation.

mod catalog;
mod commands;
mod connection;
mod frames;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adit_auth::Tokens;
use adit_config::{Checked, check};
use adit_sql::SqlEngine;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::admission::Admission;
use crate::lockout::Lockout;

/// `[query.postgres]`: where PostgreSQL clients connect.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Address to listen on (PostgreSQL's own port is 5432).
    pub listen: String,
    /// Most client connections open at once; one more is refused with SQLSTATE 53300.
    pub max_connections: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5432".into(),
            max_connections: 100,
        }
    }
}

impl PostgresConfig {
    /// Checks the values; the error names the full key (`query.postgres.…`).
    pub fn validate(&self) -> Checked {
        check(
            !self.listen.trim().is_empty(),
            "query.postgres.listen",
            "must be an address such as 127.0.0.1:5432",
        )?;
        check(
            (1..=100_000).contains(&self.max_connections),
            "query.postgres.max_connections",
            format!("must be from 1 to 100000, not {}", self.max_connections),
        )
    }
}

/// What every connection shares.
pub struct Postgres {
    /// Runs the statements.
    pub engine: Arc<SqlEngine>,
    /// The tokens a password may be.
    pub tokens: Arc<Tokens>,
    /// Statement slots per role, shared with the HTTP API.
    pub admission: Arc<Admission>,
    /// Addresses that fail to authenticate, shared with the HTTP API.
    pub lockout: Arc<Lockout>,
    /// TLS, required of every connection when set.
    pub tls: Option<adit_protocol::https::TlsAcceptor>,
    /// Connections that may still open.
    connections: Arc<Semaphore>,
    /// `pg_catalog` and the functions clients call, added to each statement's session.
    session: Arc<catalog::PgSession>,
    /// Reads PostgreSQL clients' SQL.
    parser: Arc<catalog::PgParser>,
    /// Open connections by cancel key, for a client's request to cancel its statement.
    cancels: Arc<pgwire::api::ConnectionManager>,
}

impl Postgres {
    /// The shared state of a listener under `config`.
    pub fn new(
        config: &PostgresConfig,
        engine: Arc<SqlEngine>,
        tokens: Arc<Tokens>,
        admission: Arc<Admission>,
        lockout: Arc<Lockout>,
        tls: Option<adit_protocol::https::TlsAcceptor>,
    ) -> Result<Self, String> {
        let session = catalog::PgSession::new()
            .map_err(|e| format!("PostgreSQL's catalog could not be built: {e}"))?;
        Ok(Self {
            engine,
            tokens,
            admission,
            lockout,
            tls,
            connections: Arc::new(Semaphore::new(config.max_connections)),
            session: Arc::new(session),
            parser: Arc::new(catalog::PgParser::new()),
            cancels: Arc::new(pgwire::api::ConnectionManager::new()),
        })
    }
}

/// Serves PostgreSQL clients on `listener` until `shutdown` completes; then open connections
/// are closed (a client's statement in flight is stopped with them).
pub async fn serve(
    listener: TcpListener,
    server: Arc<Postgres>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if !server.tokens.enabled() {
        tracing::warn!(
            "no API tokens configured: the PostgreSQL port lets in anyone who can reach it"
        );
    }
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    connections.spawn(connection::run(socket, peer, server.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, as the HTTP server does.
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended && e.is_panic() {
                    tracing::error!(error = %e, "a PostgreSQL connection's task panicked");
                }
            }
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// The address a connection came from, for the lockout and logs.
fn client_ip(peer: SocketAddr) -> std::net::IpAddr {
    peer.ip().to_canonical()
}
