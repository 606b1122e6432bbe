//! The books on real Delta tables: balances count only confirmed, not orphaned, payouts, and
//! every share credit; a payment counts from `created` and comes back only when `failed`; open
//! payments are those neither confirmed nor failed.

use adit_payments::ledger::Ledger;
use adit_schemas::names::{TABLE_BLOCKS, TABLE_PAYOUTS, TABLE_SHARE_CREDITS};
use adit_schemas::results::{Payment, PaymentStatus, Payout, ShareCredit};
use adit_schemas::{Block, BlockStatus, EventKind, stamped_batch, to_batch};
use adit_sinks::{ExactlyOnceTable, Maintenance, TableStore};
use arrow::datatypes::SchemaRef;
use chrono::Utc;

fn block(hash: &str, status: BlockStatus) -> Block {
    Block {
        pool: "p1".into(),
        height: 10,
        hash: hash.into(),
        miner: "alice".into(),
        worker: "w".into(),
        job_id: "j".into(),
        nonce: "00".into(),
        reward: 1_000,
        network_difficulty: 100,
        status,
        error: None,
        ts: Utc::now(),
    }
}

fn payout(hash: &str, miner: &str, amount: i64) -> Payout {
    Payout {
        pool: "p1".into(),
        height: 10,
        hash: hash.into(),
        miner: miner.into(),
        amount,
        weight_difficulty: 1.0,
        ts: Utc::now(),
        date: Utc::now().date_naive(),
    }
}

fn payment(tx: &str, miner: &str, amount: i64, status: PaymentStatus) -> Payment {
    Payment {
        pool: "p1".into(),
        tx_hash: tx.into(),
        miner: miner.into(),
        amount,
        tx_fee: 7,
        destinations: 1,
        status,
        tx_blob: (status == PaymentStatus::Created).then(|| format!("blob-{tx}")),
        tx_metadata: (status == PaymentStatus::Created).then(|| format!("meta-{tx}")),
        error: None,
        ts: Utc::now(),
        date: Utc::now().date_naive(),
        proof: None,
    }
}

/// Writer `t` of `table`, partitioned by date.
async fn open(store: &TableStore, table: &str, schema: &SchemaRef) -> ExactlyOnceTable {
    ExactlyOnceTable::open(store, table, schema, &["date"], "t", Maintenance::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn balances_follow_confirmed_payouts_and_recorded_payments() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let mut ledger = Ledger::open(&store, Maintenance::default()).await.unwrap();
    assert!(
        ledger.pools().await.unwrap().is_empty(),
        "nothing earned yet"
    );

    let schema = EventKind::Block.table_schema();
    let mut blocks = open(&store, TABLE_BLOCKS, &schema).await;
    let rows = [
        block("a", BlockStatus::Submitted),
        block("a", BlockStatus::Confirmed),
        block("b", BlockStatus::Submitted),
        block("b", BlockStatus::Orphaned),
        block("c", BlockStatus::Submitted),
    ];
    let stamped: Vec<(u64, &Block)> = rows
        .iter()
        .enumerate()
        .map(|(i, b)| (i as u64 + 1, b))
        .collect();
    let batch = stamped_batch("block", schema.clone(), &stamped, |b| b.ts).unwrap();
    blocks.commit(vec![batch], 1).await.unwrap();
    let mut payouts = open(&store, TABLE_PAYOUTS, &Payout::schema()).await;
    let rows = [
        payout("a", "alice", 100),
        payout("a", "bob", 50),
        payout("b", "alice", 70), // orphaned: void
        payout("c", "bob", 30),   // pending
    ];
    payouts
        .commit(
            vec![to_batch("payouts", Payout::schema(), &rows).unwrap()],
            1,
        )
        .await
        .unwrap();

    assert_eq!(ledger.pools().await.unwrap(), ["p1"]);
    // Vouching for every block counts only the confirmed, unorphaned one.
    let all: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    assert_eq!(
        ledger.balances("p1", &all).await.unwrap(),
        [("alice".to_string(), 100), ("bob".to_string(), 50)]
    );
    // The blocks a balance counts, for the payer to check with the node: only `a`.
    let claimed = ledger.claimed_blocks("p1").await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|c| (c.hash.as_str(), c.payouts))
            .collect::<Vec<_>>(),
        [("a", 150)]
    );
    assert_eq!(
        ledger.balances("p1", &[]).await.unwrap(),
        [],
        "a block the node does not vouch for counts for nothing"
    );
    assert_eq!(
        ledger
            .balances("p1", &["b".to_string(), "c".to_string()])
            .await
            .unwrap(),
        [],
        "nor does vouching for blocks that are not confirmed"
    );

    for (tx, miner, amount, status) in [
        ("t1", "alice", 40, PaymentStatus::Created),
        ("t1", "alice", 40, PaymentStatus::Relayed),
        ("t2", "bob", 20, PaymentStatus::Created),
    ] {
        let row = payment(tx, miner, amount, status);
        ledger.record(&[row]).await.unwrap();
    }
    assert_eq!(
        ledger.balances("p1", &all).await.unwrap(),
        [("alice".to_string(), 60), ("bob".to_string(), 30)],
        "a payment counts from the moment it is recorded"
    );
    let open = ledger.open_payments("p1").await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(
        (open[0].tx_hash.as_str(), open[0].status),
        ("t1", PaymentStatus::Relayed)
    );
    assert_eq!(open[0].destinations, [("alice".to_string(), 40)]);
    assert_eq!(
        open[0].tx_blob, "blob-t1",
        "the signed transaction is kept to send again"
    );
    assert_eq!(
        (open[1].tx_hash.as_str(), open[1].status),
        ("t2", PaymentStatus::Created)
    );

    for (tx, miner, amount, status) in [
        ("t2", "bob", 20, PaymentStatus::Failed),
        ("t1", "alice", 40, PaymentStatus::Confirmed),
    ] {
        let row = payment(tx, miner, amount, status);
        ledger.record(&[row]).await.unwrap();
    }
    assert_eq!(
        ledger.balances("p1", &all).await.unwrap(),
        [("alice".to_string(), 60), ("bob".to_string(), 50)],
        "a failed payment gives its amount back"
    );
    assert!(ledger.open_payments("p1").await.unwrap().is_empty());
}

fn credit(pool: &str, seq: i64, miner: &str, amount: i64) -> ShareCredit {
    ShareCredit {
        pool: pool.into(),
        miner: miner.into(),
        worker: "w".into(),
        share_seq: seq,
        height: 10,
        scheme: "pps".into(),
        difficulty: 10,
        network_difficulty: 100,
        base: amount * 10,
        fee_bps: 0,
        amount,
        ts: Utc::now(),
        date: Utc::now().date_naive(),
    }
}

#[tokio::test]
async fn share_credits_are_owed_at_once_with_or_without_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = TableStore::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let mut ledger = Ledger::open(&store, Maintenance::default()).await.unwrap();
    let mut credits = open(&store, TABLE_SHARE_CREDITS, &ShareCredit::schema()).await;
    let rows = [
        credit("pps", 1, "alice", 30),
        credit("pps", 2, "bob", 5),
        credit("pps", 3, "alice", 12),
        credit("other", 4, "carol", 9),
    ];
    credits
        .commit(
            vec![to_batch("share_credits", ShareCredit::schema(), &rows).unwrap()],
            1,
        )
        .await
        .unwrap();
    // A pool that only ever paid per share has no payouts and no blocks table: it still
    // owes, and is paid.
    assert_eq!(ledger.pools().await.unwrap(), ["other", "pps"]);
    assert_eq!(
        ledger.balances("pps", &[]).await.unwrap(),
        [("alice".to_string(), 42), ("bob".to_string(), 5)],
        "credits need no block vouched for"
    );
    let mut paid = payment("t1", "alice", 40, PaymentStatus::Created);
    paid.pool = "pps".into();
    ledger.record(&[paid]).await.unwrap();
    assert_eq!(
        ledger.balances("pps", &[]).await.unwrap(),
        [("alice".to_string(), 2), ("bob".to_string(), 5)],
        "a payment counts against the credits"
    );

    // Beside block payouts, both count.
    let schema = EventKind::Block.table_schema();
    let mut blocks = open(&store, TABLE_BLOCKS, &schema).await;
    let mut confirmed = block("a", BlockStatus::Confirmed);
    confirmed.pool = "pps".into();
    let batch = stamped_batch("block", schema.clone(), &[(1, &confirmed)], |b| b.ts).unwrap();
    blocks.commit(vec![batch], 1).await.unwrap();
    let mut payouts = open(&store, TABLE_PAYOUTS, &Payout::schema()).await;
    let mut row = payout("a", "bob", 100);
    row.pool = "pps".into();
    payouts
        .commit(
            vec![to_batch("payouts", Payout::schema(), &[row]).unwrap()],
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        ledger.balances("pps", &["a".to_string()]).await.unwrap(),
        [("alice".to_string(), 2), ("bob".to_string(), 105)]
    );
}
