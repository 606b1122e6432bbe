//! Arrow Flight SQL in front of the SQL engine, for the tools built on Arrow: ADBC drivers
//! (and pandas or Polars through them), Grafana's Flight SQL data source, JDBC's Flight SQL
//! driver. Results go out as Arrow record batches, streamed without a row limit.
//!
//! What a statement may do is what `POST /api/v1/sql?stream=true` lets it do: the same
//! read-only engine, time and memory limits, statement slots per role and lockout of
//! addresses that fail to authenticate. A call carries an API token as
//! `authorization: Bearer <token>`; a client that logs in with a user name and password
//! (the handshake's basic auth) gives the token as the password and gets it back as its
//! bearer token. With `query.tls` set the port speaks TLS only.
//!
//! [`service`] answers the Flight SQL calls; [`handle`] is what a prepared statement's handle
//! carries between them; `adit_ipc` checks a client's Arrow IPC before Arrow reads it.

mod handle;
mod planned;
mod service;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use adit_auth::Tokens;
use adit_sql::SqlEngine;
use arrow_flight::flight_service_server::FlightServiceServer;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::Connected;

use crate::conns::{ConnCaps, ConnSlot};
use adit_auth::lockout::Lockout;
use adit_sql::admission::Admission;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection has to make its first authenticated call.
const OPENING: Duration = Duration::from_secs(60);

/// `[query.flight]`: where Arrow Flight SQL clients connect.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlightConfig {
    /// Address to listen on (Flight SQL's usual port is 8815 or 32010).
    pub listen: String,
    /// Most client connections open at once; one more is closed unanswered.
    pub max_connections: usize,
    /// Most connections from one address (an IPv6 /64 counts as one).
    pub max_per_address: usize,
    /// A connection is asked to end (HTTP/2 GOAWAY; gRPC clients connect again) once this old,
    /// so an idle one is not held for ever. One that has made no authenticated call within a
    /// minute of connecting is closed.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8815".into(),
            max_connections: 100,
            max_per_address: 16,
            max_connection_age: Duration::from_secs(3600),
        }
    }
}

impl FlightConfig {
    /// Checks the values; the error names the full key (`query.flight.…`).
    pub fn validate(&self) -> adit_config::Checked {
        adit_config::check(
            (1..=100_000).contains(&self.max_connections),
            "query.flight.max_connections",
            format!("must be from 1 to 100000, not {}", self.max_connections),
        )?;
        adit_config::check(
            (1..=self.max_connections).contains(&self.max_per_address),
            "query.flight.max_per_address",
            format!(
                "must be from 1 to max_connections ({}), not {}",
                self.max_connections, self.max_per_address
            ),
        )?;
        adit_config::check(
            (Duration::from_secs(60)..=Duration::from_secs(7 * 86_400))
                .contains(&self.max_connection_age),
            "query.flight.max_connection_age",
            format!("must be from 1m to 7d, not {:?}", self.max_connection_age),
        )
    }
}

/// What every call shares.
pub struct Flight {
    /// Runs the statements.
    pub engine: Arc<SqlEngine>,
    /// The tokens a call may carry.
    pub tokens: Arc<Tokens>,
    /// Statement slots per role, shared with the HTTP API.
    pub admission: Arc<Admission>,
    /// Addresses that fail to authenticate, shared with the HTTP API.
    pub lockout: Arc<Lockout>,
    /// `[query.flight]`: its connection limits.
    pub config: FlightConfig,
}

/// Serves Flight SQL on `listener` (TLS only with `tls`) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    flight: Arc<Flight>,
    tls: Option<adit_protocol::https::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if !flight.tokens.enabled() {
        tracing::warn!(
            "no API tokens configured: the Flight SQL port lets in anyone who can reach it"
        );
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let caps = ConnCaps::new(flight.config.max_connections, flight.config.max_per_address);
    let incoming = incoming(listener, tls, caps, stopped);
    let max_age = flight.config.max_connection_age;
    let service = service::Service::new(flight)
        .map_err(|e| io::Error::other(format!("Flight SQL's server information: {e}")))?;
    let service = FlightServiceServer::new(service)
        .max_decoding_message_size(handle::MAX_HANDLE_BYTES + 64 * 1024);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .max_connection_age(max_age)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            drop(stop);
        })
        .await
        .map_err(io::Error::other)
}

/// A client's connection, over TLS or not, with its address and its place among the
/// connections; closed if no authenticated call comes by its opening's end.
pub(crate) struct Conn {
    io: Io,
    peer: SocketAddr,
    _slot: ConnSlot,
    authenticated: Arc<AtomicBool>,
    /// Until an authenticated call: when the connection is closed without one.
    opening: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Who is on the other end of a call, as tonic hands it to each request, and where the
/// service says the connection has made an authenticated call.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    pub authenticated: Arc<AtomicBool>,
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        Peer {
            addr: self.peer,
            authenticated: self.authenticated.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.authenticated.load(Ordering::Relaxed) {
            self.opening = None;
        } else if let Some(opening) = self.opening.as_mut()
            && opening.as_mut().poll(cx).is_ready()
        {
            tracing::debug!(peer = %self.peer, "Flight SQL connection closed: no authenticated call in time");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no authenticated call in time",
            )));
        }
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    /// HTTP/2 writes each frame's header and its data as separate buffers: without vectored
    /// writes every 9-byte header went out as its own write (and, with `TCP_NODELAY`, its own
    /// packet) before the data it heads.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts on `listener` until `stopped` resolves, handshaking TLS (when set) in a task per
/// connection so a slow client holds up no one.
fn incoming(
    listener: TcpListener,
    tls: Option<adit_protocol::https::TlsAcceptor>,
    caps: Arc<ConnCaps>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a Flight SQL connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let slot = match caps.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    tracing::info!(%peer, ?refusal, "Flight SQL connection refused: too many");
                    continue;
                }
            };
            let opening = Box::pin(tokio::time::sleep(OPENING));
            // Small answers go out at once: without it Nagle's algorithm and the client's
            // delayed ACK added about 40 ms to every call (scripts/bench_sql.py).
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
            }
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                let io = match tls {
                    None => Io::Plain(tcp),
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => Io::Tls(Box::new(stream)),
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "Flight SQL TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "Flight SQL TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                let conn = Conn {
                    io,
                    peer,
                    _slot: slot,
                    authenticated: Arc::default(),
                    opening: Some(opening),
                };
                if tx.send(Ok(conn)).await.is_err() {
                    tracing::debug!(%peer, "the Flight SQL server stopped before a connection");
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
