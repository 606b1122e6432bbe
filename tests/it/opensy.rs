//! OpenSY end to end on the simulated OpenSY node (issue 58): `adit run --roles
//! pool,pipelines,query,payments` with `pool.chain = "opensy"`, mined by `adit worker --pool`
//! as a user would run it: shares land in SQL, the node takes the pool's blocks, a block is
//! confirmed once it is 100 deep (OpenSY's coinbase maturity, the pool's default for the
//! chain), PPLNS splits it, and the payer pays the miner from the node's wallet, exactly what
//! its balance says, in a transaction the node mines. Then a two-worker cluster (`adit coordinator`, `adit worker` over mutual
//! TLS) mines the pool as one miner, the coordinator taking the nonce's place from the jobs.

use crate::common;

use std::time::Duration;

use common::*;

/// The worker's regtest address (P2WPKH of a key nobody holds).
const MINER: &str = "rsyl1qgfpyysjzgfpyysjzgfpyysjzgfpyysjzsernx9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adit_worker_mines_opensy_through_the_pool_and_its_blocks_mature_after_100() {
    let (_nats, dir, stratum_port, app) = opensy_app().await;

    let mut worker = adit_worker(stratum_port);
    let tables = dir.path().join("tables");
    let paid = eventually_value(Duration::from_secs(360), || async {
        let n = scalar(
            &tables,
            &["payments"],
            &format!(
                "SELECT count(*) FROM payments WHERE miner = '{MINER}' AND status = 'confirmed'"
            ),
        )
        .await;
        (n >= 1).then_some(n)
    })
    .await;
    let _ = worker.kill();
    let output = worker.wait_with_output().expect("the worker's output");
    if paid.is_none() {
        panic!(
            "no payment confirmed; worker:\n{}\n{}\npool log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            app.log()
        );
    }

    // The worker's shares are in SQL under its address and name.
    let shares = scalar(
        &tables,
        &["shares"],
        &format!(
            "SELECT count(*) FROM shares WHERE accepted AND miner = '{MINER}' AND worker = 'w1'"
        ),
    )
    .await;
    assert!(shares >= 1, "accepted shares in SQL: {shares}");
    // The first confirmed block was 100 deep: the pool found at least 101 the node took.
    let rows = app
        .rows("SELECT min(height) AS first, max(height) AS last FROM blocks WHERE status = 'submitted'")
        .await;
    let (first, last) = (
        rows[0]["first"].as_i64().unwrap(),
        rows[0]["last"].as_i64().unwrap(),
    );
    let rows = app
        .rows("SELECT min(height) AS h FROM blocks WHERE status = 'confirmed'")
        .await;
    let first_confirmed = rows[0]["h"].as_i64().unwrap();
    assert!(first >= 1 && first_confirmed >= first);
    assert!(
        last >= first_confirmed + 100,
        "block {first_confirmed} was confirmed with the tip at {last}"
    );
    // PPLNS credited the one miner, and the payer paid it no more than that.
    let rows = app
        .rows(&format!(
            "SELECT (SELECT sum(amount) FROM payouts WHERE miner = '{MINER}') AS earned, \
                    (SELECT sum(amount) FROM payments WHERE miner = '{MINER}' AND status = 'confirmed') AS paid"
        ))
        .await;
    let (earned, paid) = (
        rows[0]["earned"].as_i64().unwrap(),
        rows[0]["paid"].as_i64().unwrap(),
    );
    assert!(paid > 0 && paid <= earned, "paid {paid} of {earned}");
    // On the node, the payment's transaction pays the miner's script exactly what the
    // payments table records, in a block.
    let rows = app
        .rows(&format!(
            "SELECT tx_hash, amount FROM payments WHERE miner = '{MINER}' AND status = 'confirmed' LIMIT 1"
        ))
        .await;
    let (tx_hash, amount) = (
        rows[0]["tx_hash"].as_str().unwrap().to_string(),
        rows[0]["amount"].as_i64().unwrap(),
    );
    let node = sim_node_url(&app.log());
    let answer = adit_testkit::jsonrpc::answer(
        &format!("{node}/wallet/adit"),
        "gettransaction",
        serde_json::json!([tx_hash]),
    )
    .await;
    let result = &answer["result"];
    assert!(result["confirmations"].as_i64().unwrap() >= 1, "{answer}");
    let tx: bitcoin::Transaction = bitcoin::consensus::encode::deserialize(
        &hex::decode(result["hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let miner_script =
        adit_stratum::opensy::script_for(MINER, adit_stratum::opensy::Network::Regtest).unwrap();
    let to_miner: Vec<u64> = tx
        .output
        .iter()
        .filter(|o| o.script_pubkey == miner_script)
        .map(|o| o.value.to_sat())
        .collect();
    assert_eq!(to_miner, vec![amount as u64], "{tx:?}");
}

/// The simulated node's URL, from the line the app logs when it starts it.
fn sim_node_url(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("simulated OpenSY node (regtest) listening"))
        .unwrap_or_else(|| panic!("the app did not start the simulated node:\n{log}"));
    let at = line.find("addr=").expect("the line names the address") + "addr=".len();
    let addr: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    format!("http://{addr}")
}

/// The pool of the tests: OpenSY on its simulated node at regtest's target, a block about
/// every other hash.
fn opensy_pool(stratum_port: u16) -> String {
    format!(
        "[pool]\nchain = \"opensy\"\nnode = \"sim\"\nlisten = \"127.0.0.1:{stratum_port}\"\ntip_poll = \"200ms\"\nsim_difficulty = 1\n\
         [pool.server]\npool = \"syl\"\nverify_threads = 1\n[pool.server.vardiff]\nmin_difficulty = 1\n\
         [payments]\nchain = \"opensy\"\nnode = \"sim\"\ninterval = \"1s\"\nthreshold = 100000000\nconfirmations = 1\n"
    )
}

/// NATS, a data dir, and `adit run --roles pool,pipelines,query,payments` on [`opensy_pool`]
/// at a free Stratum port.
async fn opensy_app() -> (NatsServer, tempfile::TempDir, u16, App) {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let stratum_port = free_port();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pool,pipelines,query,payments",
        &opensy_pool(stratum_port),
    );
    app.wait_http().await;
    (nats, dir, stratum_port, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_worker_cluster_mines_opensy_through_the_pool_as_one_miner() {
    use crate::cluster::{Ports, coordinator_as, make_certs, mining_upstream, worker, worker_view};
    let (nats, dir, stratum_port, app) = opensy_app().await;
    make_certs(dir.path(), "rig1,rig2");
    let ports = Ports {
        grpc: free_port(),
        rest: free_port(),
    };
    let upstream = vec![format!("stratum+tcp://127.0.0.1:{stratum_port}")];
    let login = format!("{MINER}+2.coop");
    let coord = coordinator_as(dir.path(), &nats.url(), &upstream, &ports, &login);
    mining_upstream(&ports).await;
    let rig1 = worker(dir.path(), "rig1", ports.grpc);
    let _rig2 = worker(dir.path(), "rig2", ports.grpc);
    let tables = dir.path().join("tables");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let valid = |name: &'static str| async move {
            worker_view(ports.rest, name)
                .await
                .and_then(|w| w["shares_valid"].as_u64())
                .unwrap_or(0)
        };
        let blocks = scalar(
            &tables,
            &["blocks"],
            "SELECT count(*) FROM blocks WHERE status = 'submitted' AND worker = 'coop'",
        )
        .await;
        if blocks >= 1 && valid("rig1").await >= 1 && valid("rig2").await >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no OpenSY block from the cluster; coordinator:\n{}\nrig1:\n{}\npool:\n{}",
            coord.log(),
            rig1.log(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let miners = app.rows("SELECT DISTINCT miner FROM shares").await;
    assert_eq!(miners.len(), 1, "one miner upstream: {miners:?}");
    assert_eq!(miners[0]["miner"], MINER);
}

/// The same path against a real `opensyd -regtest -randomxforkheight=1` (opt-in: it runs only
/// where `ADIT_OPENSYD` names a node built by hand, and says so where it does not): the pool
/// reaches the node with its cookie and pays a wallet address of the node's, `adit worker
/// --pool` mines as an address of a second wallet, the node's height rises by blocks whose
/// coinbase is adit's, and each block the pool recorded as taken is on the node's chain. Once
/// the node's own miner buries them 100 deep, the payer pays the miner from the pool's wallet,
/// and the miner's wallet holds exactly what the payments table says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_opensyd_takes_the_blocks_adit_worker_mines_through_the_pool() {
    let Some(node) =
        adit_testkit::Opensyd::from_env("a_real_opensyd_takes_the_blocks_adit_worker_mines")
    else {
        return;
    };
    let call = |path: &str, method: &str, params: serde_json::Value| {
        node.rpc(path, method, params)
            .unwrap_or_else(|e| panic!("{e}\n{}", node.log_tail()))
    };
    call("/", "createwallet", serde_json::json!(["adit"]));
    let address = call(
        "/wallet/adit",
        "getnewaddress",
        serde_json::json!(["pool", "bech32"]),
    );
    let address = address.as_str().unwrap().to_string();
    call("/", "createwallet", serde_json::json!(["miner"]));
    let miner = call(
        "/wallet/miner",
        "getnewaddress",
        serde_json::json!(["w1", "bech32"]),
    );
    let miner = miner.as_str().unwrap().to_string();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let stratum_port = free_port();
    let pool = format!(
        "[pool]\nchain = \"opensy\"\nnode = \"{url}\"\nwallet = \"{address}\"\nlisten = \"127.0.0.1:{stratum_port}\"\ntip_poll = \"200ms\"\n\
         [pool.rpc]\ncookie = \"{cookie}\"\n[pool.server]\npool = \"syl\"\nverify_threads = 1\n[pool.server.vardiff]\nmin_difficulty = 1\n\
         [payments]\nchain = \"opensy\"\nnode = \"{url}\"\nwallet = \"adit\"\ninterval = \"1s\"\nthreshold = 100000000\nconfirmations = 1\n\
         [payments.rpc]\ncookie = \"{cookie}\"\n",
        url = node.url(),
        cookie = node.cookie().display()
    );
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pool,pipelines,query,payments",
        &pool,
    );
    app.wait_http().await;
    let mut worker = adit_worker_as(stratum_port, &miner);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while call("/", "getblockcount", serde_json::json!([])).as_u64() < Some(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "the node's height did not rise to 3; node:\n{}\npool:\n{}",
            node.log_tail(),
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = worker.kill();
    let _ = worker.wait();
    eprintln!(
        "getblockchaininfo: {}",
        call("/", "getblockchaininfo", serde_json::json!([]))
    );
    for height in 1..=3 {
        let hash = call("/", "getblockhash", serde_json::json!([height]));
        let block = call("/", "getblock", serde_json::json!([hash, 2]));
        let coinbase = &block["tx"][0];
        eprintln!("block {height} {hash}: coinbase {coinbase}");
        assert_eq!(
            coinbase["vout"][0]["scriptPubKey"]["address"], address,
            "block {height} pays the pool"
        );
    }
    eventually(
        Duration::from_secs(60),
        "the taken blocks landed",
        || async {
            app.rows("SELECT count(*) AS n FROM blocks WHERE status = 'submitted'")
                .await[0]["n"]
                .as_i64()
                >= Some(3)
        },
    )
    .await;
    for row in app
        .rows("SELECT height, hash FROM blocks WHERE status = 'submitted' ORDER BY height")
        .await
    {
        let on_chain = call("/", "getblockhash", serde_json::json!([row["height"]]));
        assert_eq!(on_chain, row["hash"], "{row}");
    }

    // The node's own miner buries the pool's blocks 100 deep (their coinbase matures); then
    // a block now and then mines the payment.
    let outsider = adit_stratum::opensy::simnode::unowned_address();
    for _ in 0..10 {
        // Ten at a time: each call answers well within the harness's read timeout.
        call("/", "generatetoaddress", serde_json::json!([10, outsider]));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let (tx_hash, amount) = loop {
        let rows = app
            .rows(&format!(
                "SELECT tx_hash, amount FROM payments WHERE miner = '{miner}' AND status = 'confirmed' LIMIT 1"
            ))
            .await;
        if let Some(row) = rows.first() {
            break (
                row["tx_hash"].as_str().unwrap().to_string(),
                row["amount"].as_u64().unwrap(),
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no payment confirmed; node:\n{}\napp:\n{}",
            node.log_tail(),
            app.log()
        );
        call("/", "generatetoaddress", serde_json::json!([1, outsider]));
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    // The miner's own wallet holds the payment: its transaction pays the miner's address
    // exactly the recorded amount, in a block.
    let seen = call(
        "/wallet/miner",
        "gettransaction",
        serde_json::json!([tx_hash]),
    );
    eprintln!("the miner's wallet: {seen}");
    assert!(seen["confirmations"].as_i64() >= Some(1), "{seen}");
    let tx: bitcoin::Transaction = bitcoin::consensus::encode::deserialize(
        &hex::decode(seen["hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let script =
        adit_stratum::opensy::script_for(&miner, adit_stratum::opensy::Network::Regtest).unwrap();
    let received: u64 = tx
        .output
        .iter()
        .filter(|o| o.script_pubkey == script)
        .map(|o| o.value.to_sat())
        .sum();
    assert_eq!(received, amount, "{tx:?}");
}

/// `adit worker --pool` on the pool at `stratum_port`, one thread, as [`MINER`]'s `w1`, its
/// output kept for a failure's message.
fn adit_worker(stratum_port: u16) -> std::process::Child {
    adit_worker_as(stratum_port, MINER)
}

/// `adit worker --pool` as `miner`'s `w1`.
fn adit_worker_as(stratum_port: u16, miner: &str) -> std::process::Child {
    std::process::Command::new(adit_binary())
        .args([
            "worker",
            "--pool",
            &format!("stratum+tcp://127.0.0.1:{stratum_port}"),
            "--login",
            &format!("{miner}+1.w1"),
            "--threads",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("adit worker starts")
}

/// Polls `f` every 250 ms until it gives a value or `limit` passes.
async fn eventually_value<T, F, Fut>(limit: Duration, f: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}
