//! The node client against a real `monerod --regtest --offline --fixed-difficulty 1` (from
//! `adit_testkit::Monerod`; `apt-get install monero`): a block mined here with RandomX is
//! accepted and the tip rises, the node's refusal of garbage comes back as its error, and the
//! circuit breaker opens on a dead port.

use std::time::Duration;

use adit_stratum::{
    BreakerConfig, Error, MoneroRpc, Node, RandomXHasher, RpcConfig, Template, block_id,
    hashing_blob, meets_difficulty, watch_tip,
};
use adit_testkit::Monerod;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A valid mainnet address (regtest parses addresses as mainnet): the Monero general fund's.
const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// Mines `template` with extra nonce `extra_nonce`: the first nonce whose RandomX hash meets the
/// template's difficulty; returns the block blob and its hashing blob.
fn mine(template: &Template, extra_nonce: u32) -> (Vec<u8>, Vec<u8>) {
    let hasher = RandomXHasher::light(&template.seed_hash).expect("RandomX hasher");
    let miner = template
        .block_template()
        .expect("template parses")
        .for_miner(extra_nonce)
        .expect("extra nonce fits");
    for nonce in 0u32.. {
        let nonce = nonce.to_le_bytes();
        let hashing = miner.hashing_blob_with_nonce(nonce);
        let pow = hasher.hash(&hashing).expect("hash");
        if meets_difficulty(&pow, template.difficulty) {
            return (miner.block_blob_with_nonce(nonce), hashing);
        }
    }
    panic!("no nonce meets difficulty {}", template.difficulty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_mined_here_is_accepted_and_the_tip_rises() {
    let monerod = Monerod::start();
    let rpc = MoneroRpc::new(&monerod.rpc_url(), RpcConfig::default()).unwrap();
    let node = Node::Monerod(rpc.clone());

    let info = node.get_info().await.unwrap();
    assert_eq!(info.nettype, "fakechain");
    assert!(info.offline);
    let genesis = node.get_last_block_header().await.unwrap();
    assert_eq!(genesis.height, 0);
    assert_eq!(info.top_block_hash, genesis.hash);
    assert_eq!(info.height, 1);

    // Watch the tip as the pool does.
    let (tip_tx, mut tip_rx) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let watcher = tokio::spawn(watch_tip(
        node.clone(),
        Duration::from_millis(50),
        tip_tx,
        shutdown.clone(),
    ));
    tip_rx.changed().await.unwrap();
    assert_eq!(tip_rx.borrow_and_update().unwrap().hash, genesis.hash);

    for round in 1..=2u64 {
        let template = node.get_block_template(WALLET, 8).await.unwrap();
        assert_eq!(template.height, round);
        assert_eq!(template.difficulty, 1);
        assert_eq!(template.reserve_size, 8);
        let tip = node.get_last_block_header().await.unwrap();
        assert_eq!(template.prev_hash, tip.hash);

        let mined = template.clone();
        let (block, hashing) = tokio::task::spawn_blocking(move || mine(&mined, 0x0102_0304))
            .await
            .unwrap();
        node.submit_block(&hex::encode(&block)).await.unwrap();

        let header = node.get_last_block_header().await.unwrap();
        assert_eq!(header.height, round, "monerod's height rose");
        assert_eq!(header.hash, block_id(&hashing));
        assert_eq!(hashing_blob(&block).unwrap(), hashing);
        assert_eq!(header.prev_hash, template.prev_hash);
        assert_eq!(header.reward, template.expected_reward);
        // A block of no transactions: its emission (what PPS prices on) is its whole reward,
        // and the next block's subsidy is no more than it.
        assert_eq!(rpc.emission(round).await.unwrap(), header.reward);
        let next = node.work(WALLET).await.unwrap();
        assert!(next.subsidy <= next.reward && next.subsidy <= header.reward);
        assert!(!header.orphan_status);
        assert_eq!(header.depth, 0);
        assert_eq!(
            node.get_block_header_by_height(round).await.unwrap(),
            header
        );

        // The watcher publishes the new tip.
        loop {
            tip_rx.changed().await.unwrap();
            let seen = tip_rx.borrow_and_update().unwrap();
            if seen.height == round {
                assert_eq!(seen.hash, header.hash);
                break;
            }
        }
    }
    assert_eq!(node.get_block_header_by_height(1).await.unwrap().depth, 1);
    assert_eq!(node.get_info().await.unwrap().height, 3);

    shutdown.cancel();
    watcher.await.unwrap();
    assert_eq!(
        rpc.breaker_state(),
        adit_stratum::BreakerState::Closed { failures: 0 }
    );
}

#[tokio::test]
async fn the_nodes_refusals_come_back_as_its_errors() {
    let monerod = Monerod::start();
    let node = Node::Monerod(MoneroRpc::new(&monerod.rpc_url(), RpcConfig::default()).unwrap());

    for garbage in ["00", "zz", "deadbeef"] {
        let err = node.submit_block(garbage).await.unwrap_err();
        assert!(
            matches!(
                &err,
                Error::NodeRejected { method: "submit_block", code: -6, message }
                    if message == "Wrong block blob"
            ),
            "{err}"
        );
    }
    let err = node
        .get_block_template("not an address", 8)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NodeRejected { code: -4, message, .. } if message.contains("wallet address")),
        "{err}"
    );
    let err = node.get_block_template(WALLET, 256).await.unwrap_err();
    assert!(
        matches!(&err, Error::NodeRejected { code: -3, .. }),
        "{err}"
    );
    let err = node.get_block_header_by_height(5).await.unwrap_err();
    assert!(
        matches!(&err, Error::NodeRejected { code: -2, .. }),
        "{err}"
    );
    // The node answered every time: its breaker is closed and calls keep working.
    assert_eq!(node.get_last_block_header().await.unwrap().height, 0);
}

#[tokio::test]
async fn the_breaker_opens_on_a_dead_port() {
    // A port nothing listens on.
    let port = adit_testkit::free_port();
    let config = RpcConfig {
        timeout: Duration::from_secs(2),
        retries: 1,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        breaker: BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(30),
        },
    };
    let rpc = MoneroRpc::new(&format!("http://127.0.0.1:{port}"), config).unwrap();
    for _ in 0..3 {
        let err = rpc.get_info().await.unwrap_err();
        assert!(
            matches!(
                &err,
                Error::NodeUnreachable {
                    method: "get_info",
                    attempts: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
    // Refused by the breaker without a call: `NodeUnavailable` with its wait, not the
    // `NodeUnreachable` of a call that was tried (no clock: a busy machine may be slow).
    let err = rpc.submit_block("00").await.unwrap_err();
    assert!(
        matches!(&err, Error::NodeUnavailable { failures: 3, retry_in: Some(wait), .. } if *wait > Duration::from_secs(20)),
        "{err}"
    );
    assert!(err.to_string().contains("circuit breaker open"), "{err}");
}
