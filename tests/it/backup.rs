//! Backup and restore (issue 25): a backup taken while events flow, the source left behind (a
//! fresh NATS and table root), the backup restored there: every table gives the same answers
//! and the registry the same records at once; the pipelines then resume from their recorded
//! positions and every event the restored streams hold lands exactly once. A second restore
//! over the data is refused.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

/// The most events the producer publishes: at 5 000 a second, far more than a backup takes.
const EVENTS: usize = 150_000;

/// Runs `adit <args>` to completion; its exit, stdout and stderr.
fn adit(args: &[String]) -> (bool, String, String) {
    let out = Command::new(adit_binary()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn globals(nats: &str, dir: &Path) -> Vec<String> {
    vec![
        "--nats-url".into(),
        nats.into(),
        "--tables".into(),
        dir.join("tables").display().to_string(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
    ]
}

/// Runs `adit backup --to <backups> <more>` with the config and data of the app in `dir`; what
/// it reports.
fn backup(nats: &str, dir: &Path, backups: &Path, more: &[&str]) -> Value {
    let mut args = vec![
        "--config".into(),
        dir.join("adit.toml").display().to_string(),
    ];
    args.extend(globals(nats, dir));
    args.extend([
        "backup".into(),
        "--to".into(),
        backups.display().to_string(),
    ]);
    args.extend(more.iter().map(|a| a.to_string()));
    let (ok, out, err) = adit(&args);
    assert!(ok, "backup failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// The folder a backup reports it wrote.
fn folder_of(taken: &Value) -> std::path::PathBuf {
    Path::new(
        taken["backup"]
            .as_str()
            .unwrap()
            .trim_start_matches("file://"),
    )
    .to_path_buf()
}

/// Every key of the registry bucket with its value.
async fn registry(nats: &NatsServer) -> Vec<(String, Vec<u8>)> {
    let js = nats.jetstream().await;
    let kv = js
        .get_key_value(adit_schemas::names::KV_REGISTRY)
        .await
        .unwrap();
    let mut keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    keys.sort();
    let mut records = Vec::new();
    for key in keys {
        let value = kv.get(&key).await.unwrap().unwrap_or_default();
        records.push((key, value.to_vec()));
    }
    records
}

/// Rows and, where the table has one, the sum of `seq`, for each table.
async fn answers(root: &Path, tables: &[String]) -> Vec<(String, i64, i64)> {
    let mut found = Vec::new();
    for table in tables {
        let t = [table.as_str()];
        let rows = scalar(root, &t, &format!("SELECT count(*) FROM {table}")).await;
        let sum = if ["energy_readings", "sensor_readings"].contains(&table.as_str()) {
            scalar(root, &t, &format!("SELECT sum(seq) FROM {table}")).await
        } else {
            0
        };
        found.push((table.clone(), rows, sum));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_a_run_restores_the_same_answers_and_resumes_exactly_once() {
    // The source: pipelines and the API on their own NATS, a registry, events flowing.
    let nats = NatsServer::start();
    let source = tempfile::tempdir().unwrap();
    let (publisher, _js) = publisher(&nats).await;
    let app = App::start(&nats.url(), source.path(), "pipelines,query", "");
    app.wait_http().await;
    app.put_all(vec![
        (
            "/api/v1/registry/sites/site-00".into(),
            json!({"allocation_kw": 80.0}),
        ),
        (
            "/api/v1/registry/sites/site-01".into(),
            json!({"allocation_kw": 40.0, "name": "North"}),
        ),
        ("/api/v1/registry/pools/pool-a".into(), json!({})),
    ])
    .await;
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    // Events flow until the backup is taken (or the producer runs dry, which fails the test).
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(async move {
        let msgs = telemetry(EVENTS, base);
        for chunk in msgs.chunks(500) {
            if *stopped.borrow_and_update() {
                return true;
            }
            publisher.publish_all(chunk.to_vec()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    let tables = source.path().join("tables");
    let deadline = Instant::now() + Duration::from_secs(120);
    while scalar(
        &tables,
        &["energy_readings"],
        "SELECT count(*) FROM energy_readings",
    )
    .await
        < 5_000
    {
        assert!(
            Instant::now() < deadline,
            "nothing landed; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The backup, taken while events flow.
    let backups = source.path().join("backups");
    let taken = backup(&nats.url(), source.path(), &backups, &[]);
    stop.send(true).unwrap();
    assert!(
        producer.await.unwrap(),
        "the backup was meant to be taken while events flow"
    );
    let (ok, out, err) = adit(&[
        "backup".into(),
        "verify".into(),
        "--from".into(),
        backups.display().to_string(),
    ]);
    assert!(ok, "verify failed: {err}");
    let verified: Value = serde_json::from_str(&out).unwrap();
    assert!(
        verified["verified"]["tables"].as_u64().unwrap() >= 3,
        "{verified}"
    );
    drop(app);

    let folder = folder_of(&taken);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap();
    let names: Vec<String> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    for needed in ["energy_readings", "sensor_readings", "registry_changes"] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} not in {names:?}"
        );
    }
    let config = std::fs::read_to_string(folder.join("config.toml")).unwrap();
    assert!(
        !config.contains(READ_TOKEN) && config.contains("<redacted>"),
        "{config}"
    );
    let in_backup = answers(&folder.join("tables"), &names).await;
    let telemetry = manifest["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "TELEMETRY")
        .map(|s| s["messages"].as_i64().unwrap())
        .unwrap();
    let landed_at_backup = in_backup
        .iter()
        .filter(|(t, _, _)| t == "energy_readings" || t == "sensor_readings")
        .map(|(_, rows, _)| rows)
        .sum::<i64>();
    assert!(
        landed_at_backup > 0 && landed_at_backup < telemetry,
        "the backup holds {landed_at_backup} landed rows of {telemetry} events: it should be mid-flow"
    );

    // Restored into a fresh NATS and table root: the same answers and registry at once.
    let fresh = NatsServer::start();
    let target = tempfile::tempdir().unwrap();
    let mut restore = globals(&fresh.url(), target.path());
    restore.extend([
        "restore".into(),
        "--from".into(),
        backups.display().to_string(),
    ]);
    let (ok, out, err) = adit(&restore);
    assert!(ok, "restore failed: {err}");
    eprintln!("restore: {out}");
    // The server reads a stream's state apart from its snapshot, so events published while
    // the backup was taken may follow the recorded count: the restored stream holds at least
    // it, and every event it holds must land once.
    let restored: Value = serde_json::from_str(&out).unwrap();
    let telemetry_restored = restored["streams"]["TELEMETRY"].as_i64().unwrap();
    assert!(
        telemetry_restored >= telemetry,
        "the restored stream holds {telemetry_restored} of the {telemetry} events backed up"
    );
    let telemetry = telemetry_restored;
    let restored_tables = target.path().join("tables");
    // New payments are held: the restored payments table lacks what was paid since.
    let hold = restored_tables.join("_adit/payments/hold.json");
    assert!(hold.is_file(), "payments held after a restore");
    // Held before the restore wrote anything: a payer running meanwhile paid nothing from a
    // half-restored table.
    let held: Value = serde_json::from_slice(&std::fs::read(&hold).unwrap()).unwrap();
    let since: chrono::DateTime<chrono::Utc> = held["since"].as_str().unwrap().parse().unwrap();
    let first_commit = std::fs::metadata(
        restored_tables.join(format!("{}/_delta_log/00000000000000000000.json", names[0])),
    )
    .unwrap()
    .modified()
    .unwrap();
    assert!(
        since <= chrono::DateTime::<chrono::Utc>::from(first_commit),
        "held at {since}, after the restore wrote {}",
        names[0]
    );
    assert!(held["taken_at"].is_string(), "{held}");
    assert!(
        out.contains("payments_held") && out.contains("adit payments release"),
        "{out}"
    );
    let after_restore = answers(&restored_tables, &names).await;
    eprintln!("rows and sum(seq) per table, backup vs restored:\n{in_backup:?}\n{after_restore:?}");
    assert_eq!(after_restore, in_backup);
    let registry_before = registry(&nats).await;
    assert!(registry_before.len() >= 3, "{registry_before:?}");
    assert_eq!(registry(&fresh).await, registry_before);

    // The pipelines resume: every telemetry event the restored stream holds lands once.
    let app = App::start(&fresh.url(), target.path(), "pipelines", "");
    let both = ["energy_readings", "sensor_readings"];
    let total =
        "SELECT (SELECT count(*) FROM energy_readings) + (SELECT count(*) FROM sensor_readings)";
    let deadline = Instant::now() + Duration::from_secs(180);
    while scalar(&restored_tables, &both, total).await < telemetry {
        assert!(
            Instant::now() < deadline,
            "not every event landed; log:\n{}",
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = "(SELECT seq FROM energy_readings UNION ALL SELECT seq FROM sensor_readings)";
    let count = scalar(
        &restored_tables,
        &both,
        &format!("SELECT count(*) FROM {all}"),
    )
    .await;
    let distinct = scalar(
        &restored_tables,
        &both,
        &format!("SELECT count(DISTINCT seq) FROM {all}"),
    )
    .await;
    eprintln!(
        "landed at the backup: {landed_at_backup}; restored stream holds {telemetry}; after resuming: {count} rows, {distinct} distinct"
    );
    assert_eq!(count, telemetry, "every event of the restored stream, once");
    assert_eq!(distinct, count, "no event twice");
    drop(app);

    // Once reconciled, the operator releases payments.
    let mut release = globals(&fresh.url(), target.path());
    // No wallet runs here (the payment test reconciles with a real one): released without it,
    // as the output says.
    release.extend(["payments".into(), "release".into(), "--no-wallet".into()]);
    let (ok, out, err) = adit(&release);
    assert!(ok, "release failed: {err}");
    assert!(out.contains("\"released\": true"), "{out}");
    assert!(out.contains("not checked (--no-wallet)"), "{out}");
    assert!(!hold.exists(), "the hold is lifted");
    let (ok, out, _) = adit(&release);
    assert!(
        ok && out.contains("\"released\": false"),
        "nothing left to release: {out}"
    );

    // A restore over what now holds data is refused, naming what it would overwrite.
    let (ok, _, err) = adit(&restore);
    assert!(!ok, "a restore over data must be refused");
    assert!(
        !hold.exists(),
        "a refused restore changed nothing, and holds nothing"
    );
    assert!(
        err.contains("restore refused") && err.contains("TELEMETRY"),
        "{err}"
    );
}

/// `dir` and every file and folder under it whose mode lets group or others in (with the
/// mode), and how many files there are.
#[cfg(unix)]
fn open_to_others(dir: &Path) -> (Vec<String>, usize) {
    use std::os::unix::fs::PermissionsExt;
    let (mut open, mut files) = (Vec::new(), 0);
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let mut seen = vec![folder.clone()];
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files += 1;
                seen.push(path);
            }
        }
        for path in seen {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            if mode & 0o077 != 0 {
                open.push(format!("{} {mode:o}", path.display()));
            }
        }
    }
    (open, files)
}

/// Issue 56: a backup holds the config's secrets (kept with `--with-secrets`: tokens,
/// notification webhooks) and the payer's transactions with their keys, so on disk it is its
/// owner's alone: the location, every folder and every file the backup writes (tables,
/// streams, config, manifest) are created without any access for group or others.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_on_disk_is_its_owners_alone() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (publisher, _js) = publisher(&nats).await;
    let app = App::start(&nats.url(), dir.path(), "pipelines", "");
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    publisher.publish_all(telemetry(400, base)).await.unwrap();
    let tables = dir.path().join("tables");
    eventually(Duration::from_secs(120), "telemetry landing", || async {
        energy_rows(&tables).await > 0
    })
    .await;
    drop(app);

    let backups = dir.path().join("backups");
    let taken = backup(&nats.url(), dir.path(), &backups, &["--with-secrets"]);
    let folder = folder_of(&taken);
    let config = std::fs::read_to_string(folder.join("config.toml")).unwrap();
    assert!(
        config.contains(READ_TOKEN),
        "the secrets were kept: {config}"
    );
    for part in [
        "manifest.json",
        "streams",
        "tables/energy_readings/_delta_log",
    ] {
        assert!(folder.join(part).exists(), "{part} is in the backup");
    }

    let (open, files) = open_to_others(&backups);
    assert!(open.is_empty(), "open to group or others: {open:#?}");
    assert!(files >= 5, "{files} files checked");
}
