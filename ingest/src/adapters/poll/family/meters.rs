//! What the meter families (IotaWatt, PDU) share: a meter record is one channel of a device
//! at a URL, so the meters at one device are read with one request, and each channel's watts
//! become an [`EnergyReading`] for the meter's machine (or the meter itself, a site's main
//! meter).

use std::collections::BTreeMap;

use adit_schemas::registry::{AdapterKind, RegistryView};
use adit_schemas::{AnyEvent, EnergyReading, EnergySource};
use chrono::{DateTime, Utc};
use reqwest::Url;

use super::super::device::{DeviceKey, Polled, Targets};
use adit_devices::http_url;

/// A meter channel: which input or outlet gives which machine's power.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MeterChannel {
    /// The site.
    pub(super) site: String,
    /// The reading's machine: the meter's machine, or the meter's id for a main meter.
    pub(super) machine: String,
    /// The meter's id, for messages.
    pub(super) meter: String,
    /// The IotaWatt input or PDU outlet.
    pub(super) channel: String,
}

/// The meters `view` reads through `adapter`, grouped by device URL under `family`'s keys;
/// those that cannot be read go to `out.skipped`.
pub(super) fn by_device(
    view: &RegistryView,
    adapter: AdapterKind,
    family: &'static str,
    out: &mut Targets,
) -> BTreeMap<DeviceKey, (Url, Vec<MeterChannel>)> {
    let mut devices: BTreeMap<DeviceKey, (Url, Vec<MeterChannel>)> = BTreeMap::new();
    for meter in view.meters().filter(|m| m.adapter.kind == adapter) {
        let who = format!("meter {}/{}", meter.site, meter.id);
        let (Some(address), Some(channel)) = (&meter.adapter.address, &meter.adapter.channel)
        else {
            out.skipped
                .push(format!("{who}: its adapter needs an address and a channel"));
            continue;
        };
        let url = match http_url(address) {
            Ok(url) => url,
            Err(reason) => {
                out.skipped.push(format!("{who}: {address:?}: {reason}"));
                continue;
            }
        };
        let key = DeviceKey {
            family,
            address: url.to_string(),
            owner: String::new(),
        };
        devices
            .entry(key)
            .or_insert_with(|| (url, Vec::new()))
            .1
            .push(MeterChannel {
                site: meter.site.clone(),
                machine: meter.machine.clone().unwrap_or_else(|| meter.id.clone()),
                meter: meter.id.clone(),
                channel: channel.clone(),
            });
    }
    devices
}

/// One energy reading per registered channel that `values` (channel → watts) has.
pub(super) fn meter_events(
    channels: &[MeterChannel],
    values: &[(String, f64)],
    source: EnergySource,
    at: DateTime<Utc>,
) -> Polled {
    let mut out = Polled::default();
    for c in channels {
        match values.iter().find(|(name, _)| *name == c.channel) {
            Some((_, power_w)) => out.events.push(AnyEvent::Energy(EnergyReading {
                site: c.site.clone(),
                machine: c.machine.clone(),
                ts: at,
                power_w: *power_w,
                energy_wh: None,
                source,
            })),
            None => out.missing.push(format!(
                "meter {}/{} (channel {:?})",
                c.site, c.meter, c.channel
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::poll::family::at;

    #[test]
    fn meter_channels_map_to_machines_and_report_what_is_missing() {
        let channel = |machine: &str, meter: &str, channel: &str| MeterChannel {
            site: "s1".into(),
            machine: machine.into(),
            meter: meter.into(),
            channel: channel.into(),
        };
        let channels = [
            channel("m1", "sub1", "Input_1"),
            channel("main", "main", "Main"),
            channel("m2", "sub2", "Input_9"),
        ];
        let values = [
            ("Input_1".to_string(), 1400.5),
            ("Main".to_string(), 5000.0),
        ];
        let polled = meter_events(&channels, &values, EnergySource::Meter, at());
        let got: Vec<(&str, f64, EnergySource)> = polled
            .events
            .iter()
            .map(|e| match e {
                AnyEvent::Energy(r) => (r.machine.as_str(), r.power_w, r.source),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("m1", 1400.5, EnergySource::Meter),
                ("main", 5000.0, EnergySource::Meter)
            ]
        );
        assert_eq!(polled.missing, ["meter s1/sub2 (channel \"Input_9\")"]);
    }
}
