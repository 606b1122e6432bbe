//! The farm's registry: sites, pools, machines, sensors and meters, with their limits and how
//! each device is reached.
//!
//! Records live in KV bucket `adit_registry`, one key per record (`site.<id>`, `pool.<id>`,
//! `machine.<site>.<id>`, `sensor.<site>.<id>`, `meter.<site>.<id>`). Each value is a
//! [`RegistryEntry`]: the record (or a tombstone for a delete) with who changed it and when, so
//! the bucket's own history is the audit trail: the `registry` pipeline reads it as a stream
//! (an event kind like any other) and writes every change, with the value before it, to the
//! `registry_changes` table; the farm pipelines read it the same way and apply changes live.
//!
//! Validation names the field it refuses (`allocation_kw must be more than 0`), so the API can
//! answer a bad write with a 400 that says what to fix.

use std::collections::BTreeMap;
use strum::IntoEnumIterator;

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::names;

/// A refused field: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field, as the JSON names it (`adapter.address`).
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

impl FieldError {
    /// `field` refused for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

type Checked = Result<(), FieldError>;

fn token(field: &str, value: &str) -> Checked {
    if names::is_token(value) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{value:?} must be 1-64 characters of A-Z a-z 0-9 _ -"),
        ))
    }
}

fn number(field: &str, value: f64, lo: f64, hi: f64) -> Checked {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{value} must be a number within {lo}..={hi}"),
        ))
    }
}

fn positive(field: &str, value: f64) -> Checked {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{value} must be more than 0"),
        ))
    }
}

fn text(field: &str, value: &str, max: usize) -> Checked {
    if value.len() > max || value.chars().any(char::is_control) {
        Err(FieldError::new(
            field,
            format!("must be at most {max} bytes without control characters"),
        ))
    } else {
        Ok(())
    }
}

/// The kinds of record, in the order they depend on each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// [`Site`].
    Site,
    /// [`Pool`].
    Pool,
    /// [`Machine`].
    Machine,
    /// [`Sensor`].
    Sensor,
    /// [`Meter`].
    Meter,
}

impl RecordKind {
    /// Its name: the key's first token and a record's `type`.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Its plural, as in the API's paths (`/api/v1/registry/sites`).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Site => "sites",
            Self::Pool => "pools",
            Self::Machine => "machines",
            Self::Sensor => "sensors",
            Self::Meter => "meters",
        }
    }

    /// The kind whose plural is `plural`.
    pub fn from_plural(plural: &str) -> Option<Self> {
        Self::iter().find(|k| k.plural() == plural)
    }

    /// Whether records of this kind belong to a site (their key is `<kind>.<site>.<id>`).
    pub fn site_scoped(self) -> bool {
        matches!(self, Self::Machine | Self::Sensor | Self::Meter)
    }

    /// The key of the record `id` (of `site` when site-scoped).
    pub fn key(self, site: Option<&str>, id: &str) -> String {
        match site {
            Some(site) if self.site_scoped() => format!("{}.{site}.{id}", self.name()),
            _ => format!("{}.{id}", self.name()),
        }
    }
}

/// A site: a place with a grid connection and its power allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Id (a subject token: `site-01`).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// IANA time zone (`Europe/Oslo`): local days for reports and calendars.
    #[serde(default = "defaults::timezone")]
    pub timezone: String,
    /// Power the site may draw, kW.
    pub allocation_kw: f64,
    /// Warning at this share of the allocation, percent.
    #[serde(default = "defaults::warning_pct")]
    pub warning_pct: f64,
    /// Critical at this share of the allocation, percent.
    #[serde(default = "defaults::critical_pct")]
    pub critical_pct: f64,
    /// Lowest allowed temperature, °C (condensation, and machines below their rating).
    #[serde(default = "defaults::min_temp_c")]
    pub min_temp_c: f64,
    /// Highest allowed temperature, °C.
    #[serde(default = "defaults::max_temp_c")]
    pub max_temp_c: f64,
    /// Temperature at which machines must stop, °C.
    #[serde(default = "defaults::emergency_temp_c")]
    pub emergency_temp_c: f64,
    /// Highest allowed relative humidity, percent.
    #[serde(default = "defaults::max_humidity_pct")]
    pub max_humidity_pct: f64,
    /// The utility's settlement interval, minutes (divides an hour).
    #[serde(default = "defaults::settlement_minutes")]
    pub settlement_minutes: u32,
    /// Base URL of the site's fan relay (`POST <url>/level` with `{"level": 1..9}`); none:
    /// fan decisions are recorded, and sent to the webhook actuator if one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_relay: Option<String>,
    /// The site's energy price when no price feed says one, per MWh, in the currency coin
    /// prices are in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tariff_per_mwh: Option<f64>,
}

mod defaults {
    pub(super) fn timezone() -> String {
        "UTC".into()
    }
    pub(super) fn warning_pct() -> f64 {
        80.0
    }
    pub(super) fn critical_pct() -> f64 {
        95.0
    }
    pub(super) fn min_temp_c() -> f64 {
        10.0
    }
    pub(super) fn max_temp_c() -> f64 {
        35.0
    }
    pub(super) fn emergency_temp_c() -> f64 {
        40.0
    }
    pub(super) fn max_humidity_pct() -> f64 {
        80.0
    }
    pub(super) fn settlement_minutes() -> u32 {
        15
    }
}

impl Site {
    /// The first of its safety settings (its allocation and every limit the controller and
    /// the compliance rules enforce, and where its fans are driven) that differs from
    /// `before`'s, or its allocation when there is no `before`: what only an admin may set.
    pub fn safety_change(&self, before: Option<&Site>) -> Option<&'static str> {
        let Some(b) = before else {
            return Some("allocation_kw");
        };
        let numbers = [
            ("allocation_kw", self.allocation_kw, b.allocation_kw),
            ("warning_pct", self.warning_pct, b.warning_pct),
            ("critical_pct", self.critical_pct, b.critical_pct),
            ("min_temp_c", self.min_temp_c, b.min_temp_c),
            ("max_temp_c", self.max_temp_c, b.max_temp_c),
            (
                "emergency_temp_c",
                self.emergency_temp_c,
                b.emergency_temp_c,
            ),
            (
                "max_humidity_pct",
                self.max_humidity_pct,
                b.max_humidity_pct,
            ),
        ];
        numbers
            .iter()
            .find(|(_, now, was)| now.to_bits() != was.to_bits())
            .map(|(field, _, _)| *field)
            .or_else(|| {
                (self.settlement_minutes != b.settlement_minutes).then_some("settlement_minutes")
            })
            .or_else(|| (self.fan_relay != b.fan_relay).then_some("fan_relay"))
    }

    /// A site with the default limits.
    pub fn new(id: &str, allocation_kw: f64) -> Self {
        Self {
            id: id.into(),
            name: String::new(),
            timezone: defaults::timezone(),
            allocation_kw,
            warning_pct: defaults::warning_pct(),
            critical_pct: defaults::critical_pct(),
            min_temp_c: defaults::min_temp_c(),
            max_temp_c: defaults::max_temp_c(),
            emergency_temp_c: defaults::emergency_temp_c(),
            max_humidity_pct: defaults::max_humidity_pct(),
            settlement_minutes: defaults::settlement_minutes(),
            fan_relay: None,
            tariff_per_mwh: None,
        }
    }

    fn validate(&self) -> Checked {
        token("id", &self.id)?;
        if [
            "violation",
            crate::control::OUTCOME_TOKEN,
            crate::overrides::OVERRIDE_TOKEN,
            crate::audit::AUDIT_TOKEN,
            crate::inspection::INSPECTION_TOKEN,
            crate::competition::COMPETITION_TOKEN,
        ]
        .contains(&self.id.as_str())
        {
            return Err(FieldError::new(
                "id",
                "\"violation\", \"outcome\", \"override\", \"audit\", \"inspection\" and \
                 \"competition\" are reserved (control.<token>.<site> carries operators' notes, \
                 actuators' outcomes, overrides, the audit trail, inspections and competitions)",
            ));
        }
        if let Some(url) = &self.fan_relay
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(FieldError::new(
                "fan_relay",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        text("name", &self.name, 200)?;
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(FieldError::new(
                "timezone",
                format!(
                    "{:?} is not an IANA time zone (e.g. Europe/Oslo)",
                    self.timezone
                ),
            ));
        }
        positive("allocation_kw", self.allocation_kw)?;
        if let Some(price) = self.tariff_per_mwh {
            number("tariff_per_mwh", price, -1e6, 1e6)?;
        }
        number("warning_pct", self.warning_pct, 1.0, 100.0)?;
        number("critical_pct", self.critical_pct, 1.0, 100.0)?;
        if self.critical_pct < self.warning_pct {
            return Err(FieldError::new(
                "critical_pct",
                format!(
                    "{} must be at least warning_pct ({})",
                    self.critical_pct, self.warning_pct
                ),
            ));
        }
        number("min_temp_c", self.min_temp_c, -60.0, 60.0)?;
        number("max_temp_c", self.max_temp_c, -40.0, 120.0)?;
        if self.min_temp_c >= self.max_temp_c {
            return Err(FieldError::new(
                "min_temp_c",
                format!(
                    "{} must be below max_temp_c ({})",
                    self.min_temp_c, self.max_temp_c
                ),
            ));
        }
        number("emergency_temp_c", self.emergency_temp_c, -40.0, 150.0)?;
        if self.emergency_temp_c <= self.max_temp_c {
            return Err(FieldError::new(
                "emergency_temp_c",
                format!(
                    "{} must be above max_temp_c ({})",
                    self.emergency_temp_c, self.max_temp_c
                ),
            ));
        }
        number("max_humidity_pct", self.max_humidity_pct, 1.0, 100.0)?;
        if self.settlement_minutes == 0 || 60 % self.settlement_minutes != 0 {
            return Err(FieldError::new(
                "settlement_minutes",
                format!(
                    "{} must divide an hour (1, 5, 15, 30, 60…)",
                    self.settlement_minutes
                ),
            ));
        }
        Ok(())
    }
}

/// An energy-accounted group of machines; its id is also the Stratum pool id they mine to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Id (a subject token).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Power the pool's machines may draw together, kW (none: only the sites' limits).
    #[serde(default)]
    pub allocation_kw: Option<f64>,
    /// The coin its blocks pay, as its price feed names it (`XMR`): what prices its
    /// machines' work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coin: Option<String>,
    /// Who operates it: the operator's id as the energy regulator or the company registry
    /// knows it (a subject token), carried into compliance reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Where it is, in words (an address, a region, a grid zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Pool {
    fn validate(&self) -> Checked {
        token("id", &self.id)?;
        text("name", &self.name, 200)?;
        if let Some(coin) = &self.coin {
            token("coin", coin)?;
        }
        if let Some(operator) = &self.operator {
            token("operator", operator)?;
        }
        if let Some(location) = &self.location {
            text("location", location, 200)?;
        }
        if let Some(kw) = self.allocation_kw {
            positive("allocation_kw", kw)?;
        }
        Ok(())
    }
}

/// How a device is read (or, for `push`, how it reports by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    /// Nothing is polled: the device pushes (HTTP ingest, a simulator, a gateway).
    #[default]
    Push,
    /// cgminer / bmminer / BOSminer API over TCP (`host:4028`).
    Cgminer,
    /// IotaWatt's `/query` API over HTTP (`channel` = the input's name).
    Iotawatt,
    /// RoomAlert-style JSON over HTTP (`channel` = the sensor's label).
    Roomalert,
    /// A PDU's per-outlet JSON over HTTP (`channel` = the outlet).
    Pdu,
    /// MQTT: the device publishes to a topic (mapped in `[adapters.mqtt]`).
    Mqtt,
}

/// What a device's `address` must be for its adapter kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// None: the device pushes (HTTP ingest, a simulator, a gateway).
    Pushes,
    /// `host:port`, polled over TCP.
    HostPort,
    /// An `http://` or `https://` URL, polled over HTTP; `channel` names the reading when
    /// `channel` is true.
    Url {
        /// Whether the record must name its channel (input, outlet).
        channel: bool,
    },
    /// The MQTT topic the device publishes to (no wildcards).
    Topic,
}

impl AdapterKind {
    /// How a device of this kind is reached: one exhaustive match, so a new kind says it
    /// once and [`AdapterKind::polled`] and the address check follow.
    pub fn reach(self) -> Reach {
        match self {
            Self::Push => Reach::Pushes,
            Self::Cgminer => Reach::HostPort,
            Self::Iotawatt | Self::Pdu => Reach::Url { channel: true },
            Self::Roomalert => Reach::Url { channel: false },
            Self::Mqtt => Reach::Topic,
        }
    }

    /// Whether the adapters role polls this kind (a device family must read it, or its
    /// records are skipped with the reason).
    pub fn polled(self) -> bool {
        matches!(self.reach(), Reach::HostPort | Reach::Url { .. })
    }
}

/// How to reach a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Adapter {
    /// The protocol.
    #[serde(default)]
    pub kind: AdapterKind,
    /// `host:port` (cgminer), an `http://` or `https://` URL (HTTP kinds), a topic (MQTT).
    #[serde(default)]
    pub address: Option<String>,
    /// Which reading at that address is this device's (input, label, outlet).
    #[serde(default)]
    pub channel: Option<String>,
}

impl Adapter {
    fn validate(&self) -> Checked {
        let address = self.address.as_deref();
        if let Some(a) = address {
            text("adapter.address", a, 500)?;
        }
        if let Some(c) = self.channel.as_deref() {
            text("adapter.channel", c, 200)?;
        }
        let need = |what: &str| {
            Err(FieldError::new(
                "adapter.address",
                format!("a {} adapter needs {what}", serde_kind(self.kind)),
            ))
        };
        match (self.kind.reach(), address) {
            (Reach::Pushes, _) => Ok(()),
            (Reach::HostPort, Some(a)) if host_port(a) => Ok(()),
            (Reach::HostPort, _) => need("host:port (the miner's API, usually port 4028)"),
            (Reach::Url { .. }, Some(a))
                if a.starts_with("http://") || a.starts_with("https://") =>
            {
                Ok(())
            }
            (Reach::Url { .. }, _) => need("an http:// or https:// URL"),
            (Reach::Topic, Some(a)) if !a.is_empty() && !a.contains(['#', '+']) => Ok(()),
            (Reach::Topic, _) => need("the topic it publishes to (no wildcards)"),
        }?;
        if self.kind.reach() == (Reach::Url { channel: true }) && self.channel.is_none() {
            return Err(FieldError::new(
                "adapter.channel",
                format!(
                    "a {} adapter needs the channel (input or outlet) to read",
                    serde_kind(self.kind)
                ),
            ));
        }
        Ok(())
    }
}

fn serde_kind(kind: AdapterKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn host_port(a: &str) -> bool {
    a.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

/// A mining machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Id, unique within its site.
    pub id: String,
    /// Its site.
    pub site: String,
    /// The pool it is accounted to.
    #[serde(default)]
    pub pool: Option<String>,
    /// Model (peers for anomaly detection share it).
    pub model: String,
    /// Rack.
    #[serde(default)]
    pub rack: Option<String>,
    /// The PDU feeding it.
    #[serde(default)]
    pub pdu: Option<String>,
    /// The PDU outlet.
    #[serde(default)]
    pub outlet: Option<u32>,
    /// Nameplate hashrate, H/s.
    pub nominal_hashrate_hs: f64,
    /// Nameplate power, W (the estimate when nothing measures it).
    pub nominal_power_w: f64,
    /// How to reach its API.
    #[serde(default)]
    pub adapter: Adapter,
    /// The login and worker it mines as at its pool: its shares there are its revenue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mines_as: Option<MinesAs>,
    /// The hosting customer it belongs to (a strike price may be set per customer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The lowest power target its firmware takes, W (LuxOS through its cgminer API): the
    /// controller turns it down toward this before it sleeps any machine. None: it takes no
    /// target and is only slept or woken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_target_min_w: Option<f64>,
}

/// Who a machine mines as at its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinesAs {
    /// The login (the wallet address or account its shares name).
    pub miner: String,
    /// The worker name (none: the machine's id).
    #[serde(default)]
    pub worker: Option<String>,
}

impl Machine {
    /// The pool, login and worker its shares carry, when it says whom it mines as and at
    /// which pool.
    pub fn mining_identity(&self) -> Option<(&str, &str, &str)> {
        let pool = self.pool.as_deref()?;
        let m = self.mines_as.as_ref()?;
        Some((pool, &m.miner, m.worker.as_deref().unwrap_or(&self.id)))
    }

    /// A machine of `model` at `site` with its nameplate figures: in no pool, rack or PDU, and
    /// with no adapter.
    pub fn new(
        id: &str,
        site: &str,
        model: &str,
        nominal_hashrate_hs: f64,
        nominal_power_w: f64,
    ) -> Self {
        Self {
            id: id.into(),
            site: site.into(),
            pool: None,
            model: model.into(),
            rack: None,
            pdu: None,
            outlet: None,
            nominal_hashrate_hs,
            nominal_power_w,
            adapter: Adapter::default(),
            mines_as: None,
            customer: None,
            power_target_min_w: None,
        }
    }

    fn validate(&self) -> Checked {
        token("id", &self.id)?;
        token("site", &self.site)?;
        if let Some(pool) = &self.pool {
            token("pool", pool)?;
        }
        if self.model.trim().is_empty() {
            return Err(FieldError::new("model", "must not be empty"));
        }
        text("model", &self.model, 200)?;
        for (field, value) in [("rack", &self.rack), ("pdu", &self.pdu)] {
            if let Some(v) = value {
                text(field, v, 200)?;
            }
        }
        positive("nominal_hashrate_hs", self.nominal_hashrate_hs)?;
        number("nominal_power_w", self.nominal_power_w, 1.0, 1_000_000.0)?;
        if let Some(min) = self.power_target_min_w {
            number("power_target_min_w", min, 1.0, self.nominal_power_w)?;
        }
        if let Some(m) = &self.mines_as {
            text("mines_as.miner", &m.miner, 256)?;
            if let Some(w) = &m.worker {
                text("mines_as.worker", w, 256)?;
            }
            if self.pool.is_none() {
                return Err(FieldError::new(
                    "mines_as",
                    "needs the pool it mines at (`pool`)",
                ));
            }
        }
        if let Some(c) = &self.customer {
            token("customer", c)?;
        }
        self.adapter.validate()
    }
}

/// A temperature, humidity or fan sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sensor {
    /// Id, unique within its site.
    pub id: String,
    /// Its site.
    pub site: String,
    /// What it measures.
    pub kind: SensorKind,
    /// How to reach it.
    #[serde(default)]
    pub adapter: Adapter,
}

impl Sensor {
    fn validate(&self) -> Checked {
        token("id", &self.id)?;
        token("site", &self.site)?;
        self.adapter.validate()
    }
}

/// A power meter: a machine's own (a PDU outlet, a sub-meter) or the site's main meter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meter {
    /// Id, unique within its site.
    pub id: String,
    /// Its site.
    pub site: String,
    /// The machine it measures (none: the site's main meter).
    #[serde(default)]
    pub machine: Option<String>,
    /// How to reach it.
    #[serde(default)]
    pub adapter: Adapter,
}

impl Meter {
    fn validate(&self) -> Checked {
        token("id", &self.id)?;
        token("site", &self.site)?;
        if let Some(m) = &self.machine {
            token("machine", m)?;
        }
        self.adapter.validate()
    }
}

/// Any one record; as JSON, its fields with `"type"` naming its kind (a sensor's own `kind`
/// says what it measures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A site.
    Site(Site),
    /// A pool.
    Pool(Pool),
    /// A machine.
    Machine(Machine),
    /// A sensor.
    Sensor(Sensor),
    /// A meter.
    Meter(Meter),
}

impl Record {
    /// Parses `body` as a record of `kind` (the body need not repeat the kind).
    pub fn parse(kind: RecordKind, body: &[u8]) -> Result<Self, FieldError> {
        let bad = |e: serde_json::Error| {
            let message = e.to_string();
            // serde names the field in backquotes ("missing field `allocation_kw`").
            let field = message
                .split_once("field `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map_or("body", |(name, _)| name)
                .to_string();
            FieldError::new(field, message)
        };
        Ok(match kind {
            RecordKind::Site => Self::Site(serde_json::from_slice(body).map_err(bad)?),
            RecordKind::Pool => Self::Pool(serde_json::from_slice(body).map_err(bad)?),
            RecordKind::Machine => Self::Machine(serde_json::from_slice(body).map_err(bad)?),
            RecordKind::Sensor => Self::Sensor(serde_json::from_slice(body).map_err(bad)?),
            RecordKind::Meter => Self::Meter(serde_json::from_slice(body).map_err(bad)?),
        })
    }

    /// Its kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Self::Site(_) => RecordKind::Site,
            Self::Pool(_) => RecordKind::Pool,
            Self::Machine(_) => RecordKind::Machine,
            Self::Sensor(_) => RecordKind::Sensor,
            Self::Meter(_) => RecordKind::Meter,
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        match self {
            Self::Site(x) => &x.id,
            Self::Pool(x) => &x.id,
            Self::Machine(x) => &x.id,
            Self::Sensor(x) => &x.id,
            Self::Meter(x) => &x.id,
        }
    }

    /// The site it belongs to, when site-scoped.
    pub fn site(&self) -> Option<&str> {
        match self {
            Self::Site(_) | Self::Pool(_) => None,
            Self::Machine(x) => Some(&x.site),
            Self::Sensor(x) => Some(&x.site),
            Self::Meter(x) => Some(&x.site),
        }
    }

    /// Its KV key.
    pub fn key(&self) -> String {
        self.kind().key(self.site(), self.id())
    }

    /// Checks every field on its own (references to other records are the registry's job).
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Self::Site(x) => x.validate(),
            Self::Pool(x) => x.validate(),
            Self::Machine(x) => x.validate(),
            Self::Sensor(x) => x.validate(),
            Self::Meter(x) => x.validate(),
        }
    }

    /// The records this one names, as keys that must exist: a machine's site and pool, a
    /// sensor's or meter's site, a meter's machine.
    pub fn references(&self) -> Vec<(&'static str, String)> {
        let site = |s: &str| ("site", RecordKind::Site.key(None, s));
        match self {
            Self::Site(_) | Self::Pool(_) => vec![],
            Self::Machine(m) => {
                let mut refs = vec![site(&m.site)];
                if let Some(p) = &m.pool {
                    refs.push(("pool", RecordKind::Pool.key(None, p)));
                }
                refs
            }
            Self::Sensor(s) => vec![site(&s.site)],
            Self::Meter(m) => {
                let mut refs = vec![site(&m.site)];
                if let Some(machine) = &m.machine {
                    refs.push(("machine", RecordKind::Machine.key(Some(&m.site), machine)));
                }
                refs
            }
        }
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// Created or replaced.
    Put,
    /// Deleted (the entry is a tombstone).
    Delete,
}

/// One value of the registry bucket: a record (or a tombstone), who wrote it and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// Its key.
    pub key: String,
    /// Put or delete.
    pub op: ChangeOp,
    /// The token name that made the change (`simulator`, `anonymous` when auth is off).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The record; `None` for a delete.
    pub record: Option<Record>,
}

impl RegistryEntry {
    /// The subject of `key` in the bucket's stream.
    pub fn subject_of(key: &str) -> String {
        format!("$KV.{}.{key}", names::KV_REGISTRY)
    }

    /// Checks the entry as a whole: key and record agree, the record is valid.
    pub fn check(&self) -> Result<(), FieldError> {
        text("by", &self.by, 200)?;
        match (&self.op, &self.record) {
            (ChangeOp::Put, Some(record)) => {
                record.validate()?;
                if record.key() != self.key {
                    return Err(FieldError::new(
                        "key",
                        format!(
                            "{:?} does not match the record's {:?}",
                            self.key,
                            record.key()
                        ),
                    ));
                }
                Ok(())
            }
            (ChangeOp::Delete, None) => {
                let kind = self.key.split('.').next().unwrap_or_default();
                if RecordKind::iter().any(|k| k.name() == kind) {
                    Ok(())
                } else {
                    Err(FieldError::new(
                        "key",
                        format!("{:?} names no kind", self.key),
                    ))
                }
            }
            (ChangeOp::Put, None) => Err(FieldError::new("record", "a put needs its record")),
            (ChangeOp::Delete, Some(_)) => {
                Err(FieldError::new("record", "a delete carries no record"))
            }
        }
    }

    /// The row this change adds to `registry_changes`, given the value it replaced.
    pub fn change(&self, before: Option<&Record>) -> RegistryChange {
        let json = |r: &Record| serde_json::to_string(r).unwrap_or_default();
        RegistryChange {
            kind: self.key.split('.').next().unwrap_or_default().to_string(),
            key: self.key.clone(),
            op: self.op,
            changed_by: self.by.clone(),
            ts: self.at,
            before: before.map(json),
            after: self.record.as_ref().map(json),
        }
    }
}

/// A row of `registry_changes`: one change with the value before and after (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryChange {
    /// `site`, `pool`, `machine`, `sensor` or `meter`.
    pub kind: String,
    /// The record's key.
    pub key: String,
    /// Put or delete.
    pub op: ChangeOp,
    /// The token name that made it.
    pub changed_by: String,
    /// When.
    pub ts: DateTime<Utc>,
    /// The record before (none when created).
    pub before: Option<String>,
    /// The record after (none when deleted).
    pub after: Option<String>,
}

impl RegistryChange {
    /// Its columns (the table adds `seq`, the bucket's revision, and `date`).
    pub fn fields() -> Vec<Field> {
        use arrow::datatypes::DataType;
        vec![
            Field::new("kind", DataType::Utf8, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("op", DataType::Utf8, false),
            Field::new("changed_by", DataType::Utf8, false),
            crate::arrow_rows::ts_field("ts"),
            Field::new("before", DataType::Utf8, true),
            Field::new("after", DataType::Utf8, true),
        ]
    }
}

/// The whole registry as a pipeline sees it: the current record of every key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistryView {
    /// Current records by key.
    pub records: BTreeMap<String, Record>,
}

impl RegistryView {
    /// Applies `entry`; returns the record it replaced.
    pub fn apply(&mut self, entry: &RegistryEntry) -> Option<Record> {
        match &entry.record {
            Some(r) => self.records.insert(entry.key.clone(), r.clone()),
            None => self.records.remove(&entry.key),
        }
    }

    /// The site `id`.
    pub fn site(&self, id: &str) -> Option<&Site> {
        match self.records.get(&RecordKind::Site.key(None, id)) {
            Some(Record::Site(s)) => Some(s),
            _ => None,
        }
    }

    /// The pool `id`.
    pub fn pool(&self, id: &str) -> Option<&Pool> {
        match self.records.get(&RecordKind::Pool.key(None, id)) {
            Some(Record::Pool(p)) => Some(p),
            _ => None,
        }
    }

    /// The machine `id` of `site`.
    pub fn machine(&self, site: &str, id: &str) -> Option<&Machine> {
        match self.records.get(&RecordKind::Machine.key(Some(site), id)) {
            Some(Record::Machine(m)) => Some(m),
            _ => None,
        }
    }

    /// The sensor `id` of `site`.
    pub fn sensor(&self, site: &str, id: &str) -> Option<&Sensor> {
        match self.records.get(&RecordKind::Sensor.key(Some(site), id)) {
            Some(Record::Sensor(s)) => Some(s),
            _ => None,
        }
    }

    /// Every site.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.records.values().filter_map(|r| match r {
            Record::Site(s) => Some(s),
            _ => None,
        })
    }

    /// Every pool.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.records.values().filter_map(|r| match r {
            Record::Pool(p) => Some(p),
            _ => None,
        })
    }

    /// Every machine.
    pub fn machines(&self) -> impl Iterator<Item = &Machine> {
        self.records.values().filter_map(|r| match r {
            Record::Machine(m) => Some(m),
            _ => None,
        })
    }

    /// Every sensor.
    pub fn sensors(&self) -> impl Iterator<Item = &Sensor> {
        self.records.values().filter_map(|r| match r {
            Record::Sensor(s) => Some(s),
            _ => None,
        })
    }

    /// Every meter.
    pub fn meters(&self) -> impl Iterator<Item = &Meter> {
        self.records.values().filter_map(|r| match r {
            Record::Meter(m) => Some(m),
            _ => None,
        })
    }
}

/// What a sensor measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    /// Degrees Celsius.
    Temperature,
    /// Relative humidity, percent.
    Humidity,
    /// Fan speed, RPM.
    Fan,
}

impl SensorKind {
    /// Its name, as written in JSON and the tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Temperature => "temperature",
            Self::Humidity => "humidity",
            Self::Fan => "fan",
        }
    }

    pub(crate) fn range(self) -> (f64, f64) {
        match self {
            Self::Temperature => (-60.0, 150.0),
            Self::Humidity => (0.0, 100.0),
            Self::Fan => (0.0, 100_000.0),
        }
    }
}

#[cfg(test)]
mod tests;
