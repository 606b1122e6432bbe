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
//! carries between them.

mod handle;
mod service;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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

use crate::admission::Admission;
use crate::lockout::Lockout;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[query.flight]`: where Arrow Flight SQL clients connect.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlightConfig {
    /// Address to listen on (Flight SQL's usual port is 8815 or 32010).
    pub listen: String,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8815".into(),
        }
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
    let incoming = incoming(listener, tls, stopped);
    let service = service::Service::new(flight)
        .map_err(|e| io::Error::other(format!("Flight SQL's server information: {e}")))?;
    let service = FlightServiceServer::new(service)
        .max_decoding_message_size(handle::MAX_HANDLE_BYTES + 64 * 1024);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            drop(stop);
        })
        .await
        .map_err(io::Error::other)
}

/// A client's connection, over TLS or not, with its address.
pub(crate) struct Conn {
    io: Io,
    peer: SocketAddr,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Who is on the other end of a call, as tonic hands it to each request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        Peer(self.peer)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
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
                if tx.send(Ok(Conn { io, peer })).await.is_err() {
                    tracing::debug!(%peer, "the Flight SQL server stopped before a connection");
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
