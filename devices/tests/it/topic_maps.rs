//! The MQTT topic maps both the broker tests (`mqtt.rs`) and the boundary properties
//! (`hostile_devices`) read messages through.

use adit_devices::mqtt::TopicMap;
use adit_schemas::SensorKind;

/// Temperatures as JSON (`{"temperature": …}`) under `farm/<site>/sensors/<sensor>`.
pub(crate) fn temperatures() -> TopicMap {
    TopicMap {
        pattern: "farm/+/sensors/+".into(),
        site: "{1}".into(),
        sensor: "{2}".into(),
        kind: SensorKind::Temperature,
        value: Some("/temperature".into()),
    }
}

/// Humidity as bare numbers under `farm/<site>/humidity/<sensor>`, read as site
/// `site-<site>` and sensor `h<sensor>` (templates with literal text around the wildcards).
pub(crate) fn humidities() -> TopicMap {
    TopicMap {
        pattern: "farm/+/humidity/+".into(),
        site: "site-{1}".into(),
        sensor: "h{2}".into(),
        kind: SensorKind::Humidity,
        value: None,
    }
}
