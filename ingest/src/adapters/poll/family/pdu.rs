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

use super::super::config::AdaptersConfig;
use super::super::device::{Ctx, Device, DeviceKey, Failure, Family, Polled, Targets, fetch};
use super::meters::{self, MeterChannel};
use crate::fake::{Reply, Routes, Sim};
use adit_devices::http_json::{parse_pdu, pdu_reply};

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
