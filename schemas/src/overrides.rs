//! An operator's override of the farm controller (`control.override.<site>`): pin the fans,
//! take a machine out of control, stand in for the grid signal or a temperature for a test,
//! force a load target or hold the site as it is — each until it expires — or write the
//! site's mode once (admin; the old controller's `raw-state`), each written with
//! the token name that made it, landed in the `overrides` table and named in the inputs of
//! every decision it influenced.

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::{f64_opt, ts_field, utf8, utf8_opt};
use crate::control::SiteMode;
use crate::record::Event;
use crate::validate::{Invalid, ValidationPolicy, check_range, check_token};

/// The second subject token of overrides (reserved: no site may be named so).
pub const OVERRIDE_TOKEN: &str = "override";
/// The longest an override may last.
pub const MAX_OVERRIDE_HOURS: i64 = 7 * 24;

/// What an override does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum OverrideKind {
    /// Fans pinned at `value` (1–9); an emergency or failsafe still sets 9.
    FanLevel,
    /// `machine` is neither shed nor woken (its power still counts).
    ExcludeMachine,
    /// The grid signal is replaced: a curtailment to `value` kW (none: no curtailment).
    Grid,
    /// The site's hottest temperature reads `value` °C.
    Temperature,
    /// A load target of `value` kW, above the grid's and the price's (admin).
    Target,
    /// No machine is shed or woken; fans and the emergency shutdown still act (admin).
    Hold,
    /// Ends the override `cancels` early.
    Cancel,
    /// An operator put `machine` to sleep: it is slept now and neither woken nor shed by the
    /// controller until a `wake` of it or until it expires.
    Sleep,
    /// An operator wakes `machine` (ending its `sleep`); refused during an emergency.
    Wake,
    /// An operator restarts `machine` through its API; refused during an emergency.
    Reboot,
    /// An operator switches `machine`'s PDU outlet on (`value` 1; refused during an
    /// emergency) or off (0).
    Outlet,
    /// An operator switches `machine`'s outlet off for `value` seconds and on again; refused
    /// during an emergency.
    OutletCycle,
    /// An admin writes the site's controller mode as `mode` (the old controller's
    /// `raw-state`): carried out once, at the next step, which then starts from that mode.
    Mode,
}

impl OverrideKind {
    /// Its name, as in the table.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether only an admin may set it (it changes the site's mode).
    pub fn needs_admin(self) -> bool {
        matches!(self, Self::Target | Self::Hold | Self::Mode)
    }

    /// Whether it is carried out once at the controller's next step (an operator's command
    /// or a mode write) rather than kept in force until it expires.
    pub fn is_once(self) -> bool {
        self.is_command() || self == Self::Mode
    }

    /// Whether it is an operator's command to one machine (`POST /api/v1/control/commands`),
    /// carried out once by the controller rather than steering it.
    pub fn is_command(self) -> bool {
        matches!(
            self,
            Self::Sleep | Self::Wake | Self::Reboot | Self::Outlet | Self::OutletCycle
        )
    }
}

/// One override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// `<site>:<kind>:<µs>`: unique to this override.
    pub id: String,
    /// The site.
    pub site: String,
    /// What it does.
    pub kind: OverrideKind,
    /// The machine (`exclude_machine`).
    #[serde(default)]
    pub machine: Option<String>,
    /// Its figure (fan level, kW, °C).
    #[serde(default)]
    pub value: Option<f64>,
    /// The override it ends (`cancel`).
    #[serde(default)]
    pub cancels: Option<String>,
    /// The mode written (`mode`).
    #[serde(default)]
    pub mode: Option<SiteMode>,
    /// Why, in the operator's words.
    pub reason: String,
    /// The token name that made it.
    pub by: String,
    /// When it was made.
    pub ts: DateTime<Utc>,
    /// When it ends by itself.
    pub expires: DateTime<Utc>,
}

impl Override {
    /// Whether it is in force at `at`.
    pub fn active(&self, at: DateTime<Utc>) -> bool {
        self.ts <= at && at < self.expires
    }
}

impl Event for Override {
    fn dedupe_id(&self) -> String {
        format!("override:{}", self.id)
    }
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn check_values(&self, policy: &ValidationPolicy, now: DateTime<Utc>) -> Result<(), Invalid> {
        if self.id.is_empty() || self.by.is_empty() {
            return Err(Invalid::new("an override needs its id and author"));
        }
        if self.reason.trim().is_empty() || self.reason.len() > 2000 {
            return Err(Invalid::new("reason must be 1-2000 characters"));
        }
        if self.expires <= self.ts {
            return Err(Invalid::new("expires must be after ts"));
        }
        if self.expires - self.ts > chrono::Duration::hours(MAX_OVERRIDE_HOURS) {
            return Err(Invalid::new(format!(
                "an override lasts at most {MAX_OVERRIDE_HOURS} hours"
            )));
        }
        let value = |lo: f64, hi: f64| match self.value {
            Some(v) => check_range("value", v, lo, hi),
            None => Err(Invalid::new(format!(
                "a {} override needs a value",
                self.kind.as_str()
            ))),
        };
        match self.kind {
            OverrideKind::FanLevel => {
                value(1.0, 9.0)?;
                if self.value.is_some_and(|v| v.fract() != 0.0) {
                    return Err(Invalid::new("value must be a whole fan level"));
                }
            }
            OverrideKind::Temperature => value(-60.0, 150.0)?,
            OverrideKind::Target => value(0.0, 1e7)?,
            OverrideKind::Grid => {
                if self.value.is_some() {
                    value(0.0, 1e7)?;
                }
            }
            OverrideKind::ExcludeMachine
            | OverrideKind::Sleep
            | OverrideKind::Wake
            | OverrideKind::Reboot => {
                check_token("machine", self.machine.as_deref().unwrap_or_default())?;
            }
            OverrideKind::Outlet => {
                check_token("machine", self.machine.as_deref().unwrap_or_default())?;
                if !matches!(self.value, Some(v) if v == 0.0 || v == 1.0) {
                    return Err(Invalid::new("an outlet's value is 1 (on) or 0 (off)"));
                }
            }
            OverrideKind::OutletCycle => {
                check_token("machine", self.machine.as_deref().unwrap_or_default())?;
                value(1.0, 600.0)?;
            }
            OverrideKind::Cancel => {
                if self.cancels.as_deref().is_none_or(str::is_empty) {
                    return Err(Invalid::new("a cancel names the override it ends"));
                }
            }
            OverrideKind::Hold => {}
            OverrideKind::Mode => {
                if self.mode.is_none() {
                    return Err(Invalid::new("a mode write names the mode"));
                }
            }
        }
        if self.kind != OverrideKind::Mode && self.mode.is_some() {
            return Err(Invalid::new("only a mode write names a mode"));
        }
        policy.check_ts(self.ts, now)
    }
    fn fields() -> Vec<Field> {
        vec![
            utf8("id"),
            utf8("site"),
            utf8("kind"),
            utf8_opt("machine"),
            f64_opt("value"),
            utf8_opt("cancels"),
            utf8("reason"),
            utf8("by"),
            ts_field("ts"),
            ts_field("expires"),
            utf8_opt("mode"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(kind: OverrideKind, value: Option<f64>) -> Override {
        let ts = Utc::now();
        Override {
            id: format!("s1:{}:1", kind.as_str()),
            site: "s1".into(),
            kind,
            machine: None,
            value,
            cancels: None,
            mode: None,
            reason: "test".into(),
            by: "ops".into(),
            ts,
            expires: ts + chrono::Duration::hours(1),
        }
    }

    #[test]
    fn overrides_are_checked_with_a_reason() {
        let policy = ValidationPolicy::default();
        let now = Utc::now();
        assert!(
            o(OverrideKind::FanLevel, Some(7.0))
                .validate(&policy, now)
                .is_ok()
        );
        assert!(o(OverrideKind::Grid, None).validate(&policy, now).is_ok());
        for (bad, needle) in [
            (o(OverrideKind::FanLevel, Some(10.0)), "value"),
            (o(OverrideKind::FanLevel, Some(2.5)), "whole"),
            (o(OverrideKind::Target, None), "needs a value"),
            (o(OverrideKind::ExcludeMachine, None), "machine"),
            (o(OverrideKind::Cancel, None), "names the override"),
            (o(OverrideKind::Mode, None), "names the mode"),
            (
                Override {
                    mode: Some(SiteMode::Curtailed),
                    ..o(OverrideKind::Hold, None)
                },
                "only a mode write",
            ),
            (
                Override {
                    expires: now - chrono::Duration::hours(1),
                    ..o(OverrideKind::Hold, None)
                },
                "expires",
            ),
            (
                Override {
                    expires: now + chrono::Duration::days(30),
                    ..o(OverrideKind::Hold, None)
                },
                "at most",
            ),
        ] {
            let err = bad.validate(&policy, now).unwrap_err();
            assert!(err.reason.contains(needle), "{needle}: {}", err.reason);
        }
        assert!(
            Override {
                mode: Some(SiteMode::Curtailed),
                ..o(OverrideKind::Mode, None)
            }
            .validate(&policy, now)
            .is_ok()
        );
        assert!(OverrideKind::Hold.needs_admin());
        assert!(OverrideKind::Mode.needs_admin() && OverrideKind::Mode.is_once());
        assert!(!OverrideKind::FanLevel.needs_admin());
    }
}
