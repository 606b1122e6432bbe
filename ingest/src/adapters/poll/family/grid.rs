//! Grid signal and price feeds (`[[adapters.grid]]`, from config, not the registry): each
//! feed is one device, read in adit's own shape or through its `map`. An unchanged signal is
//! published again only as a confirmation of a curtailment, every `grid_confirm`; the family
//! remembers what each feed last said across registry changes. Its fake answers each
//! simulated site's latest demand-response message (`/<site>/signal`) and price
//! (`/<site>/price`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use adit_schemas::registry::{AdapterKind, RecordKind, RegistryView};
use adit_schemas::{AnyEvent, Event as _, GridSignal, GridSignalKind};
use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Url;
use serde_json::{Value, json};

use super::super::config::{AdaptersConfig, GridFeedKind};
use super::super::device::{Ctx, Device, DeviceKey, Failure, Family, Polled, Targets, fetch};
use crate::fake::{Reply, Routes, Sim};
use adit_devices::feed_map::{self, Asks, FeedMap, Mapped};
use adit_devices::http_json::{
    DrMessage, DrMode, PriceMessage, parse_dr_signal, parse_price_signal,
};
use adit_devices::http_url;

/// The family's name.
const NAME: &str = "grid";

/// The event id of the fake demand-response feed's answer before the simulated farm has
/// issued a signal.
pub const INITIAL_EVENT_ID: &str = "sim-start";
/// The interval id of the fake price feed's answer before the simulated farm has issued a
/// price (not [`INITIAL_EVENT_ID`]: both have the same time, and a grid signal's dedupe id is
/// its site, event id and time).
pub const INITIAL_PRICE_ID: &str = "sim-start-price";
/// The fake price feed's answer before the simulated farm has issued a price, per MWh.
pub const INITIAL_PRICE_PER_MWH: f64 = 50.0;

/// What each feed last said, by device.
type Memory = Arc<Mutex<HashMap<DeviceKey, Said>>>;

/// The grid feeds, with what each last said.
#[derive(Default)]
pub(super) struct Grid {
    seen: Memory,
}

impl Family for Grid {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Option<(AdapterKind, RecordKind)> {
        None
    }

    fn collect(&self, _: &RegistryView, config: &AdaptersConfig, out: &mut Targets) {
        for feed in &config.grid {
            let Ok(url) = http_url(&feed.url) else {
                out.skipped
                    .push(format!("grid feed {:?}: not an http(s) URL", feed.url));
                continue;
            };
            out.devices.insert(
                DeviceKey {
                    family: NAME,
                    address: url.to_string(),
                    owner: format!("{} {}", feed.site, feed.kind.name()),
                },
                Arc::new(Feed {
                    site: feed.site.clone(),
                    kind: feed.kind,
                    url,
                    map: feed.map.clone().map(Box::new),
                    seen: self.seen.clone(),
                }),
            );
        }
    }

    fn fake(&self) -> Option<Routes> {
        Some(
            Routes::new()
                .route("/{site}/signal", get(fake_signal))
                .route("/{site}/price", get(fake_price)),
        )
    }
}

/// One grid feed.
#[derive(Debug)]
pub(super) struct Feed {
    /// The site.
    site: String,
    /// Its message shape.
    kind: GridFeedKind,
    /// Its URL.
    url: Url,
    /// How to read it when it is in its own shape.
    map: Option<Box<FeedMap>>,
    /// What every feed last said.
    seen: Memory,
}

#[async_trait]
impl Device for Feed {
    async fn poll(&self, ctx: &Ctx, key: &DeviceKey, _: DateTime<Utc>) -> Result<Polled, Failure> {
        let body = fetch(ctx, &ctx.feeds, &self.url)
            .await
            .map_err(Failure::bare)?;
        let (signal, id) = self.read(&body)?;
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let signal = match seen.get_mut(key) {
            Some(said) if said.id == id => {
                // Only a curtailment is confirmed: the controller's staleness rule is about
                // the curtailment in force, and a `normal` confirmed from one feed would end
                // a curtailment another feed of the site still asks for.
                if said.signal.kind != GridSignalKind::Curtail
                    || now.duration_since(said.at) < ctx.config.grid_confirm
                {
                    return Ok(Polled::default());
                }
                said.at = now;
                said.signal.ts = Utc::now();
                // Past its deadline the target is due now: a confirmation never says it was
                // due before it was sent (validation refuses that).
                said.signal.deadline = said.signal.deadline.map(|d| d.max(said.signal.ts));
                said.signal.clone()
            }
            _ => {
                seen.insert(
                    key.clone(),
                    Said {
                        id,
                        signal: signal.clone(),
                        at: now,
                    },
                );
                signal
            }
        };
        Ok(Polled {
            events: vec![AnyEvent::Grid(signal)],
            missing: Vec::new(),
        })
    }
}

impl Feed {
    /// The signal `body` says, and what identifies the feed's current message: its own id
    /// and time (adit's shape), or what it says (a mapped feed, which may repeat the same
    /// words on every poll).
    fn read(&self, body: &[u8]) -> Result<(GridSignal, String), Failure> {
        let price = self.kind == GridFeedKind::Price;
        match &self.map {
            None => {
                let signal = if price {
                    parse_price_signal(body, &self.site)
                } else {
                    parse_dr_signal(body, &self.site)
                }
                .map_err(|e| Failure::with_body(e, body))?;
                let id = signal.dedupe_id();
                Ok((signal, id))
            }
            Some(map) => {
                let mapped =
                    feed_map::read(map, price, body).map_err(|e| Failure::with_body(e, body))?;
                let id = mapped.made_id();
                Ok((mapped_signal(&self.site, map, mapped, Utc::now()), id))
            }
        }
    }
}

/// What a grid feed last said: the signal as first published (its event id and deadline
/// stay), and when it was last published.
#[derive(Debug)]
struct Said {
    /// What identifies the feed's message (its id, or what a mapped feed says).
    id: String,
    /// The signal published for it.
    signal: GridSignal,
    /// When it was last published (first seen or confirmed).
    at: Instant,
}

/// The grid signal a mapped feed's reading stands for, first seen `now`: a curtailment
/// without a deadline of its own is due `map.lead` after it was first seen; a reading
/// without an event id of its own gets one made from what it says and when it was first
/// seen, so a feed that says `CURTAIL` again after a `NORMAL` starts a new event.
fn mapped_signal(site: &str, map: &FeedMap, mapped: Mapped, now: DateTime<Utc>) -> GridSignal {
    let event_id = mapped
        .event_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", mapped.made_id(), now.format("%Y%m%dT%H%M%S%.3fZ")));
    let lead = chrono::Duration::from_std(map.lead).unwrap_or_default();
    let (kind, deadline) = match mapped.asks {
        None => (GridSignalKind::Price, None),
        Some(Asks::Normal) => (GridSignalKind::Normal, None),
        Some(Asks::Curtail) => (
            GridSignalKind::Curtail,
            Some(mapped.deadline.unwrap_or(now + lead)),
        ),
    };
    GridSignal {
        site: site.to_string(),
        event_id,
        kind,
        target_kw: mapped.target_kw,
        deadline,
        price_per_mwh: mapped.price_per_mwh,
        ts: now,
    }
}

/// The fake utility's demand-response message for the site.
async fn fake_signal(State(sim): State<Arc<Sim>>, Path(site): Path<String>) -> Reply {
    sim.site(&site)?;
    let msg = sim.latest.borrow().signals.get(&site).cloned();
    let msg = msg.unwrap_or_else(|| DrMessage {
        event_id: INITIAL_EVENT_ID.into(),
        mode: DrMode::Normal,
        target_kw: None,
        deadline: None,
        issued: sim.started,
    });
    Ok(Json(dr_reply(&msg)))
}

/// The fake market's price for the site.
async fn fake_price(State(sim): State<Arc<Sim>>, Path(site): Path<String>) -> Reply {
    sim.site(&site)?;
    let msg = sim.latest.borrow().prices.get(&site).cloned();
    let msg = msg.unwrap_or_else(|| PriceMessage {
        interval_start: sim.started,
        interval_id: INITIAL_PRICE_ID.into(),
        price_per_mwh: INITIAL_PRICE_PER_MWH,
    });
    Ok(Json(price_reply(&msg)))
}

fn rfc3339(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The utility endpoint's body for `msg`.
fn dr_reply(msg: &DrMessage) -> Value {
    let mut v = json!({
        "event_id": msg.event_id,
        "mode": match msg.mode {
            DrMode::Curtail => "curtail",
            DrMode::Normal => "normal",
        },
        "issued": rfc3339(msg.issued),
    });
    if let Some(kw) = msg.target_kw {
        v["target_kw"] = json!(kw);
    }
    if let Some(deadline) = msg.deadline {
        v["deadline"] = json!(rfc3339(deadline));
    }
    v
}

/// The price feed's body for `msg`.
fn price_reply(msg: &PriceMessage) -> Value {
    json!({
        "interval_start": rfc3339(msg.interval_start),
        "interval_id": msg.interval_id,
        "price_per_mwh": msg.price_per_mwh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::poll::family::at;
    use chrono::Duration;

    #[test]
    fn grid_replies_read_back() {
        let (issued, deadline) = (at(), at() + Duration::minutes(30));
        let curtail = DrMessage {
            event_id: "dr-7".into(),
            mode: DrMode::Curtail,
            target_kw: Some(250.5),
            deadline: Some(deadline),
            issued,
        };
        let signal =
            parse_dr_signal(dr_reply(&curtail).to_string().as_bytes(), "south").expect("parses");
        assert_eq!(signal.kind, GridSignalKind::Curtail);
        assert_eq!(signal.target_kw, Some(250.5));
        assert_eq!(signal.deadline, Some(deadline));
        assert_eq!(signal.ts, issued);
        let back: DrMessage = serde_json::from_value(dr_reply(&curtail)).expect("same shape");
        assert_eq!(back, curtail);

        let normal = DrMessage {
            mode: DrMode::Normal,
            target_kw: None,
            deadline: None,
            ..curtail
        };
        let reply = dr_reply(&normal);
        assert!(reply.get("target_kw").is_none() && reply.get("deadline").is_none());
        assert_eq!(
            parse_dr_signal(reply.to_string().as_bytes(), "south")
                .expect("parses")
                .kind,
            GridSignalKind::Normal
        );

        let price = PriceMessage {
            interval_start: at() + Duration::hours(1),
            interval_id: "2026-07-01T13:00Z/PT15M".into(),
            price_per_mwh: 43.2,
        };
        let signal = parse_price_signal(price_reply(&price).to_string().as_bytes(), "south")
            .expect("parses");
        assert_eq!(signal.price_per_mwh, Some(43.2));
        assert_eq!(signal.event_id, price.interval_id);
        let back: PriceMessage = serde_json::from_value(price_reply(&price)).expect("same shape");
        assert_eq!(back, price);
    }
}
