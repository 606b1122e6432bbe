//! `[actuators]`: how commands are carried out (timeouts, retries, concurrency, how old a
//! command may be, the fallback webhook, the PDUs it may switch), checked after every override.

use std::time::Duration;

use adit_config::{Checked, Invalid, check};
use serde::{Deserialize, Serialize};

/// `[actuators]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActuatorsConfig {
    /// How long one attempt (connect, request, reply) may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per command before it is given up as failed.
    pub attempts: u32,
    /// Wait before the second attempt; doubles for each further one.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Commands carried out at once.
    pub concurrency: usize,
    /// A command decided longer ago than this is not carried out (recorded failed): after an
    /// outage, old orders are not obeyed blindly; the controller decides again from what it
    /// measures.
    #[serde(with = "humantime_serde")]
    pub expire_after: Duration,
    /// Where commands go that no device adapter can carry out (`POST` with the command as
    /// JSON); unset: such commands fail with the reason.
    pub webhook: Option<String>,
    /// The PDUs whose outlets may be switched (`[[actuators.pdus]]`).
    pub pdus: Vec<adit_devices::pdu_snmp::PduConfig>,
}

impl Default for ActuatorsConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            retry_after: Duration::from_secs(1),
            concurrency: 32,
            expire_after: Duration::from_secs(600),
            webhook: None,
            pdus: Vec::new(),
        }
    }
}

impl ActuatorsConfig {
    /// Checks every value; the key is already full (`actuators.timeout`), so the caller adds no
    /// section.
    pub fn validate(&self) -> Checked {
        check(
            self.timeout >= Duration::from_millis(10) && self.timeout <= Duration::from_secs(300),
            "actuators.timeout",
            "must be from 10ms to 5m",
        )?;
        check(
            (1..=20).contains(&self.attempts),
            "actuators.attempts",
            "must be from 1 to 20",
        )?;
        check(
            self.retry_after <= Duration::from_secs(300),
            "actuators.retry_after",
            "must be at most 5m",
        )?;
        check(
            (1..=1024).contains(&self.concurrency),
            "actuators.concurrency",
            "must be from 1 to 1024",
        )?;
        check(
            self.expire_after >= Duration::from_secs(1),
            "actuators.expire_after",
            "must be at least 1s",
        )?;
        if let Some(url) = &self.webhook
            && reqwest::Url::parse(url)
                .ok()
                .is_none_or(|u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err(Invalid::new(
                "actuators.webhook",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        for (i, pdu) in self.pdus.iter().enumerate() {
            let key = format!("actuators.pdus[{i}]");
            pdu.validate().map_err(|e| e.under(&key))?;
            check(
                !self.pdus[..i].iter().any(|p| p.name == pdu.name),
                &format!("{key}.name"),
                format!("{} is named twice", pdu.name),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_value_is_named() {
        assert!(ActuatorsConfig::default().validate().is_ok());
        for (config, key) in [
            (
                ActuatorsConfig {
                    attempts: 0,
                    ..Default::default()
                },
                "actuators.attempts",
            ),
            (
                ActuatorsConfig {
                    concurrency: 0,
                    ..Default::default()
                },
                "actuators.concurrency",
            ),
            (
                ActuatorsConfig {
                    webhook: Some("ftp://x".into()),
                    ..Default::default()
                },
                "actuators.webhook",
            ),
            (
                ActuatorsConfig {
                    timeout: Duration::ZERO,
                    ..Default::default()
                },
                "actuators.timeout",
            ),
        ] {
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
    }

    #[test]
    fn a_pdu_is_named_by_its_place() {
        let pdu: adit_devices::pdu_snmp::PduConfig = serde_json::from_value(serde_json::json!({
            "name": "pdu-1",
            "kind": "snmp",
            "address": "nowhere",
            "community": "private",
            "oid": "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4",
        }))
        .expect("a PDU");
        let config = ActuatorsConfig {
            pdus: vec![pdu],
            ..Default::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "actuators.pdus[0].address", "{err}");
        assert!(err.reason.contains("host:port"), "{err}");
    }
}
