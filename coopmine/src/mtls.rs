//! Mutual TLS for the gRPC service: connections are accepted and handshaken here (with the
//! protocol crate's acceptor that requires a certificate from the cluster CA), and the worker id
//! is read from the certificate's common name, once, before any request. A connection without a
//! certificate, or with another CA's, never reaches the service. The certificate, key and CA
//! are read again when their files change (`cluster.grpc.reload_every`): a rotated
//! certificate is served to the next connection without a restart.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection, as tonic hands it to each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The worker id: the certificate's common name.
    pub worker: String,
    /// Its address.
    pub addr: SocketAddr,
}

/// A handshaken connection with its peer.
#[derive(Debug)]
pub struct MtlsStream {
    /// The TLS stream.
    inner: TlsStream<TcpStream>,
    /// The peer.
    peer: Peer,
}

impl Connected for MtlsStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts on `listener` until `stop`, handshaking each connection in a task of its own so a
/// slow client holds up no one; yields the connections that present a valid certificate.
pub fn incoming(
    listener: TcpListener,
    acceptor: adit_protocol::tls::ReloadingAcceptor,
    stop: CancellationToken,
) -> ReceiverStream<io::Result<MtlsStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a worker connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // The certificate files as they are now: a rotated one is served from here on.
            let (acceptor, tx) = (acceptor.current(), tx.clone());
            tokio::spawn(async move {
                match handshake(&acceptor, tcp, addr).await {
                    Ok(stream) => {
                        if tx.send(Ok(stream)).await.is_err() {
                            tracing::debug!(%addr, "the gRPC server stopped before a worker's connection");
                        }
                    }
                    Err(reason) => {
                        metrics::counter!("coopmine_tls_refused_total").increment(1);
                        tracing::warn!(%addr, %reason, "worker connection refused");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The TLS handshake and the worker id from the certificate.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<MtlsStream, String> {
    let inner = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let worker = inner
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(adit_protocol::tls::common_name)
        .ok_or_else(|| "the client certificate has no common name".to_owned())?;
    if !crate::config::is_token(&worker) {
        return Err(format!("worker id {worker:?} is not a plain name"));
    }
    Ok(MtlsStream {
        inner,
        peer: Peer { worker, addr },
    })
}
