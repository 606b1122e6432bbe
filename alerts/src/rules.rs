//! Alert rules in Prometheus's rule-group shape — `groups: [{name, interval, rules: [{alert,
//! expr, for, keep_firing_for, labels, annotations}]}]` — where `expr` is SQL over adit's
//! tables returning one row per alerting series (its columns become labels; a numeric `value`
//! column is the alert's value). Read from YAML (a rules file) or JSON (the KV bucket and the
//! API); every rule is checked before it is accepted, and the error names the rule and field.

use std::collections::BTreeMap;
use std::time::Duration;

use adit_schemas::alerts::SEVERITIES;
use adit_sql::syntax::TextLimits;
use serde::{Deserialize, Serialize};

/// A rules file: its groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The groups.
    pub groups: Vec<RuleGroup>,
}

/// Rules evaluated together at one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    /// Its name (a subject token: the KV key and the alerts' id prefix).
    pub name: String,
    /// How often its rules are evaluated (`30s`, `1m`; default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// One alerting rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The alert's name (`PoolHashrateDrop`).
    pub alert: String,
    /// SQL returning one row per alerting series.
    pub expr: String,
    /// How long a series must keep alerting before the alert fires (default 0: at once).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// How long a firing alert keeps firing after its series stops alerting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// Labels added to every series (`severity`: info, warning — the default —, error or critical).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Texts for people (`summary`, `description`, `runbook_url`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A rule refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {reason}")]
pub struct InvalidRule {
    /// `group/alert.field`.
    pub place: String,
    /// Why.
    pub reason: String,
}

fn invalid(place: String, reason: impl Into<String>) -> InvalidRule {
    InvalidRule {
        place,
        reason: reason.into(),
    }
}

/// Parses a Prometheus-style duration (`90s`, `5m`, `1h30m`); empty is none.
pub fn duration(text: Option<&str>) -> Result<Duration, String> {
    match text.map(str::trim) {
        None | Some("") | Some("0") => Ok(Duration::ZERO),
        Some(t) => humantime::parse_duration(t).map_err(|e| format!("{t:?}: {e}")),
    }
}

/// The group of the alerts an operator raises by hand: never a rule group's name, so a rule
/// can neither clear nor shadow them.
pub const MANUAL_GROUP: &str = "manual";

/// Whether `s` is an alert or label name: a letter or `_`, then letters, digits or `_`, at
/// most 128 bytes (Prometheus's rule, bounded).
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 128
}

impl RuleFile {
    /// Reads YAML (or JSON, which is YAML) and checks every group, each `expr` against the
    /// SQL text limits it will be evaluated under.
    pub fn from_yaml(text: &str, limits: TextLimits) -> Result<Self, InvalidRule> {
        let file: RuleFile = serde_saphyr::from_str(text)
            .map_err(|e| invalid("rules file".into(), e.to_string()))?;
        let mut names: Vec<&str> = Vec::new();
        for group in &file.groups {
            group.validate(limits)?;
            if names.contains(&group.name.as_str()) {
                return Err(invalid(group.name.clone(), "a group name appears twice"));
            }
            names.push(&group.name);
        }
        Ok(file)
    }
}

impl RuleGroup {
    /// Its evaluation interval.
    pub fn every(&self) -> Duration {
        duration(self.interval.as_deref())
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60))
    }

    /// Checks the group and each rule: names, durations, labels, and that `expr` is one
    /// read-only query within `limits` (the engine's `query.limits`, so a rule stored is a rule
    /// that can be evaluated).
    pub fn validate(&self, limits: TextLimits) -> Result<(), InvalidRule> {
        if !adit_schemas::names::is_token(&self.name) {
            return Err(invalid(
                self.name.clone(),
                "the group name must be 1-64 of A-Z a-z 0-9 _ -",
            ));
        }
        if self.name == MANUAL_GROUP {
            return Err(invalid(
                self.name.clone(),
                "the group name is kept for alerts raised by hand (POST /api/v1/alerts/raise)",
            ));
        }
        let every = duration(self.interval.as_deref())
            .map_err(|e| invalid(format!("{}.interval", self.name), e))?;
        if !every.is_zero()
            && !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&every)
        {
            return Err(invalid(
                format!("{}.interval", self.name),
                "must be from 1s to 24h",
            ));
        }
        if self.rules.is_empty() {
            return Err(invalid(
                self.name.clone(),
                "a group needs at least one rule",
            ));
        }
        let mut seen = Vec::new();
        for rule in &self.rules {
            let at = |field: &str| format!("{}/{}.{field}", self.name, rule.alert);
            if !is_name(&rule.alert) {
                return Err(invalid(
                    at("alert"),
                    "an alert name is a letter or _ then letters, digits or _",
                ));
            }
            if seen.contains(&rule.alert.as_str()) {
                return Err(invalid(at("alert"), "appears twice in the group"));
            }
            seen.push(&rule.alert);
            adit_sql::syntax::check_query(&rule.expr, limits)
                .map_err(|e| invalid(at("expr"), e))?;
            for (field, value) in [
                ("for", &rule.for_),
                ("keep_firing_for", &rule.keep_firing_for),
            ] {
                let d = duration(value.as_deref()).map_err(|e| invalid(at(field), e))?;
                if d > Duration::from_secs(7 * 86_400) {
                    return Err(invalid(at(field), "must be at most 7 days"));
                }
            }
            for key in rule.labels.keys().chain(rule.annotations.keys()) {
                if !is_name(key) {
                    return Err(invalid(
                        at("labels"),
                        format!("{key:?} is not a label name"),
                    ));
                }
            }
            if let Some(s) = rule.labels.get("severity")
                && !SEVERITIES.contains(&s.as_str())
            {
                return Err(invalid(
                    at("labels.severity"),
                    format!("{s:?} must be info, warning, error or critical"),
                ));
            }
        }
        Ok(())
    }
}

impl Rule {
    /// Its `for`.
    pub fn hold(&self) -> Duration {
        duration(self.for_.as_deref()).unwrap_or_default()
    }

    /// Its `keep_firing_for`.
    pub fn keep_firing(&self) -> Duration {
        duration(self.keep_firing_for.as_deref()).unwrap_or_default()
    }

    /// Its severity (the `severity` label; warning when none).
    pub fn severity(&self) -> &str {
        self.labels
            .get("severity")
            .map(String::as_str)
            .unwrap_or("warning")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
groups:
  - name: farm
    interval: 30s
    rules:
      - alert: HighTemperature
        expr: SELECT site, sensor, max(value) AS value FROM sensor_readings WHERE kind = 'temperature' GROUP BY site, sensor HAVING max(value) > 35
        for: 2m
        labels: { severity: critical }
        annotations: { summary: "A sensor reads over 35 °C" }
"#;

    #[test]
    fn a_prometheus_shaped_file_reads_and_checks() {
        let file = RuleFile::from_yaml(FILE, TextLimits::default()).unwrap();
        let group = &file.groups[0];
        assert_eq!(group.every(), Duration::from_secs(30));
        assert_eq!(group.rules[0].hold(), Duration::from_secs(120));
        assert_eq!(group.rules[0].severity(), "critical");
        // Each of the four severities is accepted, `error` between warning and critical.
        for severity in SEVERITIES {
            let file = FILE.replace("severity: critical", &format!("severity: {severity}"));
            let file = RuleFile::from_yaml(&file, TextLimits::default()).unwrap();
            assert_eq!(file.groups[0].rules[0].severity(), severity);
        }
    }

    #[test]
    fn a_bad_rule_is_refused_naming_its_place() {
        for (bad, place) in [
            (
                FILE.replace("SELECT site", "SELEC site"),
                "farm/HighTemperature.expr",
            ),
            (
                FILE.replace("expr: SELECT", "expr: DELETE FROM shares; SELECT"),
                "farm/HighTemperature.expr",
            ),
            (
                FILE.replace("for: 2m", "for: soon"),
                "farm/HighTemperature.for",
            ),
            (
                FILE.replace("severity: critical", "severity: dire"),
                "farm/HighTemperature.labels.severity",
            ),
            (
                FILE.replace("alert: HighTemperature", "alert: 9lives"),
                "farm/9lives.alert",
            ),
            (
                FILE.replace("interval: 30s", "interval: 2d"),
                "farm.interval",
            ),
        ] {
            let err = RuleFile::from_yaml(&bad, TextLimits::default()).unwrap_err();
            assert_eq!(err.place, place, "{err}");
        }
        assert!(
            RuleFile::from_yaml("groups: [{name: x, rulez: []}]", TextLimits::default()).is_err()
        );
    }

    #[test]
    fn an_expr_is_checked_against_the_limits_it_will_run_under() {
        let tight = TextLimits {
            max_bytes: 64,
            max_depth: 128,
        };
        let err = RuleFile::from_yaml(FILE, tight).unwrap_err();
        assert_eq!(err.place, "farm/HighTemperature.expr", "{err}");
        assert!(err.reason.contains("max_statement_bytes"), "{err}");
        let deep = FILE.replace(
            "max(value) > 35",
            &format!("max(value) > 35{}", "+1".repeat(40)),
        );
        let shallow = TextLimits {
            max_bytes: 4096,
            max_depth: 16,
        };
        let err = RuleFile::from_yaml(&deep, shallow).unwrap_err();
        assert!(err.reason.contains("max_expression_depth"), "{err}");
        assert!(RuleFile::from_yaml(&deep, TextLimits::default()).is_ok());
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    #[test]
    fn the_default_rules_file_reads_and_checks() {
        let file =
            RuleFile::from_yaml(crate::evaluate::DEFAULT_RULES, TextLimits::default()).unwrap();
        let names: Vec<&str> = file
            .groups
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| r.alert.as_str()))
            .collect();
        for expected in [
            "PoolHashrateDrop",
            "NoShares",
            "NodeErrors",
            "PayoutsStuck",
            "MinerOffline",
            "HighTemperature",
            "PowerOverAllocation",
        ] {
            assert!(names.contains(&expected), "{expected} missing: {names:?}");
        }
    }
}
