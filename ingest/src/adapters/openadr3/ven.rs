//! The OpenADR 3.1 VEN task of one site: a token, the events polled, grid signals, reports.
//!
//! One loop ticks every half second. When due it takes a token (`POST /auth/token`, client
//! credentials), registers once (`POST /vens`; an existing VEN is fine), lists the programs it
//! follows and their events (`GET /programs`, `GET /events?programID=…`, 50 at a time), and
//! keeps them. Each tick steers as the 2.0b VEN does ([`crate::adapters::openadr::steer`]):
//! what the events ask now ([`super::events::asks`]) becomes the site's grid signals. Every
//! `report_every` it posts, for each event asking now, the site's measured load over the
//! samples since its last report (`POST /reports`, `DEMAND` in kW). With `prices` on, the
//! `PRICE` in force is published as the site's energy price when it changes. A failing VTN is logged
//! when it starts failing and when it recovers; the VEN retries with a doubling backoff, and a
//! token the VTN refuses is taken again.

use std::time::{Duration, Instant};

use adit_devices::DeviceError;
use adit_egress::{EgressConfig, Outbound, Purpose};
use adit_schemas::{AnyEvent, GridSignal, GridSignalKind};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::OpenAdr3Config;
use super::events::{Price, asks, price};
use super::wire::{
    Event, IntervalPeriod, Payload, Program, ReportDescriptor, ReportInterval, ReportRequest,
    ReportResource, is_id,
};
use crate::adapters::openadr::Shared;
use crate::adapters::openadr::book::Policy;
use crate::adapters::openadr::contact::Contact;
use crate::adapters::openadr::power::SitePower;
use crate::adapters::openadr::steer::Steering;
use crate::adapters::poll::AdaptersError;

/// How often the loop wakes.
const TICK: Duration = Duration::from_millis(500);
/// A machine's power reading counts this long.
const POWER_FRESH: Duration = Duration::from_secs(60);
/// Most objects one list request asks for (the VTN's limit).
const PAGE: usize = 50;
/// Most programs or events taken in all.
const MAX_OBJECTS: usize = 1_000;
/// Samples kept for reports the VTN has not taken.
const MAX_SAMPLES: usize = 3_600;

/// The token endpoint's answer.
#[derive(Deserialize)]
struct Token {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A token and when to take a new one.
struct Held {
    token: String,
    renew_at: Instant,
}

struct Ven {
    config: OpenAdr3Config,
    policy: Policy,
    http: Outbound,
    shared: Shared,
    token: Option<Held>,
    registered: bool,
    events: Vec<Event>,
    /// The price last published.
    price: Option<Price>,
    /// The VTN's events were taken at least once since this start.
    heard: bool,
    power: SitePower,
    /// The site's load since the last report: (when, kW).
    samples: Vec<(DateTime<Utc>, f64)>,
    next_sample: Instant,
    next_report: Instant,
    /// When to try the VTN, and whether it answers.
    contact: Contact,
}

impl Ven {
    fn new(config: OpenAdr3Config, http: Outbound, shared: Shared) -> Self {
        let now = Instant::now();
        Self {
            contact: Contact::new(&config.site, &config.vtn_url),
            policy: config.policy(),
            config,
            http,
            shared,
            token: None,
            registered: false,
            events: Vec::new(),
            price: None,
            heard: false,
            power: SitePower::new(POWER_FRESH),
            samples: Vec::new(),
            next_sample: now,
            next_report: now,
        }
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<(), AdaptersError> {
        let mut readings =
            crate::adapters::openadr::power::readings(&self.shared, &self.config.site).await?;
        let mut steering = Steering::start(&self.config.site, self.shared.clone()).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(site = %self.config.site, vtn = %adit_egress::redact(&self.config.vtn_url), "OpenADR 3.1 VEN started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(msg) = readings.next() => self.power.take_payload(&msg.payload, Utc::now()),
                _ = tick.tick() => {
                    let now = Instant::now();
                    if self.contact.due(now) {
                        match self.poll().await {
                            Ok(()) => self.contact.succeeded(now, self.config.poll),
                            Err(e) => self.contact.failed(now, self.config.poll, &e),
                        }
                    }
                    let ask = asks(&self.events, Utc::now(), &self.policy);
                    steering.steer(ask, self.alive(), self.heard).await?;
                    self.publish_price().await?;
                    self.report().await;
                }
            }
        }
    }

    /// Publishes the price in force when it changed (with `prices` on).
    async fn publish_price(&mut self) -> Result<(), AdaptersError> {
        if !self.config.prices {
            return Ok(());
        }
        let Some(now) = price(&self.events, Utc::now()) else {
            return Ok(());
        };
        if self.price.as_ref() == Some(&now) {
            return Ok(());
        }
        let signal = GridSignal {
            site: self.config.site.clone(),
            event_id: now.event_id.clone(),
            kind: GridSignalKind::Price,
            target_kw: None,
            deadline: None,
            price_per_mwh: Some(now.per_mwh),
            ts: Utc::now(),
        };
        self.shared
            .publisher
            .publish(&AnyEvent::Grid(signal))
            .await?;
        tracing::info!(site = %self.config.site, event = %now.event_id, per_mwh = now.per_mwh, "OpenADR 3.1 price");
        self.price = Some(now);
        Ok(())
    }

    /// Whether the VTN answered within two polls (and a timeout).
    fn alive(&self) -> bool {
        self.contact
            .answered_within(self.config.poll * 2 + self.shared.timeout)
    }

    /// The URL of `path` under the VTN's base.
    fn url(&self, path: &str) -> Result<reqwest::Url, DeviceError> {
        let base = self.config.vtn_url.trim_end_matches('/');
        self.http
            .url(&format!("{base}/{path}"))
            .map_err(|e| DeviceError::Connect {
                addr: adit_egress::redact(base),
                source: std::io::Error::other(e),
            })
    }

    /// Sends `request`, reads the reply (bounded) and returns its status and bytes.
    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), DeviceError> {
        let addr = adit_egress::redact(&self.config.vtn_url);
        let io = |e: reqwest::Error| DeviceError::Io {
            addr: addr.clone(),
            source: std::io::Error::other(adit_egress::describe(e)),
        };
        let response = request.send().await.map_err(io)?;
        let status = response.status();
        let body = adit_egress::read_capped(response, self.shared.max_reply_bytes)
            .await
            .map_err(io)?;
        if body.truncated {
            return Err(DeviceError::garbage(
                format!(
                    "{what}: the reply is longer than {} bytes",
                    self.shared.max_reply_bytes
                ),
                &body.bytes,
            ));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(DeviceError::garbage(
                format!("{what}: the VTN refused the token (HTTP 401)"),
                &body.bytes,
            ));
        }
        Ok((status, body.bytes))
    }

    /// A bearer token, taken again when it is due or was refused.
    async fn token(&mut self) -> Result<String, DeviceError> {
        if let Some(held) = &self.token
            && Instant::now() < held.renew_at
        {
            return Ok(held.token.clone());
        }
        let request = self
            .http
            .http
            .post(self.url("auth/token")?)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .form(&[("grant_type", "client_credentials")]);
        let (status, body) = self.send("auth/token", request).await?;
        if !status.is_success() {
            return Err(DeviceError::garbage(
                format!("auth/token answered HTTP {status}"),
                &body,
            ));
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| DeviceError::garbage(format!("auth/token: {e}"), &body))?;
        // Renewed a minute before it expires (or hourly when the VTN does not say).
        let life = Duration::from_secs(token.expires_in.unwrap_or(3_600).max(120) - 60);
        self.token = Some(Held {
            token: token.access_token.clone(),
            renew_at: Instant::now() + life,
        });
        Ok(token.access_token)
    }

    /// `GET path` with the token, every page of a list (at most [`MAX_OBJECTS`]).
    async fn list<T: DeserializeOwned>(
        &mut self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, DeviceError> {
        let token = self.token().await?;
        let mut out = Vec::new();
        loop {
            let (skip, limit) = (out.len().to_string(), PAGE.to_string());
            let mut params = query.to_vec();
            params.extend([("skip", skip.as_str()), ("limit", limit.as_str())]);
            let request = self
                .http
                .http
                .get(self.url(path)?)
                .bearer_auth(&token)
                .query(&params);
            let (status, body) = match self.send(path, request).await {
                Err(e) => {
                    self.token = None;
                    return Err(e);
                }
                Ok(sent) => sent,
            };
            if !status.is_success() {
                return Err(DeviceError::garbage(
                    format!("{path} answered HTTP {status}"),
                    &body,
                ));
            }
            let page: Vec<T> = serde_json::from_slice(&body)
                .map_err(|e| DeviceError::garbage(format!("{path}: {e}"), &body))?;
            let full = page.len() == PAGE;
            out.extend(page);
            if !full || out.len() >= MAX_OBJECTS {
                return Ok(out);
            }
        }
    }

    /// Registers this VEN once (`POST /vens`); a VEN of that name already there is fine.
    async fn register(&mut self) -> Result<(), DeviceError> {
        let token = self.token().await?;
        let body =
            serde_json::json!({"objectType": "VEN_VEN_REQUEST", "venName": self.config.ven_name});
        let request = self
            .http
            .http
            .post(self.url("vens")?)
            .bearer_auth(&token)
            .json(&body);
        let (status, reply) = self.send("vens", request).await?;
        match status.as_u16() {
            200..=299 => {
                tracing::info!(site = %self.config.site, ven = %self.config.ven_name, "registered with the OpenADR 3.1 VTN");
            }
            409 => {
                tracing::info!(site = %self.config.site, ven = %self.config.ven_name, "this VEN is registered with the OpenADR 3.1 VTN already");
            }
            _ => {
                return Err(DeviceError::garbage(
                    format!("vens answered HTTP {status}"),
                    &reply,
                ));
            }
        }
        self.registered = true;
        Ok(())
    }

    /// One poll: registered, the programs followed and every event of theirs.
    async fn poll(&mut self) -> Result<(), DeviceError> {
        if !self.registered {
            self.register().await?;
        }
        let programs: Vec<Program> = self.list("programs", &[]).await?;
        let followed: Vec<String> = programs
            .into_iter()
            .filter(|p| {
                is_id(&p.id)
                    && self
                        .config
                        .programs
                        .as_ref()
                        .is_none_or(|names| names.contains(&p.program_name))
            })
            .map(|p| p.id)
            .collect();
        let mut events = Vec::new();
        for id in followed {
            let listed: Vec<Event> = self.list("events", &[("programID", id.as_str())]).await?;
            events.extend(listed);
        }
        let before: std::collections::BTreeSet<&str> =
            self.events.iter().map(|e| e.id.as_str()).collect();
        for e in events.iter().filter(|e| !before.contains(e.id.as_str())) {
            tracing::info!(site = %self.config.site, event = %e.id, name = ?e.event_name, intervals = e.intervals.len(), "OpenADR 3.1 event");
        }
        self.events = events;
        self.heard = true;
        Ok(())
    }

    /// Samples the site's load and, every `report_every`, posts it for each event asking now.
    async fn report(&mut self) {
        let now = Instant::now();
        if now >= self.next_sample {
            self.next_sample = now + self.config.sample_every;
            if let Some(kw) = self.power.kw(Utc::now()) {
                if self.samples.len() >= MAX_SAMPLES {
                    self.samples.remove(0);
                }
                self.samples
                    .push((Utc::now(), (kw * 1000.0).round() / 1000.0));
            }
        }
        if now < self.next_report || self.samples.is_empty() {
            return;
        }
        self.next_report = now + self.config.report_every;
        let asking: Vec<String> = self
            .events
            .iter()
            .filter(|e| {
                asks(std::slice::from_ref(*e), Utc::now(), &self.policy).is_some() && is_id(&e.id)
            })
            .map(|e| e.id.clone())
            .collect();
        if asking.is_empty() {
            self.samples.clear();
            return;
        }
        let mut all_taken = true;
        for event_id in asking {
            let report = self.report_of(&event_id);
            if let Err(e) = self.post_report(&report).await {
                all_taken = false;
                tracing::debug!(site = %self.config.site, error = %e, "report not taken; kept for the next try");
            }
        }
        if all_taken {
            self.samples.clear();
        }
    }

    /// The report of the samples held, for `event_id`.
    fn report_of(&self, event_id: &str) -> ReportRequest {
        let start = self.samples.first().map_or_else(Utc::now, |(t, _)| *t);
        let every = format!("PT{}S", self.config.sample_every.as_secs().max(1));
        ReportRequest {
            event_id: event_id.to_string(),
            client_name: self.config.ven_name.clone(),
            report_name: format!("{}-load", self.config.site),
            payload_descriptors: vec![ReportDescriptor {
                payload_type: "DEMAND".into(),
                reading_type: "DIRECT_READ".into(),
                units: "KW".into(),
            }],
            resources: vec![ReportResource {
                resource_name: self.config.site.clone(),
                interval_period: IntervalPeriod {
                    start,
                    duration: Some(every.clone()),
                },
                intervals: self
                    .samples
                    .iter()
                    .enumerate()
                    .map(|(i, (at, kw))| ReportInterval {
                        id: i as i64,
                        interval_period: Some(IntervalPeriod {
                            start: *at,
                            duration: Some(every.clone()),
                        }),
                        payloads: vec![Payload {
                            kind: "DEMAND".into(),
                            values: vec![serde_json::json!(kw)],
                        }],
                    })
                    .collect(),
            }],
        }
    }

    async fn post_report(&mut self, report: &ReportRequest) -> Result<(), DeviceError> {
        let token = self.token().await?;
        let request = self
            .http
            .http
            .post(self.url("reports")?)
            .bearer_auth(&token)
            .json(report);
        let (status, body) = self.send("reports", request).await?;
        if !status.is_success() {
            return Err(DeviceError::garbage(
                format!("reports answered HTTP {status}"),
                &body,
            ));
        }
        Ok(())
    }
}

/// Runs one 3.1 VEN per config until `shutdown`. A VEN whose VTN fails keeps retrying; only a
/// config that cannot work or a bus that stops taking signals ends the role.
pub async fn run(
    configs: &[OpenAdr3Config],
    egress: &EgressConfig,
    shared: Shared,
    shutdown: CancellationToken,
) -> Result<(), AdaptersError> {
    let mut vens = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        config
            .validate()
            .map_err(|e| e.under(&format!("adapters.openadr3[{i}]")))?;
        let builder = reqwest::Client::builder()
            .timeout(shared.timeout)
            .connect_timeout(shared.timeout)
            .user_agent(concat!("adit-ven/", env!("CARGO_PKG_VERSION")));
        let http = Outbound::new(egress.guard(Purpose::Feeds)?, builder)
            .map_err(AdaptersError::HttpClient)?;
        vens.push(Ven::new(config.resolved(), http, shared.clone()));
    }
    let runs = vens.into_iter().map(|ven| ven.run(shutdown.clone()));
    futures::future::try_join_all(runs).await.map(drop)
}
