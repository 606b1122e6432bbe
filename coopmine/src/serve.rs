//! Running a coordinator: binding its two listeners, starting the upstream task, the job and
//! expiry loops, the gRPC service for workers (mutual TLS) and the REST API for people, and
//! stopping them together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adit_bus::publish::Publisher;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::ClusterConfig;
use crate::coordinator::{Coordinator, MetricsRender};
use crate::error::{Error, Result};
use crate::hasher::Hashers;
use crate::upstream;

/// Where a running coordinator listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// gRPC.
    pub grpc: SocketAddr,
    /// REST.
    pub rest: SocketAddr,
}

/// Runs a coordinator until `stop`: the upstream, the job and expiry loops, the gRPC service
/// (mutual TLS) and the REST API. `ready` gets the bound addresses once both listen.
pub async fn run(
    config: ClusterConfig,
    publisher: Option<Publisher>,
    metrics: Option<MetricsRender>,
    ready: Option<oneshot::Sender<Bound>>,
    stop: CancellationToken,
) -> Result<()> {
    config.validate()?;
    let upstream_config = config.upstream()?;
    let acceptor = adit_protocol::tls::ReloadingAcceptor::new(
        &adit_protocol::TlsFiles {
            cert: config.grpc.cert.clone(),
            key: config.grpc.key.clone(),
        },
        Some(&config.grpc.ca),
        &[],
        config.grpc.reload_every,
    )?;
    let grpc_listener = tokio::net::TcpListener::bind(&config.grpc.listen)
        .await
        .map_err(|e| {
            Error::io(
                format!("binding cluster.grpc.listen {}", config.grpc.listen),
                e,
            )
        })?;
    let (rest_tokens, rest_tls) = (config.rest.tokens()?, config.rest.tls_acceptor()?);
    let rest_listener = tokio::net::TcpListener::bind(&config.rest.listen)
        .await
        .map_err(|e| {
            Error::io(
                format!("binding cluster.rest.listen {}", config.rest.listen),
                e,
            )
        })?;
    let bound = Bound {
        grpc: grpc_listener
            .local_addr()
            .map_err(|e| Error::io("gRPC address", e))?,
        rest: rest_listener
            .local_addr()
            .map_err(|e| Error::io("REST address", e))?,
    };
    let (forwards_tx, forwards_rx) = mpsc::channel(256);
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let hashers = Hashers::start(config.verify_threads, config.verify_mode)?;
    let coordinator = Arc::new(Coordinator::new(
        config,
        hashers,
        forwards_tx,
        publisher,
        metrics,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(client) = coordinator.publisher_client() {
        let (blocks, stop) = (coordinator.blocks.clone(), stop.clone());
        tasks.spawn(crate::blocks::follow(client, blocks, stop));
    }
    tasks.spawn(upstream::run(
        upstream_config,
        events_tx,
        forwards_rx,
        stop.clone(),
    ));
    {
        let c = Arc::clone(&coordinator);
        tasks.spawn(async move {
            while let Some(event) = events_rx.recv().await {
                c.on_upstream(event).await;
            }
        });
    }
    {
        let (c, stop) = (Arc::clone(&coordinator), stop.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !stop.is_cancelled() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => c.expire(),
                }
            }
        });
    }
    let incoming = crate::mtls::incoming(grpc_listener, acceptor, stop.clone());
    let service = crate::service::server(Arc::clone(&coordinator));
    let grpc_stop = stop.clone();
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, grpc_stop.cancelled_owned());
    let rest = adit_protocol::https::serve(
        rest_listener,
        crate::rest::router(Arc::clone(&coordinator), Arc::new(rest_tokens)),
        rest_tls,
        stop.clone().cancelled_owned(),
    );
    tracing::info!(grpc = %bound.grpc, rest = %bound.rest, cluster = %coordinator.config().id, "coordinator listening");
    if let Some(ready) = ready
        && ready.send(bound).is_err()
    {
        tracing::debug!("nobody waited for the coordinator's addresses");
    }
    let (grpc_done, rest_done) = tokio::join!(grpc, rest);
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    grpc_done.map_err(|e| Error::Grpc(e.to_string()))?;
    rest_done.map_err(|e| Error::io("serving the REST API", e))?;
    Ok(())
}
