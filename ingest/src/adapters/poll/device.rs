//! What every polled device has in common: its key, the two traits a device family
//! implements ([`Family`]: which registry records it reads; [`Device`]: how one of its devices
//! is read), what a poll gives or why it failed, and what a poll may use ([`Ctx`], [`fetch`]).
//! The role's loop (`mod.rs`) knows devices only through these.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use adit_bus::publish::Publisher;
use adit_schemas::AnyEvent;
use adit_schemas::registry::{AdapterKind, RecordKind, RegistryView};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::Url;
use tokio::sync::Semaphore;

use super::config::AdaptersConfig;
use crate::fake::Routes;
use adit_devices::DeviceError;

/// Bytes of a refused HTTP reply kept as the dead letter's payload.
const DLQ_BODY_BYTES: usize = 4096;

/// One polled device: a miner (one machine), an HTTP device (all its channels), a grid feed.
///
/// A changed address is a new key, so the device starts afresh there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DeviceKey {
    /// Its family's name ([`Family::name`]).
    pub(super) family: &'static str,
    /// `host:port` or URL.
    pub(super) address: String,
    /// Whose device it is when the address alone does not say (`site/machine` of a miner,
    /// `site kind` of a grid feed); empty for HTTP devices shared by several records.
    pub(super) owner: String,
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family, self.address)?;
        if !self.owner.is_empty() {
            write!(f, " ({})", self.owner)?;
        }
        Ok(())
    }
}

/// A family of devices, read alike: which registry records it reads, the devices they make,
/// and its fake. A new family is one file in `family/` implementing this and [`Device`],
/// listed in `family::all`.
pub(super) trait Family: Send + Sync {
    /// Its name: the `kind` label of the metrics, the dead letters' adapter header, the path
    /// its fake is served under.
    fn name(&self) -> &'static str;
    /// The registry's adapter kind and the kind of record it reads (a config-only family,
    /// like the grid feeds, reads none).
    fn reads(&self) -> Option<(AdapterKind, RecordKind)>;
    /// Adds the devices that `view` and `config` name to `out`, and why a record it reads
    /// cannot be polled.
    fn collect(&self, view: &RegistryView, config: &AdaptersConfig, out: &mut Targets);
    /// Its fake: routes answering as its devices from the simulated farm's readings, which
    /// the simulator serves under `/<name>/` (`family::fakes`). None for a family without one,
    /// or whose fake is no HTTP route (the miners': a cgminer server per machine,
    /// `simulate::cgminer`).
    fn fake(&self) -> Option<Routes> {
        None
    }
}

/// One device of a family, with what it is read for (its machine, its channels).
#[async_trait]
pub(super) trait Device: fmt::Debug + Send + Sync {
    /// Reads it once; the readings are stamped `at`.
    async fn poll(&self, ctx: &Ctx, key: &DeviceKey, at: DateTime<Utc>) -> Result<Polled, Failure>;

    /// What is published when it turns stale (a miner: its `offline` status), if anything.
    fn when_stale(&self, _at: DateTime<Utc>) -> Option<AnyEvent> {
        None
    }
}

/// Every device to poll, and the records that name a device this role cannot read.
#[derive(Debug, Default)]
pub(super) struct Targets {
    /// By device.
    pub(super) devices: BTreeMap<DeviceKey, std::sync::Arc<dyn Device>>,
    /// Why a record was left out, one line each.
    pub(super) skipped: Vec<String>,
}

/// The devices `families` read from `view` and `config`. A polled record whose adapter's
/// family reads another kind of record (a machine with an IotaWatt) is skipped, saying so.
pub(super) fn targets(
    families: &[Box<dyn Family>],
    view: &RegistryView,
    config: &AdaptersConfig,
) -> Targets {
    let mut out = Targets::default();
    for family in families {
        family.collect(view, config, &mut out);
    }
    let records = view
        .machines()
        .map(|m| (RecordKind::Machine, &m.site, &m.id, m.adapter.kind))
        .chain(
            view.meters()
                .map(|m| (RecordKind::Meter, &m.site, &m.id, m.adapter.kind)),
        )
        .chain(
            view.sensors()
                .map(|s| (RecordKind::Sensor, &s.site, &s.id, s.adapter.kind)),
        );
    for (record, site, id, adapter) in records {
        if !adapter.polled() {
            continue;
        }
        let reader = families.iter().find_map(|f| {
            f.reads()
                .filter(|(kind, _)| *kind == adapter)
                .map(|(_, reads)| (f.name(), reads))
        });
        match reader {
            Some((_, reads)) if reads == record => {}
            Some((family, reads)) => out.skipped.push(format!(
                "{} {site}/{id}: its adapter is {family} (only {} are read from one); not polled",
                record.name(),
                reads.plural()
            )),
            None => out.skipped.push(format!(
                "{} {site}/{id}: no device family reads its adapter; not polled",
                record.name()
            )),
        }
    }
    out
}

/// What a good poll gave.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Polled {
    /// Events to publish.
    pub(super) events: Vec<AnyEvent>,
    /// Registered channels the reply lacked, described.
    pub(super) missing: Vec<String>,
}

/// Why a poll gave nothing.
#[derive(Debug)]
pub(super) struct Failure {
    /// What went wrong.
    pub(super) error: DeviceError,
    /// The start of the reply, when there was one (for the dead letter).
    pub(super) body: Option<Bytes>,
}

impl Failure {
    /// A failure without a reply to keep (no answer, a timeout).
    pub(super) fn bare(error: DeviceError) -> Self {
        Self { error, body: None }
    }

    /// A failure of the reply `body`, whose start is kept for the dead letter.
    pub(super) fn with_body(error: DeviceError, body: &[u8]) -> Self {
        let end = body.len().min(DLQ_BODY_BYTES);
        Self {
            error,
            body: Some(Bytes::copy_from_slice(&body[..end])),
        }
    }
}

/// What every poll needs.
pub(super) struct Ctx {
    /// The config.
    pub(super) config: AdaptersConfig,
    /// Devices' HTTP client and TCP guard (`egress.devices`).
    pub(super) devices: adit_egress::Outbound,
    /// Grid feeds' HTTP client (`egress.feeds`).
    pub(super) feeds: adit_egress::Outbound,
    /// Where events and dead letters go.
    pub(super) publisher: Publisher,
    /// Bounds the polls under way.
    pub(super) permits: Semaphore,
}

/// GETs `url` through `out` (whose egress policy it must pass) and reads its body, under the
/// poll timeout and the reply size limit. An error status is the device not answering (it is
/// not dead-lettered).
pub(super) async fn fetch(
    ctx: &Ctx,
    out: &adit_egress::Outbound,
    url: &Url,
) -> Result<Vec<u8>, DeviceError> {
    let addr = url.as_str();
    let limit = ctx.config.max_reply_bytes;
    out.guard.check(url).map_err(|e| DeviceError::Connect {
        addr: addr.to_string(),
        source: std::io::Error::other(e),
    })?;
    let exchange = async {
        let mut response = out
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| http_error(addr, ctx.config.timeout, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(DeviceError::Io {
                addr: addr.to_string(),
                source: std::io::Error::other(format!("HTTP status {status}")),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http_error(addr, ctx.config.timeout, e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(DeviceError::TooLarge {
                    addr: addr.to_string(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(ctx.config.timeout, exchange)
        .await
        .map_err(|_| DeviceError::Timeout {
            addr: addr.to_string(),
            after: ctx.config.timeout,
        })?
}

fn http_error(addr: &str, timeout: Duration, e: reqwest::Error) -> DeviceError {
    if e.is_timeout() {
        DeviceError::Timeout {
            addr: addr.to_string(),
            after: timeout,
        }
    } else if e.is_connect() {
        DeviceError::Connect {
            addr: addr.to_string(),
            source: std::io::Error::other(adit_egress::describe(e)),
        }
    } else {
        DeviceError::Io {
            addr: addr.to_string(),
            source: std::io::Error::other(e),
        }
    }
}
