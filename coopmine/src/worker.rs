//! `adit worker`: connects to the coordinator over mutual TLS with its certificate, registers,
//! follows its job stream, hashes on N threads within its slice, submits shares and heartbeats
//! with its hashrate. When the coordinator goes away it idles its threads and reconnects with
//! backoff, then resumes; the process itself never needs a restart.

use std::time::{Duration, Instant};

use adit_config::Invalid;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::WorkerConfig;
use crate::error::{Error, Result};
use crate::miner::{Found, Miner, Unit};
use crate::proto::coordinator_client::CoordinatorClient;
use crate::proto::{HeartbeatRequest, RegisterRequest, ShareRequest, StreamJobsRequest, WorkerJob};

/// A gRPC failure as an error.
fn grpc(what: &str, status: &tonic::Status) -> Error {
    Error::Grpc(format!(
        "{what}: {} ({:?})",
        status.message(),
        status.code()
    ))
}

/// Runs the worker until `stop`.
pub async fn run(config: WorkerConfig, stop: CancellationToken) -> Result<()> {
    config.validate()?;
    if config.huge_pages {
        adit_protocol::randomx::use_large_pages(true);
    }
    let connector =
        adit_protocol::tls::connector(Some(&config.ca_path()), Some(&config.identity()))?;
    let (miner, mut found) = Miner::start(
        config.hashing_threads(),
        config.mode,
        config.nonce_log.clone(),
    )?;
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let started = Instant::now();
        match session(&config, &connector, &miner, &mut found, &stop).await {
            Ok(()) => break,
            Err(e) => {
                miner.set(None);
                // Shares of jobs from before the break are likely stale: drop them.
                while found.try_recv().is_ok() {}
                if started.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
                failures += 1;
                let wait =
                    Duration::from_millis(250 * (1u64 << failures.min(8))).min(config.retry_max);
                tracing::warn!(error = %e, retry_in = ?wait, "lost the coordinator; reconnecting");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    if tokio::task::spawn_blocking(move || miner.stop())
        .await
        .is_err()
    {
        tracing::error!("stopping the hashing threads failed");
    }
    Ok(())
}

/// A gRPC channel to the coordinator at `address` (host:port) over TLS through `connector`
/// (which presents the worker's certificate), checking the coordinator's certificate names
/// `server_name`.
pub async fn channel(
    address: &str,
    server_name: &str,
    connector: &TlsConnector,
) -> Result<Channel> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| Invalid::new("worker.server_name", e.to_string()))?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| Invalid::new("worker.coordinator", e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20));
    let (address, connector) = (address.to_owned(), connector.clone());
    let connect = tower::service_fn(move |_: Uri| {
        let (address, connector, name) = (address.clone(), connector.clone(), name.clone());
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(connect)
        .await
        .map_err(|e| Error::Grpc(format!("connecting to the coordinator: {e}")))
}

/// One connection: register, stream jobs, submit, heartbeat. `Ok` only on `stop`.
async fn session(
    config: &WorkerConfig,
    connector: &TlsConnector,
    miner: &Miner,
    found: &mut mpsc::UnboundedReceiver<Found>,
    stop: &CancellationToken,
) -> Result<()> {
    let channel = channel(&config.coordinator, &config.server_name(), connector).await?;
    let mut client = CoordinatorClient::new(channel);
    let registered = client
        .register(RegisterRequest {
            threads: u32::try_from(config.hashing_threads()).unwrap_or(u32::MAX),
            mode: config.mode.name().to_owned(),
            agent: concat!("adit-worker/", env!("CARGO_PKG_VERSION")).to_owned(),
        })
        .await
        .map_err(|s| grpc("register", &s))?
        .into_inner();
    tracing::info!(worker = %registered.worker, cluster = %registered.cluster, "registered with the coordinator");
    let mut jobs = client
        .stream_jobs(StreamJobsRequest {})
        .await
        .map_err(|s| grpc("stream jobs", &s))?
        .into_inner();
    let every = Duration::from_millis(registered.heartbeat_ms.clamp(100, 600_000));
    let mut heartbeat = tokio::time::interval(every);
    let (mut counted, mut counted_at) = (miner.hashes(), Instant::now());
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            job = jobs.message() => match job {
                Ok(Some(job)) => miner.set(Some(unit(job)?)),
                Ok(None) => return Err(Error::Grpc("the coordinator ended the job stream".into())),
                Err(status) => return Err(grpc("job stream", &status)),
            },
            Some(share) = found.recv() => submit(client.clone(), share),
            _ = heartbeat.tick() => {
                let hashes = miner.hashes();
                let elapsed = counted_at.elapsed().as_secs_f64().max(1e-3);
                let rate = (hashes - counted) as f64 / elapsed;
                (counted, counted_at) = (hashes, Instant::now());
                let reply = client
                    .heartbeat(HeartbeatRequest { hashrate_hs: rate, hashes_total: hashes })
                    .await
                    .map_err(|s| grpc("heartbeat", &s))?
                    .into_inner();
                if !reply.known {
                    return Err(Error::Grpc("the coordinator no longer knows this worker".into()));
                }
            }
        }
    }
}

/// Submits a share without holding up the session; logs the verdict.
fn submit(mut client: CoordinatorClient<Channel>, share: Found) {
    tokio::spawn(async move {
        let request = ShareRequest {
            job_id: share.job_id.clone(),
            nonce: adit_protocol::nonce_hex(share.nonce),
            result: hex::encode(share.hash),
        };
        match client.submit_share(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                if reply.accepted {
                    tracing::debug!(job = %share.job_id, forwarded = reply.forwarded, "share accepted");
                } else {
                    tracing::warn!(job = %share.job_id, reason = %reply.reason, "share refused");
                }
            }
            Err(status) => tracing::warn!(error = %grpc("submit", &status), "share not delivered"),
        }
    });
}

/// A job as the hashing threads take it.
fn unit(job: WorkerJob) -> Result<Unit> {
    let bad = |what: &str| Error::Grpc(format!("the coordinator sent a job with a bad {what}"));
    let blob = hex::decode(&job.blob).map_err(|_| bad("blob"))?;
    let offset = usize::try_from(job.nonce_offset).map_err(|_| bad("nonce offset"))?;
    if blob.len() < offset + 4 || job.nonce_start > job.nonce_end || job.difficulty == 0 {
        return Err(bad("blob, slice or difficulty"));
    }
    Ok(Unit {
        job_id: job.job_id,
        blob,
        seed: hex::decode(&job.seed_hash).map_err(|_| bad("seed"))?,
        difficulty: job.difficulty,
        start: job.nonce_start,
        end: job.nonce_end,
        offset,
    })
}
