//! Coin price feeds (`[[adapters.coin_price]]`, from config, not the registry): each feed is one
//! device, a market's JSON read at a pointer (CoinGecko's `/simple/price` answers
//! `{"monero":{"usd":152.3}}`, read at `/monero/usd`). A price is published as a
//! [`CoinPrice`] at most once every `every` per feed, whatever the poll interval, so a public
//! market API is not asked more often than its owner allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use adit_schemas::registry::{AdapterKind, RecordKind, RegistryView};
use adit_schemas::{AnyEvent, CoinPrice};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Url;

use super::super::config::AdaptersConfig;
use super::super::device::{Ctx, Device, DeviceKey, Failure, Family, Polled, Targets, fetch};
use adit_devices::http_json::parse_coin_price;
use adit_devices::http_url;

/// The family's name.
const NAME: &str = "coin";

/// When each feed last published, by device (kept across registry changes).
type Memory = Arc<Mutex<HashMap<DeviceKey, Instant>>>;

/// The coin price feeds.
#[derive(Default)]
pub(super) struct Coins {
    published: Memory,
}

impl Family for Coins {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Option<(AdapterKind, RecordKind)> {
        None
    }

    fn collect(&self, _: &RegistryView, config: &AdaptersConfig, out: &mut Targets) {
        for feed in &config.coin_price {
            let Ok(url) = http_url(&feed.url) else {
                out.skipped.push(format!(
                    "coin price feed {:?}: not an http(s) URL",
                    feed.url
                ));
                continue;
            };
            out.devices.insert(
                DeviceKey {
                    family: NAME,
                    address: url.to_string(),
                    owner: feed.coin.clone(),
                },
                Arc::new(Feed {
                    coin: feed.coin.clone(),
                    decimals: feed.decimals,
                    pointer: feed.pointer.clone(),
                    every: feed.every,
                    source: url.host_str().unwrap_or("feed").to_string(),
                    url,
                    published: self.published.clone(),
                }),
            );
        }
    }
}

/// One coin price feed.
#[derive(Debug)]
struct Feed {
    /// The coin it prices.
    coin: String,
    /// The coin's decimals.
    decimals: u8,
    /// Where the price is in the feed's JSON.
    pointer: String,
    /// Least time between two published prices.
    every: Duration,
    /// The feed's host, recorded as the price's source.
    source: String,
    /// Its URL.
    url: Url,
    /// When every feed last published.
    published: Memory,
}

#[async_trait]
impl Device for Feed {
    async fn poll(&self, ctx: &Ctx, key: &DeviceKey, at: DateTime<Utc>) -> Result<Polled, Failure> {
        let due = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .is_none_or(|t| t.elapsed() >= self.every);
        if !due {
            return Ok(Polled::default());
        }
        let body = fetch(ctx, &ctx.feeds, &self.url)
            .await
            .map_err(Failure::bare)?;
        let price =
            parse_coin_price(&body, &self.pointer).map_err(|e| Failure::with_body(e, &body))?;
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), Instant::now());
        Ok(Polled {
            events: vec![AnyEvent::CoinPrice(CoinPrice {
                coin: self.coin.clone(),
                price,
                decimals: self.decimals,
                source: self.source.clone(),
                ts: at,
            })],
            missing: Vec::new(),
        })
    }
}
