//! The gRPC service workers call. The worker id comes from the connection's client certificate
//! ([`crate::mtls::Peer`]), never from a request field.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::coordinator::Coordinator;
use crate::mtls::Peer;
use crate::proto::coordinator_server::{Coordinator as CoordinatorRpc, CoordinatorServer};
use crate::proto::{
    ClusterStats, ClusterStatsRequest, HeartbeatReply, HeartbeatRequest, RegisterReply,
    RegisterRequest, ShareReply, ShareRequest, StreamJobsRequest, WorkerJob, WorkerStats,
    WorkerStatsRequest,
};

/// The service over a coordinator.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    /// The coordinator.
    coordinator: Arc<Coordinator>,
}

/// The tonic server for `coordinator`.
pub(crate) fn server(coordinator: Arc<Coordinator>) -> CoordinatorServer<Service> {
    CoordinatorServer::new(Service { coordinator })
}

/// The caller's worker id, from its certificate.
fn worker_of<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .extensions()
        .get::<Peer>()
        .map(|peer| peer.worker.clone())
        .ok_or_else(|| Status::unauthenticated("no client certificate"))
}

#[tonic::async_trait]
impl CoordinatorRpc for Service {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        let worker = worker_of(&request)?;
        let threads = request.get_ref().threads;
        self.coordinator
            .register(&worker, threads)
            .map_err(|e| match e {
                crate::Error::Banned { .. } => Status::permission_denied(e.to_string()),
                crate::Error::ClusterFull { .. } => Status::resource_exhausted(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        let config = self.coordinator.config();
        Ok(Response::new(RegisterReply {
            worker,
            cluster: config.id.clone(),
            heartbeat_ms: u64::try_from(config.heartbeat.as_millis()).unwrap_or(u64::MAX),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let worker = worker_of(&request)?;
        let known = self
            .coordinator
            .heartbeat(
                &worker,
                request.get_ref().hashrate_hs,
                request.get_ref().hashes_total,
            )
            .await;
        Ok(Response::new(HeartbeatReply { known }))
    }

    async fn submit_share(
        &self,
        request: Request<ShareRequest>,
    ) -> Result<Response<ShareReply>, Status> {
        let worker = worker_of(&request)?;
        let share = request.get_ref();
        let outcome = self
            .coordinator
            .submit(&worker, &share.job_id, &share.nonce, &share.result)
            .await;
        Ok(Response::new(ShareReply {
            accepted: outcome.accepted,
            reason: outcome.reason,
            forwarded: outcome.forwarded,
        }))
    }

    type StreamJobsStream = Pin<Box<dyn Stream<Item = Result<WorkerJob, Status>> + Send>>;

    async fn stream_jobs(
        &self,
        request: Request<StreamJobsRequest>,
    ) -> Result<Response<Self::StreamJobsStream>, Status> {
        let worker = worker_of(&request)?;
        if self.coordinator.worker(&worker).is_none_or(|w| !w.online) {
            return Err(Status::failed_precondition("register first"));
        }
        let (tx, rx) = mpsc::channel(4);
        let coordinator = Arc::clone(&self.coordinator);
        tokio::spawn(async move { feed(&coordinator, &worker, &tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_cluster_stats(
        &self,
        request: Request<ClusterStatsRequest>,
    ) -> Result<Response<ClusterStats>, Status> {
        worker_of(&request)?;
        let s = self.coordinator.stats();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Response::new(ClusterStats {
            cluster: s.cluster,
            workers_total: count(s.workers_total),
            workers_online: count(s.workers_online),
            hashrate_hs: s.hashrate_hs,
            reported_hashrate_hs: s.reported_hashrate_hs,
            shares_valid: s.shares_valid,
            shares_invalid: s.shares_invalid,
            shares_forwarded: s.shares_forwarded,
            shares_accepted_upstream: s.shares_accepted_upstream,
            shares_rejected_upstream: s.shares_rejected_upstream,
            blocks_found: s.blocks_found,
            pool_connected: s.upstream.connected,
            upstream: s.upstream.url,
        }))
    }

    async fn get_worker_stats(
        &self,
        request: Request<WorkerStatsRequest>,
    ) -> Result<Response<WorkerStats>, Status> {
        let caller = worker_of(&request)?;
        let asked = &request.get_ref().worker;
        // A worker sees its own figures only; the cluster's are on the REST API, behind its
        // tokens.
        if !asked.is_empty() && *asked != caller {
            return Err(Status::permission_denied(format!(
                "worker {caller} may read only its own stats"
            )));
        }
        let id = &caller;
        let w = self
            .coordinator
            .worker(id)
            .ok_or_else(|| Status::not_found(format!("no worker {id}")))?;
        Ok(Response::new(WorkerStats {
            worker: w.worker,
            online: w.online,
            hashrate_hs: w.hashrate_hs,
            reported_hashrate_hs: w.reported_hashrate_hs,
            shares_valid: w.shares_valid,
            shares_invalid: w.shares_invalid,
            shares_forwarded: w.shares_forwarded,
            threads: w.threads,
            slice: w.slice.map_or(u32::MAX, u32::from),
            score: w.score,
            banned: w.banned,
            last_seen: w.last_seen.to_rfc3339(),
            blocks_found: w.blocks_found,
        }))
    }
}

/// Sends `worker` its job whenever the job or its slice changes; ends when it is dropped or
/// banned (it must register again) or hangs up.
async fn feed(
    coordinator: &Coordinator,
    worker: &str,
    tx: &mpsc::Sender<Result<WorkerJob, Status>>,
) {
    let mut changes = coordinator.subscribe_changes();
    let mut last: Option<(String, u32)> = None;
    loop {
        match coordinator.assign(worker) {
            None if coordinator.worker(worker).is_none_or(|w| !w.online) => {
                let gone = Status::not_found("worker dropped or banned: register again");
                if tx.send(Err(gone)).await.is_err() {
                    tracing::debug!(worker, "job stream already closed");
                }
                return;
            }
            None => {}
            Some(a) => {
                let key = (a.job_id.clone(), a.nonce_start);
                if last.as_ref() != Some(&key) {
                    let job = WorkerJob {
                        job_id: a.job_id,
                        blob: a.blob,
                        seed_hash: a.seed_hash,
                        height: a.height,
                        target: a.target,
                        difficulty: a.difficulty,
                        nonce_start: a.nonce_start,
                        nonce_end: a.nonce_end,
                        nonce_offset: a.nonce_offset,
                    };
                    if tx.send(Ok(job)).await.is_err() {
                        return;
                    }
                    last = Some(key);
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}
