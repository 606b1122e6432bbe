//! An OpenADR 3.1 VEN per site (REST and JSON), beside the 2.0b VEN ([`super::openadr`]):
//! chosen per site in config (`[[adapters.openadr3]]`), it polls the VTN's programs and events,
//! turns what they ask into the site's grid signals through the same steering as the 2.0b VEN,
//! and posts the site's measured load back as reports.
//!
//! - [`wire`]: the 3.1 objects the VEN reads and writes.
//! - [`events`]: what events ask of a site at a time (pure; the 2.0b book's [`Ask`]).
//! - `ven`: the task.
//!
//! Its HTTP goes through adit's `Outbound` (the egress policy, bounded replies), not
//! `openleadr-client`, whose own reqwest 0.13 client would bypass that policy and whose wire
//! crate pulls in sqlx; the shapes are OpenLEADR's (`openleadr-wire` 0.2.8), checked end to
//! end against its VTN.
//!
//! [`Ask`]: super::openadr::book::Ask

pub mod events;
mod ven;
pub mod wire;

pub use ven::run;

use std::time::Duration;

use adit_config::{Checked, check};
use adit_schemas::names;
use serde::{Deserialize, Serialize};

use super::openadr::book::Policy;
use super::openadr::{OptPolicy, check_levels, check_vtn_url};

/// `[[adapters.openadr3]]`: one site's OpenADR 3.1 VEN.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAdr3Config {
    /// The site the events apply to (and whose load is reported).
    pub site: String,
    /// The VTN's base URL (its `/programs`, `/events`, `/reports` and `/auth/token` below it).
    pub vtn_url: String,
    /// The client id the utility gave this VEN.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// This VEN's name at the VTN (default: the site).
    #[serde(default)]
    pub ven_name: String,
    /// The programs followed, by name (default: every program the VTN shows this VEN).
    #[serde(default)]
    pub programs: Option<Vec<String>>,
    /// `in`: act on every event adit can read; `out`: act on none.
    #[serde(default)]
    pub opt: OptPolicy,
    /// Target site load, kW, for `SIMPLE` levels 1, 2 and 3.
    #[serde(default)]
    pub levels_kw: Vec<f64>,
    /// Publish the events' `PRICE`s as the site's energy price (then the site has no other
    /// price feed).
    #[serde(default)]
    pub prices: bool,
    /// How long before an interval's start the site begins to shed. The target is due at
    /// the start.
    #[serde(default = "default_lead", with = "humantime_serde")]
    pub lead: Duration,
    /// Time between two polls.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
    /// How often the site's load is sampled for reports.
    #[serde(default = "default_sample", with = "humantime_serde")]
    pub sample_every: Duration,
    /// How often the samples are reported, for each event asking then.
    #[serde(default = "default_report", with = "humantime_serde")]
    pub report_every: Duration,
}

impl std::fmt::Debug for OpenAdr3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAdr3Config")
            .field("site", &self.site)
            .field("vtn_url", &adit_egress::redact(&self.vtn_url))
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("ven_name", &self.ven_name)
            .field("programs", &self.programs)
            .finish_non_exhaustive()
    }
}

fn default_lead() -> Duration {
    Duration::from_secs(60)
}

fn default_poll() -> Duration {
    Duration::from_secs(10)
}

fn default_sample() -> Duration {
    Duration::from_secs(60)
}

fn default_report() -> Duration {
    Duration::from_secs(300)
}

impl OpenAdr3Config {
    /// Checks what parses but cannot work; keys are relative to this VEN's table.
    pub fn validate(&self) -> Checked {
        check(
            names::is_token(&self.site),
            "site",
            format!("{:?} must be 1-64 characters of A-Z a-z 0-9 _ -", self.site),
        )?;
        check_vtn_url(&self.vtn_url)?;
        // OpenADR 3 identifiers: [A-Za-z0-9_-], at most 128.
        check(
            !self.client_id.is_empty()
                && self.client_id.len() <= wire::MAX_ID_BYTES
                && self
                    .client_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "client_id",
            "must be 1-128 characters of A-Z a-z 0-9 _ -",
        )?;
        check(
            !self.client_secret.is_empty() && self.client_secret.len() <= 1_024,
            "client_secret",
            "must be 1-1024 bytes",
        )?;
        check(
            self.ven_name.is_empty() || wire::is_id(&self.ven_name),
            "ven_name",
            "must be 1-128 printable bytes",
        )?;
        check_levels(&self.levels_kw)?;
        check(
            self.lead <= Duration::from_secs(86_400),
            "lead",
            "must be at most a day",
        )?;
        for (key, every) in [
            ("poll", self.poll),
            ("sample_every", self.sample_every),
            ("report_every", self.report_every),
        ] {
            check(
                (Duration::from_secs(1)..=Duration::from_secs(3_600)).contains(&every),
                key,
                "must be between 1s and 1h",
            )?;
        }
        Ok(())
    }

    /// The site's policy, as the events read it.
    pub fn policy(&self) -> Policy {
        Policy {
            opt_in: self.opt == OptPolicy::In,
            levels_kw: self.levels_kw.clone(),
            capacity_kw: None,
            lead: self.lead,
        }
    }

    /// This config with its defaults filled in.
    pub(crate) fn resolved(&self) -> Self {
        let mut config = self.clone();
        if config.ven_name.is_empty() {
            config.ven_name = config.site.clone();
        }
        config
    }
}
