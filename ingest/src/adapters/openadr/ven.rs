//! The VEN task of one site: registration, the poll, opt answers, grid signals and reports.
//!
//! One loop ticks every half second. While unregistered it registers (then offers its power
//! report and asks for every event); registered, it polls when due. Whatever the VTN's state,
//! each tick steers ([`super::steer`]): what the book asks now becomes a grid signal on GRID
//! when it changes, a curtailment is confirmed every `grid_confirm` while the VTN answers, and
//! the end of what was asked is a `normal` signal. A failing VTN is logged when it starts failing, when it
//! says something new and when it recovers; the VEN retries with a doubling backoff.

use std::time::{Duration, Instant};

use adit_egress::{EgressConfig, Outbound, Purpose};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::book::{Book, Policy};
use super::contact::Contact;
use super::messages::{self, OptResponse, Reply, ReportRequest, Service};
use super::power::SitePower;
use super::steer::Steering;
use super::{OpenAdrConfig, Shared};
use crate::adapters::poll::AdaptersError;
use adit_devices::DeviceError;

/// How often the loop wakes.
const TICK: Duration = Duration::from_millis(500);
/// Samples kept for a report the VTN could not take.
const MAX_SAMPLES: usize = 3_600;
/// A machine's power reading counts this long for the report.
const POWER_FRESH: Duration = Duration::from_secs(60);

/// Runs one VEN per config until `shutdown`. A VEN whose VTN fails keeps retrying; only a
/// config that cannot work or a bus that stops taking signals ends the role.
pub async fn run(
    configs: &[OpenAdrConfig],
    egress: &EgressConfig,
    shared: Shared,
    shutdown: CancellationToken,
) -> Result<(), AdaptersError> {
    let mut vens = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let key = format!("adapters.openadr[{i}]");
        config.validate().map_err(|e| e.under(&key))?;
        let http = client(&key, config, egress, shared.timeout)?;
        vens.push(Ven::new(config.clone(), http, shared.clone()));
    }
    let runs = vens.into_iter().map(|ven| ven.run(shutdown.clone()));
    futures::future::try_join_all(runs).await.map(drop)
}

/// The VEN's HTTP client; `place` is its config's key (`adapters.openadr[0]`).
fn client(
    place: &str,
    config: &OpenAdrConfig,
    egress: &EgressConfig,
    timeout: Duration,
) -> Result<Outbound, AdaptersError> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            adit_config::Invalid::new(
                format!("{place}.{field}"),
                format!("reading {}: {e} (site {})", path.display(), config.site),
            )
        })
    };
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("adit-ven/", env!("CARGO_PKG_VERSION")));
    if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
        let mut pem = read("client_cert", cert)?;
        pem.push(b'\n');
        pem.extend(read("client_key", key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(AdaptersError::HttpClient)?;
        builder = builder.identity(identity);
    }
    if let Some(ca) = &config.ca {
        // The utility's CA alone: a certificate any public CA issued for the VTN's name is
        // not the utility's VTN.
        builder = builder.tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(&read("ca", ca)?)
            .map_err(AdaptersError::HttpClient)?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    let guard = egress.guard(Purpose::Feeds)?;
    Outbound::new(guard, builder).map_err(AdaptersError::HttpClient)
}

/// The ids the VTN gave.
#[derive(Debug, Clone)]
struct Registration {
    ven_id: String,
    registration_id: String,
    poll_every: Duration,
}

/// A report the VTN asked for, with what was sampled and not yet sent.
#[derive(Debug)]
struct Reporting {
    request: ReportRequest,
    samples: Vec<(DateTime<Utc>, f64)>,
    next_sample: Instant,
    next_send: Instant,
}

struct Ven {
    config: OpenAdrConfig,
    policy: Policy,
    http: Outbound,
    shared: Shared,
    book: Book,
    power: SitePower,
    registration: Option<Registration>,
    /// The ids of the registration the VTN asked to renew (sent with the next one).
    renewing: Option<Registration>,
    /// The VTN's events were taken at least once since this start: until then the book is
    /// empty because nothing was heard, not because nothing is asked, and a curtailment
    /// asked before the start is not ended.
    heard: bool,
    reports: Vec<Reporting>,
    /// When to try the VTN, and whether it answers.
    contact: Contact,
    requests: u64,
}

impl Ven {
    fn new(config: OpenAdrConfig, http: Outbound, shared: Shared) -> Self {
        Self {
            contact: Contact::new(&config.site, &config.vtn_url),
            policy: config.policy(),
            config,
            http,
            shared,
            book: Book::default(),
            power: SitePower::new(POWER_FRESH),
            registration: None,
            renewing: None,
            heard: false,
            reports: Vec::new(),
            requests: 0,
        }
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<(), AdaptersError> {
        let mut readings =
            crate::adapters::openadr::power::readings(&self.shared, &self.config.site).await?;
        let mut steering = Steering::start(&self.config.site, self.shared.clone()).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(site = %self.config.site, vtn = %adit_egress::redact(&self.config.vtn_url), "OpenADR VEN started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(msg) = readings.next() => self.power.take_payload(&msg.payload, Utc::now()),
                _ = tick.tick() => self.step(&mut steering).await?,
            }
        }
    }

    /// One tick: talk to the VTN when due, then steer and report.
    async fn step(&mut self, steering: &mut Steering) -> Result<(), AdaptersError> {
        let now = Instant::now();
        if self.contact.due(now) {
            let outcome = match self.registration.clone() {
                None => self.register().await,
                Some(r) => self.poll(&r).await,
            };
            match outcome {
                Ok(()) => self.contact.succeeded(now, self.poll_every()),
                Err(e) => self.contact.failed(now, self.config.poll, &e),
            }
        }
        self.book.forget_ended(Utc::now());
        let ask = self.book.asks(Utc::now(), &self.policy);
        steering.steer(ask, self.alive(), self.heard).await?;
        self.report().await;
        Ok(())
    }

    /// Time between two polls: the config's, or longer when the VTN asks.
    fn poll_every(&self) -> Duration {
        self.registration
            .as_ref()
            .map_or(self.config.poll, |r| r.poll_every.max(self.config.poll))
    }

    fn request_id(&mut self) -> String {
        self.requests += 1;
        format!("{}-{}", self.config.ven_name, self.requests)
    }

    /// One exchange: `body` POSTed to `service`, the reply read.
    async fn exchange(&self, service: Service, body: String) -> Result<Reply, DeviceError> {
        let base = self.config.vtn_url.trim_end_matches('/');
        let url = self
            .http
            .url(&format!("{base}/{}", service.path()))
            .map_err(|e| DeviceError::Connect {
                addr: adit_egress::redact(base),
                source: std::io::Error::other(e),
            })?;
        let addr = adit_egress::redact(url.as_str());
        let io = |e: reqwest::Error| DeviceError::Io {
            addr: addr.clone(),
            source: std::io::Error::other(adit_egress::describe(e)),
        };
        let response = self
            .http
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/xml")
            .body(body)
            .send()
            .await
            .map_err(io)?;
        let status = response.status();
        let body = adit_egress::read_capped(response, self.shared.max_reply_bytes)
            .await
            .map_err(io)?;
        if !status.is_success() {
            return Err(DeviceError::garbage(
                format!("{} answered HTTP {status}", service.path()),
                &body.bytes,
            ));
        }
        if body.truncated {
            return Err(DeviceError::garbage(
                format!(
                    "the reply is longer than {} bytes",
                    self.shared.max_reply_bytes
                ),
                &body.bytes,
            ));
        }
        messages::parse_reply(&body.bytes)
    }

    /// Registers, offers the power report and takes every event held for this VEN.
    async fn register(&mut self) -> Result<(), DeviceError> {
        let request_id = self.request_id();
        let renewing = self.renewing.as_ref();
        let body = messages::create_party_registration(
            &request_id,
            &self.config.ven_name,
            renewing
                .map(|r| r.ven_id.as_str())
                .or(self.config.ven_id.as_deref()),
            renewing.map(|r| r.registration_id.as_str()),
        );
        let Reply::Registered {
            ven_id,
            registration_id,
            poll_every,
        } = self.exchange(Service::RegisterParty, body).await?
        else {
            return Err(DeviceError::garbage(
                "the VTN did not answer the registration with oadrCreatedPartyRegistration",
                b"",
            ));
        };
        tracing::info!(site = %self.config.site, %ven_id, %registration_id, ?poll_every, "registered with the OpenADR VTN");
        let registration = Registration {
            ven_id,
            registration_id,
            poll_every: poll_every.unwrap_or(self.config.poll),
        };
        let request_id = self.request_id();
        let offer = messages::register_report(
            &request_id,
            &registration.ven_id,
            &self.config.site,
            Duration::from_secs(1),
            Duration::from_secs(3_600),
            Utc::now(),
        );
        let reply = self.exchange(Service::Report, offer).await?;
        self.act(&registration, reply).await?;
        let request_id = self.request_id();
        let ask = messages::request_event(&request_id, &registration.ven_id);
        let reply = self.exchange(Service::Event, ask).await?;
        self.act(&registration, reply).await?;
        // Registered only once every step is done: a failure part way starts again.
        self.registration = Some(registration);
        self.renewing = None;
        self.heard = true;
        Ok(())
    }

    async fn poll(&mut self, registration: &Registration) -> Result<(), DeviceError> {
        let reply = self
            .exchange(Service::Poll, messages::poll(&registration.ven_id))
            .await?;
        self.act(registration, reply).await
    }

    /// Does what a reply asks.
    async fn act(&mut self, registration: &Registration, reply: Reply) -> Result<(), DeviceError> {
        let ven_id = registration.ven_id.as_str();
        match reply {
            Reply::Events { request_id, events } => {
                let answers = self
                    .book
                    .take(events, &self.policy, self.power.kw(Utc::now()));
                for a in &answers {
                    tracing::info!(site = %self.config.site, event = %a.event_id, modification = a.modification, opt_in = a.opt_in, why = %a.why, "OpenADR event");
                }
                let responses: Vec<OptResponse> = answers
                    .into_iter()
                    .filter(|a| a.required)
                    .map(|a| OptResponse {
                        request_id: request_id.clone(),
                        event_id: a.event_id,
                        modification: a.modification,
                        opt_in: a.opt_in,
                    })
                    .collect();
                if !responses.is_empty() {
                    let body = messages::created_event(ven_id, &responses);
                    self.exchange(Service::Event, body).await?;
                }
            }
            Reply::ReportRequests {
                request_id,
                requests,
            } => {
                let now = Instant::now();
                let ours: Vec<ReportRequest> = requests
                    .into_iter()
                    .filter(|r| r.specifier == messages::REPORT_SPECIFIER)
                    .collect();
                let pending: Vec<String> = ours.iter().map(|r| r.id.clone()).collect();
                for request in ours {
                    tracing::info!(site = %self.config.site, request = %request.id, every = ?request.granularity, back = ?request.report_back, "the VTN asks for the site's power");
                    self.reports.retain(|r| r.request.id != request.id);
                    self.reports.push(Reporting {
                        next_send: now + request.report_back,
                        next_sample: now,
                        samples: Vec::new(),
                        request,
                    });
                }
                let body = messages::created_report(&request_id, ven_id, &pending);
                self.exchange(Service::Report, body).await?;
            }
            Reply::VtnReports { request_id } => {
                let body = messages::registered_report(&request_id, ven_id);
                self.exchange(Service::Report, body).await?;
            }
            Reply::Reregister => {
                tracing::warn!(site = %self.config.site, "the VTN asks this VEN to register again");
                self.renewing = self.registration.take();
                self.reports.clear();
            }
            Reply::Ok | Reply::Registered { .. } => {}
            Reply::Other(name) => {
                tracing::debug!(site = %self.config.site, message = %name, "OpenADR message not acted on");
            }
        }
        Ok(())
    }

    /// Whether the VTN answered within two polls (and a timeout): while it does, a
    /// curtailment still asked is confirmed.
    fn alive(&self) -> bool {
        self.contact
            .answered_within(self.poll_every() * 2 + self.shared.timeout)
    }

    /// Samples the site's power and sends what each report has gathered when it is due.
    async fn report(&mut self) {
        let Some(registration) = self.registration.clone() else {
            return;
        };
        let now = Instant::now();
        let kw = self.power.kw(Utc::now());
        for r in &mut self.reports {
            if now >= r.next_sample {
                r.next_sample = now + r.request.granularity;
                if let Some(kw) = kw {
                    if r.samples.len() >= MAX_SAMPLES {
                        r.samples.remove(0);
                    }
                    r.samples.push((Utc::now(), (kw * 1000.0).round() / 1000.0));
                }
            }
        }
        let due: Vec<usize> = (0..self.reports.len())
            .filter(|&i| now >= self.reports[i].next_send && !self.reports[i].samples.is_empty())
            .collect();
        for i in due {
            let request_id = self.request_id();
            let r = &self.reports[i];
            let body = messages::update_report(
                &request_id,
                &registration.ven_id,
                &r.request.id,
                &r.samples,
                Utc::now(),
            );
            match self.exchange(Service::Report, body).await {
                Ok(_) => {
                    let r = &mut self.reports[i];
                    r.samples.clear();
                    r.next_send = now + r.request.report_back;
                }
                Err(e) => {
                    tracing::debug!(site = %self.config.site, error = %e, "report not taken; kept for the next try");
                    self.reports[i].next_send = now + self.reports[i].request.report_back;
                }
            }
        }
    }
}
