//! IotaWatt power monitors: every meter registered at one IotaWatt (an input each) is read
//! with one `/query` request, averaged over the poll interval.

use std::sync::Arc;
use std::time::Duration;

use adit_schemas::EnergySource;
use adit_schemas::registry::{AdapterKind, RecordKind, RegistryView};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Url;

use super::super::config::AdaptersConfig;
use super::super::device::{Ctx, Device, DeviceKey, Failure, Family, Polled, Targets, fetch};
use super::meters::{self, MeterChannel};
use adit_devices::http_json::parse_iotawatt;

/// The family's name.
const NAME: &str = "iotawatt";

/// IotaWatts, read for their meters.
pub(super) struct Iotawatt;

impl Family for Iotawatt {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Option<(AdapterKind, RecordKind)> {
        Some((AdapterKind::Iotawatt, RecordKind::Meter))
    }

    fn collect(&self, view: &RegistryView, _: &AdaptersConfig, out: &mut Targets) {
        for (key, (url, channels)) in meters::by_device(view, AdapterKind::Iotawatt, NAME, out) {
            out.devices.insert(key, Arc::new(Monitor { url, channels }));
        }
    }
}

/// One IotaWatt: power per input.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Monitor {
    /// Its base URL.
    url: Url,
    /// The inputs registered as meters.
    channels: Vec<MeterChannel>,
}

#[async_trait]
impl Device for Monitor {
    async fn poll(&self, ctx: &Ctx, _: &DeviceKey, at: DateTime<Utc>) -> Result<Polled, Failure> {
        let mut columns: Vec<String> = Vec::new();
        for c in &self.channels {
            if !columns.contains(&c.channel) {
                columns.push(c.channel.clone());
            }
        }
        let query = query_url(&self.url, &columns, ctx.config.interval);
        let body = fetch(ctx, &ctx.devices, &query)
            .await
            .map_err(Failure::bare)?;
        let values = parse_iotawatt(&body, &columns).map_err(|e| Failure::with_body(e, &body))?;
        Ok(meters::meter_events(
            &self.channels,
            &values,
            EnergySource::Meter,
            at,
        ))
    }
}

/// The `/query` URL reading `columns` (IotaWatt inputs or outputs) averaged over the last
/// `interval` from the IotaWatt at `base`.
fn query_url(base: &Url, columns: &[String], interval: Duration) -> Url {
    let mut url = base.clone();
    let path = url.path().trim_end_matches('/').to_string();
    if path.ends_with("/query") {
        url.set_path(&path);
    } else {
        url.set_path(&format!("{path}/query"));
    }
    let select: Vec<String> = std::iter::once("time.iso".to_string())
        .chain(columns.iter().map(|c| format!("{c}.watts")))
        .collect();
    url.set_query(Some(&format!(
        "select=[{}]&begin=s-{}s&end=s&group=all&format=json",
        select.join(","),
        interval.as_secs().max(1)
    )));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_iotawatt_query_selects_every_column() {
        let base = Url::parse("http://10.0.0.5").expect("url");
        let cols = ["Input_1".to_string(), "Main".to_string()];
        let url = query_url(&base, &cols, 10 * S);
        assert_eq!(
            url.as_str(),
            "http://10.0.0.5/query?select=[time.iso,Input_1.watts,Main.watts]&begin=s-10s&end=s&group=all&format=json"
        );
        let given = Url::parse("http://iw.local/query/").expect("url");
        assert!(
            query_url(&given, &cols, Duration::from_millis(200))
                .as_str()
                .starts_with("http://iw.local/query?select=")
        );
    }
}
