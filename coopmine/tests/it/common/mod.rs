//! What the coordinator's tests share: the cluster's certificates, a coordinator configured on
//! free loopback ports with them, and starting it until its addresses are known.

use std::path::Path;
use std::time::Duration;

use adit_coopmine::certs::{CertsPlan, make};
use adit_coopmine::{Bound, ClusterConfig};
use adit_protocol::TlsFiles;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Writes a CA, a coordinator certificate for localhost and one per worker into `dir`.
pub(crate) fn certs(dir: &Path, workers: &[&str]) {
    make(&CertsPlan {
        out: dir.to_owned(),
        server_names: vec!["localhost".into(), "127.0.0.1".into()],
        workers: workers.iter().map(|w| (*w).to_owned()).collect(),
        cluster: "c1".into(),
    })
    .unwrap();
}

/// `name`'s certificate and key in `dir`.
pub(crate) fn identity(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

/// A coordinator on free loopback ports with the certificates in `certs`, whose upstream
/// pool is never there.
pub(crate) fn coordinator_config(certs: &Path) -> ClusterConfig {
    let mut config = ClusterConfig::default();
    config.pool.address = vec!["stratum+tcp://127.0.0.1:9".into()];
    config.pool.wallet = "w".into();
    config.grpc.listen = "127.0.0.1:0".into();
    config.rest.listen = "127.0.0.1:0".into();
    config.grpc.cert = certs.join("coordinator.pem");
    config.grpc.key = certs.join("coordinator.key");
    config.grpc.ca = certs.join("ca.pem");
    config
}

/// A running coordinator: its addresses, its task and what stops it.
pub(crate) struct Running {
    /// Where it listens.
    pub(crate) bound: Bound,
    /// Its task.
    pub(crate) task: JoinHandle<adit_coopmine::Result<()>>,
    /// Cancel to stop it.
    pub(crate) stop: CancellationToken,
}

impl Running {
    /// Starts `config` and waits for its addresses.
    pub(crate) async fn start(config: ClusterConfig) -> Self {
        let stop = CancellationToken::new();
        let (ready, bound) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(adit_coopmine::run_coordinator(
            config,
            None,
            None,
            Some(ready),
            stop.clone(),
        ));
        let bound = tokio::time::timeout(Duration::from_secs(20), bound)
            .await
            .unwrap()
            .unwrap();
        Self { bound, task, stop }
    }

    /// Stops it and waits for a clean end.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
