//! A hold on new payments. `adit restore` puts one: the restored `payments` table lacks what
//! the wallet paid after the backup was taken, so paying from it would pay those miners again.
//! While it is there the payer still settles the transactions it has recorded (sending one
//! again byte for byte can never pay twice) but starts none; `adit payments release` lifts it
//! once every transfer the wallet sent since the backup is in the table or accepted by the
//! operator ([`crate::reconcile`]).
//! Kept beside the tables (`_adit/payments/hold.json`), where every payer process reads it.

use adit_sinks::TableStore;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;

const PLACE: &[&str] = &["payments", "hold.json"];

/// Why payments are held, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// Why (what was restored).
    pub reason: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// When the restored backup was taken: the wallet's transfers from then on must be in the
    /// `payments` table before the hold is lifted (none: every transfer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<DateTime<Utc>>,
}

/// Holds new payments for `reason`; `taken_at`: when the restored backup was taken. A hold
/// already in force is replaced but keeps its `since` (payments have been held since then).
pub async fn put(
    store: &TableStore,
    reason: &str,
    taken_at: Option<DateTime<Utc>>,
) -> Result<Hold> {
    let since = get(store).await?.map_or_else(Utc::now, |h| h.since);
    let hold = Hold {
        reason: reason.to_string(),
        since,
        taken_at,
    };
    let bytes = serde_json::to_vec(&hold).map_err(|e| crate::Error::Hold(e.to_string()))?;
    store.put_beside(PLACE, bytes).await?;
    Ok(hold)
}

/// The hold in force, if any. One that cannot be read holds all the same.
pub async fn get(store: &TableStore) -> Result<Option<Hold>> {
    Ok(store.get_beside(PLACE).await?.map(|bytes| {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| Hold {
            reason: format!("a hold that cannot be read ({e})"),
            since: Utc::now(),
            taken_at: None,
        })
    }))
}

/// Lifts the hold; whether there was one.
pub async fn release(store: &TableStore) -> Result<bool> {
    Ok(store.delete_beside(PLACE).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hold_is_put_read_and_released_on_a_real_table_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        assert_eq!(get(&store).await.unwrap(), None);
        let held = put(&store, "restored adit-20261124T000000000Z", None)
            .await
            .unwrap();
        assert_eq!(get(&store).await.unwrap(), Some(held.clone()));
        let taken = Utc::now();
        let replaced = put(&store, "restored it", Some(taken)).await.unwrap();
        assert_eq!(replaced.since, held.since, "held since the first hold");
        assert_eq!(get(&store).await.unwrap().unwrap().taken_at, Some(taken));
        assert!(dir.path().join("_adit/payments/hold.json").is_file());
        assert!(release(&store).await.unwrap());
        assert_eq!(get(&store).await.unwrap(), None);
        assert!(!release(&store).await.unwrap(), "nothing to release");
    }
}
