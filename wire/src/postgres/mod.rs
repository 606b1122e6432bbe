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
use tokio::task::JoinSet;

use crate::conns::ConnCaps;
use adit_auth::lockout::Lockout;
use adit_sql::admission::Admission;

/// `[query.postgres]`: where PostgreSQL clients connect.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Address to listen on (PostgreSQL's own port is 5432).
    pub listen: String,
    /// Most client connections open at once; one more is refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// Most connections from one address (an IPv6 /64 counts as one); one more: 53300.
    pub max_per_address: usize,
    /// A connection that sends nothing for this long is closed (57P05); a client that has
    /// not sent its password within a minute of connecting is closed too.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5432".into(),
            max_connections: 100,
            max_per_address: 16,
            idle_timeout: Duration::from_secs(30 * 60),
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
        )?;
        check(
            (1..=self.max_connections).contains(&self.max_per_address),
            "query.postgres.max_per_address",
            format!(
                "must be from 1 to max_connections ({}), not {}",
                self.max_connections, self.max_per_address
            ),
        )?;
        check(
            (Duration::from_secs(10)..=Duration::from_secs(7 * 86_400))
                .contains(&self.idle_timeout),
            "query.postgres.idle_timeout",
            format!("must be from 10s to 7d, not {:?}", self.idle_timeout),
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
    /// The connections open, in all and per address.
    connections: Arc<ConnCaps>,
    /// How long a connection may send nothing.
    idle_timeout: Duration,
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
            connections: ConnCaps::new(config.max_connections, config.max_per_address),
            idle_timeout: config.idle_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A startup packet (protocol 3.0) and a password message carrying `password`.
    fn opening(password: &str) -> Vec<u8> {
        let mut startup = 196_608_u32.to_be_bytes().to_vec();
        startup.extend_from_slice(b"user\0psql\0database\0adit\0\0");
        let mut out = (startup.len() as u32 + 4).to_be_bytes().to_vec();
        out.extend(startup);
        out.push(b'p');
        out.extend_from_slice(&(password.len() as u32 + 5).to_be_bytes());
        out.extend_from_slice(password.as_bytes());
        out.push(0);
        out
    }

    /// What the server at `addr` sends a client logging in with `password`, as (type, body),
    /// up to the first error or ReadyForQuery, or the connection's end.
    async fn log_in(addr: SocketAddr, password: &str) -> Vec<(u8, Vec<u8>)> {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&opening(password)).await.unwrap();
        let mut messages = Vec::new();
        let mut head = [0u8; 5];
        while stream.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4)];
            if stream.read_exact(&mut body).await.is_err() {
                break;
            }
            messages.push((head[0], body));
            if matches!(head[0], b'E' | b'Z') {
                break;
            }
        }
        messages
    }

    /// A server under `config` with JWT tokens over an empty table root in `dir`, serving on a
    /// free port; its address.
    async fn listening(config: &PostgresConfig, dir: &std::path::Path) -> SocketAddr {
        let server = Postgres::new(
            config,
            testing::engine(dir),
            Arc::new(adit_testkit::jwt::tokens()),
            Arc::new(Admission::new(Default::default())),
            Arc::new(Lockout::new(Default::default())),
            None,
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(server), std::future::pending()));
        addr
    }

    /// Issue 56: connections are capped per address (an IPv6 /64 counts as one) as well as in
    /// all: one more from the same address is refused with 53300 naming the per-address cap,
    /// and a closed one frees its place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_address_cannot_take_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let config = PostgresConfig {
            max_connections: 10,
            max_per_address: 2,
            ..PostgresConfig::default()
        };
        let addr = listening(&config, dir.path()).await;
        let password = adit_testkit::jwt::signed("alice", None);
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(&opening(&password)).await.unwrap();
            let mut head = [0u8; 5];
            loop {
                stream.read_exact(&mut head).await.unwrap();
                let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                let mut body = vec![0u8; len - 4];
                stream.read_exact(&mut body).await.unwrap();
                assert_ne!(head[0], b'E', "{}", String::from_utf8_lossy(&body));
                if head[0] == b'Z' {
                    break;
                }
            }
            held.push(stream);
        }
        let within = Duration::from_secs(30);
        let answer = tokio::time::timeout(within, log_in(addr, &password)).await;
        let (kind, body) = answer.unwrap().pop().expect("an answer");
        let text = String::from_utf8_lossy(&body);
        assert_eq!(kind, b'E', "{text}");
        assert!(
            text.contains("53300") && text.contains("max_per_address"),
            "{text}"
        );
        drop(held.pop());
        let freed = tokio::time::timeout(within, async {
            loop {
                let answer = log_in(addr, &password).await;
                if answer.last().is_some_and(|(kind, _)| *kind == b'Z') {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        freed.await.expect("a closed connection frees its place");
    }

    /// Issue 56: a JWT with a cluster `worker` claim is not a password (28P01), as it is no
    /// token over HTTP or Flight SQL; the same JWT without the claim logs in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_jwt_is_not_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let addr = listening(&PostgresConfig::default(), dir.path()).await;
        let within = Duration::from_secs(30);

        let worker = adit_testkit::jwt::signed("rig-7", Some("rig-7"));
        let answer = tokio::time::timeout(within, log_in(addr, &worker)).await;
        let (kind, body) = answer.unwrap().pop().expect("an answer");
        let text = String::from_utf8_lossy(&body);
        assert_eq!(kind, b'E', "{text}");
        assert!(
            text.contains("28P01") && text.contains("coordinator"),
            "{text}"
        );

        let plain = adit_testkit::jwt::signed("alice", None);
        let answer = tokio::time::timeout(within, log_in(addr, &plain)).await;
        let (kind, body) = answer.unwrap().pop().expect("an answer");
        let text = String::from_utf8_lossy(&body);
        assert_eq!(kind, b'Z', "a JWT without the claim logs in: {text}");
    }
}
