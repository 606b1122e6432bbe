//! The books: balances read with SQL from the `payouts`, `blocks` and `payments` tables, and
//! payment rows written to `payments` (one Delta commit per status change of a transaction).
//!
//! balance(miner) = Σ payouts of blocks that are `confirmed` and not `orphaned`
//!                + Σ share credits (PPS and FPPS: the pool pays them from its own balance,
//!                  whether or not a block was found)
//!                − Σ payments `created` + Σ payments `failed`
//!
//! A payment counts against the balance from the moment it is recorded as `created` (before
//! it is sent), so no crash can pay a balance twice; only a `failed` one gives it back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use adit_schemas::names::{TABLE_BLOCKS, TABLE_PAYMENTS, TABLE_PAYOUTS, TABLE_SHARE_CREDITS};
use adit_schemas::results::{Payment, PaymentStatus};
use adit_sinks::{ExactlyOnceTable, Maintenance, TableStore};
use adit_sql::{Catalog, Params, SqlEngine, SqlLimits};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};

use crate::audit::Claimed;
use crate::error::{Error, Result};

/// The Delta application id of the payer's commits.
const WRITER: &str = "payments";

/// A transaction recorded and not yet settled (`confirmed` or `failed`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTx {
    /// Its hash.
    pub tx_hash: String,
    /// The newest status recorded (`created` or `relayed`).
    pub status: PaymentStatus,
    /// The signed transaction.
    pub tx_blob: String,
    /// The wallet's record of it.
    pub tx_metadata: String,
    /// Its fee.
    pub tx_fee: i64,
    /// (miner, amount) it pays.
    pub destinations: Vec<(String, i64)>,
}

/// Which of the tables miners earn in exist.
#[derive(Debug, Clone, Copy)]
struct Earnings {
    /// `payouts` and `blocks`: what blocks paid.
    blocks: bool,
    /// `share_credits`: what per-share schemes credited.
    credits: bool,
}

/// Reads balances and open payments; writes payment rows.
pub struct Ledger {
    /// Reads every table at its newest version (no cache: a balance must see the payer's own
    /// last commit).
    sql: SqlEngine,
    /// The `payments` table.
    table: ExactlyOnceTable,
}

impl Ledger {
    /// Opens the books under `store`, creating the `payments` table if needed.
    pub async fn open(store: &TableStore, maintenance: Maintenance) -> Result<Self> {
        let table = ExactlyOnceTable::open(
            store,
            TABLE_PAYMENTS,
            &Payment::schema(),
            &["date"],
            WRITER,
            maintenance,
        )
        .await?;
        let catalog = Arc::new(Catalog::new(store.clone(), Duration::ZERO));
        let limits = SqlLimits {
            timeout: Duration::from_secs(120),
            ..SqlLimits::default()
        };
        Ok(Self {
            sql: SqlEngine::with_secrets(catalog, limits),
            table,
        })
    }

    /// Runs `sql`, its `$n` placeholders bound to `params`.
    async fn rows(&self, sql: &str, params: Params) -> Result<Vec<RecordBatch>> {
        Ok(self
            .sql
            .query_with(sql, params.into_options())
            .await?
            .batches)
    }

    /// Which of the tables miners earn in exist yet.
    async fn earnings(&self) -> Result<Earnings> {
        let tables = self.sql.catalog().snapshot().await?;
        let has = |name: &str| tables.iter().any(|(n, _)| n == name);
        Ok(Earnings {
            blocks: has(TABLE_PAYOUTS) && has(TABLE_BLOCKS),
            credits: has(TABLE_SHARE_CREDITS),
        })
    }

    /// Whether the tables a block's payouts need exist yet.
    async fn has_earnings(&self) -> Result<bool> {
        Ok(self.earnings().await?.blocks)
    }

    /// Every pool that has earned something, by block or by share.
    pub async fn pools(&self) -> Result<Vec<String>> {
        let earnings = self.earnings().await?;
        let mut sources = Vec::new();
        if earnings.blocks {
            sources.push("SELECT DISTINCT pool FROM payouts");
        }
        if earnings.credits {
            sources.push("SELECT DISTINCT pool FROM share_credits");
        }
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT pool FROM ({}) ORDER BY pool",
            sources.join(" UNION ALL ")
        );
        let batches = self.rows(&sql, Params::new()).await?;
        let mut pools = Vec::new();
        for b in &batches {
            pools.extend(strings(b, "pool")?);
        }
        Ok(pools)
    }

    /// Every block of `pool` confirmed and not orphaned on the bus, with Σ of its payouts: the
    /// blocks a balance counts, before the payer's own check of each.
    pub async fn claimed_blocks(&self, pool: &str) -> Result<Vec<Claimed>> {
        if !self.has_earnings().await? {
            return Ok(Vec::new());
        }
        let mut params = Params::new();
        let p = params.text(pool);
        let sql = format!(
            "WITH status AS (
               SELECT hash, max(height) AS height, bool_or(status = 'confirmed') AS confirmed,
                      bool_or(status = 'orphaned') AS orphaned
               FROM blocks WHERE pool = {p} GROUP BY hash)
             SELECT o.hash, s.height, sum(o.amount) AS payouts
             FROM payouts o JOIN status s ON o.hash = s.hash
             WHERE o.pool = {p} AND s.confirmed AND NOT s.orphaned
             GROUP BY o.hash, s.height ORDER BY s.height, o.hash"
        );
        let mut out = Vec::new();
        for b in self.rows(&sql, params).await? {
            let (hashes, heights, payouts) = (
                strings(&b, "hash")?,
                ints(&b, "height")?,
                ints(&b, "payouts")?,
            );
            for ((hash, height), payouts) in hashes.into_iter().zip(heights).zip(payouts) {
                out.push(Claimed {
                    hash,
                    height: u64::try_from(height).unwrap_or(0),
                    payouts,
                });
            }
        }
        Ok(out)
    }

    /// Each miner of `pool` with a positive balance, by miner, counting the payouts of the
    /// blocks in `vouched` only (those the node and the wallet vouch for: a block not judged
    /// yet, or one that landed after the judging, counts for nothing) and every share credit.
    pub async fn balances(&self, pool: &str, vouched: &[String]) -> Result<Vec<(String, i64)>> {
        let earnings = self.earnings().await?;
        let by_block = earnings.blocks && !vouched.is_empty();
        if !by_block && !earnings.credits {
            return Ok(Vec::new());
        }
        let mut params = Params::new();
        let p = params.text(pool);
        let mut sources = Vec::new();
        if by_block {
            let list = params.texts(vouched.iter().map(String::as_str));
            sources.push(format!(
                "SELECT o.miner, o.amount
                 FROM payouts o JOIN (
                   SELECT hash FROM blocks WHERE pool = {p} GROUP BY hash
                   HAVING bool_or(status = 'confirmed') AND NOT bool_or(status = 'orphaned')
                 ) s ON o.hash = s.hash
                 WHERE o.pool = {p} AND o.hash IN ({list})"
            ));
        }
        if earnings.credits {
            sources.push(format!(
                "SELECT miner, amount FROM share_credits WHERE pool = {p}"
            ));
        }
        let sql = format!(
            "WITH earned AS (
               SELECT miner, sum(amount) AS amount FROM ({}) GROUP BY miner),
             sent AS (
               SELECT miner, sum(CASE WHEN status = 'created' THEN amount
                                      WHEN status = 'failed' THEN -amount ELSE 0 END) AS amount
               FROM payments WHERE pool = {p} GROUP BY miner)
             SELECT e.miner, e.amount - coalesce(s.amount, 0) AS balance
             FROM earned e LEFT JOIN sent s ON e.miner = s.miner
             WHERE e.amount - coalesce(s.amount, 0) > 0
             ORDER BY e.miner",
            sources.join(" UNION ALL ")
        );
        let mut out = Vec::new();
        for b in self.rows(&sql, params).await? {
            out.extend(strings(&b, "miner")?.into_iter().zip(ints(&b, "balance")?));
        }
        Ok(out)
    }

    /// The hash of every transaction the `payments` table records, of any pool and status.
    pub async fn recorded(&self) -> Result<std::collections::BTreeSet<String>> {
        let batches = self
            .rows("SELECT DISTINCT tx_hash FROM payments", Params::new())
            .await?;
        let mut out = std::collections::BTreeSet::new();
        for b in &batches {
            out.extend(strings(b, "tx_hash")?);
        }
        Ok(out)
    }

    /// The transactions of `pool` recorded and neither confirmed nor failed.
    pub async fn open_payments(&self, pool: &str) -> Result<Vec<OpenTx>> {
        let mut params = Params::new();
        let p = params.text(pool);
        let sql = format!(
            "SELECT tx_hash, miner, amount, tx_fee, status, tx_blob, tx_metadata FROM payments
             WHERE pool = {p} AND tx_hash IN (
               SELECT tx_hash FROM payments WHERE pool = {p} GROUP BY tx_hash
               HAVING NOT bool_or(status IN ('confirmed', 'failed')))
             ORDER BY tx_hash, miner"
        );
        let mut open: BTreeMap<String, OpenTx> = BTreeMap::new();
        for b in self.rows(&sql, params).await? {
            let (hashes, miners, statuses) = (
                strings(&b, "tx_hash")?,
                strings(&b, "miner")?,
                strings(&b, "status")?,
            );
            let (amounts, fees) = (ints(&b, "amount")?, ints(&b, "tx_fee")?);
            let blobs = column(&b, "tx_blob", &DataType::Utf8)?;
            let blobs = blobs.as_string::<i32>();
            let metadata = column(&b, "tx_metadata", &DataType::Utf8)?;
            let metadata = metadata.as_string::<i32>();
            for i in 0..b.num_rows() {
                let tx = open.entry(hashes[i].clone()).or_insert_with(|| OpenTx {
                    tx_hash: hashes[i].clone(),
                    status: PaymentStatus::Created,
                    tx_blob: String::new(),
                    tx_metadata: String::new(),
                    tx_fee: fees[i],
                    destinations: Vec::new(),
                });
                match statuses[i].as_str() {
                    "created" => {
                        tx.destinations.push((miners[i].clone(), amounts[i]));
                        if blobs.is_valid(i) {
                            tx.tx_blob = blobs.value(i).to_string();
                        }
                        if metadata.is_valid(i) {
                            tx.tx_metadata = metadata.value(i).to_string();
                        }
                    }
                    "relayed" => tx.status = PaymentStatus::Relayed,
                    _ => {}
                }
            }
        }
        Ok(open.into_values().collect())
    }

    /// Records `rows` (one transaction's change of status) in one commit.
    pub async fn record(&mut self, rows: &[Payment]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = adit_schemas::to_batch(TABLE_PAYMENTS, Payment::schema(), rows)?;
        let version = self.table.committed() + 1;
        self.table.commit(vec![batch], version).await?;
        self.table.maintain_if_due().await?;
        Ok(())
    }
}

/// Column `name` of `batch`, cast to `to`.
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<arrow::array::ArrayRef> {
    let col = batch.column_by_name(name).ok_or_else(|| Error::Books {
        reason: format!("no column {name} in the result"),
    })?;
    arrow::compute::cast(col, to).map_err(|e| Error::Books {
        reason: format!("column {name}: {e}"),
    })
}

/// Column `name` of `batch` as strings.
fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    let col = column(batch, name, &DataType::Utf8)?;
    let col = col.as_string::<i32>();
    Ok((0..col.len()).map(|i| col.value(i).to_string()).collect())
}

/// Column `name` of `batch` as i64s; a null is an error.
fn ints(batch: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let col = column(batch, name, &DataType::Int64)?;
    if col.null_count() > 0 {
        return Err(Error::Books {
            reason: format!("column {name} has nulls"),
        });
    }
    Ok(col.as_primitive::<Int64Type>().values().to_vec())
}
