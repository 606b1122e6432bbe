//! Reserve proofs (issue 59): every `reserve_every`, the payer asks the wallet to prove it
//! holds at least what the pools owe their miners (Σ of every positive balance, the figure the
//! payer pays from), checks the proof with the wallet, and records both figures and the proof
//! in `reserve_proofs` for anyone to check with their own wallet (`check_reserve_proof`). A
//! proof that fails, or proves less than is owed, is recorded `good = false` with the reason;
//! the shipped `ReserveShort` alert rule fires on it.

use std::time::{Duration, Instant};

use adit_schemas::names::TABLE_RESERVE_PROOFS;
use adit_schemas::results::ReserveProof;
use adit_sinks::{ExactlyOnceTable, Maintenance, TableStore};
use chrono::Utc;

use crate::error::{Error, Result};
use crate::wallet::Reserve;

/// The Delta application id of the payer's reserve commits.
const WRITER: &str = "payments";

/// The reserve proofs made, and when the next is due.
pub struct Reserves {
    table: ExactlyOnceTable,
    every: Duration,
    last: Option<Instant>,
}

impl Reserves {
    /// The `reserve_proofs` table under `store` (created if needed), a proof due every
    /// `every` (never for zero).
    pub async fn open(
        store: &TableStore,
        maintenance: Maintenance,
        every: Duration,
    ) -> Result<Self> {
        let table = ExactlyOnceTable::open(
            store,
            TABLE_RESERVE_PROOFS,
            &ReserveProof::schema(),
            &["date"],
            WRITER,
            maintenance,
        )
        .await?;
        Ok(Self {
            table,
            every,
            last: None,
        })
    }

    /// Whether a proof is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        !self.every.is_zero()
            && self
                .last
                .is_none_or(|last| now.duration_since(last) >= self.every)
    }

    /// Records `row` (one commit); the next is due `every` after `now`.
    pub async fn record(&mut self, row: &ReserveProof, now: Instant) -> Result<()> {
        let batch = adit_schemas::to_batch(
            TABLE_RESERVE_PROOFS,
            ReserveProof::schema(),
            std::slice::from_ref(row),
        )?;
        let version = self.table.committed() + 1;
        self.table.commit(vec![batch], version).await?;
        self.table.maintain_if_due().await?;
        self.last = Some(now);
        Ok(())
    }
}

/// The message a proof made at `at` for `owed` is signed over: a proof cannot be passed off
/// as a later one.
pub fn message(chain: &str, owed: u64, at: chrono::DateTime<Utc>) -> String {
    format!(
        "adit reserve proof: {chain}, owed {owed} atomic units, at {}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The row for a proof of `owed` that came to `made` (the wallet's proof and its check, or
/// why there is none).
pub fn row(
    chain: &str,
    owed: u64,
    message: String,
    made: std::result::Result<Reserve, &Error>,
    at: chrono::DateTime<Utc>,
) -> ReserveProof {
    let owed_i = i64::try_from(owed).unwrap_or(i64::MAX);
    let (address, proven, good, signature, error) = match made {
        Ok(r) => {
            let enough = r.proven >= owed;
            let error = match (r.good, enough) {
                (false, _) => Some("the wallet's own check of the proof fails".to_string()),
                (true, false) => Some(format!(
                    "the proof shows {} atomic units, {owed} are owed",
                    r.proven
                )),
                (true, true) => None,
            };
            (
                Some(r.address),
                Some(i64::try_from(r.proven).unwrap_or(i64::MAX)),
                r.good && enough,
                Some(r.signature),
                error,
            )
        }
        Err(e) => (None, None, false, None, Some(e.to_string())),
    };
    ReserveProof {
        chain: chain.to_string(),
        address,
        owed: owed_i,
        proven,
        good,
        message,
        signature,
        error,
        ts: at,
        date: at.date_naive(),
    }
}

/// The row when nothing is owed: good, with no proof to make.
pub fn nothing_owed(chain: &str, message: String, at: chrono::DateTime<Utc>) -> ReserveProof {
    ReserveProof {
        chain: chain.to_string(),
        address: None,
        owed: 0,
        proven: None,
        good: true,
        message,
        signature: None,
        error: None,
        ts: at,
        date: at.date_naive(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserve(good: bool, proven: u64) -> Reserve {
        Reserve {
            address: "4addr".into(),
            signature: "ReserveProofV2xyz".into(),
            good,
            proven,
        }
    }

    #[test]
    fn a_proof_is_good_only_when_it_checks_and_covers_what_is_owed() {
        let at = Utc::now();
        let ok = row("monero", 100, "m".into(), Ok(reserve(true, 100)), at);
        assert!(ok.good && ok.error.is_none() && ok.proven == Some(100));
        let short = row("monero", 101, "m".into(), Ok(reserve(true, 100)), at);
        assert!(!short.good && short.error.unwrap().contains("101 are owed"));
        let bad = row("monero", 1, "m".into(), Ok(reserve(false, 100)), at);
        assert!(!bad.good && bad.signature.is_some());
        let e = Error::Books {
            reason: "Not enough balance".into(),
        };
        let failed = row("monero", 5, "m".into(), Err(&e), at);
        assert!(!failed.good && failed.error.unwrap().contains("Not enough balance"));
        assert_eq!(failed.owed, 5);
        assert!(message("monero", 5, at).contains("owed 5 atomic units"));
    }
}
