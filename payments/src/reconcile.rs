//! Reconciling the `payments` table with the wallet before a hold is lifted: every transaction
//! the wallet sent since the backup was taken must be recorded in the table, or the miners it
//! paid would be paid again from the restored balances. What is not recorded is listed, and
//! the hold stays until an operator has recorded it or said, transaction by transaction, that
//! it was not a payment to miners (`adit payments release --accept TXID`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::wallet::Outgoing;

/// How far before the backup a transfer is still looked at: the wallet's timestamp is when it
/// saw the transaction, which may precede the moment the payer recorded it.
pub const BEFORE_BACKUP_S: i64 = 3_600;

/// What a reconciliation found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconciled {
    /// Transfers the wallet sent (in the window) and the table records.
    pub recorded: usize,
    /// Transfers the table does not record, and the operator accepted.
    pub accepted: Vec<Outgoing>,
    /// Transfers the table does not record, not accepted: the hold stays.
    pub unrecorded: Vec<Outgoing>,
    /// Accepted ids the wallet did not send (a typo, most likely): the hold stays.
    pub unknown_accepted: Vec<String>,
}

impl Reconciled {
    /// Whether the hold may be lifted.
    pub fn clear(&self) -> bool {
        self.unrecorded.is_empty() && self.unknown_accepted.is_empty()
    }
}

/// Compares the wallet's `sent` transfers with the table's `recorded` hashes: those at or
/// after `since` (less [`BEFORE_BACKUP_S`]; all when no time is known, and always those
/// still waiting in the node's pool) must be recorded or in `accept`.
pub fn reconcile(
    sent: Vec<Outgoing>,
    recorded: &BTreeSet<String>,
    since: Option<DateTime<Utc>>,
    accept: &BTreeSet<String>,
) -> Reconciled {
    let from = since.map(|t| t.timestamp() - BEFORE_BACKUP_S);
    let mut out = Reconciled {
        recorded: 0,
        accepted: Vec::new(),
        unrecorded: Vec::new(),
        unknown_accepted: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    for tx in sent {
        if !seen.insert(tx.txid.clone()) {
            continue;
        }
        let in_window = tx.height == 0 || from.is_none_or(|from| tx.timestamp >= from);
        if recorded.contains(&tx.txid) {
            out.recorded += 1;
        } else if accept.contains(&tx.txid) {
            out.accepted.push(tx);
        } else if in_window {
            out.unrecorded.push(tx);
        }
    }
    out.unknown_accepted = accept
        .iter()
        .filter(|id| !seen.contains(*id))
        .cloned()
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(id: &str, height: u64, timestamp: i64) -> Outgoing {
        Outgoing {
            txid: id.into(),
            amount: 5,
            fee: 1,
            height,
            timestamp,
        }
    }

    #[test]
    fn every_transfer_since_the_backup_is_recorded_or_accepted() {
        let backup = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let sent = vec![
            tx("paid-before", 10, 1_000_000 - 2 * BEFORE_BACKUP_S),
            tx("recorded", 11, 1_000_100),
            tx("unrecorded", 12, 1_000_200),
            tx("waiting", 0, 0),
            tx("swept", 13, 1_000_300),
        ];
        let recorded: BTreeSet<String> = ["recorded".to_string()].into();
        let found = reconcile(sent.clone(), &recorded, Some(backup), &BTreeSet::new());
        assert!(!found.clear());
        let ids: Vec<_> = found.unrecorded.iter().map(|t| t.txid.as_str()).collect();
        assert_eq!(ids, ["unrecorded", "waiting", "swept"]);
        assert_eq!(found.recorded, 1);

        let accept: BTreeSet<String> = ["unrecorded", "waiting", "swept"].map(String::from).into();
        let found = reconcile(sent.clone(), &recorded, Some(backup), &accept);
        assert!(found.clear(), "{found:?}");
        assert_eq!(found.accepted.len(), 3);

        let typo: BTreeSet<String> = ["unrecorded", "waiting", "swept", "swpet"]
            .map(String::from)
            .into();
        let found = reconcile(sent.clone(), &recorded, Some(backup), &typo);
        assert_eq!(found.unknown_accepted, ["swpet"]);
        assert!(!found.clear(), "an id the wallet never sent is refused");

        let found = reconcile(sent, &recorded, None, &BTreeSet::new());
        assert_eq!(found.unrecorded.len(), 4, "no time known: every transfer");
    }
}
