//! What the API's writing routes share: reading a JSON body into its type, and publishing an
//! event (an operator's note, override or act on an alert) after validating it, for the
//! pipeline that owns its table to write.

use adit_bus::publish::Outgoing;
use adit_schemas::{Kinded, ValidationPolicy};
use chrono::Utc;
use serde::de::DeserializeOwned;

use crate::error::{QueryError, Result};
use crate::state::AppState;

/// The body as `T`, or a 400 saying why not.
pub(crate) fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| QueryError::BadRequest(format!("body: {e}")))
}

/// Validates `event` (a 400 with the reason) and publishes it, waiting until stored; `what`
/// names the feature in the 503 a server without NATS answers.
pub(crate) async fn publish<E: Kinded>(state: &AppState, event: E, what: &str) -> Result<()> {
    event
        .validate(&ValidationPolicy::default(), Utc::now())
        .map_err(|e| QueryError::BadRequest(e.reason))?;
    let publisher = state.publisher.as_ref().ok_or_else(|| {
        QueryError::Unavailable(format!("{what} needs NATS, and this server has none"))
    })?;
    publisher
        .publish_one(&Outgoing::event(&event.into_any()))
        .await
        .map_err(|e| QueryError::Unavailable(e.to_string()))?;
    Ok(())
}
