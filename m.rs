//! MQTT ingest for sensors that push: subscribe to a broker and turn each message into a
//! [`SensorReading`].
//!
//! Layers, from the bottom:
//! - topic patterns and templates ([`TopicMap`]): an MQTT filter with `+` wildcards, and
//!   `{n}` placeholders that take the n-th wildcard's value. Pure.
//! - [`map_message`]: (maps, topic, payload, received) → reading, refusal or nothing. Pure: the
//!   whole decoding and validation order is this one function, tested without a broker.
//! - [`subscribe`]: the connection. Subscribes with QoS 1 to every pattern after each (clean
//!   session) connect, hands every outcome to a channel, reconnects with capped exponential
//!   backoff, and stops on shutdown or when the receiver is gone.
//! - [`spawn_publisher`] and [`publish_reading`]: the pushing side, for the simulator and tests.
//!
//! Delivery is at least once between broker and client only within one session: a message is
//! acknowledged to the broker when it is read, and the session is clean, so messages published
//! while the client is disconnected are not delivered. Duplicates (QoS 1 redelivery) keep their
//! payload `ts`, so the reading's dedupe id drops them downstream.

use adit_retry::Backoff;
use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use adit_schemas::names::is_token;
use adit_schemas::{Event as _, SensorKind, SensorReading, ValidationPolicy};
use chrono::{DateTime, Utc};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The port of an `mqtt://` URL that names none.
const DEFAULT_PORT: u16 = 1883;
/// How often the client pings an idle broker; a dead broker is noticed within 1.5× this.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Largest MQTT packet accepted or sent, bytes. A larger one breaks the connection, so this is
/// far above any sensor payload.
const MAX_PACKET_BYTES: usize = 256 * 1024;
/// Requests (subscribe, publish, ack) queued between a client handle and its event loop.
const REQUEST_CAPACITY: usize = 64;
/// Waits between reconnection attempts: 100 ms doubling to 5 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How long shutdown waits for the DISCONNECT packet to go out.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Characters of a refused payload kept in [`MappedError::excerpt`].
const EXCERPT_CHARS: usize = 64;

/// How messages on matching topics become sensor readings.
///
/// `site` and `sensor` are templates: `{1}` is the value of the pattern's first `+` wildcard,
/// `{2}` the second, and anything else is literal (`"north"`, `"rack-{1}"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMap {
    /// MQTT topic filter with `+` wildcards, e.g. `farm/+/sensors/+` (`#` is not supported: a
    /// site or sensor is one level).
    pub pattern: String,
    /// Template for the reading's site, e.g. `{1}`.
    pub site: String,
    /// Template for the reading's sensor id, e.g. `{2}`.
    pub sensor: String,
    /// What the sensors on these topics measure.
    pub kind: SensorKind,
    /// JSON pointer to the value in a JSON payload, e.g. `/temperature`; `None` when the payload
    /// is a bare number such as `21.5`.
    pub value: Option<String>,
}

impl TopicMap {
    /// Checks the pattern, the templates and the pointer; the key is the field's, relative to
    /// the map.
    pub fn validate(&self) -> Checked {
        let wildcards = pattern_wildcards(&self.pattern)
            .map_err(|r| Invalid::new("pattern", format!("{:?}: {r}", self.pattern)))?;
        for (field, template) in [("site", &self.site), ("sensor", &self.sensor)] {
            check_template(template, wildcards)
                .map_err(|r| Invalid::new(field, format!("{template:?}: {r}")))?;
        }
        if let Some(pointer) = &self.value {
            check(
                pointer.starts_with('/'),
                "value",
                format!(
                    "{pointer:?}: a JSON pointer starts with / (leave value unset for bare-number payloads)"
                ),
            )?;
        }
        Ok(())
    }

    /// The reading `payload` on `topic` stands for; `captures` are the wildcard values.
    fn reading(
        &self,
        captures: &[&str],
        payload: &[u8],
        received: DateTime<Utc>,
    ) -> Result<SensorReading, String> {
        let site = render(&self.site, captures).map_err(|r| format!("site template: {r}"))?;
        let sensor = render(&self.sensor, captures).map_err(|r| format!("sensor template: {r}"))?;
        let (value, ts) = match &self.value {
            None => {
                let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8 text")?;
                let value = text.trim().parse::<f64>().map_err(|_| {
                    "payload is not a bare number (set value to a JSON pointer for JSON payloads)"
                })?;
                (value, received)
            }
            Some(pointer) => {
                let json: serde_json::Value = serde_json::from_slice(payload)
                    .map_err(|e| format!("payload is not JSON: {e}"))?;
                let value = json
                    .pointer(pointer)
                    .ok_or_else(|| format!("payload has no {pointer}"))?;
                let value = value
                    .as_f64()
                    .ok_or_else(|| format!("{pointer} is {value}, not a number"))?;
                let ts = match json.get("ts") {
                    None | Some(serde_json::Value::Null) => received,
                    Some(ts) => parse_ts(ts)?,
                };
                (value, ts)
            }
        };
        let reading = SensorReading {
            site,
            sensor,
            kind: self.kind,
            value,
            ts,
        };
        reading
            .validate(&ValidationPolicy::default(), received)
            .map_err(|e| e.reason)?;
        Ok(reading)
    }
}

/// A message that matched a [`TopicMap`] but is not a valid reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MQTT message on {topic}: {reason} (payload {excerpt:?})")]
pub struct MappedError {
    /// What is wrong, naming the field.
    pub reason: String,
    /// The topic it arrived on.
    pub topic: String,
    /// The start of the payload (lossy UTF-8, at most 64 characters and an ellipsis).
    pub excerpt: String,
}

/// What can stop the MQTT adapter. Connection failures are not here: they are retried.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker URL or client id cannot be used. Permanent: fix the config.
    #[error("MQTT broker {url:?}: {reason}")]
    Config {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A topic map is invalid. Permanent: fix the config.
    #[error("MQTT topic map {pattern:?}: {reason}")]
    Map {
        /// The map's pattern.
        pattern: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The broker refused a subscription (e.g. by ACL). Permanent until the broker changes.
    #[error("MQTT broker {url} refused the subscription to {pattern:?}")]
    Refused {
        /// The broker.
        url: String,
        /// The refused filter.
        pattern: String,
    },
    /// The client's event loop is gone, or the request was invalid (e.g. a wildcard in a
    /// publish topic).
    #[error("MQTT {action} on {topic:?}: {source}")]
    Client {
        /// What was being asked: `publish` or `subscribe`.
        action: &'static str,
        /// The topic or filter.
        topic: String,
        /// What the client said.
        #[source]
        source: Box<rumqttc::ClientError>,
    },
}

/// Maps one message with the first map whose pattern matches `topic`.
///
/// `Ok(None)` when no map matches. Otherwise the value comes from the payload (a bare number,
/// or the map's JSON pointer), and `ts` from the JSON payload's top-level `ts` (RFC 3339 text or
/// unix seconds) when it has one, else `received`. The reading is then checked like any
/// [`SensorReading`] under the default [`ValidationPolicy`] with `received` as now.
pub fn map_message(
    maps: &[TopicMap],
    topic: &str,
    payload: &[u8],
    received: DateTime<Utc>,
) -> Result<Option<SensorReading>, MappedError> {
    let Some((map, captures)) = maps
        .iter()
        .find_map(|m| match_topic(&m.pattern, topic).map(|c| (m, c)))
    else {
        return Ok(None);
    };
    map.reading(&captures, payload, received)
        .map(Some)
        .map_err(|reason| MappedError {
            reason,
            topic: topic.to_string(),
            excerpt: excerpt(payload),
        })
}

/// Connection options for `url` (`mqtt://host[:port]`, `tcp://…` or `host[:port]`; port 1883
/// by default) as `client_id`, with a clean session. Only plain TCP for now.
pub fn client_options(url: &str, client_id: &str) -> Result<MqttOptions, MqttError> {
    let config = |reason: &str| MqttError::Config {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = match url.split_once("://") {
        None => url,
        Some(("mqtt" | "tcp", rest)) => rest,
        Some(("mqtts" | "ssl" | "ws" | "wss", _)) => {
            return Err(config(
                "only plain mqtt:// is supported (no TLS or websockets yet)",
            ));
        }
        Some(_) => return Err(config("the scheme must be mqtt://")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(config(
            "expected mqtt://host[:port], with no path, query or credentials",
        ));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| config("unclosed [ in the host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(config("the host is empty"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| config("the port must be a number in 1..=65535"))?,
    };
    if client_id.is_empty() {
        return Err(config("the client id is empty"));
    }
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    Ok(options)
}

/// Subscribes to every map's pattern at `url` and sends each matching message's outcome on
/// `tx`, until `shutdown` fires (`Ok`) or the receiver is dropped (`Ok`).
///
/// Connection failures are retried forever with capped exponential backoff (logged as
/// warnings); after each reconnect the subscriptions are made again, since the session is
/// clean. Errors are permanent: an invalid map or URL, or a subscription the broker refused.
/// Messages that match no map are dropped. `client_id` must be unique on the broker: a second
/// client with the same id disconnects the first.
pub async fn subscribe(
    url: &str,
    client_id: &str,
    maps: Vec<TopicMap>,
    tx: mpsc::Sender<Result<SensorReading, MappedError>>,
    shutdown: CancellationToken,
) -> Result<(), MqttError> {
    for map in &maps {
        map.validate().map_err(|invalid| MqttError::Map {
            pattern: map.pattern.clone(),
            reason: invalid.to_string(),
        })?;
    }
    let options = client_options(url, client_id)?;
    let mut filters: Vec<SubscribeFilter> = Vec::new();
    for map in &maps {
        if !filters.iter().any(|f| f.path == map.pattern) {
            filters.push(SubscribeFilter::new(map.pattern.clone(), QoS::AtLeastOnce));
        }
    }
    let (client, mut events) = AsyncClient::new(options, REQUEST_CAPACITY);
    let mut backoff = RECONNECT.waits();
    loop {
        let event = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            event = events.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if !filters.is_empty() {
                    client
                        .try_subscribe_many(filters.clone())
                        .map_err(|source| MqttError::Client {
                            action: "subscribe",
                            topic: filters
                                .iter()
                                .map(|f| f.path.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            source: Box::new(source),
                        })?;
                }
                tracing::info!(
                    url,
                    client_id,
                    filters = filters.len(),
                    "MQTT connected, subscribing"
                );
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for (filter, code) in filters.iter().zip(&ack.return_codes) {
                    if *code == SubscribeReasonCode::Failure {
                        return Err(MqttError::Refused {
                            url: url.to_string(),
                            pattern: filter.path.clone(),
                        });
                    }
                }
                backoff.reset();
                tracing::info!(url, client_id, "MQTT subscribed");
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let outcome = match map_message(&maps, &publish.topic, &publish.payload, Utc::now())
                {
                    Ok(None) => {
                        tracing::debug!(topic = %publish.topic, "no MQTT topic map matches; dropped");
                        continue;
                    }
                    Ok(Some(reading)) => Ok(reading),
                    Err(err) => Err(err),
                };
                let sent = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    sent = tx.send(outcome) => sent,
                };
                if sent.is_err() {
                    tracing::info!(url, client_id, "MQTT receiver gone; unsubscribing");
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => {
                let delay = backoff.next_wait();
                tracing::warn!(url, client_id, error = %err, retry_in = ?delay, "MQTT connection failed; reconnecting");
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    disconnect(&client, &mut events).await;
    Ok(())
}

/// A client for publishing to `url`, with its event loop driven on a spawned task that
/// reconnects with capped exponential backoff until `shutdown` fires or every clone of the
/// client is dropped. Publishes queued while the connection is down may be lost (clean session).
pub fn spawn_publisher(
    url: &str,
    client_id: &str,
    shutdown: CancellationToken,
) -> Result<(AsyncClient, tokio::task::JoinHandle<()>), MqttError> {
    let options = client_options(url, client_id)?;
    let (client, mut events) = AsyncClient::new(options, REQUEST_CAPACITY);
    let url = url.to_string();
    let driver = client.clone();
    let task = tokio::spawn(async move {
        let mut backoff = RECONNECT.waits();
        loop {
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                event = events.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => backoff.reset(),
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => return,
                Err(err) => {
                    let delay = backoff.next_wait();
                    tracing::warn!(url, error = %err, retry_in = ?delay, "MQTT publisher connection failed; reconnecting");
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        disconnect(&driver, &mut events).await;
    });
    Ok((client, task))
}

/// Publishes `payload` as JSON on `topic` with QoS 1, not retained. Returns once the client has
/// queued it; its event loop sends it and resends it until the broker acknowledges it.
pub async fn publish_reading(
    client: &AsyncClient,
    topic: &str,
    payload: &serde_json::Value,
) -> Result<(), MqttError> {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
        .await
        .map_err(|source| MqttError::Client {
            action: "publish",
            topic: topic.to_string(),
            source: Box::new(source),
        })
}

/// Sends DISCONNECT if connected, waiting at most [`DISCONNECT_TIMEOUT`]; best effort.
async fn disconnect(client: &AsyncClient, events: &mut EventLoop) {
    if events.network.is_none() || client.try_disconnect().is_err() {
        return;
    }
    let sent = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        while let Ok(event) = events.poll().await {
            if event == Event::Outgoing(Outgoing::Disconnect) {
                break;
            }
        }
    })
    .await;
    if sent.is_err() {
        tracing::debug!("MQTT DISCONNECT not sent within {DISCONNECT_TIMEOUT:?}; closing anyway");
    }
}

/// The number of `+` wildcards in `pattern`, or why it is not a supported filter.
fn pattern_wildcards(pattern: &str) -> Result<usize, String> {
    if pattern.is_empty() {
        return Err("is empty".into());
    }
    if pattern.contains('\0') {
        return Err("contains a NUL character".into());
    }
    let mut wildcards = 0;
    for level in pattern.split('/') {
        if level.contains('#') {
            return Err("# is not supported; use + for each level".into());
        }
        if level == "+" {
            wildcards += 1;
        } else if level.contains('+') {
            return Err(format!("level {level:?}: + must be a whole level"));
        }
    }
    Ok(wildcards)
}

/// The values of `pattern`'s `+` levels in `topic`, or `None` when `topic` does not match.
/// As MQTT requires, a leading wildcard does not match topics starting with `$`.
fn match_topic<'t>(pattern: &str, topic: &'t str) -> Option<Vec<&'t str>> {
    if topic.starts_with('$') && pattern.starts_with('+') {
        return None;
    }
    let mut captures = Vec::new();
    let mut levels = topic.split('/');
    for wanted in pattern.split('/') {
        let level = levels.next()?;
        if wanted == "+" {
            captures.push(level);
        } else if wanted != level {
            return None;
        }
    }
    levels.next().is_none().then_some(captures)
}

/// One part of a site or sensor template.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    /// Text taken as is.
    Literal(&'a str),
    /// `{n}`: the n-th wildcard's value, from 1.
    Wildcard(usize),
}

/// Splits a template into literal text and `{n}` placeholders.
fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            pieces.push(Piece::Literal(rest));
            break;
        };
        let (literal, after) = rest.split_at(open);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let close = after.find('}').ok_or("unclosed {")?;
        let index = after[1..close]
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{} is not a wildcard number like {{1}}", &after[..=close]))?;
        pieces.push(Piece::Wildcard(index));
        rest = &after[close + 1..];
    }
    if pieces
        .iter()
        .any(|p| matches!(p, Piece::Literal(l) if l.contains('}')))
    {
        return Err("} without {".into());
    }
    Ok(pieces)
}

/// Checks that `template` parses, refers only to existing wildcards and can make a token.
fn check_template(template: &str, wildcards: usize) -> Result<(), String> {
    if template.is_empty() {
        return Err("is empty".into());
    }
    for piece in parse_template(template)? {
        match piece {
            Piece::Wildcard(n) if n > wildcards => {
                return Err(format!(
                    "{{{n}}} but the pattern has {wildcards} + wildcard(s)"
                ));
            }
            Piece::Wildcard(_) => {}
            Piece::Literal(text) => {
                if !is_token(text) {
                    return Err(format!(
                        "{text:?} must be 1-64 characters of A-Z a-z 0-9 _ -"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `template` with each `{n}` replaced by `captures[n - 1]`.
fn render(template: &str, captures: &[&str]) -> Result<String, String> {
    let mut out = String::new();
    for piece in parse_template(template)? {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Wildcard(n) => out.push_str(captures.get(n - 1).ok_or_else(|| {
                format!("{{{n}}} but the topic has {} wildcard(s)", captures.len())
            })?),
        }
    }
    Ok(out)
}

/// A payload `ts`: RFC 3339 text, or unix seconds (integer or fractional).
fn parse_ts(ts: &serde_json::Value) -> Result<DateTime<Utc>, String> {
    let parsed = match ts {
        serde_json::Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(secs) => DateTime::from_timestamp(secs, 0),
            None => n
                .as_f64()
                .filter(|secs| secs.is_finite())
                .and_then(|secs| DateTime::from_timestamp_micros((secs * 1e6).round() as i64)),
        },
        _ => None,
    };
    parsed.ok_or_else(|| format!("ts {ts} is neither an RFC 3339 time nor unix seconds"))
}

/// The start of `payload` as text, for error messages.
fn excerpt(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn temperature_map() -> TopicMap {
        TopicMap {
            pattern: "farm/+/sensors/+".into(),
            site: "{1}".into(),
            sensor: "{2}".into(),
            kind: SensorKind::Temperature,
            value: Some("/temperature".into()),
        }
    }

    fn humidity_map() -> TopicMap {
        TopicMap {
            pattern: "farm/+/humidity/+".into(),
            site: "site-{1}".into(),
            sensor: "h{2}".into(),
            kind: SensorKind::Humidity,
            value: None,
        }
    }

    fn maps() -> Vec<TopicMap> {
        vec![temperature_map(), humidity_map()]
    }

    fn mapped(topic: &str, payload: &str) -> Result<Option<SensorReading>, MappedError> {
        map_message(&maps(), topic, payload.as_bytes(), now())
    }

    fn refused(topic: &str, payload: &str) -> MappedError {
        match mapped(topic, payload) {
            Err(err) => err,
            other => panic!("{topic} {payload:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn patterns_match_whole_levels_and_capture_wildcards() {
        let cases: &[(&str, &str, Option<&[&str]>)] = &[
            (
                "farm/+/sensors/+",
                "farm/north/sensors/t1",
                Some(&["north", "t1"]),
            ),
            ("farm/+/sensors/+", "farm/north/sensors", None),
            ("farm/+/sensors/+", "farm/north/sensors/t1/extra", None),
            ("farm/+/sensors/+", "farm/north/fans/t1", None),
            ("farm/+/sensors/+", "Farm/north/sensors/t1", None),
            ("farm/north/t", "farm/north/t", Some(&[])),
            ("farm/+/t", "farm//t", Some(&[""])),
            ("+", "a", Some(&["a"])),
            ("+", "a/b", None),
            ("+/x", "$SYS/x", None),
            ("$SYS/+", "$SYS/x", Some(&["x"])),
        ];
        for (pattern, topic, want) in cases {
            assert_eq!(
                match_topic(pattern, topic).as_deref(),
                *want,
                "{pattern} against {topic}"
            );
        }
    }

    #[test]
    fn templates_take_wildcards_by_position() {
        assert_eq!(render("{1}", &["a", "b"]).unwrap(), "a");
        assert_eq!(render("rack-{2}-{1}", &["a", "b"]).unwrap(), "rack-b-a");
        assert_eq!(render("north", &["a"]).unwrap(), "north");
        assert!(render("{3}", &["a", "b"]).is_err());
        assert_eq!(
            parse_template("x{12}").unwrap(),
            vec![Piece::Literal("x"), Piece::Wildcard(12)]
        );
        for bad in ["{", "{0}", "{a}", "{}", "a}", "{1}}"] {
            assert!(parse_template(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(temperature_map().validate(), Ok(()));
        assert_eq!(humidity_map().validate(), Ok(()));
        let cases: Vec<(TopicMap, &str)> = vec![
            (
                TopicMap {
                    pattern: String::new(),
                    ..temperature_map()
                },
                "pattern",
            ),
            (
                TopicMap {
                    pattern: "farm/#".into(),
                    ..temperature_map()
                },
                "pattern",
            ),
            (
                TopicMap {
                    pattern: "farm/a+/x/+".into(),
                    ..temperature_map()
                },
                "pattern",
            ),
            (
                TopicMap {
                    site: "{3}".into(),
                    ..temperature_map()
                },
                "site",
            ),
            (
                TopicMap {
                    site: "bad site".into(),
                    ..temperature_map()
                },
                "site",
            ),
            (
                TopicMap {
                    sensor: String::new(),
                    ..temperature_map()
                },
                "sensor",
            ),
            (
                TopicMap {
                    sensor: "{2".into(),
                    ..temperature_map()
                },
                "sensor",
            ),
            (
                TopicMap {
                    value: Some("temperature".into()),
                    ..temperature_map()
                },
                "value",
            ),
        ];
        for (map, field) in cases {
            let err = map
                .validate()
                .expect_err(&format!("{map:?} should be invalid"));
            assert_eq!(err.key, field, "{err:?} should name {field}");
        }
    }

    #[test]
    fn json_payloads_take_value_by_pointer_and_ts_from_the_payload() {
        let ts = Utc.with_ymd_and_hms(2026, 3, 1, 11, 59, 30).unwrap();
        let cases = [
            (
                r#"{"temperature": 21.5, "ts": "2026-03-01T11:59:30Z"}"#,
                21.5,
                ts,
            ),
            (
                r#"{"temperature": 21, "ts": "2026-03-01T12:59:30+01:00"}"#,
                21.0,
                ts,
            ),
            (r#"{"temperature": -4.25, "ts": 1772366370}"#, -4.25, ts),
            (
                r#"{"temperature": 30, "ts": 1772366370.25}"#,
                30.0,
                ts + chrono::Duration::milliseconds(250),
            ),
            (r#"{"temperature": 30, "ts": null}"#, 30.0, now()),
            (r#"{"temperature": 30, "humidity": 99}"#, 30.0, now()),
        ];
        for (payload, value, ts) in cases {
            let reading = mapped("farm/north/sensors/t1", payload).unwrap().unwrap();
            assert_eq!(
                reading,
                SensorReading {
                    site: "north".into(),
                    sensor: "t1".into(),
                    kind: SensorKind::Temperature,
                    value,
                    ts,
                },
                "{payload}"
            );
        }
    }

    #[test]
    fn nested_pointers_reach_into_objects_and_arrays() {
        let map = TopicMap {
            value: Some("/readings/1/c".into()),
            ..temperature_map()
        };
        let payload = br#"{"readings": [{"c": 1}, {"c": 19.5}]}"#;
        let reading = map_message(&[map], "farm/a/sensors/b", payload, now())
            .unwrap()
            .unwrap();
        assert_eq!(reading.value, 19.5);
    }

    #[test]
    fn bare_numbers_are_read_at_receive_time() {
        let reading = mapped("farm/south/humidity/7", " 55.5\n").unwrap().unwrap();
        assert_eq!(
            reading,
            SensorReading {
                site: "site-south".into(),
                sensor: "h7".into(),
                kind: SensorKind::Humidity,
                value: 55.5,
                ts: now(),
            }
        );
    }

    #[test]
    fn unmatched_topics_are_not_readings() {
        assert_eq!(mapped("farm/north/fans/f1", "1200"), Ok(None));
        assert_eq!(mapped("other", "garbage"), Ok(None));
        assert_eq!(map_message(&[], "farm/a/sensors/b", b"1", now()), Ok(None));
    }

    #[test]
    fn the_first_matching_map_wins() {
        let literal = TopicMap {
            pattern: "farm/north/sensors/+".into(),
            site: "n".into(),
            sensor: "{1}".into(),
            kind: SensorKind::Fan,
            value: None,
        };
        let maps = [literal, temperature_map()];
        let reading = map_message(&maps, "farm/north/sensors/f1", b"1200", now())
            .unwrap()
            .unwrap();
        assert_eq!(
            (reading.site.as_str(), reading.kind),
            ("n", SensorKind::Fan)
        );
        let reading = map_message(
            &maps,
            "farm/south/sensors/t1",
            br#"{"temperature": 1}"#,
            now(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (reading.site.as_str(), reading.kind),
            ("south", SensorKind::Temperature)
        );
    }

    #[test]
    fn bad_payloads_are_refused_with_reason_topic_and_excerpt() {
        let cases = [
            ("farm/a/sensors/t", "not json{", "not JSON"),
            ("farm/a/sensors/t", r#"{"temp": 1}"#, "no /temperature"),
            (
                "farm/a/sensors/t",
                r#"{"temperature": "warm"}"#,
                "not a number",
            ),
            ("farm/a/sensors/t", "21.5", "no /temperature"),
            ("farm/a/sensors/t", r#"{"temperature": 500}"#, "value = 500"),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": "yesterday"}"#,
                "ts",
            ),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": true}"#,
                "ts",
            ),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": 1e300}"#,
                "ts",
            ),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": "2026-03-02T00:00:00Z"}"#,
                "future",
            ),
            (
                "farm/a/sensors/t",
                r#"{"temperature": 20, "ts": 0}"#,
                "past",
            ),
            ("farm/a.b/sensors/t", r#"{"temperature": 20}"#, "site"),
            ("farm/a/humidity/1", "{\"h\": 5}", "bare number"),
            ("farm/a/humidity/1", "101", "value = 101"),
            ("farm/a/humidity/1", "NaN", "finite"),
            ("farm/a/humidity/1", "", "bare number"),
        ];
        for (topic, payload, reason) in cases {
            let err = refused(topic, payload);
            assert!(
                err.reason.contains(reason),
                "{payload:?}: {:?} should mention {reason:?}",
                err.reason
            );
            assert_eq!(err.topic, topic);
            assert_eq!(err.excerpt, payload);
        }
        let err = map_message(&maps(), "farm/a/humidity/1", &[0xff, 0xfe], now()).unwrap_err();
        assert_eq!(
            (err.reason.as_str(), err.excerpt.as_str()),
            ("payload is not UTF-8 text", "\u{fffd}\u{fffd}")
        );
    }

    #[test]
    fn long_payloads_are_cut_in_the_excerpt() {
        let payload = format!("{{\"temperature\": \"{}\"}}", "é".repeat(100));
        let err = refused("farm/a/sensors/t", &payload);
        assert_eq!(err.excerpt.chars().count(), EXCERPT_CHARS + 1);
        assert!(err.excerpt.ends_with('…'));
        assert!(err.to_string().contains("farm/a/sensors/t"));
    }

    #[test]
    fn broker_urls_parse_to_host_and_port() {
        let cases = [
            ("mqtt://127.0.0.1:1884", ("127.0.0.1", 1884)),
            ("tcp://broker.local", ("broker.local", 1883)),
            ("broker:2000", ("broker", 2000)),
            ("mqtt://[::1]:1885/", ("::1", 1885)),
            ("mqtt://[::1]", ("::1", 1883)),
        ];
        for (url, (host, port)) in cases {
            let options = client_options(url, "id").unwrap();
            assert_eq!(options.broker_address(), (host.to_string(), port), "{url}");
            assert!(options.clean_session());
        }
        for url in [
            "mqtts://h:8883",
            "http://h",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://h/path",
            "mqtt://u:p@h",
            "mqtt://[::1",
        ] {
            assert!(
                matches!(client_options(url, "id"), Err(MqttError::Config { .. })),
                "{url} should be refused"
            );
        }
        assert!(client_options("mqtt://h", "").is_err());
    }

    #[tokio::test]
    async fn subscribe_refuses_an_invalid_map_before_connecting() {
        let (tx, _rx) = mpsc::channel(1);
        let map = TopicMap {
            pattern: "farm/#".into(),
            ..temperature_map()
        };
        // Port 9 (discard) on loopback: nothing is contacted, the map is refused first.
        let err = subscribe(
            "mqtt://127.0.0.1:9",
            "t",
            vec![map],
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, MqttError::Map { pattern, reason } if pattern == "farm/#" && reason.starts_with("pattern")),
            "{err}"
        );
    }
}
