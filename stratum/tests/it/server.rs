//! The Stratum server over real TCP with real RandomX: an honest miner mines shares and a block
//! while abusive clients (garbage, over-long lines, bad jobs, malformed and duplicate shares,
//! floods of invalid shares from another IP) are answered, dropped or banned (issue 3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adit_schemas::{AnyEvent, Event};
use adit_stratum::{
    BlockFound, BlockTemplate, MoneroTemplate, Pool, RandomXHasher, ServerConfig, ServerMessage,
    StratumClient, Work, meets_difficulty, parse_server_message, serve,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

fn work(height: u64, network_difficulty: u64) -> Arc<Work> {
    let v: Value =
        serde_json::from_str(include_str!("../data/regtest_template_h301.json")).unwrap();
    let r = &v["result"];
    let template = BlockTemplate::from_hex(
        r["blocktemplate_blob"].as_str().unwrap(),
        r["reserved_offset"].as_u64().unwrap() as usize,
        16,
    )
    .unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(r["seed_hash"].as_str().unwrap(), &mut seed).unwrap();
    let template = Box::new(MoneroTemplate {
        template,
        difficulty: network_difficulty,
    });
    Arc::new(Work {
        height,
        network_difficulty,
        seed_hash: seed,
        next_seed_hash: None,
        reward: r["expected_reward"].as_u64().unwrap(),
        subsidy: r["expected_reward"].as_u64().unwrap(),
        base: Work::base_of(template.as_ref()).unwrap(),
        template,
    })
}

struct Harness {
    addr: SocketAddr,
    work: watch::Sender<Arc<Work>>,
    events: mpsc::Receiver<AnyEvent>,
    blocks: mpsc::Receiver<BlockFound>,
    stop: CancellationToken,
}

/// The pool's defaults with fixed difficulties down to 1 allowed, so a test mines fast.
fn easy_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.vardiff.min_difficulty = 1;
    config
}

async fn start(network_difficulty: u64, config: ServerConfig) -> Harness {
    let (work_tx, work_rx) = watch::channel(work(301, network_difficulty));
    let (ev_tx, events) = mpsc::channel(10_000);
    let (bl_tx, blocks) = mpsc::channel(16);
    let pool = Pool::new(config, work_rx, ev_tx, bl_tx).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, pool, stop.clone()));
    Harness {
        addr,
        work: work_tx,
        events,
        blocks,
        stop,
    }
}

/// Logs in from a given loopback address (each address is a different miner's IP).
async fn miner(addr: SocketAddr, source: [u8; 4], login: &str) -> StratumClient {
    let stream = StratumClient::connect_from(addr, source).await.unwrap();
    StratumClient::login_on(stream, login).await.unwrap()
}

async fn read(m: &mut StratumClient) -> Option<Value> {
    tokio::time::timeout(Duration::from_secs(60), m.read())
        .await
        .expect("an answer within 60 s")
        .unwrap()
}

fn error_of(reply: &Value) -> &str {
    reply["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_miners_are_paid_while_abusers_are_refused() {
    let mut config = easy_config();
    // Five bad shares and calls score 50; the two garbage lines that follow reach the ban.
    config.limits.ban_score = 70;
    let mut h = start(1_000_000_000_000, config).await;
    let mut honest = miner(h.addr, [127, 0, 0, 1], &format!("{WALLET}+20.rig-1")).await;
    assert_eq!(honest.job.algo, "rx/0");
    assert_eq!(honest.job.height, 301);
    for i in 0..3 {
        let (nonce, result) = honest.mine().unwrap();
        let reply = honest.submit(&nonce, &result).await.unwrap();
        assert_eq!(reply["result"]["status"], "OK", "{reply}");
        // The same nonce again is a duplicate: always the first share's (whether a nonce is
        // even is chance, and three odd ones in a row left the test without a duplicate one
        // run in eight), and the others' by chance.
        if i == 0 || honest.last_nonce() % 2 == 0 {
            let dup = honest.submit(&nonce, &result).await.unwrap();
            assert_eq!(error_of(&dup), "Duplicate share");
        }
    }
    let keep = honest
        .call("keepalived", json!({"id": honest.session.clone()}))
        .await
        .unwrap();
    assert_eq!(keep["result"]["status"], "KEEPALIVED");

    // An abuser from another IP: every kind of bad input, each answered.
    let mut bad = miner(h.addr, [127, 0, 0, 2], &format!("{WALLET}+20")).await;
    let (nonce, _) = bad.mine().unwrap();
    let r = bad
        .submit_to("not-a-job", &nonce, &"00".repeat(32))
        .await
        .unwrap();
    assert_eq!(error_of(&r), "Invalid job id");
    let r = bad.submit("zz", &"00".repeat(32)).await.unwrap();
    assert!(error_of(&r).starts_with("Invalid nonce"), "{r}");
    let r = bad.submit(&nonce, "nothex").await.unwrap();
    assert_eq!(error_of(&r), "Malformed result");
    let r = bad.submit(&nonce, &"ab".repeat(32)).await.unwrap();
    assert_eq!(error_of(&r), "Incorrect hash");
    let r = bad.call("mine_faster", json!({})).await.unwrap();
    assert!(error_of(&r).contains("unknown method"), "{r}");
    // Garbage and invalid JSON get an error with a null id, then the ban closes the connection.
    bad.send_raw(b"\x00\xff garbage\n{\"id\": 1, \"method\":\n")
        .await
        .expect("the connection is still open before the garbage");
    let mut closed = false;
    for _ in 0..10 {
        match read(&mut bad).await {
            None => {
                closed = true;
                break;
            }
            Some(msg) => assert!(msg["error"].is_object(), "{msg}"),
        }
    }
    assert!(closed, "the abuser was banned and disconnected");
    let again = StratumClient::connect_from(h.addr, [127, 0, 0, 2])
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        let mut again = again;
        again.read(&mut buf).await.unwrap_or(0)
    })
    .await
    .unwrap();
    assert_eq!(n, 0, "a banned IP's new connection is closed at once");

    // A 10 MB line closes that connection; nothing else is affected.
    let mut huge = miner(h.addr, [127, 0, 0, 3], WALLET).await;
    let mut line = vec![b'a'; 10 * 1024 * 1024];
    line.push(b'\n');
    let _ = huge.writer().write_all(&line).await;
    assert!(
        read(&mut huge).await.is_none(),
        "over-long line closes the connection"
    );

    // The honest miner still gets shares accepted.
    let (nonce, result) = honest.mine().unwrap();
    let reply = honest.submit(&nonce, &result).await.unwrap();
    assert_eq!(reply["result"]["status"], "OK", "{reply}");

    // A new block: the miner is pushed a new job and the old job's shares are stale.
    let old_job = honest.job.job_id.clone();
    let (nonce, result) = honest.mine().unwrap();
    h.work.send(work(302, 1_000_000_000_000)).unwrap();
    let pushed = read(&mut honest).await.unwrap();
    assert_eq!(pushed["method"], "job", "{pushed}");
    assert_eq!(pushed["params"]["height"], 302);
    let stale = honest.submit_to(&old_job, &nonce, &result).await.unwrap();
    assert_eq!(error_of(&stale), "Block expired");

    // Every share was published, accepted and rejected, with reasons.
    h.stop.cancel();
    let mut accepted = 0;
    let mut reasons = Vec::new();
    let mut ids = std::collections::HashSet::new();
    while let Ok(ev) = h.events.try_recv() {
        if let AnyEvent::Share(s) = ev {
            // Every event has a dedupe id of its own: a duplicate is not dropped by JetStream
            // as a retry of the accepted original.
            assert!(ids.insert(s.dedupe_id()), "dedupe id reused: {s:?}");
            if s.accepted {
                accepted += 1;
                assert_eq!(s.difficulty, 20);
                assert_eq!(s.worker, "rig-1");
            } else {
                if s.reason.as_deref() == Some("stale") {
                    // Stored as judged: the old job's height and difficulty, not the new tip's.
                    assert_eq!((s.height, s.difficulty), (301, 20), "{s:?}");
                }
                reasons.push(s.reason.unwrap());
            }
        }
    }
    assert_eq!(accepted, 4);
    for r in [
        "duplicate",
        "invalid_job",
        "malformed_nonce",
        "malformed_result",
        "wrong_hash",
        "stale",
    ] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
    assert!(
        h.blocks.try_recv().is_err(),
        "no block at this network difficulty"
    );
}

/// Issue 23: `+1` in a login made every hash a share the pool had to verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_difficulty_is_held_within_the_pools_bounds() {
    let mut config = ServerConfig::default();
    config.vardiff.min_difficulty = 5_000;
    config.vardiff.max_difficulty = 90_000;
    let h = start(1_000_000_000_000, config).await;
    for (login, expected) in [("+1", 5_000), ("+20000", 20_000), ("+1000000", 90_000)] {
        let m = miner(h.addr, [127, 0, 0, 1], &format!("{WALLET}{login}.rig")).await;
        let difficulty = adit_stratum::decode_target(&m.job.target).unwrap();
        // A 32-bit target rounds the difficulty; it stays within a part in a thousand.
        assert!(
            difficulty.abs_diff(expected) * 1000 <= expected,
            "{login}: difficulty {difficulty}, expected {expected}"
        );
    }
    h.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_meeting_the_network_target_is_a_block() {
    let mut h = start(40, easy_config()).await;
    let mut miner = miner(h.addr, [127, 0, 0, 1], &format!("{WALLET}+10.finder")).await;
    let mut found = None;
    let mut submitted = Vec::new();
    for _ in 0..200 {
        let (nonce, result) = miner.mine().unwrap();
        let reply = miner.submit(&nonce, &result).await.unwrap();
        assert_eq!(reply["result"]["status"], "OK", "{reply}");
        submitted.push((miner.job.job_id.clone(), nonce));
        if let Ok(b) = h.blocks.try_recv() {
            found = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        if let Ok(b) = h.blocks.try_recv() {
            found = Some(b);
            break;
        }
    }
    let block = found.expect("a block within 200 shares at 4x the share difficulty");
    // The block names the share that found it: where its PPLNS window ends.
    assert!(
        submitted.contains(&(block.job_id.clone(), block.nonce.clone())),
        "{} / {} among {submitted:?}",
        block.job_id,
        block.nonce
    );
    assert_eq!(
        (block.height, block.miner.as_str(), block.worker.as_str()),
        (301, WALLET, "finder")
    );
    let blob = hex::decode(&block.blob_hex).unwrap();
    let hashing = adit_stratum::hashing_blob(&blob).unwrap();
    assert_eq!(block.hash, hex::encode(adit_stratum::block_id(&hashing)));
    let seed =
        hex::decode("418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3").unwrap();
    let pow = RandomXHasher::light(&seed).unwrap().hash(&hashing).unwrap();
    assert!(
        meets_difficulty(&pow, 40),
        "the submitted block meets the network difficulty"
    );
    let _ = parse_server_message(b"{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"status\":\"OK\"}}")
        .map(|m| matches!(m, ServerMessage::Response(_)));
    h.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_floods_are_capped_per_ip() {
    let mut config = easy_config();
    config.limits.max_per_ip = 20;
    let h = start(1_000_000_000_000, config).await;
    let mut honest = miner(h.addr, [127, 0, 0, 1], &format!("{WALLET}+20")).await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(
            StratumClient::connect_from(h.addr, [127, 0, 0, 5])
                .await
                .unwrap(),
        );
    }
    let mut refused = 0;
    for stream in &mut flood {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut b)).await
        {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 180,
        "all but max_per_ip connections from the flooding IP are closed"
    );
    let (nonce, result) = honest.mine().unwrap();
    let reply = honest.submit(&nonce, &result).await.unwrap();
    assert_eq!(
        reply["result"]["status"], "OK",
        "the honest miner is unaffected"
    );
    h.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_can_connect_over_tls() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("pool.pem"), dir.path().join("pool.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let config = ServerConfig {
        tls: Some(adit_stratum::TlsFiles {
            cert: cert_path,
            key: key_path,
        }),
        ..easy_config()
    };
    let h = start(1_000_000_000_000, config).await;

    let connector =
        adit_protocol::tls::connector(Some(&dir.path().join("pool.pem")), None).unwrap();
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (rd, mut wr) = tokio::io::split(tls);
    let mut rd = BufReader::new(rd);
    let login = json!({"id": 1, "jsonrpc": "2.0", "method": "login", "params": {"login": format!("{WALLET}+1"), "pass": "x", "agent": "tls-test"}});
    wr.write_all(format!("{login}\n").as_bytes()).await.unwrap();
    let mut line = String::new();
    rd.read_line(&mut line).await.unwrap();
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["result"]["status"], "OK", "{reply}");
    let job = &reply["result"]["job"];
    let mut blob = hex::decode(job["blob"].as_str().unwrap()).unwrap();
    blob[39..43].copy_from_slice(&7u32.to_le_bytes());
    let seed = hex::decode(job["seed_hash"].as_str().unwrap()).unwrap();
    let hash = RandomXHasher::light(&seed).unwrap().hash(&blob).unwrap();
    let submit = json!({"id": 2, "jsonrpc": "2.0", "method": "submit", "params": {
        "id": reply["result"]["id"], "job_id": job["job_id"], "nonce": hex::encode(7u32.to_le_bytes()), "result": hex::encode(hash)}});
    wr.write_all(format!("{submit}\n").as_bytes())
        .await
        .unwrap();
    line.clear();
    rd.read_line(&mut line).await.unwrap();
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        reply["result"]["status"], "OK",
        "a share over TLS is accepted: {reply}"
    );

    // The protocol crate's client over stratum+ssl, trusting the pool's certificate: logs in,
    // mines a share and has it accepted (how a cluster coordinator reaches a TLS pool).
    let url: adit_protocol::PoolUrl = format!("stratum+ssl://localhost:{}", h.addr.port())
        .parse()
        .unwrap();
    let options = adit_protocol::ClientOptions {
        tls_ca: Some(dir.path().join("pool.pem")),
        ..Default::default()
    };
    let mut client = StratumClient::login_url(&url, &format!("{WALLET}+1.tls"), "x", &options)
        .await
        .unwrap();
    let (nonce, result) = client.mine().unwrap();
    let job_id = client.job.job_id.clone();
    let status = client.submit_share(&job_id, &nonce, &result).await.unwrap();
    assert_eq!(status.status, "OK");
    // A paced client (the demo's miner) hashes no faster than its pace: at difficulty 1 each
    // hash is a share, and three take three paces (unpaced, well under one).
    let pace = Duration::from_secs(1);
    let paced = adit_protocol::ClientOptions {
        pace: Some(pace),
        ..options.clone()
    };
    let mut slow = StratumClient::login_url(&url, &format!("{WALLET}+1.paced"), "x", &paced)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        slow.mine().unwrap();
    }
    assert_eq!(slow.last_nonce(), 3, "each hash a share at difficulty 1");
    assert!(started.elapsed() >= 3 * pace, "{:?}", started.elapsed());
    // Without the pool's CA, the Web PKI roots do not trust a self-signed pool.
    let untrusted = StratumClient::login_url(&url, WALLET, "x", &Default::default()).await;
    assert!(untrusted.is_err());

    // A plain-text client gets no Stratum answer from the TLS port.
    let mut plain = StratumClient::connect_from(h.addr, [127, 0, 0, 6])
        .await
        .unwrap();
    plain
        .write_all(format!("{login}\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        plain.read_to_end(&mut buf).await
    })
    .await;
    assert!(!String::from_utf8_lossy(&buf).contains("\"status\":\"OK\""));
    h.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_miner_is_retargeted_on_time_alone_and_kept_while_idle() {
    let mut config = easy_config();
    // A share due every second: no share in two is quiet.
    config.vardiff.target_share_time_ms = 1_000;
    config.start_difficulty = 10_000;
    let h = start(1_000_000_000_000, config).await;
    let mut quiet = miner(h.addr, [127, 0, 0, 1], WALLET).await;
    let first = adit_protocol::decode_target(&quiet.job.target).unwrap();
    assert_eq!(first, 10_000);
    // No shares: the connection's timer lowers the difficulty by itself (at most 4× a step)
    // and pushes a new job, and the miner stays connected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let lowered = loop {
        let message = tokio::time::timeout_at(deadline, quiet.read())
            .await
            .expect("a retargeted job within 30 s")
            .unwrap()
            .expect("the pool kept the quiet miner connected");
        if message["method"] == "job" {
            break adit_protocol::decode_target(&quiet.job.target).unwrap();
        }
    };
    assert!((first / 4..first).contains(&lowered), "{first} → {lowered}");
    h.stop.cancel();
}

/// Issue 56: the demo's miner (`mine_until`) logs in again when the pool closes its
/// connection, as XMRig does, instead of stopping for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_logs_in_again_after_the_pool_closes_its_connection() {
    use tokio::io::AsyncBufReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let miner = {
        let stop = stop.clone();
        std::thread::spawn(move || adit_stratum::mine_until(addr, &format!("{WALLET}+1.rig"), stop))
    };
    let (job, _) = adit_stratum::JobFactory::new(7)
        .job(&work(301, 1_000_000), 1)
        .unwrap();
    for login in 0..2 {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
            .await
            .expect("the miner connects again within a minute")
            .unwrap();
        let mut lines = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        lines.read_line(&mut line).await.unwrap();
        let request: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(request["method"], "login", "{line}");
        if login == 0 {
            // One job, then the pool closes the connection (dropped at the end of the turn).
            let reply = json!({"id": request["id"], "jsonrpc": "2.0", "error": null,
                "result": {"id": "s1", "job": job, "extensions": [], "status": "OK"}});
            lines
                .get_mut()
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .unwrap();
        }
    }
    stop.cancel();
    let mined = tokio::task::spawn_blocking(move || miner.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        mined.unwrap(),
        0,
        "no share was accepted by a pool that closed"
    );
}
