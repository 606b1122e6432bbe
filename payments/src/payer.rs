//! The payer: every `interval`, under the `payments` lease, first settles the transactions
//! already recorded (sends again what the node does not hold, marks what it confirmed or
//! refused), then pays each miner whose balance reached the threshold.
//!
//! One payment, step by step, each step safe to crash after:
//! 1. the wallet builds and signs the transaction, and does not send it;
//! 2. its rows are recorded `created` with the signed transaction (the balance drops now);
//! 3. the wallet sends it (so it counts its inputs spent); when the wallet will not, the node's
//!    own verdict decides; what happened is recorded (`relayed` or `failed`).
//!
//! A crash before 2 leaves a transaction no one ever sends. A crash after 2 leaves a `created`
//! transaction, which the next round finds and sends again byte for byte (same hash, so the
//! chain can never take it twice). While a pool has a `created` transaction the node does not
//! hold, nothing new is paid for that pool; nor for any pool while payments are held after a
//! restore ([`crate::hold`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use adit_bus::Lease;
use adit_bus::publish::{Outgoing, Publisher};
use adit_schemas::chain::Chain;
use adit_schemas::names::payment_result_subject;
use adit_schemas::results::{Payment, PaymentStatus};
use adit_sinks::{Maintenance, TableStore};
use async_nats::jetstream;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::audit::{self, Verdict};
use crate::coin::{Coin, Monero};
use crate::config::PaymentsConfig;
use crate::daemon::{Daemon, Held, Relay};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, OpenTx};
use crate::opensy::OpenSy;
use crate::reserve::{self, Reserves};
use crate::wallet::{AddressKind, Wallet};

/// The lease key: one payer at a time, whatever the number of processes with the role.
pub const LEASE: &str = "payments";

/// What the payer needs besides its config.
#[derive(Clone)]
pub struct PayerContext {
    /// Where the tables are.
    pub store: TableStore,
    /// Compaction of the `payments` table.
    pub maintenance: Maintenance,
    /// JetStream, for the lease and the live results.
    pub js: jetstream::Context,
    /// This process's name in the lease.
    pub holder: String,
    /// Lease time to live.
    pub lease_ttl: Duration,
}

/// Pays until `shutdown`: stands by while another process holds the lease.
pub async fn run(
    config: PaymentsConfig,
    ctx: PayerContext,
    shutdown: CancellationToken,
) -> Result<()> {
    config.validate()?;
    loop {
        let Some(lease) =
            Lease::acquire_in(&ctx.js, LEASE, &ctx.holder, ctx.lease_ttl, &shutdown).await?
        else {
            return Ok(());
        };
        let lost = lease.lost();
        let mut payer = None;
        loop {
            if payer.is_none() {
                match Payer::open(&config, &ctx).await {
                    Ok(p) => payer = Some(p),
                    Err(e) => {
                        tracing::warn!(error = %adit_egress::chain(&e), "cannot open the payment books; retrying")
                    }
                }
            }
            if let Some(p) = payer.as_mut()
                && let Err(e) = p.round(&lease).await
            {
                metrics::counter!("adit_payments_round_errors_total").increment(1);
                tracing::warn!(error = %adit_egress::chain(&e), "payment round stopped; the next one resumes it");
                if !e.is_transient() {
                    payer = None; // reopen the books: the table may be ahead of what we hold
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    lease.release().await;
                    return Ok(());
                }
                _ = lost.cancelled() => {
                    tracing::warn!("payments lease lost; standing by");
                    break;
                }
                _ = tokio::time::sleep(config.interval) => {}
            }
        }
    }
}

/// The payer's parts.
pub struct Payer<'a> {
    config: &'a PaymentsConfig,
    /// The chain's wallet and node.
    coin: Box<dyn Coin>,
    ledger: Ledger,
    /// The table root, where a hold on payments is kept.
    store: TableStore,
    /// Publishes each payment live on `results.payments.<pool>`.
    results: Publisher,
    /// Miner logins checked with the wallet: what kind of address each is.
    payable: HashMap<String, AddressKind>,
    /// Blocks the node and the wallet vouched for: not asked about again.
    vouched: HashSet<String>,
    /// The last reason logged for each block refused, so a block that waits is logged once
    /// per reason.
    refusals: HashMap<String, String>,
    /// The reserve proofs, and when the next is due.
    reserves: Reserves,
}

impl<'a> Payer<'a> {
    /// Opens the books and the clients.
    pub async fn open(config: &'a PaymentsConfig, ctx: &PayerContext) -> Result<Self> {
        Ok(Self {
            config,
            coin: coin(config)?,
            ledger: Ledger::open(&ctx.store, ctx.maintenance.clone()).await?,
            store: ctx.store.clone(),
            results: Publisher::new(ctx.js.clone()),
            payable: HashMap::new(),
            vouched: HashSet::new(),
            refusals: HashMap::new(),
            reserves: Reserves::open(&ctx.store, ctx.maintenance.clone(), config.reserve_every)
                .await?,
        })
    }

    /// One round over every pool that has earned something.
    pub async fn round(&mut self, lease: &Lease) -> Result<()> {
        let hold = crate::hold::get(&self.store).await?;
        metrics::gauge!("adit_payments_held").set(if hold.is_some() { 1.0 } else { 0.0 });
        if let Some(hold) = &hold {
            tracing::error!(reason = %hold.reason, since = %hold.since, "payments held: recorded transactions are settled, none is started; reconcile the payments table with the wallet, then `adit payments release`");
        }
        for pool in self.ledger.pools().await? {
            if self.settle(&pool, lease).await? && hold.is_none() {
                self.pay_due(&pool, lease).await?;
            }
        }
        if self.coin.proves_reserve() && self.reserves.due(Instant::now()) {
            self.prove_reserve(lease).await?;
        }
        Ok(())
    }

    /// Proves that the wallet holds what every pool owes (Σ of the positive balances the payer
    /// pays from) and records the proof, or why there is none.
    async fn prove_reserve(&mut self, lease: &Lease) -> Result<()> {
        let mut owed: u64 = 0;
        for pool in self.ledger.pools().await? {
            let vouched = self.vouched_blocks(&pool).await?;
            for (_, balance) in self.ledger.balances(&pool, &vouched).await? {
                owed = owed.saturating_add(u64::try_from(balance).unwrap_or(0));
            }
        }
        let (now, at) = (Instant::now(), Utc::now());
        let chain = self.config.chain.as_str();
        let message = reserve::message(chain, owed, at);
        let row = if owed == 0 {
            // Nothing owed is covered by any wallet (and the wallet proves no amount 0).
            reserve::nothing_owed(chain, message, at)
        } else {
            let made = self.coin.reserve_proof(owed, &message).await;
            reserve::row(chain, owed, message, made.as_ref().map(Clone::clone), at)
        };
        lease.confirm().await?;
        self.reserves.record(&row, now).await?;
        metrics::gauge!("adit_payments_reserve_owed").set(owed as f64);
        metrics::gauge!("adit_payments_reserve_proven").set(row.proven.unwrap_or(0) as f64);
        metrics::gauge!("adit_payments_reserve_short").set(if row.good { 0.0 } else { 1.0 });
        match &row.error {
            None => tracing::info!(owed, proven = row.proven, "reserve proved"),
            Some(why) => {
                tracing::error!(owed, proven = row.proven, reason = %why, "the wallet does not prove it holds what the pools owe")
            }
        }
        Ok(())
    }

    /// Brings every open transaction of `pool` up to date with the node; returns whether the
    /// pool is clear to pay (no recorded transaction the node does not hold).
    async fn settle(&mut self, pool: &str, lease: &Lease) -> Result<bool> {
        let open = self.ledger.open_payments(pool).await?;
        metrics::gauge!("adit_payments_open", "pool" => pool.to_string()).set(open.len() as f64);
        if open.is_empty() {
            return Ok(true);
        }
        let height = self.coin.height().await?;
        let mut clear = true;
        for tx in open {
            let next = match self.coin.held(&tx.tx_hash).await? {
                Held::InBlock(at) if height.saturating_sub(at) >= self.config.confirmations => {
                    Some((PaymentStatus::Confirmed, None))
                }
                Held::InBlock(_) | Held::InPool => {
                    (tx.status == PaymentStatus::Created).then_some((PaymentStatus::Relayed, None))
                }
                Held::Nowhere => {
                    tracing::info!(pool, tx = %tx.tx_hash, status = tx.status.as_str(), "the node does not hold a recorded payment; sending it again");
                    self.send(&tx).await?
                }
            };
            let now = next.as_ref().map_or(tx.status, |(s, _)| *s);
            if now == PaymentStatus::Created {
                clear = false;
            }
            if let Some((status, error)) = next {
                self.record(pool, &tx, status, error, lease).await?;
            }
        }
        Ok(clear)
    }

    /// Sends `tx` through the wallet (so it counts the inputs spent); when the wallet will not,
    /// the node's own verdict on the transaction decides. The status to record, if it changes.
    async fn send(&self, tx: &OpenTx) -> Result<Option<(PaymentStatus, Option<String>)>> {
        if tx.tx_blob.is_empty() || tx.tx_metadata.is_empty() {
            return Err(Error::Books {
                reason: format!(
                    "payment {} was recorded without its transaction",
                    tx.tx_hash
                ),
            });
        }
        let relayed =
            (tx.status == PaymentStatus::Created).then_some((PaymentStatus::Relayed, None));
        match self.coin.send_recorded(&tx.tx_blob, &tx.tx_metadata).await {
            Ok(()) => return Ok(relayed),
            Err(e @ Error::Refused { .. }) => {
                tracing::warn!(tx = %tx.tx_hash, error = %e, "the wallet did not send a recorded payment; asking the node");
            }
            Err(e) => return Err(e),
        }
        if self.coin.held(&tx.tx_hash).await? != Held::Nowhere {
            return Ok(relayed);
        }
        Ok(match self.coin.relay_signed(&tx.tx_blob).await? {
            Relay::Accepted => relayed,
            Relay::Refused(why) => {
                // Refused now and held nowhere: it can never be mined from here, and it is
                // never sent again.
                tracing::warn!(tx = %tx.tx_hash, reason = %why, "the node refused a payment; its amounts go back to the balances");
                Some((PaymentStatus::Failed, Some(why)))
            }
        })
    }

    /// Pays every miner of `pool` whose balance reached the threshold. A batch the wallet
    /// refuses to build is skipped until the next round; the batches after it are still paid.
    async fn pay_due(&mut self, pool: &str, lease: &Lease) -> Result<()> {
        let threshold = i64::try_from(self.config.threshold(pool)).unwrap_or(i64::MAX);
        let mut due = Vec::new();
        let mut unpayable = 0usize;
        let vouched = self.vouched_blocks(pool).await?;
        for (miner, balance) in self.ledger.balances(pool, &vouched).await? {
            if balance < threshold {
                continue;
            }
            match self.address_kind(&miner).await? {
                AddressKind::Invalid => unpayable += 1,
                AddressKind::Plain => due.push((miner, balance, false)),
                AddressKind::Integrated => due.push((miner, balance, true)),
            }
        }
        metrics::gauge!("adit_payments_unpayable_miners", "pool" => pool.to_string())
            .set(unpayable as f64);
        if due.is_empty() {
            return Ok(());
        }
        self.coin.refresh().await?;
        for batch in batches(&due, self.config.max_destinations) {
            let destinations: Vec<(String, u64)> = batch
                .iter()
                .map(|(m, b)| (m.clone(), u64::try_from(*b).unwrap_or(0)))
                .collect();
            let built = match self.coin.build(&destinations).await {
                Ok(built) => built,
                Err(e @ Error::Refused { .. }) => {
                    // Not enough unlocked money, an address the wallet will not pay, and the
                    // like: nothing was built, and these balances wait for the next round.
                    metrics::counter!("adit_payments_build_failures_total", "pool" => pool.to_string()).increment(1);
                    tracing::warn!(pool, destinations = batch.len(), error = %e, "the wallet cannot build a payment; trying the next batch, this one waits for the next round");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let tx = OpenTx {
                tx_hash: built.tx_hash,
                status: PaymentStatus::Created,
                tx_blob: built.tx_blob,
                tx_metadata: built.tx_metadata,
                tx_fee: i64::try_from(built.fee).unwrap_or(i64::MAX),
                destinations: batch,
            };
            self.record(pool, &tx, PaymentStatus::Created, None, lease)
                .await?;
            if let Some((status, error)) = self.send(&tx).await? {
                self.record(pool, &tx, status, error, lease).await?;
            }
        }
        Ok(())
    }

    /// The blocks of `pool` the bus calls confirmed that the node and the wallet vouch for:
    /// only their payouts are paid. A block that lands after this look is in none of them, so
    /// it waits for the next round's (a list of the blocks refused would let it through).
    async fn vouched_blocks(&mut self, pool: &str) -> Result<Vec<String>> {
        let claimed = self.ledger.claimed_blocks(pool).await?;
        let unknown: Vec<_> = claimed
            .iter()
            .filter(|c| !self.vouched.contains(&c.hash))
            .cloned()
            .collect();
        let mut refused = 0usize;
        if !unknown.is_empty() {
            self.coin.refresh().await?;
        }
        for claim in unknown {
            let seen = self.coin.block(&claim.hash).await?;
            let received = match &seen {
                Some(s) if !s.miner_tx_hash.is_empty() => {
                    self.coin.coinbase_received(&s.miner_tx_hash).await?
                }
                _ => None,
            };
            match audit::judge(
                &claim,
                seen.as_ref(),
                received,
                self.config.block_confirmations(),
            ) {
                Verdict::Good => {
                    if self.refusals.remove(&claim.hash).is_some() {
                        tracing::info!(pool, block = %claim.hash, "a block waiting for the node's word is now vouched for; its payouts count");
                    }
                    self.vouched.insert(claim.hash);
                }
                Verdict::Refused(why) => {
                    if self.refusals.get(&claim.hash) != Some(&why) {
                        tracing::warn!(pool, block = %claim.hash, height = claim.height, payouts = claim.payouts, reason = %why, "a block the bus calls confirmed is not paid from");
                        self.refusals.insert(claim.hash.clone(), why);
                    }
                    refused += 1;
                }
            }
        }
        metrics::gauge!("adit_payments_blocks_unverified", "pool" => pool.to_string())
            .set(refused as f64);
        Ok(claimed
            .into_iter()
            .map(|c| c.hash)
            .filter(|hash| self.vouched.contains(hash))
            .collect())
    }

    /// What the wallet makes of `miner` (a miner's login is its address), asked once.
    async fn address_kind(&mut self, miner: &str) -> Result<AddressKind> {
        if let Some(kind) = self.payable.get(miner) {
            return Ok(*kind);
        }
        let kind = self.coin.address_kind(miner).await?;
        if kind == AddressKind::Invalid {
            tracing::warn!(
                miner,
                "a miner's login is not an address the wallet can pay; its balance waits"
            );
        }
        self.payable.insert(miner.to_string(), kind);
        Ok(kind)
    }

    /// For a transaction the wallet has sent (`relayed`, `confirmed`), each miner's proof that
    /// it was paid, where the chain has one; a proof the wallet cannot make is logged and left
    /// out (the payment stands; the next status row tries again).
    async fn proofs(&self, tx: &OpenTx, status: PaymentStatus) -> HashMap<String, String> {
        let mut proofs = HashMap::new();
        if !matches!(status, PaymentStatus::Relayed | PaymentStatus::Confirmed) {
            return proofs;
        }
        for (miner, _) in &tx.destinations {
            match self.coin.payment_proof(&tx.tx_hash, miner).await {
                Ok(Some(proof)) => {
                    proofs.insert(miner.clone(), proof);
                }
                Ok(None) => return proofs, // the chain has none
                Err(e) => {
                    tracing::warn!(tx = %tx.tx_hash, miner, error = %e, "no payment proof for this miner");
                }
            }
        }
        proofs
    }

    /// Records `tx` at `status` (one commit), then publishes its rows live.
    async fn record(
        &mut self,
        pool: &str,
        tx: &OpenTx,
        status: PaymentStatus,
        error: Option<String>,
        lease: &Lease,
    ) -> Result<()> {
        lease.confirm().await?;
        let ts = Utc::now();
        let proofs = self.proofs(tx, status).await;
        let rows: Vec<Payment> = tx
            .destinations
            .iter()
            .map(|(miner, amount)| Payment {
                pool: pool.to_string(),
                tx_hash: tx.tx_hash.clone(),
                miner: miner.clone(),
                amount: *amount,
                tx_fee: tx.tx_fee,
                destinations: tx.destinations.len() as i64,
                status,
                tx_blob: (status == PaymentStatus::Created).then(|| tx.tx_blob.clone()),
                tx_metadata: (status == PaymentStatus::Created).then(|| tx.tx_metadata.clone()),
                error: error.clone(),
                ts,
                date: ts.date_naive(),
                proof: proofs.get(miner).cloned(),
            })
            .collect();
        self.ledger.record(&rows).await?;
        let labels = [
            ("pool", pool.to_string()),
            ("status", status.as_str().to_string()),
        ];
        metrics::counter!("adit_payments_total", &labels).increment(1);
        if status == PaymentStatus::Relayed {
            let paid: i64 = tx.destinations.iter().map(|(_, a)| a).sum();
            metrics::counter!("adit_payments_paid_atomic_total", "pool" => pool.to_string())
                .increment(u64::try_from(paid).unwrap_or(0));
        }
        tracing::info!(pool, tx = %tx.tx_hash, status = status.as_str(), destinations = rows.len(), "payment recorded");
        let live: adit_bus::Result<Vec<Outgoing>> = rows
            .into_iter()
            .map(|mut p| {
                p.tx_blob = None;
                p.tx_metadata = None;
                let id = format!("payment:{}:{}:{}", p.tx_hash, p.miner, status.as_str());
                Outgoing::json(payment_result_subject(pool), id, &p)
            })
            .collect();
        let published = match live {
            Ok(live) => self.results.publish_all(live).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = published {
            // The table is the record; subscribers can read it there.
            tracing::warn!(pool, tx = %tx.tx_hash, error = %e, "payment recorded but not published live");
        }
        Ok(())
    }
}

/// The chain's wallet and node, as `config` names them.
fn coin(config: &PaymentsConfig) -> Result<Box<dyn Coin>> {
    Ok(match config.chain {
        Chain::Monero => Box::new(Monero {
            wallet: Wallet::new(
                &config.wallet_rpc,
                config.rpc_timeout,
                config.account_index,
                config.priority,
            )?,
            daemon: Daemon::new(&config.node, config.rpc_timeout)?,
        }),
        Chain::OpenSy => Box::new(OpenSy::new(
            &config.node,
            &config.wallet,
            config.rpc.to_rpc(),
            config.rpc_timeout,
            config.fee_rate,
        )?),
    })
}

/// Splits the miners due (address, balance, whether the address is integrated) into
/// transactions of at most `max` destinations, in order, with at most one integrated address
/// in each: a transaction carries one payment id, and the wallet refuses a transfer to two.
fn batches(due: &[(String, i64, bool)], max: usize) -> Vec<Vec<(String, i64)>> {
    let max = max.max(1);
    let mut out: Vec<Vec<(String, i64)>> = Vec::new();
    let mut current = Vec::new();
    let mut has_integrated = false;
    for (miner, balance, integrated) in due {
        if current.len() == max || (*integrated && has_integrated) {
            out.push(std::mem::take(&mut current));
            has_integrated = false;
        }
        current.push((miner.clone(), *balance));
        has_integrated |= *integrated;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(kinds: &str) -> Vec<(String, i64, bool)> {
        kinds
            .chars()
            .enumerate()
            .map(|(i, k)| (format!("m{i}"), i as i64 + 1, k == 'I'))
            .collect()
    }

    /// Issue 23: two integrated addresses in one transfer made the wallet refuse it, and the
    /// refusal stopped every later payout of the pool.
    #[test]
    fn a_batch_holds_at_most_one_integrated_address() {
        let shape = |kinds: &str, max: usize| -> Vec<usize> {
            batches(&due(kinds), max).iter().map(Vec::len).collect()
        };
        assert_eq!(shape("PPPPP", 2), vec![2, 2, 1]);
        assert_eq!(shape("IIII", 16), vec![1, 1, 1, 1]);
        assert_eq!(shape("PIPIP", 16), vec![3, 2]);
        assert_eq!(shape("", 16), Vec::<usize>::new());
        assert_eq!(shape("PP", 0), vec![1, 1], "a zero maximum still pays");
    }

    #[test]
    fn every_miner_due_is_in_exactly_one_batch_in_order() {
        // Every mix of up to 10 plain and integrated addresses, every maximum up to 11.
        for n in 0..=10u32 {
            for mask in 0..(1u32 << n) {
                let kinds: String = (0..n)
                    .map(|i| if mask & (1 << i) != 0 { 'I' } else { 'P' })
                    .collect();
                let all = due(&kinds);
                for max in 1..=11 {
                    let out = batches(&all, max);
                    let flat: Vec<(String, i64)> = out.iter().flatten().cloned().collect();
                    let want: Vec<(String, i64)> =
                        all.iter().map(|(m, b, _)| (m.clone(), *b)).collect();
                    assert_eq!(flat, want, "{kinds} max {max}");
                    for batch in &out {
                        assert!(!batch.is_empty() && batch.len() <= max, "{kinds} {max}");
                        let integrated = batch
                            .iter()
                            .filter(|(m, _)| all.iter().any(|(a, _, i)| a == m && *i))
                            .count();
                        assert!(integrated <= 1, "{kinds} max {max}: {batch:?}");
                    }
                }
            }
        }
    }
}
