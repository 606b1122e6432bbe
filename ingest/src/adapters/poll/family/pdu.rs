//! PDUs with a per-outlet JSON page: every meter registered at one PDU (an outlet each) is
//! read with one request, through the `[adapters.pdu]` field names. Its fake answers with
//! every outlet of the simulated site's PDU.

use std::sync::Arc;

use adit_schemas::EnergySource;
use adit_schemas::registry::{AdapterKind, RecordKind, RegistryView};
use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde_json::{Value, json};

use super::super::config::AdaptersConfig;
use super::super::device::{Ctx, Device, DeviceKey, Failure, Family, Polled, Targets, fetch};
use super::meters::{self, MeterChannel};
use crate::fake::{Reply, Routes, Sim};
use adit_devices::http_json::parse_pdu;

/// The family's name.
const NAME: &str = "pdu";

/// PDUs, read for their meters.
pub(super) struct Pdu;

impl Family for Pdu {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Option<(AdapterKind, RecordKind)> {
        Some((AdapterKind::Pdu, RecordKind::Meter))
    }

    fn collect(&self, view: &RegistryView, _: &AdaptersConfig, out: &mut Targets) {
        for (key, (url, outlets)) in meters::by_device(view, AdapterKind::Pdu, NAME, out) {
            out.devices.insert(key, Arc::new(Strip { url, outlets }));
        }
    }

    fn fake(&self) -> Option<Routes> {
        Some(Routes::new().route("/{site}", get(fake_outlets)))
    }
}

/// One PDU: power per outlet.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Strip {
    /// Its JSON URL.
    url: Url,
    /// The outlets registered as meters.
    outlets: Vec<MeterChannel>,
}

#[async_trait]
impl Device for Strip {
    async fn poll(&self, ctx: &Ctx, _: &DeviceKey, at: DateTime<Utc>) -> Result<Polled, Failure> {
        let body = fetch(ctx, &ctx.devices, &self.url)
            .await
            .map_err(Failure::bare)?;
        let values = parse_pdu(&body, &ctx.config.pdu).map_err(|e| Failure::with_body(e, &body))?;
        Ok(meters::meter_events(
            &self.outlets,
            &values,
            EnergySource::Pdu,
            at,
        ))
    }
}

/// The fake PDU's page: every outlet's power.
async fn fake_outlets(State(sim): State<Arc<Sim>>, Path(site): Path<String>) -> Reply {
    let layout = sim.site(&site)?;
    let latest = sim.latest.borrow();
    let outlets: Vec<(u32, f64)> = layout
        .outlets
        .iter()
        .filter_map(|(outlet, machine)| {
            let watts = latest.power_w.get(&(site.clone(), machine.clone()))?;
            Some((*outlet, *watts))
        })
        .collect();
    Ok(Json(pdu_reply(&outlets)))
}

/// A PDU's reply in the default shape (`FieldMap::default`): `{"outlets":[{"outlet":1,
/// "power_w":3210.5,"state":"on"}]}`, an outlet drawing nothing being `off`.
fn pdu_reply(outlets: &[(u32, f64)]) -> Value {
    let entries: Vec<Value> = outlets
        .iter()
        .map(|&(outlet, power_w)| {
            json!({
                "outlet": outlet,
                "power_w": power_w,
                "state": if power_w > 0.0 { "on" } else { "off" },
            })
        })
        .collect();
    json!({ "outlets": entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_devices::http_json::FieldMap;

    #[test]
    fn pdu_replies_read_back() {
        let reply = pdu_reply(&[(1, 3210.5), (2, 0.0)]);
        assert_eq!(reply["outlets"][0]["state"], "on");
        assert_eq!(reply["outlets"][1]["state"], "off");
        let got = parse_pdu(reply.to_string().as_bytes(), &FieldMap::default()).expect("parses");
        assert_eq!(got, vec![("1".into(), 3210.5), ("2".into(), 0.0)]);
    }
}
