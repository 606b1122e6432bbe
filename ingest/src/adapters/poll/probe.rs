//! Every device the registry names (and every configured grid and coin feed), read once as the
//! `adapters` role would read it, publishing nothing: what `adit selftest` reports, one line
//! per device. A record no family can read is reported with the reason the role logs.

use std::sync::Arc;

use adit_bus::publish::Publisher;
use adit_schemas::registry::RegistryView;
use tokio::sync::Semaphore;

use super::AdaptersError;
use super::config::AdaptersConfig;
use super::device::{Ctx, targets};
use super::family;

/// What reading one device gave.
#[derive(Debug)]
pub struct Probe {
    /// The device, as the role's log names it (`cgminer 10.0.0.5:4028 (s1/m1)`), or the
    /// record that cannot be polled.
    pub device: String,
    /// How many events it gave (and which registered channels its reply lacked), or why it
    /// gave none.
    pub outcome: Result<String, String>,
}

/// Reads every device `view` and `config` name once, `config.concurrency` at a time.
/// `publisher` is never published to (a poll only returns what it read).
pub async fn probe(
    config: &AdaptersConfig,
    egress: &adit_egress::EgressConfig,
    view: &RegistryView,
    publisher: Publisher,
) -> Result<Vec<Probe>, AdaptersError> {
    config.validate()?;
    let outbound = |purpose| egress.outbound(purpose, "selftest", Some(config.timeout));
    let ctx = Arc::new(Ctx {
        permits: Semaphore::new(config.concurrency),
        config: config.clone(),
        devices: outbound(adit_egress::Purpose::Devices)?,
        feeds: outbound(adit_egress::Purpose::Feeds)?,
        publisher,
    });
    let found = targets(&family::all(), view, config);
    let mut out: Vec<Probe> = found
        .skipped
        .into_iter()
        .map(|reason| Probe {
            device: reason.split(':').next().unwrap_or_default().to_string(),
            outcome: Err(reason),
        })
        .collect();
    let mut polls = tokio::task::JoinSet::new();
    for (key, device) in found.devices {
        let ctx = Arc::clone(&ctx);
        polls.spawn(async move {
            let _permit = ctx.permits.acquire().await;
            let outcome = match device.poll(&ctx, &key, chrono::Utc::now()).await {
                Ok(polled) if polled.missing.is_empty() => Ok(readings(polled.events.len())),
                Ok(polled) => Ok(format!(
                    "{}; missing {}",
                    readings(polled.events.len()),
                    polled.missing.join(", ")
                )),
                Err(failure) => Err(failure.error.to_string()),
            };
            Probe {
                device: key.to_string(),
                outcome,
            }
        });
    }
    while let Some(done) = polls.join_next().await {
        match done {
            Ok(probe) => out.push(probe),
            Err(e) => out.push(Probe {
                device: "a device".into(),
                outcome: Err(format!("its poll did not finish: {e}")),
            }),
        }
    }
    out.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(out)
}

/// `n readings`, or `1 reading`.
fn readings(n: usize) -> String {
    format!("{n} reading{}", if n == 1 { "" } else { "s" })
}
