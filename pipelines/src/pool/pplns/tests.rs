//! The PPLNS pipeline's tests, in process (steps fed decoded batches, their output batches
//! read back): splits, windows, schemes by height, per-share credits, snapshots.

use super::*;
use adit_bus::DecodedBatch;
use arrow::array::{AsArray, Int64Array};
use chrono::Utc;

fn share(pool: &str, miner: &str, nonce: &str, difficulty: u64, accepted: bool) -> AnyEvent {
    share_at(pool, miner, nonce, difficulty, accepted, Utc::now())
}

fn share_at(
    pool: &str,
    miner: &str,
    nonce: &str,
    difficulty: u64,
    accepted: bool,
    ts: chrono::DateTime<Utc>,
) -> AnyEvent {
    AnyEvent::Share(Share {
        pool: pool.into(),
        miner: miner.into(),
        worker: "w".into(),
        job_id: "j".into(),
        nonce: nonce.into(),
        difficulty,
        height: 10,
        accepted,
        reason: (!accepted).then(|| "stale".into()),
        ts,
        network_difficulty: None,
        reward: None,
        subsidy: None,
        team: None,
    })
}

fn block(pool: &str, nonce: &str, status: BlockStatus) -> AnyEvent {
    block_of(pool, nonce, status, 100, Utc::now())
}

/// A block of network difficulty `difficulty` (W = 2 × it) whose hash follows its nonce.
fn block_of(
    pool: &str,
    nonce: &str,
    status: BlockStatus,
    difficulty: u64,
    ts: chrono::DateTime<Utc>,
) -> AnyEvent {
    AnyEvent::Block(Block {
        pool: pool.into(),
        height: 10,
        hash: hash_of(nonce),
        miner: "a".into(),
        worker: "w".into(),
        job_id: "j".into(),
        nonce: nonce.into(),
        reward: 1_000_000,
        network_difficulty: difficulty,
        status,
        error: None,
        ts,
    })
}

fn hash_of(nonce: &str) -> String {
    format!("{nonce:0>64}")
}

fn total(out: &StepOutput) -> i64 {
    paid(out).iter().map(|(_, a)| a).sum()
}

fn input(events: Vec<(u64, AnyEvent)>) -> StepInput {
    let mut rows: BTreeMap<EventKind, Vec<(u64, AnyEvent)>> = BTreeMap::new();
    for (seq, e) in events {
        rows.entry(e.kind()).or_default().push((seq, e));
    }
    StepInput {
        now: Utc::now(),
        ticks: vec![],
        inputs: vec![DecodedBatch {
            lo: 0,
            hi: 0,
            rows,
            rejected: vec![],
        }],
    }
}

fn pplns() -> Pplns {
    Pplns::new(PplnsConfig {
        fee_bps: 0,
        ..PplnsConfig::default()
    })
}

fn paid(out: &StepOutput) -> Vec<(String, i64)> {
    let Some((_, batch)) = out.tables.iter().find(|(t, _)| t == TABLE_PAYOUTS) else {
        return vec![];
    };
    let miners = batch.column_by_name("miner").unwrap().as_string::<i32>();
    let amounts = batch
        .column_by_name("amount")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    (0..batch.num_rows())
        .map(|i| (miners.value(i).to_string(), amounts.value(i)))
        .collect()
}

#[tokio::test]
async fn the_window_ends_at_the_finding_share_and_ignores_the_rest() {
    let p = pplns();
    let mut state = PplnsState::default();
    // W = 200. Oldest first: b 150 (only 40 counts), rejected, other pool, a 60 (finds the
    // block), a 100, b 999 after the finder (not counted), then the block event.
    let out = p
        .step(
            &mut state,
            input(vec![
                (1, share("p1", "b", "01", 150, true)),
                (2, share("p1", "a", "02", 500, false)),
                (3, share("p2", "a", "03", 500, true)),
                (4, share("p1", "a", "04", 100, true)),
                (5, share("p1", "a", "05", 60, true)),
                (6, share("p1", "b", "06", 999, true)),
                (7, block("p1", "05", BlockStatus::Submitted)),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        paid(&out),
        [("a".to_string(), 800_000), ("b".to_string(), 200_000)]
    );
    assert!(state.waiting.is_empty());
    assert_eq!(out.results.len(), 2);
}

#[tokio::test]
async fn a_block_waits_for_its_share_and_a_refused_block_pays_nothing() {
    let p = pplns();
    let mut state = PplnsState::default();
    let out = p
        .step(
            &mut state,
            input(vec![
                (1, share("p1", "a", "01", 300, true)),
                (2, block("p1", "02", BlockStatus::Submitted)),
                (3, block("p1", "01", BlockStatus::Rejected)),
            ]),
        )
        .await
        .unwrap();
    assert!(paid(&out).is_empty());
    assert_eq!(state.waiting.len(), 1);
    // The share arrives after the block (a publish retried): the block is split then,
    // over the window ending at that share.
    let out = p
        .step(
            &mut state,
            input(vec![(4, share("p1", "c", "02", 50, true))]),
        )
        .await
        .unwrap();
    assert_eq!(
        paid(&out),
        [("a".to_string(), 750_000), ("c".to_string(), 250_000)]
    );
    assert!(state.waiting.is_empty());
}

#[tokio::test]
async fn state_survives_a_snapshot_and_old_shares_are_forgotten() {
    let p = pplns();
    let mut state = PplnsState::default();
    // One share a minute, the newest 10 minutes ago.
    let base = Utc::now() - chrono::Duration::minutes(1_010);
    let mut events: Vec<(u64, AnyEvent)> = (1..=1_000)
        .map(|i| {
            let ts = base + chrono::Duration::minutes(i as i64);
            let miner = format!("m{}", i % 7);
            (i, share_at("p1", &miner, &format!("{i:04}"), 10, true, ts))
        })
        .collect();
    events.push((1_001, block("p1", "1000", BlockStatus::Submitted)));
    p.step(&mut state, input(events)).await.unwrap();
    // The last 10 minutes of shares (11 of them: 110), and before them RISE × the window
    // (4 × 200), plus the share that crosses it.
    let kept: u128 = state.pools["p1"].weight;
    assert_eq!(kept, 110 + 810);
    assert!(state.pools["p1"].recent.len() <= 11);
    let json = serde_json::to_vec(&state).unwrap();
    let mut back: PplnsState = serde_json::from_slice(&json).unwrap();
    let out = p
        .step(
            &mut back,
            input(vec![
                (1_002, share("p1", "new", "x1", 200, true)),
                (1_003, block("p1", "x1", BlockStatus::Submitted)),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(paid(&out), [("new".to_string(), 1_000_000)]);
}

#[tokio::test]
async fn a_blocks_confirmation_and_orphaning_reach_payout_subscribers() {
    let p = pplns();
    let mut state = PplnsState::default();
    let out = p
        .step(
            &mut state,
            input(vec![
                (1, block("p1", "01", BlockStatus::Confirmed)),
                (2, block("p2", "02", BlockStatus::Orphaned)),
            ]),
        )
        .await
        .unwrap();
    let subjects: Vec<(&str, &str)> = out
        .results
        .iter()
        .map(|r| (r.subject.as_str(), r.id.as_str()))
        .collect();
    assert_eq!(
        subjects,
        [
            (
                "results.payout.p1",
                format!("block:p1:{}:confirmed", hash_of("01")).as_str()
            ),
            (
                "results.payout.p2",
                format!("block:p2:{}:orphaned", hash_of("02")).as_str()
            ),
        ]
    );
    assert!(paid(&out).is_empty(), "a status change pays nothing");
}

/// A block re-sent (the same hash, a later event) is paid once, whether the first is
/// still waiting for its share or already split.
#[tokio::test]
async fn a_block_is_split_once_whatever_is_sent_again() {
    let p = pplns();
    let mut state = PplnsState::default();
    let out = p
        .step(
            &mut state,
            input(vec![
                (1, block("p1", "01", BlockStatus::Submitted)),
                (2, block("p1", "01", BlockStatus::Submitted)),
                (3, share("p1", "a", "01", 500, true)),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(paid(&out), [("a".to_string(), 1_000_000)]);
    let out = p
        .step(
            &mut state,
            input(vec![
                (4, share("p1", "b", "02", 500, true)),
                (5, block("p1", "01", BlockStatus::Submitted)),
            ]),
        )
        .await
        .unwrap();
    assert!(paid(&out).is_empty(), "paid twice: {:?}", paid(&out));
    assert!(state.waiting.is_empty());
}

/// A block that can never be split is refused with its reason and does not hold the
/// window: the pool's shares are still trimmed while it waits and after.
#[tokio::test]
async fn an_unsplittable_block_is_refused_and_never_stops_the_trimming() {
    let p = pplns();
    let mut state = PplnsState::default();
    let start = Utc::now() - chrono::Duration::hours(5);
    let at = |minutes: i64| start + chrono::Duration::minutes(minutes);
    let mut events = vec![
        (1, block_of("p1", "zz", BlockStatus::Submitted, 0, at(0))),
        (
            2,
            block_of("p1", "never", BlockStatus::Submitted, 100, at(29)),
        ),
    ];
    events.extend((0..30).map(|i| {
        (
            3 + i as u64,
            share_at("p1", "a", &format!("s{i}"), 100, true, at(i)),
        )
    }));
    p.step(&mut state, input(events)).await.unwrap();
    assert_eq!(state.waiting.len(), 1, "difficulty 0 is refused at once");
    // Trimmed while the block waits: the last 10 minutes (11 shares) and 4 × 200 before.
    assert_eq!(state.pools["p1"].weight, 1_100 + 900);
    // Shares go on past max_block_delay without the block's: it is refused.
    let later: Vec<_> = (30..300)
        .map(|i| {
            (
                3 + i as u64,
                share_at("p1", "a", &format!("s{i}"), 100, true, at(i)),
            )
        })
        .collect();
    let out = p.step(&mut state, input(later)).await.unwrap();
    assert!(paid(&out).is_empty());
    assert!(state.waiting.is_empty(), "{:?}", state.waiting);
    assert_eq!(state.pools["p1"].weight, 1_100 + 900);
}

/// The network difficulty triples between two of the pool's blocks, with the shares
/// between them far apart in time: the second window is still whole (it used to be cut
/// at twice the first block's).
#[tokio::test]
async fn a_window_spanning_a_difficulty_rise_is_whole() {
    let p = pplns();
    let mut state = PplnsState::default();
    let start = Utc::now() - chrono::Duration::days(10);
    let at = |minutes: i64| start + chrono::Duration::minutes(minutes);
    let mut events: Vec<(u64, AnyEvent)> = (0..100u64)
        .map(|i| {
            (
                i,
                share_at("p1", "a", &format!("a{i}"), 10, true, at(i as i64)),
            )
        })
        .collect();
    events.push((
        100,
        block_of("p1", "a99", BlockStatus::Submitted, 100, at(100)),
    ));
    let out = p.step(&mut state, input(events)).await.unwrap();
    assert_eq!(total(&out), 1_000_000);
    // Hours of shares, one a minute, in steps: each step trims.
    for chunk in 0..10u64 {
        let events = (0..100)
            .map(|i| {
                let n = 101 + chunk * 100 + i;
                let miner = if n % 2 == 0 { "b" } else { "c" };
                (
                    n,
                    share_at("p1", miner, &format!("n{n}"), 10, true, at(n as i64)),
                )
            })
            .collect();
        p.step(&mut state, input(events)).await.unwrap();
    }
    let out = p
        .step(
            &mut state,
            input(vec![(
                1_101,
                block_of("p1", "n1100", BlockStatus::Submitted, 300, at(1_101)),
            )]),
        )
        .await
        .unwrap();
    // W = 600 over shares of 10: 60 shares, all paid.
    assert_eq!(total(&out), 1_000_000, "{:?}", paid(&out));
}

/// The node is unreachable between the finding share and its block: the pool's shares
/// keep coming (many windows' worth), and the block, when it comes, is split over the
/// window ending at its share, whole.
#[tokio::test]
async fn a_long_gap_between_the_finding_share_and_its_block_is_covered() {
    let p = pplns();
    let mut state = PplnsState::default();
    let start = Utc::now() - chrono::Duration::days(1);
    let at = |seconds: i64| start + chrono::Duration::seconds(seconds);
    // A first block sets W = 200; then the miner "early" before the finding share.
    let mut events: Vec<(u64, AnyEvent)> = vec![
        (1, share_at("p1", "x", "x", 200, true, at(0))),
        (2, block_of("p1", "x", BlockStatus::Submitted, 100, at(1))),
    ];
    events.extend((0..300).map(|i| {
        (
            3 + i,
            share_at("p1", "early", &format!("e{i}"), 1, true, at(2 + i as i64)),
        )
    }));
    events.push((400, share_at("p1", "finder", "F", 1, true, at(400))));
    p.step(&mut state, input(events)).await.unwrap();
    // Five minutes of shares from "late" (2 000 of weight, ten windows), in steps.
    for chunk in 0..10u64 {
        let events = (0..200)
            .map(|i| {
                let n = 401 + chunk * 200 + i;
                (
                    n,
                    share_at(
                        "p1",
                        "late",
                        &format!("l{n}"),
                        1,
                        true,
                        at(400 + (n as i64 - 400) / 7),
                    ),
                )
            })
            .collect();
        p.step(&mut state, input(events)).await.unwrap();
    }
    let out = p
        .step(
            &mut state,
            input(vec![(
                3_000,
                block_of("p1", "F", BlockStatus::Submitted, 100, at(700)),
            )]),
        )
        .await
        .unwrap();
    assert_eq!(
        paid(&out),
        [
            ("early".to_string(), 995_000),
            ("finder".to_string(), 5_000)
        ]
    );
}

/// When a window truly cannot be filled from what was kept (here the share cap forgot
/// what it needs), the block waits, told once, instead of paying short.
#[tokio::test]
async fn a_window_the_kept_shares_cannot_fill_waits_instead_of_paying_short() {
    let p = Pplns::new(PplnsConfig {
        fee_bps: 0,
        max_window_shares: 1_000,
        ..PplnsConfig::default()
    });
    let mut state = PplnsState::default();
    let events: Vec<(u64, AnyEvent)> = (0..3_000)
        .map(|i| (i, share("p1", "a", &format!("{i}"), 1, true)))
        .collect();
    p.step(&mut state, input(events)).await.unwrap();
    assert_eq!(state.pools["p1"].shares.len(), 1_000);
    let out = p
        .step(
            &mut state,
            input(vec![(
                3_000,
                block_of("p1", "2999", BlockStatus::Submitted, 1_000, Utc::now()),
            )]),
        )
        .await
        .unwrap();
    assert!(paid(&out).is_empty(), "paid short: {:?}", paid(&out));
    assert_eq!(state.waiting.len(), 1);
    assert!(state.waiting[0].short);
}

#[test]
fn config_refuses_a_whole_fee_and_names_the_key() {
    let mut c = PplnsConfig::default();
    assert!(c.validate().is_ok());
    c.pools.insert(
        "p1".into(),
        PoolRules {
            fee_bps: Some(10_000),
            ..PoolRules::default()
        },
    );
    assert_eq!(
        c.validate().unwrap_err().key,
        "pipelines.pplns.pools.p1.fee_bps"
    );
    let c = PplnsConfig {
        fee_bps: 20_000,
        ..PplnsConfig::default()
    };
    assert_eq!(c.validate().unwrap_err().key, "pipelines.pplns.fee_bps");
}

/// An accepted share of job height `height`, priced on network difficulty 1 000, reward
/// 1 100 000 and subsidy 1 000 000.
fn priced(nonce: &str, miner: &str, difficulty: u64, height: u64) -> AnyEvent {
    let AnyEvent::Share(mut s) = share("p1", miner, nonce, difficulty, true) else {
        unreachable!()
    };
    s.height = height;
    s.network_difficulty = Some(1_000);
    s.reward = Some(1_100_000);
    s.subsidy = Some(1_000_000);
    AnyEvent::Share(s)
}

fn credits(out: &StepOutput) -> Vec<(String, i64, i64)> {
    let Some((_, batch)) = out.tables.iter().find(|(t, _)| t == TABLE_SHARE_CREDITS) else {
        return vec![];
    };
    let miners = batch.column_by_name("miner").unwrap().as_string::<i32>();
    let int = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone()
    };
    let (seqs, amounts) = (int("share_seq"), int("amount"));
    (0..batch.num_rows())
        .map(|i| (miners.value(i).to_string(), seqs.value(i), amounts.value(i)))
        .collect()
}

#[tokio::test]
async fn per_share_schemes_credit_each_share_and_a_switch_back_never_pays_it_again() {
    let schemes = vec![
        SchemeFrom {
            from: 10,
            scheme: Scheme::Pps,
        },
        SchemeFrom {
            from: 11,
            scheme: Scheme::Fpps,
        },
        SchemeFrom {
            from: 12,
            scheme: Scheme::Pplns,
        },
    ];
    let p = Pplns::new(PplnsConfig {
        fee_bps: 100,
        pools: [(
            "p1".to_string(),
            PoolRules {
                schemes,
                ..PoolRules::default()
            },
        )]
        .into(),
        ..PplnsConfig::default()
    });
    let mut state = PplnsState::default();
    let mut unpriced = priced("04", "c", 100, 10);
    if let AnyEvent::Share(s) = &mut unpriced {
        s.subsidy = None;
    }
    let mut block10 = block("p1", "02", BlockStatus::Submitted);
    if let AnyEvent::Block(b) = &mut block10 {
        b.network_difficulty = 1_000;
    }
    let out = p
        .step(
            &mut state,
            input(vec![
                (1, share("p1", "a", "00", 500, true)), // height 10, but unpriced: an old event
                (2, priced("01", "a", 250, 10)),
                (3, priced("02", "b", 100, 10)),
                (4, share("p1", "b", "03", 100, false)), // rejected: nothing
                (5, unpriced),
                (6, priced("06", "b", 100, 11)),
                (7, block10),
            ]),
        )
        .await
        .unwrap();
    // PPS: 250/1000 × 1 000 000 × 0.99; FPPS on the whole reward 1 100 000.
    assert_eq!(
        credits(&out),
        [
            ("a".to_string(), 2, 247_500),
            ("b".to_string(), 3, 99_000),
            ("b".to_string(), 6, 108_900),
        ]
    );
    assert!(paid(&out).is_empty(), "the pool keeps a PPS block");
    let (_, rewards) = out
        .tables
        .iter()
        .find(|(t, _)| t == TABLE_BLOCK_REWARDS)
        .unwrap();
    let column = |name: &str| {
        rewards
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    };
    assert_eq!((column("paid"), column("remainder")), (0, 1_000_000));

    // Back to PPLNS from 12: the window holds only shares of PPLNS heights, so no share
    // credited above is paid again.
    let mut block12 = block("p1", "21", BlockStatus::Submitted);
    if let AnyEvent::Block(b) = &mut block12 {
        b.height = 12;
        b.hash = hash_of("b12");
    }
    let out = p
        .step(
            &mut state,
            input(vec![
                (20, priced("20", "c", 50, 12)),
                (21, priced("21", "d", 50, 12)),
                (22, block12),
            ]),
        )
        .await
        .unwrap();
    assert!(credits(&out).is_empty());
    // W = 2 × 100 = 200, filled 100: c and d get 1/4 each of 990 000; the rest stays.
    assert_eq!(
        paid(&out),
        [("c".to_string(), 247_500), ("d".to_string(), 247_500)]
    );
}
