//! What a stranger sends cannot stop adit or silence its accounting (issue 22), on the real
//! binary: a 511-byte SQL chain that overflowed a planning thread's stack, value bombs built
//! by `||`, `concat_ws`, `make_array` and `array_concat`, a Stratum `submit` whose job id holds
//! a line break (it panicked the pool's publisher: every later share was lost while miners were
//! told OK), and the managed nats-server outliving a SIGKILLed adit. Issue 56: a solution
//! resent under another job id credited again, and statements whose trees nest past a stack
//! through any production (types, COPY, joins…) on HTTP and the PostgreSQL port.

use crate::common;

use std::time::Duration;

use common::*;

const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

async fn sql_status(app: &App, sql: &str) -> (u16, serde_json::Value) {
    let (status, body) = app.sql(sql, "json", Some(READ_TOKEN)).await;
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_sql_and_value_bombs_are_refused_and_the_process_lives_on() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pg = free_port();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "query",
        &format!(
            "[query.limits]\nmax_value_bytes = 1048576\nmemory_bytes = 33554432\n\
             [query.postgres]\nlisten = \"127.0.0.1:{pg}\"\n"
        ),
    );
    app.wait_http().await;
    let pid = app.pid().unwrap();

    // Issue 56: a type nested by a loop of the parser (1 000 pairs of brackets, 2 KB) aborted
    // the process over HTTP; the query inside COPY was never measured. Every node counts now.
    for sql in [
        format!("SELECT NULL::int{}", "[]".repeat(1_000)),
        format!("COPY (SELECT 1{}) TO '/dev/null'", "+1".repeat(1_000)),
    ] {
        let (status, body) = sql_status(&app, &sql).await;
        assert!((400..500).contains(&status), "{status} {body}");
        assert!(alive(pid), "adit died; log:\n{}", app.log());
    }
    let (status, body) = sql_status(
        &app,
        &format!("SELECT NULL::int{} AS x", "[]".repeat(1_000)),
    )
    .await;
    assert_eq!(
        body["error"]["code"], "statement_too_complex",
        "{status} {body}"
    );
    // The same through psql, 5 000 pairs: refused, and the server goes on for everyone.
    let psql = |sql: &str| {
        std::process::Command::new("psql")
            .env("PGPASSWORD", READ_TOKEN)
            .env("PGCONNECT_TIMEOUT", "10")
            .arg(format!(
                "host=127.0.0.1 port={pg} user=hostile dbname=adit sslmode=disable"
            ))
            .args(["-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-c", sql])
            .output()
            .expect("psql runs (scripts/setup.sh installs Debian's postgresql-client)")
    };
    let mut refused = None;
    for _ in 0..50 {
        let out = psql(&format!("SELECT NULL::int{}", "[]".repeat(5_000)));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if !err.contains("Connection refused") {
            refused = Some((out.status.success(), err));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, err) = refused.expect("the PostgreSQL port opens");
    assert!(!ok && err.contains("54001"), "{err}");
    let out = psql("SELECT 40 + 2");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42", "{out:?}");
    assert!(alive(pid), "adit died; log:\n{}", app.log());

    // The statement that aborted the process: 250 terms, 511 bytes.
    let chain = format!("select 1{}", "+1".repeat(250));
    assert!(chain.len() < 520);
    let (status, body) = sql_status(&app, &chain).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "statement_too_complex", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("query.limits.max_expression_depth"),
        "{message}"
    );
    // A chain within the limit is planned and answered.
    let (status, body) = sql_status(&app, &format!("select 1{} AS n", "+1".repeat(100))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["n"], 101);

    let mut doubling = "WITH a0 AS (SELECT repeat('x', 1000) s)".to_string();
    for i in 1..=12 {
        doubling.push_str(&format!(", a{i} AS (SELECT s || s s FROM a{})", i - 1));
    }
    doubling.push_str(" SELECT length(s) FROM a12");
    for bomb in [
        doubling.as_str(),
        "WITH a AS (SELECT repeat('x', 400000) s) SELECT concat_ws(',', s, s, s) FROM a",
        "WITH a AS (SELECT repeat('x', 400000) s) SELECT make_array(s, s, s) FROM a",
        "WITH a AS (SELECT [repeat('x', 400000)] s) SELECT array_concat(s, s, s) FROM a",
    ] {
        let (status, body) = sql_status(&app, bomb).await;
        assert!((400..500).contains(&status), "{bomb}: {status} {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("max_value_bytes"), "{bomb}: {message}");
    }

    // Same process, still answering.
    assert_eq!(app.pid(), Some(pid));
    assert!(alive(pid), "adit died; log:\n{}", app.log());
    let (status, body) = sql_status(&app, "select 1 + 1 AS two").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["two"], 2);
}

/// An app with `roles` whose pool (on the simulated node, at difficulty 1) listens on a free
/// port, with `more` config; that port's address.
async fn sim_pool(
    roles: &str,
    more: &str,
) -> (NatsServer, tempfile::TempDir, App, std::net::SocketAddr) {
    let stratum_port = free_port();
    let (nats, dir, app) = start_app(
        roles,
        &format!(
            "[pool]\nlisten = \"127.0.0.1:{stratum_port}\"\nnode = \"sim\"\n\
             [pool.server]\npool = \"sim\"\nverify_threads = 1\n[pool.server.vardiff]\nmin_difficulty = 1\n{more}"
        ),
    )
    .await;
    let addr = format!("127.0.0.1:{stratum_port}").parse().unwrap();
    (nats, dir, app, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_break_in_a_job_id_does_not_stop_share_accounting() {
    let (nats, _dir, app, addr) = sim_pool("pool,query", "").await;
    let mut attacker = stratum_login(&app, addr, &format!("{WALLET}+20.evil")).await;
    let (nonce, result) = attacker.mine().unwrap();
    for job_id in ["\r\n", "1\r\nNats-Msg-Id: x", "\0\u{7f}%0A"] {
        let reply = attacker.submit_to(job_id, &nonce, &result).await.unwrap();
        assert_eq!(reply["error"]["message"], "Invalid job id", "{reply}");
    }

    // An honest miner's shares after that are accepted and recorded.
    let mut honest = stratum_login(&app, addr, &format!("{WALLET}+20.honest")).await;
    let mut accepted = 0;
    while accepted < 3 {
        let (nonce, result) = honest.mine().unwrap();
        let reply = honest.submit(&nonce, &result).await.unwrap();
        if reply["result"]["status"] == "OK" {
            accepted += 1;
        }
    }
    let js = nats.jetstream().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut refused = loop {
        let messages = stream_messages(&js, "MINING", "mining.share.>", 100).await;
        let mut honest_shares = 0;
        let mut refused = Vec::new();
        for m in &messages {
            let share: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            if share["worker"] == "honest" && share["accepted"] == true {
                honest_shares += 1;
            }
            if share["worker"] == "evil" {
                refused.push(share["job_id"].as_str().unwrap_or_default().to_string());
            }
        }
        if honest_shares >= 3 {
            break refused;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{honest_shares} honest shares in MINING; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The refused submissions are recorded too, their control characters escaped.
    refused.sort();
    assert_eq!(
        refused,
        vec!["%00%7F%0A", "%0D%0A", "1%0D%0ANats-Msg-Id: x"],
        "log:\n{}",
        app.log()
    );
    let metrics = app.metrics().await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("adit_pool_events_lost_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let ready = reqwest::get(format!("{}/ready", app.url())).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

/// The config and arguments of an adit that runs its own nats-server under `dir/data`.
fn managed_args(dir: &std::path::Path, port: u16) -> Vec<String> {
    let config = dir.join("adit.toml");
    std::fs::write(&config, format!("[query]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    [
        "--config",
        config.to_str().unwrap(),
        "--tables",
        dir.join("tables").to_str().unwrap(),
        "--data-dir",
        dir.join("data").to_str().unwrap(),
        "run",
        "--roles",
        "query",
    ]
    .map(String::from)
    .to_vec()
}

fn managed_server_pid(dir: &std::path::Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("data/nats/pid")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The nats-server processes whose command line names `store`.
fn servers_on(store: &std::path::Path) -> Vec<u32> {
    let store = store.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("nats-server") && c.contains(&store)
                })
                .unwrap_or(false)
        })
        .filter(|pid| alive(*pid))
        .collect()
}

async fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !alive(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_nats_server_dies_with_adit_and_an_orphan_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data/nats/store");
    let port = free_port();
    let mut app = App::command(dir.path(), "adit", port, &managed_args(dir.path(), port));
    app.wait_http().await;
    let servers = servers_on(&store);
    assert_eq!(servers.len(), 1, "one managed nats-server: {servers:?}");
    let server = servers[0];

    // SIGKILL: adit gets no chance to stop it; the kernel does.
    app.kill();
    assert!(
        gone_within(server, Duration::from_secs(15)).await,
        "nats-server {server} outlived a SIGKILLed adit"
    );
    assert_eq!(
        managed_server_pid(dir.path()),
        Some(server),
        "the pid file names the managed server"
    );

    // An orphan from an adit that died before this fix: a nats-server on the store whose
    // owner is gone. The next start stops it and runs exactly one server of its own.
    let orphan_port = free_port();
    let mut orphan = std::process::Command::new(adit_testkit::nats_server_binary())
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &orphan_port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(&store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dead_owner = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    std::fs::write(
        dir.path().join("data/nats/pid"),
        format!("{} {dead_owner}\n", orphan.id()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("data/nats/url"),
        format!("nats://127.0.0.1:{orphan_port}"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port = free_port();
    let mut app = App::command(dir.path(), "adit2", port, &managed_args(dir.path(), port));
    app.wait_http().await;
    // The orphan was stopped (it is this test's child, so it is reaped here).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while orphan.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned nats-server still runs; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server = managed_server_pid(dir.path()).unwrap();
    assert_eq!(servers_on(&store), vec![server], "log:\n{}", app.log());
    assert!(app.terminate(), "clean exit; log:\n{}", app.log());
    assert!(gone_within(server, Duration::from_secs(15)).await);
}

/// Issue 56: one solution, one credit. Two `getjob`s in a row gave two job ids over one blob,
/// and a share solved on the first was accepted under both. Now every job has a blob of its
/// own: the same share under the next job is the wrong hash, under its own job a duplicate,
/// from another connection an unknown job, and `shares` credits it once. `getjob` is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solution_is_credited_once_whatever_job_it_is_sent_under() {
    let (_nats, _dir, app, addr) = sim_pool(
        "pool,pipelines,query",
        "[pool.server.limits]\ngetjobs_per_s = 2.0\n",
    )
    .await;
    let mut miner = stratum_login(&app, addr, &format!("{WALLET}+20.replayer")).await;
    let first = miner.job.clone();
    let (nonce, result) = miner.mine().unwrap();
    let reply = miner
        .submit_to(&first.job_id, &nonce, &result)
        .await
        .unwrap();
    assert_eq!(reply["result"]["status"], "OK", "{reply}");

    let session = miner.session.clone();
    let next = miner
        .call("getjob", serde_json::json!({ "id": session }))
        .await
        .unwrap();
    let second = next["result"]["job_id"].as_str().unwrap().to_string();
    assert_ne!(second, first.job_id);
    assert_ne!(
        next["result"]["blob"],
        first.blob.as_str(),
        "a blob per job"
    );
    let reply = miner.submit_to(&second, &nonce, &result).await.unwrap();
    assert_eq!(reply["error"]["message"], "Incorrect hash", "{reply}");
    let reply = miner
        .submit_to(&first.job_id, &nonce, &result)
        .await
        .unwrap();
    assert_eq!(reply["error"]["message"], "Duplicate share", "{reply}");
    let mut other = stratum_login(&app, addr, &format!("{WALLET}+20.replayer")).await;
    let reply = other
        .submit_to(&first.job_id, &nonce, &result)
        .await
        .unwrap();
    assert_eq!(reply["error"]["message"], "Invalid job id", "{reply}");

    // The `shares` table: the solution credited once, each replay a refused row of its own.
    let nonce_sql = nonce.to_ascii_lowercase();
    let landed = format!(
        "SELECT count(*) AS n FROM shares WHERE worker = 'replayer' AND nonce = '{nonce_sql}'"
    );
    eventually(Duration::from_secs(60), "the replays land", || async {
        let (status, body) = app.sql(&landed, "json", Some(READ_TOKEN)).await;
        let rows: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        status == 200 && rows[0]["n"] == 4
    })
    .await;
    let rows = app
        .rows(&format!(
            "SELECT count(*) AS n, sum(difficulty) AS credited FROM shares \
             WHERE worker = 'replayer' AND nonce = '{nonce_sql}' AND accepted"
        ))
        .await;
    assert_eq!(
        (&rows[0]["n"], &rows[0]["credited"]),
        (&1.into(), &20.into())
    );

    // getjob is bounded per address (2 a second here, burst 4): a flood is cut off.
    let mut refused = None;
    for _ in 0..10 {
        match other
            .call("getjob", serde_json::json!({ "id": other.session.clone() }))
            .await
        {
            Ok(reply) if reply["error"].is_null() => continue,
            Ok(reply) => {
                refused = Some(reply["error"]["message"].to_string());
                break;
            }
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("ten getjobs in a moment were all answered");
    assert!(refused.contains("Too many job requests"), "{refused}");
}
