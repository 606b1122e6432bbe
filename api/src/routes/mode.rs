//! An admin's direct write of a site's controller mode over HTTP: `POST /api/v1/control/mode`
//! (admin; audited), the old controller's `raw-state`. It becomes an [`Override`] of kind
//! `mode` on `control.override.<site>` with the caller's token name and reason, landed in
//! `overrides`; the curtailment pipeline writes the mode at its next step, records a decision
//! (rule `operator`, action `mode`, from the mode before to the one written) and steps on from
//! it — so the mode written is a starting point, and the rules in force still decide what
//! follows (a written `running` during a grid curtailment is curtailing again at the same
//! step; a written `emergency` sleeps every machine until its cooldown has passed).
//!
//! [`Override`]: adit_schemas::overrides::Override

use adit_schemas::control::SiteMode;
use adit_schemas::overrides::OverrideKind;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Access, Caller, Role};
use crate::error::Result;
use crate::publish::body;
use crate::routes::overrides::{Checked, id_of};
use crate::state::AppState;

/// A mode to write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeWrite {
    /// The site.
    pub site: String,
    /// running, curtailing, curtailed, resuming, emergency or failsafe.
    #[schema(value_type = String)]
    pub mode: SiteMode,
    /// Why, in the admin's words (kept in `overrides` and the decision's inputs).
    pub reason: String,
}

/// The mode write: admins only.
pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState> {
    access.at(Role::Admin, OpenApiRouter::new().routes(routes!(write)))
}

/// Writes a site's controller mode (admin): carried out once, at the controller's next step.
#[utoipa::path(post, path = "/api/v1/control/mode", tag = "farm",
    request_body = ModeWrite,
    responses((status = 202, description = "Accepted: {\"id\": …}; written at the controller's next step (see decisions, rule operator, action mode)"),
              (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn write(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let new: ModeWrite = body(&bytes)?;
    let checked = Checked {
        site: new.site,
        kind: OverrideKind::Mode,
        machine: None,
        value: None,
        reason: new.reason,
        lasts: chrono::Duration::minutes(1),
        mode: Some(new.mode),
    };
    let id = |o: &Checked, ts| id_of(&o.site, o.kind, ts);
    checked.publish(&state, caller.name, id, "mode writes").await
}
