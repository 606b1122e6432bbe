//! How one attempt at a command reaches its device: which driver the registry points at
//! ([`route`], pure), and the exchange itself ([`attempt`]).
//!
//! - `miner_api`: a machine whose adapter is the cgminer API: `pause` (sleep), `resume`
//!   (wake) and `restart` (reboot) on its TCP port, as Braiins OS answers them; the reply's
//!   `STATUS` decides.
//! - `miner_power_target`: a `power_limit` for such a machine, as LuxOS takes it (a session,
//!   then the profile chosen by watts; see `adit_devices::luxos`).
//! - `pdu`: a machine's outlet (`pdu` and `outlet` in the registry) on a PDU configured in
//!   `[[actuators.pdus]]`: on, off, or off for a while and on again (see [`super::pdu`]).
//! - `fan_relay`: a site's `fan_relay` URL: `POST <url>/level` with `{"level": n}`.
//! - `webhook`: anything else, when `[actuators] webhook` is set: `POST` of the command.

use std::time::Duration;

use adit_schemas::control::{Command, CommandAction, FANS_TARGET};
use adit_schemas::registry::{AdapterKind, RegistryView};
use serde_json::Value;

use adit_devices::pdu_snmp::{self as pdu, PduConfig};
use adit_devices::{cgminer, luxos};

use crate::ActuatorsConfig;

/// Largest reply read from a device.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Where an attempt goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Driver {
    /// The miner's cgminer API at `addr`, with the command's word.
    MinerApi {
        /// host:port.
        addr: String,
        /// `pause` or `resume`.
        word: &'static str,
    },
    /// The miner's power target, through its cgminer API (LuxOS).
    MinerPowerTarget {
        /// host:port.
        addr: String,
        /// The target, W.
        watts: f64,
    },
    /// A site's fan relay.
    FanRelay {
        /// Base URL.
        url: String,
    },
    /// A machine's PDU outlet.
    Outlet {
        /// The PDU.
        pdu: Box<PduConfig>,
        /// The outlet's index.
        outlet: u32,
    },
    /// The fallback webhook.
    Webhook {
        /// URL.
        url: String,
    },
}

impl Driver {
    /// Its name in outcomes and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MinerApi { .. } => "miner_api",
            Self::MinerPowerTarget { .. } => "miner_power_target",
            Self::FanRelay { .. } => "fan_relay",
            Self::Outlet { .. } => "pdu",
            Self::Webhook { .. } => "webhook",
        }
    }
}

/// The driver for `command` from the registry and the configured PDUs, or why there is none.
pub fn route(
    view: &RegistryView,
    command: &Command,
    config: &ActuatorsConfig,
) -> Result<Driver, String> {
    let fallback = |why: String| match config.webhook.as_deref() {
        Some(url) => Ok(Driver::Webhook {
            url: url.to_string(),
        }),
        None => Err(why),
    };
    if command.target == FANS_TARGET {
        let Some(site) = view.site(&command.site) else {
            return Err(format!("site {} is not registered", command.site));
        };
        return match &site.fan_relay {
            Some(url) => Ok(Driver::FanRelay { url: url.clone() }),
            None => fallback(format!("site {} has no fan_relay", command.site)),
        };
    }
    let Some(machine) = view.machine(&command.site, &command.target) else {
        return Err(format!(
            "machine {} of site {} is not registered",
            command.target, command.site
        ));
    };
    if matches!(
        command.action,
        CommandAction::Outlet | CommandAction::OutletCycle
    ) {
        let (Some(name), Some(outlet)) = (&machine.pdu, machine.outlet) else {
            return fallback(format!(
                "machine {} has no pdu and outlet in the registry",
                command.target
            ));
        };
        return match config.pdus.iter().find(|p| &p.name == name) {
            Some(pdu) => Ok(Driver::Outlet {
                pdu: Box::new(pdu.clone()),
                outlet,
            }),
            None => fallback(format!("no PDU named {name} in [[actuators.pdus]]")),
        };
    }
    if let (CommandAction::PowerLimit, AdapterKind::Cgminer, Some(addr), Some(watts)) = (
        command.action,
        machine.adapter.kind,
        &machine.adapter.address,
        command.value,
    ) {
        return Ok(Driver::MinerPowerTarget {
            addr: addr.clone(),
            watts,
        });
    }
    let word = match command.action {
        CommandAction::Sleep => Some("pause"),
        CommandAction::Wake => Some("resume"),
        CommandAction::Reboot => Some("restart"),
        _ => None,
    };
    match (machine.adapter.kind, word, &machine.adapter.address) {
        (AdapterKind::Cgminer, Some(word), Some(addr)) => Ok(Driver::MinerApi {
            addr: addr.clone(),
            word,
        }),
        (kind, ..) => fallback(format!(
            "no driver for {} on a machine read by {kind:?}",
            command.action.as_str()
        )),
    }
}

/// One attempt: the device's reply when it did it, else why not.
pub async fn attempt(
    driver: &Driver,
    command: &Command,
    out: &adit_egress::Outbound,
    timeout: Duration,
) -> Result<String, String> {
    match driver {
        Driver::MinerApi { addr, word } => {
            let reply = cgminer::query(&out.guard, addr, word, timeout, MAX_REPLY_BYTES)
                .await
                .map_err(|e| e.to_string())?;
            cgminer::judge(&reply)
        }
        Driver::MinerPowerTarget { addr, watts } => {
            luxos::set_power_target(&out.guard, addr, *watts, timeout, MAX_REPLY_BYTES).await
        }
        Driver::FanRelay { url } => {
            let level = command.value.unwrap_or_default().round() as i64;
            let body = serde_json::json!({ "level": level });
            post(
                out,
                &format!("{}/level", url.trim_end_matches('/')),
                &body,
                timeout,
            )
            .await
        }
        Driver::Outlet { pdu, outlet } => switch_outlet(pdu, *outlet, command, out, timeout).await,
        Driver::Webhook { url } => {
            let body = serde_json::to_value(command).map_err(|e| e.to_string())?;
            post(out, url, &body, timeout).await
        }
    }
}

/// An outlet command: on or off, or a cycle (off, at least the PDU's `min_off`, on).
async fn switch_outlet(
    pdu: &PduConfig,
    outlet: u32,
    command: &Command,
    out: &adit_egress::Outbound,
    timeout: Duration,
) -> Result<String, String> {
    let value = command.value.unwrap_or_default();
    if command.action == CommandAction::Outlet {
        return pdu::switch(pdu, outlet, value >= 1.0, &out.guard, timeout).await;
    }
    let off_for = cycle_off(pdu, value);
    let off = pdu::switch(pdu, outlet, false, &out.guard, timeout).await?;
    tokio::time::sleep(off_for).await;
    let on = pdu::switch(pdu, outlet, true, &out.guard, timeout)
        .await
        .map_err(|e| format!("{off}; after {off_for:?} off, switching on failed: {e}"))?;
    Ok(format!("{off}; {} s off; {on}", off_for.as_secs()))
}

/// How long a cycle keeps the outlet off: what was asked, at least the PDU's `min_off`, at
/// most [`pdu::MAX_CYCLE_OFF`].
fn cycle_off(pdu: &PduConfig, asked_s: f64) -> Duration {
    Duration::try_from_secs_f64(asked_s)
        .unwrap_or_default()
        .clamp(pdu.min_off, pdu::MAX_CYCLE_OFF.max(pdu.min_off))
}

async fn post(
    out: &adit_egress::Outbound,
    url: &str,
    body: &Value,
    timeout: Duration,
) -> Result<String, String> {
    // The destination is written without its path or query (they can hold a credential), and
    // the reply is kept as its status alone: the relay's body would let whoever set the URL
    // read another service's answer back through `commands.reply` (issue 23). An excerpt goes
    // to the log, which only the operator reads.
    let shown = adit_egress::redact(url);
    let checked = out.url(url).map_err(|e| format!("POST {shown}: {e}"))?;
    let response = out
        .http
        .post(checked)
        .timeout(timeout)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("POST {shown}: {}", adit_egress::describe(e)))?;
    let status = response.status();
    let reply = adit_egress::read_capped(response, MAX_REPLY_BYTES)
        .await
        .map_err(|e| {
            format!(
                "POST {shown}: {status}, reading the reply: {}",
                e.without_url()
            )
        })?;
    tracing::debug!(
        url = %shown,
        %status,
        reply = %adit_egress::excerpt(&reply.bytes, 200),
        "actuator webhook answered"
    );
    let size = format!(
        "{}{} bytes",
        reply.bytes.len(),
        if reply.truncated { "+" } else { "" }
    );
    if status.is_success() {
        Ok(format!("{status} ({size})"))
    } else {
        Err(format!("POST {shown}: {status} ({size})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adit_schemas::registry::{Adapter, ChangeOp, Machine, Record, RegistryEntry, Site};
    use chrono::Utc;

    fn view(fan_relay: Option<&str>, kind: AdapterKind) -> RegistryView {
        let mut view = RegistryView::default();
        let site = Site {
            fan_relay: fan_relay.map(str::to_string),
            ..Site::new("s1", 100.0)
        };
        let machine = Machine {
            id: "m-1".into(),
            site: "s1".into(),
            pool: None,
            model: "S19".into(),
            rack: None,
            pdu: Some("pdu-1".into()),
            outlet: Some(4),
            nominal_hashrate_hs: 110e12,
            nominal_power_w: 3250.0,
            adapter: Adapter {
                kind,
                address: Some("127.0.0.1:4028".into()),
                channel: None,
            },
            mines_as: None,
            customer: None,
            power_target_min_w: None,
        };
        for record in [Record::Site(site), Record::Machine(machine)] {
            view.apply(&RegistryEntry {
                key: record.key(),
                op: ChangeOp::Put,
                by: "test".into(),
                at: Utc::now(),
                record: Some(record),
            });
        }
        view
    }

    fn command(target: &str, action: CommandAction) -> Command {
        Command {
            id: "s1:1:0".into(),
            site: "s1".into(),
            target: target.into(),
            action,
            value: Some(7.0),
            rule: "fan_band".into(),
            ts: Utc::now(),
        }
    }

    #[test]
    fn commands_route_to_the_device_the_registry_names() {
        let none = ActuatorsConfig::default();
        let hook = ActuatorsConfig {
            webhook: Some("http://hook".into()),
            ..ActuatorsConfig::default()
        };
        let v = view(Some("http://relay"), AdapterKind::Cgminer);
        assert_eq!(
            route(&v, &command("m-1", CommandAction::Reboot), &none),
            Ok(Driver::MinerApi {
                addr: "127.0.0.1:4028".into(),
                word: "restart"
            })
        );
        assert_eq!(
            route(&v, &command("m-1", CommandAction::Sleep), &none),
            Ok(Driver::MinerApi {
                addr: "127.0.0.1:4028".into(),
                word: "pause"
            })
        );
        assert_eq!(
            route(&v, &command("m-1", CommandAction::PowerLimit), &none),
            Ok(Driver::MinerPowerTarget {
                addr: "127.0.0.1:4028".into(),
                watts: 7.0
            })
        );
        assert_eq!(
            route(&v, &command(FANS_TARGET, CommandAction::FanLevel), &none),
            Ok(Driver::FanRelay {
                url: "http://relay".into()
            })
        );
        let err = route(&v, &command("m-9", CommandAction::Sleep), &hook);
        assert!(err.unwrap_err().contains("not registered"));
        let no_relay = view(None, AdapterKind::Push);
        assert!(
            route(
                &no_relay,
                &command(FANS_TARGET, CommandAction::FanLevel),
                &none
            )
            .unwrap_err()
            .contains("no fan_relay")
        );
        assert_eq!(
            route(&no_relay, &command("m-1", CommandAction::Wake), &hook),
            Ok(Driver::Webhook {
                url: "http://hook".into()
            })
        );
    }

    #[test]
    fn outlet_commands_go_to_the_configured_pdu_of_the_machine() {
        let v = view(None, AdapterKind::Cgminer);
        let pdu = PduConfig {
            name: "pdu-1".into(),
            kind: pdu::PduKind::Snmp,
            address: "10.0.0.5:161".into(),
            community: "private".into(),
            oid: pdu::APC_OUTLET_CONTROL.into(),
            on: 1,
            off: 2,
            min_off: Duration::from_secs(10),
        };
        let config = ActuatorsConfig {
            pdus: vec![pdu.clone()],
            ..ActuatorsConfig::default()
        };
        for action in [CommandAction::Outlet, CommandAction::OutletCycle] {
            assert_eq!(
                route(&v, &command("m-1", action), &config),
                Ok(Driver::Outlet {
                    pdu: Box::new(pdu.clone()),
                    outlet: 4
                })
            );
        }
        let err = route(
            &v,
            &command("m-1", CommandAction::Outlet),
            &ActuatorsConfig::default(),
        )
        .unwrap_err();
        assert!(err.contains("no PDU named pdu-1"), "{err}");
        // A cycle is off at least min_off, at most the cap.
        assert_eq!(cycle_off(&pdu, 2.0), Duration::from_secs(10));
        assert_eq!(cycle_off(&pdu, 30.0), Duration::from_secs(30));
        assert_eq!(cycle_off(&pdu, 1e9), pdu::MAX_CYCLE_OFF);
        assert_eq!(cycle_off(&pdu, f64::NAN), Duration::from_secs(10));
    }
}
