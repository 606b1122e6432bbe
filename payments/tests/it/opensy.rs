//! The SYL payer's coin ([`OpenSy`]) against the simulated OpenSY node, whose wallet answers
//! as a real node's did (`stratum/tests/it/opensy.rs` holds it to the real answers): a found
//! block as the node shows it, what the wallet received from its coinbase, addresses, and a
//! payment built, found nowhere, sent (twice), waiting, mined, sent again after it is mined,
//! and a spend of its inputs refused.

use std::time::Duration;

use adit_jsonrpc::RpcAuth;
use adit_payments::coin::Coin;
use adit_payments::daemon::{Held, Relay};
use adit_payments::opensy::OpenSy;
use adit_payments::wallet::AddressKind;
use adit_stratum::opensy::simnode::{SimNode, subsidy, unowned_address};
use adit_testkit::jsonrpc::result;
use bitcoin::consensus::encode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_syl_payer_pays_through_the_node_s_wallet_and_follows_the_payment() {
    let stop = CancellationToken::new();
    let sim = SimNode::on_loopback(stop.clone()).await.unwrap();
    let url = sim.url();
    let coin = OpenSy::new(
        &url,
        "adit",
        RpcAuth::None,
        Duration::from_secs(30),
        Some(10),
    )
    .unwrap();
    let ours = sim.wallet_address();
    result(&url, "generatetoaddress", json!([101, ours])).await;
    assert_eq!(
        coin.height().await.unwrap(),
        102,
        "blocks, genesis included"
    );

    // A found block as the node shows it, and its coinbase in the wallet, to the unit.
    let first = result(&url, "getblockhash", json!([1])).await;
    let seen = coin.block(first.as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((seen.height, seen.depth, seen.orphan), (1, 100, false));
    assert_eq!(seen.reward, subsidy(1));
    assert_eq!(
        coin.coinbase_received(&seen.miner_tx_hash).await.unwrap(),
        Some(subsidy(1))
    );
    assert_eq!(coin.block(&"00".repeat(32)).await.unwrap(), None);
    // A block that paid someone else is nothing the wallet received.
    let theirs = result(&url, "generatetoaddress", json!([1, unowned_address()])).await;
    let other = coin
        .block(theirs[0].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        coin.coinbase_received(&other.miner_tx_hash).await.unwrap(),
        None
    );

    let (a, b) = (unowned_address(), ours.clone());
    assert_eq!(coin.address_kind(&a).await.unwrap(), AddressKind::Plain);
    assert_eq!(
        coin.address_kind("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")
            .await
            .unwrap(),
        AddressKind::Invalid,
        "another chain's address"
    );

    // Built, not sent: the node holds it nowhere.
    let built = coin
        .build(&[(a.clone(), 150_000_000), (b.clone(), 25_000_001)])
        .await
        .unwrap();
    assert_eq!(built.tx_blob, built.tx_metadata);
    assert!(built.fee > 0 && built.fee < 10_000, "{}", built.fee);
    assert_eq!(coin.held(&built.tx_hash).await.unwrap(), Held::Nowhere);
    // Sent, and sent again as a restart would: one transaction, waiting.
    coin.send_recorded(&built.tx_blob, &built.tx_metadata)
        .await
        .unwrap();
    coin.send_recorded(&built.tx_blob, &built.tx_metadata)
        .await
        .unwrap();
    assert_eq!(coin.held(&built.tx_hash).await.unwrap(), Held::InPool);
    // Mined; sending it again is a payment made, not a refusal.
    result(&url, "generatetoaddress", json!([1, ours])).await;
    assert_eq!(coin.held(&built.tx_hash).await.unwrap(), Held::InBlock(103));
    assert_eq!(
        coin.relay_signed(&built.tx_blob).await.unwrap(),
        Relay::Accepted
    );
    coin.send_recorded(&built.tx_blob, &built.tx_metadata)
        .await
        .unwrap();
    // Its inputs spent again, by a transaction that pays someone else more: refused.
    let mut tx: bitcoin::Transaction =
        encode::deserialize(&hex::decode(&built.tx_blob).unwrap()).unwrap();
    tx.output[0].value = bitcoin::Amount::from_sat(200_000_000);
    assert_eq!(
        coin.relay_signed(&encode::serialize_hex(&tx))
            .await
            .unwrap(),
        Relay::Refused("bad-txns-inputs-missingorspent".into())
    );
    stop.cancel();
}
