//! The coordinator's upstream: one Stratum login at a time to the first pool of the list that
//! answers, following its jobs and forwarding shares to it. It fails over to the next pool when
//! the current one drops or stops sending jobs, tries the first pool again every
//! `failback_every` while on another, and backs off when none answers.

use adit_retry::Backoff;
use std::time::Duration;

use adit_protocol::{ClientOptions, Error as ProtocolError, Job, PoolUrl, StratumClient};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::UpstreamConfig;

/// What the upstream tells the coordinator.
#[derive(Debug, Clone)]
pub enum UpstreamEvent {
    /// Logged in to `url`; `generation` numbers connections.
    Connected {
        /// The pool.
        url: String,
        /// This connection's number.
        generation: u64,
    },
    /// A job from the current connection.
    Job {
        /// The job.
        job: Job,
        /// The pool.
        url: String,
        /// The connection it came on.
        generation: u64,
    },
    /// A connection ended or a login failed.
    Down {
        /// The pool.
        url: String,
        /// Why.
        reason: String,
        /// Whether it had been logged in (false: the attempt failed).
        was_connected: bool,
    },
}

/// A share to send upstream.
#[derive(Debug)]
pub struct Forward {
    /// The connection its job came on; another connection cannot take it.
    pub generation: u64,
    /// The upstream's job id.
    pub job_id: String,
    /// Nonce, hex.
    pub nonce: String,
    /// Hash, hex.
    pub result: String,
    /// The verdict: `Ok` when accepted, the refusal otherwise.
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Why a connection ended.
enum End {
    /// Shutdown.
    Stop,
    /// The pool dropped, failed or went quiet.
    Dropped(String),
    /// The first pool answers again: switch to this login.
    Failback(Box<StratumClient>),
}

/// Runs until `stop`: keeps one upstream login, sends what happens to `events` and forwards
/// the shares from `forwards`.
pub async fn run(
    config: UpstreamConfig,
    events: mpsc::Sender<UpstreamEvent>,
    mut forwards: mpsc::Receiver<Forward>,
    stop: CancellationToken,
) {
    let options = ClientOptions {
        tls_ca: config.tls_ca.clone(),
        ..ClientOptions::default()
    };
    let mut generation = 0u64;
    let mut index = 0usize;
    let mut failures_in_a_row = 0usize;
    let mut pending: Option<StratumClient> = None;
    while !stop.is_cancelled() {
        let url = &config.urls[index];
        let client = match pending.take() {
            Some(client) => Ok(client),
            None => login(url, &config, &options, &stop).await,
        };
        let mut client = match client {
            Ok(client) => client,
            Err(reason) => {
                send(
                    &events,
                    UpstreamEvent::Down {
                        url: url.to_string(),
                        reason,
                        was_connected: false,
                    },
                )
                .await;
                index = (index + 1) % config.urls.len();
                failures_in_a_row += 1;
                if failures_in_a_row.is_multiple_of(config.urls.len()) {
                    let rounds = failures_in_a_row / config.urls.len();
                    let wait = Backoff::new(Duration::from_secs(1), config.retry_max)
                        .after(u32::try_from(rounds).unwrap_or(u32::MAX));
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                continue;
            }
        };
        failures_in_a_row = 0;
        generation += 1;
        tracing::info!(upstream = %url, generation, "logged in upstream");
        send(
            &events,
            UpstreamEvent::Connected {
                url: url.to_string(),
                generation,
            },
        )
        .await;
        let end = session(
            &mut client,
            &config,
            &options,
            index,
            generation,
            &events,
            &mut forwards,
            &stop,
        )
        .await;
        let (reason, next) = match end {
            End::Stop => return,
            End::Dropped(reason) => (reason, (index + 1) % config.urls.len()),
            End::Failback(primary) => {
                pending = Some(*primary);
                ("the first pool answers again".to_owned(), 0)
            }
        };
        tracing::warn!(upstream = %url, %reason, "upstream connection ended");
        send(
            &events,
            UpstreamEvent::Down {
                url: url.to_string(),
                reason,
                was_connected: true,
            },
        )
        .await;
        index = next;
    }
}

/// Sends an event; the coordinator stopping is the only way this fails.
async fn send(events: &mpsc::Sender<UpstreamEvent>, event: UpstreamEvent) {
    if events.send(event).await.is_err() {
        tracing::debug!("the coordinator stopped listening to its upstream");
    }
}

/// Logs in to `url` with the cluster's wallet.
async fn login(
    url: &PoolUrl,
    config: &UpstreamConfig,
    options: &ClientOptions,
    stop: &CancellationToken,
) -> Result<StratumClient, String> {
    let attempt = StratumClient::login_url(url, &config.wallet, &config.pass, options);
    tokio::select! {
        () = stop.cancelled() => Err("shutting down".to_owned()),
        done = tokio::time::timeout(config.login_timeout, attempt) => match done {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no login answer within {:?}", config.login_timeout)),
        },
    }
}

/// One logged-in connection: follows jobs, forwards shares, keeps alive, watches for silence
/// and, when not on the first pool, for the first pool's return.
#[allow(clippy::too_many_arguments)]
async fn session(
    client: &mut StratumClient,
    config: &UpstreamConfig,
    options: &ClientOptions,
    index: usize,
    generation: u64,
    events: &mpsc::Sender<UpstreamEvent>,
    forwards: &mut mpsc::Receiver<Forward>,
    stop: &CancellationToken,
) -> End {
    let url = config.urls[index].to_string();
    let mut last_job = String::new();
    let mut last_job_at = Instant::now();
    let mut keepalive = tokio::time::interval(config.keepalive);
    keepalive.tick().await;
    let mut failback = tokio::time::interval(config.failback_every);
    failback.tick().await;
    loop {
        if client.job.job_id != last_job {
            last_job.clone_from(&client.job.job_id);
            last_job_at = Instant::now();
            send(
                events,
                UpstreamEvent::Job {
                    job: client.job.clone(),
                    url: url.clone(),
                    generation,
                },
            )
            .await;
        }
        tokio::select! {
            () = stop.cancelled() => return End::Stop,
            read = client.read() => match read {
                Ok(Some(_)) => {}
                Ok(None) => return End::Dropped("the pool closed the connection".into()),
                Err(e) => return End::Dropped(e.to_string()),
            },
            Some(share) = forwards.recv() => {
                if let Err(reason) = forward(client, generation, share).await {
                    return End::Dropped(reason);
                }
            }
            _ = keepalive.tick() => match client.keepalive().await {
                Ok(_) | Err(ProtocolError::Refused { .. }) => {}
                Err(e) => return End::Dropped(format!("keepalive: {e}")),
            },
            () = tokio::time::sleep_until(last_job_at + config.job_timeout) => {
                return End::Dropped(format!("no new job for {:?}", config.job_timeout));
            }
            _ = failback.tick(), if index > 0 => {
                if let Ok(primary) = login(&config.urls[0], config, options, stop).await {
                    return End::Failback(Box::new(primary));
                }
            }
        }
    }
}

/// Submits one share; `Err` only when the connection failed (the share is then answered as
/// not forwarded).
async fn forward(
    client: &mut StratumClient,
    generation: u64,
    share: Forward,
) -> Result<(), String> {
    if share.generation != generation {
        let stale = Err("stale: its upstream connection has ended".to_owned());
        if share.reply.send(stale).is_err() {
            tracing::debug!("a worker stopped waiting for its forwarded share");
        }
        return Ok(());
    }
    let verdict = client
        .submit_share(&share.job_id, &share.nonce, &share.result)
        .await;
    let (answer, failed) = match verdict {
        Ok(_) => (Ok(()), None),
        Err(ProtocolError::Refused { message, .. }) => (Err(message), None),
        Err(e) => (Err(format!("upstream failed: {e}")), Some(e.to_string())),
    };
    if share.reply.send(answer).is_err() {
        tracing::debug!("a worker stopped waiting for its forwarded share");
    }
    match failed {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}
