//! OpenSY through the pool, on the simulated OpenSY node (issue 58): a miner that names
//! `rx/opensy` mines jobs whose nonce sits at byte 76 and the node takes the pool's blocks; a
//! miner that does not is refused; and the node refuses what the real one refuses, with the
//! real one's reasons, in its order.

use std::time::Duration;

use adit_stratum::opensy::{
    Network, OpenSyNode, OpenSyRpc, OpenSyTemplate, SimNode, Submitted, script_for,
};
use adit_stratum::{
    ALGO_OPENSY, BlockFound, Node, Pool, RandomXHasher, RpcAuth, RpcConfig, ServerConfig,
    StratumClient, fetch_work, serve,
};
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::{Block, Target, WitnessProgram, WitnessVersion};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A regtest address of the pool.
fn pool_address() -> String {
    Network::Regtest.segwit_address(&WitnessProgram::new(WitnessVersion::V0, &[7; 20]).unwrap())
}

/// A simulated node and a client of it.
async fn node() -> (SimNode, OpenSyRpc, CancellationToken) {
    let stop = CancellationToken::new();
    let sim = SimNode::on_loopback(stop.clone()).await.unwrap();
    let rpc = OpenSyRpc::new(&sim.url(), RpcAuth::None, RpcConfig::default()).unwrap();
    (sim, rpc, stop)
}

/// The first nonce from `start` whose RandomX hash of `block`'s header is (or, with `above`,
/// is not) within `target`: the block with it.
fn solve(hasher: &RandomXHasher, mut block: Block, target: Target, above: bool) -> Block {
    for nonce in 0.. {
        block.header.nonce = nonce;
        let hash = hasher.hash(&encode::serialize(&block.header)).unwrap();
        if (Target::from_le_bytes(hash) <= target) != above {
            return block;
        }
    }
    unreachable!("a nonce is found within 2^32 tries at regtest's target")
}

/// The first nonce whose hash sits at the target's edge: its most significant byte (the last,
/// read little-endian) the target's own and the hash within it, or, with `above`, one more and
/// so just outside. Within 1/128 of the target either way at regtest's.
fn solve_at_edge(hasher: &RandomXHasher, mut block: Block, target: Target, above: bool) -> Block {
    let top = target.to_be_bytes()[0];
    assert!(
        top < 0xff,
        "a target whose top byte is 0xff has no edge above it"
    );
    for nonce in 0.. {
        block.header.nonce = nonce;
        let hash = hasher.hash(&encode::serialize(&block.header)).unwrap();
        let within = Target::from_le_bytes(hash) <= target;
        if (above && hash[31] == top + 1) || (!above && within && hash[31] == top) {
            assert_eq!(within, !above);
            return block;
        }
    }
    unreachable!("a nonce is found within 2^32 tries")
}

/// `block` with its merkle root made right again after a change to its transactions.
fn remerkle(mut block: Block) -> Block {
    block.header.merkle_root = block.compute_merkle_root().unwrap();
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_that_names_rx_opensy_mines_through_the_pool_and_the_node_takes_its_blocks() {
    let (sim, rpc, stop) = node().await;
    let node = Node::OpenSy(OpenSyNode::new(rpc.clone()));
    let work = fetch_work(&node, &pool_address()).await.unwrap();
    assert_eq!((work.height, work.network_difficulty), (1, 2));
    let genesis = rpc.get_block_hash(0).await.unwrap();
    assert_eq!(work.seed_hash, genesis.to_byte_array(), "keyed by genesis");

    let mut config = ServerConfig::default();
    config.vardiff.min_difficulty = 1;
    let (_work_tx, work_rx) = watch::channel(work);
    let (events, _events_rx) = mpsc::channel(10_000);
    let (blocks_tx, mut blocks) = mpsc::channel::<BlockFound>(16);
    let pool = Pool::new(config, work_rx, events, blocks_tx).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, pool, stop.clone()));

    // A miner that lists only rx/0 (stock XMRig) is told why it is refused.
    let mut stock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let login = format!(
        "{{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{{\"login\":\"{}\",\"pass\":\"x\",\"agent\":\"XMRig/6.22.2\",\"algo\":[\"rx/0\"]}}}}\n",
        pool_address()
    );
    stock.write_all(login.as_bytes()).await.unwrap();
    let mut answer = String::new();
    BufReader::new(stock).read_line(&mut answer).await.unwrap();
    assert!(
        answer.contains("this pool mines rx/opensy") && answer.contains("byte 76"),
        "{answer}"
    );

    // adit's own client names rx/opensy, reads the nonce's place from the job and mines.
    let stream = StratumClient::connect_from(addr, [127, 0, 0, 1])
        .await
        .unwrap();
    let mut miner = StratumClient::login_on(stream, &format!("{}+1.rig", pool_address()))
        .await
        .unwrap();
    assert_eq!(miner.job.algo, ALGO_OPENSY);
    assert_eq!(miner.job.nonce_offset, Some(76));
    assert_eq!(miner.job.blob.len(), 160, "the 80-byte header");
    let found = loop {
        let (nonce, result) = tokio::task::block_in_place(|| miner.mine()).unwrap();
        let reply = miner.submit(&nonce, &result).await.unwrap();
        assert_eq!(reply["result"]["status"], "OK", "{reply}");
        if let Ok(found) = blocks.try_recv() {
            break found;
        }
        // A block is about every other share at regtest's target.
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Ok(found) = blocks.try_recv() {
            break found;
        }
    };
    assert_eq!(found.height, 1);
    node.submit_block(&found.blob_hex).await.unwrap();
    assert_eq!(sim.height(), 1);
    assert_eq!(
        found.hash,
        rpc.get_block_hash(1).await.unwrap().to_string(),
        "the pool names the block as the node does"
    );
    // The block pays the pool's address the whole subsidy, the job's id after the height.
    let block: Block = encode::deserialize(&hex::decode(&found.blob_hex).unwrap()).unwrap();
    let coinbase = &block.txdata[0];
    assert_eq!(
        coinbase.output[0].script_pubkey,
        script_for(&pool_address(), Network::Regtest).unwrap()
    );
    assert_eq!(coinbase.output[0].value.to_sat(), 10_000 * 100_000_000);
    // Sent again (an answer lost on the way), it is the node's `duplicate`: accepted.
    node.submit_block(&found.blob_hex).await.unwrap();
    assert_eq!(sim.height(), 1);
    stop.cancel();
}

/// The node's template long poll tells the pool of a new block at once: with a tip poll of two
/// minutes, a block the node's own miner made is seen well before that poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_block_reaches_the_pool_through_the_long_poll_before_its_next_poll() {
    let (sim, rpc, stop) = node().await;
    let (tx, mut rx) = watch::channel(None);
    tokio::spawn(adit_stratum::watch_tip(
        Node::OpenSy(OpenSyNode::new(rpc)),
        Duration::from_secs(120),
        tx,
        stop.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|t| t.is_some()))
        .await
        .expect("the first poll")
        .unwrap();
    adit_testkit::jsonrpc::result(
        &sim.url(),
        "generatetoaddress",
        serde_json::json!([1, pool_address()]),
    )
    .await;
    // Well before the next poll, however busy the machine.
    let seen = tokio::time::timeout(
        Duration::from_secs(60),
        rx.wait_for(|t| t.map(|t| t.height) == Some(1)),
    )
    .await;
    assert!(
        seen.is_ok(),
        "the new tip was not seen before the next poll"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_node_refuses_what_the_real_one_does_with_its_reasons() {
    let (sim, _, stop) = node().await;
    refusals(&NodeUnderTest {
        url: sim.url(),
        auth: RpcAuth::None,
    })
    .await;
    stop.cancel();
}

/// The same refusals from a real `opensyd -regtest -randomxforkheight=1` (opt-in: it runs only
/// where `ADIT_OPENSYD` names a node built by hand, and says so where it does not). What it
/// answers is the simulated node's reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_opensyd_refuses_the_same_blocks_with_the_same_reasons() {
    let Some(real) = adit_testkit::Opensyd::from_env("a_real_opensyd_refuses_the_same_blocks")
    else {
        return;
    };
    refusals(&NodeUnderTest {
        url: real.url(),
        auth: RpcAuth::Cookie(real.cookie()),
    })
    .await;
}

/// A node the refusals are asked of.
struct NodeUnderTest {
    url: String,
    auth: RpcAuth,
}

impl NodeUnderTest {
    fn rpc(&self) -> OpenSyRpc {
        OpenSyRpc::new(&self.url, self.auth.clone(), RpcConfig::default()).unwrap()
    }

    /// A call the backend does not make (`invalidateblock`, a template without its rules):
    /// the whole answer, the error included.
    async fn raw(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.raw_at("", method, params).await
    }

    /// A call at `path` under the node's URL (`/wallet/adit` for its wallet).
    async fn raw_at(
        &self,
        path: &str,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}));
        if let RpcAuth::Cookie(path) = &self.auth {
            let cookie = std::fs::read_to_string(path).unwrap();
            let (user, password) = cookie.trim().split_once(':').unwrap();
            request = request.basic_auth(user, Some(password));
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    async fn height(&self) -> u64 {
        self.rpc().get_blockchain_info().await.unwrap().blocks
    }

    /// A call that must succeed: its result.
    async fn ok_at(
        &self,
        path: &str,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        let answer = self.raw_at(path, method, params.clone()).await;
        assert!(answer["error"].is_null(), "{method} {params}: {answer}");
        answer["result"].clone()
    }
}

/// A payout through the node's wallet, as adit's SYL payer makes it, step by step, each answer
/// held to what the real node answered (`tests/data/opensy_regtest_wallet.json`): fund with
/// locked inputs, sign, finalize, nowhere before it is sent, the same id for a resend while it
/// waits, offered in the template with its fee, mined, then -27 for a resend and -25 for a
/// spend of its input.
async fn payout_answers(node: &NodeUnderTest) {
    const WALLET: &str = "/wallet/adit";
    let address = node
        .ok_at(WALLET, "getnewaddress", serde_json::json!([]))
        .await;
    node.ok_at("", "generatetoaddress", serde_json::json!([101, address]))
        .await;
    let payee = pool_address();
    let payee_script = script_for(&payee, Network::Regtest).unwrap();
    let funded = node
        .ok_at(
            WALLET,
            "walletcreatefundedpsbt",
            serde_json::json!([[], [{payee.as_str(): "1.5"}], 0, {"fee_rate": 10, "lockUnspents": true}]),
        )
        .await;
    let signed = node
        .ok_at(
            WALLET,
            "walletprocesspsbt",
            serde_json::json!([funded["psbt"], true, "ALL"]),
        )
        .await;
    assert_eq!(signed["complete"], true);
    let done = node
        .ok_at("", "finalizepsbt", serde_json::json!([signed["psbt"]]))
        .await;
    assert_eq!(done["complete"], true);
    let hex = done["hex"].as_str().unwrap().to_string();
    let tx: bitcoin::Transaction = encode::deserialize(&hex::decode(&hex).unwrap()).unwrap();
    let txid = tx.compute_txid().to_string();
    assert!(
        tx.output
            .iter()
            .any(|o| o.script_pubkey == payee_script && o.value.to_sat() == 150_000_000),
        "pays exactly 1.5 to the payee: {tx:?}"
    );
    let psbt_bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        signed["psbt"].as_str().unwrap(),
    )
    .unwrap();
    let fee = bitcoin::Psbt::deserialize(&psbt_bytes)
        .unwrap()
        .fee()
        .unwrap()
        .to_sat();
    let vsize = tx.vsize() as u64;
    assert!(
        (fee / 10).abs_diff(vsize) <= 1,
        "fee {fee} at 10/vB for {vsize} vbytes"
    );

    // Nowhere before it is sent; the same id for every send while it waits.
    let entry = node.raw("getmempoolentry", serde_json::json!([txid])).await;
    assert_eq!(entry["error"]["code"], -5, "{entry}");
    let known = node
        .raw_at(WALLET, "gettransaction", serde_json::json!([txid]))
        .await;
    assert_eq!(known["error"]["code"], -5, "{known}");
    for _ in 0..2 {
        assert_eq!(
            node.ok_at("", "sendrawtransaction", serde_json::json!([hex]))
                .await,
            txid.as_str()
        );
    }
    node.ok_at("", "getmempoolentry", serde_json::json!([txid]))
        .await;
    let waiting = node
        .ok_at(WALLET, "gettransaction", serde_json::json!([txid]))
        .await;
    assert_eq!(waiting["confirmations"], 0);
    let template = node
        .ok_at(
            "",
            "getblocktemplate",
            serde_json::json!([{"rules": ["segwit"]}]),
        )
        .await;
    let offered = template["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["txid"] == txid.as_str())
        .unwrap_or_else(|| panic!("the template offers the payment: {template}"));
    assert_eq!(offered["fee"], fee, "the template's fee is the payment's");

    // Mined: confirmed once, a resend is -27, a spend of its input is -25.
    let mined = node
        .ok_at("", "generatetoaddress", serde_json::json!([1, address]))
        .await;
    let confirmed = node
        .ok_at(WALLET, "gettransaction", serde_json::json!([txid]))
        .await;
    assert_eq!(confirmed["confirmations"], 1);
    assert_eq!(confirmed["blockhash"], mined[0]);
    let again = node
        .raw("sendrawtransaction", serde_json::json!([hex]))
        .await;
    assert_eq!(again["error"]["code"], -27, "{again}");
    assert_eq!(
        again["error"]["message"],
        "Transaction outputs already in utxo set"
    );
    let mut double = tx.clone();
    double.output.truncate(1);
    double.input[0].witness = bitcoin::Witness::new();
    let spent = node
        .raw(
            "sendrawtransaction",
            serde_json::json!([encode::serialize_hex(&double)]),
        )
        .await;
    assert_eq!(spent["error"]["code"], -25, "{spent}");
    assert_eq!(spent["error"]["message"], "bad-txns-inputs-missingorspent");
    // The block holds it, and its coinbase takes the fee on top of the subsidy.
    let block: Block = encode::deserialize(
        &hex::decode(
            node.ok_at("", "getblock", serde_json::json!([mined[0], 0]))
                .await
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(block.txdata[1].compute_txid().to_string(), txid);
    let coinbase: u64 = block.txdata[0]
        .output
        .iter()
        .map(|o| o.value.to_sat())
        .sum();
    assert_eq!(coinbase, template["coinbasevalue"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_wallet_answers_a_payout_as_the_real_node_did() {
    let (sim, _rpc, stop) = node().await;
    payout_answers(&NodeUnderTest {
        url: sim.url(),
        auth: RpcAuth::None,
    })
    .await;
    stop.cancel();
}

/// The same payout through a real node's wallet (opt-in, as above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_opensyd_s_wallet_answers_the_payout_the_same() {
    let Some(real) = adit_testkit::Opensyd::from_env("a_real_opensyd_s_wallet_answers_the_payout")
    else {
        return;
    };
    real.rpc("/", "createwallet", serde_json::json!(["adit"]))
        .unwrap();
    payout_answers(&NodeUnderTest {
        url: real.url(),
        auth: RpcAuth::Cookie(real.cookie()),
    })
    .await;
}

/// Blocks built from the node's template and broken one rule at a time, each refused with the
/// real node's reason in its order, then the block as the pool cut it taken, a duplicate, and
/// a reorganisation made with `invalidateblock`.
async fn refusals(node: &NodeUnderTest) {
    let rpc = node.rpc();
    let start = node.height().await;
    let payout = script_for(&pool_address(), Network::Regtest).unwrap();
    let reply = rpc.get_block_template(None).await.unwrap();
    let template = OpenSyTemplate::new(&reply, payout, Network::Regtest).unwrap();
    assert_eq!(template.height, start + 1);
    let key = rpc
        .get_block_hash(adit_stratum::opensy::key_height(template.height))
        .await
        .unwrap();
    let hasher = RandomXHasher::light(&key.to_byte_array()).unwrap();
    let target = Target::from_compact(template.bits);
    let job = template.with_extra_nonce(&[9; 16]).unwrap();
    let block: Block = encode::deserialize(job.block_blob()).unwrap();
    let refusal = |b: &Block| {
        let rpc = rpc.clone();
        let hex = encode::serialize_hex(b);
        async move { rpc.submit_block(&hex).await.unwrap() }
    };
    let refused = |why: &str| Submitted::Refused(why.to_string());

    // Structure before the proof of work: a changed transaction without its merkle root.
    let mut changed = solve(&hasher, block.clone(), target, false);
    changed.txdata[0].output[0].value += bitcoin::Amount::from_sat(1);
    assert_eq!(refusal(&changed).await, refused("bad-txnmrklroot"));
    let mut short = block.clone();
    short.txdata[0].input[0].script_sig = Builder::new().push_int(1).into_script();
    assert_eq!(
        refusal(&solve(&hasher, remerkle(short), target, false)).await,
        refused("bad-cb-length")
    );
    // The header: bits that are not the chain's, then a hash above the target.
    let mut bits = block.clone();
    bits.header.bits = bitcoin::CompactTarget::from_consensus(0x1f00_ffff);
    assert_eq!(refusal(&bits).await, refused("bad-diffbits"));
    // Just above the target, at its edge.
    let high = solve_at_edge(&hasher, block.clone(), target, true);
    assert_eq!(refusal(&high).await, refused("high-hash-randomx"));
    let mut parentless = block.clone();
    parentless.header.prev_blockhash = bitcoin::BlockHash::from_byte_array([1; 32]);
    assert_eq!(refusal(&parentless).await, refused("prev-blk-not-found"));
    // The context: the BIP34 height, the witness commitment, the coinbase's amount.
    let mut height = block.clone();
    height.txdata[0].input[0].script_sig = Builder::new()
        .push_int(template.height as i64 + 1)
        .push_slice([9; 16])
        .into_script();
    assert_eq!(
        refusal(&solve(&hasher, remerkle(height), target, false)).await,
        refused("bad-cb-height")
    );
    let mut commitment = block.clone();
    let last = commitment.txdata[0].output.len() - 1;
    let mut script = commitment.txdata[0].output[last].script_pubkey.to_bytes();
    script[37] ^= 1;
    commitment.txdata[0].output[last].script_pubkey = bitcoin::ScriptBuf::from_bytes(script);
    assert_eq!(
        refusal(&solve(&hasher, remerkle(commitment), target, false)).await,
        refused("bad-witness-merkle-match")
    );
    let mut greedy = block.clone();
    greedy.txdata[0].output[0].value += bitcoin::Amount::from_sat(1);
    assert_eq!(
        refusal(&solve(&hasher, remerkle(greedy), target, false)).await,
        refused("bad-cb-amount")
    );
    assert_eq!(node.height().await, start, "nothing refused was taken");

    // The block as the pool cut it, solved just within the target at its edge: accepted, then
    // a duplicate; on the chain with its coinbase.
    let good = solve_at_edge(&hasher, block, target, false);
    assert_eq!(refusal(&good).await, Submitted::Accepted);
    assert_eq!(refusal(&good).await, refused("duplicate"));
    let id = rpc.get_block_hash(start + 1).await.unwrap();
    assert_eq!(id, good.block_hash());
    let header = rpc.get_block_header(&id).await.unwrap();
    assert_eq!((header.height, header.confirmations), (start + 1, 1));

    // A reorganisation on demand: the block is invalidated, another takes its height.
    let answer = node
        .raw("invalidateblock", serde_json::json!([id.to_string()]))
        .await;
    assert!(answer["error"].is_null(), "{answer}");
    assert_eq!(node.height().await, start);
    assert_eq!(rpc.get_block_header(&id).await.unwrap().confirmations, -1);
    let other = template.with_extra_nonce(&[8; 16]).unwrap();
    let other: Block = encode::deserialize(other.block_blob()).unwrap();
    let other = solve(&hasher, other, target, false);
    assert_eq!(refusal(&other).await, Submitted::Accepted);
    assert_eq!(
        rpc.get_block_hash(start + 1).await.unwrap(),
        other.block_hash()
    );
    // A template without the segwit rule is the node's error −8.
    let asked = node.raw("getblocktemplate", serde_json::json!([{}])).await;
    assert_eq!(asked["error"]["code"], -8, "{asked}");
    assert!(
        asked["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("segwit"),
        "{asked}"
    );
}

/// Blocks and templates a real `opensyd -regtest -randomxforkheight=1` made itself
/// (`tests/data/opensy_regtest.json`, which names the RPC calls that produced them): blocks
/// 1–103 from the node's own miner, block 103 holding a SegWit payment, and its templates at
/// heights 1 and 103.
fn real_vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../data/opensy_regtest.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_node_s_blocks_and_templates_pass_adit_s_checks_and_the_simulated_node() {
    use adit_stratum::opensy::template::height_push;
    use adit_stratum::opensy::{GbtReply, check, key_bytes, key_height};
    let v = real_vectors();
    let genesis: bitcoin::BlockHash = v["genesis"].as_str().unwrap().parse().unwrap();
    let blocks: Vec<(u64, bitcoin::BlockHash, Block)> = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let block: Block =
                encode::deserialize(&hex::decode(b["hex"].as_str().unwrap()).unwrap()).unwrap();
            (
                b["height"].as_u64().unwrap(),
                b["hash"].as_str().unwrap().parse().unwrap(),
                block,
            )
        })
        .collect();
    let mut ids = vec![genesis];
    ids.extend(blocks.iter().map(|(_, id, _)| *id));

    // Each block is what adit's checks say a valid block is: its id, merkle root, witness
    // commitment, BIP34 height, and RandomX under the key the schedule names.
    let mut hasher = RandomXHasher::light(&key_bytes(&genesis)).unwrap();
    let limit = Network::Regtest.pow_limit();
    for (height, id, block) in &blocks {
        assert_eq!(block.block_hash(), *id, "block {height}'s id");
        assert_eq!(block.header.prev_blockhash, ids[*height as usize - 1]);
        assert!(block.check_merkle_root(), "block {height}'s merkle root");
        assert!(
            block.check_witness_commitment(),
            "block {height}'s commitment"
        );
        // The node's BIP34 rule (`CScript() << height` first; the crate's reader knows no
        // OP_1…OP_16, which heights 1–16 are).
        assert!(
            block.txdata[0].input[0]
                .script_sig
                .as_bytes()
                .starts_with(height_push(*height).as_bytes()),
            "block {height}'s BIP34 height"
        );
        hasher
            .set_seed(&key_bytes(&ids[key_height(*height) as usize]))
            .unwrap();
        let pow = hasher.hash(&encode::serialize(&block.header)).unwrap();
        assert_eq!(
            check(pow, block.header.bits.to_consensus(), limit),
            Ok(()),
            "block {height}'s proof of work under the key of block {}",
            key_height(*height)
        );
    }
    assert_eq!(blocks.last().unwrap().2.txdata.len(), 2, "block 103 pays");

    // The node's templates read as adit reads them: its transaction's txid and its witness
    // commitment are the ones adit computes, and a job's block from it is well formed.
    for (name, height, txs) in [("gbt_height_1", 1, 0), ("gbt_height_103", 103, 1)] {
        let reply: GbtReply = serde_json::from_value(v[name].clone()).unwrap();
        assert_eq!(reply.transactions.len(), txs);
        let payout = script_for(v["address"].as_str().unwrap(), Network::Regtest).unwrap();
        let template = OpenSyTemplate::new(&reply, payout, Network::Regtest).unwrap();
        assert_eq!(template.height, height);
        let job: Block =
            encode::deserialize(template.with_extra_nonce(&[3; 16]).unwrap().block_blob()).unwrap();
        assert!(
            job.check_merkle_root() && job.check_witness_commitment(),
            "{name}"
        );
        assert_eq!(job.txdata.len(), txs + 1);
    }

    // The simulated node starts at the same genesis and takes every block of the real chain
    // in order, block 103's payment (the real wallet's signature over a mature coinbase, and
    // its fee in the coinbase) included, ending on the same tip.
    let (sim, rpc, stop) = node().await;
    assert_eq!(rpc.get_block_hash(0).await.unwrap(), genesis);
    for (height, id, block) in &blocks {
        assert_eq!(
            rpc.submit_block(&encode::serialize_hex(block))
                .await
                .unwrap(),
            Submitted::Accepted,
            "the real block {height} ({id})"
        );
    }
    assert_eq!(sim.height(), 103);
    assert_eq!(rpc.get_block_hash(103).await.unwrap(), ids[103]);
    stop.cancel();
}

/// A PSBT payout as a real node's wallet answers it (`tests/data/opensy_regtest_wallet.json`):
/// the facts the simulated node's wallet and adit's SYL payer are to be held to.
#[test]
fn a_real_node_s_payout_answers_are_what_the_payer_expects() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../data/opensy_regtest_wallet.json")).unwrap();
    let calls = v["calls"].as_array().unwrap();
    let answer = |method: &str, nth: usize| {
        calls
            .iter()
            .filter(|c| c["method"] == method)
            .nth(nth)
            .unwrap_or_else(|| panic!("no call {nth} of {method}"))
    };
    // The finalized transaction's bytes are what was sent: its txid, computed here, is the
    // node's answer to sendrawtransaction, before and again after it was in the mempool.
    let hex = answer("finalizepsbt", 0)["result"]["hex"].as_str().unwrap();
    assert_eq!(answer("finalizepsbt", 0)["result"]["complete"], true);
    let tx: bitcoin::Transaction = encode::deserialize(&hex::decode(hex).unwrap()).unwrap();
    let txid = tx.compute_txid().to_string();
    assert_eq!(answer("sendrawtransaction", 0)["result"], txid.as_str());
    assert_eq!(
        answer("sendrawtransaction", 1)["result"],
        txid.as_str(),
        "a resend while in the mempool"
    );
    // Before it is sent the node holds it nowhere; after its block a resend is refused as
    // known, and spending its input again as missing or spent.
    assert_eq!(answer("getmempoolentry", 0)["error"]["code"], -5);
    assert_eq!(answer("gettransaction", 0)["error"]["code"], -5);
    assert_eq!(answer("gettransaction", 2)["result"]["confirmations"], 1);
    assert_eq!(answer("sendrawtransaction", 2)["error"]["code"], -27);
    assert_eq!(
        answer("sendrawtransaction", 3)["error"]["message"],
        "bad-txns-inputs-missingorspent"
    );
    // The fee the wallet chose is what the transaction leaves unspent, in whole units.
    let fee = answer("walletcreatefundedpsbt", 0)["result"]["fee"]
        .as_f64()
        .unwrap();
    assert!(fee > 0.0 && fee < 0.001, "{fee}");
    assert_eq!(answer("validateaddress", 1)["result"]["isvalid"], false);
}
