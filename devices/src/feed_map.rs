//! Grid feeds in the utility's own shape, read by configuration instead of code: a JSON body
//! read at JSON pointers, a CSV body read by column names (its last row), or a plain-text body
//! (its first line) — the cooperative's power-signal URL the seed systems poll answers
//! `CURTAIL` or `NORMAL`. The feed's words are mapped to what they ask (`values`), and a target,
//! a deadline, an event id or a price are read where the feed has them, or fixed in config.
//!
//! Pure: [`read`] turns a body into a [`Mapped`] reading or refuses it with a
//! [`DeviceError`] that says why (a word `values` does not map, a missing field, an implausible
//! number); the poller turns readings into grid signals and publishes only changes.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use adit_config::{Checked, Invalid, check};

use super::{DeviceError, decode_json, in_range, number};

/// Largest curtailment target believed, kW (10 GW).
const MAX_TARGET_KW: f64 = 1e7;
/// Price range believed, currency units per MWh (the range `GridSignal` accepts).
const MAX_ABS_PRICE_PER_MWH: f64 = 1e6;
/// Longest lead time allowed for a deadline fixed in config.
const MAX_LEAD: Duration = Duration::from_secs(24 * 3600);

/// How a feed's body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedFormat {
    /// JSON; fields are JSON pointers (`/signal/state`).
    Json,
    /// CSV with a header row; fields are column names; the last row is read.
    Csv,
    /// Plain text: the first non-empty line is the signal (or the price).
    Text,
}

/// What a feed's word asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Asks {
    /// Bring the site down to the target by the deadline.
    Curtail,
    /// Back to normal.
    Normal,
}

/// `[adapters.grid.map]`: where a feed keeps what adit needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedMap {
    /// The body's layout.
    pub format: FeedFormat,
    /// Where the signal word is (JSON pointer or CSV column; text: the line itself).
    #[serde(default)]
    pub signal: Option<String>,
    /// The feed's words (trimmed, case-insensitive) and what each asks; empty: the words
    /// `curtail` and `normal` themselves.
    #[serde(default)]
    pub values: BTreeMap<String, Asks>,
    /// Where the target load (kW) is, when the feed says it.
    #[serde(default)]
    pub target: Option<String>,
    /// The target load (kW) when the feed does not say it.
    #[serde(default)]
    pub target_kw: Option<f64>,
    /// Where the deadline (RFC 3339) is, when the feed says it.
    #[serde(default)]
    pub deadline: Option<String>,
    /// Otherwise the deadline is this long after the curtailment is first seen.
    #[serde(default = "default_lead", with = "humantime_serde")]
    pub lead: Duration,
    /// Where the feed's own event id is; without one, an id is made from what the feed says.
    #[serde(default)]
    pub event_id: Option<String>,
    /// Where the price (per MWh) is, for a price feed (text: the line itself).
    #[serde(default)]
    pub price: Option<String>,
}

fn default_lead() -> Duration {
    Duration::from_secs(600)
}

/// What one poll of a mapped feed said.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// What it asks (a price feed: `None`).
    pub asks: Option<Asks>,
    /// The target, kW (a curtailment).
    pub target_kw: Option<f64>,
    /// The deadline, when the feed gives one.
    pub deadline: Option<DateTime<Utc>>,
    /// The feed's event id, when it gives one.
    pub event_id: Option<String>,
    /// The price, per MWh (a price feed).
    pub price_per_mwh: Option<f64>,
}

impl Mapped {
    /// An id for this reading when the feed gives none: the same words give the same id, so an
    /// unchanged feed is one event however often it is polled.
    pub fn made_id(&self) -> String {
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}",
            self.asks, self.target_kw, self.deadline, self.price_per_mwh
        );
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("feed-{h:016x}")
    }
}

impl FeedMap {
    /// Checks the map for a feed that gives signals (`price` false) or prices; the key is the
    /// field's, relative to the map (empty for the map as a whole), for the caller to put
    /// [`Invalid::under`] the map's own key.
    pub fn validate(&self, price: bool) -> Checked {
        let located = |field: &str, at: &Option<String>| -> Checked {
            match (self.format, at) {
                (FeedFormat::Json, Some(p)) if !p.is_empty() && !p.starts_with('/') => {
                    Err(Invalid::new(
                        field,
                        format!("{p:?} is not a JSON pointer (it starts with /)"),
                    ))
                }
                (FeedFormat::Csv, Some(c)) if c.trim().is_empty() => {
                    Err(Invalid::new(field, "an empty column name"))
                }
                _ => Ok(()),
            }
        };
        for (field, at) in [
            ("signal", &self.signal),
            ("target", &self.target),
            ("deadline", &self.deadline),
            ("event_id", &self.event_id),
            ("price", &self.price),
        ] {
            located(field, at)?;
            check(
                self.format != FeedFormat::Text || at.is_none(),
                field,
                "a text feed is one line with no fields (use target_kw and lead)",
            )?;
        }
        let needs = |field: &str, at: &Option<String>| {
            let place = if self.format == FeedFormat::Json {
                "JSON pointer for a JSON"
            } else {
                "column for a CSV"
            };
            check(
                self.format == FeedFormat::Text || at.is_some(),
                field,
                format!("say where the feed's {field} is (a {place} feed)"),
            )
        };
        if price {
            return needs("price", &self.price);
        }
        needs("signal", &self.signal)?;
        check(
            self.target.is_some() || self.target_kw.is_some(),
            "",
            "a signal feed needs `target` (where the feed says the target kW) or `target_kw`",
        )?;
        if let Some(kw) = self.target_kw {
            check(
                kw.is_finite() && (0.0..=MAX_TARGET_KW).contains(&kw),
                "target_kw",
                format!("{kw} is not a load in kW"),
            )?;
        }
        check(
            !self.lead.is_zero() && self.lead <= MAX_LEAD,
            "lead",
            "must be from 1s to 24h",
        )?;
        for word in self.values.keys() {
            check(
                !word.trim().is_empty() && word.len() <= 256,
                "values",
                format!("{word:?} is not a word a feed sends"),
            )?;
        }
        Ok(())
    }
}

/// Reads one body of a feed mapped by `map` (`price`: a price feed).
pub fn read(map: &FeedMap, price: bool, body: &[u8]) -> Result<Mapped, DeviceError> {
    let fields = Fields::parse(map.format, body)?;
    let get = |at: &Option<String>| at.as_deref().and_then(|p| fields.get(p));
    if price {
        let text = fields
            .get_or_line(map.price.as_deref())
            .ok_or_else(|| missing("price", body))?;
        let value = number(&Value::String(text.clone()))
            .ok_or_else(|| DeviceError::garbage(format!("price {text:?} is not a number"), body))?;
        let price = in_range(
            "price",
            value,
            -MAX_ABS_PRICE_PER_MWH,
            MAX_ABS_PRICE_PER_MWH,
        )?;
        return Ok(Mapped {
            asks: None,
            target_kw: None,
            deadline: None,
            event_id: get(&map.event_id),
            price_per_mwh: Some(price),
        });
    }
    let word = fields
        .get_or_line(map.signal.as_deref())
        .ok_or_else(|| missing("signal", body))?;
    let asks = asks(map, &word).ok_or_else(|| {
        DeviceError::garbage(
            format!("the feed said {word:?}, which `values` does not map"),
            body,
        )
    })?;
    let (target_kw, deadline) = match asks {
        Asks::Normal => (None, None),
        Asks::Curtail => {
            let target = match get(&map.target) {
                Some(text) => Some(number(&Value::String(text.clone())).ok_or_else(|| {
                    DeviceError::garbage(format!("target {text:?} is not a number"), body)
                })?),
                None => map.target_kw,
            }
            .ok_or_else(|| missing("target", body))?;
            let target = in_range("target", target, 0.0, MAX_TARGET_KW)?;
            let deadline = match get(&map.deadline) {
                Some(text) => Some(
                    DateTime::parse_from_rfc3339(text.trim())
                        .map_err(|e| {
                            DeviceError::garbage(
                                format!("deadline {text:?} is not an RFC 3339 time: {e}"),
                                body,
                            )
                        })?
                        .with_timezone(&Utc),
                ),
                None => None,
            };
            (Some(target), deadline)
        }
    };
    let event_id = get(&map.event_id);
    if let Some(id) = &event_id {
        adit_schemas::validate::check_text("event_id", id, adit_schemas::events::MAX_ID_BYTES)
            .map_err(|e| DeviceError::garbage(e.to_string(), body))?;
    }
    Ok(Mapped {
        asks: Some(asks),
        target_kw,
        deadline,
        event_id,
        price_per_mwh: None,
    })
}

/// What `word` asks, by `map.values` (case-insensitive), or the words themselves.
fn asks(map: &FeedMap, word: &str) -> Option<Asks> {
    let word = word.trim();
    if map.values.is_empty() {
        return match word.to_ascii_lowercase().as_str() {
            "curtail" => Some(Asks::Curtail),
            "normal" => Some(Asks::Normal),
            _ => None,
        };
    }
    map.values
        .iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(word))
        .map(|(_, v)| *v)
}

fn missing(field: &str, body: &[u8]) -> DeviceError {
    DeviceError::garbage(
        format!("the feed's {field} is not where the map says"),
        body,
    )
}

/// A parsed body, read field by field.
enum Fields {
    /// A JSON document.
    Json(Value),
    /// A CSV header and its last row.
    Csv(BTreeMap<String, String>),
    /// The first non-empty line.
    Line(String),
}

impl Fields {
    fn parse(format: FeedFormat, body: &[u8]) -> Result<Self, DeviceError> {
        match format {
            FeedFormat::Json => Ok(Self::Json(decode_json(body)?)),
            FeedFormat::Text => {
                let text = std::str::from_utf8(body)
                    .map_err(|_| DeviceError::garbage("the body is not UTF-8 text", body))?;
                let line = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .ok_or_else(|| DeviceError::garbage("the body is empty", body))?;
                Ok(Self::Line(line.to_string()))
            }
            FeedFormat::Csv => Self::last_row(body),
        }
    }

    /// A CSV body's header and last row, by column name.
    fn last_row(body: &[u8]) -> Result<Self, DeviceError> {
        let bad =
            |e: csv::Error| DeviceError::garbage(format!("the CSV body is malformed: {e}"), body);
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(body);
        let header: Vec<String> = reader
            .headers()
            .map_err(bad)?
            .iter()
            .map(str::to_string)
            .collect();
        if header.iter().all(String::is_empty) {
            return Err(DeviceError::garbage("the CSV body is empty", body));
        }
        let mut last = None;
        for row in reader.records() {
            let row = row.map_err(bad)?;
            if row.iter().any(|c| !c.is_empty()) {
                last = Some(row);
            }
        }
        let row = last.ok_or_else(|| DeviceError::garbage("the CSV body has no rows", body))?;
        Ok(Self::Csv(
            header
                .into_iter()
                .zip(row.iter().map(str::to_string))
                .collect(),
        ))
    }

    /// The text at `at` (a pointer or a column), `None` when the body has nothing there.
    fn get(&self, at: &str) -> Option<String> {
        match self {
            Self::Json(v) => v.pointer(at).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }),
            Self::Csv(row) => row.get(at).filter(|c| !c.is_empty()).cloned(),
            // A line has no fields (`validate` refuses a text map that names one).
            Self::Line(_) => None,
        }
    }

    /// The text at `at`, or (a text body) the line itself.
    fn get_or_line(&self, at: Option<&str>) -> Option<String> {
        match (self, at) {
            (Self::Line(line), _) => Some(line.clone()),
            (_, Some(at)) => self.get(at),
            (_, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(format: FeedFormat) -> FeedMap {
        FeedMap {
            format,
            signal: None,
            values: BTreeMap::new(),
            target: None,
            target_kw: Some(15.0),
            deadline: None,
            lead: default_lead(),
            event_id: None,
            price: None,
        }
    }

    #[test]
    fn a_plain_text_power_signal_is_mapped_by_its_words() {
        let m = FeedMap {
            values: BTreeMap::from([
                ("CURTAIL".into(), Asks::Curtail),
                ("1".into(), Asks::Curtail),
                ("NORMAL".into(), Asks::Normal),
            ]),
            ..map(FeedFormat::Text)
        };
        assert!(m.validate(false).is_ok());
        let curtail = read(&m, false, b"  curtail \n").unwrap();
        assert_eq!(curtail.asks, Some(Asks::Curtail));
        assert_eq!(curtail.target_kw, Some(15.0), "the fixed target");
        assert_eq!(read(&m, false, b"1").unwrap().asks, Some(Asks::Curtail));
        let normal = read(&m, false, b"NORMAL").unwrap();
        assert_eq!((normal.asks, normal.target_kw), (Some(Asks::Normal), None));
        assert_eq!(
            curtail.made_id(),
            read(&m, false, b"CURTAIL").unwrap().made_id()
        );
        assert_ne!(curtail.made_id(), normal.made_id());
        let unknown = read(&m, false, b"PEAK").unwrap_err().to_string();
        assert!(unknown.contains("\"PEAK\""), "{unknown}");
        assert!(read(&m, false, b"\n \n").is_err(), "empty");
        assert!(read(&m, false, &[0xff, 0xfe]).is_err(), "not text");
    }

    #[test]
    fn a_json_feed_is_read_at_its_pointers() {
        let m = FeedMap {
            signal: Some("/event/state".into()),
            values: BTreeMap::from([("shed".into(), Asks::Curtail), ("ok".into(), Asks::Normal)]),
            target: Some("/event/limit_kw".into()),
            target_kw: None,
            deadline: Some("/event/by".into()),
            event_id: Some("/event/id".into()),
            ..map(FeedFormat::Json)
        };
        assert!(m.validate(false).is_ok());
        let body = br#"{"event":{"id":"E-7","state":"SHED","limit_kw":"12.5","by":"2026-11-24T18:00:00Z"}}"#;
        let got = read(&m, false, body).unwrap();
        assert_eq!(got.asks, Some(Asks::Curtail));
        assert_eq!(got.target_kw, Some(12.5));
        assert_eq!(got.event_id.as_deref(), Some("E-7"));
        assert_eq!(got.deadline, Some("2026-11-24T18:00:00Z".parse().unwrap()));
        let no_target = br#"{"event":{"id":"E-8","state":"shed"}}"#;
        assert!(
            read(&m, false, no_target).is_err(),
            "a curtailment without a target"
        );
        let bad_target = br#"{"event":{"state":"shed","limit_kw":-4}}"#;
        assert!(matches!(
            read(&m, false, bad_target),
            Err(DeviceError::OutOfRange { .. })
        ));
        let bad_deadline = br#"{"event":{"state":"shed","limit_kw":4,"by":"tomorrow"}}"#;
        assert!(read(&m, false, bad_deadline).is_err());
        assert!(read(&m, false, b"{\"event\":").is_err(), "cut off");
    }

    #[test]
    fn a_csv_feed_is_read_from_its_last_row() {
        let m = FeedMap {
            signal: Some("status".into()),
            target: Some("target_kw".into()),
            target_kw: None,
            ..map(FeedFormat::Csv)
        };
        let body =
            b"time,status,target_kw\n2026-11-24T10:00Z,normal,\n2026-11-24T10:05Z,curtail,20\n";
        let got = read(&m, false, body).unwrap();
        assert_eq!((got.asks, got.target_kw), (Some(Asks::Curtail), Some(20.0)));
        assert!(read(&m, false, b"time,status\n").is_err(), "no rows");
        let prices = FeedMap {
            price: Some("price".into()),
            ..map(FeedFormat::Csv)
        };
        assert!(prices.validate(true).is_ok());
        let p = read(&prices, true, b"interval,price\n1,41.5\n2,\"-3.25\"\n").unwrap();
        assert_eq!(p.price_per_mwh, Some(-3.25));
        assert!(read(&prices, true, b"interval,price\n1,cheap\n").is_err());
        let quoted = read(
            &m,
            false,
            b"note,status,target_kw\n\"shed, now\",curtail,7\n",
        )
        .unwrap();
        assert_eq!(quoted.target_kw, Some(7.0), "a quoted comma is one cell");
        assert!(read(&m, false, &[0xff, b'\n', b'1']).is_err(), "not UTF-8");
    }

    #[test]
    fn maps_that_cannot_work_are_refused_by_key() {
        let no_signal = map(FeedFormat::Json);
        assert!(
            no_signal
                .validate(false)
                .unwrap_err()
                .under("k")
                .to_string()
                .starts_with("k.signal:")
        );
        let not_pointer = FeedMap {
            signal: Some("state".into()),
            ..map(FeedFormat::Json)
        };
        assert!(
            not_pointer
                .validate(false)
                .unwrap_err()
                .reason
                .contains("JSON pointer")
        );
        let no_target = FeedMap {
            target_kw: None,
            ..map(FeedFormat::Text)
        };
        assert!(
            no_target
                .validate(false)
                .unwrap_err()
                .reason
                .contains("target")
        );
        let zero_lead = FeedMap {
            lead: Duration::ZERO,
            ..map(FeedFormat::Text)
        };
        assert!(
            zero_lead
                .validate(false)
                .unwrap_err()
                .under("k")
                .to_string()
                .starts_with("k.lead:")
        );
        assert!(
            map(FeedFormat::Csv)
                .validate(true)
                .unwrap_err()
                .under("k")
                .to_string()
                .starts_with("k.price:")
        );
    }
}
