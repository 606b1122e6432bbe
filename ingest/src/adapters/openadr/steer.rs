//! How a VEN's asks become the site's grid signals, whichever OpenADR it speaks (2.0b here,
//! 3.1 in [`crate::adapters::openadr3`]): what is asked now is published on GRID when it
//! changes, a curtailment still asked is confirmed every `grid_confirm` while the VTN answers,
//! and the end of what was asked is a `normal` signal. At start the site's last signal is read
//! back, so a curtailment a VEN asked before a restart is ended if it is no longer asked.

use std::time::{Duration, Instant};

use adit_schemas::{AnyEvent, GridSignal, GridSignalKind};
use chrono::Utc;

use super::Shared;
use super::book::{Ask, EVENT_PREFIX};
use super::last;
use crate::adapters::poll::AdaptersError;

/// Reads of the site's last grid signal at start before giving up.
const LAST_READS: u32 = 5;

/// What was last published for the site.
#[derive(Debug, Clone)]
struct Published {
    signal: GridSignal,
    at: Instant,
}

/// One site's steering: what it last published.
pub(crate) struct Steering {
    site: String,
    shared: Shared,
    published: Option<Published>,
}

impl Steering {
    /// The steering of `site`, with the site's last demand-response signal read back.
    pub(crate) async fn start(site: &str, shared: Shared) -> Self {
        let mut steering = Self {
            site: site.to_string(),
            shared,
            published: None,
        };
        steering.published = steering.last_published().await;
        steering
    }

    /// The site's last demand-response signal on GRID, when a VEN's curtailment: so that a
    /// curtailment it asked before a restart is ended (a `normal`) if the VTN no longer asks
    /// it, rather than left for the controller to hold forever. Prices published on the same
    /// subject after it are looked past.
    ///
    /// A read that fails (NATS busy or reconnecting) is tried again, up to [`LAST_READS`]
    /// times a second apart: giving up early would leave that curtailment in force.
    async fn last_published(&self) -> Option<Published> {
        let js = self.shared.publisher.jetstream();
        let mut attempt = 0;
        let last = loop {
            attempt += 1;
            match last::last_demand_response(js, &self.site).await {
                Ok(last) => break last,
                Err(error) if attempt < LAST_READS => {
                    tracing::warn!(site = %self.site, %error, attempt, "reading the site's last grid signal failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => {
                    tracing::error!(site = %self.site, %error, "reading the site's last grid signal failed: a curtailment this VEN asked before the restart will not be ended by it");
                    return None;
                }
            }
        };
        let Some(signal) = last else {
            tracing::info!(site = %self.site, "no demand-response signal on GRID for the site: no curtailment of a VEN's to end");
            return None;
        };
        if !(signal.event_id.starts_with(EVENT_PREFIX) && signal.kind == GridSignalKind::Curtail) {
            tracing::info!(site = %self.site, event = %signal.event_id, kind = ?signal.kind, "the site's last grid signal is no curtailment of a VEN's: none to end");
            return None;
        }
        tracing::info!(site = %self.site, event = %signal.event_id, "the last curtailment a VEN asked, before this start");
        Some(Published {
            signal,
            at: Instant::now(),
        })
    }

    /// Publishes what is asked now when it changed, and confirms a curtailment still asked
    /// while the VTN answers (`alive`). An end is published only once the VTN's events were
    /// taken since this start (`heard`): until then nothing asked means nothing heard.
    pub(crate) async fn steer(
        &mut self,
        ask: Option<Ask>,
        alive: bool,
        heard: bool,
    ) -> Result<(), AdaptersError> {
        let now = Utc::now();
        let signal = match (&ask, &self.published) {
            (Some(a), Some(p)) if same(a, &p.signal) => {
                if !alive || p.at.elapsed() < self.shared.confirm {
                    return Ok(());
                }
                GridSignal {
                    ts: now,
                    ..p.signal.clone()
                }
            }
            (Some(a), _) => GridSignal {
                site: self.site.clone(),
                event_id: a.event_id.clone(),
                kind: GridSignalKind::Curtail,
                target_kw: Some(a.target_kw),
                deadline: Some(a.deadline.max(now)),
                price_per_mwh: None,
                ts: now,
            },
            (None, Some(p)) if p.signal.kind == GridSignalKind::Curtail && heard => GridSignal {
                kind: GridSignalKind::Normal,
                target_kw: None,
                deadline: None,
                ts: now,
                ..p.signal.clone()
            },
            (None, _) => return Ok(()),
        };
        self.shared
            .publisher
            .publish(&AnyEvent::Grid(signal.clone()))
            .await?;
        if self
            .published
            .as_ref()
            .is_none_or(|p| p.signal.event_id != signal.event_id || p.signal.kind != signal.kind)
        {
            tracing::info!(site = %self.site, event = %signal.event_id, kind = ?signal.kind, target_kw = ?signal.target_kw, deadline = ?signal.deadline, "OpenADR grid signal");
        }
        self.published = Some(Published {
            signal,
            at: Instant::now(),
        });
        Ok(())
    }
}

/// Whether `signal` is what `ask` asks (same event, target and deadline).
fn same(ask: &Ask, signal: &GridSignal) -> bool {
    signal.kind == GridSignalKind::Curtail
        && signal.event_id == ask.event_id
        && signal.target_kw == Some(ask.target_kw)
}
