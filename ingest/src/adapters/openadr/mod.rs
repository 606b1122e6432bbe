//! An OpenADR 2.0b VEN (simple HTTP, pull mode) per site: it registers with the utility's VTN,
//! polls it, answers each event with an opt in or out, turns what the events ask into grid
//! signals for the site's controller, and reports the site's measured power when the VTN asks.
//!
//! - [`xml`]: the VTN's replies as a bounded tree.
//! - [`messages`]: the payloads the VEN sends and the replies it reads.
//! - [`book`]: the events held and what they ask of the site at a time (pure).
//! - [`ven`]: the task: HTTP exchanges, the site's power from the bus.
//! - `steer`: what is asked becomes the site's grid signals; `contact`: when to try the VTN
//!   and whether it answers (both shared with OpenADR 3.1).
//! - [`last`]: the site's last demand-response signal on GRID, read at the VEN's start.
//!
//! A curtailment asked is confirmed on GRID every `adapters.grid_confirm` while the VTN
//! answers; when the VTN falls silent the confirmations stop, and the controller's
//! `signal_stale` rule takes the site to its failsafe, as for any other feed.

pub mod book;
pub(crate) mod contact;
pub mod last;
pub mod messages;
pub(crate) mod power;
pub(crate) mod steer;
mod ven;
pub mod xml;

use std::path::PathBuf;
use std::time::Duration;

use adit_bus::publish::Publisher;
use adit_config::{Checked, Invalid, check};
use adit_schemas::names;
use serde::{Deserialize, Serialize};

pub use ven::run;

/// What every VEN shares: timings and where signals go.
#[derive(Clone)]
pub struct Shared {
    /// Longest one exchange with the VTN may take.
    pub timeout: Duration,
    /// Largest reply read.
    pub max_reply_bytes: usize,
    /// How often a curtailment still asked is confirmed.
    pub confirm: Duration,
    /// Where grid signals go.
    pub publisher: Publisher,
}

/// `[[adapters.openadr]]`: one site's VEN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAdrConfig {
    /// The site the events apply to (and whose power is reported).
    pub site: String,
    /// The VTN's base URL, the services below it (`…/OpenADR2/Simple/2.0b`).
    pub vtn_url: String,
    /// This VEN's name at the VTN.
    pub ven_name: String,
    /// The VEN id the utility assigned, if any (else the VTN's registration gives one).
    #[serde(default)]
    pub ven_id: Option<String>,
    /// `in`: opt in to every event adit can act on; `out`: opt out of every event.
    #[serde(default)]
    pub opt: OptPolicy,
    /// Target site load, kW, for `SIMPLE` levels 1, 2 and 3 (moderate, high, special).
    #[serde(default)]
    pub levels_kw: Vec<f64>,
    /// The site's capacity, kW: `LOAD_CONTROL` capacity fractions are of it.
    #[serde(default)]
    pub capacity_kw: Option<f64>,
    /// How long before an interval's start the site begins to shed (the event's ramp-up
    /// when longer). The target is due at the start.
    #[serde(default = "default_lead", with = "humantime_serde")]
    pub lead: Duration,
    /// Time between two polls, unless the VTN asks for a longer one.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
    /// PEM certificate this VEN presents (TLS client authentication), with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// PEM certificate(s) the VTN's certificate is checked against, and then only they (the
    /// built-in roots are not trusted beside them); none: the built-in roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// Whether a site takes part in the events it is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptPolicy {
    /// Opt in to every event adit can act on.
    #[default]
    In,
    /// Opt out of every event (answered, never acted on).
    Out,
}

fn default_lead() -> Duration {
    Duration::from_secs(60)
}

fn default_poll() -> Duration {
    Duration::from_secs(10)
}

/// A VTN's URL, as either VEN takes it (key `vtn_url`): http(s), and https unless the VTN is
/// on this machine. A VTN's events steer the site's load: whoever sits on the path of a plain
/// http:// VTN could shed or wake the whole site.
pub(crate) fn check_vtn_url(url: &str) -> Checked {
    let vtn = adit_devices::http_url(url)
        .map_err(|r| Invalid::new("vtn_url", format!("{url:?}: {r}")))?;
    let host = vtn.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    check(
        vtn.scheme() == "https" || loopback,
        "vtn_url",
        format!("{url:?}: a VTN must be https:// (plain http:// only to one on this machine)"),
    )
}

/// `SIMPLE` levels' targets, as either VEN takes them (key `levels_kw`).
pub(crate) fn check_levels(levels_kw: &[f64]) -> Checked {
    check(
        levels_kw.len() <= 3 && levels_kw.iter().all(|kw| kw.is_finite() && *kw >= 0.0),
        "levels_kw",
        "must hold at most 3 targets (levels 1-3), each a kW figure of 0 or more",
    )
}

impl OpenAdrConfig {
    /// Checks what parses but cannot work; keys are relative to this VEN's table (the caller
    /// puts them [`under`](adit_config::Invalid::under) its place, `adapters.openadr[0]`).
    pub fn validate(&self) -> Checked {
        check(
            names::is_token(&self.site),
            "site",
            format!("{:?} must be 1-64 characters of A-Z a-z 0-9 _ -", self.site),
        )?;
        check_vtn_url(&self.vtn_url)?;
        for (what, text) in [
            ("ven_name", Some(&self.ven_name)),
            ("ven_id", self.ven_id.as_ref()),
        ] {
            if let Some(text) = text {
                check(
                    !(text.is_empty()
                        || text.len() > messages::MAX_ID_BYTES
                        || text.chars().any(char::is_control)),
                    what,
                    format!("must be 1-{} printable bytes", messages::MAX_ID_BYTES),
                )?;
            }
        }
        check_levels(&self.levels_kw)?;
        check(
            self.capacity_kw.is_none_or(|kw| kw.is_finite() && kw > 0.0),
            "capacity_kw",
            "must be more than 0",
        )?;
        check(
            self.lead <= Duration::from_secs(86_400),
            "lead",
            "must be at most a day",
        )?;
        check(
            (Duration::from_secs(1)..=Duration::from_secs(3_600)).contains(&self.poll),
            "poll",
            "must be between 1s and 1h",
        )?;
        check(
            self.client_cert.is_some() == self.client_key.is_some(),
            "client_cert",
            "goes with client_key: set both or neither",
        )?;
        Ok(())
    }

    /// The book's policy for this site.
    pub fn policy(&self) -> book::Policy {
        book::Policy {
            opt_in: self.opt == OptPolicy::In,
            levels_kw: self.levels_kw.clone(),
            capacity_kw: self.capacity_kw,
            lead: self.lead,
        }
    }
}
