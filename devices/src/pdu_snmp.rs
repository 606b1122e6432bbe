//! Switching a PDU's outlets (`[[actuators.pdus]]`): which PDUs the actuators may switch and
//! how ([`PduConfig`], checked after every override), and the exchange itself ([`switch`]).
//!
//! SNMP v2c is what rack PDUs answer: one `SET` of an integer to `<oid>.<outlet>`, the
//! outlet-control column of the PDU's MIB. The default column and values are APC PowerNet's
//! `sPDUOutletCtl` (1 on, 2 off); other makes name theirs (Raritan, ServerTech, CyberPower
//! each publish one). A machine reaches its outlet through the registry: its `pdu` names a
//! PDU configured here, its `outlet` the index.

use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use serde::{Deserialize, Serialize};

/// APC PowerNet-MIB `sPDUOutletCtl`: the outlet-control column of APC's rack PDUs.
pub const APC_OUTLET_CONTROL: &str = "1.3.6.1.4.1.318.1.1.4.4.2.1.3";
/// The longest an outlet may be cycled off.
pub const MAX_CYCLE_OFF: Duration = Duration::from_secs(600);
/// The largest outlet index.
const MAX_OUTLET: u32 = 1024;

/// How a PDU is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PduKind {
    /// SNMP v2c `SET` of the outlet-control column.
    Snmp,
}

/// `[[actuators.pdus]]`: one PDU the actuators may switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PduConfig {
    /// What machines' `pdu` field names.
    pub name: String,
    /// How it is switched.
    pub kind: PduKind,
    /// `host:port` of its SNMP agent (port 161 by default on PDUs).
    pub address: String,
    /// The SNMP v2c community allowed to write.
    pub community: String,
    /// The outlet-control column; the outlet's index is appended.
    #[serde(default = "apc_oid")]
    pub oid: String,
    /// The value that switches an outlet on.
    #[serde(default = "one")]
    pub on: i64,
    /// The value that switches an outlet off.
    #[serde(default = "two")]
    pub off: i64,
    /// The least time a cycled outlet stays off (a machine's supply must drain).
    #[serde(default = "ten_seconds", with = "humantime_serde")]
    pub min_off: Duration,
}

fn apc_oid() -> String {
    APC_OUTLET_CONTROL.to_string()
}
fn one() -> i64 {
    1
}
fn two() -> i64 {
    2
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

impl PduConfig {
    /// Checks every value; the key is the field's, relative to the PDU (the caller puts it
    /// [`Invalid::under`] `actuators.pdus[i]`).
    pub fn validate(&self) -> Checked {
        adit_schemas::validate::check_token("name", &self.name)
            .map_err(|e| Invalid::new("name", e.reason))?;
        let address = || Invalid::new("address", format!("{:?}: must be host:port", self.address));
        let (host, port) = self.address.rsplit_once(':').ok_or_else(address)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(address());
        }
        check(
            !self.community.is_empty() && self.community.len() <= 64,
            "community",
            "must be 1 to 64 bytes",
        )?;
        parse_oid(&self.oid)
            .map_err(|why| Invalid::new("oid", format!("{:?}: {why}", self.oid)))?;
        check(self.on != self.off, "", "on and off must differ")?;
        check(
            (Duration::from_secs(1)..=MAX_CYCLE_OFF).contains(&self.min_off),
            "min_off",
            "must be from 1s to 10m",
        )
    }
}

/// The arcs of a dotted OID (`1.3.6.1…`, a leading dot allowed).
pub fn parse_oid(text: &str) -> Result<Vec<u64>, String> {
    let arcs: Vec<u64> = text
        .trim_start_matches('.')
        .split('.')
        .map(|a| {
            a.parse::<u64>()
                .map_err(|_| format!("{a:?} is not a number"))
        })
        .collect::<Result<_, _>>()?;
    if arcs.len() < 2 || arcs.len() > 64 || arcs[0] > 2 {
        return Err("not an object identifier".into());
    }
    Ok(arcs)
}

/// Switches `outlet` of `pdu` on or off, reaching it where `guard` allows, within `timeout`;
/// what the PDU answered, or why not.
pub async fn switch(
    pdu: &PduConfig,
    outlet: u32,
    on: bool,
    guard: &adit_egress::Guard,
    timeout: Duration,
) -> Result<String, String> {
    if outlet == 0 || outlet > MAX_OUTLET {
        return Err(format!("outlet {outlet} is not 1 to {MAX_OUTLET}"));
    }
    let mut arcs = parse_oid(&pdu.oid)?;
    arcs.push(u64::from(outlet));
    let oid = snmp2::Oid::from(&arcs).map_err(|e| format!("oid: {e:?}"))?;
    let value = if on { pdu.on } else { pdu.off };
    let (host, port) = pdu
        .address
        .rsplit_once(':')
        .ok_or_else(|| format!("{:?} is not host:port", pdu.address))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{:?} is not host:port", pdu.address))?;
    let exchange = async {
        let addrs = guard.resolve(host, port).await.map_err(|e| e.to_string())?;
        let mut session = snmp2::AsyncSession::new_v2c(addrs[0], pdu.community.as_bytes(), 1)
            .await
            .map_err(|e| format!("SNMP to {}: {e}", pdu.address))?;
        let reply = session
            .set(&[(&oid, snmp2::Value::Integer(value))])
            .await
            .map_err(|e| format!("SNMP SET to {}: {e}", pdu.address))?;
        if reply.error_status != 0 {
            return Err(format!(
                "the PDU refused the SET ({})",
                error_name(reply.error_status)
            ));
        }
        Ok(format!(
            "outlet {outlet} {} (SNMP SET {}.{outlet} = {value})",
            if on { "on" } else { "off" },
            pdu.oid.trim_start_matches('.')
        ))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        format!(
            "the PDU at {} did not answer within {timeout:?} (a wrong community gets no answer)",
            pdu.address
        )
    })?
}

/// The name of an SNMP v2 error status (RFC 3416).
fn error_name(status: u32) -> &'static str {
    match status {
        1 => "tooBig",
        2 => "noSuchName",
        3 => "badValue",
        4 => "readOnly",
        5 => "genErr",
        6 => "noAccess",
        7 => "wrongType",
        8 => "wrongLength",
        9 => "wrongEncoding",
        10 => "wrongValue",
        11 => "noCreation",
        12 => "inconsistentValue",
        13 => "resourceUnavailable",
        14 => "commitFailed",
        15 => "undoFailed",
        16 => "authorizationError",
        17 => "notWritable",
        18 => "inconsistentName",
        _ => "an unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu() -> PduConfig {
        PduConfig {
            name: "pdu-1".into(),
            kind: PduKind::Snmp,
            address: "10.0.0.5:161".into(),
            community: "private".into(),
            oid: apc_oid(),
            on: 1,
            off: 2,
            min_off: Duration::from_secs(10),
        }
    }

    #[test]
    fn every_bad_value_is_named() {
        assert_eq!(pdu().validate(), Ok(()));
        for (bad, key) in [
            (
                PduConfig {
                    name: "a.b".into(),
                    ..pdu()
                },
                "actuators.pdus[0].name",
            ),
            (
                PduConfig {
                    address: "10.0.0.5".into(),
                    ..pdu()
                },
                "actuators.pdus[0].address",
            ),
            (
                PduConfig {
                    community: String::new(),
                    ..pdu()
                },
                "actuators.pdus[0].community",
            ),
            (
                PduConfig {
                    oid: "1.3.x".into(),
                    ..pdu()
                },
                "actuators.pdus[0].oid",
            ),
            (
                PduConfig { off: 1, ..pdu() },
                "actuators.pdus[0]: on and off",
            ),
            (
                PduConfig {
                    min_off: Duration::from_secs(3600),
                    ..pdu()
                },
                "actuators.pdus[0].min_off",
            ),
        ] {
            let err = bad.validate().unwrap_err().under("actuators.pdus[0]");
            assert!(err.to_string().starts_with(key), "{err}");
        }
    }

    #[test]
    fn oids_are_read_strictly() {
        assert_eq!(parse_oid(".1.3.6.1"), Ok(vec![1, 3, 6, 1]));
        assert_eq!(parse_oid("1.3.6.1"), Ok(vec![1, 3, 6, 1]));
        for bad in ["", "1", "5.3.6", "1..3", "1.3.-6", "1.3.6.1 "] {
            assert!(parse_oid(bad).is_err(), "{bad:?}");
        }
    }
}
