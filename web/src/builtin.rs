//! The dashboards adit ships: farm energy, the pool, grid and compliance. They are ordinary
//! stored dashboards (`builtin/*.json`), written into the bucket at start when their id was
//! never written, owned by [`OWNER`] (no caller can hold that name, so only admins change
//! them) and shared with the read role. The same renderer draws them as any other; an
//! operator who wants another arrangement saves a copy of their own. An admin's edit or
//! delete is kept across restarts and upgrades: a key with history is never written again.

use crate::error::{DashboardError, Result};
use crate::model::Dashboard;
use crate::store::{DashboardStore, Stored};
use adit_sql::syntax::TextLimits;

/// The owner of the shipped dashboards: not a name any token or JWT can carry.
pub const OWNER: &str = "adit (built in)";

/// Each shipped dashboard: its id and JSON.
const SHIPPED: [(&str, &str); 3] = [
    ("farm-energy", include_str!("builtin/farm-energy.json")),
    ("pool", include_str!("builtin/pool.json")),
    (
        "grid-compliance",
        include_str!("builtin/grid-compliance.json"),
    ),
];

/// The shipped dashboards, parsed and checked against `limits`.
pub fn shipped(limits: TextLimits) -> Result<Vec<(&'static str, Dashboard)>> {
    SHIPPED
        .iter()
        .map(|(id, json)| {
            let broken =
                |e: String| DashboardError::Broken(format!("built-in dashboard {id}: {e}"));
            let dashboard: Dashboard =
                serde_json::from_str(json).map_err(|e| broken(e.to_string()))?;
            dashboard
                .validate(limits)
                .map_err(|r| broken(format!("{}: {}", r.field, r.reason)))?;
            Ok((*id, dashboard))
        })
        .collect()
}

/// Writes each shipped dashboard whose id the bucket never held; the ids written. Another
/// process writing the same one first is not an error.
pub async fn install(store: &DashboardStore, limits: TextLimits) -> Result<Vec<&'static str>> {
    let mut written = Vec::new();
    for (id, dashboard) in shipped(limits)? {
        if store.ever_written(id).await? {
            continue;
        }
        let stored = Stored {
            id: id.to_string(),
            owner: OWNER.to_string(),
            author: OWNER.to_string(),
            updated: chrono::Utc::now(),
            link: None,
            dashboard,
        };
        match store.put(&stored, None).await {
            Ok(_) => written.push(id),
            Err(DashboardError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_dashboard_parses_and_passes_the_checks_a_user_s_would() {
        let all = shipped(TextLimits::default()).unwrap();
        assert_eq!(all.len(), SHIPPED.len());
        for (id, d) in &all {
            assert!(crate::model::plain_id(id), "{id}");
            assert!(
                matches!(d.visibility, crate::model::Visibility::Shared { .. }),
                "{id} is shared with readers"
            );
            assert!(!d.panels.is_empty());
        }
    }
}
