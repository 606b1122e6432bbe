//! Who may read the cluster, against a real coordinator on real sockets (issue 23): its REST
//! API over HTTPS takes the main API's tokens (static, kept as a digest, or JWT); without one
//! only `/health` answers; a worker's token, and a worker over gRPC, see that worker alone.

use std::path::Path;

use crate::common;

use adit_auth::{Role, TokenConfig, digest_hex};
use adit_coopmine::proto::coordinator_client::CoordinatorClient;
use adit_coopmine::proto::{RegisterRequest, WorkerStatsRequest};
use adit_coopmine::worker;
use adit_testkit::jwt;
use common::{Running, coordinator_config, identity};
use reqwest::StatusCode;

const OPS: &str = "operations-token-0123456789";
const RIG1: &str = "rig1-token-0123456789abcdef";

/// A gRPC client presenting `name`'s certificate, registered.
async fn registered(
    addr: &str,
    certs: &Path,
    name: &str,
) -> CoordinatorClient<tonic::transport::Channel> {
    let connector =
        adit_protocol::tls::connector(Some(&certs.join("ca.pem")), Some(&identity(certs, name)))
            .unwrap();
    let channel = worker::channel(addr, "localhost", &connector)
        .await
        .unwrap();
    let mut client = CoordinatorClient::new(channel);
    let id = client
        .register(RegisterRequest {
            threads: 1,
            mode: "light".into(),
            agent: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .worker;
    assert_eq!(id, name);
    client
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sees_only_itself_and_the_rest_needs_a_token_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    common::certs(&certs, &["rig1", "rig2"]);
    let mut config = coordinator_config(&certs);
    config.rest.tls = Some(identity(&certs, "coordinator"));
    let rig1 = TokenConfig {
        sha256: Some(digest_hex(RIG1)),
        token: None,
        worker: Some("rig1".into()),
        ..TokenConfig::new("rig1", "", Role::Read)
    };
    config.rest.tokens = vec![TokenConfig::new("ops", OPS, Role::Read), rig1];
    config.rest.jwt = Some(jwt::config());
    config.validate().unwrap();
    let running = Running::start(config).await;
    let bound = running.bound;
    let grpc = bound.grpc.to_string();
    let mut one = registered(&grpc, &certs, "rig1").await;
    let _two = registered(&grpc, &certs, "rig2").await;

    // gRPC: rig1 reads itself, and is refused rig2 although rig2 is there.
    let ask = |worker: &str| WorkerStatsRequest {
        worker: worker.into(),
    };
    let own = one.get_worker_stats(ask("")).await.unwrap().into_inner();
    assert_eq!(own.worker, "rig1");
    let named = one
        .get_worker_stats(ask("rig1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(named.worker, "rig1");
    let other = one.get_worker_stats(ask("rig2")).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other}");

    // REST, over HTTPS with the cluster's CA.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", bound.rest.port());
    let get = |path: &str, token: Option<&str>| {
        let mut request = https.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let status = |path: &'static str, token: Option<String>| {
        let call = get(path, token.as_deref());
        async move { call.await.unwrap().status() }
    };
    // Health answers anyone (503: no upstream pool); nothing else does without a token.
    assert_eq!(
        status("/health", None).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    for path in [
        "/api/workers",
        "/api/stats",
        "/api/shares",
        "/api/workers/rig1",
        "/metrics",
    ] {
        assert_eq!(status(path, None).await, StatusCode::UNAUTHORIZED, "{path}");
        let wrong = Some("not-a-token-of-this-cluster".to_string());
        assert_eq!(
            status(path, wrong).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    // The operator's token reads everything.
    let workers: serde_json::Value = get("/api/workers", Some(OPS))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(workers.as_array().map(Vec::len), Some(2), "{workers}");
    // rig1's token (kept as its digest): its own entry, nothing else.
    let rig1 = Some(RIG1.to_string());
    assert_eq!(
        status("/api/workers/rig1", rig1.clone()).await,
        StatusCode::OK
    );
    for path in [
        "/api/workers/rig2",
        "/api/workers",
        "/api/stats",
        "/api/shares",
        "/api/live",
    ] {
        assert_eq!(
            status(path, rig1.clone()).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // A JWT scoped to rig2, and one that has expired.
    let rig2 = jwt::sign(
        &serde_json::json!({"sub": "rig2", "role": "read", "worker": "rig2", "exp": now() + 60}),
    );
    assert_eq!(
        status("/api/workers/rig2", Some(rig2.clone())).await,
        StatusCode::OK
    );
    assert_eq!(
        status("/api/workers/rig1", Some(rig2)).await,
        StatusCode::FORBIDDEN
    );
    let expired = jwt::sign(&serde_json::json!({"sub": "ops", "role": "read", "exp": now() - 120}));
    let refused = get("/api/workers", Some(&expired)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.text().await.unwrap().contains("expired"));

    // Plain HTTP to the HTTPS port gets no answer from the API.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/health", bound.rest.port())).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    running.stop().await;
}
