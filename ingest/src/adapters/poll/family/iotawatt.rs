//! IotaWatt power monitors: every meter registered at one IotaWatt (an input each) is read
//! with one `/query` request, averaged over the poll interval. Its fake answers `/query` with
//! the simulated site's metered machines, one input per machine named by its id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use adit_schemas::EnergySource;
use adit_schemas::registry::{AdapterKind, RecordKind, RegistryView};
use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde_json::{Value, json};

use super::super::config::AdaptersConfig;
use super::super::device::{Ctx, Device, DeviceKey, Failure, Family, Polled, Targets, fetch};
use super::meters::{self, MeterChannel};
use crate::fake::{Reply, Routes, Sim};
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

    fn fake(&self) -> Option<Routes> {
        Some(Routes::new().route("/{site}/query", get(fake_query)))
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

/// The fake's `/query`: one row, the time then the watts of each selected input (a metered
/// machine of the site).
async fn fake_query(
    State(sim): State<Arc<Sim>>,
    Path(site): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let layout = sim.site(&site)?;
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let select = query
        .get("select")
        .and_then(|s| s.strip_prefix('['))
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| bad("select=[…] missing".into()))?;
    let latest = sim.latest.borrow();
    let mut values = Vec::new();
    for column in select.split(',').filter(|c| *c != "time.iso") {
        let input = column
            .strip_suffix(".watts")
            .ok_or_else(|| bad(format!("only .watts is simulated, not {column}")))?;
        if !layout.metered.iter().any(|m| m == input) {
            return Err(bad(format!("no input {input} at {site}")));
        }
        let watts = latest
            .power_w
            .get(&(site.clone(), input.to_string()))
            .copied()
            .ok_or_else(|| bad(format!("no reading of {input} yet")))?;
        values.push(watts);
    }
    Ok(Json(iotawatt_reply(
        latest.at.unwrap_or(sim.started),
        &values,
    )))
}

/// What IotaWatt answers to a `/query` selecting `time.iso` and one column per value, for the
/// group starting at `ts` (IotaWatt prints local time without an offset; the fake prints UTC).
fn iotawatt_reply(ts: DateTime<Utc>, values: &[f64]) -> Value {
    let mut row = vec![json!(ts.format("%Y-%m-%dT%H:%M:%S").to_string())];
    row.extend(values.iter().map(|v| json!(v)));
    json!([row])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::poll::family::at;

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

    #[test]
    fn iotawatt_replies_read_back() {
        let body = iotawatt_reply(at(), &[1500.25, 0.0]).to_string();
        assert!(body.starts_with(r#"[["2026-07-01T12:00:00","#), "{body}");
        let cols = ["a".to_string(), "b".to_string()];
        let got = parse_iotawatt(body.as_bytes(), &cols).expect("parses");
        assert_eq!(got, vec![("a".into(), 1500.25), ("b".into(), 0.0)]);
    }
}
