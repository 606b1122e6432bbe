//! An operator's hands on one machine over HTTP: `POST /api/v1/control/commands` (operate;
//! audited) sleeps, wakes or restarts a named machine through its API, or switches its PDU
//! outlet on, off or through a cycle. Each becomes an [`Override`] of the command's kind on
//! `control.override.<site>` with the caller's token name, so the curtailment pipeline — the
//! one place that knows the site's mode — carries it out at its next step: a decision row
//! (rule `operator`, or `operator_refused` for one that would power a machine up during an
//! emergency), a command to the actuators, and their outcomes in `commands`. A machine put
//! to sleep stays asleep, untouched by the controller, until a `wake` or until `hold` ends.

use adit_schemas::overrides::{MAX_OVERRIDE_HOURS, OverrideKind};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller, Role};
use crate::error::{QueryError, Result};
use crate::routes::overrides::Checked;
use crate::publish::body;
use crate::state::AppState;

/// What an operator asks of one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAction {
    /// Sleep it through its API, held asleep until a `wake` (or `hold` ends).
    Sleep,
    /// Wake it (ends its `sleep`); refused during an emergency.
    Wake,
    /// Restart it through its API; refused during an emergency.
    Reboot,
    /// Switch its PDU outlet on; refused during an emergency.
    OutletOn,
    /// Switch its PDU outlet off.
    OutletOff,
    /// Switch its PDU outlet off for `off_seconds` (at least the PDU's `min_off`), then on;
    /// refused during an emergency.
    OutletCycle,
}

/// A command for one machine.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    /// The site.
    pub site: String,
    /// The machine.
    pub machine: String,
    /// sleep, wake, reboot, outlet_on, outlet_off or outlet_cycle.
    pub action: OperatorAction,
    /// Why.
    pub reason: String,
    /// How long a `sleep` holds the machine (`8h`; at most 7 days, the default).
    #[serde(default)]
    pub hold: Option<String>,
    /// How long an `outlet_cycle` keeps the outlet off (1–600 s; default 10).
    #[serde(default)]
    pub off_seconds: Option<f64>,
}

/// The override kind and value that carry `action`.
fn kind_of(action: OperatorAction, off_seconds: Option<f64>) -> (OverrideKind, Option<f64>) {
    match action {
        OperatorAction::Sleep => (OverrideKind::Sleep, None),
        OperatorAction::Wake => (OverrideKind::Wake, None),
        OperatorAction::Reboot => (OverrideKind::Reboot, None),
        OperatorAction::OutletOn => (OverrideKind::Outlet, Some(1.0)),
        OperatorAction::OutletOff => (OverrideKind::Outlet, Some(0.0)),
        OperatorAction::OutletCycle => {
            (OverrideKind::OutletCycle, Some(off_seconds.unwrap_or(10.0)))
        }
    }
}

/// How long the override stands: a `sleep`'s hold, else a minute (it is carried out once).
fn lasts(action: OperatorAction, hold: Option<&str>) -> Result<chrono::Duration> {
    let most = chrono::Duration::hours(MAX_OVERRIDE_HOURS);
    let Some(text) = hold else {
        return Ok(if action == OperatorAction::Sleep {
            most
        } else {
            chrono::Duration::minutes(1)
        });
    };
    if action != OperatorAction::Sleep {
        return Err(QueryError::BadRequest("hold is for sleep only".into()));
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .filter(|d| *d <= most && *d > chrono::Duration::zero())
        .ok_or_else(|| {
            QueryError::BadRequest(format!(
                "hold {text:?}: must be a duration over 0 and at most {MAX_OVERRIDE_HOURS}h"
            ))
        })
}

/// Commands to the farm's devices, sent by operators.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(Role::Operate, OpenApiRouter::new().routes(routes!(create)))
}

/// Sends an operator's command to one machine (operate).
#[utoipa::path(post, path = "/api/v1/control/commands", tag = "farm",
    request_body = NewCommand,
    responses((status = 202, description = "Accepted: {\"id\": …}; carried out at the controller's next step (see decisions and commands)"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let new: NewCommand = body(&bytes)?;
    if new.action != OperatorAction::OutletCycle && new.off_seconds.is_some() {
        return Err(QueryError::BadRequest(
            "off_seconds is for outlet_cycle only".into(),
        ));
    }
    let duration = lasts(new.action, new.hold.as_deref())?;
    let (kind, value) = kind_of(new.action, new.off_seconds);
    let checked = Checked {
        site: new.site,
        kind,
        machine: Some(new.machine),
        value,
        reason: new.reason,
        lasts: duration,
        mode: None,
    };
    // The machine is in the id: two machines' commands in one microsecond stay two.
    let id = |o: &Checked, ts: DateTime<Utc>| {
        let machine = o.machine.as_deref().unwrap_or_default();
        format!(
            "{}:{}:{machine}:{}",
            o.site,
            o.kind.as_str(),
            ts.timestamp_micros()
        )
    };
    checked.publish(&state, caller.name, id, "commands").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_is_its_override() {
        assert_eq!(
            kind_of(OperatorAction::OutletOff, None),
            (OverrideKind::Outlet, Some(0.0))
        );
        assert_eq!(
            kind_of(OperatorAction::OutletCycle, Some(30.0)),
            (OverrideKind::OutletCycle, Some(30.0))
        );
        assert_eq!(
            lasts(OperatorAction::Sleep, None).ok(),
            Some(chrono::Duration::hours(MAX_OVERRIDE_HOURS))
        );
        assert_eq!(
            lasts(OperatorAction::Sleep, Some("8h")).ok(),
            Some(chrono::Duration::hours(8))
        );
        assert!(lasts(OperatorAction::Sleep, Some("30d")).is_err());
        assert!(lasts(OperatorAction::Sleep, Some("0s")).is_err());
        assert!(lasts(OperatorAction::Wake, Some("1h")).is_err());
    }
}
