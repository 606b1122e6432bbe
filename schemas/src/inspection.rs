//! An inspection of a site or a pool (issue 61): who inspected it, when, what they found and
//! how it ended, recorded by an operator over the API (`POST /api/v1/inspections`) with the
//! token that recorded it. Published on `control.inspection.<target>` and landed in the
//! `inspections` table by its own landing; the compliance report of a site's day lists the
//! inspections of that site and of the pools its machines mine at.

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strum::{AsRefStr, EnumString, VariantNames};

use crate::arrow_rows::{ts_field, utf8};
use crate::record::Event;
use crate::validate::{Invalid, ValidationPolicy, check_text, check_token};

/// The second token of the inspections' subject (`control.inspection.<target>`): no site may
/// be named so.
pub const INSPECTION_TOKEN: &str = "inspection";

/// Most bytes of an inspection's findings.
pub const FINDINGS_BYTES: usize = 8_000;

/// What an inspection is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsRefStr, EnumString, VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    /// A site.
    Site,
    /// A pool.
    Pool,
}

/// How an inspection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsRefStr, EnumString, VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// Nothing to remark.
    Pass,
    /// Passed, with findings to act on.
    Remarks,
    /// Failed: the findings must be put right.
    Fail,
}

/// One inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inspection {
    /// Unique to this record: `<µs since the epoch>-<64 random bits, hex>`.
    pub id: String,
    /// `site` or `pool` ([`Scope`]).
    pub scope: String,
    /// The site's or the pool's id.
    pub target: String,
    /// Who inspected: a name, a badge number or an authority.
    pub inspector: String,
    /// When the inspection took place.
    pub inspected_at: DateTime<Utc>,
    /// `pass`, `remarks` or `fail` ([`Outcome`]).
    pub outcome: String,
    /// What was found.
    pub findings: String,
    /// The name of the token that recorded it.
    pub recorded_by: String,
    /// When it was recorded.
    pub ts: DateTime<Utc>,
}

impl Event for Inspection {
    fn dedupe_id(&self) -> String {
        format!("inspection:{}", self.id)
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_text("id", &self.id, 64)?;
        if self.scope.parse::<Scope>().is_err() {
            return Err(Invalid::new(format!(
                "scope {:?} must be one of {:?}",
                self.scope,
                Scope::VARIANTS
            )));
        }
        check_token("target", &self.target)?;
        check_text("inspector", &self.inspector, 200)?;
        if self.outcome.parse::<Outcome>().is_err() {
            return Err(Invalid::new(format!(
                "outcome {:?} must be one of {:?}",
                self.outcome,
                Outcome::VARIANTS
            )));
        }
        check_findings(&self.findings)?;
        check_text("recorded_by", &self.recorded_by, 256)?;
        if self.inspected_at > now + chrono::Duration::minutes(5) {
            return Err(Invalid::new("inspected_at is in the future"));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("id"),
            utf8("scope"),
            utf8("target"),
            utf8("inspector"),
            ts_field("inspected_at"),
            utf8("outcome"),
            utf8("findings"),
            utf8("recorded_by"),
            ts_field("ts"),
        ]
    }
}

/// Findings are prose: 1 to [`FINDINGS_BYTES`], line breaks and tabs allowed, no other
/// control characters.
fn check_findings(findings: &str) -> Result<(), Invalid> {
    if findings.trim().is_empty() || findings.len() > FINDINGS_BYTES {
        return Err(Invalid::new(format!(
            "findings must be 1-{FINDINGS_BYTES} bytes of text"
        )));
    }
    if findings
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Invalid::new(
            "findings must not hold control characters other than line breaks and tabs",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspection() -> Inspection {
        let ts = Utc::now();
        Inspection {
            id: "1-ab".into(),
            scope: "site".into(),
            target: "site-01".into(),
            inspector: "K. Berg, NVE".into(),
            inspected_at: ts - chrono::Duration::days(1),
            outcome: "remarks".into(),
            findings: "Meter seal intact.\nFan 3 guard loose.".into(),
            recorded_by: "operator".into(),
            ts,
        }
    }

    #[test]
    fn a_sound_inspection_checks_and_each_bad_field_is_refused() {
        let policy = ValidationPolicy::default();
        let now = Utc::now();
        inspection().check_values(&policy, now).unwrap();
        type Spoil = fn(&mut Inspection);
        let bad: [(&str, Spoil); 6] = [
            ("scope", |i| i.scope = "farm".into()),
            ("target", |i| i.target = "site 01".into()),
            ("outcome", |i| i.outcome = "maybe".into()),
            ("findings", |i| i.findings = " \n".into()),
            ("findings", |i| i.findings = "a\u{1b}[2J".into()),
            ("inspected_at", |i| {
                i.inspected_at = Utc::now() + chrono::Duration::days(2)
            }),
        ];
        for (field, spoil) in bad {
            let mut i = inspection();
            spoil(&mut i);
            let e = i.check_values(&policy, now).unwrap_err();
            assert!(e.reason.contains(field), "{field}: {}", e.reason);
        }
    }
}
