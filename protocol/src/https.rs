//! HTTPS for adit's HTTP servers (the API and dashboard, the coordinator's REST): a listener
//! that `axum::serve` takes, handing over each connection once its TLS handshake is done.
//! Handshakes run side by side, so a client that stalls its handshake holds only its own slot,
//! for at most [`HANDSHAKE_TIMEOUT`], and at most [`MAX_HANDSHAKES`] run at once.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;

/// A TCP listener whose connections are served over TLS.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// Serves TLS from `acceptor` (see [`crate::tls::acceptor`]) on `tcp`.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        Self {
            tcp,
            acceptor,
            handshakes: JoinSet::new(),
        }
    }

    /// Starts the handshake of a new connection.
    fn start(&mut self, stream: TcpStream, from: SocketAddr) {
        no_delay(&stream);
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, from)),
                Ok(Err(e)) => {
                    tracing::debug!(%from, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%from, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_HANDSHAKES => {
                    match accepted {
                        Ok((stream, from)) => self.start(stream, from),
                        Err(e) => {
                            // Out of file descriptors and the like: give the system a moment.
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Sends each write at once. A streamed answer is written in pieces (an Arrow stream's schema,
/// its batches, its end; a subscription's events), and with Nagle's algorithm a piece waited for
/// the client's acknowledgement of the one before, which a client on a kept-alive connection
/// delays by up to 40 ms: measured, one in four 10-row Arrow streams took 43 ms instead of 3.
fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes,
/// then drains open requests. Handlers see the client's address as
/// `ConnectInfo<SocketAddr>` either way.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    use axum::serve::ListenerExt;
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            axum::serve(listener.tap_io(|tcp| no_delay(tcp)), service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(acceptor) => {
            // `tap_io` gives the TLS listener axum's connect-info for its address type.
            let listener = TlsListener::new(listener, acceptor).tap_io(|_| {});
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
