//! Tables encrypted at rest (issue 61) through the real binary (`adit run --roles
//! pipelines,query` with `[tables] encryption_key_file`): readings published to NATS land and
//! answer SQL as ever, while every file under the table root — Parquet data, the Delta log and
//! its checkpoints, adit's own records beside the tables — is sealed: it starts with the
//! format's magic and holds neither Parquet's magic, nor a column's name, nor a site's. The
//! tables read back through DataFusion with the key, and not without it or with another one.
//! A backup taken with `adit backup` is sealed the same way and verifies with the key.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use adit_sinks::{AtRestKey, TableStore};
use chrono::Utc;
use common::*;
use datafusion::prelude::SessionContext;

/// Every file under `root`, with its bytes, as one walk saw them. object_store's local store
/// writes each file under a staging name (`<name>#<n>`) and then links it into place, so a walk
/// can meet a write in flight: a staging file before its first bytes, or a file listed and gone
/// before it is read. With `settled`, such a walk gives `None`; without, it reads what is there.
fn walk(root: &Path, settled: bool) -> Option<Vec<(std::path::PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()? {
            let path = entry.ok()?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let staging = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            match std::fs::read(&path) {
                Ok(_) if staging && settled => return None,
                Ok(bytes) => out.push((path, bytes)),
                Err(_) if settled => return None,
                Err(_) => {}
            }
        }
    }
    Some(out)
}

/// Every file under `root`, from a walk that met no write in flight (the pipelines still
/// commit now and then: compaction, checkpoints). A staging file that stays through 200 tries
/// is a file left behind, and is checked as it is.
fn files(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    for _ in 0..200 {
        if let Some(all) = walk(root, true) {
            return all;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    walk(root, false).expect("the table root can be listed")
}

/// Asserts each file under `root` is sealed: the magic first, and none of `clear` inside.
fn assert_sealed(root: &Path, clear: &[&[u8]]) -> usize {
    let all = files(root);
    for (path, bytes) in &all {
        assert!(
            bytes.starts_with(adit_sinks::at_rest::MAGIC),
            "{} is not sealed",
            path.display()
        );
        for text in clear {
            assert!(
                !bytes.windows(text.len()).any(|w| w == *text),
                "{} holds {:?} in the clear",
                path.display(),
                String::from_utf8_lossy(text)
            );
        }
    }
    all.len()
}

/// `SELECT count(*) FROM energy_readings` through DataFusion on `store`.
async fn count(store: &TableStore) -> Result<i64, String> {
    let ctx = SessionContext::new();
    store
        .register(&ctx, "energy_readings")
        .await
        .map_err(|e| e.to_string())?;
    let batches = ctx
        .sql("SELECT count(*) FROM energy_readings")
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let n = arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Int64)
        .map_err(|e| e.to_string())?;
    Ok(arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&n).value(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_tables_answer_sql_and_their_files_are_unreadable_without_the_key() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("tables.key");
    let key_hex = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(&key_file, format!("{key_hex}\n")).unwrap();
    let app = App::start(
        &nats.url(),
        dir.path(),
        "pipelines,query",
        &format!(
            "[tables]\nencryption_key_file = \"{}\"\n",
            key_file.display()
        ),
    );
    app.wait_http().await;
    let (publisher, _js) = publisher(&nats).await;
    const READINGS: usize = 600;
    let base = Utc::now() - chrono::Duration::seconds(5);
    publisher
        .publish_all((0..READINGS).map(|i| energy(i, base)).collect())
        .await
        .unwrap();
    // Committed to the table, read with the key (the API answers sooner: it also serves the
    // rows landed but not yet committed).
    let tables = dir.path().join("tables");
    let root = tables.to_str().unwrap();
    let with_key = TableStore::new(root, Default::default())
        .unwrap()
        .encrypted(AtRestKey::parse(&key_hex).unwrap());
    eventually(
        Duration::from_secs(60),
        "the readings committed",
        || async { count(&with_key).await == Ok(READINGS as i64) },
    )
    .await;
    let sealed = assert_sealed(&tables, &[b"PAR1", b"power_w", b"site-01", b"\"add\""]);
    assert!(sealed >= 3, "{sealed} files");
    // Through the API, with a statement that reads the values (a count alone is answered
    // from the log's statistics): the query engine decrypts too.
    let watts: f64 = (0..READINGS).map(|i| 1000.0 + (i % 100) as f64).sum();
    let sum = "SELECT sum(power_w) AS w FROM energy_readings";
    app.wait_rows(
        Duration::from_secs(30),
        "the watts read from the sealed files",
        sum,
        |rows| rows[0]["w"].as_f64() == Some(watts),
    )
    .await;
    assert_eq!(app.rows(sum).await[0]["w"].as_f64(), Some(watts));

    let without = TableStore::new(root, Default::default()).unwrap();
    assert!(count(&without).await.is_err(), "read without the key");
    let other = TableStore::new(root, Default::default())
        .unwrap()
        .encrypted(AtRestKey::parse(&"cd".repeat(32)).unwrap());
    assert!(count(&other).await.is_err(), "read with another key");

    // A backup is sealed with the same key and verifies with it.
    let backups = dir.path().join("backups");
    let adit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_adit"))
            .arg("--config")
            .arg(dir.path().join("adit.toml"))
            .args(["--nats-url", &nats.url(), "--tables", root])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap()
    };
    let taken = adit(&["backup", "--to", backups.to_str().unwrap()]);
    assert!(taken.status.success(), "{taken:?}");
    assert_sealed(&backups, &[b"PAR1", b"power_w", b"site-01"]);
    let verified = adit(&["backup", "verify", "--from", backups.to_str().unwrap()]);
    assert!(verified.status.success(), "{verified:?}");
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(stdout.contains("\"verified\""), "{stdout}");
}
