//! The simulated humidity sensors as MQTT devices: every tick's humidity readings published
//! to a broker, with the topic map that reads them back.
//!
//! Not a family's fake (`Family::fake`): MQTT devices are not polled, they publish to a
//! broker outside adit, which the adapters subscribe to.

use adit_devices::mqtt::{self, MqttError, TopicMap};
use adit_schemas::SensorKind;
use chrono::SecondsFormat;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fake::Latest;

/// The first level of the MQTT topics humidity is published on: `adit-sim/<site>/<sensor>`.
pub const MQTT_TOPIC_PREFIX: &str = "adit-sim";

/// The topic a simulated sensor's readings are published on.
pub(super) fn topic(site: &str, sensor: &str) -> String {
    format!("{MQTT_TOPIC_PREFIX}/{site}/{sensor}")
}

/// The topic map reading what [`publish`] publishes: site and sensor from the topic, the
/// value at `/value`, the time at `ts`.
pub(super) fn topic_map() -> TopicMap {
    TopicMap {
        pattern: format!("{MQTT_TOPIC_PREFIX}/+/+"),
        site: "{1}".into(),
        sensor: "{2}".into(),
        kind: SensorKind::Humidity,
        value: Some("/value".into()),
    }
}

/// Publishes each humidity sensor's readings in `latest`, every tick, with QoS 1 as JSON
/// `{"value":…,"ts":…}` on its [`topic`] at the broker `url` as `client_id`, on `tasks`
/// until `stop`.
pub(super) fn publish(
    url: &str,
    client_id: &str,
    mut latest: watch::Receiver<Latest>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), MqttError> {
    let (client, driver) = mqtt::spawn_publisher(url, client_id, stop.clone())?;
    tasks.spawn(async move {
        if let Err(error) = driver.await {
            tracing::error!(%error, "simulated MQTT publisher failed");
        }
    });
    let stop = stop.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                changed = latest.changed() => if changed.is_err() { break },
            }
            let readings: Vec<(String, Value)> = latest
                .borrow_and_update()
                .sensors
                .iter()
                .filter(|(_, v)| v.kind == SensorKind::Humidity)
                .map(|((site, sensor), v)| {
                    let ts = v.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                    (topic(site, sensor), json!({"value": v.value, "ts": ts}))
                })
                .collect();
            for (topic, payload) in readings {
                if let Err(error) = mqtt::publish_reading(&client, &topic, &payload).await {
                    tracing::error!(%error, "simulated MQTT publishing stopped");
                    return;
                }
            }
        }
    });
    Ok(())
}
