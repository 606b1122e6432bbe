//! adit's compliance reports.
//!
//! For one site and one of its local days: the figures an energy auditor asks for (energy
//! against allocation, peak power, hours over the thresholds, violations, every curtailment
//! event, data quality and a score whose formula the report states), computed by SQL over the
//! tables the pipelines write ([`compute`]); rendered as a self-contained HTML page with SVG
//! charts and as CSV ([`render`]); and closed once per day by the nightly job ([`job`]), which
//! writes `compliance_daily` in revisions, each curtailment event's minutes to
//! `curtailment_evidence` ([`evidence`]) and the rendered files to a folder. It serves nothing
//! over HTTP (the query API renders stored or provisional reports through this crate).

pub mod compute;
pub mod error;
pub mod evidence;
pub mod job;
pub mod model;
pub mod render;
mod svg;

pub use compute::{compute, local_window};
pub use error::{Error, Result};
pub use job::{ComplianceConfig, ComplianceJob};
pub use model::ComplianceReport;
