//! The connection to a broker: client options from a URL, the subscriber that hands every
//! mapped message to a channel, and the publisher; both reconnect with capped backoff.

use std::time::Duration;

use adit_retry::Backoff;
use adit_schemas::SensorReading;
use chrono::Utc;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::map::{MappedError, TopicMap, map_message};

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
        let Some(event) = before_shutdown(&shutdown, events.poll()).await else {
            break;
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
                let Some(sent) = before_shutdown(&shutdown, tx.send(outcome)).await else {
                    break;
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
                let Some(()) = before_shutdown(&shutdown, sleep(delay)).await else {
                    break;
                };
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
            let Some(event) = before_shutdown(&shutdown, events.poll()).await else {
                break;
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => backoff.reset(),
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => return,
                Err(err) => {
                    let delay = backoff.next_wait();
                    tracing::warn!(url, error = %err, retry_in = ?delay, "MQTT publisher connection failed; reconnecting");
                    let Some(()) = before_shutdown(&shutdown, sleep(delay)).await else {
                        break;
                    };
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

/// `fut`'s output, or `None` once `shutdown` has fired (checked first: it wins a tie).
async fn before_shutdown<T>(
    shutdown: &CancellationToken,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        out = fut => Some(out),
    }
}

/// Sends DISCONNECT if connected, waiting at most [`DISCONNECT_TIMEOUT`]; best effort.
async fn disconnect(client: &AsyncClient, events: &mut EventLoop) {
    if events.network.is_none() || client.try_disconnect().is_err() {
        return;
    }
    let sent = timeout(DISCONNECT_TIMEOUT, async {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            site: "{1}".into(),
            sensor: "{2}".into(),
            kind: adit_schemas::SensorKind::Temperature,
            value: None,
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
