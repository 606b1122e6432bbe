//! `[actuators]`: how commands are carried out (timeouts, retries, concurrency, how old a
//! command may be, the fallback webhook, the PDUs it may switch), checked after every override.

use std::time::Duration;

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
    /// Checks every value; the message starts with the full key.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout < Duration::from_millis(10) || self.timeout > Duration::from_secs(300) {
            return Err("actuators.timeout: must be from 10ms to 5m".into());
        }
        if !(1..=20).contains(&self.attempts) {
            return Err("actuators.attempts: must be from 1 to 20".into());
        }
        if self.retry_after > Duration::from_secs(300) {
            return Err("actuators.retry_after: must be at most 5m".into());
        }
        if !(1..=1024).contains(&self.concurrency) {
            return Err("actuators.concurrency: must be from 1 to 1024".into());
        }
        if self.expire_after < Duration::from_secs(1) {
            return Err("actuators.expire_after: must be at least 1s".into());
        }
        if let Some(url) = &self.webhook
            && reqwest::Url::parse(url)
                .ok()
                .is_none_or(|u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err(format!("actuators.webhook: {url:?} is not an http(s) URL"));
        }
        for (i, pdu) in self.pdus.iter().enumerate() {
            pdu.validate(&format!("actuators.pdus[{i}]"))?;
            if self.pdus[..i].iter().any(|p| p.name == pdu.name) {
                return Err(format!(
                    "actuators.pdus[{i}].name: {} is named twice",
                    pdu.name
                ));
            }
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
            assert!(err.starts_with(key), "{err}");
        }
    }
}
