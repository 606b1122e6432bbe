//! `[adapters]`: how devices are polled, which grid feeds and MQTT topics are read, and the
//! checks every value passes (errors name the full key, `adapters.…`).

use std::collections::HashMap;
use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use adit_schemas::names;
use serde::{Deserialize, Serialize};

use adit_devices::http_json::FieldMap;
use adit_devices::http_url;
use adit_devices::mqtt::{self, TopicMap};

/// `[adapters]`: how devices are polled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptersConfig {
    /// Time between two polls of a device that answers.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long one poll (connect, request, whole reply) may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest wait between polls of a failing device (the backoff doubles up to this).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A device without a good reading for this long is stale (a miner is reported offline).
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Largest reply read from a device, bytes.
    pub max_reply_bytes: usize,
    /// Devices polled at once.
    pub concurrency: usize,
    /// How often the registry is read again for added, changed and removed devices.
    #[serde(with = "humantime_serde")]
    pub registry_refresh: Duration,
    /// Where PDUs put their outlets and power in their JSON.
    pub pdu: FieldMap,
    /// The MQTT broker to subscribe to, if any.
    pub mqtt: Option<MqttConfig>,
    /// Demand-response and price feeds, polled every `interval`.
    pub grid: Vec<GridFeed>,
    /// Coin price feeds, read every `interval` and published at most every feed's `every`.
    pub coin_price: Vec<CoinFeed>,
    /// OpenADR 2.0b VENs, one per site connected to its utility's VTN.
    pub openadr: Vec<crate::adapters::openadr::OpenAdrConfig>,
    /// OpenADR 3.1 VENs, one per site whose utility speaks 3.1.
    pub openadr3: Vec<crate::adapters::openadr3::OpenAdr3Config>,
    /// How often a grid feed that still asks for the same curtailment confirms it on GRID (its
    /// signal again, same event id and deadline, received now): what lets the controller's
    /// `pipelines.curtailment.signal_stale` tell a feed that went silent from one that has
    /// nothing new to say.
    #[serde(with = "humantime_serde")]
    pub grid_confirm: Duration,
}

impl Default for AdaptersConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
            max_backoff: Duration::from_secs(300),
            stale_after: Duration::from_secs(30),
            max_reply_bytes: 1024 * 1024,
            concurrency: 64,
            registry_refresh: Duration::from_secs(5),
            pdu: FieldMap::default(),
            mqtt: None,
            grid: Vec::new(),
            coin_price: Vec::new(),
            openadr: Vec::new(),
            openadr3: Vec::new(),
            grid_confirm: Duration::from_secs(60),
        }
    }
}

/// `[adapters.mqtt]`: the broker that sensors push to, and how topics map to sensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]`.
    pub url: String,
    /// The client id (unique on the broker).
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Topic patterns → site, sensor and kind; the first match wins.
    pub maps: Vec<TopicMap>,
}

fn default_client_id() -> String {
    "adit-adapters".into()
}

/// Which shape a grid feed answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum GridFeedKind {
    /// The utility's demand-response message ([`super::http_json::DrMessage`]).
    Signal,
    /// The market's price ([`super::http_json::PriceMessage`]).
    Price,
}

impl GridFeedKind {
    pub(super) fn name(self) -> &'static str {
        self.into()
    }

    /// What a source of this kind gives a site, in words.
    fn what(self) -> &'static str {
        match self {
            Self::Signal => "demand-response signals",
            Self::Price => "prices",
        }
    }
}

/// `[[adapters.grid]]`: one HTTP feed of grid signals for a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFeed {
    /// The site its signals apply to.
    pub site: String,
    /// Demand response or price.
    pub kind: GridFeedKind,
    /// `http://` or `https://` URL: adit's JSON message, or the feed's own shape with `map`.
    pub url: String,
    /// How to read a feed in its own shape (JSON, CSV or plain text); none: adit's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<adit_devices::feed_map::FeedMap>,
}

/// `[[adapters.coin_price]]`: one market's price of a coin, as JSON read at a pointer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoinFeed {
    /// The coin, as pools name it in the registry (`XMR`).
    pub coin: String,
    /// Atomic units in one coin, as a power of ten (12 for Monero).
    pub decimals: u8,
    /// `http://` or `https://` URL of the market's JSON.
    pub url: String,
    /// JSON pointer to the price of one coin (`/monero/usd`).
    pub pointer: String,
    /// Least time between two prices published from this feed.
    #[serde(default = "default_coin_every", with = "humantime_serde")]
    pub every: Duration,
}

fn default_coin_every() -> Duration {
    Duration::from_secs(60)
}

impl CoinFeed {
    fn validate(&self) -> Checked {
        check(
            names::is_token(&self.coin),
            "coin",
            format!("{:?} must be 1-64 characters of A-Z a-z 0-9 _ -", self.coin),
        )?;
        check(
            self.decimals <= adit_schemas::market::MAX_DECIMALS,
            "decimals",
            format!("must be at most {}", adit_schemas::market::MAX_DECIMALS),
        )?;
        http_url(&self.url).map_err(|r| Invalid::new("url", format!("{:?}: {r}", self.url)))?;
        check(
            self.pointer.is_empty() || self.pointer.starts_with('/'),
            "pointer",
            format!("{:?} is not a JSON pointer (`/monero/usd`)", self.pointer),
        )?;
        check(
            self.every >= Duration::from_secs(1),
            "every",
            "must be at least 1s",
        )
    }
}

impl AdaptersConfig {
    /// Checks the values that parse but cannot work; the key is already full
    /// (`adapters.timeout`), so the caller adds no section.
    pub fn validate(&self) -> Checked {
        for (key, d) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("max_backoff", self.max_backoff),
            ("stale_after", self.stale_after),
            ("registry_refresh", self.registry_refresh),
            ("grid_confirm", self.grid_confirm),
        ] {
            check(!d.is_zero(), key, "must be more than 0").map_err(|e| e.under("adapters"))?;
        }
        check(
            self.timeout < self.interval,
            "adapters.timeout",
            format!(
                "{:?} must be less than adapters.interval ({:?})",
                self.timeout, self.interval
            ),
        )?;
        check(
            self.max_backoff >= self.interval,
            "adapters.max_backoff",
            format!(
                "{:?} must be at least adapters.interval ({:?})",
                self.max_backoff, self.interval
            ),
        )?;
        check(
            self.stale_after >= self.interval + self.timeout,
            "adapters.stale_after",
            format!(
                "{:?} must be at least interval + timeout ({:?}), or every device goes stale between two polls",
                self.stale_after,
                self.interval + self.timeout
            ),
        )?;
        check(
            self.max_reply_bytes >= 1024,
            "adapters.max_reply_bytes",
            format!("{} must be at least 1024", self.max_reply_bytes),
        )?;
        check(
            self.concurrency != 0,
            "adapters.concurrency",
            "must be at least 1",
        )?;
        validate_field_map(&self.pdu).map_err(|e| e.under("adapters.pdu"))?;
        if let Some(mqtt) = &self.mqtt {
            validate_mqtt(mqtt).map_err(|e| e.under("adapters.mqtt"))?;
        }
        for (i, feed) in self.grid.iter().enumerate() {
            let key = format!("adapters.grid[{i}]");
            check(
                names::is_token(&feed.site),
                &format!("{key}.site"),
                format!("{:?} must be 1-64 characters of A-Z a-z 0-9 _ -", feed.site),
            )?;
            http_url(&feed.url)
                .map_err(|r| Invalid::new(format!("{key}.url"), format!("{:?}: {r}", feed.url)))?;
            if let Some(map) = &feed.map {
                let key = format!("{key}.map");
                map.validate(feed.kind == GridFeedKind::Price)
                    .map_err(|e| e.under(&key))?;
            }
        }
        for (i, feed) in self.coin_price.iter().enumerate() {
            feed.validate()
                .map_err(|e| e.under(&format!("adapters.coin_price[{i}]")))?;
        }
        for (i, ven) in self.openadr.iter().enumerate() {
            ven.validate()
                .map_err(|e| e.under(&format!("adapters.openadr[{i}]")))?;
        }
        for (i, ven) in self.openadr3.iter().enumerate() {
            ven.validate()
                .map_err(|e| e.under(&format!("adapters.openadr3[{i}]")))?;
        }
        self.one_source_per_site()
    }

    /// Each site's grid signals of a kind come from one source: a second demand-response
    /// source (a `signal` feed or an OpenADR VEN) would end the first's curtailments with its
    /// own `normal`, and a second price feed would interleave two markets' prices.
    fn one_source_per_site(&self) -> Checked {
        let mut seen: HashMap<(&str, GridFeedKind), String> = HashMap::new();
        let feeds = self
            .grid
            .iter()
            .enumerate()
            .map(|(i, feed)| (&feed.site, feed.kind, format!("adapters.grid[{i}]")));
        let vens = self.openadr.iter().enumerate().map(|(i, ven)| {
            (
                &ven.site,
                GridFeedKind::Signal,
                format!("adapters.openadr[{i}]"),
            )
        });
        let vens3 = self.openadr3.iter().enumerate().flat_map(|(i, ven)| {
            let key = format!("adapters.openadr3[{i}]");
            let prices = ven
                .prices
                .then(|| (&ven.site, GridFeedKind::Price, key.clone()));
            std::iter::once((&ven.site, GridFeedKind::Signal, key)).chain(prices)
        });
        for (site, kind, key) in feeds.chain(vens).chain(vens3) {
            if let Some(first) = seen.get(&(site.as_str(), kind)) {
                return Err(Invalid::new(
                    format!("{key}.site"),
                    format!(
                        "{site:?} already has its {} from {first}: one source per site",
                        kind.what()
                    ),
                ));
            }
            seen.insert((site.as_str(), kind), key);
        }
        Ok(())
    }

    /// Whether the site's signals of `kind` come from a configured source.
    fn has_source(&self, site: &str, kind: GridFeedKind) -> bool {
        self.grid.iter().any(|f| f.site == site && f.kind == kind)
            || (kind == GridFeedKind::Signal
                && (self.openadr.iter().any(|v| v.site == site)
                    || self.openadr3.iter().any(|v| v.site == site)))
            || (kind == GridFeedKind::Price
                && self.openadr3.iter().any(|v| v.site == site && v.prices))
    }

    /// Adds `feeds` (the simulated farm's) where the site has no source of that kind
    /// configured: a site connected to its utility (a VEN or a feed of its own) takes its
    /// signals from there only. Returns the feeds left out.
    pub fn add_feeds_where_none(&mut self, feeds: Vec<GridFeed>) -> Vec<GridFeed> {
        let (added, left): (Vec<_>, Vec<_>) = feeds
            .into_iter()
            .partition(|f| !self.has_source(&f.site, f.kind));
        self.grid.extend(added);
        left
    }
}

/// `[adapters.pdu]`; keys relative to it.
fn validate_field_map(map: &FieldMap) -> Checked {
    check(
        map.items.is_empty() || map.items.starts_with('/'),
        "items",
        format!(
            "{:?} must be a JSON pointer (/outlets) or empty (the body is the array)",
            map.items
        ),
    )?;
    for (key, value) in [("id", &map.id), ("power_w", &map.power_w)] {
        check(
            !value.is_empty(),
            key,
            "must name a field or a JSON pointer",
        )?;
    }
    Ok(())
}

/// `[adapters.mqtt]`; keys relative to it.
fn validate_mqtt(mqtt: &MqttConfig) -> Checked {
    check(!mqtt.client_id.is_empty(), "client_id", "must not be empty")?;
    mqtt::client_options(&mqtt.url, &mqtt.client_id)
        .map_err(|e| Invalid::new("url", e.to_string()))?;
    check(
        !mqtt.maps.is_empty(),
        "maps",
        "must hold at least one topic map",
    )?;
    for (i, map) in mqtt.maps.iter().enumerate() {
        map.validate().map_err(|e| e.under(&format!("maps[{i}]")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::SensorKind;

    const S: Duration = Duration::from_secs(1);

    fn valid() -> AdaptersConfig {
        AdaptersConfig {
            mqtt: Some(MqttConfig {
                url: "mqtt://127.0.0.1:1883".into(),
                client_id: "adit".into(),
                maps: vec![TopicMap {
                    pattern: "farm/+/t/+".into(),
                    site: "{1}".into(),
                    sensor: "{2}".into(),
                    kind: SensorKind::Temperature,
                    value: None,
                }],
            }),
            grid: vec![GridFeed {
                site: "s1".into(),
                kind: GridFeedKind::Signal,
                url: "https://utility.example/dr".into(),
                map: None,
            }],
            ..AdaptersConfig::default()
        }
    }

    #[test]
    fn config_defaults_parse_and_errors_name_the_key() {
        let parsed: AdaptersConfig = serde_json::from_str("{}").expect("defaults");
        assert_eq!(parsed, AdaptersConfig::default());
        assert!(AdaptersConfig::default().validate().is_ok());
        assert!(valid().validate().is_ok());
        let parsed: AdaptersConfig = serde_json::from_str(
            r#"{"interval":"1s","timeout":"500ms","stale_after":"3s","grid":[{"site":"s1","kind":"price","url":"http://p"}]}"#,
        )
        .expect("parses");
        assert_eq!(parsed.interval, S);
        assert!(serde_json::from_str::<AdaptersConfig>(r#"{"intervall":"1s"}"#).is_err());

        let cases: Vec<(AdaptersConfig, &str)> = vec![
            (
                AdaptersConfig {
                    interval: Duration::ZERO,
                    ..valid()
                },
                "adapters.interval",
            ),
            (
                AdaptersConfig {
                    timeout: 10 * S,
                    ..valid()
                },
                "adapters.timeout",
            ),
            (
                AdaptersConfig {
                    max_backoff: S,
                    ..valid()
                },
                "adapters.max_backoff",
            ),
            (
                AdaptersConfig {
                    stale_after: 12 * S,
                    ..valid()
                },
                "adapters.stale_after",
            ),
            (
                AdaptersConfig {
                    concurrency: 0,
                    ..valid()
                },
                "adapters.concurrency",
            ),
            (
                AdaptersConfig {
                    max_reply_bytes: 10,
                    ..valid()
                },
                "adapters.max_reply_bytes",
            ),
            (
                AdaptersConfig {
                    registry_refresh: Duration::ZERO,
                    ..valid()
                },
                "adapters.registry_refresh",
            ),
            (
                AdaptersConfig {
                    pdu: FieldMap {
                        items: "outlets".into(),
                        ..FieldMap::default()
                    },
                    ..valid()
                },
                "adapters.pdu.items",
            ),
            (
                AdaptersConfig {
                    grid: vec![GridFeed {
                        site: "s1".into(),
                        kind: GridFeedKind::Price,
                        url: "ftp://x".into(),
                        map: None,
                    }],
                    ..valid()
                },
                "adapters.grid[0].url",
            ),
            (
                AdaptersConfig {
                    grid: vec![GridFeed {
                        site: "a.b".into(),
                        kind: GridFeedKind::Price,
                        url: "http://x".into(),
                        map: None,
                    }],
                    ..valid()
                },
                "adapters.grid[0].site",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().expect_err(key);
            assert_eq!(err.key, key, "{err}");
        }
        let with_mqtt = |f: &dyn Fn(&mut MqttConfig)| {
            let mut c = valid();
            if let Some(m) = c.mqtt.as_mut() {
                f(m);
            }
            c.validate().expect_err("invalid mqtt").to_string()
        };
        assert!(with_mqtt(&|m| m.url = "http://x".into()).starts_with("adapters.mqtt.url: "));
        assert!(with_mqtt(&|m| m.client_id.clear()).starts_with("adapters.mqtt.client_id: "));
        assert!(with_mqtt(&|m| m.maps.clear()).starts_with("adapters.mqtt.maps: "));
        let err = with_mqtt(&|m| m.maps[0].pattern = "farm/#".into());
        assert!(
            err.starts_with("adapters.mqtt.maps[0].pattern: \"farm/#\""),
            "{err}"
        );
    }

    fn ven(site: &str) -> crate::adapters::openadr::OpenAdrConfig {
        serde_json::from_value(serde_json::json!({
            "site": site, "vtn_url": "https://vtn.example/", "ven_name": site,
        }))
        .expect("a VEN")
    }

    fn ven3(site: &str) -> crate::adapters::openadr3::OpenAdr3Config {
        serde_json::from_value(serde_json::json!({
            "site": site, "vtn_url": "https://vtn.example/", "client_id": site,
            "client_secret": "s",
        }))
        .expect("a 3.1 VEN")
    }

    fn feed(site: &str, kind: GridFeedKind) -> GridFeed {
        GridFeed {
            site: site.into(),
            kind,
            url: format!("http://sim/{site}"),
            map: None,
        }
    }

    #[test]
    fn a_vtn_is_reached_over_tls_unless_it_is_on_this_machine() {
        let with_url = |url: &str| {
            let mut v = ven("s1");
            v.vtn_url = url.into();
            v.validate()
        };
        for ok in [
            "https://vtn.example/",
            "http://127.0.0.1:8080/OpenADR2/Simple/2.0b",
            "http://localhost:8080/",
            "http://[::1]:8080/",
        ] {
            assert!(with_url(ok).is_ok(), "{ok}");
        }
        for plain in [
            "http://vtn.example/",
            "http://10.0.0.5/",
            "http://[2001:db8::1]/",
        ] {
            let err = with_url(plain).expect_err(plain);
            assert_eq!(err.key, "vtn_url", "{err}");
            assert!(err.to_string().contains("https://"), "{err}");
        }
    }

    #[test]
    fn a_site_takes_each_kind_of_grid_signal_from_one_source() {
        let mut two_feeds = valid();
        two_feeds.grid.push(feed("s1", GridFeedKind::Signal));
        let err = two_feeds.validate().expect_err("two signal feeds");
        assert_eq!(err.key, "adapters.grid[1].site", "{err}");
        assert!(err.to_string().contains("adapters.grid[0]"), "{err}");
        let mut feed_and_ven = valid();
        feed_and_ven.openadr.push(ven("s1"));
        let err = feed_and_ven.validate().expect_err("a feed and a VEN");
        assert_eq!(err.key, "adapters.openadr[0].site", "{err}");
        let mut two_vens = valid();
        two_vens.openadr.push(ven("s4"));
        two_vens.openadr3.push(ven3("s4"));
        let err = two_vens.validate().expect_err("a 2.0b and a 3.1 VEN");
        assert_eq!(err.key, "adapters.openadr3[0].site", "{err}");
        let mut with_3_1 = valid();
        with_3_1.openadr3.push(ven3("s5"));
        assert!(with_3_1.validate().is_ok());
        let mut priced = with_3_1.clone();
        priced.openadr3[0].prices = true;
        priced.grid.push(feed("s5", GridFeedKind::Price));
        let err = priced
            .validate()
            .expect_err("a price feed and a VEN's prices");
        assert!(err.to_string().contains("adapters.openadr3[0]"), "{err}");
        assert_eq!(
            with_3_1
                .add_feeds_where_none(vec![feed("s5", GridFeedKind::Signal)])
                .len(),
            1,
            "a 3.1 VEN's site takes no simulated signal feed"
        );
        let mut apart = valid();
        apart.grid.push(feed("s1", GridFeedKind::Price));
        apart.openadr.push(ven("s2"));
        assert!(
            apart.validate().is_ok(),
            "a price feed and another site's VEN"
        );

        // The simulated farm's feeds go only where no source is configured.
        let left = apart.add_feeds_where_none(vec![
            feed("s1", GridFeedKind::Signal),
            feed("s1", GridFeedKind::Price),
            feed("s2", GridFeedKind::Signal),
            feed("s2", GridFeedKind::Price),
            feed("s3", GridFeedKind::Signal),
        ]);
        let sites = |feeds: &[GridFeed]| {
            feeds
                .iter()
                .map(|f| (f.site.clone(), f.kind))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sites(&left),
            [
                ("s1".to_string(), GridFeedKind::Signal),
                ("s1".to_string(), GridFeedKind::Price),
                ("s2".to_string(), GridFeedKind::Signal),
            ]
        );
        assert_eq!(
            sites(&apart.grid[2..]),
            [
                ("s2".to_string(), GridFeedKind::Price),
                ("s3".to_string(), GridFeedKind::Signal),
            ]
        );
        assert!(apart.validate().is_ok(), "still one source each");
    }
}
