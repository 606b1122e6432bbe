//! The books on real Delta tables: balances count only confirmed, not orphaned, payouts; a
//! payment counts from `created` and comes back only when `failed`; open payments are those
//! neither confirmed nor failed.

use adit_payments::ledger::Ledger;
use adit_schemas::names::{TABLE_BLOCKS, TABLE_PAYOUTS};
use adit_schemas::results::{Payment, PaymentStatus, Payout};
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
