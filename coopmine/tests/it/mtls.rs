//! Mutual TLS on the coordinator's gRPC service, against a real coordinator on a real socket:
//! a worker without a client certificate and one whose certificate comes from another CA are
//! refused; a worker with the cluster CA's certificate is served, and its id is the
//! certificate's common name whatever it asks for.

use crate::common;

use adit_coopmine::proto::coordinator_client::CoordinatorClient;
use adit_coopmine::proto::{RegisterRequest, WorkerStatsRequest};
use adit_coopmine::worker;
use common::{Running, certs, coordinator_config, identity};

/// The call failed below gRPC (TLS or the connection), not with the service's own answer.
fn assert_refused_in_transport(error: &str) {
    assert!(
        error.contains("source: tonic::transport::Error")
            && !error.contains("no client certificate"),
        "{error}"
    );
}

/// Registers through a connector; the error text when refused.
async fn register(addr: &str, connector: &tokio_rustls::TlsConnector) -> Result<String, String> {
    let channel = worker::channel(addr, "localhost", connector)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = CoordinatorClient::new(channel);
    let reply = client
        .register(RegisterRequest {
            threads: 1,
            mode: "light".into(),
            agent: "test".into(),
        })
        .await
        .map_err(|s| format!("{s}"))?;
    Ok(reply.into_inner().worker)
}

/// The workers the REST API at `rest` lists.
async fn workers(rest: &std::net::SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{rest}/api/workers"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_cluster_cas_workers_are_served_and_named_by_their_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    certs(&ours, &["rig1"]);
    certs(&theirs, &["rig1"]);
    let running = Running::start(coordinator_config(&ours)).await;
    let bound = running.bound;
    let addr = bound.grpc.to_string();
    let ca = ours.join("ca.pem");

    // No client certificate.
    let anonymous = adit_protocol::tls::connector(Some(&ca), None).unwrap();
    let refused = register(&addr, &anonymous).await.unwrap_err();
    // With TLS 1.3 the client may finish its side of the handshake before the server refuses
    // it: it then reads the alert (CertificateRequired) or finds the connection closed or
    // reset. Either way the call dies in the transport: the service, which would answer
    // "no client certificate", never sees it.
    assert_refused_in_transport(&refused);

    // A certificate from another CA, with the same worker name.
    let foreign =
        adit_protocol::tls::connector(Some(&ca), Some(&identity(&theirs, "rig1"))).unwrap();
    let refused_foreign = register(&addr, &foreign).await.unwrap_err();
    assert_refused_in_transport(&refused_foreign);
    // Neither got in.
    let listed = workers(&bound.rest).await;
    assert_eq!(listed, serde_json::json!([]), "refused clients registered");

    // The cluster's own certificate: served, and named by it.
    let good = adit_protocol::tls::connector(Some(&ca), Some(&identity(&ours, "rig1"))).unwrap();
    assert_eq!(register(&addr, &good).await.unwrap(), "rig1");
    let channel = worker::channel(&addr, "localhost", &good).await.unwrap();
    let stats = CoordinatorClient::new(channel)
        .get_worker_stats(WorkerStatsRequest {
            worker: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stats.worker.as_str(), stats.online, stats.slice),
        ("rig1", true, 0)
    );

    // The REST API lists only the worker that got in, and says the upstream is down.
    let listed = workers(&bound.rest).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let health = reqwest::get(format!("http://{}/health", bound.rest))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(
        (
            health["status"].as_str(),
            health["workers"].as_u64(),
            health["pool_connected"].as_bool()
        ),
        (Some("degraded"), Some(1), Some(false))
    );
    running.stop().await;
}

/// Certificate rotation without a restart (issue 61): the cluster's CA, the coordinator's
/// certificate and key are replaced on disk by a new cluster's while the coordinator runs;
/// within its `reload_every`, workers of the new CA are served and those of the old refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_cluster_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (live, old, new) = (
        dir.path().join("live"),
        dir.path().join("old"),
        dir.path().join("new"),
    );
    certs(&old, &["rig1"]);
    certs(&new, &["rig1"]);
    std::fs::create_dir_all(&live).unwrap();
    let install = |from: &std::path::Path| {
        for file in ["ca.pem", "coordinator.pem", "coordinator.key"] {
            std::fs::copy(from.join(file), live.join(file)).unwrap();
        }
    };
    install(&old);
    let mut config = coordinator_config(&live);
    config.grpc.reload_every = std::time::Duration::from_millis(200);
    let running = Running::start(config).await;
    let addr = running.bound.grpc.to_string();
    let with = |ca: &std::path::Path, certs: &std::path::Path| {
        adit_protocol::tls::connector(Some(&ca.join("ca.pem")), Some(&identity(certs, "rig1")))
            .unwrap()
    };
    assert_eq!(register(&addr, &with(&old, &old)).await.unwrap(), "rig1");
    assert!(register(&addr, &with(&new, &new)).await.is_err());

    install(&new);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while register(&addr, &with(&new, &new)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new cluster's worker was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The old cluster's worker trusts neither the new certificate nor is trusted by the new
    // CA: it fails in the transport, wherever the handshake stops.
    let refused = register(&addr, &with(&old, &old)).await.unwrap_err();
    assert!(refused.contains("transport error"), "{refused}");
    running.stop().await;
}
