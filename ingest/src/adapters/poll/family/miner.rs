//! Miners over the cgminer API (cgminer, bmminer, BOSminer): a machine with a `cgminer`
//! adapter is one device, read for its [`MinerStatus`] and, when the firmware reports its
//! power, an [`EnergyReading`] (source `firmware`). A miner that turns stale is reported
//! `offline`.

use adit_schemas::registry::{AdapterKind, RecordKind, RegistryView};
use adit_schemas::{AnyEvent, EnergyReading, EnergySource, MinerState, MinerStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::super::config::AdaptersConfig;
use super::super::device::{Ctx, Device, DeviceKey, Failure, Family, Polled, Targets};
use adit_devices::cgminer::{self, MinerReport};

/// The family's name.
const NAME: &str = "cgminer";

/// Machines read over the cgminer API.
pub(super) struct Cgminer;

impl Family for Cgminer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Option<(AdapterKind, RecordKind)> {
        Some((AdapterKind::Cgminer, RecordKind::Machine))
    }

    fn collect(&self, view: &RegistryView, _: &AdaptersConfig, out: &mut Targets) {
        for m in view.machines() {
            if m.adapter.kind != AdapterKind::Cgminer {
                continue;
            }
            let Some(address) = &m.adapter.address else {
                out.skipped.push(format!(
                    "machine {}/{}: its cgminer adapter needs an address",
                    m.site, m.id
                ));
                continue;
            };
            out.devices.insert(
                DeviceKey {
                    family: NAME,
                    address: address.clone(),
                    owner: format!("{}/{}", m.site, m.id),
                },
                std::sync::Arc::new(Miner {
                    site: m.site.clone(),
                    machine: m.id.clone(),
                }),
            );
        }
    }
}

/// A miner: its status (and power) for one machine.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Miner {
    /// The machine's site.
    site: String,
    /// The machine.
    machine: String,
}

#[async_trait]
impl Device for Miner {
    async fn poll(&self, ctx: &Ctx, key: &DeviceKey, at: DateTime<Utc>) -> Result<Polled, Failure> {
        let reply = cgminer::query(
            &ctx.devices.guard,
            &key.address,
            cgminer::REPORT_COMMAND,
            ctx.config.timeout,
            ctx.config.max_reply_bytes,
        )
        .await
        .map_err(Failure::bare)?;
        let report = cgminer::parse_report(&reply)
            .map_err(|e| Failure::with_body(e, reply.to_string().as_bytes()))?;
        Ok(miner_events(&self.site, &self.machine, &report, at))
    }

    fn when_stale(&self, at: DateTime<Utc>) -> Option<AnyEvent> {
        Some(AnyEvent::Miner(offline_status(
            &self.site,
            &self.machine,
            at,
        )))
    }
}

/// The miner's status, and its power as a firmware reading when it reports one.
fn miner_events(site: &str, machine: &str, report: &MinerReport, at: DateTime<Utc>) -> Polled {
    let mut events = vec![AnyEvent::Miner(MinerStatus {
        site: site.into(),
        machine: machine.into(),
        ts: at,
        hashrate_hs: report.hashrate_hs,
        temp_c: report.temp_c,
        fan_rpm: report.fan_rpm,
        power_w: report.power_w,
        state: report.state,
    })];
    if let Some(power_w) = report.power_w {
        events.push(AnyEvent::Energy(EnergyReading {
            site: site.into(),
            machine: machine.into(),
            ts: at,
            power_w,
            energy_wh: None,
            source: EnergySource::Firmware,
        }));
    }
    Polled {
        events,
        missing: Vec::new(),
    }
}

/// What a miner that turned stale is reported as.
fn offline_status(site: &str, machine: &str, at: DateTime<Utc>) -> MinerStatus {
    MinerStatus {
        site: site.into(),
        machine: machine.into(),
        ts: at,
        hashrate_hs: 0.0,
        temp_c: None,
        fan_rpm: None,
        power_w: None,
        state: MinerState::Offline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::poll::family::at;

    #[test]
    fn miners_give_status_and_firmware_power() {
        let report = MinerReport {
            hashrate_hs: 13.5e12,
            temp_c: Some(74.75),
            fan_rpm: Some(6000.0),
            power_w: Some(1350.0),
            state: MinerState::Mining,
        };
        let polled = miner_events("s1", "m1", &report, at());
        match polled.events.as_slice() {
            [AnyEvent::Miner(status), AnyEvent::Energy(energy)] => {
                assert_eq!(status.hashrate_hs, 13.5e12);
                assert_eq!(status.state, MinerState::Mining);
                assert_eq!(status.ts, at());
                assert_eq!(energy.source, EnergySource::Firmware);
                assert_eq!(energy.power_w, 1350.0);
                assert_eq!(
                    (energy.site.as_str(), energy.machine.as_str()),
                    ("s1", "m1")
                );
            }
            other => panic!("expected status and energy, got {other:?}"),
        }
        let quiet = MinerReport {
            power_w: None,
            ..report
        };
        assert_eq!(miner_events("s1", "m1", &quiet, at()).events.len(), 1);
        let offline = offline_status("s1", "m1", at());
        assert_eq!(
            (offline.state, offline.hashrate_hs),
            (MinerState::Offline, 0.0)
        );
    }
}
